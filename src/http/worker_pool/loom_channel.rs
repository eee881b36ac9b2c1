//! Under `cfg(loom)` only: a bounded MPMC channel on loom's primitives with
//! the semantics the worker pool relies on from `crossbeam_channel::bounded`
//! (`try_send` fails at once when full or disconnected; `recv` waits until a
//! message arrives or every sender is gone *and* the queue is empty), so
//! that loom can explore every interleaving of the pool's own protocol.
//! crossbeam's internals are not modelled (they are not ours to check).

use std::collections::VecDeque;
use std::sync::PoisonError;

use loom::sync::{Arc, Condvar, Mutex};

struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    cap: usize,
}

pub struct Sender<T>(Arc<Shared<T>>);
pub struct Receiver<T>(Arc<Shared<T>>);

pub enum TrySendError<T> {
    Full(T),
    /// crossbeam's answer when every receiver is gone; never produced here
    /// (the pool keeps a receiver for as long as it has senders).
    #[allow(dead_code)]
    Disconnected(T),
}

pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            senders: 1,
        }),
        ready: Condvar::new(),
        cap,
    });
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

impl<T> Sender<T> {
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut st = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.queue.len() >= self.0.cap {
            return Err(TrySendError::Full(item));
        }
        st.queue.push_back(item);
        drop(st);
        self.0.ready.notify_one();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.0
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queue
            .len()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .senders += 1;
        Sender(Arc::clone(&self.0))
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.senders -= 1;
        let last = st.senders == 0;
        drop(st);
        if last {
            self.0.ready.notify_all();
        }
    }
}

impl<T> Receiver<T> {
    /// The next message, or `None` once every sender is gone and the queue
    /// is empty.
    pub fn recv(&self) -> Option<T> {
        let mut st = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Some(item);
            }
            if st.senders == 0 {
                return None;
            }
            st = self
                .0
                .ready
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv())
    }

    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| {
            self.0
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .queue
                .pop_front()
        })
    }

    pub fn len(&self) -> usize {
        self.0
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queue
            .len()
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver(Arc::clone(&self.0))
    }
}
