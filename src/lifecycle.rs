//! The service's life: `starting → ready → draining → stopping`, and the
//! signals that move it.
//!
//! One `ServiceState` is shared by every thread (readiness reads it, metrics
//! export it, logs name it). Signals are handled the signal-hook way: the
//! handler itself only flips an `AtomicBool` and wakes the main thread; a
//! second SIGTERM/SIGINT while the flag is set exits at once with 130.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Where the service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Migrating and connecting; not ready for traffic.
    Starting = 0,
    /// Serving.
    Ready = 1,
    /// A shutdown signal arrived: unready, but still serving for DRAIN_DELAY.
    Draining = 2,
    /// Listeners closed; finishing in-flight work.
    Stopping = 3,
}

impl State {
    pub const ALL: [State; 4] = [
        State::Starting,
        State::Ready,
        State::Draining,
        State::Stopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Draining => "draining",
            State::Stopping => "stopping",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Starting,
            1 => State::Ready,
            2 => State::Draining,
            _ => State::Stopping,
        }
    }
}

/// The shared, lock-free service state.
#[derive(Debug, Default)]
pub struct ServiceState(AtomicU8);

impl ServiceState {
    pub fn new() -> Arc<ServiceState> {
        Arc::new(ServiceState(AtomicU8::new(State::Starting as u8)))
    }

    pub fn get(&self) -> State {
        State::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Moves forward only: a late `Ready` cannot undo `Draining`.
    pub fn advance(&self, to: State) -> State {
        let prev = self.0.fetch_max(to as u8, Ordering::AcqRel);
        State::from_u8(prev)
    }
}

/// Blocks the calling thread until SIGTERM or SIGINT arrives.
pub struct ShutdownSignal {
    flag: Arc<AtomicBool>,
    signals: signal_hook::iterator::Signals,
}

impl ShutdownSignal {
    /// Installs the handlers. From now on the first SIGTERM/SIGINT flips the
    /// flag (and wakes [`ShutdownSignal::wait`]); a second one exits the
    /// process immediately with status 130.
    pub fn install() -> std::io::Result<ShutdownSignal> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGINT] {
            // Order matters: the conditional exit is checked before the flag is
            // set, so only a signal arriving after the first one exits.
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))?;
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
        let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        Ok(ShutdownSignal { flag, signals })
    }

    /// Waits for the first shutdown signal and returns its name.
    pub fn wait(&mut self) -> &'static str {
        loop {
            if let Some(sig) = self.signals.forever().next() {
                return if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            }
            if self.flag.load(Ordering::Acquire) {
                return "signal";
            }
        }
    }

    /// True once a shutdown signal has arrived.
    pub fn received(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_only_moves_forward() {
        let s = ServiceState::new();
        assert_eq!(s.get(), State::Starting);
        s.advance(State::Ready);
        assert_eq!(s.get(), State::Ready);
        s.advance(State::Draining);
        assert_eq!(s.advance(State::Ready), State::Draining);
        assert_eq!(s.get(), State::Draining);
        s.advance(State::Stopping);
        assert_eq!(s.get(), State::Stopping);
        for st in State::ALL {
            assert_eq!(State::from_u8(st as u8), st);
        }
    }
}
