//! The business rules of users, independent of HTTP and of PostgreSQL.
//!
//! A handler parses the request into the raw shapes ([`CreateUser`],
//! [`PatchUser`], [`ListParams`]), calls one method here and maps the result
//! (see [`UserError`] for the status codes). The service validates and
//! normalises input, then delegates storage to the injected repository.

use std::sync::Arc;

use super::cursor::{ListParams, Page};
use super::error::UserError;
use super::idempotency::{IdempotencyKey, IdempotentResponse, StoredResponse, KEY_TTL};
use super::model::{CreateUser, PatchUser, User};
use super::repository::UserRepository;
use super::validate;
use super::version::IfMatch;

/// Rows deleted per purge call, so one call never holds locks for long.
pub const PURGE_BATCH: i64 = 1000;

/// User operations.
#[derive(Clone)]
pub struct UserService {
    repo: Arc<dyn UserRepository>,
}

impl UserService {
    /// Wires the service to its storage.
    pub fn new(repo: Arc<dyn UserRepository>) -> Self {
        UserService { repo }
    }

    /// Creates a user. `Invalid` (all fields), `Conflict` (e-mail taken).
    pub fn create(&self, input: &CreateUser) -> Result<User, UserError> {
        let user = validate::new_user(input).map_err(UserError::Invalid)?;
        self.repo.insert(&user)
    }

    /// Creates a user at most once per `key`. The first call answers 201 with
    /// the user; a retry with the same fingerprint gets the identical stored
    /// response (`replayed = true`) and no second row; another fingerprint
    /// gets `IdempotencyMismatch`. An invalid key is `Invalid` on the field
    /// `Idempotency-Key`.
    pub fn create_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        input: &CreateUser,
    ) -> Result<IdempotentResponse, UserError> {
        let key = IdempotencyKey::parse(key);
        let user = validate::new_user(input);
        let (key, user) = match (key, user) {
            (Ok(k), Ok(u)) => (k, u),
            (k, u) => {
                let mut errors: Vec<_> = k.err().into_iter().collect();
                errors.extend(u.err().unwrap_or_default());
                return Err(UserError::Invalid(errors));
            }
        };
        self.repo
            .insert_idempotent(&key, fingerprint, &user, &created_response)
    }

    /// The user with `id`. `NotFound` for unknown (or non-positive) ids.
    pub fn get(&self, id: i64) -> Result<User, UserError> {
        if id <= 0 {
            return Err(UserError::NotFound);
        }
        self.repo.find(id)?.ok_or(UserError::NotFound)
    }

    /// One page of users by ascending id, with a `next` cursor when more exist.
    pub fn list(&self, params: &ListParams) -> Result<Page, UserError> {
        let rows = self.repo.list(params.after, params.limit + 1)?;
        Ok(Page::from_rows(rows, params.limit))
    }

    /// Changes name and/or e-mail. `Invalid`, `NotFound`, `Conflict`.
    pub fn patch(&self, id: i64, input: &PatchUser) -> Result<User, UserError> {
        self.patch_if(id, input, &IfMatch::Any)
    }

    /// [`UserService::patch`] only if the user's version is one `if_match`
    /// names; else `VersionMismatch`.
    pub fn patch_if(
        &self,
        id: i64,
        input: &PatchUser,
        if_match: &IfMatch,
    ) -> Result<User, UserError> {
        let changes = validate::changes(input).map_err(UserError::Invalid)?;
        if id <= 0 {
            return Err(UserError::NotFound);
        }
        self.repo
            .update(id, &changes, if_match.expected())?
            .ok_or(UserError::NotFound)
    }

    /// Deletes a user. `NotFound` if there is none.
    pub fn delete(&self, id: i64) -> Result<(), UserError> {
        self.delete_if(id, &IfMatch::Any)
    }

    /// [`UserService::delete`] only if the user's version is one `if_match`
    /// names; else `VersionMismatch`.
    pub fn delete_if(&self, id: i64, if_match: &IfMatch) -> Result<(), UserError> {
        if id <= 0 {
            return Err(UserError::NotFound);
        }
        self.repo
            .delete(id, if_match.expected())?
            .map(|_| ())
            .ok_or(UserError::NotFound)
    }

    /// Deletes one batch of expired idempotency keys; returns how many.
    /// Call periodically (e.g. every few minutes) from a background worker.
    pub fn purge_expired_idempotency_keys(&self) -> Result<u64, UserError> {
        self.repo.purge_idempotency_keys(KEY_TTL, PURGE_BATCH)
    }
}

/// The response stored for, and replayed to, an idempotent create.
fn created_response(user: &User) -> StoredResponse {
    StoredResponse {
        status: 201,
        body: user.to_json_string(),
        resource_id: Some(user.id),
        version: Some(user.updated_at),
    }
}
