//! The r2d2 connection manager: a driver connection plus its statement cache.
//!
//! `r2d2_postgres` opens the connections; we wrap its client so that each
//! pooled connection carries the statements prepared on it
//! ([`StatementCache`]) and a `broken` flag. Marking a connection broken makes
//! r2d2 discard it when it is returned instead of handing a dead socket to
//! the next request.

use std::fmt;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use postgres::Client;
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::apply_by::ApplyBy;
use super::call_deadline::{find_socket, Watchdog};
use super::commit_gate::{self, CommitGate};
use super::error::{chain, redact};
use super::statements::{Db, StatementCache};

/// One pooled connection.
pub struct PgConnection {
    client: Client,
    cache: StatementCache,
    broken: bool,
    /// The connection's TCP socket in this process, for the call deadline
    /// (see [`super::call_deadline`]); `None` when it could not be found.
    socket: Option<RawFd>,
}

impl PgConnection {
    fn new(client: Client, socket: Option<RawFd>) -> Self {
        PgConnection {
            client,
            cache: StatementCache::default(),
            broken: false,
            socket,
        }
    }

    /// Runs `f` with a deadline: past it, `watchdog` cuts the connection's
    /// socket, `f`'s call fails, and the connection is marked broken.
    /// Returns `f`'s result and whether the deadline cut it.
    pub(crate) fn within<T>(
        &mut self,
        watchdog: &Watchdog,
        deadline: Instant,
        f: impl FnOnce(&mut PgConnection) -> T,
    ) -> (T, bool) {
        // The guard is created and dropped inside this `&mut self` borrow,
        // so the socket it names stays open while it is watched.
        let watch = watchdog.watch(self.socket, deadline);
        let value = f(self);
        let fired = watch.finish();
        if fired {
            self.broken = true;
        }
        (value, fired)
    }

    /// A query handle outside any transaction (each statement autocommits).
    pub fn db(&mut self) -> Db<'_, Client> {
        Db::new(&mut self.client, &mut self.cache)
    }

    /// The raw driver client, for work the cache does not fit (migrations,
    /// one-off admin statements).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Runs `f` inside a transaction with cached statements, then commits
    /// it behind the write fence `apply_by` ([`ApplyBy::commit_sql`]): a
    /// COMMIT that reaches the database after the service gave up on the
    /// call is refused, not applied. The outcome says whether a failure
    /// happened before COMMIT was sent (nothing can have been committed:
    /// safe to retry) or during COMMIT (unknown outcome for a lost
    /// connection; not committed for an error the database answered).
    pub(crate) fn transaction<T>(
        &mut self,
        f: &mut dyn FnMut(&mut Db<'_, Client>) -> Result<T, postgres::Error>,
        gate: &Arc<CommitGate>,
        apply_by: ApplyBy,
    ) -> Result<T, TxFailure<T>> {
        // Until COMMIT or ROLLBACK is answered the connection is inside a
        // transaction: if anything in between unwinds (a panicking handler)
        // or fails, the pool discards it rather than hand an open
        // transaction to the next request.
        let was_broken = std::mem::replace(&mut self.broken, true);
        self.client
            .batch_execute("BEGIN")
            .map_err(TxFailure::BeforeCommit)?;
        let body = {
            let mut db = Db::new(&mut self.client, &mut self.cache);
            f(&mut db).and_then(|value| {
                // The transaction's id, so that a COMMIT whose answer is
                // lost can be looked up afterwards (`txid_status`) instead
                // of reported unknown.
                transaction_id(&mut self.client).map(|xid| (value, xid))
            })
        };
        let (value, xid) = match body {
            Ok(done) => done,
            Err(e) => {
                self.rollback(was_broken);
                return Err(TxFailure::BeforeCommit(e));
            }
        };
        // Shutting down past the deadline: roll back rather than commit a
        // write whose client may never hear of it.
        let Some(permit) = gate.try_enter() else {
            self.rollback(was_broken);
            return Err(TxFailure::Refused);
        };
        let committed = self.client.batch_execute(&apply_by.commit_sql());
        commit_gate::keep_until_answered(permit);
        match committed {
            Ok(()) => {
                self.broken = was_broken;
                Ok(value)
            }
            Err(error) => {
                // The database answered (the fence, or COMMIT refused): the
                // transaction is aborted or over; end it. A lost connection
                // stays broken.
                if error.as_db_error().is_some() {
                    self.rollback(was_broken);
                }
                Err(TxFailure::Commit { error, xid, value })
            }
        }
    }

    /// Ends an aborted or open transaction; the connection goes back to the
    /// pool only if that worked.
    fn rollback(&mut self, was_broken: bool) {
        if self.client.batch_execute("ROLLBACK").is_ok() {
            self.broken = was_broken;
        }
    }

    /// Tells the pool to drop this connection instead of reusing it.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// A cheap liveness check (an empty query), used only on the recovery path.
    pub(crate) fn ping(&mut self, timeout: std::time::Duration) -> bool {
        self.client.is_valid(timeout).is_ok()
    }

    /// How many statements this connection has prepared so far.
    pub fn prepared_statements(&self) -> usize {
        self.cache.len()
    }
}

/// Whether the "socket unknown" warning has been logged (once per process).
static SOCKET_UNKNOWN_LOGGED: AtomicBool = AtomicBool::new(false);

