//! Group commit: concurrent writes of one kind coalesced into one statement.
//!
//! Why it exists: on the database, most of what a small write costs is paid
//! per statement and per commit (the round trip, the plan, the snapshot, the
//! WAL flush and the backend's wake-up), not per row. Measured on a 2-vCPU
//! host (BENCHMARKS.md, "Group commit"): the create statement runs 12k times a
//! second one row at a time from 25 clients, and inserts 34k rows a second
//! eight at a time from 8. A thread-per-request service holds one request per
//! worker, so when creates arrive faster than the database commits them, the
//! workers that wait can hand their rows to one statement instead of each
//! sending its own.
//!
//! How: at most `max_batches` statements run at once. A request that finds
//! one free *leads*: it takes its own item and whatever waits (up to
//! `max_items`), runs the statement, and hands each item its own outcome.
//! One that finds none free queues and sleeps on its slot. When a leader is
//! done, the first queued request is promoted to lead the next batch with
//! those queued behind it; the leader returns its own answer at once instead
//! of serving others (its latency is its own batch's). With less than
//! `max_batches` writes in flight nothing waits and every batch is one item:
//! the single-row path, unchanged, costs nothing extra.
//!
//! Bounds ([`Deadlines`]): a queued request gives up at `queued_until` (it
//! is removed and answers like a pool that had no connection); once taken
//! into a batch it waits for that batch's outcome, which the statement's own
//! call deadline bounds, and past `answered_by` (a net under that bound)
//! gives up as [`Submitted::Abandoned`]. A leader that panics leaves its
//! batch abandoned at once and passes the lead on.
//!
//! This module knows nothing of SQL: the statement is the caller's `run`.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// The queue and the count of statements running.
pub struct GroupCommit<I, O> {
    state: Mutex<State<I, O>>,
    max_batches: usize,
    max_items: usize,
}

struct State<I, O> {
    queue: VecDeque<(Arc<Slot<I, O>>, I)>,
    running: usize,
}

/// One request's place: where its outcome (or its lead) is handed over.
struct Slot<I, O> {
    state: Mutex<SlotState<I, O>>,
    changed: Condvar,
}

type Batch<I, O> = Vec<(Arc<Slot<I, O>>, I)>;

enum SlotState<I, O> {
    Queued,
    /// In a batch that is running.
    Taken,
    /// Promoted: run this batch (its own item first).
    Lead(Batch<I, O>),
    Done(O),
    Abandoned,
}

/// How long a submitted item waits.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Until a leader takes it into a batch.
    pub queued_until: Instant,
    /// Until its batch's outcome arrives (the statement's deadline and
    /// more); later than `queued_until`. Being taken costs the request no
    /// wake-up, so it looks at this bound from `queued_until` on.
    pub answered_by: Instant,
}

/// What became of a submitted item.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted<O> {
    /// Its statement ran; this is its own outcome.
    Done(O),
    /// It waited in the queue until `wait_until` and was never sent.
    Expired,
    /// Its leader panicked, returned too few outcomes or did not finish by
    /// `answered_by`: whether it was written is not known.
    Abandoned,
}

