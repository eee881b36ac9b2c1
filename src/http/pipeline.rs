//! The middleware, as plain functions around a handler.
//!
//! Every request, whether answered inline on its listener's I/O thread (probes,
//! 404/405, 413, 503 when shed) or by a worker, goes through the same steps:
//!
//! 1. [`Meta::begin`]: the request id (the caller's `X-Request-ID` if sane,
//!    else a fresh UUID) and the start time;
//! 2. [`with_context`]: the id (and later the trace ids) in the thread-local
//!    logging context, so every line logged below carries them;
//! 3. [`recover_panics`]: a panicking handler becomes a 500 problem+json, a
//!    counter and a log line; the worker thread keeps serving;
//! 4. [`respond`]: problem+json rendering, `X-Request-ID` on every response,
//!    the write, one `request completed` line, and the [`Hooks`] (the
//!    metrics implement them).

use std::any::Any;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::http::addr_text::AddrText;
use crate::http::method::Method;
use crate::http::problem::Problem;
use crate::http::request::{header, TargetSplit};
use crate::http::request_id;
use crate::http::response::ApiResponse;
use crate::logging::context::{self, RequestContext};
use crate::logging::RequestId;
use crate::rate_log::RateLimitedLog;
use crate::tracing::ids::RequestIds;

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The route label of `OPTIONS *`, a question about the server.
pub const ASTERISK: &str = "*";

/// What a handler returns: an answer or a problem to render.
pub type HandlerResult = Result<ApiResponse, Problem>;

/// Observers of finished requests: the seams where metrics and tracing plug
/// in. Every method has a no-op default.
pub trait Hooks: Send + Sync {
    /// A request was parsed and is about to be answered or queued.
    fn started(&self, _meta: &Meta) {}
    /// A response was written (or failed to be written) for `meta`.
    fn finished(&self, _meta: &Meta, _status: u16, _elapsed: Duration, _bytes: usize) {}
    /// A handler panicked.
    fn panicked(&self, _meta: &Meta) {}
    /// A request was shed because the queue was full.
    fn shed(&self, _meta: &Meta) {}
    /// A queued request waited longer than `QUEUE_TIMEOUT` and was answered
    /// 503 without running.
    fn expired(&self, _meta: &Meta) {}
    /// A queued request was dropped unexecuted at the shutdown deadline.
    fn dropped(&self, _meta: &Meta) {}
    /// The HTTP layer refused a request before any handler saw it (400,
    /// 408, 413, 414, 431, 501, 505); called before the answer is written.
    fn refused(&self, _status: u16) {}
    /// A queued request was skipped because its client had closed the connection.
    fn abandoned(&self, _meta: &Meta) {}
}

/// Hooks that observe nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// Everything known about a request before its handler runs.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub method: Method,
    /// The matched route pattern, or [`UNMATCHED`].
    pub route: &'static str,
    pub request_id: RequestId,
    pub remote_addr: Option<SocketAddr>,
    pub started: Instant,
    /// Its trace and span ids, in every log line of it (`tracing::ids`).
    pub ids: RequestIds,
    /// Where its target's path and query are (see [`Meta::path_and_query`]).
    pub target: TargetSplit,
}

impl Meta {
    /// Starts the clock and settles the request id and the trace ids.
    pub fn begin(req: &tiny_http::Request) -> Meta {
        Meta {
            method: Method::from(req.method()),
            route: UNMATCHED,
            request_id: request_id::from_header(header(req.headers(), request_id::HEADER)),
            remote_addr: req.remote_addr().copied(),
            started: Instant::now(),
            ids: RequestIds::for_request(header(req.headers(), "traceparent")),
            target: TargetSplit::of(req.url()),
        }
    }

    /// The request's path and query ([`split_target`](crate::http::request::split_target)),
    /// found when it arrived.
    pub fn path_and_query<'r>(&self, req: &'r tiny_http::Request) -> (&'r str, &'r str) {
        self.target.apply(req.url())
    }
}

impl Meta {
    /// The ids the formatter adds to every line logged for this request.
    pub fn log_context(&self) -> RequestContext {
        RequestContext::traced(self.request_id, self.ids.trace_id, self.ids.span_id)
    }
}

/// Runs `f` with the request's ids in the logging context of this thread.
pub fn with_context<T>(ctx: RequestContext, f: impl FnOnce() -> T) -> T {
    let _guard = context::enter(ctx);
    f()
}

/// Runs a handler; a panic becomes a 500 problem (the panic hook has logged
/// the message and location with the request id), counted by the hooks.
pub fn recover_panics(
    meta: &Meta,
    hooks: &dyn Hooks,
    handler: impl FnOnce() -> HandlerResult,
) -> HandlerResult {
    match catch_unwind(AssertUnwindSafe(handler)) {
        Ok(result) => result,
        Err(payload) => {
            hooks.panicked(meta);
            log::error!(
                route = meta.route,
                panic = panic_message(payload.as_ref());
                "handler panicked"
            );
            Err(Problem::new(500, "the server hit an unexpected error"))
        }
    }
}

/// The text of a panic payload (`panic!("...")` gives `&str` or `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}

