//! Kubernetes probes: liveness, readiness and start-up.
//!
//! - `/healthz` is 200 `ok` while the process can serve, whatever the
//!   dependencies do, and also while draining: a liveness failure during a
//!   drain would get the pod killed mid-shutdown. It runs no check at all.
//! - `/readyz` reports the service state and one entry per dependency; only
//!   a required dependency (the database) makes it 503 (`unavailable`), an
//!   optional one (Redis) makes it 200 `degraded`.
//! - `/startupz` is 503 until start-up work (migrations, first connection)
//!   is done.
//!
//! Probes are answered on the listener's I/O thread, never queued behind API
//! requests, so they answer within milliseconds when every worker is busy.
//!
//! This module decides what the probes say ([`Readiness`]); `http::probes`
//! renders it. Each dependency is checked behind a [`SingleFlight`]
//! (bounded, coalesced; see [`single_flight`]); [`database`] is the
//! PostgreSQL check.

pub mod database;
pub mod single_flight;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::lifecycle::{ServiceState, State};

pub use single_flight::{
    CheckError, CheckObserver, CheckPolicy, DependencyCheck, NoCheckObserver, SingleFlight,
    CHECK_TIMEOUT, FAILING_WAIT, FIRST_RESULT_WAIT, RESULT_TTL,
};

/// What `/readyz` says as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyStatus {
    /// Start-up work is still running.
    Starting,
    /// Ready, every dependency answers.
    Ready,
    /// Ready, but an optional dependency (Redis) does not answer.
    Degraded,
    /// A required dependency (the database) does not answer.
    Unavailable,
    /// Shutting down.
    Draining,
}

impl ReadyStatus {
    /// The `status` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyStatus::Starting => "starting",
            ReadyStatus::Ready => "ready",
            ReadyStatus::Degraded => "degraded",
            ReadyStatus::Unavailable => "unavailable",
            ReadyStatus::Draining => "draining",
        }
    }

    /// Whether a load balancer should send traffic (200) or not (503).
    pub fn takes_traffic(self) -> bool {
        matches!(self, ReadyStatus::Ready | ReadyStatus::Degraded)
    }
}

/// One dependency's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyAnswer {
    pub name: &'static str,
    pub result: Result<(), CheckError>,
}

/// The readiness report: the overall status and (only when the service is
/// past start-up and not draining) every dependency's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub status: ReadyStatus,
    pub checks: Vec<DependencyAnswer>,
}

/// The probe endpoints' shared state.
pub struct Health {
    state: Arc<ServiceState>,
    started: AtomicBool,
    checks: Vec<Arc<SingleFlight>>,
}

impl Health {
    /// Probes over `checks`, with the default [`CheckPolicy`].
    pub fn new(
        state: Arc<ServiceState>,
        checks: Vec<Box<dyn DependencyCheck>>,
        observer: Arc<dyn CheckObserver>,
    ) -> Health {
        Health::with_policy(state, checks, CheckPolicy::default(), observer)
    }

    /// Probes over `checks` with the given timing.
    pub fn with_policy(
        state: Arc<ServiceState>,
        checks: Vec<Box<dyn DependencyCheck>>,
        policy: CheckPolicy,
        observer: Arc<dyn CheckObserver>,
    ) -> Health {
        let checks = checks
            .into_iter()
            .map(|c| {
                observer.declared(c.name());
                SingleFlight::new(Arc::from(c), policy, Arc::clone(&observer))
            })
            .collect();
        Health {
            state,
            started: AtomicBool::new(false),
            checks,
        }
    }

    /// Start-up work is done: `/startupz` turns 200.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Readiness: the state, then (only when ready) every dependency, checked
    /// in parallel so the probe takes at most one [`CheckPolicy::timeout`].
    pub fn readiness(&self) -> Readiness {
        let mut checks = Vec::new();
        let status = match self.state.get() {
            State::Starting => ReadyStatus::Starting,
            State::Draining | State::Stopping => ReadyStatus::Draining,
            State::Ready => {
                let mut status = ReadyStatus::Ready;
                for (c, result) in self.check_all() {
                    if result.is_err() {
                        if c.required() {
                            status = ReadyStatus::Unavailable;
                        } else if status == ReadyStatus::Ready {
                            status = ReadyStatus::Degraded;
                        }
                    }
                    checks.push(DependencyAnswer {
                        name: c.name(),
                        result,
                    });
                }
                status
            }
        };
        Readiness { status, checks }
    }

