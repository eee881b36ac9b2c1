//! Everything that talks to PostgreSQL below the business rules.
//!
//! - [`pool`]: the r2d2 pool (TLS, statement timeout, dead-connection retry,
//!   acquire metrics hook) and a single [`connect`] for migrations.
//! - [`migrate`]: the embedded golang-migrate-style migrations.
//! - [`dsn`] / [`tls`]: connection-string handling and rustls per `sslmode`.
//! - [`error`]: [`DbError`] and the classification of driver errors.
//!
//! Repositories use [`DbPool::read`] / [`DbPool::write`] with a [`Db`] handle, whose
//! statements are prepared once per connection.

pub mod apply_by;
pub mod call_deadline;
pub mod commit_gate;
pub mod error;
pub mod group_commit;
pub mod manager;
pub mod migrate;
pub mod migrations;
pub mod observer;
pub mod pool;
pub mod settings;
pub mod statements;
pub mod tls;

pub use apply_by::ApplyBy;
pub use commit_gate::CommitGate;
pub use error::DbError;
pub use manager::PgConnection;
pub use observer::{AcquireOutcome, DbPoolObserver, NoopObserver};
pub use pool::{
    connect, connect_as, connect_with, DbPool, DbPoolState, PooledConnection, StatementError,
};
pub use settings::DbPoolSettings;
pub use statements::Db;
