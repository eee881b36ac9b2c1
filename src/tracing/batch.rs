//! The span processor: finished, sampled spans wait in a queue, and one
//! thread (`otel-export`) sends them to the collector in batches, so a
//! request never waits for the collector.
//!
//! Why not the SDK's `BatchSpanProcessor`: its queue is a `sync_channel` of
//! `OTEL_BSP_MAX_QUEUE_SIZE` spans, allocated and written whole when tracing
//! starts — 2,048 spans of ~380 bytes, 0.75 MiB resident before the first
//! request, a fifth of the idle process (BENCHMARKS.md, "Code laid out by
//! use"). Here the queue is a `VecDeque` that grows with what waits and is
//! bounded by the same setting; the batch being sent counts against it too.
//!
//! The thread sends a batch when `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans wait
//! (at once), when a span has waited up to `OTEL_BSP_SCHEDULE_DELAY` (the
//! delay runs from the last send, or from when the queue was last seen
//! empty), when a flush asks, and at shutdown until the queue is empty or
//! the caller's bound runs out (what is left is counted as dropped; the
//! thread, if stuck on a black-holed collector, is left behind: the process
//! is about to exit). Every drop is counted ([`super::export`]).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use super::export::{record_dropped, SPANS_EXPORTED};

/// Where a batch goes: one blocking call per batch, bounded by the
/// exporter's own timeout.
pub trait SendBatch: Send + 'static {
    fn send(&self, batch: &[SpanData]) -> OTelSdkResult;
    fn set_resource(&mut self, resource: &Resource);
}

/// The queue's bounds and the send schedule (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Spans queued or being sent at most; beyond, dropped.
    pub capacity: usize,
    /// Spans per send at most (≥ 1).
    pub batch_size: usize,
    /// The longest a span waits for a batch to fill.
    pub delay: Duration,
}

/// The span processor the provider calls (see the module docs).
pub struct Batcher<E: SendBatch> {
    shared: Arc<Shared<E>>,
}

struct Shared<E> {
    state: Mutex<State>,
    /// Wakes the export thread: a full batch, a flush, shutdown.
    work: Condvar,
    /// Wakes flush and shutdown waiters: a flush done, the thread gone.
    progress: Condvar,
    exporter: Mutex<E>,
    settings: BatchSettings,
}

#[derive(Default)]
struct State {
    queue: VecDeque<SpanData>,
    /// Spans of the batch being sent.
    sending: usize,
    /// Flushes asked for / done (a flush is done when the queue it saw is sent).
    flushes_asked: u64,
    flushes_done: u64,
    stop: bool,
    exited: bool,
}