    /// Every dependency's answer: all checks are started before any is
    /// waited for, so a probe takes at most one timeout however many
    /// dependencies there are.
    fn check_all(&self) -> Vec<(&SingleFlight, Result<(), CheckError>)> {
        let tickets: Vec<_> = self.checks.iter().map(|c| c.begin()).collect();
        self.checks
            .iter()
            .zip(tickets)
            .map(|(c, t)| (&**c, c.answer_now(t)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::{Duration, Instant};

    struct Fixed(&'static str, bool, Result<(), CheckError>);
    impl DependencyCheck for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn required(&self) -> bool {
            self.1
        }
        fn check(&self) -> Result<(), CheckError> {
            self.2.clone()
        }
    }

    fn health(state: &Arc<ServiceState>, checks: Vec<Box<dyn DependencyCheck>>) -> Health {
        Health::new(Arc::clone(state), checks, Arc::new(NoCheckObserver))
    }

    fn answer(r: &Readiness, name: &str) -> Result<(), CheckError> {
        r.checks
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.result.clone())
            .expect("an answer")
    }

    #[test]
    fn readiness_follows_state_and_dependencies() {
        let state = ServiceState::new();
        let refused = CheckError::Connect("connection refused".into());
        let h = health(
            &state,
            vec![
                Box::new(Fixed("database", true, Ok(()))),
                Box::new(Fixed("redis", false, Err(refused.clone()))),
            ],
        );
        let r = h.readiness();
        assert_eq!(r.status, ReadyStatus::Starting);
        assert!(!r.status.takes_traffic());
        state.advance(State::Ready);
        let r = h.readiness();
        assert_eq!(r.status, ReadyStatus::Degraded);
        assert!(r.status.takes_traffic());
        assert_eq!(answer(&r, "database"), Ok(()));
        assert_eq!(answer(&r, "redis"), Err(refused));
        state.advance(State::Draining);
        let r = h.readiness();
        assert_eq!(r.status, ReadyStatus::Draining);
        assert!(r.checks.is_empty());
    }

    #[test]
    fn a_required_dependency_down_is_unavailable() {
        let state = ServiceState::new();
        state.advance(State::Ready);
        let down = CheckError::Ping("down".into());
        let h = health(
            &state,
            vec![Box::new(Fixed("database", true, Err(down.clone())))],
        );
        let r = h.readiness();
        assert_eq!(r.status, ReadyStatus::Unavailable);
        assert!(!r.status.takes_traffic());
        assert_eq!(answer(&r, "database"), Err(down));
    }

    #[test]
    fn startup_turns_ready_once_marked() {
        let h = health(&ServiceState::new(), Vec::new());
        assert!(!h.is_started());
        h.mark_started();
        assert!(h.is_started());
    }

    #[test]
    fn dependencies_are_checked_in_parallel() {
        let slow = |name: &'static str| -> Box<dyn DependencyCheck> {
            struct Slow(&'static str);
            impl DependencyCheck for Slow {
                fn name(&self) -> &'static str {
                    self.0
                }
                fn required(&self) -> bool {
                    self.0 == "database"
                }
                fn check(&self) -> Result<(), CheckError> {
                    thread::sleep(Duration::from_millis(200));
                    Ok(())
                }
            }
            Box::new(Slow(name))
        };
        let state = ServiceState::new();
        state.advance(State::Ready);
        let h = health(&state, vec![slow("database"), slow("redis")]);
        // The first probe starts both checks and does not wait them out (it
        // is answered on the HTTP I/O thread): at most FIRST_RESULT_WAIT.
        let t = Instant::now();
        let r = h.readiness();
        assert!(
            t.elapsed() < Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(r.status, ReadyStatus::Unavailable, "{r:?}");
        // Both 200 ms checks ran at once: both are done 300 ms after the
        // start (one after the other would take 400 ms).
        thread::sleep(Duration::from_millis(300).saturating_sub(t.elapsed()));
        let r = h.readiness();
        assert_eq!(r.status, ReadyStatus::Ready, "{r:?}");
    }
}
