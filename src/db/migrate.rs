//! Applies and reverts the embedded migrations (golang-migrate semantics).
//!
//! - State lives in golang-migrate's `schema_migrations (version bigint
//!   primary key, dirty boolean)`: one row, the current version, or no row.
//! - A session-level `pg_advisory_lock` serialises runners: replicas starting
//!   together queue up, and each one after the first finds nothing to do.
//! - Each migration runs in its own transaction together with the version
//!   update, so a failed migration leaves the previous version, not a dirty
//!   one. (Consequence: statements that cannot run in a transaction, such as
//!   `CREATE INDEX CONCURRENTLY`, are not supported in a migration file.)
//!   A `dirty` row can still come from golang-migrate itself; we refuse to
//!   run on it, as golang-migrate does, until an operator fixes it.
//! - A database at a version newer than this binary knows (a rolling
//!   deploy's older replica restarting) is left alone by `up`.
//!
//! The functions take a `&mut Client` so the caller chooses the connection
//! (main uses [`super::connect`], tests use their own).

use std::fmt;
use std::time::Instant;

use postgres::Client;

pub use super::migrations::{Migration, MIGRATIONS};

/// The advisory lock key (the ASCII bytes of `usersvc1`), fixed so every
/// replica of every version of this service agrees on it. It is not
/// golang-migrate's key: do not run its CLI while replicas are starting.
pub const LOCK_KEY: i64 = 0x7573_6572_7376_6331; // "usersvc1"

/// Where the schema stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The applied version; `None` for an empty database.
    pub version: Option<i64>,
    /// A previous golang-migrate run failed half-way at `version`.
    pub dirty: bool,
    /// The migrations applied (this binary's files up to `version`), in
    /// order, by file stem (`000001_users`).
    pub applied: Vec<&'static str>,
    /// Versions this binary would apply with `up`, in order.
    pub pending: Vec<i64>,
    /// The newest version this binary knows.
    pub latest: i64,
}

impl Status {
    /// The database was migrated by a newer binary (a rolling deploy's
    /// older replica, or a rollback): `up` leaves it alone and `down`
    /// refuses it, since this binary has no files for its version.
    pub fn newer_than_binary(&self) -> bool {
        self.version.is_some_and(|v| v > self.latest)
    }
}

/// Why a migration command failed.
#[derive(Debug)]
pub enum MigrateError {
    /// Talking to the database failed outside any migration.
    Db(postgres::Error),
    /// `schema_migrations` is dirty at this version: fix by hand first.
    Dirty(i64),
    /// The database is at a version this binary has no files for.
    UnknownVersion(i64),
    /// `down N` asked for more steps than there are applied migrations;
    /// nothing was reverted.
    TooFewApplied {
        /// The steps asked for.
        requested: usize,
        /// The migrations applied.
        applied: usize,
    },
    /// A migration's SQL failed; its transaction was rolled back.
    Failed {
        /// The failing migration's version.
        version: i64,
        /// Its file stem.
        name: &'static str,
        /// The server's answer.
        error: postgres::Error,
    },
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Db(e) => write!(f, "migrations: {}", super::error::describe(e)),
            MigrateError::Dirty(v) => write!(
                f,
                "migrations: database is dirty at version {v}; repair it, then set dirty = false"
            ),
            MigrateError::UnknownVersion(v) => {
                write!(
                    f,
                    "migrations: database version {v} is unknown to this binary"
                )
            }
            MigrateError::TooFewApplied { requested, applied } => write!(
                f,
                "migrations: cannot revert {requested}: only {applied} applied; nothing was reverted"
            ),
            MigrateError::Failed {
                version,
                name,
                error,
            } => write!(
                f,
                "migration {version} ({name}) failed and was rolled back: {}",
                super::error::describe(error)
            ),
        }
    }
}

impl std::error::Error for MigrateError {}

impl From<postgres::Error> for MigrateError {
    fn from(e: postgres::Error) -> Self {
        MigrateError::Db(e)
    }
}

/// Current version, dirty flag and pending list. Takes no lock.
pub fn status(client: &mut Client) -> Result<Status, MigrateError> {
    status_with(client, MIGRATIONS)
}

/// Applies every pending migration; returns the versions applied (empty when
/// up to date, e.g. because another replica just did it).
pub fn up(client: &mut Client) -> Result<Vec<i64>, MigrateError> {
    up_with(client, MIGRATIONS)
}

/// Reverts the `n` most recent migrations; returns the versions reverted.
pub fn down(client: &mut Client, n: usize) -> Result<Vec<i64>, MigrateError> {
    down_with(client, MIGRATIONS, n)
}

