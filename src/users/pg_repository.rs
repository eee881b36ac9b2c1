//! [`UserRepository`] on PostgreSQL.
//!
//! # One round trip per write
//!
//! Every write and its outbox event are ONE statement, a data-modifying CTE
//! (`WITH u AS (INSERT … RETURNING …), e AS (INSERT INTO events …) SELECT …
//! FROM u`), run in autocommit through [`crate::db::DbPool::write_one`]: one
//! Bind/Execute/Sync exchange on a prepared statement instead of BEGIN,
//! INSERT, INSERT, COMMIT. A statement is atomic, so the event still exists
//! if and only if the change committed. Duplicate e-mails are detected by the
//! unique index (`23505` on `users_email_lower_key`), never by a
//! check-then-insert that could race. All SQL is `&'static str` so
//! [`crate::db::Db`] prepares it once per connection.
//!
//! # The event payload: the API's bytes, rendered in the same statement
//!
//! The payload must be the user exactly as the API shows it (the outbox
//! embeds `payload::text` verbatim). In one statement it has to be produced
//! by the database: the API encoder ([`User::to_json_string`]) can only run
//! once the row is back, and pre-computing it in Rust works only for a
//! create (id excepted) — an update's unchanged fields and `created_at`, and a
//! delete's whole row, are known only to the statement. So the payload is
//! rendered by the SQL function `user_json` (migration 000004: string-built,
//! `to_json` for the two strings, `to_char` for the timestamps), stored in a
//! `json` column (text-preserving; `jsonb` would reorder the keys), and
//! `tests/users_events.rs` pins it to the API encoder byte for byte over a
//! table of awkward values (quotes, backslashes, non-ASCII, emoji, µs edges).
//! The alternative — a second round trip, or storing each user's rendering —
//! costs more than the one pinned rendition.
//!
//! # Timestamps chosen before the statement
//!
//! `created_at` / `updated_at` are the service's clock, passed as a
//! parameter, not the database's `now()`. That is what makes a lost answer
//! recoverable: when the connection dies mid-statement the outcome is
//! unknown, and the recovery (on a live connection) looks for the row
//! carrying exactly that timestamp. Found: the write committed, answer it.
//! Not found: nothing was applied, run it again. A delete that finds the row
//! gone answers "no such user" (404), the state the client asked for. (If the
//! lost statement is still running on a backend cut off from us, the re-run
//! of a create waits for it on the e-mail's unique index and answers 409; the
//! row that exists is the one asked for.)
//!
//! # The write fence
//!
//! Each write statement also carries its [`ApplyBy`] deadline and calls
//! `usersvc_apply_by($n)` before it changes anything (in the `WHERE` of the
//! INSERT's `SELECT`, the UPDATE and the DELETE). A statement that reaches
//! the database after the service gave up on it — a frozen host that thaws
//! and runs what its socket buffer held — raises instead of applying, so a
//! client told 503 never finds its write applied. A recovery passes the
//! fence of its own call.
//!
//! # Idempotency keys
//!
//! A create with a new key is one statement too (the key row, with the
//! stored 201 body rendered by `user_json`, is a third CTE member). Any
//! unique violation — the key exists (replay, mismatch, expired key, or a
//! concurrent twin), or the e-mail is taken (which may be this key's own
//! earlier create) — and an unknown outcome fall back to the transaction that
//! claims the key first and reads what it holds: only replays and conflicts
//! pay for the extra round trips.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postgres::error::SqlState;
use postgres::{Client, GenericClient, Row};

use super::error::{Internal, UserError};
use super::idempotency::{IdempotencyKey, IdempotentResponse, StoredResponse, KEY_TTL};
use super::model::{NewUser, User, UserChanges};
use super::repository::{Respond, UserRepository};
use crate::db::{ApplyBy, Db, DbError, DbPool};

