//! The optional Redis cache (`REDIS_URL`): a read-through cache of
//! `GET /api/v1/users/{id}` that never serves a value older than the last
//! acknowledged write, and never fails or stalls a request.
//!
//! - [`redis_pool`]: the connection pool, with connect/read/write timeouts.
//! - [`breaker`]: skip Redis for a cool-down after it fails (pure logic).
//! - [`codec`]: versioned keys and the cached form of a user (pure).
//! - [`user_cache`]: look-up, fill and invalidation — and the race they close.
//! - [`repository`]: the decorator around `UserRepository` that uses it.
//! - [`check`]: the `redis` readiness dependency (optional: `degraded`).

pub mod breaker;
pub mod check;
pub mod codec;
pub mod redis_pool;
pub mod repository;
pub mod user_cache;

pub use breaker::BreakerPolicy;
pub use check::RedisCheck;
pub use redis_pool::{RedisPool, Timeouts};
pub use repository::CachedUserRepository;
pub use user_cache::{CacheObserver, CacheSettings, Lookup, NoopCacheObserver, UserCache};
