//! The outbox worker: delivers pending events and purges old rows.
//!
//! With a `WEBHOOK_URL` it has a thread of its own, `outbox` (a delivery
//! waits on the receiver for up to `WEBHOOK_TIMEOUT`). Without one there is
//! nothing to deliver, and what is left (steps 1 and 3 below, a few short
//! statements a second at most) runs as a timed job on the database pool's
//! maintenance threads ([`DbPool::schedule`]) instead of keeping a thread
//! asleep for it.
//!
//! One pass at a time, one connection ([`Store`]):
//!
//! 1. every [`PURGE_INTERVAL`] (and at start): retention, in batches of
//!    [`PURGE_BATCH`] rows — expired idempotency keys, then events delivered
//!    more than `OUTBOX_RETENTION` ago; pending and parked events never;
//! 2. with a `WEBHOOK_URL`: claim a batch (see `store`), deliver it in
//!    order, record each outcome as soon as it is known, and loop at once
//!    while there is work;
//! 3. otherwise refresh `outbox_pending` / `outbox_oldest_pending_age_seconds`
//!    and sleep until the next event is due, a write nudges it
//!    ([`super::wake`]) or [`POLL_INTERVAL`] passes — two small indexed
//!    queries per interval when idle. Without a `WEBHOOK_URL` there is
//!    nothing to deliver and no write nudges it: it sleeps until the gauges
//!    or the purge are next due (once a second at most, not every
//!    [`POLL_INTERVAL`]).
//!
//! Shutdown: [`Outbox::request_stop`] (the runtime calls it when the
//! listeners stop accepting) ends the claiming; the batch in hand is
//! finished, except that an attempt that could not end by the shutdown
//! deadline is not started — those events are released, pending for the
//! next start or another replica. Step 5 joins the thread (or cancels the
//! timed job and waits for a pass that is running).
//!
//! A database error drops the connection; the loop reconnects with back-off
//! (logged at most every 10 s). A claimed event whose outcome could not be
//! recorded is delivered again after its lease: at least once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cloudevent;
use super::policy::{self, AttemptResult, Outcome};
use super::store::{Backlog, Event, Store};
use super::webhook::{HeaderSupplier, Webhook};
use crate::config::Secret;
use crate::db::DbPool;
use crate::rate_log::RateLimitedLog;
use crate::runtime::Background;

/// Idle poll: how late an event written by another replica is seen.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often retention runs.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// Rows per purge statement.
pub const PURGE_BATCH: i64 = 500;
/// Purge statements per round at most (the rest waits for the next round).
pub const PURGE_ROUNDS: u32 = 20;
/// Events per claim.
pub const BATCH: i64 = 10;

/// Receives what the worker does (metrics).
pub trait OutboxObserver: Send + Sync {
    fn attempt(&self, result: AttemptResult, took: Duration);
    fn delivered(&self);
    fn parked(&self);
    fn backlog(&self, backlog: Backlog);
}

/// Counts nothing.
pub struct NoopOutboxObserver;

impl OutboxObserver for NoopOutboxObserver {
    fn attempt(&self, _: AttemptResult, _: Duration) {}
    fn delivered(&self) {}
    fn parked(&self) {}
    fn backlog(&self, _: Backlog) {}
}

/// How the worker behaves.
#[derive(Clone)]
pub struct OutboxSettings {
    pub database_url: Secret<String>,
    pub statement_timeout: Duration,
    /// `WEBHOOK_URL`; `None`: purge only, events stay pending.
    pub webhook_url: Option<String>,
    pub webhook_timeout: Duration,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub retention: Duration,
    /// How long an idempotency key is kept.
    pub key_ttl: Duration,
    /// Extra headers per call (the `traceparent` seam).
    pub headers: Option<HeaderSupplier>,
}

#[derive(Debug, Default)]
struct Control {
    /// Set by `request_stop`: claim nothing more; no attempt may run past it.
    stop: Option<Instant>,
    nudged: bool,
}

/// What `/debug/workers` shows.
#[derive(Debug, Clone)]
enum Activity {
    Idle,
    Connecting,
    Purging,
    Delivering { event: String, since: Instant },
}

