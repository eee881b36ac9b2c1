//! The gate every COMMIT passes at shutdown.
//!
//! Why it exists: at `SHUTDOWN_TIMEOUT` the runtime cuts the connections that
//! are still open. A handler blocked in the database (a lock, a slow
//! statement) would otherwise carry on after its client was cut off and
//! commit a write nobody was told about. So before the cut the runtime
//! [closes](CommitGate::close) the gate: from then on [`DbPool::write`]
//! (crate::db::DbPool::write) refuses to send COMMIT (the transaction is
//! rolled back, the call answers `Unavailable`), and workers start no queued
//! job.
//!
//! A request whose COMMIT passed the gate must still get its answer: the
//! permit taken at COMMIT is kept, inside an [`answer_scope`], until the
//! response has been written, and `close` waits (briefly, bounded) for those
//! permits before the runtime cuts anything. So every write is either
//! committed and answered, or not committed — except a COMMIT still in
//! flight when that short wait ends, which is logged as such.
//!
//! A single-statement write ([`DbPool::write_one`](crate::db::DbPool::write_one))
//! is its own COMMIT: it takes its permit before it is sent, and registers a
//! [`Canceller`] for as long as it runs. Closing the gate cancels every such
//! statement still running on the server (a lock wait, a slow plan): the
//! server rolls it back, its worker answers 503, and nothing is written for
//! a client that is about to be cut off. One that finished first is
//! committed and keeps its permit until it is answered, like a COMMIT.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

/// Shared by the pool (which asks it before each COMMIT) and the runtime
/// (which closes it at the shutdown deadline).
#[derive(Debug, Default)]
pub struct CommitGate {
    state: Mutex<GateState>,
    released: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    /// Permits alive: commits in flight or committed requests not yet answered.
    holders: usize,
    /// Single-statement writes running on the server, by id.
    statements: Vec<(u64, Canceller)>,
    next_statement: u64,
}

/// Asks the server to cancel one running statement (a cancel request on a
/// connection of its own: it may block, so it runs on a thread of its own).
pub(crate) struct Canceller(Box<dyn FnOnce() + Send>);

impl Canceller {
    pub(crate) fn new(cancel: impl FnOnce() + Send + 'static) -> Canceller {
        Canceller(Box::new(cancel))
    }
}

impl fmt::Debug for Canceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Canceller")
    }
}

/// A single-statement write registered with the gate while it runs.
#[derive(Debug)]
pub(crate) struct StatementInFlight {
    gate: Arc<CommitGate>,
    id: u64,
}

impl Drop for StatementInFlight {
    fn drop(&mut self) {
        self.gate.lock().statements.retain(|(id, _)| *id != self.id);
    }
}

/// Held from just before COMMIT until the request's answer is written.
#[derive(Debug)]
pub struct CommitPermit {
    gate: Arc<CommitGate>,
}

impl Drop for CommitPermit {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.holders = state.holders.saturating_sub(1);
        drop(state);
        self.gate.released.notify_all();
    }
}

impl CommitGate {
    pub fn new() -> Arc<CommitGate> {
        Arc::new(CommitGate::default())
    }

    /// A permit to COMMIT, or `None` once the gate is closed.
    pub fn try_enter(self: &Arc<Self>) -> Option<CommitPermit> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.holders += 1;
        Some(CommitPermit {
            gate: Arc::clone(self),
        })
    }

    /// Permits for a single-statement write that answers `requests`
    /// requests (one, or a group commit's batch), taken together so the gate
    /// never lets part of a batch through; the statement is registered with
    /// `cancel` until the returned guard drops (when it has returned). `None`
    /// once the gate is closed.
    pub(crate) fn enter_statement(
        self: &Arc<Self>,
        requests: usize,
        cancel: Canceller,
    ) -> Option<(Vec<CommitPermit>, StatementInFlight)> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.holders += requests;
        state.next_statement += 1;
        let id = state.next_statement;
        state.statements.push((id, cancel));
        let permits = (0..requests)
            .map(|_| CommitPermit {
                gate: Arc::clone(self),
            })
            .collect();
        Some((
            permits,
            StatementInFlight {
                gate: Arc::clone(self),
                id,
            },
        ))
    }

    /// Whether the gate has been closed (no new job, no new COMMIT).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Closes the gate, then waits until every permit is released or
    /// `until` passes. Returns how many permits were still held (commits
    /// whose answer may not reach the client).
    pub fn close(&self, until: Instant) -> usize {
        let mut state = self.lock();
        state.closed = true;
        for (_, cancel) in std::mem::take(&mut state.statements) {
            let spawned = thread::Builder::new()
                .name("db-cancel".into())
                .spawn(cancel.0);
            if let Err(e) = spawned {
                log::error!(error = e.to_string().as_str(); "cannot cancel a write still running at the shutdown deadline");
            }
        }
        while state.holders > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .released
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.holders
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

thread_local! {
    /// Permits taken on this thread inside an [`answer_scope`].
    static KEPT: RefCell<Option<Vec<CommitPermit>>> = const { RefCell::new(None) };
}

/// Runs `f` (a handler and the writing of its answer): commit permits taken
/// inside it are released only when it returns.
pub fn answer_scope<T>(f: impl FnOnce() -> T) -> T {
    struct Scope(Option<Vec<CommitPermit>>);
    impl Drop for Scope {
        fn drop(&mut self) {
            // Restore the outer scope (none, in practice); our permits drop.
            let mine = KEPT.with(|k| k.replace(self.0.take()));
            drop(mine);
        }
    }
    let outer = KEPT.with(|k| k.replace(Some(Vec::new())));
    let _scope = Scope(outer);
    f()
}

/// Keeps `permit` until the enclosing [`answer_scope`] ends; outside one
/// (a background job, a test) it is released at once.
pub(crate) fn keep_until_answered(permit: CommitPermit) {
    KEPT.with(|k| match k.borrow_mut().as_mut() {
        Some(kept) => kept.push(permit),
        None => drop(permit),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn closed_gate_refuses_and_close_waits_for_answers() {
        let gate = CommitGate::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let g = Arc::clone(&gate);
        let answering = thread::spawn(move || {
            answer_scope(|| {
                let permit = g.try_enter().expect("open");
                keep_until_answered(permit);
                tx.send(()).expect("send");
                // The answer takes a while to write.
                thread::sleep(Duration::from_millis(100));
            });
        });
        rx.recv().expect("permit taken");
        let t = Instant::now();
        let left = gate.close(Instant::now() + Duration::from_secs(5));
        assert_eq!(left, 0);
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "waited for the answer"
        );
        assert!(gate.is_closed());
        assert!(gate.try_enter().is_none());
        answering.join().expect("join");
    }

    #[test]
    fn close_gives_up_at_its_deadline_and_outside_a_scope_permits_drop_at_once() {
        let gate = CommitGate::new();
        keep_until_answered(gate.try_enter().expect("open"));
        let held = gate.try_enter().expect("open");
        let t = Instant::now();
        assert_eq!(gate.close(Instant::now() + Duration::from_millis(50)), 1);
        assert!(t.elapsed() < Duration::from_secs(1));
        drop(held);
        assert_eq!(gate.close(Instant::now()), 0);
    }
}
