//! Serving and draining: the listeners, the worker pool, start-up work, and
//! the ordered shutdown in seven steps.
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
//! 3. in-flight and queued requests finish within `SHUTDOWN_TIMEOUT`; at
//!    the deadline the commit gate closes (no queued job starts, no COMMIT
//!    is sent; answers of commits already made get [`COMMIT_ANSWER_GRACE`]),
//!    jobs still queued are dropped unexecuted (counted, logged at ERROR),
//!    then the remaining connections are cut: a forced shutdown, exit
//!    [`EXIT_FORCED`];
//! 4. the request channel closes (the worker pool drops its only sender)
//!    and every worker is joined;
//! 5. background workers finish their current item and are joined;
//! 6. resources are closed: spans flushed (within
//!    `config::SPAN_FLUSH_TIMEOUT`, part of `SHUTDOWN_MARGIN`), then the DB
//!    pool and Redis;
//! 7. `shutdown complete` with each phase's duration.
//!
//! A second signal exits with 130 at once (see `lifecycle`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::db::CommitGate;
use crate::health::Health;
use crate::http::admin::{Admin, AdminParts};
use crate::http::dispatch::{ApiDispatcher, Job, JobRules};
use crate::http::listener;
use crate::http::pipeline::{self, millis, Hooks};
use crate::http::worker_pool::{QueueLen, WorkerPool, WorkerPoolSize};
use crate::lifecycle::{ServiceState, ShutdownSignal, State};
use crate::systemd::{self, Role};

/// How the runtime serves; derived from `Config` by `main`.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub worker_pool: WorkerPoolSize,
    pub limits: tiny_http::Limits,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    /// `QUEUE_TIMEOUT`: queued longer, a request is answered 503.
    pub queue_timeout: Duration,
    /// `REUSE_PORT`: bind both listeners with `SO_REUSEPORT`.
    pub port_sharing: listener::PortSharing,
}

/// Exit status of a forced shutdown: `SHUTDOWN_TIMEOUT` passed with work
/// unfinished (connections cut, queued requests dropped, a worker busy).
pub const EXIT_FORCED: u8 = 3;

/// At the shutdown deadline, how long requests whose COMMIT already passed
/// the gate get to write their answer before connections are cut.
pub const COMMIT_ANSWER_GRACE: Duration = Duration::from_secs(1);

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Everything in flight finished within `SHUTDOWN_TIMEOUT`.
    Clean,
    /// The deadline passed: connections were cut, queued requests dropped
    /// or a worker was still busy ([`EXIT_FORCED`]).
    Forced,
}

impl ServeSettings {
    pub fn from_config(config: &Config) -> ServeSettings {
        ServeSettings {
            addr: config.addr,
            admin_addr: config.admin_addr,
            worker_pool: WorkerPoolSize {
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
                // One budget for both listeners (clones of `Limits` share it).
                body_buffer: tiny_http::BodyBudget::new(config.max_body_buffer),
                ..tiny_http::Limits::default()
            },
            drain_delay: config.drain_delay,
            shutdown_timeout: config.shutdown_timeout,
            queue_timeout: config.queue_timeout,
            port_sharing: listener::PortSharing::from_flag(config.reuse_port),
        }
    }
}

/// What the I/O thread runs besides serving: at start, it asks for a short
/// scheduler slice (`thread_slice`); the log lines of inline answers
/// (probes, 404s, shed requests) are written once per burst, when the thread
/// is about to wait for events (`logging::batch`).
fn io_hooks() -> tiny_http::IoHooks {
    tiny_http::IoHooks {
        before_wait: Some(Arc::new(crate::logging::batch::flush_this_thread)),
        on_start: Some(Arc::new(|| {
            let slice = crate::thread_slice::IO_THREAD_SLICE;
            match crate::thread_slice::request(slice) {
                Ok(outcome) => log::debug!(
                    slice_us = slice.as_micros() as u64,
                    outcome = format!("{outcome:?}").as_str();
                    "HTTP I/O thread's scheduler slice"
                ),
                Err(e) => log::debug!(
                    error = e.to_string().as_str();
                    "the HTTP I/O thread keeps the default scheduler slice"
                ),
            }
        })),
    }
}

