//! Readiness's view of the database: a ping through the pool.
//!
//! The check takes a pooled connection (the path requests take, so a pool
//! that cannot hand out connections is reported) and pings it with an empty
//! query under a client-side timeout ([`PING_TIMEOUT`]): a hung server (a
//! stopped process, a black-holed network) fails the ping instead of
//! blocking the checker thread forever. `health` runs this on its own thread,
//! at most one at a time, and waits at most 2 s for it.
//!
//! After a database restart every idle pooled connection is dead. Reporting
//! the first dead one as "database down" would keep readiness failing for as
//! many rounds as there are stale connections after the server is back, so a
//! connection that fails with a connection error is discarded and the next
//! *idle* one tried. When no idle connection is left the error is reported
//! at once rather than waiting for the pool to open a new connection (which,
//! with the database down, takes the whole acquire timeout); the next check
//! asks the pool for a new one.

use std::time::{Duration, Instant};

use crate::db::error::{describe, is_connection_error};
use crate::db::Pool;
use crate::health::{DependencyCheck, CHECK_TIMEOUT};

/// Client-side bound on one ping.
pub const PING_TIMEOUT: Duration = CHECK_TIMEOUT;

/// Pings the database through the pool (the same path requests take).
pub struct DatabaseCheck {
    pub pool: Pool,
}

impl DependencyCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn required(&self) -> bool {
        true
    }

    fn check(&self) -> Result<(), String> {
        let deadline = Instant::now() + PING_TIMEOUT;
        // Enough attempts to walk past every stale idle connection.
        let attempts = self.pool.settings().max_connections.saturating_add(1);
        let mut last_error = String::new();
        for _ in 0..attempts {
            let mut conn = self.pool.acquire().map_err(|e| e.to_string())?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let e = match conn.client().is_valid(left) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            // Whatever happened, this connection's state is unknown now (a
            // timed-out ping may still be answered later): never reuse it.
            conn.mark_broken();
            drop(conn);
            last_error = if is_timeout(&e) {
                format!(
                    "ping: no answer within {}",
                    crate::config::format_duration(left)
                )
            } else {
                format!("ping: {}", describe(&e))
            };
            // A dead connection (closed socket, server restarted): try the
            // next idle one. Anything else (a timeout, a server error on a
            // live connection) is the database's answer.
            if !is_connection_error(&e) || self.pool.state().idle == 0 {
                return Err(last_error);
            }
        }
        if last_error.is_empty() {
            last_error = format!(
                "ping: no answer within {}",
                crate::config::format_duration(PING_TIMEOUT)
            );
        }
        Err(last_error)
    }
}

/// The driver's client-side timeout (`Client::is_valid`). tokio-postgres has
/// no public accessor for the error kind; its timeout error has no cause and
/// renders as "timeout waiting for server".
fn is_timeout(e: &postgres::Error) -> bool {
    e.code().is_none() && e.to_string() == "timeout waiting for server"
}
