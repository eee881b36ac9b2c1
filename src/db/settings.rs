//! Database pool sizing and timeouts, decoupled from how configuration is parsed.
//!
//! `config` owns env/flag parsing (and the defaults); `app` builds this struct
//! from `MAX_CONNECTIONS`, `DB_CONN_MAX_LIFETIME`, `DB_ACQUIRE_TIMEOUT` and
//! `DB_STATEMENT_TIMEOUT`, so the data layer never reads the environment.

use std::time::Duration;

use crate::config::defaults;

/// What the pool needs to know. `Default` is the configuration's defaults
/// (`config::defaults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPoolSettings {
    /// Upper bound on open connections (>= 1); min idle is half of it.
    pub max_connections: u32,
    /// Connections older than this are closed and replaced.
    pub conn_max_lifetime: Duration,
    /// Longest a caller waits for a connection before `Unavailable` (503).
    pub acquire_timeout: Duration,
    /// Server-side `statement_timeout` on every connection.
    pub statement_timeout: Duration,
}

impl Default for DbPoolSettings {
    fn default() -> Self {
        DbPoolSettings {
            max_connections: defaults::MAX_CONNECTIONS,
            conn_max_lifetime: defaults::DB_CONN_MAX_LIFETIME,
            acquire_timeout: defaults::DB_ACQUIRE_TIMEOUT,
            statement_timeout: defaults::DB_STATEMENT_TIMEOUT,
        }
    }
}

impl DbPoolSettings {
    /// Min idle = max/2.
    pub fn min_idle(&self) -> u32 {
        self.max_connections / 2
    }
}
