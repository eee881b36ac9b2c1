//! `cargo bench --bench tracing_span`: what tracing adds to one request on
//! the worker's thread, in ns and heap allocations (median of rounds), at
//! the default `parentbased_traceidratio` sampler with ratio 0.01:
//!
//! - no `traceparent` (the common case: 1 request in 100 sampled);
//! - a sampled `traceparent` (every span recorded: what ratio 1 costs per
//!   request), with one database statement span.
//!
//! Export (protobuf encoding, the POST) happens on the batch thread and is
//! not measured here; the collector is absent, so recorded spans take the
//! drop path, which costs what the enqueue does. With tracing off the cost
//! is one `OnceLock` read.

use std::hint::black_box;
use std::time::{Duration, Instant};

use usersvc::config::OtelSampler;
use usersvc::http::method::Method;
use usersvc::http::pipeline::Meta;
use usersvc::http::request_id;
use usersvc::tracing::{self, TracingSettings};

#[path = "support/measure.rs"]
mod measure;

#[global_allocator]
static GLOBAL: measure::Counting = measure::Counting;

fn report(name: &str, (ns, allocs): (f64, f64)) {
    println!("{name:<52} {ns:>9.1} ns  {allocs:>5.2} allocs");
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t = tracing::install(&TracingSettings {
        traces_url: "http://127.0.0.1:1/v1/traces".into(),
        headers: Vec::new(),
        timeout: Duration::from_millis(100),
        sampler: OtelSampler::ParentBasedTraceIdRatio,
        ratio: 0.01,
        service_name: "bench".into(),
        resource_attributes: Vec::new(),
        schedule_delay: Duration::from_secs(5),
        max_queue_size: 2048,
        max_export_batch_size: 512,
    })?;
    let meta = Meta {
        method: Method::Get,
        route: "/api/v1/users/{id}",
        request_id: request_id::from_header(None),
        remote_addr: Some("127.0.0.1:40000".parse()?),
        started: Instant::now(),
        ids: usersvc::tracing::ids::RequestIds::for_request(None),
        target: usersvc::http::request::TargetSplit::of("/api/v1/users/42"),
    };
    let plain = vec![
        header("Host", "127.0.0.1:8080"),
        header("User-Agent", "wrk"),
        header("Accept", "*/*"),
    ];
    let mut traced = plain.clone();
    traced.push(header(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    let request = |headers: &[tiny_http::Header]| {
        // A request's own ids (a root's trace id decides its sampling).
        let meta = Meta {
            ids: usersvc::tracing::ids::RequestIds::for_request(None),
            ..meta
        };
        let span = t.start_server_span(black_box(headers), "/api/v1/users/42", &meta);
        let entered = span.as_ref().map(|span| span.enter());
        let db: Result<(), postgres::Error> =
            tracing::db::span("SELECT id FROM users WHERE id = $1", || Ok(()));
        black_box(db.is_ok());
        drop(entered);
        if let Some(span) = span {
            span.end(200);
        }
    };
    report(
        "request span, no traceparent, ratio 0.01",
        measure::measure(|| request(&plain)),
    );
    report(
        "request span + 1 DB span, sampled parent",
        measure::measure(|| request(&traced)),
    );
    report(
        "the tracing::active() check (all that tracing off costs)",
        measure::measure(|| {
            black_box(black_box(tracing::active()).is_none());
        }),
    );
    Ok(())
}
