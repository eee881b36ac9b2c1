//! The public listener's request path.
//!
//! [`ApiDispatcher::dispatch`] runs on the listener's I/O thread that parsed the
//! request (head and body). It answers inline whatever needs no worker — probes, unknown
//! routes (404), wrong methods (405), oversized bodies (413), and 503 when
//! the queue is full — and hands everything else to the worker pool as one
//! [`Job`] (the only hand-off of a request). [`ApiDispatcher::work`] runs on a
//! worker: it routes again (a few hundred nanoseconds, cheaper than carrying
//! borrowed route data across threads), runs the handler and answers —
//! unless the job waited longer than `QUEUE_TIMEOUT` (503 + `Retry-After`,
//! counted), the shutdown deadline has passed (dropped unexecuted, counted,
//! logged at ERROR): [`ApiDispatcher::run_job`], or the client closed its
//! connection while the job was queued (`tiny_http::Request::client_gone`: skipped and
//! counted in `http_requests_abandoned_total`).
//!
//! With tracing on, the request's server span starts here once the route is
//! known and travels in the [`Job`]; the worker enters it around the handler
//! and ends it with the status (`tracing::request`). With tracing off the
//! only cost is the `tracing::active()` check.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::commit_gate::{self, CommitGate};
use crate::health::Health;
use crate::http::method::Method;
use crate::http::pipeline::{self, HandlerResult, Hooks, Meta};
use crate::http::probes;
use crate::http::problem::Problem;
use crate::http::request::ApiRequest;
use crate::http::response::ApiResponse;
use crate::http::router::{Match, Routed, Router};
use crate::http::worker_pool::{Busy, Submitter, WorkerSlot};
use crate::tracing::{self, RequestSpan};

