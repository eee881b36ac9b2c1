//! The connection pool every request goes through.
//!
//! Built on r2d2 with choices a busy service needs:
//! - `build_unchecked`: start-up does not block or fail while the database is
//!   down; readiness reports it and requests answer 503 until it is back.
//! - Opened late: [`Pool::prepare`] connects nothing and [`Pool::open`]
//!   starts the min-idle fill (`max/2` connects in the background). The
//!   service opens it once migrations are done, so a dozen connects do not
//!   compete with start-up's own for the database's and the machine's CPU
//!   (about a third of start-up-to-ready at the default pool size).
//! - No `SELECT 1` per checkout (`test_on_check_out(false)`): a round trip per
//!   request is the price of the common case to protect against the rare one.
//!   Instead [`Pool::read`] and [`Pool::write`] notice a dead connection when a
//!   statement fails with a connection error, discard it, and retry once on a
//!   connection that has just answered a ping — only where nothing can have
//!   been committed (a read, or a transaction that failed before COMMIT).
//! - `statement_timeout` travels in the startup packet (`options`), so it
//!   costs no extra round trip and survives `RESET ALL`.
//! - Acquire waits are bounded by the acquire timeout and reported to a
//!   [`PoolObserver`] (metrics); a timeout is `DbError::Unavailable`.
//! - A scheduled thread pool of 2 threads (r2d2's default is 3) opens
//!   connections in the background and reaps old ones (`conn_max_lifetime`).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use postgres::{Client, Transaction};
use scheduled_thread_pool::ScheduledThreadPool;

use super::dsn::Dsn;
use super::error::{describe, is_connection_error, redact, DbError};
use super::manager::{LogConnectErrors, Manager, PgConnection, TxFailure};
use super::observer::{AcquireOutcome, NoopObserver, PoolObserver};
use super::settings::PoolSettings;
use super::statements::Db;
use super::tls;

/// A connection checked out of the pool; returned when dropped.
pub type PooledConnection = r2d2::PooledConnection<Manager>;

/// Connection counts for `db_pool_connections{state}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Open connections, idle or in use.
    pub connections: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// The configured maximum.
    pub max: u32,
}

impl PoolState {
    /// Connections checked out right now.
    pub fn in_use(&self) -> u32 {
        self.connections.saturating_sub(self.idle)
    }
}

/// The pool. Cheap to clone (all clones share one pool); dropping the last
/// clone closes every connection.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<OnceLock<r2d2::Pool<Manager>>>,
    opener: Arc<Mutex<Option<Manager>>>,
    settings: PoolSettings,
    observer: Arc<dyn PoolObserver>,
    secret: Option<String>,
}

/// Threads r2d2 uses to open and reap connections in the background.
const POOL_THREADS: usize = 2;

impl Pool {
    /// Builds the pool and opens it: connections are made in the background
    /// (see the module docs). Errors only for an unusable URL, TLS setting
    /// or CA file.
    pub fn build(url: &str, settings: &PoolSettings) -> Result<Pool, DbError> {
        Pool::build_with_observer(url, settings, Arc::new(NoopObserver))
    }

    /// [`Pool::build`] with a metrics hook.
    pub fn build_with_observer(
        url: &str,
        settings: &PoolSettings,
        observer: Arc<dyn PoolObserver>,
    ) -> Result<Pool, DbError> {
        let pool = Pool::prepare(url, settings, observer)?;
        pool.open();
        Ok(pool)
    }

    /// Validates everything [`Pool::build`] does but opens nothing: no
    /// connection, no background thread. Until [`Pool::open`], acquiring
    /// fails at once with `Unavailable`.
    pub fn prepare(
        url: &str,
        settings: &PoolSettings,
        observer: Arc<dyn PoolObserver>,
    ) -> Result<Pool, DbError> {
        if settings.max_connections == 0 {
            return Err(DbError::Config("max_connections must be at least 1".into()));
        }
        let dsn = Dsn::parse(url)?;
        let secret = dsn.password();
        let connector = tls::connector(dsn.ssl_mode, dsn.root_cert.as_deref())?;
        let config = driver_config(&dsn, settings, "usersvc");
        let manager = Manager::new(config, connector, secret.clone());
        Ok(Pool {
            inner: Arc::new(OnceLock::new()),
            opener: Arc::new(Mutex::new(Some(manager))),
            settings: settings.clone(),
            observer,
            secret,
        })
    }

    /// Opens the pool: starts its background threads, which open the
    /// min-idle connections. Idempotent.
    pub fn open(&self) {
        let mut opener = self.opener.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(manager) = opener.take() else {
            return;
        };
        let threads = Arc::new(
            ScheduledThreadPool::builder()
                .num_threads(POOL_THREADS)
                .thread_name_pattern("db-pool-{}")
                .build(),
        );
        let settings = &self.settings;
        let pool = r2d2::Pool::builder()
            .max_size(settings.max_connections)
            .min_idle(Some(settings.min_idle()))
            .max_lifetime(non_zero(settings.conn_max_lifetime))
            .connection_timeout(at_least_1ms(settings.acquire_timeout))
            .test_on_check_out(false)
            .error_handler(Box::new(LogConnectErrors::default()))
            .thread_pool(threads)
            .build_unchecked(manager);
        // Set only here, under the `opener` lock, after `take`: cannot be set twice.
        let _ = self.inner.set(pool);
    }

