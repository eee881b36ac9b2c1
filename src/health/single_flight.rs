//! A single-flight cell for one dependency check: at most one check in
//! flight, its answer shared by every concurrent caller and reused briefly.
//!
//! Why it exists: a readiness probe must neither hang on a hung database nor
//! multiply the load on a struggling one (every kubelet, load balancer and
//! curious human polls it).
//!
//! Each dependency sits behind a [`SingleFlight`]:
//!
//! - **one ping in flight per dependency.** The check runs on its own short
//!   lived `readiness-<name>` thread; concurrent probes wait on a condvar for
//!   that one answer instead of starting their own.
//! - **bounded wait ([`CHECK_TIMEOUT`], 2 s).** Callers wait at most until
//!   the in-flight check is 2 s old, then answer `no answer within 2s`.
//!   The deadline is the check's, not the caller's: once a check is overdue, later probes answer at once
//!   rather than each waiting another 2 s. The overdue check is not started
//!   again while it runs; its eventual answer is kept as usual.
//! - **a failing dependency answers fast ([`FAILING_WAIT`], 100 ms).** While
//!   the last check failed, a probe waits at most 100 ms for the fresh one
//!   (enough to see a recovered database answer) and otherwise answers the
//!   last failure at once. During an outage the checks are slow (the pool
//!   waits `DB_ACQUIRE_TIMEOUT` for a connection), and a kubelet probe
//!   (1 s timeout by default) should get a clear 503 with the reason, not a
//!   time-out of its own.
//! - **short reuse ([`RESULT_TTL`], 500 ms).** A finished result (success or
//!   failure) answers every probe for 500 ms. That turns any burst into at
//!   most one ping per dependency per 500 ms, and adds at most 500 ms to
//!   noticing an outage or a recovery — well inside a kubelet's period
//!   (10 s by default) and the 3 s within which `/readyz` must turn 503.
//! - **never blocking the HTTP I/O thread.** `/readyz` is answered on the
//!   listener's I/O thread, which serves every connection: while a check is
//!   in flight a probe answers the last finished result at once (until the
//!   check is overdue: then `no answer within 2s`), and waits only for a
//!   dependency that has no result yet, at most [`FIRST_RESULT_WAIT`].
//!
//! Each finished check is told to a [`CheckObserver`] (the metrics
//! `readiness_checks_total{dependency, result}` and
//! `readiness_dependency_up{dependency}`).

use std::fmt;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(loom)]
use loom::thread;
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
use std::thread;

use crate::duration_text::format_duration;

/// How long a probe waits for a dependency check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a finished check's result answers later probes.
pub const RESULT_TTL: Duration = Duration::from_millis(500);

/// While a dependency is failing, how long a probe waits for a fresh check
/// before answering the last failure.
pub const FAILING_WAIT: Duration = Duration::from_millis(100);

/// How long a probe answered on the HTTP I/O thread waits for a dependency
/// that has no result yet (see [`SingleFlight::answer_now`]).
pub const FIRST_RESULT_WAIT: Duration = Duration::from_millis(50);

/// Why a dependency is not usable, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// Could not open a connection (what the client said).
    Connect(String),
    /// The connection did not answer its ping (what the client said).
    Ping(String),
    /// The in-flight check has not answered within the timeout.
    NoAnswerWithin(Duration),
    /// The first check has not answered yet (a probe on the I/O thread does
    /// not wait for it).
    NoAnswerYet,
    /// The check panicked.
    Panicked,
    /// The checker thread could not be started.
    CannotStart(std::io::ErrorKind),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Connect(e) => write!(f, "connect: {e}"),
            CheckError::Ping(e) => write!(f, "ping: {e}"),
            CheckError::NoAnswerWithin(d) => write!(f, "no answer within {}", format_duration(*d)),
            CheckError::NoAnswerYet => f.write_str("no answer yet"),
            CheckError::Panicked => f.write_str("the check panicked"),
            CheckError::CannotStart(kind) => write!(f, "cannot start the check: {kind}"),
        }
    }
}

