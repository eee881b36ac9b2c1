//! The fixed pool of worker threads behind a bounded channel.
//!
//! This is the service's whole concurrency model for API requests: the
//! public listener's I/O thread `try_submit`s a job; when the channel already holds `queue_depth`
//! jobs the submit fails at once and the caller answers 503 — work is never
//! queued without bound and never dropped silently. `workers` named threads
//! (`worker-0` …) `recv` jobs until the channel is closed *and* empty, so
//! closing it at shutdown still finishes every queued job.
//!
//! At the shutdown deadline the runtime takes what is still queued
//! ([`WorkerPool::take_queued`]) so that it is dropped, not run.
//!
//! Each worker publishes what it is doing in a [`WorkerSlot`], read by
//! `GET /debug/workers`.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

#[cfg(not(loom))]
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
#[cfg(not(loom))]
use std::sync::RwLock;
#[cfg(not(loom))]
use std::thread::{self, JoinHandle};

// Under loom (model tests of the hand-off and shutdown protocol, below) the
// same code runs on loom's primitives and a model of the bounded channel.
#[cfg(loom)]
mod loom_channel;
#[cfg(loom)]
use loom::sync::RwLock;
#[cfg(loom)]
use loom::thread::{self, JoinHandle};
#[cfg(loom)]
use loom_channel::{bounded, Receiver, Sender, TrySendError};

use crate::http::request_id::RequestId;

/// What one worker is doing right now.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    pub route: &'static str,
    pub request_id: RequestId,
    pub since: Instant,
}

/// One worker's published status (idle when `None`). A `Mutex` held for a
/// few nanoseconds per request by its own worker is uncontended except while
/// `/debug/workers` reads it.
#[derive(Debug, Default)]
pub struct WorkerSlot {
    busy: Mutex<Option<Busy>>,
}

impl WorkerSlot {
    pub fn set_busy(&self, busy: Busy) {
        *self.busy.lock().unwrap_or_else(PoisonError::into_inner) = Some(busy);
    }

    pub fn set_idle(&self) {
        *self.busy.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub fn get(&self) -> Option<Busy> {
        *self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sizes of the pool.
#[derive(Debug, Clone, Copy)]
pub struct WorkerPoolSize {
    pub workers: usize,
    pub queue_depth: usize,
}

/// The pool. It owns the queue's only [`Sender`] (behind [`Submitter`]s,
/// which borrow it): [`WorkerPool::close`] drops it, after which every
/// submit is refused and the workers finish what is queued and exit;
/// [`WorkerPool::join`] closes and waits.
pub struct WorkerPool<J> {
    handles: Vec<JoinHandle<()>>,
    slots: Arc<[WorkerSlot]>,
    inlet: Arc<Inlet<J>>,
    /// For [`WorkerPool::take_queued`] at the shutdown deadline.
    rx: Receiver<J>,
}

/// The queue's sending side: `None` once the pool is closed. Read-locked by
/// every submit (uncontended: one I/O thread submits), write-locked once, by
/// [`WorkerPool::close`].
struct Inlet<J> {
    tx: RwLock<Option<Sender<J>>>,
}

/// Reads how many jobs wait in the queue (for the `http_queue_depth` gauge);
/// it cannot submit or take a job.
#[derive(Clone)]
pub struct QueueLen(Arc<dyn ChannelLen>);

impl QueueLen {
    /// Jobs waiting in the queue now.
    pub fn get(&self) -> usize {
        self.0.len()
    }
}

trait ChannelLen: Send + Sync {
    fn len(&self) -> usize;
}

impl<J: Send> ChannelLen for Receiver<J> {
    fn len(&self) -> usize {
        Receiver::len(self)
    }
}

/// A handle to submit jobs, held by the public listener's dispatcher. It
/// does not keep the queue open: after [`WorkerPool::close`] every submit
/// is refused.
pub struct Submitter<J> {
    inlet: Arc<Inlet<J>>,
}

impl<J> Clone for Submitter<J> {
    fn clone(&self) -> Self {
        Submitter {
            inlet: Arc::clone(&self.inlet),
        }
    }
}

impl<J> Submitter<J> {
    /// Queues a job, or gives it back at once when the queue is full (or the
    /// pool is closed).
    pub fn try_submit(&self, job: J) -> Result<(), J> {
        let tx = self.inlet.tx.read().unwrap_or_else(PoisonError::into_inner);
        match &*tx {
            Some(tx) => tx.try_send(job).map_err(|e| match e {
                TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
            }),
            None => Err(job),
        }
    }

    /// Jobs waiting in the queue (for the `http_queue_depth` gauge).
    pub fn queued(&self) -> usize {
        let tx = self.inlet.tx.read().unwrap_or_else(PoisonError::into_inner);
        tx.as_ref().map_or(0, Sender::len)
    }
}

impl<J: Send + 'static> WorkerPool<J> {
    /// Starts `size.workers` threads, each running `work(slot, job)` for every
    /// job it receives. `work` must not panic; wrap handlers in
    /// `catch_unwind` (the pipeline does).
    pub fn start<F>(size: WorkerPoolSize, work: F) -> io::Result<WorkerPool<J>>
    where
        F: Fn(&WorkerSlot, J) + Send + Sync + 'static,
    {
        let (tx, rx) = bounded::<J>(size.queue_depth.max(1));
        let slots: Arc<[WorkerSlot]> = (0..size.workers).map(|_| WorkerSlot::default()).collect();
        let work = Arc::new(work);
        let mut handles = Vec::with_capacity(size.workers);
        for i in 0..size.workers {
            let rx: Receiver<J> = rx.clone();
            let slots = Arc::clone(&slots);
            let work = Arc::clone(&work);
            let handle = thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let slot = &slots[i];
                    for job in rx.iter() {
                        work(slot, job);
                        slot.set_idle();
                    }
                })?;
            handles.push(handle);
        }
        Ok(WorkerPool {
            handles,
            slots,
            inlet: Arc::new(Inlet {
                tx: RwLock::new(Some(tx)),
            }),
            rx,
        })
    }