    /// The settings the pool was built with.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Open and idle connection counts.
    pub fn state(&self) -> PoolState {
        let Some(inner) = self.inner.get() else {
            return PoolState {
                connections: 0,
                idle: 0,
                max: self.settings.max_connections,
            };
        };
        let s = inner.state();
        PoolState {
            connections: s.connections,
            idle: s.idle_connections,
            max: self.settings.max_connections,
        }
    }

    /// Checks out a connection, waiting at most the acquire timeout.
    /// The wait is reported to the observer.
    pub fn acquire(&self) -> Result<PooledConnection, DbError> {
        self.acquire_within(self.settings.acquire_timeout)
    }

    fn acquire_within(&self, budget: Duration) -> Result<PooledConnection, DbError> {
        let Some(inner) = self.inner.get() else {
            return Err(DbError::Unavailable(
                "the pool is not open yet (start-up has not finished)".to_owned(),
            ));
        };
        let start = Instant::now();
        let got = inner.get_timeout(at_least_1ms(budget));
        let waited = start.elapsed();
        match got {
            Ok(conn) => {
                self.observer
                    .acquire_finished(waited, AcquireOutcome::Acquired);
                Ok(conn)
            }
            Err(e) => {
                self.observer
                    .acquire_finished(waited, AcquireOutcome::TimedOut);
                Err(DbError::Unavailable(format!(
                    "no connection within {} ms: {}",
                    budget.as_millis(),
                    redact(&e.to_string(), self.secret.as_deref())
                )))
            }
        }
    }

