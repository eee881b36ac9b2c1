//! Kubernetes probes: liveness, readiness and start-up.
//!
//! - `/healthz` is 200 `ok` while the process can serve, whatever the
//!   dependencies do, and also while draining: a liveness failure during a
//!   drain would get the pod killed mid-shutdown.
//! - `/readyz` reports the service state and one entry per dependency; only
//!   a required dependency (the database) makes it 503.
//! - `/startupz` is 503 until start-up work (migrations, first connection)
//!   is done.
//!
//! Probes are answered on the connection thread, never queued behind API
//! requests, so they answer within milliseconds when every worker is busy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::http::response::Response;
use crate::lifecycle::{ServiceState, State};

/// One dependency readiness depends on.
pub trait DependencyCheck: Send + Sync {
    /// The key in the `checks` object (`database`, `redis`).
    fn name(&self) -> &'static str;
    /// Whether its failure makes the service unready (else: `degraded`).
    fn required(&self) -> bool;
    /// `Ok` or the reason it is unusable.
    fn check(&self) -> Result<(), String>;
}

/// The probe endpoints' shared state.
pub struct Health {
    state: Arc<ServiceState>,
    started: AtomicBool,
    checks: Vec<Box<dyn DependencyCheck>>,
}

impl Health {
    pub fn new(state: Arc<ServiceState>, checks: Vec<Box<dyn DependencyCheck>>) -> Health {
        Health {
            state,
            started: AtomicBool::new(false),
            checks,
        }
    }

    /// Start-up work is done: `/startupz` turns 200.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub fn healthz(&self) -> Response {
        Response::text(200, "ok")
    }

    pub fn startupz(&self) -> Response {
        if self.is_started() {
            Response::text(200, "ok")
        } else {
            Response::text(503, "starting")
        }
    }

    pub fn readyz(&self) -> Response {
        let state = self.state.get();
        let mut checks = Map::new();
        let status = match state {
            State::Starting => "starting",
            State::Draining | State::Stopping => "draining",
            State::Ready => {
                let mut status = "ready";
                for c in &self.checks {
                    let outcome = c.check();
                    if let Err(reason) = &outcome {
                        if c.required() {
                            status = "unavailable";
                        } else if status == "ready" {
                            status = "degraded";
                        }
                        checks.insert(c.name().into(), Value::from(reason.as_str()));
                    } else {
                        checks.insert(c.name().into(), Value::from("ok"));
                    }
                }
                status
            }
        };
        let code = if matches!(status, "ready" | "degraded") {
            200
        } else {
            503
        };
        let mut body = Map::new();
        body.insert("status".into(), Value::from(status));
        body.insert("checks".into(), Value::Object(checks));
        Response::json(code, &Value::Object(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, bool, Result<(), String>);
    impl DependencyCheck for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn required(&self) -> bool {
            self.1
        }
        fn check(&self) -> Result<(), String> {
            self.2.clone()
        }
    }

    fn body(r: &Response) -> Value {
        serde_json::from_slice(&r.body).expect("json")
    }

    #[test]
    fn readiness_follows_state_and_dependencies() {
        let state = ServiceState::new();
        let h = Health::new(
            Arc::clone(&state),
            vec![
                Box::new(Fixed("database", true, Ok(()))),
                Box::new(Fixed("redis", false, Err("connection refused".into()))),
            ],
        );
        let r = h.readyz();
        assert_eq!(
            (r.status, body(&r)["status"].clone()),
            (503, "starting".into())
        );
        state.advance(State::Ready);
        let r = h.readyz();
        assert_eq!(r.status, 200);
        assert_eq!(body(&r)["status"], "degraded");
        assert_eq!(body(&r)["checks"]["database"], "ok");
        assert_eq!(body(&r)["checks"]["redis"], "connection refused");
        state.advance(State::Draining);
        let r = h.readyz();
        assert_eq!(
            (r.status, body(&r)["status"].clone()),
            (503, "draining".into())
        );
        assert_eq!(h.healthz().status, 200, "liveness holds while draining");
    }

    #[test]
    fn a_required_dependency_down_is_unavailable() {
        let state = ServiceState::new();
        state.advance(State::Ready);
        let h = Health::new(
            state,
            vec![Box::new(Fixed("database", true, Err("down".into())))],
        );
        let r = h.readyz();
        assert_eq!(r.status, 503);
        assert_eq!(body(&r)["status"], "unavailable");
        assert_eq!(body(&r)["checks"]["database"], "down");
    }

    #[test]
    fn startup_turns_ready_once_marked() {
        let h = Health::new(ServiceState::new(), Vec::new());
        assert_eq!(h.startupz().status, 503);
        h.mark_started();
        assert_eq!(h.startupz().status, 200);
    }
}
