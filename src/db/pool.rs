//! The connection pool every request goes through.
//!
//! Built on r2d2 with choices a busy service needs:
//! - `build_unchecked`: start-up does not block or fail while the database is
//!   down; readiness reports it and requests answer 503 until it is back.
//! - Opened late: [`DbPool::prepare`] connects nothing and [`DbPool::open`]
//!   starts the min-idle fill (`max/2` connects in the background). The
//!   service opens it once migrations are done, so a dozen connects do not
//!   compete with start-up's own for the database's and the machine's CPU
//!   (about a third of start-up-to-ready at the default pool size).
//! - No `SELECT 1` per checkout (`test_on_check_out(false)`): a round trip per
//!   request is the price of the common case to protect against the rare one.
//!   Instead [`DbPool::read`] and [`DbPool::write`] notice a dead connection when a
//!   statement fails with a connection error, discard it, and retry once on a
//!   connection that has just answered a ping — only where nothing can have
//!   been committed (a read, or a transaction that failed before COMMIT).
//!   The retry shares the first attempt's acquire budget.
//! - A COMMIT whose answer is lost with its connection (a terminated
//!   backend) is not left "unknown": each transaction reads its
//!   `txid_current()` before COMMIT, and the pool asks a live connection for
//!   `txid_status` — committed is a success, aborted a clean 503.
//! - Every call has a client-side deadline, `statement_timeout` +
//!   [`CALL_MARGIN`] within the operation's `acquire + statement` budget,
//!   enforced by [`super::call_deadline`]: a frozen database costs a 503,
//!   never a stuck worker. A cut call is not retried.
//! - A single-statement write carries a fence ([`ApplyBy`]): the database
//!   refuses to apply it once the service has given up on it, so a frozen
//!   host that thaws does not commit a write whose client was told 503.
//! - Past the shutdown deadline COMMIT is refused ([`CommitGate`]).
//! - `statement_timeout` travels in the startup packet (`options`), so it
//!   costs no extra round trip and survives `RESET ALL`.
//! - Acquire waits are bounded by the acquire timeout and reported to a
//!   [`DbPoolObserver`] (metrics); a timeout is `DbError::Unavailable`.
//! - A scheduled thread pool of 2 threads (r2d2's default is 3) opens
//!   connections in the background and reaps old ones (`conn_max_lifetime`).
//!   Other short, timed database chores can run there too ([`DbPool::schedule`]:
//!   the outbox's retention and gauges when there is no webhook to deliver to).

use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use postgres::Client;
use scheduled_thread_pool::{JobHandle, ScheduledThreadPool};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::apply_by::ApplyBy;
use super::call_deadline::Watchdog;
use super::commit_gate::{self, Canceller, CommitGate, CommitPermit};
use super::error::{describe, is_connection_error, redact, DbError};
use super::manager::{LogConnectErrors, Manager, PgConnection, TxFailure};
use super::observer::{AcquireOutcome, DbPoolObserver, NoopObserver};
use super::settings::DbPoolSettings;
use super::statements::Db;
use super::tls;
use crate::config::ConnectSpec;

/// A connection checked out of the pool; returned when dropped.
pub type PooledConnection = r2d2::PooledConnection<Manager>;

/// The answer to a write refused by the closed [`CommitGate`].
fn refused_at_shutdown() -> DbError {
    DbError::Unavailable("shutting down: the write was not committed".to_owned())
}

/// Why a single-statement write did not return its value.
#[derive(Debug)]
pub enum StatementError {
    /// Cut at its deadline or its connection died: it may or may not have
    /// committed (the connection has been discarded).
    Unknown,
    /// It did not commit: the database refused it, no connection came in
    /// time, or the shutdown gate was closed.
    Failed(DbError),
}

/// Connection counts for `db_pool_connections{state}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbPoolState {
    /// Open connections, idle or in use.
    pub connections: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// The configured maximum.
    pub max: u32,
}

impl DbPoolState {
    /// Connections checked out right now.
    pub fn in_use(&self) -> u32 {
        self.connections.saturating_sub(self.idle)
    }
}