impl<I, O> GroupCommit<I, O> {
    /// At most `max_batches` statements at once (≥ 1), each of at most
    /// `max_items` items (≥ 1).
    pub fn new(max_batches: usize, max_items: usize) -> Self {
        GroupCommit {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                running: 0,
            }),
            max_batches: max_batches.max(1),
            max_items: max_items.max(1),
        }
    }

    /// Gets `item` written: leads a batch at once if fewer than
    /// `max_batches` run, else queues until a leader takes it or promotes it,
    /// within `deadlines`. `run` writes a batch (own item first) and returns
    /// one outcome per item, in order; it is called on this thread only if
    /// this request leads.
    pub fn submit(
        &self,
        item: I,
        deadlines: Deadlines,
        run: impl FnOnce(Vec<I>) -> Vec<O>,
    ) -> Submitted<O> {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Queued),
            changed: Condvar::new(),
        });
        let mut state = self.lock();
        if state.running < self.max_batches {
            state.running += 1;
            let mut batch = vec![(Arc::clone(&slot), item)];
            self.take_queued(&mut state, &mut batch);
            drop(state);
            return self.lead(&slot, batch, run);
        }
        state.queue.push_back((Arc::clone(&slot), item));
        drop(state);
        match self.wait(&slot, deadlines) {
            Waited::Outcome(o) => o,
            Waited::Lead(batch) => self.lead(&slot, batch, run),
        }
    }

    /// Moves queued items into `batch` up to `max_items`, marking them taken.
    fn take_queued(&self, state: &mut State<I, O>, batch: &mut Batch<I, O>) {
        while batch.len() < self.max_items {
            let Some((slot, item)) = state.queue.pop_front() else {
                break;
            };
            *lock(&slot.state) = SlotState::Taken;
            batch.push((slot, item));
        }
    }

    fn wait(&self, slot: &Arc<Slot<I, O>>, deadlines: Deadlines) -> Waited<I, O> {
        let mut mine = lock(&slot.state);
        loop {
            match std::mem::replace(&mut *mine, SlotState::Taken) {
                SlotState::Done(o) => return Waited::Outcome(Submitted::Done(o)),
                SlotState::Abandoned => return Waited::Outcome(Submitted::Abandoned),
                SlotState::Lead(batch) => return Waited::Lead(batch),
                SlotState::Taken => {
                    let left = deadlines
                        .answered_by
                        .saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // The leader hands its outcome to a slot nobody reads.
                        return Waited::Outcome(Submitted::Abandoned);
                    }
                    mine = slot
                        .changed
                        .wait_timeout(mine, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                SlotState::Queued => {
                    *mine = SlotState::Queued;
                    let left = deadlines
                        .queued_until
                        .saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // Leave the queue, unless a leader took us meanwhile
                        // (it holds the queue's lock while it marks us).
                        drop(mine);
                        let mut state = self.lock();
                        mine = lock(&slot.state);
                        if matches!(*mine, SlotState::Queued) {
                            state.queue.retain(|(s, _)| !Arc::ptr_eq(s, slot));
                            return Waited::Outcome(Submitted::Expired);
                        }
                        continue;
                    }
                    mine = slot
                        .changed
                        .wait_timeout(mine, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Runs `batch` (whose first item is `own`'s), hands out the outcomes,
    /// passes the lead on, and returns `own`'s outcome.
    fn lead(
        &self,
        own: &Arc<Slot<I, O>>,
        batch: Batch<I, O>,
        run: impl FnOnce(Vec<I>) -> Vec<O>,
    ) -> Submitted<O> {
        let (slots, items): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        // Until the outcomes are handed out, the guard's drop (a panic in
        // `run`) abandons the batch and passes the lead on.
        let mut guard = Leading { group: self, slots };
        let mut outcomes = run(items).into_iter();
        let mut own_outcome = Submitted::Abandoned;
        let mut unanswered = Vec::new();
        for slot in std::mem::take(&mut guard.slots) {
            match outcomes.next() {
                Some(outcome) if Arc::ptr_eq(&slot, own) => own_outcome = Submitted::Done(outcome),
                Some(outcome) => finish(&slot, SlotState::Done(outcome)),
                None => unanswered.push(slot),
            }
        }
        guard.slots = unanswered;
        drop(guard);
        own_outcome
    }

    /// The next batch's leader, if anything waits; else one fewer running.
    fn pass_lead(&self) {
        let mut state = self.lock();
        let Some((next, item)) = state.queue.pop_front() else {
            state.running -= 1;
            return;
        };
        let mut batch = vec![(Arc::clone(&next), item)];
        self.take_queued(&mut state, &mut batch);
        drop(state);
        finish(&next, SlotState::Lead(batch));
    }

    fn lock(&self) -> MutexGuard<'_, State<I, O>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Waited<I, O> {
    Outcome(Submitted<O>),
    Lead(Batch<I, O>),
}

/// A running batch: on drop, the slots not yet answered are abandoned (their
/// leader panicked or returned too few outcomes) and the lead passes on.
struct Leading<'a, I, O> {
    group: &'a GroupCommit<I, O>,
    slots: Vec<Arc<Slot<I, O>>>,
}

impl<I, O> Drop for Leading<'_, I, O> {
    fn drop(&mut self) {
        for slot in self.slots.drain(..) {
            finish(&slot, SlotState::Abandoned);
        }
        self.group.pass_lead();
    }
}

fn finish<I, O>(slot: &Slot<I, O>, to: SlotState<I, O>) {
    *lock(&slot.state) = to;
    slot.changed.notify_one();
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread::{self, JoinHandle};
    use std::time::Duration;

    type Group = Arc<GroupCommit<u32, u32>>;

    fn group(max_batches: usize, max_items: usize) -> Group {
        Arc::new(GroupCommit::new(max_batches, max_items))
    }

    fn queued_for(wait: Duration) -> Deadlines {
        Deadlines {
            queued_until: Instant::now() + wait,
            answered_by: Instant::now() + Duration::from_secs(30),
        }
    }

    fn long() -> Deadlines {
        queued_for(Duration::from_secs(30))
    }

    /// Submits `item` on a thread of its own, with `run` for its batch.
    fn submit_on_thread(
        group: &Group,
        item: u32,
        deadlines: Deadlines,
        run: impl FnOnce(Vec<u32>) -> Vec<u32> + Send + 'static,
    ) -> JoinHandle<Submitted<u32>> {
        let group = Arc::clone(group);
        thread::spawn(move || group.submit(item, deadlines, run))
    }

    /// Item 0 leads a batch that runs until the returned sender is used (or
    /// dropped); returns once it runs.
    fn leader_held(group: &Group) -> (JoinHandle<Submitted<u32>>, mpsc::Sender<()>) {
        let (release, released) = mpsc::channel::<()>();
        let leader = submit_on_thread(group, 0, long(), move |items| {
            let _ = released.recv();
            items
        });
        wait_for(group, |state| state.running == 1);
        (leader, release)
    }

    fn wait_for(group: &Group, done: impl Fn(&State<u32, u32>) -> bool) {
        while !done(&group.lock()) {
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn queued(group: &Group, n: usize) {
        wait_for(group, |state| state.queue.len() == n);
    }

    #[test]
    fn alone_it_runs_its_own_item_at_once() {
        let group = group(2, 8);
        let out = group.submit(7, long(), |items| {
            assert_eq!(items, vec![7]);
            vec![70]
        });
        assert_eq!(out, Submitted::Done(70));
        assert_eq!(group.lock().running, 0);
    }

    /// One statement at a time: while the first runs, the next ones queue,
    /// then all go in ONE batch and each gets its own outcome; the batch's
    /// leader is the first that queued.
    #[test]
    fn requests_that_wait_share_one_statement_and_get_their_own_outcomes() {
        let group = group(1, 8);
        let (first, release) = leader_held(&group);
        let (batches_tx, batches_rx) = mpsc::channel::<Vec<u32>>();
        let others: Vec<_> = (1..=5u32)
            .map(|i| {
                let batches = batches_tx.clone();
                let h = submit_on_thread(&group, i, long(), move |items| {
                    batches.send(items.clone()).expect("send");
                    items.iter().map(|i| i * 10).collect()
                });
                queued(&group, i as usize); // in order
                h
            })
            .collect();
        release.send(()).expect("release");
        assert_eq!(first.join().expect("first"), Submitted::Done(0));
        for (i, h) in (1..).zip(others) {
            assert_eq!(h.join().expect("other"), Submitted::Done(i * 10));
        }
        assert_eq!(
            batches_rx.recv().expect("second batch"),
            vec![1, 2, 3, 4, 5]
        );
        assert!(batches_rx.try_recv().is_err(), "two batches in all");
        assert_eq!(group.lock().running, 0);
    }

    #[test]
    fn batches_hold_at_most_max_items() {
        let group = group(1, 2);
        let (first, release) = leader_held(&group);
        let (sizes_tx, sizes_rx) = mpsc::channel::<usize>();
        let others: Vec<_> = (1..=5u32)
            .map(|i| {
                let sizes = sizes_tx.clone();
                submit_on_thread(&group, i, long(), move |items| {
                    sizes.send(items.len()).expect("send");
                    items
                })
            })
            .collect();
        queued(&group, 5);
        release.send(()).expect("release");
        assert_eq!(first.join().expect("first"), Submitted::Done(0));
        let mut back: Vec<u32> = others
            .into_iter()
            .map(|h| match h.join().expect("other") {
                Submitted::Done(o) => o,
                other => panic!("{other:?}"),
            })
            .collect();
        // Each got its own item back, whichever batch carried it.
        back.sort_unstable();
        assert_eq!(back, vec![1, 2, 3, 4, 5]);
        drop(sizes_tx);
        let sizes: Vec<usize> = sizes_rx.iter().collect();
        assert_eq!(sizes, vec![2, 2, 1]);
    }

    #[test]
    fn a_queued_request_gives_up_at_its_deadline_and_is_never_sent() {
        let group = group(1, 8);
        let (first, release) = leader_held(&group);
        let (seen_tx, seen_rx) = mpsc::channel::<Vec<u32>>();
        let out = group.submit(1, queued_for(Duration::from_millis(50)), |items| {
            seen_tx.send(items.clone()).expect("send");
            items
        });
        assert_eq!(out, Submitted::Expired);
        assert!(group.lock().queue.is_empty());
        release.send(()).expect("release");
        assert_eq!(first.join().expect("first"), Submitted::Done(0));
        assert!(
            seen_rx.try_recv().is_err(),
            "the expired item was never run"
        );
        assert_eq!(group.lock().running, 0);
    }

    #[test]
    fn a_leader_that_panics_abandons_its_batch_and_passes_the_lead() {
        let group = group(1, 8);
        let (release, released) = mpsc::channel::<()>();
        let first = submit_on_thread(&group, 0, long(), move |_items| {
            let _ = released.recv();
            panic!("the statement's code panicked");
        });
        wait_for(&group, |state| state.running == 1);
        let next = submit_on_thread(&group, 1, long(), |items| items);
        queued(&group, 1);
        release.send(()).expect("release");
        assert!(first.join().is_err(), "the leader's own thread panicked");
        // The queued one was promoted and ran its own batch.
        assert_eq!(next.join().expect("next"), Submitted::Done(1));
        // And the group still works.
        assert_eq!(group.submit(2, long(), |items| items), Submitted::Done(2));
        assert_eq!(group.lock().running, 0);
    }

    #[test]
    fn too_few_outcomes_abandon_the_rest() {
        let group = group(1, 8);
        let (first, release) = leader_held(&group);
        let one = submit_on_thread(&group, 1, long(), |_| vec![10]);
        queued(&group, 1);
        let two = submit_on_thread(&group, 2, long(), |_| vec![10]);
        queued(&group, 2);
        release.send(()).expect("release");
        first.join().expect("first");
        assert_eq!(one.join().expect("one"), Submitted::Done(10));
        assert_eq!(two.join().expect("two"), Submitted::Abandoned);
    }

    #[test]
    fn a_taken_request_gives_up_when_its_batch_outlives_answered_by() {
        let group = group(1, 8);
        let (first, release) = leader_held(&group);
        // Queued behind the first, then promoted; its own batch hangs past
        // the follower's answered_by.
        let (unhang, hung) = mpsc::channel::<()>();
        let leader2 = submit_on_thread(&group, 1, long(), move |items| {
            let _ = hung.recv();
            items
        });
        queued(&group, 1);
        let deadlines = Deadlines {
            queued_until: Instant::now() + Duration::from_secs(1),
            answered_by: Instant::now() + Duration::from_millis(1500),
        };
        let follower = submit_on_thread(&group, 2, deadlines, |items| items);
        queued(&group, 2);
        release.send(()).expect("release");
        assert_eq!(first.join().expect("first"), Submitted::Done(0));
        assert_eq!(follower.join().expect("follower"), Submitted::Abandoned);
        unhang.send(()).expect("let the hung batch end");
        assert_eq!(leader2.join().expect("leader2"), Submitted::Done(1));
        assert_eq!(group.lock().running, 0);
    }
}
