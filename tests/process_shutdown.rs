//! The real binary's life: SIGTERM drains exactly as SPEC's seven steps say,
//! a second signal exits 130, the log level can be raised for a while, and
//! the admin endpoints never show on the public listener.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::client::{self, Conn};
use support::service::Service;
use support::TestDb;

fn start(db: &TestDb, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![("DATABASE_URL", db.url())];
    env.extend_from_slice(extra);
    let svc = Service::start(&env);
    svc.wait_ready(Duration::from_secs(20));
    svc
}

#[test]
fn sigterm_drains_in_order_and_exits_zero() {
    let db = TestDb::new();
    // DRAIN_DELAY long enough for the checks made within it on a loaded machine.
    let mut svc = start(&db, &[("DRAIN_DELAY", "3s")]);
    let created = client::request(
        svc.addr,
        "POST",
        "/api/v1/users",
        &[("Content-Type", "application/json")],
        br#"{"name":"Slow","email":"slow@example.com"}"#,
    )
    .expect("create");
    assert_eq!(created.status, 201, "{}", created.text());

    // A slow request: the users table is locked, so the read waits in the DB.
    let mut locker = db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let addr = svc.addr;
    let slow = thread::spawn(move || client::get(addr, "/api/v1/users/1"));
    // An idle keep-alive connection.
    let mut idle = Conn::open(svc.addr).expect("connect");
    assert_eq!(
        idle.send("GET", "/healthz", &[], b"")
            .expect("healthz")
            .status,
        200
    );
    thread::sleep(Duration::from_millis(200));

    svc.signal("TERM");
    let signalled = Instant::now();
    svc.wait_for_log(
        |v| v["msg"] == "shutdown started: draining",
        Duration::from_secs(5),
    );
    // During DRAIN_DELAY: unready, but liveness and the API still answer.
    let ready = client::get(svc.addr, "/readyz").expect("readyz while draining");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "draining");
    assert_eq!(
        client::get(svc.addr, "/healthz").expect("healthz").status,
        200
    );
    let api = client::get(svc.addr, "/openapi.json").expect("API while draining");
    assert_eq!(api.status, 200);
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "checked within DRAIN_DELAY"
    );

    // After DRAIN_DELAY the idle connection is closed by the server and new
    // connections are refused, while the slow request is still in flight.
    assert!(
        idle.is_closed_by_server(Duration::from_secs(3)),
        "idle keep-alive closed"
    );
    thread::sleep(Duration::from_millis(100));
    assert!(
        client::get(svc.addr, "/healthz").is_err(),
        "new connections refused"
    );
    assert!(!slow.is_finished(), "the slow request is still running");

    // Let the slow request finish: it completes with 200.
    tx.rollback().expect("unlock");
    let reply = slow.join().expect("join").expect("slow reply");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["email"], "slow@example.com");
    assert_eq!(
        reply
            .header("Connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );

    let status = svc.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", svc.lines().join("\n"));
    let logs = svc.logs();
    let last = logs.last().expect("a log line");
    assert_eq!(last["msg"], "shutdown complete", "{last}");
    for phase in [
        "drain_ms",
        "stop_accepting_ms",
        "inflight_ms",
        "workers_ms",
        "background_ms",
        "close_ms",
        "total_ms",
    ] {
        assert!(last[phase].is_number(), "{phase} missing: {last}");
    }
    assert!(last["drain_ms"].as_f64().unwrap_or(0.0) >= 3000.0, "{last}");
}

#[test]
fn a_second_signal_exits_130_at_once() {
    let db = TestDb::new();
    let mut svc = start(&db, &[("DRAIN_DELAY", "10s"), ("SHUTDOWN_TIMEOUT", "10s")]);
    svc.signal("TERM");
    svc.wait_for_log(
        |v| v["msg"] == "shutdown started: draining",
        Duration::from_secs(5),
    );
    let t = Instant::now();
    svc.signal("TERM");
    let status = svc.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "exited at once: {:?}",
        t.elapsed()
    );
}

#[test]
fn sigint_also_drains_and_exits_zero() {
    let db = TestDb::new();
    let mut svc = start(&db, &[("DRAIN_DELAY", "100ms")]);
    svc.signal("INT");
    assert_eq!(svc.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(svc.logs().iter().any(|v| v["msg"] == "shutdown complete"));
}

#[test]
fn log_level_can_be_changed_for_a_while_and_reverts_by_itself() {
    let db = TestDb::new();
    let svc = start(&db, &[]);
    let admin = svc.admin.expect("admin listener");
    // Every request ends with an INFO `request completed` line, probes too.
    let probe_lines = |svc: &Service| {
        svc.logs()
            .iter()
            .filter(|v| {
                v["level"] == "INFO" && v["msg"] == "request completed" && v["route"] == "/healthz"
            })
            .count()
    };
    client::get(svc.addr, "/healthz").expect("probe");
    svc.wait_for_log(
        |v| v["msg"] == "request completed" && v["route"] == "/healthz",
        Duration::from_secs(2),
    );

    let r = client::request(admin, "PUT", "/debug/log-level?level=warn&for=1s", &[], b"")
        .expect("put level");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["level"], "warn");
    let before = probe_lines(&svc);
    client::get(svc.addr, "/healthz").expect("probe");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(probe_lines(&svc), before, "level is warn: no request line");

    // The revert is logged although the level it leaves (warn) hides INFO.
    svc.wait_for_log(
        |v| v["msg"] == "log level reverted" && v["new_level"] == "INFO",
        Duration::from_secs(3),
    );
    client::get(svc.addr, "/healthz").expect("probe");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while probe_lines(&svc) == before && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        probe_lines(&svc),
        before + 1,
        "request lines are back by themselves"
    );
    let r = client::get(admin, "/debug/log-level").expect("get level");
    assert_eq!(r.json()["level"], "info");

    let bad = client::request(admin, "PUT", "/debug/log-level?level=loud", &[], b"").expect("bad");
    assert_eq!(bad.status, 400);
    let bad = client::request(
        admin,
        "PUT",
        "/debug/log-level?level=debug&for=soon",
        &[],
        b"",
    )
    .expect("bad for");
    assert_eq!(bad.status, 400);
}

#[test]
fn admin_endpoints_are_not_on_the_public_listener() {
    let db = TestDb::new();
    let svc = start(&db, &[]);
    let admin = svc.admin.expect("admin listener");
    for path in [
        "/metrics",
        "/debug/workers",
        "/debug/config",
        "/debug/log-level",
    ] {
        assert_eq!(
            client::get(svc.addr, path).expect("public").status,
            404,
            "{path}"
        );
        assert_eq!(
            client::get(admin, path).expect("admin").status,
            200,
            "{path}"
        );
    }
    let put = client::request(svc.addr, "PUT", "/debug/log-level?level=trace", &[], b"")
        .expect("public put");
    assert_eq!(put.status, 404);
    let config = client::get(admin, "/debug/config").expect("config").json();
    assert_eq!(config["WORKERS"], 4);
}

#[test]
fn admin_off_disables_the_admin_listener() {
    let db = TestDb::new();
    let svc = start(&db, &[("ADMIN_ADDR", "off")]);
    assert!(svc.admin.is_none());
    assert_eq!(
        client::get(svc.addr, "/healthz").expect("public").status,
        200
    );
}

#[test]
fn start_up_refuses_a_shutdown_budget_over_the_grace_period() {
    let out = std::process::Command::new(support::service::BIN)
        .env_clear()
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("DRAIN_DELAY", "10s")
        .env("SHUTDOWN_TIMEOUT", "25s")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TERMINATION_GRACE_PERIOD"), "{err}");
}
