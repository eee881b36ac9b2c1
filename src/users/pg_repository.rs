//! [`UserRepository`] on PostgreSQL.
//!
//! Each write is one transaction holding the row change and its `events`
//! row, so an event exists if and only if the change committed. Duplicate
//! e-mails are detected by the unique index (`23505` on
//! `users_email_lower_key`), never by a check-then-insert that could race.
//! All SQL is `&'static str` so [`crate::db::Db`] prepares it once per
//! connection.

use std::time::Duration;

use postgres::error::SqlState;
use postgres::{GenericClient, Row};

use super::error::UserError;
use super::events::{payload, EventType};
use super::idempotency::{IdempotencyKey, IdempotentResponse, StoredResponse, KEY_TTL};
use super::model::{NewUser, User, UserChanges};
use super::repository::{Respond, UserRepository};
use crate::db::{Db, DbError, Pool};

// Every statement returning users selects `id, name, email, created_at,
// updated_at` in this order: `checked_user` reads them by position.
const INSERT_USER: &str =
    "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id, name, email, created_at, updated_at";
const FIND_USER: &str = "SELECT id, name, email, created_at, updated_at FROM users WHERE id = $1";
const LIST_USERS: &str = "SELECT id, name, email, created_at, updated_at FROM users \
     WHERE id > $1 ORDER BY id LIMIT $2";
const UPDATE_USER: &str = "UPDATE users SET name = COALESCE($2, name), \
     email = COALESCE($3, email), updated_at = now() WHERE id = $1 \
     RETURNING id, name, email, created_at, updated_at";
const DELETE_USER: &str =
    "DELETE FROM users WHERE id = $1 RETURNING id, name, email, created_at, updated_at";
const INSERT_EVENT: &str = "INSERT INTO events (type, payload) VALUES ($1, $2::text::jsonb)";

const EXPIRE_KEY: &str = "DELETE FROM idempotency_keys WHERE key = $1 \
     AND created_at < now() - $2::bigint * interval '1 second'";
const CLAIM_KEY: &str = "INSERT INTO idempotency_keys (key, fingerprint) VALUES ($1, $2) \
     ON CONFLICT (key) DO NOTHING";
const READ_KEY: &str = "SELECT fingerprint, response_status, response_body, resource_id \
     FROM idempotency_keys WHERE key = $1";
const STORE_RESPONSE: &str = "UPDATE idempotency_keys SET response_status = $2, \
     response_body = $3, resource_id = $4 WHERE key = $1";
const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE key IN (SELECT key \
     FROM idempotency_keys WHERE created_at < now() - $1::bigint * interval '1 second' LIMIT $2)";

/// The unique index that makes e-mails case-insensitively unique.
pub const EMAIL_UNIQUE_INDEX: &str = "users_email_lower_key";

/// PostgreSQL-backed users.
#[derive(Clone)]
pub struct PgUserRepository {
    pool: Pool,
}

impl PgUserRepository {
    /// Uses `pool` for every operation.
    pub fn new(pool: Pool) -> Self {
        PgUserRepository { pool }
    }
}

/// Outcome of the idempotent transaction before it becomes a Result.
enum Claim {
    Created(StoredResponse),
    Replay(StoredResponse),
    Mismatch,
    Incomplete,
}

impl UserRepository for PgUserRepository {
    fn insert(&self, user: &NewUser) -> Result<User, UserError> {
        self.pool
            .write(|db| insert_with_event(db, user))
            .map_err(map_write_error)
    }

