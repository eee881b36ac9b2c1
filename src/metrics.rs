//! Prometheus metrics, exposed on the admin listener's `/metrics`.
//!
//! Every metric is registered once, here, in our own registry.
//! Label values are bounded by design: `path` is the route pattern (or
//! `unmatched`), `method` is one of the standard methods (or `other`),
//! `status` is the number we answered — nothing a client chooses can create a
//! new series. Gauges that describe other components (open connections,
//! queue depth, pool connections) are read from them at scrape time through
//! [`Metrics::on_scrape`] closures, so the request path pays nothing for
//! them.
//!
//! Readiness checks (`readiness_checks_total`, `readiness_dependency_up`)
//! are process-wide: the checks run inside `health`, which `main` builds
//! without a handle on [`Metrics`], so they are counted in two statics that
//! every [`Metrics`] registry also exports (like the `process_*` family,
//! they describe the process, not one registry).

#[cfg(target_os = "linux")]
mod process;
mod series;

use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::build_info;
use crate::cache::{CacheObserver, Lookup};
use crate::db::{AcquireOutcome, DbPoolObserver};
use crate::health::CheckObserver;
use crate::http::method::Method;
use crate::http::pipeline::{Hooks, Meta, UNMATCHED};
use crate::http::response::{ApiResponse, Headers};
use crate::lifecycle::State;
use crate::outbox::policy::AttemptResult;
use crate::outbox::store::Backlog;
use crate::outbox::OutboxObserver;

/// Request latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// DbPool acquire buckets: most acquires are microseconds; the timeout is seconds.
const ACQUIRE_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5,
];

/// `db_write_statement_requests` buckets: requests per single-statement
/// write, 1 alone, up to the group commit's batch of 64.
const BATCH_BUCKETS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// The values of `cache_requests_total{result}`.
pub const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "error"];

type ScrapeFn = Box<dyn Fn(&Metrics) + Send + Sync>;

/// `readiness_checks_total{dependency,result}`: dependency checks (database
/// pings) that finished, by `ok` / `error`. With coalescing this grows by at
/// most one per dependency per result TTL, however often `/readyz` is hit.
static READINESS_CHECKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "readiness_checks_total",
            "Readiness dependency checks run (e.g. database pings), by dependency and result.",
        ),
        &["dependency", "result"],
    )
    .expect("a valid metric definition")
});

/// `readiness_dependency_up{dependency}`: 1 if the last check passed.
static READINESS_UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "readiness_dependency_up",
            "1 if the last readiness check of the dependency passed, else 0.",
        ),
        &["dependency"],
    )
    .expect("a valid metric definition")
});

/// Makes a readiness dependency's series exist (at 0) before its first check,
/// so rates and alerts see it from the first scrape.
pub fn declare_readiness_dependency(dependency: &'static str) {
    for result in ["ok", "error"] {
        READINESS_CHECKS.with_label_values(&[dependency, result]);
    }
    READINESS_UP.with_label_values(&[dependency]);
}

/// Counts one finished readiness check. `dependency` is a fixed name
/// (`database`, `redis`), never client input.
pub fn record_readiness_check(dependency: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    READINESS_CHECKS
        .with_label_values(&[dependency, result])
        .inc();
    READINESS_UP
        .with_label_values(&[dependency])
        .set(i64::from(ok));
}

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    /// Tells this instance's series apart in the per-thread handles (`series`).
    instance: u64,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub active_connections: IntGauge,
    pub connections_open: IntGaugeVec,
    pub queue_depth: IntGauge,
    pub shed: IntCounter,
    pub queue_expired: IntCounter,
    pub shutdown_dropped: IntCounter,
    pub abandoned: IntCounter,
    pub panics: IntCounter,
    pub pool_connections: IntGaugeVec,
    pub pool_acquire: Histogram,
    pub pool_acquire_timeouts: IntCounter,
    pub write_statement_requests: Histogram,
    pub cache_requests: IntCounterVec,
    pub outbox_pending: IntGauge,
    pub outbox_delivered: IntCounter,
    pub outbox_failed: IntCounter,
    pub outbox_attempts: IntCounterVec,
    pub outbox_delivery_duration: Histogram,
    pub outbox_oldest_pending_age: Gauge,
    pub service_state: IntGaugeVec,
    scrape: Mutex<Vec<ScrapeFn>>,
}