    /// A connection that has just answered a ping. Used after a connection
    /// turned out dead: its idle siblings probably are too (server restart,
    /// mass termination), so each candidate is checked and dead ones dropped.
    fn acquire_live(&self) -> Result<PooledConnection, DbError> {
        let deadline = Instant::now() + self.settings.acquire_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DbError::Unavailable(format!(
                    "no live connection within {} ms",
                    self.settings.acquire_timeout.as_millis()
                )));
            }
            let mut conn = self.acquire_within(left)?;
            if conn.ping(left) {
                return Ok(conn);
            }
            conn.mark_broken();
        }
    }

    /// Runs read-only work (autocommit statements). A dead connection is
    /// discarded and the work retried once on a live one.
    pub fn read<T>(
        &self,
        mut f: impl FnMut(&mut Db<'_, Client>) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let mut conn = self.acquire()?;
        match f(&mut conn.db()) {
            Ok(v) => Ok(v),
            Err(e) if is_connection_error(&e) => {
                self.discard(&mut conn, &e);
                drop(conn);
                let mut conn = self.acquire_live()?;
                f(&mut conn.db()).map_err(|e| self.failed(&mut conn, e))
            }
            Err(e) => Err(self.failed(&mut conn, e)),
        }
    }

    /// Runs `f` in one transaction: committed if `f` returns `Ok`, rolled back
    /// otherwise. If the connection dies before COMMIT is sent nothing was
    /// committed, so the whole transaction is retried once on a live
    /// connection; if it dies during COMMIT the outcome is unknown and the
    /// error is `Unavailable` (an idempotency key makes a client retry safe).
    pub fn write<T>(
        &self,
        mut f: impl FnMut(&mut Db<'_, Transaction<'_>>) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let mut conn = self.acquire()?;
        match conn.transaction(&mut f) {
            Ok(v) => Ok(v),
            Err(TxFailure::BeforeCommit(e)) if is_connection_error(&e) => {
                self.discard(&mut conn, &e);
                drop(conn);
                let mut conn = self.acquire_live()?;
                match conn.transaction(&mut f) {
                    Ok(v) => Ok(v),
                    Err(TxFailure::BeforeCommit(e)) => Err(self.failed(&mut conn, e)),
                    Err(TxFailure::Commit(e)) => Err(self.commit_failed(&mut conn, e)),
                }
            }
            Err(TxFailure::BeforeCommit(e)) => Err(self.failed(&mut conn, e)),
            Err(TxFailure::Commit(e)) => Err(self.commit_failed(&mut conn, e)),
        }
    }

    /// Runs `f`: ONE autocommit statement that writes (a data-modifying CTE
    /// is one statement, applied all or nothing), in one round trip: no
    /// BEGIN, no COMMIT. For writes that fit one statement this replaces
    /// [`Pool::write`]'s four round trips.
    ///
    /// A connection error leaves the outcome unknown (the statement may have
    /// committed just before the answer was lost), so `f` is not simply run
    /// again: the connection is discarded and `recover` runs once on a
    /// connection that has just answered a ping. `recover` must find out
    /// whether the write was applied (e.g. look for the row by a value the
    /// statement wrote) and apply it if it was not.
    pub fn write_one<T>(
        &self,
        f: impl FnOnce(&mut Db<'_, Client>) -> Result<T, postgres::Error>,
        recover: impl FnOnce(&mut Db<'_, Client>) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let mut conn = self.acquire()?;
        match f(&mut conn.db()) {
            Ok(v) => Ok(v),
            Err(e) if is_connection_error(&e) => {
                self.discard(&mut conn, &e);
                drop(conn);
                let mut conn = self.acquire_live()?;
                recover(&mut conn.db()).map_err(|e| self.failed(&mut conn, e))
            }
            Err(e) => Err(self.failed(&mut conn, e)),
        }
    }

    fn discard(&self, conn: &mut PgConnection, e: &postgres::Error) {
        conn.mark_broken();
        log::debug!(
            target: "usersvc::db",
            "discarding dead connection, retrying once: {}",
            redact(&describe(e), self.secret.as_deref())
        );
    }

    fn failed(&self, conn: &mut PgConnection, e: postgres::Error) -> DbError {
        if is_connection_error(&e) {
            conn.mark_broken();
        }
        match DbError::from_postgres(e) {
            DbError::Unavailable(m) => DbError::Unavailable(redact(&m, self.secret.as_deref())),
            other => other,
        }
    }

    fn commit_failed(&self, conn: &mut PgConnection, e: postgres::Error) -> DbError {
        if is_connection_error(&e) {
            conn.mark_broken();
            return DbError::Unavailable(format!(
                "connection lost during COMMIT, outcome unknown: {}",
                redact(&describe(&e), self.secret.as_deref())
            ));
        }
        self.failed(conn, e)
    }
}

/// One connection outside the pool, for migrations and the `migrate` command:
/// same URL handling and TLS, no statement timeout (DDL may run long).
pub fn connect(url: &str, connect_timeout: Duration) -> Result<Client, DbError> {
    connect_as(url, connect_timeout, "usersvc-migrate")
}

/// [`connect`] under another `application_name` (what `pg_stat_activity`
/// shows), unless the URL sets one.
pub fn connect_as(
    url: &str,
    connect_timeout: Duration,
    application_name: &str,
) -> Result<Client, DbError> {
    let dsn = Dsn::parse(url)?;
    let secret = dsn.password();
    let connector = tls::connector(dsn.ssl_mode, dsn.root_cert.as_deref())?;
    let mut config = dsn.config.clone();
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    config
        .connect(connector)
        .map_err(|e| DbError::Unavailable(redact(&super::error::chain(&e), secret.as_deref())))
}

fn driver_config(dsn: &Dsn, settings: &PoolSettings, app: &str) -> postgres::Config {
    let mut config = dsn.config.clone();
    let timeout = format!(
        "-c statement_timeout={}",
        settings.statement_timeout.as_millis()
    );
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} {timeout}"),
        _ => timeout,
    };
    config.options(&options);
    if config.get_application_name().is_none() {
        config.application_name(app);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(at_least_1ms(settings.acquire_timeout));
    }
    config
}

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn at_least_1ms(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_timeout_is_appended_to_existing_options() {
        let dsn = Dsn::parse("postgres://u@h/db?options=-c%20search_path%3Dapp").expect("parse");
        let s = PoolSettings {
            statement_timeout: Duration::from_millis(1500),
            ..PoolSettings::default()
        };
        let c = driver_config(&dsn, &s, "usersvc");
        assert_eq!(
            c.get_options(),
            Some("-c search_path=app -c statement_timeout=1500")
        );
        assert_eq!(c.get_application_name(), Some("usersvc"));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)));
    }

    #[test]
    fn zero_max_connections_is_rejected() {
        let s = PoolSettings {
            max_connections: 0,
            ..PoolSettings::default()
        };
        assert!(matches!(
            Pool::build("postgres://u@h/db", &s),
            Err(DbError::Config(_))
        ));
    }

    #[test]
    fn build_does_not_connect_and_errors_hide_the_password() {
        // Port 1 on loopback: nothing listens; the build must still succeed.
        let s = PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_millis(300),
            ..PoolSettings::default()
        };
        let pool = Pool::build("postgres://app:pa55w0rd-x@127.0.0.1:1/db", &s).expect("build");
        let start = Instant::now();
        let err = pool.acquire().err().expect("no server");
        assert!(start.elapsed() < Duration::from_secs(2));
        let shown = format!("{err} / {err:?}");
        assert!(matches!(err, DbError::Unavailable(_)), "{shown}");
        assert!(!shown.contains("pa55w0rd-x"), "{shown}");
        let direct = connect(
            "postgres://app:pa55w0rd-x@127.0.0.1:1/db",
            Duration::from_millis(300),
        )
        .err()
        .map(|e| format!("{e} / {e:?}"))
        .unwrap_or_default();
        assert!(direct.contains("error connecting"), "{direct}");
        assert!(!direct.contains("pa55w0rd-x"), "{direct}");
    }
}