// Every statement returning users selects `id, name, email, created_at,
// updated_at` in this order: `checked_user` reads them by position.
const CREATE_USER: &str = "WITH u AS (\
     INSERT INTO users (name, email, created_at, updated_at) \
     SELECT $1::text, $2::text, $3::timestamptz, $3::timestamptz WHERE usersvc_apply_by($4) \
     RETURNING id, name, email, created_at, updated_at), \
     e AS (INSERT INTO events (type, payload) \
     SELECT 'user.created', user_json(id, name, email, created_at, updated_at)::json FROM u) \
     SELECT id, name, email, created_at, updated_at FROM u";
/// [`CREATE_USER`] plus the idempotency key and its stored response; the
/// sixth column is that response's body.
const CREATE_USER_KEYED: &str = "WITH u AS (\
     INSERT INTO users (name, email, created_at, updated_at) \
     SELECT $1::text, $2::text, $3::timestamptz, $3::timestamptz WHERE usersvc_apply_by($6) \
     RETURNING id, name, email, created_at, updated_at, \
     user_json(id, name, email, created_at, updated_at) AS doc), \
     e AS (INSERT INTO events (type, payload) SELECT 'user.created', doc::json FROM u), \
     k AS (INSERT INTO idempotency_keys \
     (key, fingerprint, response_status, response_body, resource_id, resource_version) \
     SELECT $4::text, $5::text, 201, doc, id, updated_at FROM u) \
     SELECT id, name, email, created_at, updated_at, doc FROM u";
const FIND_CREATED: &str = "SELECT id, name, email, created_at, updated_at FROM users \
     WHERE lower(email) = lower($1) AND created_at = $2";
const FIND_USER: &str = "SELECT id, name, email, created_at, updated_at FROM users WHERE id = $1";
const FIND_UPDATED: &str = "SELECT id, name, email, created_at, updated_at FROM users \
     WHERE id = $1 AND updated_at = $2";
/// Whether a user exists: tells a version mismatch from a missing user when
/// a conditional write changed nothing.
const USER_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)";
const LIST_USERS: &str = "SELECT id, name, email, created_at, updated_at FROM users \
     WHERE id > $1 ORDER BY id LIMIT $2";
const UPDATE_USER: &str = "WITH u AS (\
     UPDATE users SET name = COALESCE($2, name), email = COALESCE($3, email), \
     updated_at = $4 WHERE id = $1 AND ($6::timestamptz[] IS NULL OR updated_at = ANY($6)) \
     AND usersvc_apply_by($5) \
     RETURNING id, name, email, created_at, updated_at), \
     e AS (INSERT INTO events (type, payload) \
     SELECT 'user.updated', user_json(id, name, email, created_at, updated_at)::json FROM u) \
     SELECT id, name, email, created_at, updated_at FROM u";
const DELETE_USER: &str = "WITH u AS (\
     DELETE FROM users WHERE id = $1 AND ($3::timestamptz[] IS NULL OR updated_at = ANY($3)) \
     AND usersvc_apply_by($2) RETURNING id, name, email, created_at, updated_at), \
     e AS (INSERT INTO events (type, payload) \
     SELECT 'user.deleted', user_json(id, name, email, created_at, updated_at)::json FROM u) \
     SELECT id, name, email, created_at, updated_at FROM u";

const EXPIRE_KEY: &str = "DELETE FROM idempotency_keys WHERE key = $1 \
     AND created_at < now() - $2::bigint * interval '1 second'";
const CLAIM_KEY: &str = "INSERT INTO idempotency_keys (key, fingerprint) VALUES ($1, $2) \
     ON CONFLICT (key) DO NOTHING";
const READ_KEY: &str = "SELECT fingerprint, response_status, response_body, resource_id, \
     resource_version FROM idempotency_keys WHERE key = $1";
const STORE_RESPONSE: &str = "UPDATE idempotency_keys SET response_status = $2, \
     response_body = $3, resource_id = $4, resource_version = $5 WHERE key = $1";
