//! The seam for outgoing HTTP calls: W3C `traceparent`/`tracestate` of the
//! span current on this thread.
//!
//! Every HTTP call the service makes must carry the trace it is part of.
//! The caller (e.g. the outbox worker's webhook delivery) asks for the
//! headers just before sending:
//!
//! ```ignore
//! let mut req = http::Request::post(url);
//! usersvc::tracing::propagation::inject_current(&mut |name, value| {
//!     req = std::mem::take(&mut req).header(name, value);
//! });
//! ```
//!
//! or takes [`current_traceparent`] alone. With tracing off, or with no
//! sampled span current on this thread, nothing is injected. A background
//! worker with no request span of its own can wrap the call in
//! [`client_span`], which starts a CLIENT span (a new trace, or a child of
//! whatever is current) and makes it current while the call runs.

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

/// The `traceparent` header value for the span current on this thread,
/// when tracing is on and that span is sampled.
pub fn current_traceparent() -> Option<String> {
    let mut found = None;
    inject_current(&mut |name, value| {
        if name == "traceparent" {
            found = Some(value.to_owned());
        }
    });
    found
}

/// Calls `set(name, value)` for `traceparent` (and `tracestate` when the
/// trace has one) of the span current on this thread; nothing when tracing
/// is off or that span is not sampled.
pub fn inject_current(set: &mut dyn FnMut(&'static str, &str)) {
    let Some(tracing) = super::active() else {
        return;
    };
    Context::map_current(|cx| {
        if !cx.span().span_context().is_sampled() {
            return;
        }
        tracing
            .propagator
            .inject_context(cx, &mut Setter(&mut *set));
    });
}

struct Setter<'a>(&'a mut dyn FnMut(&'static str, &str));

impl Injector for Setter<'_> {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => (self.0)("traceparent", &value),
            // The propagator writes an empty `tracestate` for a trace
            // without one; an empty header is not worth sending.
            "tracestate" if !value.is_empty() => (self.0)("tracestate", &value),
            _ => {}
        }
    }
}

/// Runs `call` (one outgoing HTTP request named `name`, such as
/// `POST webhook`) inside a CLIENT span that is current while it runs, so
/// [`inject_current`] inside `call` injects that span. `call` returns the
/// response status, if one came; ≥ 500 or none marks the span an error.
/// With tracing off it only runs `call`.
pub fn client_span<T>(name: &'static str, url: &str, call: impl FnOnce() -> (T, Option<u16>)) -> T {
    let Some(tracing) = super::active() else {
        return call().0;
    };
    let parent = Context::current();
    let span = tracing
        .tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_attributes([KeyValue::new("url.full", strip_userinfo(url))])
        .start_with_context(&tracing.tracer, &parent);
    let cx = parent.with_span(span);
    let (value, status) = {
        let _entered = cx.clone().attach();
        call()
    };
    let span = cx.span();
    match status {
        Some(code) => {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
            if code >= 500 {
                span.set_status(Status::error(""));
            }
        }
        None => span.set_status(Status::error("no response")),
    }
    span.end();
    value
}

/// A URL without any `user:password@` (never exported).
fn strip_userinfo(url: &str) -> String {
    crate::config::HttpUrl::parse(url)
        .map(|u| u.redacted().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::OtelSampler;
    use crate::tracing::{install, TracingSettings};

    #[test]
    fn a_client_span_is_current_inside_its_call_only() {
        // A collector nobody listens on: spans are dropped, nothing waits.
        let settings = TracingSettings {
            traces_url: "http://127.0.0.1:1/v1/traces".into(),
            headers: Vec::new(),
            timeout: Duration::from_millis(100),
            sampler: OtelSampler::AlwaysOn,
            ratio: 1.0,
            service_name: "propagation-test".into(),
            resource_attributes: Vec::new(),
            schedule_delay: Duration::from_secs(1),
            max_queue_size: 16,
            max_export_batch_size: 16,
        };
        install(&settings).expect("install");
        assert_eq!(current_traceparent(), None, "no span is current");

        let (outer, inner, injected) =
            client_span("POST webhook", "http://u:pw@h.example/x", || {
                let outer = current_traceparent();
                let inner = client_span("GET nested", "http://h.example/y", || {
                    (current_traceparent(), Some(200))
                });
                let mut injected = Vec::new();
                inject_current(&mut |name, value| injected.push((name, value.to_owned())));
                ((outer, inner, injected), Some(204))
            });
        let outer = outer.expect("a traceparent inside the call");
        let parts: Vec<&str> = outer.split('-').collect();
        assert_eq!(parts.len(), 4, "{outer}");
        assert_eq!((parts[0], parts[3]), ("00", "01"), "{outer}");
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{outer}");
        let inner = inner.expect("nested");
        assert!(
            inner.starts_with(&format!("00-{}-", parts[1])),
            "same trace: {inner}"
        );
        assert_ne!(inner, outer, "a span of its own");
        assert_eq!(injected, vec![("traceparent", outer)]);
        assert_eq!(current_traceparent(), None, "left when the call returned");
    }
}