impl Metrics {
    /// Creates and registers every metric (plus `process_*` on Linux).
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);

        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered."),
            &["method", "path", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from parsing a request to writing its response.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "path"],
        )?;
        let active_connections = IntGauge::new(
            "active_connections",
            "Requests being served right now (queued or running).",
        )?;
        let connections_open = IntGaugeVec::new(
            Opts::new("http_connections_open", "Open TCP connections."),
            &["listener"],
        )?;
        let queue_depth = IntGauge::new("http_queue_depth", "Requests waiting for a worker.")?;
        let shed = IntCounter::new(
            "http_requests_shed_total",
            "Requests answered 503 because the queue was full.",
        )?;
        let queue_expired = IntCounter::new(
            "http_requests_queue_expired_total",
            "Queued requests older than QUEUE_TIMEOUT, answered 503 without running.",
        )?;
        let shutdown_dropped = IntCounter::new(
            "http_requests_shutdown_dropped_total",
            "Queued requests dropped unexecuted at the shutdown deadline.",
        )?;
        let abandoned = IntCounter::new(
            "http_requests_abandoned_total",
            "Queued requests skipped because their client had closed the connection.",
        )?;
        let panics = IntCounter::new(
            "http_panics_total",
            "Handlers that panicked (answered 500).",
        )?;
        let pool_connections = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state."),
            &["state"],
        )?;
        let pool_acquire = Histogram::with_opts(
            HistogramOpts::new(
                "db_pool_acquire_duration_seconds",
                "Time spent waiting for a pooled database connection.",
            )
            .buckets(ACQUIRE_BUCKETS.to_vec()),
        )?;
        let pool_acquire_timeouts = IntCounter::new(
            "db_pool_acquire_timeouts_total",
            "Acquires that gave up after DB_ACQUIRE_TIMEOUT (answered 503).",
        )?;
        let write_statement_requests = Histogram::with_opts(
            HistogramOpts::new(
                "db_write_statement_requests",
                "Requests each single-statement write answered (more than one: a group commit).",
            )
            .buckets(BATCH_BUCKETS.to_vec()),
        )?;
        let cache_requests = IntCounterVec::new(
            Opts::new("cache_requests_total", "Cache look-ups by result."),
            &["result"],
        )?;
        let outbox_pending = IntGauge::new("outbox_pending", "Events not yet delivered.")?;
        let outbox_delivered =
            IntCounter::new("outbox_delivered_total", "Events delivered to the webhook.")?;
        let outbox_failed = IntCounter::new(
            "outbox_failed_total",
            "Events parked as failed (attempts exhausted, or refused by the receiver).",
        )?;
        let outbox_attempts = IntCounterVec::new(
            Opts::new(
                "outbox_attempts_total",
                "Webhook delivery attempts by result.",
            ),
            &["result"],
        )?;
        let outbox_delivery_duration = Histogram::with_opts(
            HistogramOpts::new(
                "outbox_delivery_duration_seconds",
                "Time of one webhook delivery attempt.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let outbox_oldest_pending_age = Gauge::new(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest event not yet delivered (0 when none).",
        )?;
        let service_state = IntGaugeVec::new(
            Opts::new(
                "service_state",
                "1 for the state the service is in, 0 for the others.",
            ),
            &["state"],
        )?;
        let build = IntGaugeVec::new(
            Opts::new("build_info", "Always 1; the labels say what was built."),
            &["version", "commit"],
        )?;
        build
            .with_label_values(&[build_info::VERSION, build_info::COMMIT])
            .set(1);

        reg(Box::new(http_requests.clone()))?;
        reg(Box::new(http_duration.clone()))?;
        reg(Box::new(active_connections.clone()))?;
        reg(Box::new(connections_open.clone()))?;
        reg(Box::new(queue_depth.clone()))?;
        reg(Box::new(shed.clone()))?;
        reg(Box::new(queue_expired.clone()))?;
        reg(Box::new(shutdown_dropped.clone()))?;
        reg(Box::new(abandoned.clone()))?;
        reg(Box::new(panics.clone()))?;
        reg(Box::new(pool_connections.clone()))?;
        reg(Box::new(pool_acquire.clone()))?;
        reg(Box::new(pool_acquire_timeouts.clone()))?;
        reg(Box::new(write_statement_requests.clone()))?;
        reg(Box::new(cache_requests.clone()))?;
        reg(Box::new(outbox_pending.clone()))?;
        reg(Box::new(outbox_delivered.clone()))?;
        reg(Box::new(outbox_failed.clone()))?;
        reg(Box::new(outbox_attempts.clone()))?;
        reg(Box::new(outbox_delivery_duration.clone()))?;
        reg(Box::new(outbox_oldest_pending_age.clone()))?;
        reg(Box::new(service_state.clone()))?;
        reg(Box::new(build))?;
        reg(Box::new(READINESS_CHECKS.clone()))?;
        reg(Box::new(READINESS_UP.clone()))?;
        reg(Box::new(crate::tracing::SPANS_DROPPED.clone()))?;
        reg(Box::new(crate::tracing::SPANS_EXPORTED.clone()))?;
        #[cfg(target_os = "linux")]
        reg(Box::new(process::ProcessMetrics::new()?))?;

        for state in State::ALL {
            service_state.with_label_values(&[state.as_str()]).set(0);
        }
        for state in ["idle", "in_use"] {
            pool_connections.with_label_values(&[state]).set(0);
        }
        // Exposed at 0 from the start (also while the cache is off), so that
        // rates and hit-ratio alerts have a series to work on.
        for result in CACHE_RESULTS {
            cache_requests.with_label_values(&[result]).inc_by(0);
        }
        for result in AttemptResult::ALL {
            outbox_attempts
                .with_label_values(&[result.as_str()])
                .inc_by(0);
        }
        Ok(Metrics {
            registry,
            instance: series::next_instance(),
            http_requests,
            http_duration,
            active_connections,
            connections_open,
            queue_depth,
            shed,
            queue_expired,
            shutdown_dropped,
            abandoned,
            panics,
            pool_connections,
            pool_acquire,
            pool_acquire_timeouts,
            write_statement_requests,
            cache_requests,
            outbox_pending,
            outbox_delivered,
            outbox_failed,
            outbox_attempts,
            outbox_delivery_duration,
            outbox_oldest_pending_age,
            service_state,
            scrape: Mutex::new(Vec::new()),
        })
    }

    /// Registers a closure run at every scrape, to refresh gauges read from
    /// other components.
    pub fn on_scrape(&self, f: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.scrape
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(f));
    }

    /// Sets the one-hot `service_state` gauge.
    pub fn set_state(&self, state: State) {
        for s in State::ALL {
            self.service_state
                .with_label_values(&[s.as_str()])
                .set(i64::from(s == state));
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> ApiResponse {
        for f in self
            .scrape
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            f(self);
        }
        let encoder = TextEncoder::new();
        let mut body = Vec::with_capacity(16 * 1024);
        match encoder.encode(&self.registry.gather(), &mut body) {
            Ok(()) => ApiResponse {
                status: 200,
                headers: Headers::content_type(encoder.format_type().to_owned()),
                body,
            },
            Err(e) => ApiResponse::text(500, &format!("metrics encoding failed: {e}")),
        }
    }
}