/// The pool. Cheap to clone (all clones share one pool); dropping the last
/// clone closes every connection.
#[derive(Clone)]
pub struct DbPool {
    inner: Arc<OnceLock<r2d2::Pool<Manager>>>,
    /// The pool's maintenance threads, once [`DbPool::open`] started them.
    scheduler: Arc<OnceLock<Arc<ScheduledThreadPool>>>,
    opener: Arc<Mutex<Option<Manager>>>,
    /// Signalled (under `opener`) once `inner` is set: an acquire before
    /// [`DbPool::open`] waits for it, within its budget.
    opened: Arc<Condvar>,
    settings: DbPoolSettings,
    observer: Arc<dyn DbPoolObserver>,
    secret: Option<String>,
    gate: Arc<CommitGate>,
    watchdog: Watchdog,
    /// For cancel requests ([`DbPool::write_one`] at the shutdown deadline).
    tls: MakeRustlsConnect,
}

/// How far past `statement_timeout` the client waits for the server before
/// it cuts the call itself (the server should have cancelled it by then).
pub const CALL_MARGIN: Duration = Duration::from_millis(500);

/// What became of a transaction whose COMMIT answer was lost.
enum XactStatus {
    Committed,
    Aborted,
}

/// The bounds of one `read` or `write`, first attempt and retry together.
struct Budget {
    /// When the operation started (its first acquire's start).
    started: Instant,
    acquire_by: Instant,
    done_by: Instant,
}

/// Threads r2d2 uses to open and reap connections in the background. Two,
/// not one: after the pool has shrunk (idle connections reaped, backends
/// killed) a burst of requests waits for new connections, which r2d2 opens
/// one per thread at a time; with one thread, 50 concurrent creates on a
/// loaded machine waited past `DB_ACQUIRE_TIMEOUT` (tests/api_users.rs).
const POOL_THREADS: usize = 2;

impl DbPool {
    /// Builds the pool and opens it: connections are made in the background
    /// (see the module docs). Errors only for an unusable URL, TLS setting
    /// or CA file.
    pub fn build(url: &str, settings: &DbPoolSettings) -> Result<DbPool, DbError> {
        DbPool::build_with_observer(url, settings, Arc::new(NoopObserver))
    }

    /// [`DbPool::build`] with a metrics hook.
    pub fn build_with_observer(
        url: &str,
        settings: &DbPoolSettings,
        observer: Arc<dyn DbPoolObserver>,
    ) -> Result<DbPool, DbError> {
        let pool = DbPool::prepare(url, settings, observer)?;
        pool.open();
        Ok(pool)
    }

    /// Validates everything [`DbPool::build`] does but opens nothing: no
    /// connection, no background thread. Until [`DbPool::open`], acquiring
    /// waits for it within the acquire timeout, then fails with `Unavailable`.
    pub fn prepare(
        url: &str,
        settings: &DbPoolSettings,
        observer: Arc<dyn DbPoolObserver>,
    ) -> Result<DbPool, DbError> {
        DbPool::prepare_with(&ConnectSpec::parse(url)?, settings, observer)
    }