impl std::error::Error for CheckError {}

/// Told about every finished check (the readiness metrics).
pub trait CheckObserver: Send + Sync {
    /// A dependency exists (before its first check).
    fn declared(&self, _dependency: &'static str) {}
    /// A check of `dependency` finished.
    fn checked(&self, _dependency: &'static str, _ok: bool) {}
}

/// Observes nothing (tests).
pub struct NoCheckObserver;

impl CheckObserver for NoCheckObserver {}

/// One dependency readiness depends on.
///
/// `check` runs on a dedicated thread and may block; it should still return
/// within a bounded time (the database check gives itself [`CHECK_TIMEOUT`]
/// for the ping), because a check that never returns keeps its dependency
/// reported as `no answer` until it does.
pub trait DependencyCheck: Send + Sync + 'static {
    /// The key in the `checks` object (`database`, `redis`).
    fn name(&self) -> &'static str;
    /// Whether its failure makes the service unready (else: `degraded`).
    fn required(&self) -> bool;
    /// `Ok` or the reason it is unusable.
    fn check(&self) -> Result<(), CheckError>;
}

/// A shared check is a check (start-up work warms the same connection that
/// readiness then uses).
impl<T: DependencyCheck> DependencyCheck for Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn required(&self) -> bool {
        (**self).required()
    }
    fn check(&self) -> Result<(), CheckError> {
        (**self).check()
    }
}

/// Timing of the dependency checks (the defaults are [`CHECK_TIMEOUT`] and
/// [`RESULT_TTL`]; tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPolicy {
    /// The longest a probe waits for an in-flight check, counted from the
    /// check's start.
    pub timeout: Duration,
    /// How long a finished result is reused.
    pub ttl: Duration,
    /// While the last check failed, how long a probe waits for the next one
    /// before answering the last failure.
    pub failing_wait: Duration,
}

impl Default for CheckPolicy {
    fn default() -> Self {
        CheckPolicy {
            timeout: CHECK_TIMEOUT,
            ttl: RESULT_TTL,
            failing_wait: FAILING_WAIT,
        }
    }
}

/// What [`SingleFlight::begin`] hands to [`SingleFlight::wait`].
#[derive(Debug)]
pub enum Ticket {
    /// A result is already known.
    Done(Result<(), CheckError>),
    /// A check is in flight: wait until `generation` moves or `deadline`,
    /// then answer `fallback` (the last failure), else "no answer".
    Wait {
        generation: u64,
        deadline: Instant,
        fallback: Option<CheckError>,
        /// The last finished result, success or failure, however old.
        stale: Option<Result<(), CheckError>>,
    },
}

/// A finished check.
#[derive(Debug, Clone)]
struct Outcome {
    finished: Instant,
    result: Result<(), CheckError>,
}

#[derive(Debug, Default)]
struct FlightState {
    /// The last finished check.
    last: Option<Outcome>,
    /// When the check in flight started, if one is.
    running_since: Option<Instant>,
    /// Bumped by every finished check; waiters wait for it to move.
    generation: u64,
}

/// One dependency behind a "single flight": at most one check in flight,
/// its answer shared by every concurrent caller and reused for a short time.
pub struct SingleFlight {
    check: Arc<dyn DependencyCheck>,
    policy: CheckPolicy,
    observer: Arc<dyn CheckObserver>,
    state: Mutex<FlightState>,
    done: Condvar,
}

