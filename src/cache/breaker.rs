//! A circuit breaker: after a Redis failure, requests stop trying Redis for
//! a short cool-down, then one request probes it.
//!
//! Why: short timeouts bound what one request loses to a sick Redis, but
//! while it is sick every request would still pay them. Open, the breaker
//! costs a request one mutex check; a single probe after each cool-down
//! finds out when Redis is back, so hits resume without a restart.
//!
//! Pure logic over an injected clock (`now`), unit-tested without Redis.

use std::time::{Duration, Instant};

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// How long it stays open before one probe is let through.
    pub cool_down: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures_to_open: 2,
            cool_down: Duration::from_millis(500),
        }
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else keeps away.
    Probing {
        since: Instant,
    },
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Use Redis.
    Use,
    /// Use Redis as the probe: report the outcome, it decides the state.
    Probe,
    /// Do not touch Redis.
    Skip,
}

/// See the module docs.
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: State,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            state: State::Closed { failures: 0 },
        }
    }

    /// Whether a caller may use Redis now.
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.state {
            State::Closed { .. } => Permit::Use,
            State::Open { until } if now >= until => {
                self.state = State::Probing { since: now };
                Permit::Probe
            }
            // A probe that never reported (its thread died) is replaced
            // after a cool-down.
            State::Probing { since } if now >= since + self.policy.cool_down * 4 => {
                self.state = State::Probing { since: now };
                Permit::Probe
            }
            State::Open { .. } | State::Probing { .. } => Permit::Skip,
        }
    }

    /// A Redis call succeeded.
    pub fn success(&mut self) {
        self.state = State::Closed { failures: 0 };
    }

    /// A Redis call failed.
    pub fn failure(&mut self, now: Instant) {
        self.state = match self.state {
            State::Closed { failures } if failures + 1 < self.policy.failures_to_open => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            _ => State::Open {
                until: now + self.policy.cool_down,
            },
        };
    }

    /// Opens at once, whatever the count (an invalidation was lost).
    pub fn trip(&mut self, now: Instant) {
        self.state = State::Open {
            until: now + self.policy.cool_down,
        };
    }

    /// Whether requests skip Redis right now (for readiness and logs).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: BreakerPolicy = BreakerPolicy {
        failures_to_open: 2,
        cool_down: Duration::from_millis(100),
    };

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_the_cool_down() {
        let t = Instant::now();
        let mut b = Breaker::new(P);
        assert_eq!(b.permit(t), Permit::Use);
        b.failure(t);
        assert_eq!(b.permit(t), Permit::Use, "one failure is not enough");
        b.success();
        b.failure(t);
        assert_eq!(b.permit(t), Permit::Use, "a success resets the count");
        b.failure(t);
        assert_eq!(b.permit(t), Permit::Skip);
        assert!(b.is_open());
        let later = t + P.cool_down;
        assert_eq!(b.permit(later), Permit::Probe);
        assert_eq!(b.permit(later), Permit::Skip, "one probe at a time");
        b.failure(later);
        assert_eq!(b.permit(later + P.cool_down / 2), Permit::Skip);
        let again = later + P.cool_down;
        assert_eq!(b.permit(again), Permit::Probe);
        b.success();
        assert_eq!(b.permit(again), Permit::Use);
        assert!(!b.is_open());
    }

    #[test]
    fn a_trip_opens_at_once_and_a_lost_probe_is_replaced() {
        let t = Instant::now();
        let mut b = Breaker::new(P);
        b.trip(t);
        assert_eq!(b.permit(t), Permit::Skip);
        assert_eq!(b.permit(t + P.cool_down), Permit::Probe);
        assert_eq!(b.permit(t + P.cool_down * 2), Permit::Skip);
        assert_eq!(b.permit(t + P.cool_down * 5), Permit::Probe);
    }
}
