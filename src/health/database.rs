//! Readiness's view of the database: a ping on a connection of its own.
//!
//! Why not a pooled connection: under load every pooled connection is busy,
//! and a check that waits for one would report a *busy* service as *down* —
//! pulling every replica out of the load balancer exactly when traffic
//! peaks. The check keeps one dedicated connection (outside the pool's
//! `MAX_CONNECTIONS`), opened lazily, and pings it with an empty query under a
//! client-side timeout ([`PING_TIMEOUT`]): a hung server (a stopped process, a
//! black-holed network) fails the ping instead of blocking the checker. A
//! connection that fails is dropped and the next check opens a new one, so a
//! database restart costs one failed check, not a stale connection forever.
//! `health` runs this on its own thread, at most one at a time.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::config::ConnectSpec;
use crate::db::error::describe;
use crate::db::{self};
use crate::duration_text::format_duration;
use crate::health::{CheckError, DependencyCheck, CHECK_TIMEOUT};

/// Client-side bound on one ping (and on opening its connection).
pub const PING_TIMEOUT: Duration = CHECK_TIMEOUT;

/// `application_name` of the readiness connection.
pub const APPLICATION_NAME: &str = "usersvc-readiness";

/// The `database` readiness dependency.
pub struct DatabaseCheck {
    spec: ConnectSpec,
    conn: Mutex<Option<postgres::Client>>,
}

impl DatabaseCheck {
    /// A check of the database `spec` names; connects on first use.
    pub fn new(spec: ConnectSpec) -> DatabaseCheck {
        DatabaseCheck {
            spec,
            conn: Mutex::new(None),
        }
    }

    /// Hands the check an open connection to the same database — start-up's migration
    /// connection — so getting ready opens one connection fewer (a
    /// connect is most of start-up's time). Replaces any connection held.
    pub fn adopt(&self, client: postgres::Client) {
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(client);
    }
}

impl DependencyCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn required(&self) -> bool {
        true
    }

    fn check(&self) -> Result<(), CheckError> {
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            let client = db::connect_with(&self.spec, PING_TIMEOUT, APPLICATION_NAME)
                .map_err(|e| CheckError::Connect(e.to_string()))?;
            *slot = Some(client);
        }
        let Some(client) = slot.as_mut() else {
            return Err(CheckError::Connect("no connection".to_owned()));
        };
        match client.is_valid(PING_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(e) => {
                *slot = None;
                Err(CheckError::Ping(if is_timeout(&e) {
                    format!("no answer within {}", format_duration(PING_TIMEOUT))
                } else {
                    describe(&e)
                }))
            }
        }
    }
}

/// `Client::is_valid` reports its own timeout with this message and no SQLSTATE.
fn is_timeout(e: &postgres::Error) -> bool {
    e.code().is_none() && e.to_string() == "timeout waiting for server"
}
