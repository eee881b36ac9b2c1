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
//! # Concurrent creates share a statement (group commit)
//!
//! A create goes through [`GroupCommit`] ([`crate::db::group_commit`]).
//! While fewer than two create statements are running, it runs alone as
//! [`CREATE_USER`], exactly as above. When two are, the creates that arrive
//! wait and are written together by the next statement, [`CREATE_USERS`]:
//! the same CTE over `unnest` of the batch's arrays, with `ON CONFLICT DO
//! NOTHING` on the e-mail index so that a taken e-mail skips its own row
//! instead of failing the batch (its request answers 409, as the unique
//! violation would). Each request still gets the answer of its own row,
//! after its commit; the batch's permits at the shutdown gate are one per
//! request, each kept until that request is answered. PostgreSQL pays the
//! round trip, the plan, the commit and the WAL flush once per batch: on two
//! cores, about three times the rows a second (BENCHMARKS.md, "Group
//! commit"). A batch the database refuses for a reason of one row runs each
//! create again alone, so that only that row's request fails; an unknown
//! outcome (a cut or dead connection) is recovered per create, as below.
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
use std::time::{Duration, Instant, SystemTime};

use postgres::error::SqlState;
use postgres::{Client, GenericClient, Row};

use super::error::{Internal, UserError};
use super::idempotency::{IdempotencyKey, IdempotentResponse, StoredResponse, KEY_TTL};
use super::model::{NewUser, User, UserChanges};
use super::repository::{Respond, UserRepository};
use crate::db::commit_gate::{keep_until_answered, CommitPermit};
use crate::db::group_commit::{Deadlines, GroupCommit, Submitted};
use crate::db::{ApplyBy, Db, DbError, DbPool, StatementError};

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
/// [`CREATE_USER`] for a group commit's batch (arrays of names, e-mails and
/// timestamps, sorted by e-mail): the rows whose e-mail is taken —
/// by an existing user or by an earlier row of the same batch — are skipped
/// rather than failing the others, and their requests answer 409 as a
/// unique violation would.
const CREATE_USERS: &str = "WITH u AS (\
     INSERT INTO users (name, email, created_at, updated_at) \
     SELECT name, email, at, at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) \
     AS c(name, email, at) WHERE usersvc_apply_by($4) \
     ON CONFLICT ((lower(email))) DO NOTHING \
     RETURNING id, name, email, created_at, updated_at), \
     e AS (INSERT INTO events (type, payload) \
     SELECT 'user.created', user_json(id, name, email, created_at, updated_at)::json FROM u) \
     SELECT id, name, email, created_at, updated_at FROM u";
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
    creates: Arc<GroupCommit<PendingCreate, CreateOutcome>>,
}

impl PgUserRepository {
    /// Uses `pool` for every operation.
    pub fn new(pool: DbPool) -> Self {
        let max_batches = group_commit_batches(pool.settings().max_connections);
        PgUserRepository {
            pool,
            creates: Arc::new(GroupCommit::new(max_batches, MAX_BATCH)),
        }
    }

    /// Writes a batch of creates as one statement (one alone as
    /// [`CREATE_USER`]); one outcome per create, in order.
    fn write_creates(&self, batch: Vec<PendingCreate>) -> Vec<CreateOutcome> {
        let started = batch
            .iter()
            .map(|c| c.started)
            .min()
            .unwrap_or_else(Instant::now);
        let n = batch.len();
        let (permits, result) = self.pool.write_batch(started, n, |db, apply_by| {
            if let [one] = batch.as_slice() {
                return Ok(vec![Some(insert_one(
                    db, &one.name, &one.email, one.now, apply_by,
                )?)]);
            }
            // Rows go in in e-mail order: two batches that share e-mails
            // then take the index's locks in one order and cannot deadlock.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| batch[a].email.cmp(&batch[b].email));
            let names: Vec<&str> = order.iter().map(|&i| batch[i].name.as_str()).collect();
            let emails: Vec<&str> = order.iter().map(|&i| batch[i].email.as_str()).collect();
            let times: Vec<SystemTime> = order.iter().map(|&i| batch[i].now).collect();
            let rows = db.query(CREATE_USERS, &[&names, &emails, &times, &apply_by])?;
            let mut created: Vec<Option<User>> = vec![None; n];
            for row in &rows {
                let user = checked_user(row)?;
                // Each row is the create that sent its e-mail, name and
                // timestamp (a second create of one e-mail was skipped).
                if let Some(i) = (0..n).find(|&i| created[i].is_none() && batch[i].wrote(&user)) {
                    created[i] = Some(user);
                }
            }
            Ok(created)
        });
        let mut permits = permits.into_iter();
        let mut outcome = |result: CreateResult| CreateOutcome {
            permit: permits.next(),
            result,
        };
        match result {
            Ok(created) => created
                .into_iter()
                .map(|user| outcome(user.map_or(CreateResult::EmailTaken, CreateResult::Created)))
                .collect(),
            Err(StatementError::Unknown) => {
                (0..n).map(|_| outcome(CreateResult::Unknown)).collect()
            }
            Err(StatementError::Failed(e)) if n == 1 => vec![outcome(CreateResult::Failed(e))],
            // No connection, a refusal at shutdown, the fence or a timeout:
            // true of every create in the batch.
            Err(StatementError::Failed(DbError::Unavailable(m))) => (0..n)
                .map(|_| outcome(CreateResult::Failed(DbError::Unavailable(m.clone()))))
                .collect(),
            // The database refused the statement for one of its rows (none
            // is expected: the rules check what its constraints do): each
            // create runs alone, so that only its own row's error is its.
            Err(StatementError::Failed(_)) => {
                (0..n).map(|_| outcome(CreateResult::RunAlone)).collect()
            }
        }
    }