const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE key IN (SELECT key \
     FROM idempotency_keys WHERE created_at < now() - $1::bigint * interval '1 second' LIMIT $2)";

/// The unique index that makes e-mails case-insensitively unique.
pub const EMAIL_UNIQUE_INDEX: &str = "users_email_lower_key";

/// PostgreSQL-backed users.
#[derive(Clone)]
pub struct PgUserRepository {
    pool: DbPool,
}

impl PgUserRepository {
    /// Uses `pool` for every operation.
    pub fn new(pool: DbPool) -> Self {
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
        let now = SystemTime::now();
        let create = |db: &mut Db<'_, Client>, apply_by: ApplyBy| {
            db.query_one(CREATE_USER, &[&user.name, &user.email, &now, &apply_by])
                .and_then(|r| checked_user(&r))
        };
        self.pool
            .write_one(create, |db, apply_by| {
                match db.query_opt(FIND_CREATED, &[&user.email, &now])? {
                    Some(row) => checked_user(&row),
                    None => create(db, apply_by),
                }
            })
            .map_err(map_write_error)
    }

    fn insert_idempotent(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        user: &NewUser,
        respond: Respond<'_>,
    ) -> Result<IdempotentResponse, UserError> {
        // The common case, a key never seen: one statement.
        let now = SystemTime::now();
        let fast = self.pool.write_one(
            |db, apply_by| {
                let row = db.query_one(
                    CREATE_USER_KEYED,
                    &[
                        &user.name,
                        &user.email,
                        &now,
                        &key.as_str(),
                        &fingerprint,
                        &apply_by,
                    ],
                )?;
                let created = checked_user(&row)?;
                Ok(Some(StoredResponse {
                    status: 201,
                    body: row.try_get(5)?,
                    resource_id: Some(created.id),
                    version: Some(created.updated_at),
                }))
            },
            // Outcome unknown: the transaction below replays if it committed.
            |_, _| Ok(None),
        );
        match fast {
            Ok(Some(response)) => {
                return Ok(IdempotentResponse {
                    response,
                    replayed: false,
                })
            }
            Ok(None) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(map_write_error(e)),
        }
        self.insert_idempotent_slow(key, fingerprint, user, respond)
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

    fn update(
        &self,
        id: i64,
        changes: &UserChanges,
        expected: Option<&[SystemTime]>,
    ) -> Result<Option<User>, UserError> {
        let now = SystemTime::now();
        let (name, email) = (changes.name.as_deref(), changes.email.as_deref());
        let versions = expected.map(<[SystemTime]>::to_vec);
        let update = |db: &mut Db<'_, Client>, apply_by: ApplyBy| {
            optional_user(db.query_opt(
                UPDATE_USER,
                &[&id, &name, &email, &now, &apply_by, &versions],
            )?)
        };
        let updated = self
            .pool
            .write_one(update, |db, apply_by| {
                match db.query_opt(FIND_UPDATED, &[&id, &now])? {
                    Some(row) => checked_user(&row).map(Some),
                    None => update(db, apply_by),
                }
            })
            .map_err(map_write_error)?;
        self.none_or_mismatch(id, expected, updated)
    }

    fn delete(&self, id: i64, expected: Option<&[SystemTime]>) -> Result<Option<User>, UserError> {
        // Recovery runs the delete again: if the first one committed the row
        // is gone and the answer is "no such user", the state asked for.
        let versions = expected.map(<[SystemTime]>::to_vec);
        let delete = |db: &mut Db<'_, Client>, apply_by: ApplyBy| {
            optional_user(db.query_opt(DELETE_USER, &[&id, &apply_by, &versions])?)
        };
        let deleted = self
            .pool
            .write_one(delete, delete)
            .map_err(map_write_error)?;
        self.none_or_mismatch(id, expected, deleted)
    }

    fn purge_idempotency_keys(&self, ttl: Duration, batch: i64) -> Result<u64, UserError> {
        let ttl = ttl_secs(ttl);
        self.pool
            .write(|db| db.execute(PURGE_KEYS, &[&ttl, &batch]))
            .map_err(UserError::from)
    }
}

