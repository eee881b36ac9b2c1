//! The storage interface the service depends on.
//!
//! A trait so the service is wired by constructor injection
//! (`Arc<dyn UserRepository>`) and its rules can be exercised against any
//! store; the production implementation is [`super::PgUserRepository`].
//! Every write method writes its outbox event in the same transaction.

use std::time::{Duration, SystemTime};

use super::error::UserError;
use super::idempotency::{IdempotencyKey, IdempotentResponse, StoredResponse};
use super::model::{NewUser, User, UserChanges};

/// Builds the response stored for a newly created user.
pub type Respond<'a> = &'a (dyn Fn(&User) -> StoredResponse + Sync);

/// User storage.
pub trait UserRepository: Send + Sync {
    /// Inserts a user and its `user.created` event.
    /// `Conflict` when the e-mail is taken.
    fn insert(&self, user: &NewUser) -> Result<User, UserError>;

    /// Like [`UserRepository::insert`], at most once per key: a first call
    /// stores `respond(&user)` under the key (or, when it can do so in the
    /// same statement, the same bytes rendered by the database: 201 and the
    /// user's API representation; `tests/users_events.rs` pins the two); a
    /// later call with the same fingerprint returns it (`replayed`), with
    /// another fingerprint fails with `IdempotencyMismatch`. Concurrent calls
    /// with one key serialise.
    fn insert_idempotent(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        user: &NewUser,
        respond: Respond<'_>,
    ) -> Result<IdempotentResponse, UserError>;

    /// The user with `id`, if any.
    fn find(&self, id: i64) -> Result<Option<User>, UserError>;

    /// Up to `limit` users with id > `after`, ascending.
    fn list(&self, after: Option<i64>, limit: u32) -> Result<Vec<User>, UserError>;

    /// Applies `changes` and writes `user.updated`; `None` if no such user.
    /// With `expected` (see [`crate::users::version`]), only when the stored
    /// version is one of those, checked by the write itself; else
    /// `VersionMismatch`.
    fn update(
        &self,
        id: i64,
        changes: &UserChanges,
        expected: Option<&[SystemTime]>,
    ) -> Result<Option<User>, UserError>;

    /// Deletes and writes `user.deleted`; the deleted user, or `None`.
    /// `expected` as for [`UserRepository::update`].
    fn delete(&self, id: i64, expected: Option<&[SystemTime]>) -> Result<Option<User>, UserError>;

    /// Deletes up to `batch` idempotency keys older than `ttl`; returns how many.
    fn purge_idempotency_keys(&self, ttl: Duration, batch: i64) -> Result<u64, UserError>;
}