/// Binds a listener; a failure names the listener, its variable and the
/// address (`cannot listen on 0.0.0.0:8080 (public listener, ADDR): Address
/// already in use`), not just the OS error; a busy port also says how to share it on purpose.
fn bind_named(
    role: Role,
    variable: &str,
    addr: std::net::SocketAddr,
    sharing: listener::PortSharing,
) -> io::Result<listener::Bound> {
    let name = match role {
        Role::Public => "public",
        Role::Admin => "admin",
    };
    listener::bind_or_inherit(role, addr, sharing).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AddrInUse {
            "; another process listens there (is another instance running? for a hand-over \
             between two instances on one port, start both with REUSE_PORT=true)"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} ({name} listener, {variable}): {e}{hint}"),
        )
    })
}

/// With `REUSE_PORT`, right after listening: new connections keep going to the instance
/// already running on the port until this one is ready (see `listener::Steer`).
fn keep_traffic_on_the_running_instance(l: &std::net::TcpListener) {
    if let Err(e) = listener::steer(l, listener::Steer::Oldest) {
        log::warn!(
            error = e.to_string().as_str();
            "cannot steer the shared port's new connections to the running instance"
        );
    }
}

/// The body of the HTTP layer's own refusals ([`pipeline::refused_by_http_layer`]),
/// counted by `hooks` first.
fn refusals_answered_and_counted(hooks: Arc<dyn Hooks>) -> tiny_http::ErrorBody {
    tiny_http::ErrorBody::new(move |refusal| {
        hooks.refused(refusal.status);
        pipeline::refused_by_http_layer(refusal)
    })
}

/// Work that must finish before the service is ready (migrations, the first
/// database connection). [`start`] retries it with back-off until it
/// succeeds or a shutdown signal arrives, logging each failure.
pub trait StartupWork {
    type Error: std::error::Error;
    /// One attempt; called again after a failure.
    fn attempt(&mut self) -> Result<(), Self::Error>;
}

/// A background worker (e.g. the outbox): asked to stop at step 5, joined.
pub trait Background: Send {
    fn name(&self) -> &'static str;
    /// Called when the listeners stop accepting (step 2): claim no new
    /// work, and start nothing that could not end by `deadline` (the
    /// in-flight budget), so the work in hand overlaps steps 3-4.
    fn request_stop(&self, _deadline: Instant) {}
    /// Finish the current item, then return.
    fn stop_and_join(self: Box<Self>, deadline: Instant);
}

/// Something closed at step 6, after every worker has stopped (the span
/// exporter, the database pool).
pub trait Resource: Send {
    fn name(&self) -> &'static str;
    fn close(self: Box<Self>);
}

/// Told what metrics read at scrape time, once the listeners and workers
/// exist.
pub trait RuntimeObserver {
    fn runtime_started(&self, gauges: RuntimeGauges);
}

/// Everything `run` wires together.
pub struct Parts<S> {
    pub settings: ServeSettings,
    pub state: Arc<ServiceState>,
    pub health: Arc<Health>,
    pub dispatcher: Arc<ApiDispatcher>,
    /// The admin listener's parts (the runtime adds the workers).
    pub admin: AdminParts,
    pub startup: S,
    pub background: Vec<Box<dyn Background>>,
    /// The database pool's commit gate, closed at the shutdown deadline.
    pub commit_gate: Arc<CommitGate>,
    /// Closed at step 6, in order.
    pub resources: Vec<Box<dyn Resource>>,
    pub observer: Option<Box<dyn RuntimeObserver>>,
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
    workers: WorkerPool<Job>,
    dispatcher: Arc<ApiDispatcher>,
    commit_gate: Arc<CommitGate>,
    background: Vec<Box<dyn Background>>,
    resources: Vec<Box<dyn Resource>>,
}

