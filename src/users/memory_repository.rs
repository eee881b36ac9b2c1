//! An in-memory [`UserRepository`] for unit tests of the service and the
//! handlers: the same contract as PostgreSQL's (ids from 1, e-mail unique,
//! idempotency keys), without a database, plus switches that make every
//! call fail as an unreachable or broken database would.
//!
//! Test-only: the real store is [`super::PgUserRepository`], and the
//! PostgreSQL tests under `tests/` stay the reference for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::error::UserError;
use super::idempotency::{IdempotencyKey, IdempotentResponse, StoredResponse};
use super::model::{NewUser, User, UserChanges};
use super::repository::{Respond, UserRepository};
use crate::db::DbError;

/// How every call fails, when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot be reached (503).
    Unavailable,
    /// The database answers with an unexpected error (500).
    Internal,
}

#[derive(Default)]
struct Store {
    next_id: i64,
    users: BTreeMap<i64, User>,
    keys: HashMap<String, (String, StoredResponse)>,
    failure: Option<Failure>,
}

/// Users in a map behind a mutex.
#[derive(Default, Clone)]
pub struct MemoryUserRepository {
    store: Arc<Mutex<Store>>,
}

impl MemoryUserRepository {
    pub fn new() -> MemoryUserRepository {
        MemoryUserRepository::default()
    }

    /// From now on every call fails this way (`None`: works again).
    pub fn fail_with(&self, failure: Option<Failure>) {
        self.lock().failure = failure;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store, or the configured failure.
    fn open(&self) -> Result<std::sync::MutexGuard<'_, Store>, UserError> {
        let store = self.lock();
        match store.failure {
            None => Ok(store),
            Some(Failure::Unavailable) => Err(UserError::from(DbError::Unavailable(
                "connection refused (in-memory test store)".into(),
            ))),
            Some(Failure::Internal) => Err(UserError::from(DbError::Config(
                "broken on purpose (in-memory test store)".into(),
            ))),
        }
    }
}

impl Store {
    fn email_taken(&self, email: &str, except: Option<i64>) -> bool {
        self.users
            .values()
            .any(|u| Some(u.id) != except && u.email.eq_ignore_ascii_case(email))
    }

    fn insert(&mut self, user: &NewUser) -> Result<User, UserError> {
        if self.email_taken(&user.email, None) {
            return Err(conflict());
        }
        self.next_id += 1;
        let now = SystemTime::now();
        let stored = User {
            id: self.next_id,
            name: user.name.clone(),
            email: user.email.clone(),
            created_at: now,
            updated_at: now,
        };
        self.users.insert(stored.id, stored.clone());
        Ok(stored)
    }
}

fn conflict() -> UserError {
    UserError::Conflict("a user with this email already exists".into())
}

impl UserRepository for MemoryUserRepository {
    fn insert(&self, user: &NewUser) -> Result<User, UserError> {
        self.open()?.insert(user)
    }

    fn insert_idempotent(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        user: &NewUser,
        respond: Respond<'_>,
    ) -> Result<IdempotentResponse, UserError> {
        let mut store = self.open()?;
        if let Some((seen, response)) = store.keys.get(key.as_str()) {
            return if seen == fingerprint {
                Ok(IdempotentResponse {
                    response: response.clone(),
                    replayed: true,
                })
            } else {
                Err(UserError::IdempotencyMismatch)
            };
        }
        let created = store.insert(user)?;
        let response = respond(&created);
        store.keys.insert(
            key.as_str().to_owned(),
            (fingerprint.to_owned(), response.clone()),
        );
        Ok(IdempotentResponse {
            response,
            replayed: false,
        })
    }

    fn find(&self, id: i64) -> Result<Option<User>, UserError> {
        Ok(self.open()?.users.get(&id).cloned())
    }

    fn list(&self, after: Option<i64>, limit: u32) -> Result<Vec<User>, UserError> {
        let store = self.open()?;
        let from = after.map_or(i64::MIN, |a| a.saturating_add(1));
        Ok(store
            .users
            .range(from..)
            .take(limit as usize)
            .map(|(_, u)| u.clone())
            .collect())
    }

    fn update(
        &self,
        id: i64,
        changes: &UserChanges,
        expected: Option<&[SystemTime]>,
    ) -> Result<Option<User>, UserError> {
        let mut store = self.open()?;
        if let Some(user) = store.users.get(&id) {
            if !crate::users::version::matches(expected, user.updated_at) {
                return Err(UserError::VersionMismatch);
            }
        }
        if let Some(email) = &changes.email {
            if store.users.contains_key(&id) && store.email_taken(email, Some(id)) {
                return Err(conflict());
            }
        }
        let Some(user) = store.users.get_mut(&id) else {
            return Ok(None);
        };
        if let Some(name) = &changes.name {
            user.name.clone_from(name);
        }
        if let Some(email) = &changes.email {
            user.email.clone_from(email);
        }
        user.updated_at = SystemTime::now();
        Ok(Some(user.clone()))
    }

    fn delete(&self, id: i64, expected: Option<&[SystemTime]>) -> Result<Option<User>, UserError> {
        let mut store = self.open()?;
        if let Some(user) = store.users.get(&id) {
            if !crate::users::version::matches(expected, user.updated_at) {
                return Err(UserError::VersionMismatch);
            }
        }
        Ok(store.users.remove(&id))
    }

    fn purge_idempotency_keys(&self, _ttl: Duration, _batch: i64) -> Result<u64, UserError> {
        self.open().map(|_| 0)
    }
}
