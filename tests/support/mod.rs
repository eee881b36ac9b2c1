//! Shared fixtures for the integration tests (`mod support;` in each file).
//!
//! - [`client`]: a raw-TCP HTTP/1.1 client that shows the bytes on the wire.
//! - [`service`]: the real binary as a child process.
//! - [`TestDb`]: a fresh database per test on the shared server, so tests run
//!   in parallel without seeing each other's rows; dropped afterwards.
//! - [`TempCluster`]: a private PostgreSQL server for tests that stop the
//!   database or need TLS, so they never disturb the shared one.
//! - [`certs`]: a throwaway CA and server certificate.
//! - [`redis`]: the shared Redis, key prefixes, private `redis-server`s.
//! - [`webhook`]: a recording webhook receiver with scripted answers.
//!
//! Each test binary uses a different subset, hence `dead_code` is allowed.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod client;
pub mod cluster;
pub mod redis;
pub mod service;
pub mod test_db;
pub mod webhook;

use std::time::Duration;

pub use cluster::TempCluster;
pub use test_db::TestDb;

use usersvc::db::{DbPool, DbPoolSettings};

/// Settings for test pools: small, quick to time out.
pub fn settings(max_connections: u32) -> DbPoolSettings {
    DbPoolSettings {
        max_connections,
        conn_max_lifetime: Duration::from_secs(300),
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
    }
}

/// A pool on `url` (panics if the URL is unusable: test set-up).
pub fn pool(url: &str, max_connections: u32) -> DbPool {
    DbPool::build(url, &settings(max_connections)).expect("pool builds")
}
