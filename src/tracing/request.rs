//! The server span of one request, from parsing to the written response.
//!
//! Started on the connection thread once the route is known (its start time
//! is the request's, so the span covers reading the body and waiting in the
//! queue), carried to the worker inside the job, entered there around the
//! handler (so database spans become its children and log lines carry its
//! ids), and ended with the status after the response is written. The
//! caller's W3C `traceparent`/`tracestate` make it a child of the caller's
//! span; malformed headers are ignored (a new trace starts), never an error.

use std::time::{Instant, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer};
use opentelemetry::{Context, ContextGuard, KeyValue};

use super::{sampling, Tracing};
use crate::http::addr_text::AddrText;
use crate::http::method::Method;
use crate::http::pipeline::{Meta, UNMATCHED};
use crate::http::request::header;
use crate::logging::context::RequestContext;

/// The request headers as the propagator reads them.
struct Headers<'a>(&'a [tiny_http::Header]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        header(self.0, key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.field.as_str().as_str()).collect()
    }
}

/// A sampled request's span in flight (see the module docs). `Send`: it
/// travels from the connection thread to a worker.
pub struct RequestSpan {
    cx: Context,
    /// `(trace id, span id)`: what the log lines carry.
    ids: ([u8; 16], [u8; 8]),
    queued_at: Option<Instant>,
}

impl Tracing {
    /// Starts the server span of `req`, whose route is `meta.route`; `None`
    /// when the request is not sampled.
    pub fn start_request(&self, req: &tiny_http::Request, meta: &Meta) -> Option<RequestSpan> {
        self.start_server_span(req.headers(), req.url(), meta)
    }

    /// [`Tracing::start_request`] from the request's parts: its headers and
    /// target (`/path?query`). The sampling decision comes first
    /// ([`super::sampling`]): a request that is not sampled costs no span.
    pub fn start_server_span(
        &self,
        headers: &[tiny_http::Header],
        target: &str,
        meta: &Meta,
    ) -> Option<RequestSpan> {
        // No `traceparent`: a root, without asking the propagator.
        let parent = match header(headers, "traceparent") {
            Some(_) => self
                .propagator
                .extract_with_context(&Context::new(), &Headers(headers)),
            None => Context::new(),
        };
        let remote = parent
            .has_active_span()
            .then(|| parent.span().span_context().clone());
        // A root span's trace id is the one its log lines carry already.
        let trace_id = match &remote {
            Some(sc) => sc.trace_id(),
            None => TraceId::from_bytes(meta.ids.trace_id),
        };
        if !sampling::decide(self.sampler, remote.as_ref(), trace_id) {
            return None;
        }
        // The semantic conventions' spelling of a method outside the
        // standard set, and its span name.
        let (method, name) = match meta.method {
            Method::Other => ("_OTHER", "HTTP"),
            m => (m.as_str(), m.as_str()),
        };
        // `METHOD /route/{pattern}`, or just the method for no route (a
        // cached `&'static str` either way: no allocation).
        let name = if meta.route == UNMATCHED {
            name
        } else {
            route_name(name, meta.route)
        };
        let start = SystemTime::now()
            .checked_sub(meta.started.elapsed())
            .unwrap_or_else(SystemTime::now);
        let (path, _) = meta.target.apply(target);
        // Sized for every attribute of the span, these and the three set
        // later (queue time, status, error type): one allocation, which the
        // SDK keeps.
        let mut attributes = Vec::with_capacity(13);
        attributes.extend([
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", path.to_owned()),
            KeyValue::new("url.scheme", "http"),
        ]);
        if meta.route != UNMATCHED {
            attributes.push(KeyValue::new("http.route", meta.route));
        }
        if let Some(host) = header(headers, "host") {
            let (address, port) = split_host(host);
            attributes.push(KeyValue::new("server.address", address.to_owned()));
            if let Some(port) = port {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        if let Some(addr) = meta.remote_addr {
            attributes.push(KeyValue::new(
                "client.address",
                AddrText::ip(addr.ip()).as_str().to_owned(),
            ));
            attributes.push(KeyValue::new("client.port", i64::from(addr.port())));
        }
        if let Some(agent) = header(headers, "user-agent") {
            attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
        }
        attributes.push(KeyValue::new(
            "usersvc.request_id",
            meta.request_id.as_str().to_owned(),
        ));
        let builder = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes(attributes);
        let root_trace_id = remote.is_none().then_some(trace_id);
        let span_id = SpanId::from_bytes(meta.ids.span_id);
        let span = sampling::with_handed_ids(root_trace_id, span_id, || {
            builder.start_with_context(&self.tracer, &parent)
        });
        let cx = parent.with_span(span);
        let span = cx.span();
        let sc = span.span_context();
        // The SDK agrees (`sampling`: `decide_agrees_with_the_sdk_sampler`)
        // unless it is shutting down, when it records nothing.
        if !sc.is_sampled() || !span.is_recording() {
            return None;
        }
        let ids = (sc.trace_id().to_bytes(), sc.span_id().to_bytes());
        Some(RequestSpan {
            cx,
            ids,
            queued_at: None,
        })
    }
}

impl RequestSpan {
    /// The logging context of the request with this span's ids.
    pub fn log_context(&self, meta: &Meta) -> RequestContext {
        // The ids it was given from `meta` (`sampling::with_handed_ids`),
        // unless the SDK read the caller's trace id from a `traceparent`
        // that `tracing::ids` refused: the span's own, either way.
        RequestContext::traced(meta.request_id, self.ids.0, self.ids.1)
    }

    /// The request is about to wait in the worker queue.
    pub fn queued(&mut self) {
        self.queued_at = Some(Instant::now());
    }

    /// A worker took the request: the time it waited in the queue becomes
    /// the `usersvc.queue.duration_ms` attribute.
    pub fn dequeued(&self) {
        let Some(at) = self.queued_at else {
            return;
        };
        let waited = crate::http::pipeline::millis(at.elapsed());
        self.cx
            .span()
            .set_attribute(KeyValue::new("usersvc.queue.duration_ms", waited));
    }

    /// Makes this span the current one on this thread (for database spans
    /// and [`super::propagation`]) until the guard drops.
    pub fn enter(&self) -> ContextGuard {
        self.cx.clone().attach()
    }

    /// Ends the span with the response status (5xx = error).
    pub fn end(self, status: u16) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(""));
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
        }
        span.end();
    }
}

