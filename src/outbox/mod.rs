//! The transactional outbox's delivery side: every user change wrote an
//! `events` row in its own transaction; this module delivers those rows to
//! `WEBHOOK_URL` at least once, in creation order per user, and purges
//! what is no longer needed.
//!
//! - [`store`]: the SQL (claiming with `FOR UPDATE SKIP LOCKED` and a
//!   lease, outcomes, backlog, retention), on a connection of its own.
//! - [`cloudevent`]: the CloudEvents 1.0 body, payload embedded verbatim.
//! - [`policy`]: which answers retry, park or succeed; back-off with jitter.
//! - [`webhook`]: one HTTP attempt, bounded by connect and total timeouts.
//! - [`worker`]: the `outbox` thread, its shutdown, `/debug/workers` status.
//! - [`wake`]: the decorator that wakes the worker when a write commits.

pub mod cloudevent;
pub mod policy;
pub mod store;
pub mod wake;
pub mod webhook;
pub mod worker;

pub use wake::WakeOnWrite;
pub use webhook::HeaderSupplier;
pub use worker::{
    NoopOutboxObserver, Outbox, OutboxHandle, OutboxObserver, OutboxSettings, POLL_INTERVAL,
};
