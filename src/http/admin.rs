//! The admin listener (`ADMIN_ADDR`): probes, `/metrics` and `/debug/*`.
//!
//! Everything here is answered inline on the listener's I/O thread: these
//! endpoints are cheap, must work when every worker is busy, and must never
//! be reachable from the public listener (they are simply not in its route
//! table).

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::LevelFilter;
use serde_json::{json, Value};

use crate::health::Health;
use crate::http::dispatch::{begin, method_not_allowed, server_options};
use crate::http::method::Method;
use crate::http::pipeline::{self, HandlerResult, Hooks};
use crate::http::problem::Problem;
use crate::http::request::{split_target, ApiRequest};
use crate::http::response::ApiResponse;
use crate::http::router::{Match, RouteError, Router};
use crate::http::worker_pool::WorkerSlot;
use crate::logging::level::LogLevelControl;

type AdminHandler = fn(&Admin, &ApiRequest<'_>) -> HandlerResult;

/// The admin listener's state and routes.
pub struct Admin {
    router: Router<AdminHandler>,
    parts: AdminParts,
    workers: Arc<[WorkerSlot]>,
}

/// `GET /metrics`: the text exposition of every metric.
pub trait Exposition: Send + Sync {
    fn render(&self) -> ApiResponse;
}

/// A background thread (the outbox) as `GET /debug/workers` shows it.
pub trait BackgroundStatus: Send + Sync {
    fn status(&self) -> Value;
}

/// What the admin listener needs besides the workers (which the runtime
/// hands to [`Admin::new`] once it has started them).
pub struct AdminParts {
    pub health: Arc<Health>,
    pub metrics: Arc<dyn Exposition>,
    /// `GET /debug/config`: the redacted configuration.
    pub config: Value,
    /// The background threads, for `/debug/workers`.
    pub background: Vec<Arc<dyn BackgroundStatus>>,
    pub log_level: LogLevelControl,
    pub hooks: Arc<dyn Hooks>,
}

impl Admin {
    pub fn new(parts: AdminParts, workers: Arc<[WorkerSlot]>) -> Result<Admin, RouteError> {
        let router = Router::new()
            .route(Method::Get, "/metrics", metrics as AdminHandler)?
            .route(Method::Get, "/debug/log-level", get_log_level)?
            .route(Method::Put, "/debug/log-level", put_log_level)?
            .route(Method::Get, "/debug/workers", debug_workers)?
            .route(Method::Get, "/debug/config", config)?;
        Ok(Admin {
            router,
            parts,
            workers,
        })
    }

    /// Connection thread: answer everything inline.
    pub fn dispatch(&self, req: tiny_http::Request) {
        let hooks = &*self.parts.hooks;
        begin(req, &self.parts.health, hooks, |mut req, mut meta| {
            let (path, query) = split_target(req.url());
            let result = match self.router.at(meta.method, path) {
                Match::Found {
                    handler,
                    pattern,
                    params,
                    ..
                } => {
                    meta.route = pattern;
                    let view = ApiRequest {
                        method: meta.method,
                        path,
                        query,
                        route: pattern,
                        params,
                        request_id: &meta.request_id,
                        headers: req.headers(),
                        body: &[],
                    };
                    pipeline::recover_panics(&meta, hooks, || handler(self, &view))
                }
                Match::MethodNotAllowed { pattern, allow } => {
                    meta.route = pattern;
                    method_not_allowed(meta.method, allow)
                }
                Match::ServerOptions { allow } => {
                    meta.route = pipeline::ASTERISK;
                    server_options(allow)
                }
                Match::NotFound => Err(Problem::new(404, "no such route")),
            };
            pipeline::respond(&mut req, &meta, result, hooks);
        });
    }
}

fn metrics(admin: &Admin, _req: &ApiRequest<'_>) -> HandlerResult {
    Ok(admin.parts.metrics.render())
}

fn get_log_level(admin: &Admin, _req: &ApiRequest<'_>) -> HandlerResult {
    Ok(ApiResponse::json(
        200,
        &json!({ "level": crate::config::level_name(admin.parts.log_level.current()) }),
    ))
}

fn put_log_level(admin: &Admin, req: &ApiRequest<'_>) -> HandlerResult {
    let level = req.query_param("level").ok_or_else(|| {
        Problem::new(
            400,
            "missing query parameter `level` (trace|debug|info|warn|error)",
        )
    })?;
    let level: LevelFilter = crate::config::parse_log_level(&level).ok_or_else(bad_level)?;
    let for_ = match req.query_param("for") {
        None => None,
        Some(text) => Some(crate::config::parse_duration(&text).map_err(|e| {
            Problem::new(
                400,
                format!("`for`: {e}; expected a duration like 30s or 10m"),
            )
        })?),
    };
    crate::logging::level::check_for(for_).map_err(|e| Problem::new(400, e.to_string()))?;
    let previous = admin.parts.log_level.current();
    // The change is logged at WARN, so that it shows at the new level too
    // when that is `warn`; a level that hides WARN (`error`) would hide the
    // line, so then it is written before the change.
    let hides_warn = level < LevelFilter::Warn;
    if hides_warn {
        log_level_changed(level, previous, for_);
    }
    admin
        .parts
        .log_level
        .set(level, for_)
        .map_err(|e| Problem::new(400, e.to_string()))?;
    if !hides_warn {
        log_level_changed(level, previous, for_);
    }
    get_log_level(admin, req)
}

/// The audit line of a log level change.
fn log_level_changed(level: LevelFilter, previous: LevelFilter, for_: Option<Duration>) {
    // `level` is the record's own field (a second one would be dropped), so
    // the levels go under their own names.
    log::warn!(
        new_level = level.as_str(),
        previous_level = previous.as_str(),
        for_secs = for_.map_or(0, |d: Duration| d.as_secs());
        "log level changed"
    );
}

fn bad_level() -> Problem {
    Problem::new(
        400,
        "`level` must be one of trace, debug, info, warn, error",
    )
}

fn debug_workers(admin: &Admin, _req: &ApiRequest<'_>) -> HandlerResult {
    let now = Instant::now();
    let list: Vec<Value> = admin
        .workers
        .iter()
        .enumerate()
        .map(|(i, slot)| match slot.get() {
            None => json!({ "worker": i, "state": "idle" }),
            Some(b) => json!({
                "worker": i,
                "state": "busy",
                "route": b.route,
                "request_id": b.request_id.as_str(),
                "elapsed_ms": pipeline::millis(now.saturating_duration_since(b.since)),
            }),
        })
        .collect();
    let background: Vec<Value> = admin.parts.background.iter().map(|b| b.status()).collect();
    Ok(ApiResponse::json(
        200,
        &json!({ "workers": list, "background": background }),
    ))
}

fn config(admin: &Admin, _req: &ApiRequest<'_>) -> HandlerResult {
    Ok(ApiResponse::json(200, &admin.parts.config))
}