    /// [`DbPool::prepare`] for a connect spec already parsed (by `config`).
    pub fn prepare_with(
        dsn: &ConnectSpec,
        settings: &DbPoolSettings,
        observer: Arc<dyn DbPoolObserver>,
    ) -> Result<DbPool, DbError> {
        if settings.max_connections == 0 {
            return Err(DbError::Config("max_connections must be at least 1".into()));
        }
        let secret = dsn.password();
        let connector = tls::connector(dsn.ssl_mode, dsn.root_cert.as_deref())?;
        let config = driver_config(dsn, settings, "usersvc");
        let manager = Manager::new(config, connector.clone(), secret.clone());
        Ok(DbPool {
            inner: Arc::new(OnceLock::new()),
            scheduler: Arc::new(OnceLock::new()),
            opener: Arc::new(Mutex::new(Some(manager))),
            opened: Arc::new(Condvar::new()),
            settings: settings.clone(),
            observer,
            secret,
            gate: CommitGate::new(),
            watchdog: Watchdog::default(),
            tls: connector,
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
            .thread_pool(Arc::clone(&threads))
            .build_unchecked(manager);
        let _ = self.scheduler.set(threads);
        // Set only here, under the `opener` lock, after `take`: cannot be set twice.
        let _ = self.inner.set(pool);
        self.opened.notify_all();
    }

    /// Runs `job` on the pool's maintenance threads (those that open and reap its
    /// connections): first after `first`, then again after each delay it returns, until it
    /// returns `None` or the handle is cancelled. For short database chores only: while it
    /// runs, one of the two threads opens no connection. `None` before [`DbPool::open`].
    pub fn schedule(
        &self,
        first: Duration,
        job: impl FnMut() -> Option<Duration> + Send + 'static,
    ) -> Option<JobHandle> {
        let threads = self.scheduler.get()?;
        Some(threads.execute_with_dynamic_delay(first, job))
    }

    /// The r2d2 pool once [`DbPool::open`] has run, waiting for that until
    /// `by`: a request that arrives during start-up (or, with REUSE_PORT,
    /// is steered here a moment early) waits for the pool within its
    /// acquire budget instead of failing at once.
    fn opened_by(&self, by: Instant) -> Option<&r2d2::Pool<Manager>> {
        if let Some(inner) = self.inner.get() {
            return Some(inner);
        }
        let mut opener = self.opener.lock().unwrap_or_else(PoisonError::into_inner);
        while self.inner.get().is_none() {
            let left = by.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            opener = self
                .opened
                .wait_timeout(opener, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(opener);
        self.inner.get()
    }

    /// The settings the pool was built with.
    pub fn settings(&self) -> &DbPoolSettings {
        &self.settings
    }

    /// Open and idle connection counts.
    pub fn state(&self) -> DbPoolState {
        let Some(inner) = self.inner.get() else {
            return DbPoolState {
                connections: 0,
                idle: 0,
                max: self.settings.max_connections,
            };
        };
        let s = inner.state();
        DbPoolState {
            connections: s.connections,
            idle: s.idle_connections,
            max: self.settings.max_connections,
        }
    }

    /// Checks out a connection, waiting at most the acquire timeout.
    /// The wait is reported to the observer.
    pub fn acquire(&self) -> Result<PooledConnection, DbError> {
        let now = Instant::now();
        let (conn, _) = self.acquire_between(now, now + self.settings.acquire_timeout)?;
        Ok(conn)
    }

    /// Checks out a connection for a wait that began at `start` and must end
    /// by `by`; returns it with the time it was got. The clock is read once
    /// here, after the checkout (the caller read it for `start`): a GET reads
    /// the clock about 30 times, and these reads were 6 of them.
    fn acquire_between(
        &self,
        start: Instant,
        by: Instant,
    ) -> Result<(PooledConnection, Instant), DbError> {
        let (inner, from) = match self.inner.get() {
            Some(inner) => (inner, start),
            None => match self.opened_by(by) {
                Some(inner) => (inner, Instant::now()),
                None => {
                    return Err(DbError::Unavailable(
                        "the pool is not open yet (start-up has not finished)".to_owned(),
                    ))
                }
            },
        };
        let got = inner.get_timeout(at_least_1ms(by.saturating_duration_since(from)));
        let got_at = Instant::now();
        let waited = got_at.saturating_duration_since(start);
        match got {
            Ok(conn) => {
                self.observer
                    .acquire_finished(waited, AcquireOutcome::Acquired);
                Ok((conn, got_at))
            }
            Err(e) => {
                self.observer
                    .acquire_finished(waited, AcquireOutcome::TimedOut);
                Err(DbError::Unavailable(format!(
                    "no connection within {} ms: {}",
                    by.saturating_duration_since(start).as_millis(),
                    redact(&e.to_string(), self.secret.as_deref())
                )))
            }
        }
    }

    /// The first checkout of an operation, within its acquire budget.
    fn acquire_first(&self, budget: &Budget) -> Result<(PooledConnection, Instant), DbError> {
        self.acquire_between(budget.started, budget.acquire_by)
    }

    /// A connection that has just answered a ping, acquired by `acquire_by`
    /// (the first attempt's acquire deadline: a retry shares its budget, so
    /// a dead connection never doubles the wait). Used after a connection
    /// turned out dead: its idle siblings probably are too (server restart,
    /// mass termination), so each candidate is checked and dead ones dropped.
    fn acquire_live(&self, acquire_by: Instant) -> Result<PooledConnection, DbError> {
        loop {
            let now = Instant::now();
            let left = acquire_by.saturating_duration_since(now);
            if left.is_zero() {
                return Err(DbError::Unavailable(format!(
                    "no live connection within {} ms",
                    self.settings.acquire_timeout.as_millis()
                )));
            }
            let (mut conn, _) = self.acquire_between(now, acquire_by)?;
            if conn.ping(left) {
                return Ok(conn);
            }
            conn.mark_broken();
        }
    }

    /// The bounds of one unit of work started now: the acquire deadline
    /// (shared by a retry) and the deadline of the whole operation,
    /// `DB_ACQUIRE_TIMEOUT + DB_STATEMENT_TIMEOUT` plus [`CALL_MARGIN`].
    fn budget(&self) -> Budget {
        self.budget_from(Instant::now())
    }

    /// [`DbPool::budget`] of work that began at `started`.
    fn budget_from(&self, started: Instant) -> Budget {
        let acquire_by = started + self.settings.acquire_timeout;
        Budget {
            started,
            acquire_by,
            done_by: acquire_by + self.settings.statement_timeout + CALL_MARGIN,
        }
    }

    /// The client-side deadline of a call starting now: the server's
    /// `statement_timeout` plus [`CALL_MARGIN`], within the operation's.
    fn call_deadline(&self, budget: &Budget) -> Instant {
        self.call_deadline_from(budget, Instant::now())
    }

    /// [`DbPool::call_deadline`] for a call starting at `now` (a time just
    /// read, such as the checkout's).
    fn call_deadline_from(&self, budget: &Budget, now: Instant) -> Instant {
        (now + self.settings.statement_timeout + CALL_MARGIN).min(budget.done_by)
    }

    fn timed_out(&self) -> DbError {
        DbError::Unavailable(format!(
            "the database did not answer within DB_STATEMENT_TIMEOUT ({} ms) + {} ms; \
             the connection was cut",
            self.settings.statement_timeout.as_millis(),
            CALL_MARGIN.as_millis()
        ))
    }

    /// Runs read-only work (autocommit statements). A dead connection is
    /// discarded and the work retried once on a live one; a call cut at its
    /// deadline is not retried (the database is not answering).
    pub fn read<T>(
        &self,
        mut f: impl FnMut(&mut Db<'_, Client>) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let budget = self.budget();
        let (mut conn, got_at) = self.acquire_first(&budget)?;
        let deadline = self.call_deadline_from(&budget, got_at);
        let (result, cut) = conn.within(&self.watchdog, deadline, |c| f(&mut c.db()));
        match result {
            Ok(v) => Ok(v),
            Err(_) if cut => Err(self.timed_out()),
            Err(e) if is_connection_error(&e) => {
                self.discard(&mut conn, &e);
                drop(conn);
                let mut conn = self.acquire_live(budget.acquire_by)?;
                let deadline = self.call_deadline(&budget);
                let (result, cut) = conn.within(&self.watchdog, deadline, |c| f(&mut c.db()));
                match result {
                    Ok(v) => Ok(v),
                    Err(_) if cut => Err(self.timed_out()),
                    Err(e) => Err(self.failed(&mut conn, e)),
                }
            }
            Err(e) => Err(self.failed(&mut conn, e)),
        }
    }

    /// Runs `f` in one transaction: committed if `f` returns `Ok`, rolled back
    /// otherwise. If the connection dies before COMMIT is sent nothing was
    /// committed, so the whole transaction is retried once on a live
    /// connection; if it dies during COMMIT the outcome is unknown and the
    /// error is `Unavailable` (an idempotency key makes a client retry safe).
    /// Past the shutdown deadline COMMIT is not sent at all (the
    /// [`CommitGate`] is closed): rolled back, `Unavailable`. COMMIT travels
    /// behind the write fence (`ApplyBy::commit_sql`): a database that
    /// receives it after the call was cut — a frozen host thawing — refuses
    /// it instead of committing a write whose client was told 503.
    pub fn write<T>(
        &self,
        mut f: impl FnMut(&mut Db<'_, Client>) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let budget = self.budget();
        let (mut conn, got_at) = self.acquire_first(&budget)?;
        let deadline = self.call_deadline_from(&budget, got_at);
        let gate = &self.gate;
        let (result, cut) = conn.within(&self.watchdog, deadline, |c| {
            c.transaction(&mut f, gate, apply_by(deadline))
        });
        match result {
            Ok(v) => Ok(v),
            Err(_) if cut => Err(self.timed_out()),
            Err(TxFailure::BeforeCommit(e)) if is_connection_error(&e) => {
                self.discard(&mut conn, &e);
                drop(conn);
                let mut conn = self.acquire_live(budget.acquire_by)?;
                let deadline = self.call_deadline(&budget);
                let (result, cut) = conn.within(&self.watchdog, deadline, |c| {
                    c.transaction(&mut f, gate, apply_by(deadline))
                });
                match result {
                    Ok(v) => Ok(v),
                    Err(_) if cut => Err(self.timed_out()),
                    Err(failure) => self.tx_failed(conn, failure, &budget),
                }
            }
            Err(failure) => self.tx_failed(conn, failure, &budget),
        }
    }

    /// The fence of a write statement sent now inside [`DbPool::write`]'s
    /// transaction (`write_one` computes its own): it must start within the
    /// statement timeout. The COMMIT is fenced too, by the call's deadline;
    /// its lost answer is looked up by transaction id.
    pub fn apply_by_now(&self) -> ApplyBy {
        ApplyBy::after(self.settings.statement_timeout)
    }

    /// The commit gate: closed by the runtime at the shutdown deadline.
    pub fn commit_gate(&self) -> Arc<CommitGate> {
        Arc::clone(&self.gate)
    }

    fn tx_failed<T>(
        &self,
        mut conn: PooledConnection,
        failure: TxFailure<T>,
        budget: &Budget,
    ) -> Result<T, DbError> {
        match failure {
            TxFailure::BeforeCommit(e) => Err(self.failed(&mut conn, e)),
            TxFailure::Commit { error, xid, value } if is_connection_error(&error) => {
                // The answer to COMMIT was lost with the connection (a
                // terminated backend, a restart): ask a live one what
                // became of the transaction.
                conn.mark_broken();
                drop(conn);
                match xid.map(|xid| self.transaction_status(xid, budget)) {
                    Some(Some(XactStatus::Committed)) => Ok(value),
                    Some(Some(XactStatus::Aborted)) => Err(DbError::Unavailable(format!(
                        "connection lost during COMMIT; the transaction was not committed: {}",
                        redact(&describe(&error), self.secret.as_deref())
                    ))),
                    _ => Err(DbError::Unavailable(format!(
                        "connection lost during COMMIT, outcome unknown: {}",
                        redact(&describe(&error), self.secret.as_deref())
                    ))),
                }
            }
            TxFailure::Commit { error, .. } => Err(self.commit_failed(&mut conn, error)),
            TxFailure::Refused => Err(refused_at_shutdown()),
        }
    }

    /// What became of transaction `xid`, asked on a live connection within
    /// the operation's budget; `None` if that cannot be known in time.
    fn transaction_status(&self, xid: i64, budget: &Budget) -> Option<XactStatus> {
        loop {
            let now = Instant::now();
            if budget.done_by <= now {
                return None;
            }
            let (mut conn, got_at) = self.acquire_between(now, budget.done_by).ok()?;
            let deadline = self.call_deadline_from(budget, got_at);
            let (status, cut) = conn.within(&self.watchdog, deadline, |c| {
                c.client()
                    .query_one("SELECT txid_status($1)", &[&xid])
                    .map(|row| row.get::<_, Option<String>>(0))
            });
            match status {
                Ok(Some(s)) if s == "committed" => return Some(XactStatus::Committed),
                Ok(Some(s)) if s == "aborted" => return Some(XactStatus::Aborted),
                // Still "in progress" (the old backend is finishing): ask again.
                Ok(Some(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
                Ok(None) => return None,
                Err(e) => {
                    // A dead connection: try another; anything else: unknown.
                    if cut || is_connection_error(&e) {
                        conn.mark_broken();
                    }
                    if cut || !is_connection_error(&e) {
                        return None;
                    }
                }
            }
        }
    }

    /// Runs `f`: ONE autocommit statement that writes (a data-modifying CTE
    /// is one statement, applied all or nothing), in one round trip: no
    /// BEGIN, no COMMIT. For writes that fit one statement this replaces
    /// [`DbPool::write`]'s four round trips.
    ///
    /// A connection error leaves the outcome unknown (the statement may have
    /// committed just before the answer was lost), so `f` is not simply run
    /// again: the connection is discarded and `recover` runs on a connection
    /// that has just answered a ping — again, if that connection dies too (a
    /// storm of terminated backends), for as long as the acquire budget
    /// lasts. `recover` must find out whether the write was applied (e.g.
    /// look for the row by a value the statement wrote) and apply it if it
    /// was not.
    ///
    /// `f` and `recover` get the call's [`ApplyBy`] fence and must pass it to
    /// `usersvc_apply_by` in the statement that writes: a statement that
    /// reaches the database after the service gave up on it (a frozen host
    /// that thaws) then changes nothing, so a 503 never hides a write.
    pub fn write_one<T>(
        &self,
        f: impl FnOnce(&mut Db<'_, Client>, ApplyBy) -> Result<T, postgres::Error>,
        recover: impl FnMut(&mut Db<'_, Client>, ApplyBy) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        self.write_one_from(Instant::now(), f, recover)
    }

    /// [`DbPool::write_one`] for work whose budget began at `started` (a
    /// create that waited for a group commit before it ran alone).
    pub fn write_one_from<T>(
        &self,
        started: Instant,
        f: impl FnOnce(&mut Db<'_, Client>, ApplyBy) -> Result<T, postgres::Error>,
        recover: impl FnMut(&mut Db<'_, Client>, ApplyBy) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let budget = self.budget_from(started);
        let (permits, result) = self.run_statement(&budget, 1, f);
        // The statement is its own COMMIT: its permit is kept until the
        // answer is written, exactly as `write`'s COMMIT.
        permits
            .into_iter()
            .for_each(commit_gate::keep_until_answered);
        match result {
            Ok(v) => Ok(v),
            // Cut at its deadline or dead: the outcome is unknown either way,
            // so `recover` looks for the row on a live connection (within the
            // same budget: a frozen database answers 503, never twice the wait).
            Err(StatementError::Unknown) => self.recover_within(&budget, recover),
            Err(StatementError::Failed(e)) => Err(e),
        }
    }

    /// [`DbPool::write_one`] for a statement that writes for `requests`
    /// requests at once (group commit, [`super::group_commit`]), bounded as
    /// the oldest of them, which `started` is: its budget began then. Returns
    /// one commit permit per request (none if the gate was closed), which
    /// each request keeps until it is answered
    /// ([`commit_gate::keep_until_answered`]), and the statement's result. On
    /// [`StatementError::Unknown`] each request finds out on its own with
    /// [`DbPool::recover_write`].
    pub fn write_batch<T>(
        &self,
        started: Instant,
        requests: usize,
        f: impl FnOnce(&mut Db<'_, Client>, ApplyBy) -> Result<T, postgres::Error>,
    ) -> (Vec<CommitPermit>, Result<T, StatementError>) {
        self.run_statement(&self.budget_from(started), requests, f)
    }

    /// The recovery of [`DbPool::write_one`] for a request whose batch's
    /// outcome is unknown, within that request's budget (begun at `started`).
    pub fn recover_write<T>(
        &self,
        started: Instant,
        recover: impl FnMut(&mut Db<'_, Client>, ApplyBy) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        self.recover_within(&self.budget_from(started), recover)
    }

    /// When work begun at `started` must be done: its acquire budget, a
    /// statement and [`CALL_MARGIN`].
    pub fn done_by(&self, started: Instant) -> Instant {
        self.budget_from(started).done_by
    }

    /// One single-statement write: acquire, pass the shutdown gate (with a
    /// permit for each of `requests`), run `f` within its deadline.
    fn run_statement<T>(
        &self,
        budget: &Budget,
        requests: usize,
        f: impl FnOnce(&mut Db<'_, Client>, ApplyBy) -> Result<T, postgres::Error>,
    ) -> (Vec<CommitPermit>, Result<T, StatementError>) {
        let (mut conn, got_at) = match self.acquire_first(budget) {
            Ok(c) => c,
            Err(e) => return (Vec::new(), Err(StatementError::Failed(e))),
        };
        // The statement passes the shutdown gate before it is sent; while it
        // runs, closing the gate cancels it on the server (see `commit_gate`).
        let cancel = {
            let token = conn.client().cancel_token();
            let tls = self.tls.clone();
            Canceller::new(move || {
                if let Err(e) = token.cancel_query(tls) {
                    log::warn!(target: "usersvc::db", error = e.to_string().as_str(); "cancel request failed");
                }
            })
        };
        let Some((permits, in_flight)) = self.gate.enter_statement(requests, cancel) else {
            return (
                Vec::new(),
                Err(StatementError::Failed(refused_at_shutdown())),
            );
        };
        self.observer.write_statement(requests);
        let deadline = self.call_deadline_from(budget, got_at);
        let fence = apply_by(deadline);
        let (result, cut) = conn.within(&self.watchdog, deadline, |c| f(&mut c.db(), fence));
        drop(in_flight);
        let result = match result {
            Ok(v) => Ok(v),
            Err(e) if cut || is_connection_error(&e) => {
                self.discard(&mut conn, &e);
                Err(StatementError::Unknown)
            }
            Err(e) => Err(StatementError::Failed(self.failed(&mut conn, e))),
        };
        (permits, result)
    }

    /// Runs `recover` on a live connection until it answers, within
    /// `budget`: again if that connection dies too (a storm of terminated
    /// backends), for as long as the acquire budget lasts.
    fn recover_within<T>(
        &self,
        budget: &Budget,
        mut recover: impl FnMut(&mut Db<'_, Client>, ApplyBy) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        loop {
            let mut conn = self.acquire_live(budget.acquire_by)?;
            let deadline = self.call_deadline(budget);
            let fence = apply_by(deadline);
            let (result, cut) =
                conn.within(&self.watchdog, deadline, |c| recover(&mut c.db(), fence));
            match result {
                Ok(v) => return Ok(v),
                Err(_) if cut => return Err(self.timed_out()),
                // Killed too: the outcome is still unknown; ask again
                // (acquire_live ends the loop when the budget is spent).
                Err(e) if is_connection_error(&e) => self.discard(&mut conn, &e),
                Err(e) => return Err(self.failed(&mut conn, e)),
            }
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
    connect_as(url, connect_timeout, MIGRATE_APPLICATION_NAME)
}

/// `application_name` of [`connect`]'s connections (migrations).
pub const MIGRATE_APPLICATION_NAME: &str = "usersvc-migrate";

/// [`connect`] under another `application_name` (what `pg_stat_activity`
/// shows), unless the URL sets one.
pub fn connect_as(
    url: &str,
    connect_timeout: Duration,
    application_name: &str,
) -> Result<Client, DbError> {
    connect_with(&ConnectSpec::parse(url)?, connect_timeout, application_name)
}

/// [`connect_as`] for a connect spec already parsed (by `config`).
pub fn connect_with(
    dsn: &ConnectSpec,
    connect_timeout: Duration,
    application_name: &str,
) -> Result<Client, DbError> {
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

fn driver_config(dsn: &ConnectSpec, settings: &DbPoolSettings, app: &str) -> postgres::Config {
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
    // A dead host (no ACKs) is noticed by the kernel within these; a frozen
    // one (ACKs, no answers) by the call deadline (see `call_deadline`).
    if config.get_tcp_user_timeout().is_none() {
        config
            .tcp_user_timeout(settings.acquire_timeout + settings.statement_timeout + CALL_MARGIN);
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(5));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
    config
}

/// The fence of a call cut at `deadline`: [`CALL_MARGIN`] before the cut, as
/// wall-clock time (what the database compares with its own clock).
fn apply_by(deadline: Instant) -> ApplyBy {
    ApplyBy::after(
        deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(CALL_MARGIN),
    )
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
        let dsn =
            ConnectSpec::parse("postgres://u@h/db?options=-c%20search_path%3Dapp").expect("parse");
        let s = DbPoolSettings {
            statement_timeout: Duration::from_millis(1500),
            ..DbPoolSettings::default()
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
        let s = DbPoolSettings {
            max_connections: 0,
            ..DbPoolSettings::default()
        };
        assert!(matches!(
            DbPool::build("postgres://u@h/db", &s),
            Err(DbError::Config(_))
        ));
    }

    #[test]
    fn build_does_not_connect_and_errors_hide_the_password() {
        // Port 1 on loopback: nothing listens; the build must still succeed.
        let s = DbPoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_millis(300),
            ..DbPoolSettings::default()
        };
        let pool = DbPool::build("postgres://app:pa55w0rd-x@127.0.0.1:1/db", &s).expect("build");
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
