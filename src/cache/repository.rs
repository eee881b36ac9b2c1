//! [`CachedUserRepository`]: the cache as a decorator around any
//! [`UserRepository`], so the storage code knows nothing about Redis.
//!
//! `find` reads through the cache; `update` and `delete` invalidate after
//! the inner call returns — whatever it returned, since an error such as
//! "connection lost during COMMIT, outcome unknown" may hide a committed
//! change. Creates need nothing: misses are never cached, so a new id has no
//! entry to go stale.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::user_cache::{Cached, UserCache};
use crate::users::repository::{Respond, UserRepository};
use crate::users::{IdempotencyKey, IdempotentResponse, NewUser, User, UserChanges, UserError};

/// See the module docs.
pub struct CachedUserRepository {
    inner: Arc<dyn UserRepository>,
    cache: Arc<UserCache>,
}

impl CachedUserRepository {
    pub fn new(inner: Arc<dyn UserRepository>, cache: Arc<UserCache>) -> CachedUserRepository {
        CachedUserRepository { inner, cache }
    }
}

impl UserRepository for CachedUserRepository {
    fn insert(&self, user: &NewUser) -> Result<User, UserError> {
        self.inner.insert(user)
    }

    fn insert_idempotent(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        user: &NewUser,
        respond: Respond<'_>,
    ) -> Result<IdempotentResponse, UserError> {
        self.inner
            .insert_idempotent(key, fingerprint, user, respond)
    }

    fn find(&self, id: i64) -> Result<Option<User>, UserError> {
        match self.cache.get(id) {
            Cached::Hit(user) => Ok(Some(user)),
            Cached::Bypass => self.inner.find(id),
            Cached::Miss(ticket) => {
                let found = self.inner.find(id)?;
                if let Some(user) = &found {
                    self.cache.fill(ticket, user);
                }
                Ok(found)
            }
        }
    }

    fn list(&self, after: Option<i64>, limit: u32) -> Result<Vec<User>, UserError> {
        self.inner.list(after, limit)
    }

    fn update(
        &self,
        id: i64,
        changes: &UserChanges,
        expected: Option<&[SystemTime]>,
    ) -> Result<Option<User>, UserError> {
        let result = self.inner.update(id, changes, expected);
        self.cache.invalidate(id);
        result
    }

    fn delete(&self, id: i64, expected: Option<&[SystemTime]>) -> Result<Option<User>, UserError> {
        let result = self.inner.delete(id, expected);
        self.cache.invalidate(id);
        result
    }

    fn purge_idempotency_keys(&self, ttl: Duration, batch: i64) -> Result<u64, UserError> {
        self.inner.purge_idempotency_keys(ttl, batch)
    }
}