/// Renders, writes and logs the answer to `req`; returns the status sent.
/// Call it with the request context entered ([`with_context`]) so the log
/// line carries the ids.
///
/// The request is borrowed, not taken: a ~250-byte move per call where the
/// size-optimised build does not inline it. It is answered here; dropping it
/// afterwards does nothing more.
pub fn respond(
    req: &mut tiny_http::Request,
    meta: &Meta,
    result: HandlerResult,
    hooks: &dyn Hooks,
) -> u16 {
    let resp = match result {
        Ok(r) => r,
        Err(p) => ApiResponse::problem(&p, meta.request_id.as_str()),
    };
    let status = resp.status;
    let bytes = resp.body.len();
    let is_head = meta.method == Method::Head;
    let write = write_response(req, resp, &meta.request_id);
    let elapsed = meta.started.elapsed();
    let (path, _) = meta.path_and_query(req);
    let sent = if is_head { 0 } else { bytes };
    if let Err(e) = &write {
        log::debug!(error = e.to_string().as_str(); "response write failed");
    }
    log::info!(
        method = meta.method.as_str(),
        path = path,
        route = meta.route,
        status = status,
        duration_ms = millis(elapsed),
        bytes = sent,
        remote_addr = meta.remote_addr.map(AddrText::socket).as_ref().map_or("", AddrText::as_str);
        "request completed"
    );
    hooks.finished(meta, status, elapsed, sent);
    status
}

fn write_response(
    req: &mut tiny_http::Request,
    resp: ApiResponse,
    request_id: &RequestId,
) -> std::io::Result<()> {
    // Header values we build are ASCII; tiny_http drops a value that is not
    // rather than send it broken.
    let headers = resp
        .headers
        .iter()
        .chain([(request_id::HEADER, request_id.as_str())]);
    req.respond_bytes(tiny_http::StatusCode(resp.status), headers, resp.body)
}

/// A duration in milliseconds with microsecond precision (no float noise
/// like `2000.2067960000002` in the logs).
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The detail of a refusal: what the status means, and the parser's
/// reason when it gave one (fixed text such as "missing Host").
fn refusal_detail(status: u16, why: Option<&'static str>) -> Cow<'static, str> {
    let what = match status {
        400 => "the request is malformed",
        408 => "the request did not arrive in time",
        414 => "the request line is too long",
        417 => "the request has an expectation this server does not support",
        431 => "the request header fields are too large",
        501 => "the request uses a transfer coding this server does not implement",
        505 => "only HTTP/1.0 and HTTP/1.1 are supported",
        503 => "the server holds as many request bodies as it can; retry shortly",
        _ => "the request was refused",
    };
    match why {
        Some(why) => Cow::Owned(format!("{what}: {why}")),
        None => Cow::Borrowed(what),
    }
}

/// Warnings about a full body buffer: one per 10 s at most.
static BODY_BUFFER_FULL: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));

/// The answer to a request the HTTP layer refuses before any handler sees
/// it (malformed or smuggling-shaped framing, oversized heads or bodies, slow
/// clients, HTTP/2 preface): the same problem+json, with a fresh request id,
/// as every other error, and the same one `request completed` line (method
/// and path when the request line was read; the duration up to the answer).
/// Plugged in as `tiny_http::Limits::error_body`.
pub fn refused_by_http_layer(
    refusal: &tiny_http::Refusal<'_>,
) -> (Vec<tiny_http::Header>, Vec<u8>) {
    let status = refusal.status;
    let request_id = request_id::from_header(None);
    let problem = match status {
        413 => crate::http::problem::body_too_large(refusal.limits.max_body_bytes),
        _ => Problem::new(status, refusal_detail(status, refusal.why)),
    };
    if status == 503 {
        // 503 here is the body buffer only: say so, as the queue's sheds are
        // visible in their metric.
        BODY_BUFFER_FULL.warn(
            "usersvc::http",
            "request bodies refused with 503: the body buffer (MAX_BODY_BUFFER) is full",
            &format_args!("{} bytes held at most", refusal.limits.body_buffer.limit()),
        );
    }
    let body = problem.to_body(request_id.as_str());
    let (method, path) = refusal
        .request_line
        .map(|(method, target)| {
            let (path, _) = crate::http::request::split_target(target);
            (Method::from(method), path)
        })
        .unzip();
    let ids = RequestIds::for_request(None);
    let _ctx = context::enter(RequestContext::traced(
        request_id,
        ids.trace_id,
        ids.span_id,
    ));
    log::info!(
        method = method.map_or("", |m| m.as_str()),
        path = path.unwrap_or_default(),
        route = UNMATCHED,
        status = status,
        duration_ms = millis(refusal.started.elapsed()),
        bytes = body.len(),
        remote_addr = refusal.remote_addr.map(AddrText::socket).as_ref().map_or("", AddrText::as_str),
        refused = true;
        "request completed"
    );
    let headers = [
        ("Content-Type", crate::http::problem::CONTENT_TYPE),
        (request_id::HEADER, request_id.as_str()),
    ]
    .iter()
    .filter_map(|(n, v)| tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
    .collect();
    (headers, body)
}