impl Hooks for Metrics {
    fn started(&self, _meta: &Meta) {
        self.active_connections.inc();
    }

    fn finished(&self, meta: &Meta, status: u16, elapsed: Duration, _bytes: usize) {
        self.active_connections.dec();
        series::count_request(
            self.instance,
            &self.http_requests,
            meta.method,
            meta.route,
            status,
        );
        series::observe_duration(
            self.instance,
            &self.http_duration,
            meta.method,
            meta.route,
            elapsed.as_secs_f64(),
        );
    }

    fn panicked(&self, _meta: &Meta) {
        self.panics.inc();
    }

    /// Refused before parsing was done: neither the method nor the route is
    /// known, so they are counted as `other` / `unmatched` (seven status
    /// values at most). No latency is observed: the request never started.
    fn refused(&self, status: u16) {
        let digits = itoa_status(status);
        let status = std::str::from_utf8(&digits).unwrap_or("0");
        self.http_requests
            .with_label_values(&[Method::Other.as_str(), UNMATCHED, status])
            .inc();
    }

    fn shed(&self, _meta: &Meta) {
        self.shed.inc();
    }

    fn expired(&self, _meta: &Meta) {
        self.queue_expired.inc();
    }

    fn dropped(&self, _meta: &Meta) {
        self.shutdown_dropped.inc();
    }

