//! Hooks through which the pool reports what the metrics need.
//!
//! The pool must not know about Prometheus: it calls a [`DbPoolObserver`], and
//! the metrics module implements it to feed
//! `db_pool_acquire_duration_seconds`, `db_pool_acquire_timeouts_total` and
//! `db_write_statement_requests`.
//! `db_pool_connections{state}` comes from [`super::DbPool::state`] at scrape time.

use std::time::Duration;

/// How an acquire ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireOutcome {
    /// A connection was handed out.
    Acquired,
    /// No connection within the acquire timeout (the caller answers 503).
    TimedOut,
}

/// Receives one call per acquire. Must be cheap and must not block: it runs
/// on the request path.
pub trait DbPoolObserver: Send + Sync {
    /// `waited` is the time from asking the pool to getting an answer.
    fn acquire_finished(&self, waited: Duration, outcome: AcquireOutcome);

    /// A single-statement write was sent for `requests` requests (more than
    /// one: a group commit's batch).
    fn write_statement(&self, requests: usize) {
        let _ = requests;
    }
}

/// The default observer: records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl DbPoolObserver for NoopObserver {
    fn acquire_finished(&self, _waited: Duration, _outcome: AcquireOutcome) {}
}
