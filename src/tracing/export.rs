//! How spans that never reach the collector are counted.
//!
//! [`super::batch`] drops a span when its queue is full, when an export
//! fails (the whole batch), and when shutdown's flush bound runs out (what
//! is still unsent). Drops go to `otel_spans_dropped_total` and to one WARN
//! line at most once a minute (the first at once), so a dead collector
//! cannot flood the logs.

use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
