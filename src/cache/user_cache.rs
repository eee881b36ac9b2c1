//! The read-through cache of single users, and the invalidation protocol
//! that keeps it from ever serving a value older than the last
//! acknowledged write.
//!
//! # The race, and how it is closed
//!
//! A plain "miss → read PostgreSQL → SET" loses against a concurrent write:
//!
//! ```text
//! reader: miss; SELECT → v1 ................................ SET v1   ← stale, for CACHE_TTL
//! writer:               UPDATE → v2; COMMIT; DEL; 200 OK
//! ```
//!
//! The writer's `DEL` ran before the reader's `SET`, so after the writer's
//! 200 every reader gets `v1`. Each user therefore has a *generation*
//! key next to its value key:
//!
//! - a reader's miss reads the generation together with the value (one
//!   `MGET`), reads PostgreSQL, then fills the cache with a script that
//!   `SET`s only if the generation is still the one it read;
//! - a writer, after its COMMIT and before answering, replaces the
//!   generation with a fresh random token and deletes the value, in one
//!   `MULTI`.
//!
//! If the writer's invalidation comes after the reader's `MGET`, the
//! reader's fill is refused (the token changed); if it came before, the
//! reader's `SELECT` started after the COMMIT and read the new value; a fill
//! that landed before the invalidation is deleted by it. Tokens are random,
//! never counters, so a generation key that expired and was recreated can
//! never match an old read; a reader whose window (miss to fill) exceeds
//! [`FILL_WINDOW`] does not fill at all, and generation keys live
//! [`GENERATION_TTL`], far longer than that window.
//!
//! # When Redis fails
//!
//! Nothing fails a request: errors count as `cache_requests_total{result=
//! "error"}`, are logged at most every 10 s, and feed a [`Breaker`] that
//! then skips Redis for a cool-down. A write whose invalidation fails is
//! still acknowledged (it is committed); its id goes on a *pending* list,
//! the breaker opens at once, this instance stops reading that id from
//! Redis, and the breaker closes again only once every pending invalidation
//! has been replayed. What this cannot prevent: another replica that still
//! reaches Redis while this one cannot may read the old value until the
//! replay or `CACHE_TTL`, whichever comes first (a split partition).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::breaker::{Breaker, BreakerPolicy, Permit};
use super::codec::{self, Keys};
use super::redis_pool::{CacheError, RedisPool};
use crate::rate_log::RateLimitedLog;
use crate::users::User;

/// How long a generation token lives (renewed by every write).
pub const GENERATION_TTL: Duration = Duration::from_secs(3600);

/// A reader slower than this from its `MGET` to its fill does not fill.
pub const FILL_WINDOW: Duration = Duration::from_secs(30);

/// Fills only if the generation is still the one the reader saw
/// (`ARGV[1]`, empty for none).
const FILL_SCRIPT: &str = r"
local g = redis.call('GET', KEYS[2])
if (g == false and ARGV[1] == '') or g == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// A look-up's outcome, for `cache_requests_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
    /// Redis failed, or was skipped because it recently did.
    Error,
}

impl Lookup {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Error => "error",
        }
    }
}

/// Receives every look-up's outcome (metrics).
pub trait CacheObserver: Send + Sync {
    fn lookup(&self, result: Lookup);
}

/// Counts nothing.
pub struct NoopCacheObserver;

impl CacheObserver for NoopCacheObserver {
    fn lookup(&self, _result: Lookup) {}
}

/// How the cache behaves.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `CACHE_TTL`.
    pub ttl: Duration,
    /// `CACHE_KEY_PREFIX`.
    pub prefix: String,
    pub breaker: BreakerPolicy,
}

/// What a miss remembers for its fill.
#[derive(Debug)]
pub struct MissTicket {
    keys: Keys,
    generation: Option<String>,
    at: Instant,
}

/// The read-through cache; see the module docs.
pub struct UserCache {
    redis: RedisPool,
    settings: CacheSettings,
    fill: redis::Script,
    breaker: Mutex<Breaker>,
    /// Ids whose invalidation failed, replayed before the breaker closes.
    pending: Mutex<HashSet<i64>>,
    observer: Arc<dyn CacheObserver>,
    errors: RateLimitedLog,
}

/// The result of [`UserCache::get`].
#[derive(Debug)]
pub enum Cached {
    Hit(User),
    /// Not cached: read PostgreSQL, then [`UserCache::fill`] with the ticket.
    Miss(MissTicket),
    /// Redis is not to be used for this read.
    Bypass,
}

