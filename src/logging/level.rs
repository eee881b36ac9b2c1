//! The run-time log level switch behind `PUT /debug/log-level`.
//!
//! `level=debug` alone changes the level until the next change;
//! `level=debug&for=10m` changes it for ten minutes and then reverts by
//! itself to the level that was in force before. Only the newest change can
//! be pending a revert (a newer change supersedes an older one's revert), so
//! one timer thread, `log-level-revert`, started with the first temporary
//! change, serves every revert: however many admin requests arrive, the
//! thread count does not grow. `for` is capped at [`MAX_FOR`] like every
//! other duration.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use log::LevelFilter;

/// The longest temporary change (`for`), as for every configured duration.
pub const MAX_FOR: Duration = Duration::from_secs(24 * 3600);

/// Where a level change goes: [`GlobalLevel`] in the service, a recorder in
/// tests.
pub trait ApplyLevel: Send + Sync + 'static {
    fn apply(&self, level: LevelFilter);
}

/// The process-wide logger's level ([`super::set_level`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalLevel;

impl ApplyLevel for GlobalLevel {
    fn apply(&self, level: LevelFilter) {
        super::set_level(level);
    }
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// `for` is zero or longer than [`MAX_FOR`].
    ForOutOfRange(Duration),
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetError::ForOutOfRange(d) => write!(
                f,
                "`for` of {} s is out of range: it must be above zero and at most 24h",
                d.as_secs()
            ),
        }
    }
}

impl std::error::Error for SetError {}

#[derive(Debug)]
struct Levels {
    /// The level to return to when a temporary change expires.
    base: LevelFilter,
    current: LevelFilter,
    /// When the current temporary change expires, if it is temporary.
    revert_at: Option<Instant>,
    /// Whether the timer thread runs.
    timer: bool,
}

struct Inner {
    levels: Mutex<Levels>,
    wake: Condvar,
    apply: Box<dyn ApplyLevel>,
}

/// Shared handle; cheap to clone.
#[derive(Clone)]
pub struct LogLevelControl(Arc<Inner>);

/// Whether `for_` is a duration [`LogLevelControl::set`] accepts: within
/// 1 ms..=[`MAX_FOR`], or none.
pub fn check_for(for_: Option<Duration>) -> Result<(), SetError> {
    match for_ {
        Some(d) if d.is_zero() || d > MAX_FOR => Err(SetError::ForOutOfRange(d)),
        _ => Ok(()),
    }
}

impl LogLevelControl {
    pub fn new(initial: LevelFilter, apply: impl ApplyLevel) -> LogLevelControl {
        LogLevelControl(Arc::new(Inner {
            levels: Mutex::new(Levels {
                base: initial,
                current: initial,
                revert_at: None,
                timer: false,
            }),
            wake: Condvar::new(),
            apply: Box::new(apply),
        }))
    }

    pub fn current(&self) -> LevelFilter {
        self.lock().current
    }

    /// Sets `level`; with `for_` it reverts to the previous base level after
    /// that long (on the one timer thread). `for_` must be within
    /// 1 ms..=[`MAX_FOR`].
    pub fn set(&self, level: LevelFilter, for_: Option<Duration>) -> Result<(), SetError> {
        check_for(for_)?;
        let mut levels = self.lock();
        match for_ {
            None => {
                levels.base = level;
                levels.revert_at = None;
            }
            Some(after) => {
                levels.revert_at = Some(Instant::now() + after);
                if !levels.timer {
                    levels.timer = self.start_timer();
                    if !levels.timer {
                        // No timer: the change would never revert, so it is
                        // not made (the thread was refused by the system).
                        levels.revert_at = None;
                        let base = levels.base;
                        self.apply_locked(&mut levels, base);
                        return Ok(());
                    }
                }
            }
        }
        self.apply_locked(&mut levels, level);
        drop(levels);
        self.0.wake.notify_all();
        Ok(())
    }