/// [`status`] over an explicit list (tests).
pub fn status_with(client: &mut Client, all: &[Migration]) -> Result<Status, MigrateError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
        .get(0);
    let (version, dirty) = if exists {
        read_version(client)?
    } else {
        (None, false)
    };
    Ok(Status {
        version,
        dirty,
        applied: all
            .iter()
            .filter(|m| version.is_some_and(|v| m.version <= v))
            .map(|m| m.name)
            .collect(),
        pending: pending(all, version).map(|m| m.version).collect(),
        latest: all.last().map_or(0, |m| m.version),
    })
}

/// [`up`] over an explicit list (tests).
pub fn up_with(client: &mut Client, all: &[Migration]) -> Result<Vec<i64>, MigrateError> {
    // Every start but the first finds the schema current: two reads settle
    // that without the advisory lock or the `CREATE TABLE IF NOT EXISTS`
    // (which logs a NOTICE each time). Safe without the lock: the version
    // only moves under it, and "current" needs no further action.
    let latest = all.last().map(|m| m.version);
    if latest.is_some() {
        let now = status_with(client, all)?;
        if now.version == latest && !now.dirty {
            return Ok(Vec::new());
        }
    }
    with_lock(client, |client| {
        let (version, dirty) = read_version(client)?;
        if let Some(v) = version {
            if dirty {
                return Err(MigrateError::Dirty(v));
            }
            if v > all.last().map_or(0, |m| m.version) {
                log::warn!(
                    target: "usersvc::db",
                    "database schema version {v} is newer than this binary knows; not migrating"
                );
                return Ok(Vec::new());
            }
        }
        let mut applied = Vec::new();
        for m in pending(all, version) {
            let start = Instant::now();
            apply(client, m.up, Some(m.version)).map_err(|error| MigrateError::Failed {
                version: m.version,
                name: m.name,
                error,
            })?;
            log::info!(
                target: "usersvc::db",
                "applied migration {} ({}) in {} ms",
                m.version,
                m.name,
                start.elapsed().as_millis()
            );
            applied.push(m.version);
        }
        Ok(applied)
    })
}

/// [`down`] over an explicit list (tests). Asking for more steps than are
/// applied is refused before anything is reverted: an operator who typed
/// `down 100` for `down 1` gets an error, not an empty schema.
pub fn down_with(
    client: &mut Client,
    all: &[Migration],
    n: usize,
) -> Result<Vec<i64>, MigrateError> {
    with_lock(client, |client| {
        let (version, dirty) = read_version(client)?;
        let applied = match version {
            None => 0,
            Some(v) if dirty => return Err(MigrateError::Dirty(v)),
            Some(v) => {
                all.iter()
                    .position(|m| m.version == v)
                    .ok_or(MigrateError::UnknownVersion(v))?
                    + 1
            }
        };
        if n > applied {
            return Err(MigrateError::TooFewApplied {
                requested: n,
                applied,
            });
        }
        let mut reverted = Vec::new();
        for idx in (applied - n..applied).rev() {
            let m = &all[idx];
            let previous = idx.checked_sub(1).map(|i| all[i].version);
            apply(client, m.down, previous).map_err(|error| MigrateError::Failed {
                version: m.version,
                name: m.name,
                error,
            })?;
            log::info!(target: "usersvc::db", "reverted migration {} ({})", m.version, m.name);
            reverted.push(m.version);
        }
        Ok(reverted)
    })
}

fn pending(all: &[Migration], version: Option<i64>) -> impl Iterator<Item = &Migration> {
    let current = version.unwrap_or(i64::MIN);
    all.iter().filter(move |m| m.version > current)
}

/// Runs `sql` and records `new_version` (or no version) in one transaction.
fn apply(client: &mut Client, sql: &str, new_version: Option<i64>) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute(sql)?;
    tx.execute("DELETE FROM schema_migrations", &[])?;
    if let Some(v) = new_version {
        tx.execute(
            "INSERT INTO schema_migrations (version, dirty) VALUES ($1, false)",
            &[&v],
        )?;
    }
    tx.commit()
}

fn read_version(client: &mut Client) -> Result<(Option<i64>, bool), postgres::Error> {
    let row = client.query_opt(
        "SELECT version, dirty FROM schema_migrations ORDER BY version DESC LIMIT 1",
        &[],
    )?;
    Ok(match row {
        Some(r) => (Some(r.get(0)), r.get(1)),
        None => (None, false),
    })
}

/// Holds the advisory lock around `f` (and creates `schema_migrations`
/// under it: concurrent `CREATE TABLE IF NOT EXISTS` can itself collide).
fn with_lock<T>(
    client: &mut Client,
    f: impl FnOnce(&mut Client) -> Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])?;
    let result = client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)",
        )
        .map_err(MigrateError::from)
        .and_then(|()| f(client));
    // A lost connection releases the lock by itself; otherwise release it now.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]);
    match (result, unlocked) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
        (Ok(v), Ok(_)) => Ok(v),
    }
}
