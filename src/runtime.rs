//! Serving and draining: the listeners, the worker pool, start-up work, and
//! the ordered shutdown of SPEC's seven steps.
//!
//! [`run`] is the whole life of a serving process. It binds both listeners
//! first (so probes answer while start-up work runs), runs the start-up work
//! (migrations, first database connection) with `/startupz` answering 503
//! until it is done, marks the service ready, then blocks the main thread on
//! the shutdown signal and drains:
//!
//! 1. readiness 503 `draining`, the API still served for `DRAIN_DELAY`;
//! 2. both listeners stop accepting, responses carry `Connection: close`,
//!    idle keep-alive connections are closed;
//! 3. in-flight and queued requests finish within `SHUTDOWN_TIMEOUT`, then
//!    the remaining connections are cut;
//! 4. the request channel closes (the public server, the only sender, is
//!    dropped) and every worker is joined;
//! 5. background workers finish their current item and are joined;
//! 6. resources (DB pool, span exporter, Redis) are closed;
//! 7. `shutdown complete` with each phase's duration.
//!
//! A second signal exits with 130 at once (see `lifecycle`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::health::Health;
use crate::http::admin::{Admin, AdminParts};
use crate::http::dispatch::{Dispatcher, Job};
use crate::http::listener;
use crate::http::pipeline::{self, millis, Hooks};
use crate::http::worker_pool::{PoolSize, QueueLen, WorkerPool};
use crate::lifecycle::{ServiceState, ShutdownSignal, State};
use crate::systemd::{self, Role};

/// How the runtime serves; derived from `Config` by `main`.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub pool: PoolSize,
    pub limits: tiny_http::Limits,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
}

impl ServeSettings {
    pub fn from_config(config: &Config) -> ServeSettings {
        ServeSettings {
            addr: config.addr,
            admin_addr: config.admin_addr,
            pool: PoolSize {
                workers: config.workers,
                queue_depth: config.queue_depth,
            },
            limits: tiny_http::Limits {
                max_connections: config.max_conns,
                read_timeout: config.read_timeout,
                write_timeout: config.write_timeout,
                idle_timeout: config.idle_timeout,
                max_header_bytes: config.max_header_bytes,
                max_body_bytes: config.max_body_bytes,
                ..tiny_http::Limits::default()
            },
            drain_delay: config.drain_delay,
            shutdown_timeout: config.shutdown_timeout,
        }
    }
}

/// The body of the HTTP layer's own refusals ([`pipeline::refused_by_http_layer`]),
/// counted by `hooks` first.
fn refusals_answered_and_counted(hooks: Arc<dyn Hooks>) -> tiny_http::ErrorBody {
    tiny_http::ErrorBody::new(move |status| {
        hooks.refused(status);
        pipeline::refused_by_http_layer(status)
    })
}

/// Work that must finish before the service is ready (migrations, the first
/// database connection). Retried with back-off until it succeeds or a
/// shutdown signal arrives.
pub type StartupWork = Box<dyn FnMut() -> Result<(), String>>;

/// A background worker (e.g. the outbox): asked to stop at step 5, joined.
pub trait Background: Send {
    fn name(&self) -> &'static str;
    /// Finish the current item, then return.
    fn stop_and_join(self: Box<Self>, deadline: Instant);
}

/// Everything `run` wires together.
pub struct Parts {
    pub settings: ServeSettings,
    pub state: Arc<ServiceState>,
    pub health: Arc<Health>,
    pub dispatcher: Arc<Dispatcher>,
    /// The admin listener's routes minus what `run` fills in (the workers).
    pub admin: Box<dyn FnOnce(Arc<[crate::http::worker_pool::WorkerSlot]>) -> AdminParts>,
    pub startup: StartupWork,
    pub background: Vec<Box<dyn Background>>,
    /// Closed at step 6, in order (pool, exporters, caches).
    pub resources: Vec<Box<dyn FnOnce() + Send>>,
    /// Called once the listeners and workers exist, with what metrics read
    /// at scrape time.
    pub gauges: Box<dyn FnOnce(RuntimeGauges)>,
}

/// Live readings of the runtime, for metrics.
pub struct RuntimeGauges {
    pub queue_len: QueueLen,
    pub public: tiny_http::ServerControl,
    pub admin: Option<tiny_http::ServerControl>,
}

/// A started service: listeners bound, workers running, start-up work done
/// or still retrying.
pub struct Running {
    settings: ServeSettings,
    state: Arc<ServiceState>,
    public: tiny_http::Server,
    public_addr: SocketAddr,
    admin: Option<(tiny_http::Server, SocketAddr)>,
    pool: WorkerPool,
    background: Vec<Box<dyn Background>>,
    resources: Vec<Box<dyn FnOnce() + Send>>,
}

/// Serves until SIGTERM/SIGINT, then drains. `Ok` means a clean shutdown
/// (exit 0); a second signal has already exited the process with 130.
pub fn run(parts: Parts) -> io::Result<()> {
    let mut signal = ShutdownSignal::install()?;
    let running = start(parts, &|| signal.received())?;
    let which = signal.wait();
    running.shutdown(which);
    Ok(())
}