/// Serves until SIGTERM/SIGINT, then drains. `Ok` says whether the
/// shutdown was clean (exit 0) or forced ([`EXIT_FORCED`]); a second signal
/// has already exited the process with 130.
pub fn run<S: StartupWork>(parts: Parts<S>) -> io::Result<ShutdownOutcome> {
    let mut signal = ShutdownSignal::install()?;
    let running = start(parts, &|| signal.received())?;
    let which = signal.wait();
    Ok(running.shutdown(which))
}

/// Binds the listeners, starts the workers, runs the start-up work (retried
/// with back-off until it succeeds or `stop_requested` says to give up) and
/// marks the service ready.
pub fn start<S: StartupWork>(
    parts: Parts<S>,
    stop_requested: &dyn Fn() -> bool,
) -> io::Result<Running> {
    let Parts {
        settings,
        state,
        health,
        dispatcher,
        admin,
        mut startup,
        background,
        resources,
        observer,
        commit_gate,
    } = parts;

    // Workers first: the public server's handler needs their queue.
    let worker_dispatcher = Arc::clone(&dispatcher);
    let rules = JobRules {
        queue_timeout: settings.queue_timeout,
        gate: Arc::clone(&commit_gate),
    };
    let workers = WorkerPool::start(settings.worker_pool, move |slot, job: Job| {
        worker_dispatcher.run_job(slot, job, &rules)
    })?;
    let submitter = workers.submitter();

    // Requests the HTTP layer refuses get the same problem+json as the rest,
    // and are counted by the same hooks.
    let limits = tiny_http::Limits {
        error_body: Some(refusals_answered_and_counted(Arc::clone(&dispatcher.hooks))),
        ..settings.limits.clone()
    };

    let public_listener = bind_named(Role::Public, "ADDR", settings.addr, settings.port_sharing)?;
    // With REUSE_PORT, once ready, the shared ports' new connections are steered here.
    let mut steer = Vec::new();
    if settings.port_sharing == listener::PortSharing::ReusePort && !public_listener.inherited {
        keep_traffic_on_the_running_instance(&public_listener.listener);
        steer.push(public_listener.listener.try_clone()?);
    }
    let public_addr = public_listener.listener.local_addr()?;
    let mut specs = vec![{
        let dispatcher = Arc::clone(&dispatcher);
        tiny_http::ServerSpec {
            listener: public_listener.listener.into(),
            limits: tiny_http::Limits {
                listener_on_stop: public_listener.on_stop,
                ..limits.clone()
            },
            dispatch: tiny_http::Dispatch::Handler(Arc::new(move |req| {
                dispatcher.dispatch(&submitter, req)
            })),
        }
    }];

    let admin_addr = match settings.admin_addr {
        None => None,
        Some(addr) => {
            let l = bind_named(Role::Admin, "ADMIN_ADDR", addr, settings.port_sharing)?;
            if settings.port_sharing == listener::PortSharing::ReusePort && !l.inherited {
                keep_traffic_on_the_running_instance(&l.listener);
                steer.push(l.listener.try_clone()?);
            }
            let bound = l.listener.local_addr()?;
            let admin = Arc::new(
                Admin::new(admin, workers.slots())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            );
            specs.push(tiny_http::ServerSpec {
                listener: l.listener.into(),
                limits: tiny_http::Limits {
                    listener_on_stop: l.on_stop,
                    ..limits
                },
                dispatch: tiny_http::Dispatch::Handler(Arc::new(move |req| admin.dispatch(req))),
            });
            Some(bound)
        }
    };
    // One I/O thread for both listeners (ARCHITECTURE.md, "Threads").
    let mut servers = tiny_http::Server::serve_together(specs, io_hooks())?.into_iter();
    let (Some(public), admin) = (servers.next(), servers.next()) else {
        return Err(io::Error::other("the HTTP layer started no server"));
    };
    let admin = admin.zip(admin_addr);
    systemd::check_all_taken()?;
    systemd::start_watchdog()?;
    if let Some(observer) = observer {
        observer.runtime_started(RuntimeGauges {
            queue_len: workers.queue_len(),
            public: public.control(),
            admin: admin.as_ref().map(|(s, _)| s.control()),
        });
    }
    log::info!(
        addr = public_addr.to_string().as_str(),
        admin_addr = admin
            .as_ref()
            .map(|(_, a)| a.to_string())
            .unwrap_or_else(|| "off".into())
            .as_str(),
        workers = settings.worker_pool.workers,
        queue_depth = settings.worker_pool.queue_depth;
        "listening"
    );

    let mut backoff = Duration::from_millis(50);
    while !stop_requested() {
        match startup.attempt() {
            Ok(()) => {
                health.mark_started();
                state.advance(State::Ready);
                log::info!(state = "ready"; "service ready");
                for l in steer.drain(..) {
                    match listener::steer(&l, listener::Steer::Newest) {
                        Ok(()) => log::info!(
                            addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default().as_str();
                            "new connections on the shared port now come to this instance"
                        ),
                        Err(e) => log::warn!(
                            error = e.to_string().as_str();
                            "cannot steer the shared port's new connections here"
                        ),
                    }
                }
                systemd::notify_ready();
                break;
            }
            Err(reason) => {
                log::warn!(
                    reason = reason.to_string().as_str(),
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
        workers,
        dispatcher,
        commit_gate,
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

    /// The shutdown sequence (the module docs); `reason` names the signal
    /// for the log.
    pub fn shutdown(self, reason: &str) -> ShutdownOutcome {
        let Running {
            settings,
            state,
            public,
            admin,
            workers,
            dispatcher,
            commit_gate,
            background,
            resources,
            ..
        } = self;
        let mut outcome = ShutdownOutcome::Clean;
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
        let deadline = t1 + settings.shutdown_timeout;
        for b in &background {
            b.request_stop(deadline);
        }
        let t2 = Instant::now();

        // 3. In-flight and queued requests finish, within SHUTDOWN_TIMEOUT.
        if !controls.iter().all(|c| c.wait_idle(deadline)) {
            // The deadline: nothing starts or commits any more; a request
            // whose COMMIT went through gets a moment to write its answer;
            // what is still queued is dropped; then the connections are cut.
            outcome = ShutdownOutcome::Forced;
            let unanswered = commit_gate.close(Instant::now() + COMMIT_ANSWER_GRACE);
            if unanswered > 0 {
                log::error!(
                    commits = unanswered;
                    "shutdown deadline: a COMMIT was still in flight; its client may not hear of it"
                );
            }
            // Taken out of the queue first (no worker can start them), then
            // their connections are cut and each is closed without an answer
            // (`Request::close_unanswered`: dropping one would answer 500,
            // which would tell its client the wrong thing).
            let queued = workers.take_queued();
            let cut: usize = controls.iter().map(|c| c.open_connections()).sum();
            for c in &controls {
                c.force_close();
            }
            for job in queued {
                dispatcher.drop_unstarted(job);
            }
            // Also those workers dropped (they drop what they take once the
            // gate is closed, before the queue is emptied here).
            let dropped = dispatcher
                .unstarted_dropped
                .load(std::sync::atomic::Ordering::Relaxed);
            log::error!(
                connections = cut,
                dropped = dropped;
                "shutdown timeout reached; queued requests dropped, remaining connections cut"
            );
        }
        let t3 = Instant::now();

        // 4. Close the request channel (the worker pool owns its only
        //    sender) and join the workers; then the listeners' threads.
        workers.close();
        drop(controls);
        drop(public);
        drop(admin);
        let grace = Instant::now() + Duration::from_millis(500);
        if !workers.join(deadline.max(grace)) {
            outcome = ShutdownOutcome::Forced;
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

        // 6. Resources: spans flushed, the database pool closed.
        for resource in resources {
            let name = resource.name();
            resource.close();
            log::debug!(resource = name; "closed");
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
            total_ms = ms(t0, t6),
            forced = outcome == ShutdownOutcome::Forced;
            "shutdown complete"
        );
        outcome
    }
}
