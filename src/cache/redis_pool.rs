//! A small pool of Redis connections, each with connect, read and write
//! timeouts.
//!
//! Why our own `r2d2::ManageConnection`: the redis crate's r2d2 integration
//! connects with no timeout at all and leaves reads and writes unbounded, so
//! a Redis that stops answering (a paused process, a black-holed network)
//! would hang a worker thread — the cache is there to make requests faster,
//! never slower. Here a connect gives up after [`Timeouts::connect`], every
//! command after [`Timeouts::io`], and a connection that saw any I/O error or
//! time-out is marked broken and dropped (a late reply would otherwise be
//! read as the answer to the next command).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scheduled_thread_pool::ScheduledThreadPool;

use crate::config::RedisUrl;

/// The bounds on one Redis connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection (TCP, TLS, AUTH, SELECT).
    pub connect: Duration,
    /// One command's write and one reply's read.
    pub io: Duration,
}

impl Default for Timeouts {
    /// Short: a cache that answers later than this is slower than the
    /// database it fronts.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_millis(250),
            io: Duration::from_millis(100),
        }
    }
}

/// Why Redis could not be used.
#[derive(Debug)]
pub enum CacheError {
    /// No connection within the pool's wait (connect failures, all busy).
    NoConnection(String),
    /// A command failed (I/O, time-out, a server error).
    Command(redis::RedisError),
    /// A stored value could not be read back.
    Corrupt(String),
}

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheError::NoConnection(m) => write!(f, "no Redis connection: {m}"),
            CacheError::Command(e) => write!(f, "Redis command failed: {e}"),
            CacheError::Corrupt(m) => write!(f, "unreadable cache entry: {m}"),
        }
    }
}

impl std::error::Error for CacheError {}

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        CacheError::Command(e)
    }
}

/// One connection and whether it is still trustworthy.
pub struct RedisConnection {
    conn: redis::Connection,
    broken: AtomicBool,
}

impl RedisConnection {
    /// Runs `f` on the connection; any error but a plain server reply
    /// (`WRONGTYPE`, `NOSCRIPT`) marks it broken.
    pub fn run<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, CacheError> {
        f(&mut self.conn).map_err(|e| {
            if e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_unrecoverable_error()
            {
                self.broken.store(true, Ordering::Relaxed);
            }
            CacheError::Command(e)
        })
    }
}

/// Opens a connection with every bound set.
pub fn connect(
    client: &redis::Client,
    timeouts: Timeouts,
) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(timeouts.connect)?;
    conn.set_read_timeout(Some(timeouts.io))?;
    conn.set_write_timeout(Some(timeouts.io))?;
    Ok(conn)
}

/// The r2d2 manager: connects with [`Timeouts`], never pings on checkout
/// (a round trip per request), drops broken connections.
pub struct Manager {
    client: redis::Client,
    timeouts: Timeouts,
}

impl r2d2::ManageConnection for Manager {
    type Connection = RedisConnection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<RedisConnection, redis::RedisError> {
        Ok(RedisConnection {
            conn: connect(&self.client, self.timeouts)?,
            broken: AtomicBool::new(false),
        })
    }

    fn is_valid(&self, conn: &mut RedisConnection) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query::<()>(&mut conn.conn)
    }

    fn has_broken(&self, conn: &mut RedisConnection) -> bool {
        conn.broken.load(Ordering::Relaxed) || !redis::ConnectionLike::is_open(&conn.conn)
    }
}

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct RedisPool {
    pool: r2d2::Pool<Manager>,
    client: redis::Client,
    timeouts: Timeouts,
}

impl RedisPool {
    /// Up to `max_size` connections, opened on demand by one background
    /// thread (`redis-pool-0`); nothing is connected here, so a Redis that is
    /// down at start-up delays nothing.
    pub fn new(url: &RedisUrl, max_size: u32, timeouts: Timeouts) -> redis::RedisResult<RedisPool> {
        let client = redis::Client::open(url.expose_secret())?;
        let threads = Arc::new(
            ScheduledThreadPool::builder()
                .num_threads(1)
                .thread_name_pattern("redis-pool-{}")
                .build(),
        );
        let pool = r2d2::Pool::builder()
            .max_size(max_size.max(1))
            .min_idle(Some(0))
            .idle_timeout(None)
            .max_lifetime(None)
            .test_on_check_out(false)
            // A connect may take `connect`; waiting longer than that for a
            // pooled connection means Redis is not there.
            .connection_timeout(timeouts.connect + Duration::from_millis(50))
            // Failures are counted and logged (rate-limited) by the cache.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .thread_pool(threads)
            .build_unchecked(Manager {
                client: client.clone(),
                timeouts,
            });
        Ok(RedisPool {
            pool,
            client,
            timeouts,
        })
    }

    /// Whether Redis answers a `PING` on a fresh connection. Used by the
    /// breaker's probe instead of the pool: r2d2 keeps retrying a refused
    /// connect until its wait is over, while a direct connect fails at once
    /// (and within [`Timeouts::connect`] when nothing answers at all).
    pub fn probe(&self) -> Result<(), CacheError> {
        let mut conn = connect(&self.client, self.timeouts)?;
        redis::cmd("PING").query::<()>(&mut conn)?;
        Ok(())
    }

    /// Runs `f` on a pooled connection.
    pub fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, CacheError> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| CacheError::NoConnection(e.to_string()))?;
        conn.run(f)
    }
}