/// Binds the listeners, starts the workers, runs the start-up work (retried
/// with back-off until it succeeds or `stop_requested` says to give up) and
/// marks the service ready.
pub fn start(parts: Parts, stop_requested: &dyn Fn() -> bool) -> io::Result<Running> {
    let Parts {
        settings,
        state,
        health,
        dispatcher,
        admin,
        mut startup,
        background,
        resources,
        gauges,
    } = parts;

    // Workers first: the public server's handler needs their queue.
    let worker_dispatcher = Arc::clone(&dispatcher);
    let (pool, submitter) = WorkerPool::start(settings.pool, move |slot, job: Job| {
        worker_dispatcher.work(slot, job)
    })?;

    // Requests the HTTP layer refuses get the same problem+json as the rest,
    // and are counted by the same hooks.
    let limits = tiny_http::Limits {
        error_body: Some(refusals_answered_and_counted(Arc::clone(&dispatcher.hooks))),
        ..settings.limits.clone()
    };

    let public_listener = listener::bind_or_inherit(Role::Public, settings.addr)?;
    let public_addr = public_listener.listener.local_addr()?;
    let public = {
        let dispatcher = Arc::clone(&dispatcher);
        tiny_http::Server::from_listener(
            public_listener.listener,
            tiny_http::Limits {
                listener_on_stop: public_listener.on_stop,
                ..limits.clone()
            },
            tiny_http::Dispatch::Handler(Arc::new(move |req| dispatcher.dispatch(&submitter, req))),
        )?
    };

    let admin = match settings.admin_addr {
        None => None,
        Some(addr) => {
            let l = listener::bind_or_inherit(Role::Admin, addr)?;
            let bound = l.listener.local_addr()?;
            let admin = Arc::new(
                Admin::new(admin(pool.slots())).map_err(|e| io::Error::other(e.to_string()))?,
            );
            let server = tiny_http::Server::from_listener(
                l.listener,
                tiny_http::Limits {
                    listener_on_stop: l.on_stop,
                    ..limits
                },
                tiny_http::Dispatch::Handler(Arc::new(move |req| admin.dispatch(req))),
            )?;
            Some((server, bound))
        }
    };
    systemd::check_all_taken()?;
    systemd::start_watchdog()?;
    gauges(RuntimeGauges {
        queue_len: pool.queue_len(),
        public: public.control(),
        admin: admin.as_ref().map(|(s, _)| s.control()),
    });
    log::info!(
        addr = public_addr.to_string().as_str(),
        admin_addr = admin
            .as_ref()
            .map(|(_, a)| a.to_string())
            .unwrap_or_else(|| "off".into())
            .as_str(),
        workers = settings.pool.workers,
        queue_depth = settings.pool.queue_depth;
        "listening"
    );

    let mut backoff = Duration::from_millis(50);
    while !stop_requested() {
        match startup() {
            Ok(()) => {
                health.mark_started();
                state.advance(State::Ready);
                log::info!(state = "ready"; "service ready");
                systemd::notify_ready();
                break;
            }
            Err(reason) => {
                log::warn!(
                    reason = reason.as_str(),
                    retry_in_ms = backoff.as_millis() as u64;
                    "start-up work failed; retrying"
                );
                // Sleep in slices so that a shutdown signal is noticed at once.
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop_requested() {
                    thread::sleep(Duration::from_millis(20));
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    Ok(Running {
        settings,
        state,
        public,
        public_addr,
        admin,
        pool,
        background,
        resources,
    })
}

impl Running {
    /// The bound public address (useful with port 0).
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// The bound admin address, if the admin listener is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, a)| *a)
    }

    /// SPEC's shutdown sequence; `reason` names the signal for the log.
    pub fn shutdown(self, reason: &str) {
        let Running {
            settings,
            state,
            public,
            admin,
            pool,
            background,
            resources,
            ..
        } = self;
        let t0 = Instant::now();
        // 1. Unready, still serving.
        state.advance(State::Draining);
        systemd::notify_stopping();
        log::info!(
            signal = reason,
            drain_delay_ms = settings.drain_delay.as_millis() as u64;
            "shutdown started: draining"
        );
        thread::sleep(settings.drain_delay);
        let t1 = Instant::now();

        // 2. Stop accepting; Connection: close; idle connections closed.
        state.advance(State::Stopping);
        let controls: Vec<_> = std::iter::once(public.control())
            .chain(admin.as_ref().map(|(s, _)| s.control()))
            .collect();
        for c in &controls {
            c.stop_accepting();
            c.start_draining();
        }
        let t2 = Instant::now();

        // 3. In-flight and queued requests finish, within SHUTDOWN_TIMEOUT.
        let deadline = t1 + settings.shutdown_timeout;
        let mut cut = 0;
        for c in &controls {
            if !c.wait_idle(deadline) {
                cut += c.open_connections();
                c.force_close();
            }
        }
        if cut > 0 {
            log::warn!(connections = cut; "shutdown timeout reached; remaining connections cut");
        }
        let t3 = Instant::now();

        // 4. Close the request channel (the public server's handler holds the
        //    only sender) and join the workers.
        drop(controls);
        drop(public);
        drop(admin);
        let grace = Instant::now() + Duration::from_millis(500);
        if !pool.join(deadline.max(grace)) {
            log::warn!("a worker was still busy at the shutdown deadline");
        }
        let t4 = Instant::now();

        // 5. Background workers finish their current item.
        for b in background {
            let name = b.name();
            b.stop_and_join(deadline.max(Instant::now() + Duration::from_secs(1)));
            log::debug!(worker = name; "background worker stopped");
        }
        let t5 = Instant::now();

        // 6. Resources: spans flushed, pools closed.
        for close in resources {
            close();
        }
        let t6 = Instant::now();

        // 7. Done.
        let ms = |a: Instant, b: Instant| millis(b.saturating_duration_since(a));
        log::info!(
            drain_ms = ms(t0, t1),
            stop_accepting_ms = ms(t1, t2),
            inflight_ms = ms(t2, t3),
            workers_ms = ms(t3, t4),
            background_ms = ms(t4, t5),
            close_ms = ms(t5, t6),
            total_ms = ms(t0, t6);
            "shutdown complete"
        );
    }
}