impl<E> Shared<E> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<E: SendBatch> Batcher<E> {
    /// Starts the export thread.
    pub fn start(exporter: E, settings: BatchSettings) -> std::io::Result<Batcher<E>> {
        let settings = BatchSettings {
            batch_size: settings.batch_size.clamp(1, settings.capacity.max(1)),
            ..settings
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
            exporter: Mutex::new(exporter),
            settings,
        });
        let inside = Arc::clone(&shared);
        thread::Builder::new()
            .name("otel-export".to_owned())
            .spawn(move || export_loop(&inside))?;
        Ok(Batcher { shared })
    }

    /// Spans queued or being sent.
    pub fn pending(&self) -> usize {
        let st = self.shared.lock();
        st.queue.len() + st.sending
    }

    /// Waits until `done(state)` holds or `deadline` passes; true if it held.
    fn wait_until(&self, deadline: Instant, done: impl Fn(&State) -> bool) -> bool {
        let mut st = self.shared.lock();
        loop {
            if done(&st) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .progress
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// How long a flush without a bound of its own waits at most.
const FLUSH_BOUND: Duration = Duration::from_secs(30);

impl<E: SendBatch> SpanProcessor for Batcher<E> {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let mut st = self.shared.lock();
        if st.stop {
            drop(st);
            record_dropped(1, "tracing stopped");
            return;
        }
        if st.queue.len() + st.sending >= self.shared.settings.capacity {
            drop(st);
            record_dropped(1, "export queue full");
            return;
        }
        st.queue.push_back(span);
        let full = st.queue.len() == self.shared.settings.batch_size;
        drop(st);
        if full {
            self.shared.work.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let target = {
            let mut st = self.shared.lock();
            st.flushes_asked += 1;
            st.flushes_asked
        };
        self.shared.work.notify_one();
        if self.wait_until(Instant::now() + FLUSH_BOUND, |st| {
            st.flushes_done >= target || st.exited
        }) {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(FLUSH_BOUND))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        self.shared.lock().stop = true;
        self.shared.work.notify_one();
        if self.wait_until(deadline, |st| st.exited) {
            return Ok(());
        }
        let unsent = self.pending();
        record_dropped(unsent, "unsent when the shutdown flush bound ran out");
        Err(OTelSdkError::Timeout(timeout))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.shared
            .exporter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_resource(resource);
    }
}

impl<E: SendBatch> std::fmt::Debug for Batcher<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// The `otel-export` thread (see the module docs).
fn export_loop<E: SendBatch>(shared: &Shared<E>) {
    let BatchSettings {
        batch_size, delay, ..
    } = shared.settings;
    let mut due = Instant::now() + delay;
    let mut st = shared.lock();
    loop {
        let flushing = st.flushes_asked > st.flushes_done;
        let send_now = st.queue.len() >= batch_size
            || (!st.queue.is_empty() && (st.stop || flushing || Instant::now() >= due));
        if !send_now {
            if st.queue.is_empty() && flushing {
                st.flushes_done = st.flushes_asked;
                shared.progress.notify_all();
                continue;
            }
            if st.stop {
                st.exited = true;
                shared.progress.notify_all();
                return;
            }
            let now = Instant::now();
            if st.queue.is_empty() {
                // Nothing waits: a span arriving now waits at most `delay`.
                due = now + delay;
            }
            st = shared
                .work
                .wait_timeout(st, due.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        }
        let n = st.queue.len().min(batch_size);
        let batch: Vec<SpanData> = st.queue.drain(..n).collect();
        st.sending = n;
        drop(st);
        let result = shared
            .exporter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(&batch);
        drop(batch);
        match result {
            Ok(()) => SPANS_EXPORTED.inc_by(n as u64),
            Err(e) => record_dropped(n, &format!("export failed: {e}")),
        }
        st = shared.lock();
        st.sending = 0;
        due = Instant::now() + delay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
    use opentelemetry::InstrumentationScope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::borrow::Cow;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::SystemTime;

    /// Records the batches it is given; can be made to block.
    struct Recorder {
        /// Each batch's size and when it was sent.
        batches: Sends,
        blocked: Arc<AtomicBool>,
    }

    impl SendBatch for Recorder {
        fn send(&self, batch: &[SpanData]) -> OTelSdkResult {
            while self.blocked.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(5));
            }
            self.batches
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((batch.len(), Instant::now()));
            Ok(())
        }
        fn set_resource(&mut self, _: &Resource) {}
    }

    fn span(sampled: bool) -> SpanData {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(1u64),
                flags,
                false,
                Default::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("test"),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    fn batcher(settings: BatchSettings) -> (Batcher<Recorder>, Sends, Arc<AtomicBool>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let blocked = Arc::new(AtomicBool::new(false));
        let b = Batcher::start(
            Recorder {
                batches: Arc::clone(&batches),
                blocked: Arc::clone(&blocked),
            },
            settings,
        )
        .expect("thread");
        (b, batches, blocked)
    }

    type Sends = Arc<Mutex<Vec<(usize, Instant)>>>;

    /// The sizes of the batches sent so far.
    fn sent(batches: &Sends) -> Vec<usize> {
        batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|&(n, _)| n)
            .collect()
    }

    #[test]
    fn a_full_batch_is_sent_at_once_and_the_rest_after_the_delay() {
        let delay = Duration::from_millis(500);
        let (b, batches, _) = batcher(BatchSettings {
            capacity: 100,
            batch_size: 3,
            delay,
        });
        for _ in 0..4 {
            b.on_end(span(true));
        }
        b.on_end(span(false)); // not sampled: never queued
        let deadline = Instant::now() + Duration::from_secs(10);
        while sent(&batches).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(sent(&batches).first(), Some(&3), "the full batch first");
        while sent(&batches).len() < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(sent(&batches), vec![3, 1], "the rest, after the delay");
        // The rest waited for the delay, counted from the first send.
        let at: Vec<Instant> = batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|&(_, t)| t)
            .collect();
        assert!(at[1] - at[0] >= delay, "{:?} apart", at[1] - at[0]);
        assert_eq!(b.pending(), 0);
        assert!(b.shutdown_with_timeout(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn the_queue_counts_the_batch_being_sent_and_drops_beyond_capacity() {
        let (b, batches, blocked) = batcher(BatchSettings {
            capacity: 4,
            batch_size: 2,
            delay: Duration::from_secs(60),
        });
        blocked.store(true, Ordering::Release);
        let dropped_before = super::super::export::SPANS_DROPPED.get();
        for _ in 0..2 {
            b.on_end(span(true));
        }
        // The first batch is taken by the (blocked) sender, still counted.
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.shared.lock().sending == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..5 {
            b.on_end(span(true));
        }
        assert_eq!(b.pending(), 4, "two being sent and two queued");
        assert!(super::super::export::SPANS_DROPPED.get() >= dropped_before + 3);
        blocked.store(false, Ordering::Release);
        assert!(b.force_flush().is_ok());
        assert_eq!(sent(&batches).iter().sum::<usize>(), 4);
        assert!(b.shutdown_with_timeout(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn shutdown_sends_what_waits_and_gives_up_at_its_bound() {
        let (b, batches, _) = batcher(BatchSettings {
            capacity: 100,
            batch_size: 50,
            delay: Duration::from_secs(60),
        });
        for _ in 0..7 {
            b.on_end(span(true));
        }
        assert!(b.shutdown_with_timeout(Duration::from_secs(5)).is_ok());
        assert_eq!(
            sent(&batches),
            vec![7],
            "sent at shutdown, not after the delay"
        );
        b.on_end(span(true));
        assert_eq!(b.pending(), 0, "nothing queued after shutdown");

        let (stuck, _, blocked) = batcher(BatchSettings {
            capacity: 100,
            batch_size: 1,
            delay: Duration::from_secs(60),
        });
        blocked.store(true, Ordering::Release);
        stuck.on_end(span(true));
        stuck.on_end(span(true));
        let t = Instant::now();
        assert!(stuck
            .shutdown_with_timeout(Duration::from_millis(100))
            .is_err());
        assert!(t.elapsed() < Duration::from_secs(2), "bounded");
        blocked.store(false, Ordering::Release);
    }
}