    /// A handle to submit jobs.
    pub fn submitter(&self) -> Submitter<J> {
        Submitter {
            inlet: Arc::clone(&self.inlet),
        }
    }

    /// A reader of the queue length.
    pub fn queue_len(&self) -> QueueLen {
        QueueLen(Arc::new(self.rx.clone()))
    }

    /// Per-worker status, for `/debug/workers`.
    pub fn slots(&self) -> Arc<[WorkerSlot]> {
        Arc::clone(&self.slots)
    }

    /// Takes every job still waiting in the queue, so that no worker starts
    /// it (the shutdown deadline drops them).
    pub fn take_queued(&self) -> Vec<J> {
        self.rx.try_iter().collect()
    }

    /// Closes the queue: drops its only sender, so that every later submit
    /// is refused and each worker exits once the queue is empty. Idempotent.
    pub fn close(&self) {
        drop(
            self.inlet
                .tx
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Closes the queue ([`WorkerPool::close`]) and waits for the workers to
    /// finish every queued job and exit. Returns false if some worker was
    /// still busy at `deadline` (it is left running; the process is about to
    /// exit).
    #[cfg(loom)]
    pub fn join(self, _deadline: Instant) -> bool {
        self.close();
        self.handles.into_iter().all(|h| h.join().is_ok())
    }

    /// Closes the queue ([`WorkerPool::close`]) and waits for the workers to
    /// finish every queued job and exit. Returns false if some worker was
    /// still busy at `deadline` (it is left running; the process is about to
    /// exit).
    #[cfg(not(loom))]
    pub fn join(self, deadline: Instant) -> bool {
        self.close();
        let mut all = true;
        for handle in self.handles {
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(std::time::Duration::from_millis(5));
            }
            if handle.is_finished() {
                // A worker thread that panicked despite catch_unwind has
                // already been logged by the panic hook.
                let _ = handle.join();
            } else {
                all = false;
            }
        }
        all
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn full_queue_rejects_at_once_and_close_finishes_queued_jobs() {
        let done = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let d = Arc::clone(&done);
        let pool = WorkerPool::start(
            WorkerPoolSize {
                workers: 1,
                queue_depth: 2,
            },
            move |_slot: &WorkerSlot, job: u32| {
                if job == 0 {
                    let _ = gate_rx.recv();
                }
                d.fetch_add(1, Ordering::SeqCst);
            },
        )
        .expect("start");
        let sub = pool.submitter();
        sub.try_submit(0).expect("first job goes to the worker");
        // Wait until the worker holds job 0, so the queue is empty.
        while sub.queued() > 0 {
            thread::yield_now();
        }
        sub.try_submit(1).expect("queued");
        sub.try_submit(2).expect("queued");
        let started = Instant::now();
        assert_eq!(sub.try_submit(3), Err(3), "full queue gives the job back");
        assert!(started.elapsed() < Duration::from_millis(50));
        gate_tx.send(()).expect("release");
        assert!(pool.join(Instant::now() + Duration::from_secs(5)));
        assert_eq!(sub.try_submit(4), Err(4), "a closed pool refuses jobs");
        assert_eq!(done.load(Ordering::SeqCst), 3, "queued jobs finished");
    }

    #[test]
    fn workers_publish_busy_and_idle() {
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (seen_tx, seen_rx) = bounded::<()>(1);
        let pool = WorkerPool::start(
            WorkerPoolSize {
                workers: 2,
                queue_depth: 1,
            },
            move |slot: &WorkerSlot, _job: ()| {
                slot.set_busy(Busy {
                    route: "/x",
                    request_id: RequestId::from_uuid(uuid::Uuid::new_v4()),
                    since: Instant::now(),
                });
                let _ = seen_tx.send(());
                let _ = gate_rx.recv();
            },
        )
        .expect("start");
        let sub = pool.submitter();
        let slots = pool.slots();
        sub.try_submit(()).expect("submit");
        seen_rx.recv().expect("worker ran");
        let busy: Vec<_> = slots.iter().filter_map(WorkerSlot::get).collect();
        assert_eq!(busy.len(), 1);
        assert_eq!(busy[0].route, "/x");
        gate_tx.send(()).expect("release");
        assert!(pool.join(Instant::now() + Duration::from_secs(5)));
        drop(sub);
        assert!(slots.iter().all(|s| s.get().is_none()));
    }
}

/// Loom model tests of the hand-off and shutdown protocol: every
/// interleaving of a submitting I/O thread, the workers and the shutdown
/// (`RUSTFLAGS="--cfg loom" cargo test --lib loom`, run by `make test`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// Every interleaving with at most `PREEMPTIONS` forced switches per
    /// run: enough for these races (each bug we broke in on purpose showed
    /// with one or two), and it keeps the two-worker model to seconds
    /// instead of an hour.
    const PREEMPTIONS: usize = 3;

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(PREEMPTIONS);
        builder.check(f);
    }

