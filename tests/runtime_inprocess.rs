//! The runtime on real sockets, in-process, with test handlers (a gate that
//! blocks, a panic): shedding, probes under load, panic recovery, routing
//! answers, request ids and the drain sequence.

mod support;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::Value;
use support::client::{self, Conn};
use usersvc::health::{Health, NoCheckObserver};
use usersvc::http::admin::{AdminParts, Exposition};
use usersvc::http::dispatch::{ApiDispatcher, ApiHandler};
use usersvc::http::method::Method;
use usersvc::http::pipeline::{HandlerResult, Hooks, Meta};
use usersvc::http::request::ApiRequest;
use usersvc::http::response::ApiResponse;
use usersvc::http::router::Router;
use usersvc::http::worker_pool::{QueueLen, WorkerPoolSize};
use usersvc::lifecycle::{ServiceState, State};
use usersvc::logging::level::{ApplyLevel, LogLevelControl};
use usersvc::runtime::{
    self, Parts, Running, RuntimeGauges, RuntimeObserver, ServeSettings, StartupWork,
};

/// Counts what the hooks see.
#[derive(Default)]
struct Counts {
    panics: Mutex<u32>,
    shed: Mutex<u32>,
    abandoned: Mutex<u32>,
    finished: Mutex<Vec<(String, &'static str, u16)>>,
}

struct CountingHooks(Arc<Counts>);
impl Hooks for CountingHooks {
    fn finished(&self, meta: &Meta, status: u16, _: Duration, _: usize) {
        let m = meta.method.as_str().to_owned();
        self.0
            .finished
            .lock()
            .unwrap()
            .push((m, meta.route, status));
    }
    fn panicked(&self, _: &Meta) {
        *self.0.panics.lock().unwrap() += 1;
    }
    fn shed(&self, _: &Meta) {
        *self.0.shed.lock().unwrap() += 1;
    }
    fn abandoned(&self, _: &Meta) {
        *self.0.abandoned.lock().unwrap() += 1;
    }
}

/// `/metrics` answers an empty exposition.
struct NoMetrics;
impl Exposition for NoMetrics {
    fn render(&self) -> ApiResponse {
        ApiResponse::text(200, "")
    }
}

/// Level changes go nowhere (the test process's logger is not ours).
struct NoLogger;
impl ApplyLevel for NoLogger {
    fn apply(&self, _: log::LevelFilter) {}
}

/// Start-up work that is done at once.
struct Ready;
impl StartupWork for Ready {
    type Error = std::convert::Infallible;
    fn attempt(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Keeps the queue length reader the runtime hands out.
struct KeepQueueLen(Arc<Mutex<Option<QueueLen>>>);
impl RuntimeObserver for KeepQueueLen {
    fn runtime_started(&self, g: RuntimeGauges) {
        *self.0.lock().unwrap() = Some(g.queue_len);
    }
}

/// Boxes a handler closure (the annotation gives it the higher-ranked type).
fn h(f: impl Fn(&ApiRequest<'_>) -> HandlerResult + Send + Sync + 'static) -> ApiHandler {
    Box::new(f)
}

struct Harness {
    running: Option<Running>,
    state: Arc<ServiceState>,
    counts: Arc<Counts>,
    /// Each message releases one blocked `/block` request.
    release: Sender<()>,
    /// Each message says one `/block` request has started.
    entered: Receiver<()>,
    /// Requests waiting in the bounded queue for a worker.
    queue_len: Arc<Mutex<Option<QueueLen>>>,
}

impl Harness {
    fn start(workers: usize, queue_depth: usize, drain_delay: Duration) -> Harness {
        let (release, gate) = bounded::<()>(1024);
        let (enter_tx, entered) = bounded::<()>(1024);
        let router: Router<ApiHandler> = Router::new()
            .route(
                Method::Get,
                "/block",
                h(move |_req| {
                    let _ = enter_tx.send(());
                    let _ = gate.recv_timeout(Duration::from_secs(20));
                    Ok(ApiResponse::text(200, "released"))
                }),
            )
            .and_then(|r| {
                r.route(
                    Method::Get,
                    "/items/{id}",
                    h(|req| Ok(ApiResponse::text(200, req.params.get("id").unwrap_or("")))),
                )
            })
            .and_then(|r| {
                r.route(
                    Method::Delete,
                    "/items/{id}",
                    h(|_req| Ok(ApiResponse::empty(204))),
                )
            })
            .and_then(|r| r.route(Method::Get, "/panic", h(|_req| panic!("boom in a handler"))))
            .and_then(|r| {
                r.route(
                    Method::Post,
                    "/echo",
                    h(|req| Ok(ApiResponse::text(200, &String::from_utf8_lossy(req.body)))),
                )
            })
            .expect("routes");
        let counts = Arc::new(Counts::default());
        let queue_len = Arc::new(Mutex::new(None));
        let hooks: Arc<dyn Hooks> = Arc::new(CountingHooks(Arc::clone(&counts)));
        let state = ServiceState::new();
        let health = Arc::new(Health::new(
            Arc::clone(&state),
            Vec::new(),
            Arc::new(NoCheckObserver),
        ));
        let dispatcher = Arc::new(ApiDispatcher {
            router,
            health: Arc::clone(&health),
            hooks: Arc::clone(&hooks),
            max_body_bytes: 1024,
            unstarted_dropped: Default::default(),
        });
        let limits = tiny_http::Limits {
            max_connections: 64,
            read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            max_body_bytes: 1024,
            ..tiny_http::Limits::default()
        };
        let parts = Parts {
            settings: ServeSettings {
                addr: "127.0.0.1:0".parse().unwrap(),
                admin_addr: Some("127.0.0.1:0".parse().unwrap()),
                worker_pool: WorkerPoolSize {
                    workers,
                    queue_depth,
                },
                limits,
                drain_delay,
                shutdown_timeout: Duration::from_secs(5),
                queue_timeout: Duration::from_secs(5),
                port_sharing: usersvc::http::listener::PortSharing::Exclusive,
            },
            state: Arc::clone(&state),
            admin: AdminParts {
                health: Arc::clone(&health),
                metrics: Arc::new(NoMetrics),
                config: Value::Null,
                background: Vec::new(),
                log_level: LogLevelControl::new(log::LevelFilter::Info, NoLogger),
                hooks,
            },
            health,
            dispatcher,
            startup: Ready,
            background: Vec::new(),
            commit_gate: usersvc::db::CommitGate::new(),
            resources: Vec::new(),
            observer: Some(Box::new(KeepQueueLen(Arc::clone(&queue_len)))),
        };
        let running = runtime::start(parts, &|| false).expect("start");
        Harness {
            running: Some(running),
            state,
            counts,
            release,
            entered,
            queue_len,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().unwrap().public_addr()
    }

    fn admin(&self) -> std::net::SocketAddr {
        self.running.as_ref().unwrap().admin_addr().unwrap()
    }

    /// Starts a `/block` request on its own thread; returns its reply later.
    fn block(&self) -> thread::JoinHandle<client::Reply> {
        let addr = self.addr();
        thread::spawn(move || client::get(addr, "/block").expect("blocked request"))
    }

    /// Waits (5 s at most) until `n` requests sit in the queue.
    fn wait_queued(&self, n: usize) {
        let len = self
            .queue_len
            .lock()
            .unwrap()
            .clone()
            .expect("gauges wired");
        let deadline = Instant::now() + Duration::from_secs(5);
        while len.get() != n {
            assert!(
                Instant::now() < deadline,
                "queue length {} != {n}",
                len.get()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_entered(&self, n: usize) {
        for _ in 0..n {
            self.entered
                .recv_timeout(Duration::from_secs(5))
                .expect("handler entered");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for _ in 0..64 {
            let _ = self.release.try_send(());
        }
        if let Some(r) = self.running.take() {
            r.shutdown("test");
        }
    }
}

#[test]
fn full_queue_sheds_at_once_and_probes_still_answer() {
    let h = Harness::start(1, 1, Duration::ZERO);
    let in_flight = h.block();
    h.wait_entered(1);
    let queued = h.block();
    h.wait_queued(1);

    let mut shed_times = Vec::new();
    let mut probe_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = client::get(h.addr(), "/block").expect("shed reply");
        shed_times.push(t.elapsed());
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("Retry-After"), Some("1"));
        assert_eq!(r.header("Content-Type"), Some("application/problem+json"));
        assert_eq!(r.json()["status"], 503);
        assert_eq!(r.json()["request_id"], r.header("X-Request-ID").unwrap());

        let t = Instant::now();
        let p = client::get(h.addr(), "/healthz").expect("healthz");
        probe_times.push(t.elapsed());
        assert_eq!(p.status, 200);
        assert_eq!(p.text(), "ok");
    }
    let fastest = |v: &[Duration]| v.iter().min().copied().unwrap();
    assert!(
        fastest(&shed_times) < Duration::from_millis(100),
        "{shed_times:?}"
    );
    assert!(
        fastest(&probe_times) < Duration::from_millis(100),
        "{probe_times:?}"
    );
    assert!(shed_times.iter().all(|t| *t < Duration::from_secs(2)));
    assert_eq!(*h.counts.shed.lock().unwrap(), 5);

    h.release.send(()).unwrap();
    h.release.send(()).unwrap();
    assert_eq!(in_flight.join().unwrap().status, 200);
    assert_eq!(
        queued.join().unwrap().status,
        200,
        "the queued request was served, not dropped"
    );
}

#[test]
fn a_queued_request_whose_client_left_is_skipped_and_counted() {
    let h = Harness::start(1, 4, Duration::ZERO);
    let in_flight = h.block();
    h.wait_entered(1);
    // Queued behind the blocked worker, then the client gives up and closes.
    let mut gone = Conn::open(h.addr()).expect("connect");
    gone.write_raw(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    h.wait_queued(1);
    drop(gone);
    // A client that stays is served after it.
    let stays = h.block();
    h.wait_queued(2);
    h.release.send(()).unwrap();
    assert_eq!(in_flight.join().unwrap().status, 200);
    // The worker skips the abandoned job (its handler would block on the gate) and serves
    // the next one.
    h.wait_entered(1);
    h.release.send(()).unwrap();
    assert_eq!(stays.join().unwrap().status, 200);
    assert_eq!(*h.counts.abandoned.lock().unwrap(), 1);
    let finished = h.counts.finished.lock().unwrap().clone();
    assert!(
        finished
            .iter()
            .any(|(_, route, status)| *route == "/block" && *status == 499),
        "{finished:?}"
    );
}

#[test]
fn a_panicking_handler_answers_500_and_every_worker_keeps_serving() {
    let h = Harness::start(3, 8, Duration::ZERO);
    for _ in 0..6 {
        let r = client::request(
            h.addr(),
            "GET",
            "/panic",
            &[("X-Request-ID", "panic-req-1")],
            b"",
        )
        .expect("reply");
        assert_eq!(r.status, 500);
        assert_eq!(r.header("X-Request-ID"), Some("panic-req-1"));
        let body = r.json();
        assert_eq!(body["request_id"], "panic-req-1");
        assert_eq!(body["status"], 500);
        assert!(body["detail"].as_str().unwrap().contains("unexpected"));
        assert!(
            !r.text().contains("boom"),
            "the panic message is logged, not sent"
        );
    }
    assert_eq!(*h.counts.panics.lock().unwrap(), 6);
    // Block every worker at once: all three must still be alive to enter.
    let blocked: Vec<_> = (0..3).map(|_| h.block()).collect();
    h.wait_entered(3);
    for _ in 0..3 {
        h.release.send(()).unwrap();
    }
    for b in blocked {
        assert_eq!(b.join().unwrap().status, 200);
    }
}

#[test]
fn unknown_route_is_404_wrong_method_is_405_with_allow_and_head_works() {
    let h = Harness::start(2, 8, Duration::ZERO);
    let r = client::get(h.addr(), "/nope").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("Content-Type"), Some("application/problem+json"));
    assert_eq!(r.json()["title"], "Not Found");

    let r = client::request(h.addr(), "PUT", "/items/7", &[], b"").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD, DELETE"));
    assert_eq!(r.json()["request_id"], r.header("X-Request-ID").unwrap());

    let r = client::request(h.addr(), "BREW", "/items/7", &[], b"").unwrap();
    assert_eq!(r.status, 405);

    let r = client::get(h.addr(), "/items/42").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "42"));
    let r = client::request(h.addr(), "HEAD", "/items/42", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("2"));
    assert!(r.body.is_empty());

    let r = client::request(h.addr(), "POST", "/healthz", &[], b"").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));

    // Each request is counted just after its response: wait for all six.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.counts.finished.lock().unwrap().len() < 6 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(h.counts.finished.lock().unwrap().len(), 6);
    let routes: Vec<_> = h
        .counts
        .finished
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.1)
        .collect();
    assert!(routes.contains(&"unmatched"));
    assert!(routes.contains(&"/items/{id}"));
    assert!(
        !routes.iter().any(|r| r.contains("42")),
        "labels are patterns: {routes:?}"
    );
}

#[test]
fn request_ids_are_echoed_when_sane_and_replaced_when_not() {
    let h = Harness::start(1, 4, Duration::ZERO);
    let r = client::request(
        h.addr(),
        "GET",
        "/items/1",
        &[("X-Request-ID", "abc-123")],
        b"",
    )
    .unwrap();
    assert_eq!(r.header("X-Request-ID"), Some("abc-123"));

    let long = "x".repeat(129);
    for bad in [
        "has space",
        long.as_str(),
        "tab\tinside",
        "semi;colon,comma space",
    ] {
        let r =
            client::request(h.addr(), "GET", "/items/1", &[("X-Request-ID", bad)], b"").unwrap();
        let id = r.header("X-Request-ID").unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
    let a = client::get(h.addr(), "/items/1").unwrap();
    let b = client::get(h.addr(), "/items/1").unwrap();
    let (a, b) = (
        a.header("X-Request-ID").unwrap(),
        b.header("X-Request-ID").unwrap(),
    );
    assert!(uuid::Uuid::parse_str(a).is_ok());
    assert_ne!(a, b);
    // Probes and errors carry one too.
    assert!(client::get(h.addr(), "/healthz")
        .unwrap()
        .header("X-Request-ID")
        .is_some());
    assert!(client::get(h.addr(), "/nope")
        .unwrap()
        .header("X-Request-ID")
        .is_some());
}

#[test]
fn bodies_over_the_limit_are_413_and_within_it_reach_the_handler() {
    let h = Harness::start(1, 4, Duration::ZERO);
    let r = client::request(h.addr(), "POST", "/echo", &[], b"hello").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    let big = vec![b'a'; 2048];
    let r = client::request(h.addr(), "POST", "/echo", &[], &big).unwrap();
    assert_eq!(r.status, 413);
}

#[test]
fn debug_endpoints_live_only_on_the_admin_listener() {
    let h = Harness::start(1, 4, Duration::ZERO);
    for path in [
        "/debug/workers",
        "/debug/config",
        "/debug/log-level",
        "/metrics",
    ] {
        assert_eq!(
            client::get(h.addr(), path).unwrap().status,
            404,
            "{path} on public"
        );
        assert_eq!(
            client::get(h.admin(), path).unwrap().status,
            200,
            "{path} on admin"
        );
    }
    let w = client::get(h.admin(), "/debug/workers").unwrap().json();
    assert_eq!(w["workers"].as_array().unwrap().len(), 1);
    assert_eq!(w["workers"][0]["state"], "idle");
    for probe in ["/healthz", "/readyz", "/startupz"] {
        assert_eq!(
            client::get(h.admin(), probe).unwrap().status,
            200,
            "{probe} on admin"
        );
    }
}

#[test]
fn drain_finishes_in_flight_work_and_closes_idle_connections() {
    // DRAIN_DELAY long enough for the requests below on a loaded machine.
    let mut h = Harness::start(2, 8, Duration::from_secs(2));
    assert_eq!(client::get(h.addr(), "/readyz").unwrap().status, 200);
    let addr = h.addr();
    let mut idle = Conn::open(addr).unwrap();
    assert_eq!(idle.send("GET", "/items/1", &[], b"").unwrap().status, 200);
    let in_flight = h.block();
    h.wait_entered(1);

    let running = h.running.take().unwrap();
    let state = Arc::clone(&h.state);
    let shutdown = thread::spawn(move || running.shutdown("test"));
    // During DRAIN_DELAY: unready, still serving.
    let deadline = Instant::now() + Duration::from_secs(2);
    while state.get() != State::Draining && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(state.get(), State::Draining);
    let r = client::get(addr, "/readyz").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "draining");
    assert_eq!(client::get(addr, "/healthz").unwrap().status, 200);
    assert_eq!(client::get(addr, "/items/5").unwrap().status, 200);
    // After DRAIN_DELAY: the idle keep-alive connection is closed by the
    // server and new connections are refused.
    assert!(idle.is_closed_by_server(Duration::from_secs(3)));
    assert!(
        client::get(addr, "/healthz").is_err(),
        "new connections refused"
    );
    // The in-flight request still completes, with Connection: close.
    h.release.send(()).unwrap();
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "released");
    assert_eq!(
        r.header("Connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
    shutdown.join().unwrap();
    assert_eq!(state.get(), State::Stopping);
}
