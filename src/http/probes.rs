//! The probe endpoints as HTTP: what [`Health`] decides, rendered.
//!
//! `/healthz` is `200 ok` whatever the dependencies do; `/startupz` is 503
//! until start-up work is done; `/readyz` is a JSON object with `status` and
//! one `checks` entry per dependency (`"ok"` or the reason), 200 while the
//! service takes traffic and 503 otherwise, never cached.

use serde_json::{Map, Value};

use crate::health::{Health, Readiness};
use crate::http::response::ApiResponse;

/// Liveness: depends on nothing but this process answering.
pub fn healthz(_health: &Health) -> ApiResponse {
    ApiResponse::text(200, "ok")
}

/// Start-up: 503 `starting` until start-up work is done.
pub fn startupz(health: &Health) -> ApiResponse {
    if health.is_started() {
        ApiResponse::text(200, "ok")
    } else {
        ApiResponse::text(503, "starting")
    }
}

/// Readiness (see [`Health::readiness`]).
pub fn readyz(health: &Health) -> ApiResponse {
    render_readiness(&health.readiness())
}

/// The `/readyz` answer for a report.
pub fn render_readiness(report: &Readiness) -> ApiResponse {
    let mut checks = Map::new();
    for answer in &report.checks {
        let value = match &answer.result {
            Ok(()) => Value::from("ok"),
            Err(reason) => Value::from(reason.to_string()),
        };
        checks.insert(answer.name.into(), value);
    }
    let code = if report.status.takes_traffic() {
        200
    } else {
        503
    };
    let mut body = Map::new();
    body.insert("status".into(), Value::from(report.status.as_str()));
    body.insert("checks".into(), Value::Object(checks));
    ApiResponse::json(code, &Value::Object(body)).with_header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{CheckError, DependencyAnswer, ReadyStatus};

    fn body(r: &ApiResponse) -> Value {
        serde_json::from_slice(&r.body).expect("json")
    }

    #[test]
    fn readiness_renders_status_code_and_reasons() {
        let r = render_readiness(&Readiness {
            status: ReadyStatus::Degraded,
            checks: vec![
                DependencyAnswer {
                    name: "database",
                    result: Ok(()),
                },
                DependencyAnswer {
                    name: "redis",
                    result: Err(CheckError::Connect("connection refused".into())),
                },
            ],
        });
        assert_eq!(r.status, 200);
        assert_eq!(
            body(&r),
            serde_json::json!({
                "status": "degraded",
                "checks": { "database": "ok", "redis": "connect: connection refused" }
            })
        );
        for (status, code) in [
            (ReadyStatus::Starting, 503),
            (ReadyStatus::Ready, 200),
            (ReadyStatus::Unavailable, 503),
            (ReadyStatus::Draining, 503),
        ] {
            let r = render_readiness(&Readiness {
                status,
                checks: Vec::new(),
            });
            assert_eq!(
                (r.status, body(&r)["status"].clone()),
                (code, status.as_str().into())
            );
        }
    }
}