    fn abandoned(&self, _meta: &Meta) {
        self.abandoned.inc();
    }
}

/// A status code as three ASCII digits, without allocating.
/// A status code's three digits (the `status` label's text).
fn itoa_status(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

impl CheckObserver for Metrics {
    fn declared(&self, dependency: &'static str) {
        declare_readiness_dependency(dependency);
    }

    fn checked(&self, dependency: &'static str, ok: bool) {
        record_readiness_check(dependency, ok);
    }
}

impl DbPoolObserver for Metrics {
    fn acquire_finished(&self, waited: Duration, outcome: AcquireOutcome) {
        self.pool_acquire.observe(waited.as_secs_f64());
        if outcome == AcquireOutcome::TimedOut {
            self.pool_acquire_timeouts.inc();
        }
    }

    fn write_statement(&self, requests: usize) {
        self.write_statement_requests.observe(requests as f64);
    }
}

impl CacheObserver for Metrics {
    fn lookup(&self, result: Lookup) {
        self.cache_requests
            .with_label_values(&[result.as_str()])
            .inc();
    }
}

impl OutboxObserver for Metrics {
    fn attempt(&self, result: AttemptResult, took: Duration) {
        self.outbox_attempts
            .with_label_values(&[result.as_str()])
            .inc();
        self.outbox_delivery_duration.observe(took.as_secs_f64());
    }

    fn delivered(&self) {
        self.outbox_delivered.inc();
    }

    fn parked(&self) {
        self.outbox_failed.inc();
    }

    fn backlog(&self, backlog: Backlog) {
        self.outbox_pending.set(backlog.pending);
        self.outbox_oldest_pending_age
            .set(backlog.oldest_age_secs.max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_metric_is_exposed_once() {
        let m = Metrics::new().expect("metrics");
        m.set_state(State::Ready);
        // A labelled family is exposed once it has a series.
        m.http_requests
            .with_label_values(&["GET", "/x", "200"])
            .inc();
        m.http_duration
            .with_label_values(&["GET", "/x"])
            .observe(0.001);
        m.connections_open.with_label_values(&["public"]).set(1);
        m.cache_requests.with_label_values(&["hit"]).inc();
        let text = String::from_utf8(m.render().body).expect("utf8");
        for name in [
            "http_requests_total",
            "http_request_duration_seconds",
            "active_connections",
            "http_connections_open",
            "http_queue_depth",
            "http_requests_shed_total",
            "http_requests_queue_expired_total",
            "http_requests_shutdown_dropped_total",
            "http_requests_abandoned_total",
            "http_panics_total",
            "db_pool_connections",
            "db_pool_acquire_duration_seconds",
            "db_pool_acquire_timeouts_total",
            "db_write_statement_requests",
            "cache_requests_total",
            "outbox_pending",
            "outbox_delivered_total",
            "outbox_failed_total",
            "outbox_attempts_total",
            "outbox_delivery_duration_seconds",
            "outbox_oldest_pending_age_seconds",
            "service_state",
            "build_info",
        ] {
            let help = format!("# HELP {name} ");
            assert_eq!(text.matches(&help).count(), 1, "{name}:\n{text}");
        }
        assert!(text.contains("service_state{state=\"ready\"} 1"));
        assert!(text.contains("service_state{state=\"draining\"} 0"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn status_digits() {
        assert_eq!(&itoa_status(200), b"200");
        assert_eq!(&itoa_status(503), b"503");
        assert_eq!(&itoa_status(7), b"007");
    }
}