struct Shared {
    control: Mutex<Control>,
    changed: Condvar,
    activity: Mutex<Activity>,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, a: Activity) {
        *self.activity.lock().unwrap_or_else(PoisonError::into_inner) = a;
    }

    fn stop_deadline(&self) -> Option<Instant> {
        self.control().stop
    }

    /// Sleeps up to `d`; returns early on a nudge or a stop request.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut c = self.control();
        while !c.nudged && c.stop.is_none() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            c = self
                .changed
                .wait_timeout(c, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        c.nudged = false;
    }
}

/// The outbox worker.
pub struct Outbox {
    shared: Arc<Shared>,
    delivering: bool,
    /// Taken by the `outbox` thread; held (locked during each pass) by the timed job.
    worker: Arc<Mutex<Option<Worker>>>,
    running: Mutex<Option<Running>>,
}

/// The thread the worker's passes run on (see the module docs).
fn thread_of(delivering: bool) -> &'static str {
    if delivering {
        "outbox"
    } else {
        "db-pool"
    }
}

/// How the worker runs once started (see the module docs).
enum Running {
    Thread(JoinHandle<()>),
    Scheduled(scheduled_thread_pool::JobHandle),
}

/// A cheap handle for `/debug/workers` and the write nudge.
#[derive(Clone)]
pub struct OutboxHandle {
    shared: Arc<Shared>,
    delivering: bool,
}

impl OutboxHandle {
    /// Wakes the worker: something was written.
    pub fn nudge(&self) {
        self.shared.control().nudged = true;
        self.shared.changed.notify_all();
    }

    /// The thread's state for `/debug/workers`.
    pub fn status(&self) -> Value {
        let activity = self
            .shared
            .activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut v = json!({ "thread": thread_of(self.delivering), "webhook": self.delivering });
        match activity {
            Activity::Idle => v["state"] = json!("idle"),
            Activity::Connecting => v["state"] = json!("connecting"),
            Activity::Purging => v["state"] = json!("purging"),
            Activity::Delivering { event, since } => {
                v["state"] = json!("delivering");
                v["event_id"] = json!(event);
                v["elapsed_ms"] = json!(crate::http::pipeline::millis(since.elapsed()));
            }
        }
        v
    }
}

impl Outbox {
    /// The worker, not yet running ([`Outbox::spawn`] starts it once the
    /// schema is current).
    pub fn new(settings: OutboxSettings, observer: Arc<dyn OutboxObserver>) -> Outbox {
        let shared = Arc::new(Shared {
            control: Mutex::new(Control::default()),
            changed: Condvar::new(),
            activity: Mutex::new(Activity::Idle),
        });
        let delivering = settings.webhook_url.is_some();
        let worker = Worker {
            webhook: settings
                .webhook_url
                .as_deref()
                .map(|url| Webhook::new(url, settings.webhook_timeout, settings.headers.clone())),
            settings,
            observer,
            shared: Arc::clone(&shared),
            store: None,
            errors: RateLimitedLog::new(Duration::from_secs(10)),
            backlog_at: None,
            last_backlog: Backlog {
                pending: 0,
                oldest_age_secs: 0.0,
            },
            backlog_cost: Duration::ZERO,
            next_purge: Instant::now(),
            reconnect: RECONNECT_FIRST,
        };
        Outbox {
            shared,
            delivering,
            worker: Arc::new(Mutex::new(Some(worker))),
            running: Mutex::new(None),
        }
    }

