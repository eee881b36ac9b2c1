//! The run-time log level switch behind `PUT /debug/log-level`.
//!
//! `level=debug` alone changes the level until the next change;
//! `level=debug&for=10m` changes it for ten minutes and then reverts by
//! itself to the level that was in force before. Every change bumps a
//! generation counter, so a pending revert from an older change never undoes
//! a newer one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use log::LevelFilter;

/// Applies a level; `logging::set_level` in the service, a recorder in tests.
pub type Apply = Box<dyn Fn(LevelFilter) + Send + Sync>;

struct Inner {
    /// The level to return to when a temporary change expires.
    base: Mutex<LevelFilter>,
    current: Mutex<LevelFilter>,
    generation: AtomicU64,
    apply: Apply,
}

/// Shared handle; cheap to clone.
#[derive(Clone)]
pub struct LogLevelControl(Arc<Inner>);

impl LogLevelControl {
    pub fn new(initial: LevelFilter, apply: Apply) -> LogLevelControl {
        LogLevelControl(Arc::new(Inner {
            base: Mutex::new(initial),
            current: Mutex::new(initial),
            generation: AtomicU64::new(0),
            apply,
        }))
    }

    pub fn current(&self) -> LevelFilter {
        *self
            .0
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets `level`; with `for_` it reverts to the previous base level after
    /// that long (on a short-lived named thread).
    pub fn set(&self, level: LevelFilter, for_: Option<Duration>) {
        let generation = self.0.generation.fetch_add(1, Ordering::AcqRel) + 1;
        if for_.is_none() {
            *self.0.base.lock().unwrap_or_else(PoisonError::into_inner) = level;
        }
        self.apply(level);
        if let Some(after) = for_ {
            let me = self.clone();
            let spawned = thread::Builder::new()
                .name("log-level-revert".into())
                .spawn(move || {
                    thread::sleep(after);
                    if me.0.generation.load(Ordering::Acquire) == generation {
                        let base = *me.0.base.lock().unwrap_or_else(PoisonError::into_inner);
                        me.apply(base);
                        log::info!(new_level = base.as_str(); "log level reverted");
                    }
                });
            if let Err(e) = spawned {
                log::error!(error = e.to_string().as_str(); "cannot schedule the log level revert; reverting now");
                let base = *self.0.base.lock().unwrap_or_else(PoisonError::into_inner);
                self.apply(base);
            }
        }
    }

    fn apply(&self, level: LevelFilter) {
        *self
            .0
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = level;
        (self.0.apply)(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> (LogLevelControl, Arc<Mutex<Vec<LevelFilter>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let c = LogLevelControl::new(
            LevelFilter::Info,
            Box::new(move |l| s.lock().expect("lock").push(l)),
        );
        (c, seen)
    }

    fn wait_for(c: &LogLevelControl, want: LevelFilter) -> bool {
        (0..200).any(|_| {
            thread::sleep(Duration::from_millis(5));
            c.current() == want
        })
    }

    #[test]
    fn temporary_change_reverts_by_itself() {
        let (c, seen) = recorder();
        c.set(LevelFilter::Debug, Some(Duration::from_millis(30)));
        assert_eq!(c.current(), LevelFilter::Debug);
        assert!(wait_for(&c, LevelFilter::Info));
        assert_eq!(
            *seen.lock().expect("lock"),
            [LevelFilter::Debug, LevelFilter::Info]
        );
    }

    #[test]
    fn a_newer_change_is_not_undone_by_an_older_revert() {
        let (c, _) = recorder();
        c.set(LevelFilter::Debug, Some(Duration::from_millis(20)));
        c.set(LevelFilter::Warn, None);
        thread::sleep(Duration::from_millis(80));
        assert_eq!(c.current(), LevelFilter::Warn);
    }

    #[test]
    fn temporary_change_on_top_of_a_permanent_one_reverts_to_it() {
        let (c, _) = recorder();
        c.set(LevelFilter::Error, None);
        c.set(LevelFilter::Trace, Some(Duration::from_millis(20)));
        assert!(wait_for(&c, LevelFilter::Error));
    }
}