thread_local! {
    /// [`route_name`]'s answers on this thread.
    static ROUTE_NAMES: std::cell::RefCell<Vec<(&'static str, &'static str, &'static str)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `METHOD /route/{pattern}`, built once per method, route and thread and
/// leaked, so a span takes its name without allocating: bounded by the
/// methods times the route patterns compiled into the binary (both
/// `&'static str`) times the threads that start spans.
fn route_name(method: &'static str, route: &'static str) -> &'static str {
    let found = ROUTE_NAMES.with(|n| {
        n.borrow()
            .iter()
            .find(|(m, r, _)| std::ptr::eq(*m, method) && std::ptr::eq(*r, route))
            .map(|(_, _, name)| *name)
    });
    if let Some(name) = found {
        return name;
    }
    let name: &'static str = Box::leak(format!("{method} {route}").into_boxed_str());
    ROUTE_NAMES.with(|n| n.borrow_mut().push((method, route, name)));
    name
}

/// `host[:port]` or `[v6][:port]` of a `Host` header.
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((addr, after)) = rest.split_once(']') {
            return (addr, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((addr, port)) => match port.parse() {
            Ok(port) => (addr, Some(port)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::split_host;
    use crate::config::OtelSampler;
    use crate::http::method::Method;
    use crate::http::pipeline::Meta;
    use crate::http::request::TargetSplit;
    use crate::http::request_id;
    use crate::tracing::ids::RequestIds;
    use crate::tracing::{build, TracingSettings};

    /// At ratio 0.5 without a parent, about half the requests get a span,
    /// and every span's trace id is one the ratio rule samples: the trace id
    /// the decision was taken on is the one the SDK used (were it another,
    /// the SDK would decide again and keep a quarter, on ids of its own).
    #[test]
    fn a_sampled_root_keeps_the_trace_id_it_was_sampled_on() {
        let tracing = build(&TracingSettings {
            traces_url: "http://127.0.0.1:9/v1/traces".into(),
            headers: Vec::new(),
            timeout: Duration::from_millis(10),
            sampler: OtelSampler::ParentBasedTraceIdRatio,
            ratio: 0.5,
            service_name: "test".into(),
            resource_attributes: Vec::new(),
            schedule_delay: Duration::from_secs(3600),
            max_queue_size: 4096,
            max_export_batch_size: 512,
        })
        .expect("tracing builds");
        let n = 2_000;
        let mut sampled = 0;
        for _ in 0..n {
            let meta = Meta {
                method: Method::Get,
                route: "/api/v1/users/{id}",
                request_id: request_id::from_header(None),
                remote_addr: None,
                started: Instant::now(),
                ids: RequestIds::for_request(None),
                target: TargetSplit::of("/api/v1/users/1"),
            };
            let Some(span) = tracing.start_server_span(&[], "/api/v1/users/1", &meta) else {
                continue;
            };
            sampled += 1;
            // The span has the ids the request's log lines carry.
            assert_eq!(span.ids, (meta.ids.trace_id, meta.ids.span_id));
            let low = u64::from_be_bytes(span.ids.0[8..].try_into().expect("8 bytes"));
            assert!(
                low >> 1 < 1 << 62,
                "trace id {:02x?} is not sampled at 0.5",
                span.ids.0
            );
            span.end(200);
        }
        assert!(
            (800..=1_200).contains(&sampled),
            "{sampled} of {n} sampled at 0.5"
        );
        let _ = tracing
            .provider
            .shutdown_with_timeout(Duration::from_millis(10));
    }

    #[test]
    fn host_header_forms() {
        assert_eq!(split_host("api.example.com"), ("api.example.com", None));
        assert_eq!(split_host("127.0.0.1:8080"), ("127.0.0.1", Some(8080)));
        assert_eq!(split_host("[::1]:8080"), ("::1", Some(8080)));
        assert_eq!(split_host("[::1]"), ("::1", None));
        assert_eq!(split_host("h:x"), ("h:x", None));
    }
}