    fn insert_idempotent(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        user: &NewUser,
        respond: Respond<'_>,
    ) -> Result<IdempotentResponse, UserError> {
        let ttl = ttl_secs(KEY_TTL);
        let claim = self
            .pool
            .write(|db| {
                db.execute(EXPIRE_KEY, &[&key.as_str(), &ttl])?;
                // A concurrent transaction holding the same key makes this
                // wait on the primary key until it commits (then: conflict,
                // replay) or rolls back (then: we own the key).
                if db.execute(CLAIM_KEY, &[&key.as_str(), &fingerprint])? == 1 {
                    let created = insert_with_event(db, user)?;
                    let response = respond(&created);
                    let status = i16::try_from(response.status).unwrap_or(i16::MAX);
                    db.execute(
                        STORE_RESPONSE,
                        &[
                            &key.as_str(),
                            &status,
                            &response.body,
                            &response.resource_id,
                        ],
                    )?;
                    return Ok(Claim::Created(response));
                }
                let row = db.query_one(READ_KEY, &[&key.as_str()])?;
                let stored_fp: &str = row.get(0);
                if stored_fp != fingerprint {
                    return Ok(Claim::Mismatch);
                }
                let status: Option<i16> = row.get(1);
                let body: Option<String> = row.get(2);
                Ok(match (status, body) {
                    (Some(s), Some(body)) => Claim::Replay(StoredResponse {
                        status: u16::try_from(s).unwrap_or(500),
                        body,
                        resource_id: row.get(3),
                    }),
                    _ => Claim::Incomplete,
                })
            })
            .map_err(map_write_error)?;
        match claim {
            Claim::Created(response) => Ok(IdempotentResponse {
                response,
                replayed: false,
            }),
            Claim::Replay(response) => Ok(IdempotentResponse {
                response,
                replayed: true,
            }),
            Claim::Mismatch => Err(UserError::IdempotencyMismatch),
            Claim::Incomplete => Err(UserError::Internal(
                "idempotency key row without a stored response".into(),
            )),
        }
    }

    fn find(&self, id: i64) -> Result<Option<User>, UserError> {
        self.pool
            .read(|db| db.query_opt(FIND_USER, &[&id]))
            .map_err(UserError::from)?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    fn list(&self, after: Option<i64>, limit: u32) -> Result<Vec<User>, UserError> {
        let after = after.unwrap_or(0);
        let limit = i64::from(limit);
        self.pool
            .read(|db| db.query(LIST_USERS, &[&after, &limit]))
            .map_err(UserError::from)?
            .iter()
            .map(user_from_row)
            .collect()
    }

    fn update(&self, id: i64, changes: &UserChanges) -> Result<Option<User>, UserError> {
        self.pool
            .write(|db| {
                let Some(row) = db.query_opt(
                    UPDATE_USER,
                    &[&id, &changes.name.as_deref(), &changes.email.as_deref()],
                )?
                else {
                    return Ok(None);
                };
                let user = checked_user(&row)?;
                record_event(db, EventType::Updated, &user)?;
                Ok(Some(user))
            })
            .map_err(map_write_error)
    }

    fn delete(&self, id: i64) -> Result<Option<User>, UserError> {
        self.pool
            .write(|db| {
                let Some(row) = db.query_opt(DELETE_USER, &[&id])? else {
                    return Ok(None);
                };
                let user = checked_user(&row)?;
                record_event(db, EventType::Deleted, &user)?;
                Ok(Some(user))
            })
            .map_err(map_write_error)
    }

    fn purge_idempotency_keys(&self, ttl: Duration, batch: i64) -> Result<u64, UserError> {
        let ttl = ttl_secs(ttl);
        self.pool
            .write(|db| db.execute(PURGE_KEYS, &[&ttl, &batch]))
            .map_err(UserError::from)
    }
}

fn insert_with_event<C: GenericClient>(
    db: &mut Db<'_, C>,
    user: &NewUser,
) -> Result<User, postgres::Error> {
    let row = db.query_one(INSERT_USER, &[&user.name, &user.email])?;
    let created = checked_user(&row)?;
    record_event(db, EventType::Created, &created)?;
    Ok(created)
}

fn record_event<C: GenericClient>(
    db: &mut Db<'_, C>,
    kind: EventType,
    user: &User,
) -> Result<(), postgres::Error> {
    db.execute(INSERT_EVENT, &[&kind.as_str(), &payload(user)])
        .map(|_| ())
}

/// Reads a user row; decoding errors surface as driver errors.
fn checked_user(row: &Row) -> Result<User, postgres::Error> {
    Ok(User {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        email: row.try_get(2)?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
    })
}

fn user_from_row(row: &Row) -> Result<User, UserError> {
    checked_user(row).map_err(|e| UserError::Internal(format!("decoding a user row: {e}")))
}

/// Unique violations on the e-mail index become `Conflict`; the rest maps
/// generically (dead connection → Unavailable, anything else → Internal).
fn map_write_error(e: DbError) -> UserError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && e.constraint() == Some(EMAIL_UNIQUE_INDEX) {
        return UserError::Conflict("a user with this email already exists".into());
    }
    UserError::from(e)
}

fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}
