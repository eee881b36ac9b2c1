//! Where spans leave the process, and how the ones that cannot are counted.
//!
//! The SDK's `BatchSpanProcessor` queues finished spans with a non-blocking
//! send and exports them from its own thread, so requests never wait for
//! the collector. It counts what it drops only privately, and export
//! failures are silent without the SDK's internal logs. So two thin wrappers
//! do the accounting:
//!
//! - [`Gate`] (the span processor the provider sees) keeps the number of
//!   spans handed over and not yet exported (queued, or in the batch being
//!   sent); at the queue's capacity it drops the span itself, so the SDK's
//!   own queue can never overflow and every drop is ours to count;
//! - [`Counting`] (the exporter the batch processor drives) takes a batch's
//!   spans off that number once its export has ended, and counts a failed
//!   batch as dropped. What is left at shutdown when the flush bound runs
//!   out (a black-holed collector) is counted as dropped too.
//!
//! Drops go to `otel_spans_dropped_total` and to one WARN line at most once
//! a minute (the first at once), so a dead collector cannot flood the logs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;

/// `otel_spans_dropped_total`: sampled spans that never reached the
/// collector (queue full, export failed, or still queued when shutdown's
/// flush bound ran out).
pub static SPANS_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "otel_spans_dropped_total",
        "Sampled spans dropped: export queue full, export failed, or unsent at shutdown.",
    )
    .expect("a valid metric definition")
});

/// `otel_spans_exported_total`: spans the collector accepted.
pub static SPANS_EXPORTED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "otel_spans_exported_total",
        "Spans the OTLP collector accepted.",
    )
    .expect("a valid metric definition")
});

/// How often at most a WARN line reports dropped spans.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Drops not yet reported in a log line, and when the last line was written.
static DROP_LOG: Mutex<(u64, Option<Instant>)> = Mutex::new((0, None));

/// Counts `n` dropped spans; logs them (with the ones since the last line)
/// unless a line was written less than a minute ago.
pub(crate) fn record_dropped(n: usize, reason: &str) {
    if n == 0 {
        return;
    }
    let n = n as u64;
    SPANS_DROPPED.inc_by(n);
    let mut log = DROP_LOG.lock().unwrap_or_else(PoisonError::into_inner);
    log.0 += n;
    let due = log.1.is_none_or(|at| at.elapsed() >= DROP_LOG_INTERVAL);
    if due {
        let dropped = std::mem::take(&mut log.0);
        log.1 = Some(Instant::now());
        drop(log);
        log::warn!(
            dropped = dropped,
            dropped_total = SPANS_DROPPED.get(),
            reason = reason;
            "spans dropped"
        );
    }
}

/// Spans handed to the batch processor whose export has not ended.
pub(crate) type Queued = Arc<AtomicUsize>;

/// The span processor the provider calls: bounds and counts, then passes
/// on to the SDK's batch processor (see the module docs).
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) inner: BatchSpanProcessor,
    pub(crate) queued: Queued,
    pub(crate) capacity: usize,
}

impl SpanProcessor for Gate {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            record_dropped(1, "export queue full");
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter the batch processor drives: counts exported and failed
/// batches (see the module docs).
#[derive(Debug)]
pub(crate) struct Counting<E> {
    pub(crate) inner: E,
    pub(crate) queued: Queued,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
        match &result {
            Ok(()) => SPANS_EXPORTED.inc_by(n as u64),
            Err(e) => record_dropped(n, &format!("export failed: {e}")),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
