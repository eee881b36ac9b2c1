//! The public listener's request path.
//!
//! [`Dispatcher::dispatch`] runs on the listener's I/O thread that parsed the
//! request (head and body). It answers inline whatever needs no worker — probes, unknown
//! routes (404), wrong methods (405), oversized bodies (413), and 503 when
//! the queue is full — and hands everything else to the worker pool as one
//! [`Job`] (the only hand-off of a request). [`Dispatcher::work`] runs on a
//! worker: it routes again (a few hundred nanoseconds, cheaper than carrying
//! borrowed route data across threads), runs the handler and answers — unless the client
//! closed its connection while the job was queued (`Request::client_gone`): then the job is
//! skipped and counted (`http_requests_abandoned_total`).

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use log::Level;

use crate::health::Health;
use crate::http::method::Method;
use crate::http::pipeline::{self, HandlerResult, Hooks, Meta};
use crate::http::problem::Problem;
use crate::http::request::{split_target, Request};
use crate::http::response::Response;
use crate::http::router::{Match, Router};
use crate::http::worker_pool::{Busy, Submitter, WorkerSlot};

/// An API handler: a pure function of the request.
pub type Handler = Box<dyn Fn(&Request<'_>) -> HandlerResult + Send + Sync>;

/// A request on its way to a worker.
pub struct Job {
    req: tiny_http::Request,
    meta: Meta,
    body: Vec<u8>,
}

/// The status recorded for a queued request whose client left (nginx's "client closed
/// request"; never seen by the client).
pub const CLIENT_GONE: u16 = 499;

/// Seconds a shed client is told to wait before retrying.
pub const RETRY_AFTER_SECS: &str = "1";

/// Everything the public listener's request path needs, shared by the I/O
/// thread and every worker.
pub struct Dispatcher {
    pub router: Router<Handler>,
    pub health: Arc<Health>,
    pub hooks: Arc<dyn Hooks>,
    pub max_body_bytes: u64,
}

impl Dispatcher {
    /// Connection thread: answer inline or queue for a worker.
    pub fn dispatch(&self, submitter: &Submitter<Job>, req: tiny_http::Request) {
        let hooks = &*self.hooks;
        begin(req, &self.health, hooks, |mut req, mut meta| {
            let (path, _) = split_target(req.url());
            let route = match self.router.at(meta.method, path) {
                Match::Found { pattern, .. } => pattern,
                Match::MethodNotAllowed { pattern, allow } => {
                    meta.route = pattern;
                    let answer = method_not_allowed(meta.method, allow);
                    return pipeline::respond(req, &meta, answer, hooks);
                }
                Match::NotFound => {
                    let answer = Err(Problem::new(404, "no such route"));
                    return pipeline::respond(req, &meta, answer, hooks);
                }
            };
            meta.route = route;
            let body = match read_body(&mut req, self.max_body_bytes) {
                Ok(body) => body,
                Err(problem) => return pipeline::respond(req, &meta, Err(problem), hooks),
            };
            if let Err(job) = submitter.try_submit(Job { req, meta, body }) {
                hooks.shed(&job.meta);
                let shed = Problem::new(503, "the server is at capacity; retry shortly")
                    .with_header("Retry-After", RETRY_AFTER_SECS);
                pipeline::respond(job.req, &job.meta, Err(shed), hooks);
            }
        });
    }

    /// Worker thread: run the handler and answer.
    pub fn work(&self, slot: &WorkerSlot, job: Job) {
        let Job { req, meta, body } = job;
        let hooks = &*self.hooks;
        if req.client_gone() {
            // The client closed its connection while the job was queued: nobody reads the
            // answer, so the handler is not run. 499 (nginx's "client closed request") is
            // what the log line and `http_requests_total` record.
            hooks.abandoned(&meta);
            let gone = Problem::new(
                CLIENT_GONE,
                "the client closed the connection before a worker took the request",
            );
            pipeline::with_context(meta.log_context(), || {
                pipeline::respond(req, &meta, Err(gone), hooks);
            });
            return;
        }
        slot.set_busy(Busy {
            route: meta.route,
            request_id: meta.request_id,
            since: Instant::now(),
        });
        pipeline::with_context(meta.log_context(), || {
            let (path, query) = split_target(req.url());
            let result = match self.router.at(meta.method, path) {
                Match::Found {
                    handler,
                    pattern,
                    params,
                } => {
                    let view = Request {
                        method: meta.method,
                        path,
                        query,
                        route: pattern,
                        params,
                        request_id: &meta.request_id,
                        headers: req.headers(),
                        body: &body,
                    };
                    pipeline::recover_panics(&meta, hooks, || handler(&view))
                }
                // The router is immutable: what matched on the connection
                // thread matches here.
                _ => Err(Problem::new(404, "no such route")),
            };
            pipeline::respond(req, &meta, result, hooks);
        });
    }
}

/// The start every listener shares: the request id and clock ([`Meta`]), the
/// `started` hook, the logging context, and the probes, answered inline.
/// Everything else is passed on to `route`, still inside the context.
pub fn begin(
    req: tiny_http::Request,
    health: &Health,
    hooks: &dyn Hooks,
    route: impl FnOnce(tiny_http::Request, Meta),
) {
    let mut meta = Meta::begin(&req);
    hooks.started(&meta);
    pipeline::with_context(meta.log_context(), || {
        let (path, _) = split_target(req.url());
        match probe(health, meta.method, path) {
            Some((pattern, answer)) => {
                meta.route = pattern;
                meta.log_level = Level::Debug;
                pipeline::respond(req, &meta, answer, hooks);
            }
            None => route(req, meta),
        }
    });
}

/// Answers the probe paths, which every listener serves inline.
pub fn probe(health: &Health, method: Method, path: &str) -> Option<(&'static str, HandlerResult)> {
    let (route, answer): (&'static str, fn(&Health) -> Response) = match path {
        "/healthz" => ("/healthz", Health::healthz),
        "/readyz" => ("/readyz", Health::readyz),
        "/startupz" => ("/startupz", Health::startupz),
        _ => return None,
    };
    let result = match method {
        Method::Get | Method::Head => Ok(answer(health)),
        m => method_not_allowed(m, "GET, HEAD"),
    };
    Some((route, result))
}

/// 405 with `Allow`.
pub fn method_not_allowed(method: Method, allow: &str) -> HandlerResult {
    Err(Problem::new(
        405,
        format!("{method} is not allowed here; allowed: {allow}"),
    )
    .with_header("Allow", allow.to_owned()))
}

/// Reads the whole body within `max` bytes; 413 beyond it, 400 on a broken
/// body, 408 when the client is too slow (the HTTP layer's read deadline).
fn read_body(req: &mut tiny_http::Request, max: u64) -> Result<Vec<u8>, Problem> {
    if let Some(len) = req.body_length() {
        if len as u64 > max {
            return Err(too_large(max));
        }
    }
    let mut body = Vec::with_capacity(req.body_length().unwrap_or(0));
    let reader = req.as_reader();
    match reader.take(max + 1).read_to_end(&mut body) {
        Ok(n) if n as u64 > max => Err(too_large(max)),
        Ok(_) => Ok(body),
        Err(e) if tiny_http::is_body_too_large(&e) => Err(too_large(max)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            Err(Problem::new(408, "the request body did not arrive in time"))
        }
        Err(e) => Err(Problem::new(
            400,
            format!("the request body could not be read: {e}"),
        )),
    }
}

fn too_large(max: u64) -> Problem {
    crate::http::problem::body_too_large(max)
}