    fn start_timer(&self) -> bool {
        let weak = Arc::downgrade(&self.0);
        let spawned = thread::Builder::new()
            .name("log-level-revert".into())
            .spawn(move || revert_when_due(&weak));
        match spawned {
            Ok(_) => true,
            Err(e) => {
                log::error!(error = e.to_string().as_str(); "cannot start the log level revert timer; the change is not made");
                false
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Levels> {
        self.0.levels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply_locked(&self, levels: &mut Levels, level: LevelFilter) {
        levels.current = level;
        self.0.apply.apply(level);
    }
}

/// The timer thread: sleeps until the pending revert is due (or a change
/// moves it), reverts, and waits for the next. It ends when every handle to
/// the control has been dropped.
fn revert_when_due(weak: &std::sync::Weak<Inner>) {
    /// How often an idle timer checks whether the control still exists.
    const IDLE_CHECK: Duration = Duration::from_secs(60);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let control = LogLevelControl(inner);
        let mut levels = control.lock();
        let now = Instant::now();
        match levels.revert_at {
            Some(at) if at <= now => {
                levels.revert_at = None;
                let base = levels.base;
                // Written at the more verbose of the two levels: before the
                // change when the raised level shows INFO (debug or info back
                // to warn), after it otherwise (error back to info).
                let say = || log::info!(new_level = base.as_str(); "log level reverted");
                let before = log::log_enabled!(log::Level::Info);
                if before {
                    say();
                }
                control.apply_locked(&mut levels, base);
                drop(levels);
                if !before {
                    say();
                }
            }
            pending => {
                let wait = pending.map_or(IDLE_CHECK, |at| at - now).min(IDLE_CHECK);
                let _unused = control
                    .0
                    .wake
                    .wait_timeout(levels, wait)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Arc<Mutex<Vec<LevelFilter>>>);

    impl ApplyLevel for Recorder {
        fn apply(&self, level: LevelFilter) {
            self.0.lock().expect("lock").push(level);
        }
    }

    fn recorder() -> (LogLevelControl, Arc<Mutex<Vec<LevelFilter>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let c = LogLevelControl::new(LevelFilter::Info, Recorder(Arc::clone(&seen)));
        (c, seen)
    }

    fn wait_for(c: &LogLevelControl, want: LevelFilter) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if c.current() == want {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn temporary_change_reverts_by_itself() {
        let (c, seen) = recorder();
        c.set(LevelFilter::Debug, Some(Duration::from_millis(30)))
            .expect("set");
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
        c.set(LevelFilter::Debug, Some(Duration::from_millis(20)))
            .expect("set");
        c.set(LevelFilter::Warn, None).expect("set");
        thread::sleep(Duration::from_millis(80));
        assert_eq!(c.current(), LevelFilter::Warn);
    }

    #[test]
    fn a_newer_temporary_change_moves_the_revert() {
        let (c, _) = recorder();
        c.set(LevelFilter::Debug, Some(Duration::from_millis(20)))
            .expect("set");
        c.set(LevelFilter::Trace, Some(Duration::from_secs(60)))
            .expect("set");
        thread::sleep(Duration::from_millis(80));
        assert_eq!(c.current(), LevelFilter::Trace);
    }

    #[test]
    fn temporary_change_on_top_of_a_permanent_one_reverts_to_it() {
        let (c, _) = recorder();
        c.set(LevelFilter::Error, None).expect("set");
        c.set(LevelFilter::Trace, Some(Duration::from_millis(20)))
            .expect("set");
        assert!(wait_for(&c, LevelFilter::Error));
    }

    #[test]
    fn for_is_capped() {
        let (c, seen) = recorder();
        let too_long = MAX_FOR + Duration::from_secs(1);
        let err = c
            .set(LevelFilter::Debug, Some(too_long))
            .expect_err("capped");
        assert!(err.to_string().contains("at most 24h"), "{err}");
        assert!(c.set(LevelFilter::Debug, Some(MAX_FOR)).is_ok());
        assert_eq!(
            *seen.lock().expect("lock"),
            [LevelFilter::Debug],
            "the refused change changed nothing"
        );
    }
}
