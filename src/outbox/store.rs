//! The outbox's SQL, on a connection of its own.
//!
//! Why not the request pool: it has exactly one connection per worker
//! thread (`WORKERS = MAX_CONNECTIONS`), so a worker never waits for one;
//! a background thread borrowing from it would break that. The outbox keeps
//! one extra connection (`application_name` `usersvc-outbox`), with the
//! same `DB_STATEMENT_TIMEOUT`, its statements prepared once.
//!
//! Its commits are asynchronous (`synchronous_commit = off`): the worker
//! records outcomes one event at a time, and waiting for a WAL flush per
//! event capped delivery at a few dozen events per second. What a database
//! crash can lose is the last fraction of a second of *outcomes*, never an
//! event (those are written by the API's own, synchronous transactions): the
//! affected events are delivered again, which at-least-once allows.
//!
//! # Claiming
//!
//! A claim is one statement: pick up to `batch` due events that are the
//! oldest pending event of their user, lock them `FOR UPDATE SKIP LOCKED`
//! (two replicas never pick the same row), and push their
//! `next_attempt_at` forward by a *lease*. The lease is what keeps another
//! replica away while the HTTP calls run, outside any transaction; if this
//! process dies, the events become due again when it runs out (delivery is
//! at least once). The user is `payload->>'id'`, read at query time.
//!
//! An event is due only when no earlier event of its user is pending
//! (delivered and parked ones do not count), so a user's events reach the
//! receiver in creation order, also across replicas and retries.
//!
//! That check is a `LATERAL … LIMIT 1` (the user's first pending event must
//! be this one), not `NOT EXISTS`: the planner cannot turn it into a join,
//! so it is always one probe of `events_pending_user_idx` per candidate.
//! With `NOT EXISTS`, on a table whose statistics were still those of an
//! empty one (a burst right after deployment, before autovacuum's first
//! ANALYZE), the planner chose a nested loop over the whole index for every
//! candidate: 0.9 s per claim at a backlog of 1,000, deliveries at ~10/s
//! (`tests/outbox.rs`, `sigterm_midway_then_restart_loses_nothing`, failed
//! on a slower host). The `LATERAL` form: ~5 ms there, the same as
//! `NOT EXISTS` with fresh statistics.

use std::time::{Duration, SystemTime};

use postgres::{Client, Statement};

use crate::db::{self, DbError};

const CLAIM: &str = "WITH due AS ( \
     SELECT e.id FROM events e \
     CROSS JOIN LATERAL (SELECT p.id FROM events p \
           WHERE p.delivered_at IS NULL AND p.failed_at IS NULL \
             AND (p.payload->>'id') = (e.payload->>'id') \
           ORDER BY p.created_at, p.id LIMIT 1) AS first \
     WHERE e.delivered_at IS NULL AND e.failed_at IS NULL AND e.next_attempt_at <= now() \
       AND first.id = e.id \
     ORDER BY e.created_at, e.id LIMIT $1 \
     FOR UPDATE OF e SKIP LOCKED) \
   UPDATE events SET next_attempt_at = now() + $2::bigint * interval '1 millisecond' \
   FROM due WHERE events.id = due.id \
   RETURNING events.id::text, events.type, events.payload::text, events.created_at, events.attempts";

const DELIVERED: &str = "UPDATE events SET delivered_at = now(), attempts = attempts + 1, \
     last_error = NULL WHERE id = $1::text::uuid AND delivered_at IS NULL";
const RETRY: &str = "UPDATE events SET attempts = attempts + 1, \
     next_attempt_at = now() + $2::bigint * interval '1 millisecond', last_error = $3 \
     WHERE id = $1::text::uuid AND delivered_at IS NULL";
const PARK: &str = "UPDATE events SET attempts = attempts + 1, failed_at = now(), \
     next_attempt_at = 'infinity', last_error = $2 \
     WHERE id = $1::text::uuid AND delivered_at IS NULL";
const RELEASE: &str = "UPDATE events SET next_attempt_at = now() \
     WHERE id = $1::text::uuid AND delivered_at IS NULL AND failed_at IS NULL";

const BACKLOG: &str = "SELECT count(*), \
     COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 \
     FROM events WHERE delivered_at IS NULL AND failed_at IS NULL";
/// Seconds until the earliest claimable event is due (negative: overdue).
const NEXT_DUE: &str = "SELECT EXTRACT(EPOCH FROM min(e.next_attempt_at) - now())::float8 \
     FROM events e WHERE e.delivered_at IS NULL AND e.failed_at IS NULL \
       AND NOT EXISTS (SELECT 1 FROM events p \
           WHERE p.delivered_at IS NULL AND p.failed_at IS NULL \
             AND (p.payload->>'id') = (e.payload->>'id') \
             AND (p.created_at, p.id) < (e.created_at, e.id))";

const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE key IN (SELECT key \
     FROM idempotency_keys WHERE created_at < now() - $1::bigint * interval '1 millisecond' \
     LIMIT $2)";