impl SingleFlight {
    pub fn new(
        check: Arc<dyn DependencyCheck>,
        policy: CheckPolicy,
        observer: Arc<dyn CheckObserver>,
    ) -> Arc<SingleFlight> {
        Arc::new(SingleFlight {
            check,
            policy,
            observer,
            state: Mutex::new(FlightState::default()),
            done: Condvar::new(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.check.name()
    }

    pub fn required(&self) -> bool {
        self.check.required()
    }

    fn lock(&self) -> MutexGuard<'_, FlightState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The dependency's state: a fresh cached result, the in-flight check's
    /// answer, or a new check's — whichever comes first, within the timeout.
    pub fn get(self: &Arc<Self>) -> Result<(), CheckError> {
        let ticket = self.begin();
        self.wait(ticket)
    }

    /// Returns a fresh cached result, or makes sure a check is in flight
    /// (starting one if none is) and returns what to wait for. Splitting
    /// `begin` from [`SingleFlight::wait`] lets a probe start every
    /// dependency's check before waiting for any, so their waits overlap.
    pub fn begin(self: &Arc<Self>) -> Ticket {
        let mut st = self.lock();
        if st.running_since.is_none() {
            if let Some(last) = &st.last {
                if last.finished.elapsed() < self.policy.ttl {
                    return Ticket::Done(last.result.clone());
                }
            }
            if let Err(e) = self.launch() {
                return Ticket::Done(Err(CheckError::CannotStart(e.kind())));
            }
            st.running_since = Some(Instant::now());
        }
        let started = st.running_since.unwrap_or_else(Instant::now);
        let mut deadline = started + self.policy.timeout;
        // A failing dependency: a quick recovery shows at once, otherwise the
        // last failure is answered without waiting out a slow check.
        let fallback = match &st.last {
            Some(Outcome {
                result: Err(reason),
                ..
            }) => {
                deadline = deadline.min(Instant::now() + self.policy.failing_wait);
                Some(reason.clone())
            }
            _ => None,
        };
        Ticket::Wait {
            generation: st.generation,
            deadline,
            fallback,
            stale: st.last.as_ref().map(|last| last.result.clone()),
        }
    }

    /// Like [`SingleFlight::wait`], for a caller that must not block (the
    /// HTTP I/O thread, which serves every connection of its listener):
    /// with a check in flight it answers the last finished result at once
    /// (until the check is overdue: then "no answer"), and waits (at most
    /// [`FIRST_RESULT_WAIT`]) only when there is no result yet.
    pub fn answer_now(&self, ticket: Ticket) -> Result<(), CheckError> {
        match ticket {
            Ticket::Wait {
                deadline,
                fallback,
                stale: Some(stale),
                ..
            } => {
                if Instant::now() < deadline {
                    stale
                } else {
                    Err(fallback.unwrap_or_else(|| self.overdue()))
                }
            }
            Ticket::Wait {
                generation,
                deadline,
                fallback,
                stale: None,
            } => self.wait(Ticket::Wait {
                generation,
                deadline: deadline.min(Instant::now() + FIRST_RESULT_WAIT),
                fallback: fallback.or(Some(CheckError::NoAnswerYet)),
                stale: None,
            }),
            done => self.wait(done),
        }
    }

    /// Waits for the check a [`Ticket`] names, until its deadline.
    pub fn wait(&self, ticket: Ticket) -> Result<(), CheckError> {
        let (generation, deadline, fallback) = match ticket {
            Ticket::Done(result) => return result,
            Ticket::Wait {
                generation,
                deadline,
                fallback,
                ..
            } => (generation, deadline, fallback),
        };
        let mut st = self.lock();
        while st.generation == generation {
            let now = Instant::now();
            if now >= deadline {
                return Err(fallback.unwrap_or_else(|| self.overdue()));
            }
            st = self
                .done
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        match &st.last {
            Some(last) => last.result.clone(),
            None => Err(CheckError::NoAnswerYet),
        }
    }

    /// Starts the check on its own thread.
    fn launch(self: &Arc<Self>) -> std::io::Result<()> {
        let me = Arc::clone(self);
        thread::Builder::new()
            .name(format!("readiness-{}", self.check.name()))
            .spawn(move || me.run())
            .map(drop)
    }

    /// The checker thread's body.
    fn run(&self) {
        // A panicking check is a failed check, not a check stuck in flight.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.check.check()))
            .unwrap_or(Err(CheckError::Panicked));
        let name = self.check.name();
        self.observer.checked(name, result.is_ok());
        if let Err(reason) = &result {
            log::debug!(dependency = name, reason = reason.to_string().as_str(); "readiness check failed");
        }
        let mut st = self.lock();
        st.last = Some(Outcome {
            finished: Instant::now(),
            result,
        });
        st.running_since = None;
        st.generation = st.generation.wrapping_add(1);
        drop(st);
        self.done.notify_all();
    }

    /// The answer for a check that has not finished within the timeout.
    fn overdue(&self) -> CheckError {
        CheckError::NoAnswerWithin(self.policy.timeout)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;

    /// A check that counts its calls, answers `answer`, and blocks while
    /// `gate` is closed.
    struct Gated {
        calls: AtomicUsize,
        answer: Mutex<Result<(), CheckError>>,
        open: Mutex<bool>,
        opened: Condvar,
    }
    impl Gated {
        fn new(open: bool) -> Arc<Gated> {
            Arc::new(Gated {
                calls: AtomicUsize::new(0),
                answer: Mutex::new(Ok(())),
                open: Mutex::new(open),
                opened: Condvar::new(),
            })
        }
        fn set_open(&self, open: bool) {
            *self.open.lock().unwrap() = open;
            self.opened.notify_all();
        }
        fn calls(&self) -> usize {
            self.calls.load(SeqCst)
        }
    }
    struct Shared(Arc<Gated>);
    impl DependencyCheck for Shared {
        fn name(&self) -> &'static str {
            "database"
        }
        fn required(&self) -> bool {
            true
        }
        fn check(&self) -> Result<(), CheckError> {
            self.0.calls.fetch_add(1, SeqCst);
            let mut open = self.0.open.lock().unwrap();
            while !*open {
                open = self.0.opened.wait(open).unwrap();
            }
            self.0.answer.lock().unwrap().clone()
        }
    }

    fn flight(g: &Arc<Gated>, policy: CheckPolicy) -> Arc<SingleFlight> {
        SingleFlight::new(
            Arc::new(Shared(Arc::clone(g))),
            policy,
            Arc::new(NoCheckObserver),
        )
    }

    const QUICK: CheckPolicy = CheckPolicy {
        timeout: Duration::from_millis(300),
        ttl: Duration::from_millis(200),
        failing_wait: Duration::from_millis(50),
    };

    #[test]
    fn concurrent_callers_share_one_check() {
        let g = Gated::new(false);
        let f = flight(&g, CheckPolicy::default());
        let callers: Vec<_> = (0..64)
            .map(|_| {
                let f = Arc::clone(&f);
                thread::spawn(move || f.get())
            })
            .collect();
        thread::sleep(Duration::from_millis(100));
        g.set_open(true);
        for c in callers {
            assert_eq!(c.join().unwrap(), Ok(()));
        }
        assert_eq!(g.calls(), 1, "64 concurrent callers, one check");
        // Within the TTL the result is reused; after it, a new check runs.
        assert_eq!(f.get(), Ok(()));
        assert_eq!(g.calls(), 1);
        thread::sleep(RESULT_TTL + Duration::from_millis(50));
        assert_eq!(f.get(), Ok(()));
        assert_eq!(g.calls(), 2);
    }

    #[test]
    fn a_hung_check_answers_within_the_timeout_and_is_not_repeated() {
        let g = Gated::new(false);
        let f = flight(&g, QUICK);
        let t = Instant::now();
        let r = f.get();
        let took = t.elapsed();
        assert_eq!(r, Err(CheckError::NoAnswerWithin(QUICK.timeout)));
        assert_eq!(
            CheckError::NoAnswerWithin(QUICK.timeout).to_string(),
            "no answer within 300ms"
        );
        assert!(
            took >= QUICK.timeout && took < QUICK.timeout * 2,
            "{took:?}"
        );
        // The check is overdue: later callers answer at once, and no second
        // check is started while the first still runs.
        let t = Instant::now();
        assert!(f.get().is_err());
        assert!(t.elapsed() < Duration::from_millis(50));
        assert_eq!(g.calls(), 1);
        // Its late answer is used.
        g.set_open(true);
        thread::sleep(Duration::from_millis(50));
        assert_eq!(f.get(), Ok(()));
        assert_eq!(g.calls(), 1);
    }

    #[test]
    fn a_failing_dependency_answers_its_last_failure_fast_and_recovers() {
        let g = Gated::new(true);
        *g.answer.lock().unwrap() = Err(CheckError::Connect("connection refused".into()));
        let f = flight(&g, QUICK);
        assert_eq!(
            f.get(),
            Err(CheckError::Connect("connection refused".into()))
        );
        // The next check hangs: the last failure is answered after
        // `failing_wait`, not after the full timeout.
        g.set_open(false);
        thread::sleep(QUICK.ttl);
        let t = Instant::now();
        assert_eq!(
            f.get(),
            Err(CheckError::Connect("connection refused".into()))
        );
        let took = t.elapsed();
        assert!(
            took >= QUICK.failing_wait && took < QUICK.timeout,
            "{took:?}"
        );
        // The database is back: the in-flight check's success shows at once.
        *g.answer.lock().unwrap() = Ok(());
        g.set_open(true);
        thread::sleep(Duration::from_millis(20));
        assert_eq!(f.get(), Ok(()));
        assert_eq!(g.calls(), 2);
    }

    #[test]
    fn a_panicking_check_is_a_failure_not_a_stuck_flight() {
        struct Boom;
        impl DependencyCheck for Boom {
            fn name(&self) -> &'static str {
                "boom"
            }
            fn required(&self) -> bool {
                false
            }
            fn check(&self) -> Result<(), CheckError> {
                panic!("boom")
            }
        }
        // A generous timeout: the panic's report (a backtrace) can take
        // longer than QUICK's 300 ms on a loaded machine, and the point here
        // is the outcome, not the timing.
        let patient = CheckPolicy {
            timeout: Duration::from_secs(10),
            ..QUICK
        };
        let f = SingleFlight::new(Arc::new(Boom), patient, Arc::new(NoCheckObserver));
        assert_eq!(f.get(), Err(CheckError::Panicked));
    }
}

/// Loom model test of the single flight (`RUSTFLAGS="--cfg loom" cargo test
/// --lib loom`, run by `make test`). Loom's condvar never times out, so
/// the model is the path where the check answers: every waiter must be
/// woken by it (no lost wake-up, no deadlock) and concurrent callers share
/// one check.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    struct Counted(Arc<AtomicUsize>);

    impl DependencyCheck for Counted {
        fn name(&self) -> &'static str {
            "database"
        }
        fn required(&self) -> bool {
            true
        }
        fn check(&self) -> Result<(), CheckError> {
            self.0.fetch_add(1, SeqCst);
            Ok(())
        }
    }

    #[test]
    fn concurrent_callers_share_one_check_and_all_wake() {
        loom::model(|| {
            let calls = Arc::new(AtomicUsize::new(0));
            let patient = CheckPolicy {
                timeout: Duration::from_secs(3600),
                ttl: Duration::from_secs(3600),
                failing_wait: Duration::from_secs(3600),
            };
            let flight = SingleFlight::new(
                Arc::new(Counted(Arc::clone(&calls))),
                patient,
                Arc::new(NoCheckObserver),
            );
            let other = Arc::clone(&flight);
            let caller = thread::spawn(move || other.get());
            assert_eq!(flight.get(), Ok(()));
            assert_eq!(caller.join().expect("caller"), Ok(()));
            assert_eq!(calls.load(SeqCst), 1, "one check for both callers");
        });
    }
}