/// An API handler: a pure function of the request.
pub type ApiHandler = Box<dyn Fn(&ApiRequest<'_>) -> HandlerResult + Send + Sync>;

/// A request on its way to a worker, boxed: the queue's slots hold a
/// pointer, not the ~560 bytes of a request, so the bounded channel's
/// `QUEUE_DEPTH` slots (allocated and initialised up front) cost 8 bytes each
/// and a request is not copied into the queue and out again.
pub type Job = Box<QueuedRequest>;

/// What a [`Job`] holds.
pub struct QueuedRequest {
    req: tiny_http::Request,
    meta: Meta,
    /// Its route, found on the I/O thread: the worker does not route again.
    routed: Routed,
    body: Vec<u8>,
    /// When it entered the queue (its age is checked against `QUEUE_TIMEOUT`).
    queued: Instant,
    /// The server span, when tracing is on.
    span: Option<RequestSpan>,
}

/// What a worker checks before it runs a job.
#[derive(Clone)]
pub struct JobRules {
    /// A job older than this is answered 503 instead of run (`QUEUE_TIMEOUT`):
    /// its client has probably given up, and running it would only delay
    /// fresher requests.
    pub queue_timeout: Duration,
    /// Closed at the shutdown deadline: no job starts after it.
    pub gate: Arc<CommitGate>,
}

/// The status recorded for a queued request whose client left (nginx's "client closed
/// request"; never seen by the client).
pub const CLIENT_GONE: u16 = 499;

/// Seconds a shed client is told to wait before retrying.
pub const RETRY_AFTER_SECS: &str = "1";

/// Everything the public listener's request path needs, shared by the I/O
/// thread and every worker.
pub struct ApiDispatcher {
    pub router: Router<ApiHandler>,
    pub health: Arc<Health>,
    pub hooks: Arc<dyn Hooks>,
    pub max_body_bytes: u64,
    /// Queued requests dropped unstarted at the shutdown deadline, by
    /// whichever thread dropped them (a worker that finds the gate closed,
    /// or the shutdown sequence emptying the queue): the summary's count.
    pub unstarted_dropped: AtomicUsize,
}

impl ApiDispatcher {
    /// Connection thread: answer inline or queue for a worker.
    pub fn dispatch(&self, submitter: &Submitter<Job>, req: tiny_http::Request) {
        let hooks = &*self.hooks;
        begin(req, &self.health, hooks, |mut req, mut meta| {
            let (path, _) = meta.path_and_query(&req);
            let (route, routed) = match self.router.at(meta.method, path) {
                Match::Found {
                    pattern, routed, ..
                } => (pattern, routed),
                Match::MethodNotAllowed { pattern, allow } => {
                    meta.route = pattern;
                    let answer = method_not_allowed(meta.method, allow);
                    let span = start_span(&req, &meta);
                    return respond_in_span(req, &meta, answer, hooks, span);
                }
                Match::ServerOptions { allow } => {
                    meta.route = pipeline::ASTERISK;
                    let answer = server_options(allow);
                    let span = start_span(&req, &meta);
                    return respond_in_span(req, &meta, answer, hooks, span);
                }
                Match::NotFound => {
                    let answer = Err(Problem::new(404, "no such route"));
                    let span = start_span(&req, &meta);
                    return respond_in_span(req, &meta, answer, hooks, span);
                }
            };
            meta.route = route;
            let mut span = start_span(&req, &meta);
            let body = match read_body(&mut req, self.max_body_bytes) {
                Ok(body) => body,
                Err(problem) => return respond_in_span(req, &meta, Err(problem), hooks, span),
            };
            if let Some(span) = &mut span {
                span.queued();
            }
            if let Err(job) = submitter.try_submit(Box::new(QueuedRequest {
                req,
                meta,
                routed,
                body,
                span,
                queued: Instant::now(),
            })) {
                hooks.shed(&job.meta);
                let shed = Problem::new(503, "the server is at capacity; retry shortly")
                    .with_header("Retry-After", RETRY_AFTER_SECS);
                respond_in_span(job.req, &job.meta, Err(shed), hooks, job.span);
            }
        });
    }

    /// Worker thread: drop the job if the shutdown deadline has passed,
    /// answer 503 if it waited longer than `QUEUE_TIMEOUT`, else run it.
    /// Commit permits taken while it runs are held until its answer is
    /// written (see `db::commit_gate`).
    pub fn run_job(&self, slot: &WorkerSlot, job: Job, rules: &JobRules) {
        if rules.gate.is_closed() {
            return self.drop_unstarted(job);
        }
        let taken = Instant::now();
        let waited = taken.saturating_duration_since(job.queued);
        if waited > rules.queue_timeout {
            return self.expire(job, waited, rules.queue_timeout);
        }
        commit_gate::answer_scope(|| self.work(slot, job, taken));
    }

    /// A queued job that waited too long: 503 + `Retry-After`, counted.
    fn expire(&self, mut job: Job, waited: Duration, limit: Duration) {
        let hooks = &*self.hooks;
        pipeline::with_context(job.meta.log_context(), || {
            hooks.expired(&job.meta);
            log::warn!(
                route = job.meta.route,
                queued_ms = pipeline::millis(waited);
                "request waited longer than QUEUE_TIMEOUT; answered 503 without running it"
            );
            let expired = Problem::new(
                503,
                format!(
                    "the request waited more than {} ms for a worker; retry shortly",
                    limit.as_millis()
                ),
            )
            .with_header("Retry-After", RETRY_AFTER_SECS);
            pipeline::respond(&mut job.req, &job.meta, Err(expired), hooks);
        });
    }

    /// A queued job the shutdown deadline caught before it started: dropped
    /// unexecuted (its connection is being cut), counted, logged at ERROR.
    pub fn drop_unstarted(&self, job: Job) {
        self.unstarted_dropped.fetch_add(1, Ordering::Relaxed);
        pipeline::with_context(job.meta.log_context(), || {
            self.hooks.dropped(&job.meta);
            log::error!(
                method = job.meta.method.as_str(),
                route = job.meta.route,
                queued_ms = pipeline::millis(job.queued.elapsed());
                "shutdown deadline: queued request dropped without running it"
            );
        });
        // Its client is told nothing (not a 500): the connection just closes.
        job.req.close_unanswered();
    }

    /// Worker thread: run the handler and answer. `taken`: when the worker
    /// took the job off the queue (its busy-since time).
    fn work(&self, slot: &WorkerSlot, job: Job, taken: Instant) {
        let QueuedRequest {
            mut req,
            meta,
            routed,
            body,
            span,
            ..
        } = *job;
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
            respond_in_span(req, &meta, Err(gone), hooks, span);
            return;
        }
        slot.set_busy(Busy {
            route: meta.route,
            request_id: meta.request_id,
            since: taken,
        });
        let log_context = match &span {
            Some(span) => span.log_context(&meta),
            None => meta.log_context(),
        };
        let entered = span.as_ref().map(|span| {
            span.dequeued();
            span.enter()
        });
        let status = pipeline::with_context(log_context, || {
            let (path, query) = meta.path_and_query(&req);
            let result = match self.router.found(&routed, path) {
                Some((handler, pattern, params)) => {
                    let view = ApiRequest {
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
                // The router is immutable and the path the same: what
                // matched on the I/O thread is found here.
                None => Err(Problem::new(404, "no such route")),
            };
            pipeline::respond(&mut req, &meta, result, hooks)
        });
        drop(entered);
        if let Some(span) = span {
            span.end(status);
        }
    }
}

/// The request's server span, when tracing is on.
fn start_span(req: &tiny_http::Request, meta: &Meta) -> Option<RequestSpan> {
    tracing::active().and_then(|t| t.start_request(req, meta))
}

/// [`pipeline::respond`] on the connection thread, inside the request's
/// span (its ids in the log line) when there is one; ends the span.
fn respond_in_span(
    mut req: tiny_http::Request,
    meta: &Meta,
    result: HandlerResult,
    hooks: &dyn Hooks,
    span: Option<RequestSpan>,
) {
    let Some(span) = span else {
        pipeline::respond(&mut req, meta, result, hooks);
        return;
    };
    let status = pipeline::with_context(span.log_context(meta), || {
        let _entered = span.enter();
        pipeline::respond(&mut req, meta, result, hooks)
    });
    span.end(status);
}

/// The start every listener shares: the request id and clock ([`Meta`]), the
/// `started` hook, the logging context, and the probes, answered inline.
/// Everything else is passed on to `route`, still inside the context.
pub fn begin(
    mut req: tiny_http::Request,
    health: &Health,
    hooks: &dyn Hooks,
    route: impl FnOnce(tiny_http::Request, Meta),
) {
    let mut meta = Meta::begin(&req);
    hooks.started(&meta);
    // A guard, not `pipeline::with_context`'s closure: the request would be moved into the
    // closure and out again (two ~560-byte copies per request where the size-optimised build
    // does not inline them away).
    let _context = crate::logging::context::enter(meta.log_context());
    let (path, _) = meta.path_and_query(&req);
    match probe(health, meta.method, path) {
        Some((pattern, answer)) => {
            meta.route = pattern;
            pipeline::respond(&mut req, &meta, answer, hooks);
        }
        None => route(req, meta),
    }
}

/// Answers the probe paths, which every listener serves inline.
pub fn probe(health: &Health, method: Method, path: &str) -> Option<(&'static str, HandlerResult)> {
    let (route, answer): (&'static str, fn(&Health) -> ApiResponse) = match path {
        "/healthz" => ("/healthz", probes::healthz),
        "/readyz" => ("/readyz", probes::readyz),
        "/startupz" => ("/startupz", probes::startupz),
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

/// `OPTIONS *`: 200, no body, and the methods this listener serves.
pub fn server_options(allow: &str) -> HandlerResult {
    Ok(ApiResponse::empty(200).with_header("Allow", allow.to_owned()))
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

/// The public listener's request path over `tiny_http::TestRequest`: what
/// is answered inline (probes, 404, 405, 413, 503 when the queue refuses)
/// and what a worker answers, as the hooks record it.
#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tiny_http::TestRequest;

    use super::*;
    use crate::db::CommitGate;
    use crate::health::NoCheckObserver;
    use crate::http::worker_pool::{WorkerPool, WorkerPoolSize};
    use crate::lifecycle::{ServiceState, State};

    /// Each finished request's route and status; how many were shed.
    #[derive(Default)]
    struct Recorder {
        finished: Mutex<Vec<(&'static str, u16)>>,
        shed: Mutex<u32>,
    }

    impl Hooks for Recorder {
        fn finished(&self, meta: &Meta, status: u16, _: Duration, _: usize) {
            self.finished
                .lock()
                .expect("lock")
                .push((meta.route, status));
        }
        fn shed(&self, _: &Meta) {
            *self.shed.lock().expect("lock") += 1;
        }
    }

    struct Fixture {
        dispatcher: Arc<ApiDispatcher>,
        recorder: Arc<Recorder>,
        state: Arc<ServiceState>,
        pool: WorkerPool<Job>,
    }

    fn fixture() -> Fixture {
        let handler: ApiHandler = Box::new(|req: &ApiRequest<'_>| {
            Ok(ApiResponse::text(200, &String::from_utf8_lossy(req.body)))
        });
        let router = Router::new()
            .route(Method::Post, "/echo", handler)
            .expect("route");
        let recorder = Arc::new(Recorder::default());
        let state = ServiceState::new();
        let health = Arc::new(Health::new(
            Arc::clone(&state),
            Vec::new(),
            Arc::new(NoCheckObserver),
        ));
        let dispatcher = Arc::new(ApiDispatcher {
            router,
            health,
            hooks: recorder.clone(),
            max_body_bytes: 8,
            unstarted_dropped: Default::default(),
        });
        let rules = JobRules {
            queue_timeout: Duration::from_secs(5),
            gate: CommitGate::new(),
        };
        let worker = Arc::clone(&dispatcher);
        let pool = WorkerPool::start(
            WorkerPoolSize {
                workers: 1,
                queue_depth: 4,
            },
            move |slot, job: Job| worker.run_job(slot, job, &rules),
        )
        .expect("workers");
        Fixture {
            dispatcher,
            recorder,
            state,
            pool,
        }
    }

    impl Fixture {
        /// Dispatches `req` and returns the status it finished with (waiting
        /// for a worker when it was queued).
        fn answer(&self, req: TestRequest) -> (&'static str, u16) {
            let before = self.recorder.finished.lock().expect("lock").len();
            self.dispatcher.dispatch(&self.pool.submitter(), req.into());
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(last) = self.recorder.finished.lock().expect("lock").get(before) {
                    return *last;
                }
                assert!(Instant::now() < deadline, "no answer");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn get(path: &str) -> TestRequest {
        TestRequest::new().with_path(path)
    }

    fn post(path: &str, body: &'static str) -> TestRequest {
        TestRequest::new()
            .with_method(tiny_http::Method::Post)
            .with_path(path)
            .with_body(body)
    }

    #[test]
    fn inline_and_worker_answers() {
        let f = fixture();
        let cases = [
            ("liveness", get("/healthz"), ("/healthz", 200)),
            ("starting", get("/startupz"), ("/startupz", 503)),
            ("not ready yet", get("/readyz"), ("/readyz", 503)),
            (
                "probe, wrong method",
                post("/healthz", ""),
                ("/healthz", 405),
            ),
            ("unknown route", get("/nope"), ("unmatched", 404)),
            ("wrong method", get("/echo"), ("/echo", 405)),
            ("body too large", post("/echo", "123456789"), ("/echo", 413)),
            ("run by a worker", post("/echo", "hi"), ("/echo", 200)),
        ];
        for (what, req, want) in cases {
            assert_eq!(f.answer(req), want, "{what}");
        }
        f.state.advance(State::Ready);
        assert_eq!(f.answer(get("/readyz")), ("/readyz", 200), "ready");
    }

    #[test]
    fn a_closed_queue_sheds_with_503() {
        let f = fixture();
        f.pool.close();
        assert_eq!(f.answer(post("/echo", "hi")), ("/echo", 503));
        assert_eq!(*f.recorder.shed.lock().expect("lock"), 1);
    }
}