    /// Starts the worker: the `outbox` thread with a webhook, a timed job on
    /// `pool`'s maintenance threads without one (`pool` must be open). Later
    /// calls do nothing. A failed start leaves the worker in place, so the
    /// next call tries again.
    pub fn start(&self, pool: &DbPool) -> std::io::Result<()> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.is_some() {
            return Ok(());
        }
        let slot = Arc::clone(&self.worker);
        *running = Some(if self.delivering {
            Running::Thread(
                thread::Builder::new()
                    .name("outbox".into())
                    .spawn(move || {
                        let worker = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                        if let Some(worker) = worker {
                            worker.run();
                        }
                    })?,
            )
        } else {
            let job = pool.schedule(Duration::ZERO, move || {
                let mut worker = slot.lock().unwrap_or_else(PoisonError::into_inner);
                let w = worker.as_mut()?;
                if w.shared.stop_deadline().is_some() {
                    return None;
                }
                // A panic would end the job for good (the pool does not reschedule it) and
                // leave the gauges frozen: log it, start over on a new connection.
                match catch_unwind(AssertUnwindSafe(|| w.tick())) {
                    Ok(wait) => Some(wait.max(SCHEDULED_MIN_GAP)),
                    Err(_) => {
                        log::error!(target: "usersvc::outbox", "outbox pass panicked; reconnecting");
                        w.store = None;
                        w.shared.set(Activity::Idle);
                        Some(RECONNECT_MAX)
                    }
                }
            });
            Running::Scheduled(job.ok_or_else(|| {
                std::io::Error::other("the database pool is not open: nowhere to run the outbox")
            })?)
        });
        log::info!(
            target: "usersvc::outbox",
            webhook = self.delivering,
            thread = thread_of(self.delivering);
            "outbox worker started"
        );
        Ok(())
    }

    /// A handle for `/debug/workers` and the write nudge.
    pub fn handle(&self) -> OutboxHandle {
        OutboxHandle {
            shared: Arc::clone(&self.shared),
            delivering: self.delivering,
        }
    }

    /// Claim nothing more; start no attempt that could not end by `deadline`.
    pub fn request_stop(&self, deadline: Instant) {
        let mut c = self.shared.control();
        c.stop = Some(c.stop.map_or(deadline, |d| d.min(deadline)));
        drop(c);
        self.shared.changed.notify_all();
    }

    /// [`Outbox::request_stop`], then waits for the thread (or for a pass of
    /// the timed job that is running), at most until `deadline`; `false` if
    /// it was still running then.
    pub fn stop_and_wait(&self, deadline: Instant) -> bool {
        self.request_stop(deadline);
        let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return true;
        };
        let finished = || match &running {
            Running::Thread(handle) => handle.is_finished(),
            // The job locks the worker for a whole pass: free (or poisoned) means no pass runs.
            Running::Scheduled(_) => {
                !matches!(self.worker.try_lock(), Err(TryLockError::WouldBlock))
            }
        };
        if let Running::Scheduled(job) = &running {
            job.cancel();
        }
        while !finished() {
            if Instant::now() >= deadline {
                log::warn!(target: "usersvc::outbox", "outbox worker still busy at the shutdown deadline");
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        match running {
            Running::Thread(handle) => {
                let _ = handle.join();
            }
            // No pass runs and none will: close its connection now, not at exit.
            Running::Scheduled(_) => drop(
                self.worker
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            ),
        }
        log::info!(target: "usersvc::outbox", "outbox worker stopped");
        true
    }
}

impl Background for Arc<Outbox> {
    fn name(&self) -> &'static str {
        "outbox"
    }

    fn request_stop(&self, deadline: Instant) {
        Outbox::request_stop(self, deadline);
    }

    fn stop_and_join(self: Box<Self>, deadline: Instant) {
        self.stop_and_wait(deadline);
    }
}

struct Worker {
    settings: OutboxSettings,
    webhook: Option<Webhook>,
    observer: Arc<dyn OutboxObserver>,
    shared: Arc<Shared>,
    store: Option<Store>,
    errors: RateLimitedLog,
    /// When the backlog gauges were last refreshed, and what they showed.
    backlog_at: Option<Instant>,
    last_backlog: Backlog,
    /// How long the last count took.
    backlog_cost: Duration,
    next_purge: Instant,
    /// The wait before the next connect after a failed one.
    reconnect: Duration,
}

/// The first wait after a failed connect (doubling up to [`RECONNECT_MAX`]).
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The timed job (no webhook) runs at most this often: a pass with nothing
/// due costs nothing, and the gauges are due once a second at most.
const SCHEDULED_MIN_GAP: Duration = Duration::from_millis(250);

