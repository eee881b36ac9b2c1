//! A warning logged at most once per interval, with how many were held
//! back: a Redis outage, or a flood of request bodies the body buffer
//! cannot hold, must not turn into thousands of identical lines per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct RateLimitedLog {
    every: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    pub const fn new(every: Duration) -> RateLimitedLog {
        RateLimitedLog {
            every,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs `msg` with `error` at WARN unless one was logged within the
    /// interval; returns whether it was.
    pub fn warn(&self, target: &str, msg: &str, error: &dyn std::fmt::Display) -> bool {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < self.every) {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            *last = Some(now);
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        log::warn!(
            target: target,
            error = error.to_string().as_str(),
            suppressed = suppressed;
            "{msg}"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval() {
        let l = RateLimitedLog::new(Duration::from_secs(60));
        assert!(l.warn("t", "m", &"e"));
        assert!(!l.warn("t", "m", &"e"));
        assert!(!l.warn("t", "m", &"e"));
        assert_eq!(l.suppressed.load(Ordering::Relaxed), 2);
    }
}