    /// One create in a statement of its own within the create's budget
    /// (begun at `started`), with the recovery of an unknown outcome.
    fn create_alone(
        &self,
        user: &NewUser,
        now: SystemTime,
        started: Instant,
    ) -> Result<User, UserError> {
        self.pool
            .write_one_from(
                started,
                |db, apply_by| insert_one(db, &user.name, &user.email, now, apply_by),
                |db, apply_by| find_or_insert(db, user, now, apply_by),
            )
            .map_err(map_write_error)
    }

    /// Whether a create whose outcome is unknown was applied, within the
    /// create's budget (begun at `started`).
    fn recover_create(
        &self,
        user: &NewUser,
        now: SystemTime,
        started: Instant,
    ) -> Result<User, UserError> {
        self.pool
            .recover_write(started, |db, apply_by| {
                find_or_insert(db, user, now, apply_by)
            })
            .map_err(map_write_error)
    }
}

/// One create as [`CREATE_USER`].
fn insert_one(
    db: &mut Db<'_, Client>,
    name: &str,
    email: &str,
    now: SystemTime,
    apply_by: ApplyBy,
) -> Result<User, postgres::Error> {
    let row = db.query_one(CREATE_USER, &[&name, &email, &now, &apply_by])?;
    checked_user(&row)
}

/// The recovery of a create whose outcome is unknown: the row with its
/// e-mail and timestamp if the create was applied, else the create run again.
fn find_or_insert(
    db: &mut Db<'_, Client>,
    user: &NewUser,
    now: SystemTime,
    apply_by: ApplyBy,
) -> Result<User, postgres::Error> {
    match db.query_opt(FIND_CREATED, &[&user.email, &now])? {
        Some(row) => checked_user(&row),
        None => insert_one(db, &user.name, &user.email, now, apply_by),
    }
}

/// The most creates one statement carries. The workers bound it first
/// (one request each); this keeps a huge `WORKERS` from building statements
/// whose arrays and plan grow without limit.
const MAX_BATCH: usize = 64;

/// How long past its batch's deadline a create waits for its leader before
/// it answers that the outcome is unknown (a leader stuck outside the
/// database call, which the call's watchdog cannot cut).
const ABANDON_MARGIN: Duration = Duration::from_secs(1);

/// How many group-commit statements may run at once: two, so that one
/// gathers the creates that wait while the other is at the database (with
/// one, the database idles between a statement's answer and the next
/// leader's send), and no more, because every statement in flight beyond
/// that only splits the same waiting creates (the workers bound them) into
/// smaller batches that contend at the database. Measured on two cores
/// (BENCHMARKS.md, "Group commit"): W3 15.8k creates/s with two against 12.6k
/// with six, and W4's p99 20 ms against 53. A pool of one allows one.
fn group_commit_batches(max_connections: u32) -> usize {
    usize::try_from(max_connections)
        .unwrap_or(1)
        .clamp(1, GROUP_COMMIT_STATEMENTS)
}

/// See [`group_commit_batches`].
const GROUP_COMMIT_STATEMENTS: usize = 2;

/// A create waiting for its statement: what it writes and when its budget began.
struct PendingCreate {
    name: String,
    email: String,
    now: SystemTime,
    started: Instant,
}

impl PendingCreate {
    /// Whether `user` is the row this create wrote: its e-mail, its name,
    /// and its timestamp as the database keeps it (whole microseconds).
    fn wrote(&self, user: &User) -> bool {
        self.email == user.email
            && self.name == user.name
            && micros(self.now) == micros(user.created_at)
    }
}

fn micros(t: SystemTime) -> Option<u128> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_micros())
}

/// A create's outcome, handed from the batch's leader to the create's own
/// thread with its commit permit (kept until that thread has answered).
struct CreateOutcome {
    permit: Option<CommitPermit>,
    result: CreateResult,
}

enum CreateResult {
    Created(User),
    EmailTaken,
    /// The statement's outcome is unknown: find out, as `write_one` does.
    Unknown,
    /// Run again in a statement of its own.
    RunAlone,
    Failed(DbError),
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
        let started = Instant::now();
        let pending = PendingCreate {
            name: user.name.clone(),
            email: user.email.clone(),
            now,
            started,
        };
        let deadlines = Deadlines {
            // Queued as long as a request waits for a connection.
            queued_until: started + self.pool.settings().acquire_timeout,
            // The batch's statement ends by the oldest create's `done_by`
            // (its call deadline); past that and a margin, its leader is stuck.
            answered_by: self.pool.done_by(started) + ABANDON_MARGIN,
        };
        let outcome = match self
            .creates
            .submit(pending, deadlines, |batch| self.write_creates(batch))
        {
            Submitted::Done(outcome) => outcome,
            Submitted::Expired => {
                return Err(UserError::from(DbError::Unavailable(format!(
                    "the create waited DB_ACQUIRE_TIMEOUT ({} ms) for the create statements \
                     ahead of it, and was not sent",
                    self.pool.settings().acquire_timeout.as_millis()
                ))))
            }
            Submitted::Abandoned => return Err(UserError::Internal(Internal::AbandonedBatch)),
        };
        if let Some(permit) = outcome.permit {
            keep_until_answered(permit);
        }
        match outcome.result {
            CreateResult::Created(created) => Ok(created),
            CreateResult::EmailTaken => Err(email_taken()),
            CreateResult::Unknown => self.recover_create(user, now, started),
            CreateResult::RunAlone => self.create_alone(user, now, started),
            CreateResult::Failed(e) => Err(map_write_error(e)),
        }
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
        return email_taken();
    }
    UserError::from(e)
}

fn email_taken() -> UserError {
    UserError::Conflict("a user with this email already exists".into())
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
