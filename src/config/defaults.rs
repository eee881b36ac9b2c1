//! Every configuration default that is a number, in one place.
//!
//! Why a module: `resolve.rs` falls back to these, `db::DbPoolSettings`'s
//! `Default` is built from them, and the `--help` table (`vars.rs`) shows
//! them as text — a test below holds the text to these values, so the three
//! cannot drift apart.

use std::time::Duration;

/// `MAX_CONNECTIONS`: the database pool's size (and `WORKERS`' default).
pub const MAX_CONNECTIONS: u32 = 25;
/// `DB_CONN_MAX_LIFETIME`.
pub const DB_CONN_MAX_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// `DB_ACQUIRE_TIMEOUT`.
pub const DB_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// `DB_STATEMENT_TIMEOUT`.
pub const DB_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// `MAX_CONNS` per listener.
pub const MAX_CONNS: usize = 1024;
/// `READ_TIMEOUT`.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// `WRITE_TIMEOUT`.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// `IDLE_TIMEOUT`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `MAX_BODY_BYTES`.
pub const MAX_BODY_BYTES: u64 = 1 << 20;
/// `MAX_HEADER_BYTES`.
pub const MAX_HEADER_BYTES: u64 = 16 << 10;
/// `DRAIN_DELAY`.
pub const DRAIN_DELAY: Duration = Duration::from_secs(2);
/// `SHUTDOWN_TIMEOUT`.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);
/// `TERMINATION_GRACE_PERIOD`.
pub const TERMINATION_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// `QUEUE_TIMEOUT`.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// `CACHE_TTL`.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// `OUTBOX_MAX_ATTEMPTS`.
pub const OUTBOX_MAX_ATTEMPTS: u32 = 10;
/// `WEBHOOK_TIMEOUT`.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{format_duration, format_size, VARS};

    fn shown(name: &str) -> &'static str {
        VARS.iter()
            .find(|v| v.name == name)
            .map(|v| v.default)
            .unwrap_or_else(|| panic!("{name} in VARS"))
    }

    #[test]
    fn the_help_table_shows_these_defaults() {
        let durations = [
            ("DB_CONN_MAX_LIFETIME", DB_CONN_MAX_LIFETIME),
            ("DB_ACQUIRE_TIMEOUT", DB_ACQUIRE_TIMEOUT),
            ("DB_STATEMENT_TIMEOUT", DB_STATEMENT_TIMEOUT),
            ("READ_TIMEOUT", READ_TIMEOUT),
            ("WRITE_TIMEOUT", WRITE_TIMEOUT),
            ("IDLE_TIMEOUT", IDLE_TIMEOUT),
            ("DRAIN_DELAY", DRAIN_DELAY),
            ("SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT),
            ("TERMINATION_GRACE_PERIOD", TERMINATION_GRACE_PERIOD),
            ("QUEUE_TIMEOUT", QUEUE_TIMEOUT),
            ("CACHE_TTL", CACHE_TTL),
            ("WEBHOOK_TIMEOUT", WEBHOOK_TIMEOUT),
        ];
        for (name, value) in durations {
            assert_eq!(shown(name), format_duration(value), "{name}");
        }
        assert_eq!(shown("MAX_CONNECTIONS"), MAX_CONNECTIONS.to_string());
        assert_eq!(shown("MAX_CONNS"), MAX_CONNS.to_string());
        assert_eq!(
            shown("OUTBOX_MAX_ATTEMPTS"),
            OUTBOX_MAX_ATTEMPTS.to_string()
        );
        assert_eq!(shown("MAX_BODY_BYTES"), format_size(MAX_BODY_BYTES));
        assert_eq!(shown("MAX_HEADER_BYTES"), format_size(MAX_HEADER_BYTES));
    }
}
