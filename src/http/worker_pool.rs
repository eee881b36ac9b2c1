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
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

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
pub struct PoolSize {
    pub workers: usize,
    pub queue_depth: usize,
}

/// The pool. Dropping the last [`Submitter`] and calling
/// [`WorkerPool::join`] shuts it down.
pub struct WorkerPool<J> {
    handles: Vec<JoinHandle<()>>,
    slots: Arc<[WorkerSlot]>,
    queue_len: QueueLen,
    /// For [`WorkerPool::take_queued`] at the shutdown deadline.
    rx: Receiver<J>,
}

/// Reads how many jobs wait in the queue (for the `http_queue_depth` gauge),
/// without keeping the channel open the way a `Submitter` would.
pub type QueueLen = Arc<dyn Fn() -> usize + Send + Sync>;

/// The sending side, held by the public listener's dispatcher.
pub struct Submitter<J> {
    tx: Sender<J>,
}

impl<J> Clone for Submitter<J> {
    fn clone(&self) -> Self {
        Submitter {
            tx: self.tx.clone(),
        }
    }
}

impl<J> Submitter<J> {
    /// Queues a job, or gives it back at once when the queue is full (or the
    /// pool is shutting down).
    pub fn try_submit(&self, job: J) -> Result<(), J> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
        })
    }

    /// Jobs waiting in the queue (for the `http_queue_depth` gauge).
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

impl<J: Send + 'static> WorkerPool<J> {
    /// Starts `size.workers` threads, each running `work(slot, job)` for every
    /// job it receives. `work` must not panic; wrap handlers in
    /// `catch_unwind` (the pipeline does).
    pub fn start<F>(size: PoolSize, work: F) -> io::Result<(WorkerPool<J>, Submitter<J>)>
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
        let len_rx = rx.clone();
        let queue_len: QueueLen = Arc::new(move || len_rx.len());
        Ok((
            WorkerPool {
                handles,
                slots,
                queue_len,
                rx,
            },
            Submitter { tx },
        ))
    }

    /// A reader of the queue length.
    pub fn queue_len(&self) -> QueueLen {
        Arc::clone(&self.queue_len)
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

    /// Waits for the workers to finish every queued job and exit. Every
    /// `Submitter` must have been dropped first (that closes the channel).
    /// Returns false if some worker was still busy at `deadline` (it is left
    /// running; the process is about to exit).
    pub fn join(self, deadline: Instant) -> bool {
        let mut all = true;
        for handle in self.handles {
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn full_queue_rejects_at_once_and_close_finishes_queued_jobs() {
        let done = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let d = Arc::clone(&done);
        let (pool, sub) = WorkerPool::start(
            PoolSize {
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
        drop(sub);
        assert!(pool.join(Instant::now() + Duration::from_secs(5)));
        assert_eq!(done.load(Ordering::SeqCst), 3, "queued jobs finished");
    }

    #[test]
    fn workers_publish_busy_and_idle() {
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (seen_tx, seen_rx) = bounded::<()>(1);
        let (pool, sub) = WorkerPool::start(
            PoolSize {
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
        let slots = pool.slots();
        sub.try_submit(()).expect("submit");
        seen_rx.recv().expect("worker ran");
        let busy: Vec<_> = slots.iter().filter_map(WorkerSlot::get).collect();
        assert_eq!(busy.len(), 1);
        assert_eq!(busy[0].route, "/x");
        gate_tx.send(()).expect("release");
        drop(sub);
        assert!(pool.join(Instant::now() + Duration::from_secs(5)));
        assert!(slots.iter().all(|s| s.get().is_none()));
    }
}