impl PgUserRepository {
    /// A conditional write that changed nothing: `VersionMismatch` when the
    /// user exists (its version is not one expected), `None` when it does
    /// not (404 wins over 412, RFC 9110 §13.2.2). A second statement, on
    /// this path only: the write itself stays one round trip.
    fn none_or_mismatch(
        &self,
        id: i64,
        expected: Option<&[SystemTime]>,
        written: Option<User>,
    ) -> Result<Option<User>, UserError> {
        if written.is_some() || expected.is_none() {
            return Ok(written);
        }
        let exists: bool = self
            .pool
            .read(|db| db.query_one(USER_EXISTS, &[&id]))
            .map_err(UserError::from)?
            .get(0);
        if exists {
            Err(UserError::VersionMismatch)
        } else {
            Ok(None)
        }
    }

    /// The key is taken (or may be): claim it in a transaction, then create
    /// and store, or read what the key holds.
    fn insert_idempotent_slow(
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
                    let created = insert_with_event(db, user, self.pool.apply_by_now())?;
                    let response = respond(&created);
                    let status = i16::try_from(response.status).unwrap_or(i16::MAX);
                    db.execute(
                        STORE_RESPONSE,
                        &[
                            &key.as_str(),
                            &status,
                            &response.body,
                            &response.resource_id,
                            &response.version,
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
                        resource_id: row.try_get(3)?,
                        version: row.try_get(4)?,
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
            Claim::Incomplete => Err(UserError::Internal(Internal::IncompleteIdempotencyKey)),
        }
    }
}

/// The create statement inside the idempotency transaction.
fn insert_with_event<C: GenericClient>(
    db: &mut Db<'_, C>,
    user: &NewUser,
    apply_by: ApplyBy,
) -> Result<User, postgres::Error> {
    let now = SystemTime::now();
    let row = db.query_one(CREATE_USER, &[&user.name, &user.email, &now, &apply_by])?;
    checked_user(&row)
}

fn optional_user(row: Option<Row>) -> Result<Option<User>, postgres::Error> {
    row.as_ref().map(checked_user).transpose()
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
    checked_user(row).map_err(|e| UserError::Internal(Internal::UndecodableRow(Arc::new(e))))
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

#[cfg(test)]
mod tests {
    use super::{CREATE_USER, FIND_USER};

    /// The value of `const NAME: &str = "…";` in Rust source, with the
    /// string continuations (`\` at a line's end and the next line's
    /// indentation) resolved as the compiler resolves them.
    fn const_str(source: &str, name: &str) -> Option<String> {
        let start = source.find(&format!("const {name}: &str = \""))?;
        let rest = &source[start..];
        let body = &rest[rest.find('"')? + 1..];
        let body = &body[..body.find("\";")?];
        let mut out = String::new();
        let mut continued = false;
        for (i, line) in body.split('\n').enumerate() {
            if i > 0 && !continued {
                out.push('\n');
            }
            let line = if continued { line.trim_start() } else { line };
            continued = false;
            match line.strip_suffix('\\') {
                Some(cut) => {
                    out.push_str(cut);
                    continued = true;
                }
                None => out.push_str(line),
            }
        }
        Some(out)
    }

    /// `make bench`'s async stack (`BENCH_VS=async`) is compared with
    /// usersvc on the claim that it runs the same SQL: a change to a
    /// statement here that leaves its copy there behind fails here.
    #[test]
    fn the_bench_async_stack_runs_these_statements_word_for_word() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/bench/async-ref/src/main.rs"
        );
        let source = std::fs::read_to_string(path).expect("the async stack's source");
        assert_eq!(
            const_str(&source, "CREATE_USER").as_deref(),
            Some(CREATE_USER)
        );
        assert_eq!(const_str(&source, "FIND_USER").as_deref(), Some(FIND_USER));
    }
}
