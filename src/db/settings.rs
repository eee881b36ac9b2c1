//! Database pool sizing and timeouts, decoupled from how configuration is parsed.
//!
//! `config.rs` (another module) owns env/flag parsing; it builds this struct
//! from `MAX_CONNECTIONS`, `DB_CONN_MAX_LIFETIME`, `DB_ACQUIRE_TIMEOUT` and
//! `DB_STATEMENT_TIMEOUT`, so the data layer never reads the environment.

use std::time::Duration;

/// What the pool needs to know. `Default` is SPEC's defaults.
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
            max_connections: 25,
            conn_max_lifetime: Duration::from_secs(300),
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

impl DbPoolSettings {
    /// SPEC: min idle = max/2.
    pub fn min_idle(&self) -> u32 {
        self.max_connections / 2
    }
}