    fn size(workers: usize, queue_depth: usize) -> WorkerPoolSize {
        WorkerPoolSize {
            workers,
            queue_depth,
        }
    }

    /// A submitter races the close: every job the queue accepted is run
    /// (none lost), none is accepted after the close, and the join returns
    /// (no deadlock).
    #[test]
    fn accepted_jobs_run_and_close_refuses_the_rest() {
        model(|| {
            let ran = Arc::new(AtomicUsize::new(0));
            let r = Arc::clone(&ran);
            let pool = WorkerPool::start(size(1, 1), move |_slot: &WorkerSlot, _job: u8| {
                r.fetch_add(1, SeqCst);
            })
            .expect("start");
            let sub = pool.submitter();
            let io = thread::spawn(move || {
                let accepted = [1u8, 2]
                    .iter()
                    .filter(|&&j| sub.try_submit(j).is_ok())
                    .count();
                (accepted, sub)
            });
            pool.close();
            let closed = pool.submitter();
            assert_eq!(
                closed.try_submit(9),
                Err(9),
                "a closed pool accepts nothing"
            );
            let (accepted, sub) = io.join().expect("io thread");
            assert!(pool.join(Instant::now()), "workers exit");
            assert_eq!(sub.try_submit(3), Err(3));
            assert_eq!(
                ran.load(SeqCst),
                accepted,
                "every accepted job ran, no other"
            );
        });
    }

    /// The shutdown deadline: what is still queued is taken (and dropped by
    /// the runtime), the rest runs; no job is both taken and run, none is
    /// lost, and two workers still exit once the queue is closed.
    #[test]
    fn jobs_taken_at_the_deadline_are_not_run() {
        model(|| {
            let ran = Arc::new(AtomicUsize::new(0));
            let r = Arc::clone(&ran);
            let pool = WorkerPool::start(size(2, 2), move |_slot: &WorkerSlot, _job: u8| {
                r.fetch_add(1, SeqCst);
            })
            .expect("start");
            let sub = pool.submitter();
            let accepted = [1u8, 2]
                .iter()
                .filter(|&&j| sub.try_submit(j).is_ok())
                .count();
            assert_eq!(accepted, 2, "the queue holds two");
            let taken = pool.take_queued().len();
            assert!(pool.join(Instant::now()), "workers exit");
            assert_eq!(
                ran.load(SeqCst) + taken,
                accepted,
                "each job run or taken, once"
            );
        });
    }
}