/// `txid_current()` of the open transaction (one round trip, simple protocol).
fn transaction_id(client: &mut Client) -> Result<Option<i64>, postgres::Error> {
    let rows = client.simple_query("SELECT txid_current()")?;
    Ok(rows.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
        _ => None,
    }))
}

/// Where a transaction failed.
pub(crate) enum TxFailure<T> {
    /// In BEGIN or the body: the server rolls back; nothing was committed.
    BeforeCommit(postgres::Error),
    /// In COMMIT: it may or may not have been applied. `xid` lets the pool
    /// find out (`txid_status`); `value` is what `f` returned, for when it was.
    Commit {
        error: postgres::Error,
        xid: Option<i64>,
        value: T,
    },
    /// COMMIT was not sent: the shutdown deadline closed the commit gate.
    /// Rolled back; nothing was committed.
    Refused,
}

/// A connect/validate failure, already described and scrubbed of the password.
#[derive(Debug)]
pub struct ConnectError(pub String);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

/// Opens connections for r2d2.
pub struct Manager {
    inner: PostgresConnectionManager<MakeRustlsConnect>,
    secret: Option<String>,
}

impl Manager {
    pub(crate) fn new(
        config: postgres::Config,
        tls: MakeRustlsConnect,
        secret: Option<String>,
    ) -> Self {
        Manager {
            inner: PostgresConnectionManager::new(config, tls),
            secret,
        }
    }

    fn wrap(&self, e: &postgres::Error) -> ConnectError {
        ConnectError(redact(&chain(e), self.secret.as_deref()))
    }
}

impl r2d2::ManageConnection for Manager {
    /// Boxed: r2d2 moves a connection in and out of its idle list on every
    /// check-out and return, and `postgres::Client` (with its runtime) is
    /// several hundred bytes to copy each time; a box is a pointer.
    type Connection = Box<PgConnection>;
    type Error = ConnectError;

    fn connect(&self) -> Result<Box<PgConnection>, ConnectError> {
        let mut client = self.inner.connect().map_err(|e| self.wrap(&e))?;
        // The ports as the server sees them, to find our end of the socket.
        // One round trip (simple protocol); NULL over a Unix socket.
        let rows = client
            .simple_query("SELECT inet_client_port(), inet_server_port()")
            .map_err(|e| self.wrap(&e))?;
        let port = |row: &postgres::SimpleQueryRow, i| {
            row.get(i).and_then(|v: &str| v.parse::<u16>().ok())
        };
        let socket = rows.iter().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => find_socket(port(row, 0)?, port(row, 1)?),
            _ => None,
        });
        if socket.is_none() && !SOCKET_UNKNOWN_LOGGED.swap(true, Ordering::Relaxed) {
            log::warn!(
                target: "usersvc::db",
                "cannot find the database connection's socket (a Unix socket, or a proxy \
                 in between): database calls are bounded by statement_timeout only"
            );
        }
        Ok(Box::new(PgConnection::new(client, socket)))
    }

    fn is_valid(&self, conn: &mut Box<PgConnection>) -> Result<(), ConnectError> {
        conn.client
            .simple_query("")
            .map(|_| ())
            .map_err(|e| self.wrap(&e))
    }

    fn has_broken(&self, conn: &mut Box<PgConnection>) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

/// r2d2 reports background connect failures here; we log them scrubbed, at
/// `warn` (the pool keeps retrying; a request that cannot get a connection
/// gets its own 503 and log line).
///
/// While the database is down the pool retries continuously (every idle slot,
/// every few milliseconds), so the line is rate-limited: at most one per
/// [`CONNECT_ERROR_LOG_INTERVAL`], carrying how many failures it stands for.
#[derive(Debug, Default)]
pub(crate) struct LogConnectErrors {
    last: std::sync::Mutex<Option<std::time::Instant>>,
    suppressed: std::sync::atomic::AtomicU64,
}

/// At most one "database connection failed" line per this interval.
pub(crate) const CONNECT_ERROR_LOG_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(5);

impl r2d2::HandleError<ConnectError> for LogConnectErrors {
    fn handle_error(&self, error: ConnectError) {
        use std::sync::atomic::Ordering;
        let now = std::time::Instant::now();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| now.duration_since(t) < CONNECT_ERROR_LOG_INTERVAL) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let failures = self.suppressed.swap(0, Ordering::Relaxed) + 1;
        log::warn!(
            target: "usersvc::db",
            failures = failures;
            "database connection failed: {error}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use r2d2::HandleError;
    use std::sync::atomic::Ordering;

    #[test]
    fn connect_errors_are_logged_at_most_once_per_interval() {
        let h = LogConnectErrors::default();
        for _ in 0..50 {
            h.handle_error(ConnectError("refused".into()));
        }
        // The first failure was logged; the other 49 wait for the next line.
        assert_eq!(h.suppressed.load(Ordering::Relaxed), 49);
        // Once the interval has passed, the next failure logs and resets.
        *h.last.lock().expect("lock") =
            Some(std::time::Instant::now() - CONNECT_ERROR_LOG_INTERVAL);
        h.handle_error(ConnectError("refused".into()));
        assert_eq!(h.suppressed.load(Ordering::Relaxed), 0);
    }
}