const PURGE_EVENTS: &str = "DELETE FROM events WHERE id IN (SELECT id FROM events \
     WHERE delivered_at IS NOT NULL \
       AND delivered_at < now() - $1::bigint * interval '1 millisecond' \
     ORDER BY delivered_at LIMIT $2)";

/// `application_name` of the outbox's connection.
pub const APPLICATION_NAME: &str = "usersvc-outbox";

/// A claimed event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The UUID, as text.
    pub id: String,
    /// `user.created` / `user.updated` / `user.deleted`.
    pub kind: String,
    /// The payload's JSON text, as stored.
    pub payload: String,
    pub created_at: SystemTime,
    /// Attempts before this one.
    pub attempts: i32,
}

/// The pending backlog.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    pub pending: i64,
    pub oldest_age_secs: f64,
}

struct Statements {
    claim: Statement,
    delivered: Statement,
    retry: Statement,
    park: Statement,
    release: Statement,
    backlog: Statement,
    next_due: Statement,
    purge_keys: Statement,
    purge_events: Statement,
}

/// The connection and its prepared statements.
pub struct Store {
    client: Client,
    st: Statements,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Connects to `url` (TLS as `DATABASE_URL` says) and prepares.
    pub fn connect(
        url: &str,
        connect_timeout: Duration,
        statement_timeout: Duration,
    ) -> Result<Store, DbError> {
        let mut client = db::connect_as(url, connect_timeout, APPLICATION_NAME)?;
        let prepared = (|| -> Result<Statements, postgres::Error> {
            client.batch_execute(&format!(
                "SET statement_timeout = {}; SET synchronous_commit = off",
                millis(statement_timeout)
            ))?;
            Ok(Statements {
                claim: client.prepare(CLAIM)?,
                delivered: client.prepare(DELIVERED)?,
                retry: client.prepare(RETRY)?,
                park: client.prepare(PARK)?,
                release: client.prepare(RELEASE)?,
                backlog: client.prepare(BACKLOG)?,
                next_due: client.prepare(NEXT_DUE)?,
                purge_keys: client.prepare(PURGE_KEYS)?,
                purge_events: client.prepare(PURGE_EVENTS)?,
            })
        })();
        let st = prepared.map_err(DbError::from_postgres)?;
        Ok(Store { client, st })
    }

    /// Claims up to `batch` due events for `lease`, oldest first.
    pub fn claim(&mut self, batch: i64, lease: Duration) -> Result<Vec<Event>, postgres::Error> {
        let rows = self
            .client
            .query(&self.st.claim, &[&batch, &millis(lease)])?;
        let mut events = rows
            .iter()
            .map(|r| {
                Ok(Event {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    payload: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, postgres::Error>>()?;
        // RETURNING has no order of its own.
        events.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(events)
    }

    pub fn mark_delivered(&mut self, id: &str) -> Result<(), postgres::Error> {
        self.client.execute(&self.st.delivered, &[&id]).map(drop)
    }

    pub fn mark_retry(
        &mut self,
        id: &str,
        after: Duration,
        error: &str,
    ) -> Result<(), postgres::Error> {
        self.client
            .execute(&self.st.retry, &[&id, &millis(after), &error])
            .map(drop)
    }

    pub fn park(&mut self, id: &str, error: &str) -> Result<(), postgres::Error> {
        self.client.execute(&self.st.park, &[&id, &error]).map(drop)
    }

    /// Gives back a claimed event that was not attempted (shutdown).
    pub fn release(&mut self, id: &str) -> Result<(), postgres::Error> {
        self.client.execute(&self.st.release, &[&id]).map(drop)
    }

    pub fn backlog(&mut self) -> Result<Backlog, postgres::Error> {
        let row = self.client.query_one(&self.st.backlog, &[])?;
        Ok(Backlog {
            pending: row.try_get(0)?,
            oldest_age_secs: row.try_get(1)?,
        })
    }

    /// When the next claimable event is due; `None` when none is pending.
    pub fn next_due(&mut self) -> Result<Option<Duration>, postgres::Error> {
        let row = self.client.query_one(&self.st.next_due, &[])?;
        let secs: Option<f64> = row.try_get(0)?;
        Ok(secs.map(|s| {
            if s.is_finite() && s > 0.0 {
                Duration::from_secs_f64(s.min(86_400.0))
            } else if s.is_finite() {
                Duration::ZERO
            } else {
                Duration::from_secs(86_400)
            }
        }))
    }

    /// Deletes up to `batch` idempotency keys older than `ttl`.
    pub fn purge_keys(&mut self, ttl: Duration, batch: i64) -> Result<u64, postgres::Error> {
        self.client
            .execute(&self.st.purge_keys, &[&millis(ttl), &batch])
    }

    /// Deletes up to `batch` events delivered more than `retention` ago.
    pub fn purge_events(
        &mut self,
        retention: Duration,
        batch: i64,
    ) -> Result<u64, postgres::Error> {
        self.client
            .execute(&self.st.purge_events, &[&millis(retention), &batch])
    }
}