/// The backlog gauges are refreshed at most this often.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);
/// The share of time the backlog count may take (see `refresh_backlog`).
const BACKLOG_DUTY: f64 = 0.01;

/// Time allowed to open the outbox's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Worker {
    /// The `outbox` thread: passes until stopped, waiting between them.
    fn run(mut self) {
        while self.shared.stop_deadline().is_none() {
            let wait = self.tick();
            if !wait.is_zero() {
                self.shared.sleep(wait);
            }
        }
        self.shared.set(Activity::Idle);
    }

    /// One pass: (re)connects if needed, then [`Worker::round`]. Returns how
    /// long to wait before the next pass (a write's nudge may cut it short).
    fn tick(&mut self) -> Duration {
        if self.store.is_none() {
            self.shared.set(Activity::Connecting);
            match Store::connect(
                self.settings.database_url.expose_secret(),
                CONNECT_TIMEOUT,
                self.settings.statement_timeout,
            ) {
                Ok(store) => {
                    self.store = Some(store);
                    self.reconnect = RECONNECT_FIRST;
                }
                Err(e) => {
                    self.errors
                        .warn("usersvc::outbox", "outbox cannot reach the database", &e);
                    self.shared.set(Activity::Idle);
                    let wait = self.reconnect;
                    self.reconnect = (self.reconnect * 2).min(RECONNECT_MAX);
                    return wait;
                }
            }
        }
        let Some(mut store) = self.store.take() else {
            return Duration::ZERO;
        };
        let wait = match self.round(&mut store) {
            Ok(wait) => {
                self.store = Some(store);
                wait
            }
            Err(e) => {
                self.errors.warn(
                    "usersvc::outbox",
                    "outbox database error; reconnecting",
                    &crate::db::error::describe(&e),
                );
                self.reconnect
            }
        };
        self.shared.set(Activity::Idle);
        wait
    }

    /// One pass of the loop (see the module docs); returns the wait before
    /// the next.
    fn round(&mut self, store: &mut Store) -> Result<Duration, postgres::Error> {
        if Instant::now() >= self.next_purge {
            self.shared.set(Activity::Purging);
            self.purge(store)?;
            self.next_purge = Instant::now() + PURGE_INTERVAL;
        }
        if self.webhook.is_some() {
            // While busy the loop never idles: keep the gauges current.
            self.refresh_backlog(store)?;
            let lease = self.lease();
            let batch = store.claim(BATCH, lease)?;
            if !batch.is_empty() {
                self.deliver_batch(store, batch)?;
                return Ok(Duration::ZERO);
            }
        }
        self.refresh_backlog(store)?;
        let backlog = self.last_backlog;
        let mut wait = if self.webhook.is_some() {
            POLL_INTERVAL
        } else {
            self.backlog_due_in()
                .min(self.next_purge.saturating_duration_since(Instant::now()))
        };
        if self.webhook.is_some() && backlog.pending > 0 {
            if let Some(due) = store.next_due()? {
                wait = wait.min(due);
            }
        }
        Ok(wait)
    }

    /// Recounts the backlog gauges when they are due. The count scans every
    /// pending event (without a webhook they all stay pending, for ever), so
    /// it runs at most once per [`BACKLOG_EVERY`] however often writes wake
    /// the loop, and never more often than [`BACKLOG_DUTY`] of the
    /// database's time: a count that took 30 ms waits 3 s for the next.
    fn refresh_backlog(&mut self, store: &mut Store) -> Result<(), postgres::Error> {
        if !self.backlog_due_in().is_zero() {
            return Ok(());
        }
        let started = Instant::now();
        self.last_backlog = store.backlog()?;
        self.backlog_cost = started.elapsed();
        self.observer.backlog(self.last_backlog);
        self.backlog_at = Some(Instant::now());
        Ok(())
    }

    /// How long until the backlog gauges are due for a recount (zero: now).
    fn backlog_due_in(&self) -> Duration {
        let every = BACKLOG_EVERY.max(self.backlog_cost.mul_f64(1.0 / BACKLOG_DUTY));
        self.backlog_at
            .map_or(Duration::ZERO, |t| every.saturating_sub(t.elapsed()))
    }

    /// Long enough for a whole batch of attempts that each time out.
    fn lease(&self) -> Duration {
        self.settings.webhook_timeout * BATCH as u32 + Duration::from_secs(10)
    }

    fn purge(&mut self, store: &mut Store) -> Result<(), postgres::Error> {
        let (ttl, retention) = (self.settings.key_ttl, self.settings.retention);
        let mut keys = 0;
        let mut events = 0;
        for _ in 0..PURGE_ROUNDS {
            if self.shared.stop_deadline().is_some() {
                break;
            }
            let k = store.purge_keys(ttl, PURGE_BATCH)?;
            let e = store.purge_events(retention, PURGE_BATCH)?;
            keys += k;
            events += e;
            if k < PURGE_BATCH as u64 && e < PURGE_BATCH as u64 {
                break;
            }
        }
        if keys + events > 0 {
            log::info!(
                target: "usersvc::outbox",
                idempotency_keys = keys,
                events = events;
                "retention purge"
            );
        }
        Ok(())
    }

    fn deliver_batch(
        &mut self,
        store: &mut Store,
        batch: Vec<Event>,
    ) -> Result<(), postgres::Error> {
        let mut events = batch.into_iter();
        while let Some(event) = events.next() {
            if let Some(deadline) = self.shared.stop_deadline() {
                if Instant::now() + self.settings.webhook_timeout > deadline {
                    // No time for a whole attempt: give this one and the
                    // rest back, pending for the next start.
                    for e in std::iter::once(event).chain(events.by_ref()) {
                        store.release(&e.id)?;
                    }
                    break;
                }
            }
            self.deliver(store, &event)?;
        }
        self.shared.set(Activity::Idle);
        Ok(())
    }

    fn deliver(&mut self, store: &mut Store, event: &Event) -> Result<(), postgres::Error> {
        let Some(webhook) = &self.webhook else {
            return Ok(());
        };
        let body = match cloudevent::body(&event.id, &event.kind, event.created_at, &event.payload)
        {
            Ok(body) => body,
            Err(e) => {
                let reason = format!("payload is not JSON: {e}");
                self.park(store, event, &reason)?;
                return Ok(());
            }
        };
        self.shared.set(Activity::Delivering {
            event: event.id.clone(),
            since: Instant::now(),
        });
        let attempt = webhook.post(&event.id, &body);
        self.observer.attempt(attempt.result, attempt.took);
        let attempts = u32::try_from(event.attempts).unwrap_or(0).saturating_add(1);
        match attempt.outcome {
            Outcome::Delivered => {
                store.mark_delivered(&event.id)?;
                self.observer.delivered();
                log::debug!(
                    target: "usersvc::outbox",
                    event_id = event.id.as_str(),
                    attempts = attempts;
                    "event delivered"
                );
            }
            Outcome::Reject { reason } => self.park(store, event, &reason)?,
            Outcome::Retry { reason, .. } if attempts >= self.settings.max_attempts => {
                self.park(
                    store,
                    event,
                    &format!(
                        "{reason} (attempt {attempts} of {})",
                        self.settings.max_attempts
                    ),
                )?;
            }
            Outcome::Retry { after, reason } => {
                let gap = after.unwrap_or_else(|| {
                    policy::backoff(self.settings.backoff, attempts, policy::jitter())
                });
                store.mark_retry(&event.id, gap, &reason)?;
                log::debug!(
                    target: "usersvc::outbox",
                    event_id = event.id.as_str(),
                    attempts = attempts,
                    retry_in_ms = crate::http::pipeline::millis(gap),
                    reason = reason.as_str();
                    "delivery failed; will retry"
                );
            }
        }
        Ok(())
    }

    fn park(
        &mut self,
        store: &mut Store,
        event: &Event,
        reason: &str,
    ) -> Result<(), postgres::Error> {
        store.park(&event.id, reason)?;
        self.observer.parked();
        log::warn!(
            target: "usersvc::outbox",
            event_id = event.id.as_str(),
            event_type = event.kind.as_str(),
            attempts = event.attempts.saturating_add(1),
            reason = reason;
            "event parked as failed"
        );
        Ok(())
    }
}