impl UserCache {
    pub fn new(
        redis: RedisPool,
        settings: CacheSettings,
        observer: Arc<dyn CacheObserver>,
    ) -> UserCache {
        UserCache {
            redis,
            breaker: Mutex::new(Breaker::new(settings.breaker)),
            settings,
            fill: redis::Script::new(FILL_SCRIPT),
            pending: Mutex::new(HashSet::new()),
            observer,
            errors: RateLimitedLog::new(Duration::from_secs(10)),
        }
    }

    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pending(&self) -> MutexGuard<'_, HashSet<i64>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether Redis may be used now; a probe first replays the pending
    /// invalidations, and only their success closes the breaker.
    fn usable(&self) -> bool {
        let permit = self.breaker().permit(Instant::now());
        match permit {
            Permit::Use => true,
            Permit::Skip => false,
            Permit::Probe => match self.redis.probe().and_then(|()| self.replay_pending()) {
                Ok(()) => {
                    self.breaker().success();
                    log::info!(target: "usersvc::cache", "Redis answers again; cache resumed");
                    true
                }
                Err(e) => {
                    self.failed(&e);
                    false
                }
            },
        }
    }

    fn failed(&self, e: &CacheError) {
        self.breaker().failure(Instant::now());
        self.errors
            .warn("usersvc::cache", "Redis failed; serving from PostgreSQL", e);
    }

    /// Looks `id` up.
    pub fn get(&self, id: i64) -> Cached {
        if !self.usable() || self.pending().contains(&id) {
            self.observer.lookup(Lookup::Error);
            return Cached::Bypass;
        }
        let keys = codec::keys(&self.settings.prefix, id);
        let got = self.redis.run(|c| {
            redis::cmd("MGET")
                .arg(&keys.user)
                .arg(&keys.generation)
                .query::<(Option<Vec<u8>>, Option<String>)>(c)
        });
        match got {
            Ok((Some(bytes), _)) => match codec::decode(&bytes) {
                Ok(user) => {
                    self.breaker().success();
                    self.observer.lookup(Lookup::Hit);
                    Cached::Hit(user)
                }
                Err(e) => {
                    self.observer.lookup(Lookup::Error);
                    self.errors.warn(
                        "usersvc::cache",
                        "unreadable cache entry; serving from PostgreSQL",
                        &CacheError::Corrupt(e.to_string()),
                    );
                    Cached::Bypass
                }
            },
            Ok((None, generation)) => {
                self.breaker().success();
                self.observer.lookup(Lookup::Miss);
                Cached::Miss(MissTicket {
                    keys,
                    generation,
                    at: Instant::now(),
                })
            }
            Err(e) => {
                self.failed(&e);
                self.observer.lookup(Lookup::Error);
                Cached::Bypass
            }
        }
    }

    /// Stores what PostgreSQL answered for a miss, unless a write
    /// invalidated the user since (see the module docs).
    pub fn fill(&self, ticket: MissTicket, user: &User) {
        if ticket.at.elapsed() > FILL_WINDOW
            || self.breaker().is_open()
            || self.pending().contains(&user.id)
        {
            return;
        }
        let ttl_ms = u64::try_from(self.settings.ttl.as_millis()).unwrap_or(u64::MAX);
        let value = codec::encode(user);
        let result = self.redis.run(|c| {
            self.fill
                .key(&ticket.keys.user)
                .key(&ticket.keys.generation)
                .arg(ticket.generation.as_deref().unwrap_or(""))
                .arg(value)
                .arg(ttl_ms)
                .invoke::<i64>(c)
        });
        if let Err(e) = result {
            self.failed(&e);
        }
    }

    /// After a committed (or possibly committed) change of `id`, before it
    /// is acknowledged: a new generation and no cached value. On failure
    /// the id is remembered and replayed (see the module docs).
    pub fn invalidate(&self, id: i64) {
        if let Err(e) = self.invalidate_now(id) {
            self.pending().insert(id);
            self.breaker().trip(Instant::now());
            self.errors.warn(
                "usersvc::cache",
                "cache invalidation failed; Redis skipped until it is replayed",
                &e,
            );
        }
    }

    fn invalidate_now(&self, id: i64) -> Result<(), CacheError> {
        let keys = codec::keys(&self.settings.prefix, id);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let ttl_ms = u64::try_from(GENERATION_TTL.as_millis()).unwrap_or(u64::MAX);
        self.redis.run(|c| {
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&keys.generation)
                .arg(&token)
                .arg("PX")
                .arg(ttl_ms)
                .ignore()
                .cmd("DEL")
                .arg(&keys.user)
                .ignore()
                .query::<()>(c)
        })
    }

    /// Replays every pending invalidation; stops at the first failure.
    fn replay_pending(&self) -> Result<(), CacheError> {
        let ids: Vec<i64> = self.pending().iter().copied().collect();
        for id in ids {
            self.invalidate_now(id)?;
            self.pending().remove(&id);
        }
        Ok(())
    }

    /// Invalidations waiting for Redis (for tests and logs).
    pub fn pending_invalidations(&self) -> usize {
        self.pending().len()
    }
}
