//! Waking the outbox worker when a write commits, so that an event leaves
//! within milliseconds of its change without the worker polling fast.
//!
//! [`WakeOnWrite`] is a decorator around any [`UserRepository`]: after a
//! write returns (committed), it nudges the worker. Events written by other
//! replicas, and retries that come due, are found by the worker's own
//! short poll (at most every [`super::POLL_INTERVAL`]). The composition root
//! wraps the repository only when there is a `WEBHOOK_URL`: with nothing to
//! deliver, a nudge would only wake the worker to recount its backlog.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::users::repository::{Respond, UserRepository};
use crate::users::{IdempotencyKey, IdempotentResponse, NewUser, User, UserChanges, UserError};

/// Wakes the worker (cheap: a mutex and a condvar notify).
pub type Nudge = Arc<dyn Fn() + Send + Sync>;

/// See the module docs.
pub struct WakeOnWrite {
    inner: Arc<dyn UserRepository>,
    nudge: Nudge,
}

impl WakeOnWrite {
    pub fn new(inner: Arc<dyn UserRepository>, nudge: Nudge) -> WakeOnWrite {
        WakeOnWrite { inner, nudge }
    }

    fn wrote<T>(
        &self,
        result: Result<T, UserError>,
        changed: impl Fn(&T) -> bool,
    ) -> Result<T, UserError> {
        if result.as_ref().is_ok_and(changed) {
            (self.nudge)();
        }
        result
    }
}

impl UserRepository for WakeOnWrite {
    fn insert(&self, user: &NewUser) -> Result<User, UserError> {
        self.wrote(self.inner.insert(user), |_| true)
    }

    fn insert_idempotent(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        user: &NewUser,
        respond: Respond<'_>,
    ) -> Result<IdempotentResponse, UserError> {
        self.wrote(
            self.inner
                .insert_idempotent(key, fingerprint, user, respond),
            |r| !r.replayed,
        )
    }

    fn find(&self, id: i64) -> Result<Option<User>, UserError> {
        self.inner.find(id)
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
        self.wrote(self.inner.update(id, changes, expected), Option::is_some)
    }

    fn delete(&self, id: i64, expected: Option<&[SystemTime]>) -> Result<Option<User>, UserError> {
        self.wrote(self.inner.delete(id, expected), Option::is_some)
    }

    fn purge_idempotency_keys(&self, ttl: Duration, batch: i64) -> Result<u64, UserError> {
        self.inner.purge_idempotency_keys(ttl, batch)
    }
}
