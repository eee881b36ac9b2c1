//! The real binary under overload: with every worker blocked and the queue
//! full, the next API request is shed at once (503 + Retry-After) and the
//! probes still answer at once; the blocked and queued requests are served
//! afterwards, not dropped.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::client;
use support::service::Service;
use support::TestDb;

#[test]
fn full_queue_sheds_at_once_while_probes_answer() {
    let db = TestDb::new();
    let svc = Service::start(&[
        ("DATABASE_URL", db.url()),
        ("MAX_CONNECTIONS", "1"),
        ("WORKERS", "1"),
        ("QUEUE_DEPTH", "1"),
        ("DB_STATEMENT_TIMEOUT", "20s"),
    ]);
    svc.wait_ready(Duration::from_secs(20));
    let created = client::request(
        svc.addr,
        "POST",
        "/api/v1/users",
        &[("Content-Type", "application/json")],
        br#"{"name":"Q","email":"q@example.com"}"#,
    )
    .expect("create");
    assert_eq!(created.status, 201);

    // Block the only worker inside the database, then fill the queue.
    let mut locker = db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let addr = svc.addr;
    let blocked = thread::spawn(move || client::get(addr, "/api/v1/users/1"));
    let admin = svc.admin.expect("admin");
    // The only worker has taken the blocked request before the next one comes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let workers = client::get(admin, "/debug/workers").expect("workers");
        if workers.json()["workers"][0]["state"] == "busy" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", workers.text());
        thread::sleep(Duration::from_millis(10));
    }
    let queued = thread::spawn(move || client::get(addr, "/api/v1/users/1"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = client::get(admin, "/metrics").expect("metrics").text();
        if m.lines().any(|l| l == "http_queue_depth 1") {
            break;
        }
        assert!(Instant::now() < deadline, "queue never filled:\n{m}");
        thread::sleep(Duration::from_millis(20));
    }

    let mut shed = Vec::new();
    let mut probes = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = client::get(svc.addr, "/api/v1/users/1").expect("shed");
        shed.push(t.elapsed());
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("Retry-After"), Some("1"));
        assert_eq!(
            r.json()["request_id"],
            r.header("X-Request-ID").expect("id")
        );
        for path in ["/healthz", "/readyz"] {
            let t = Instant::now();
            let p = client::get(svc.addr, path).expect("probe");
            probes.push(t.elapsed());
            assert_eq!(p.status, 200, "{path}: {}", p.text());
        }
    }
    let fastest = |v: &[Duration]| v.iter().copied().min().unwrap_or_default();
    assert!(fastest(&shed) < Duration::from_millis(100), "{shed:?}");
    assert!(fastest(&probes) < Duration::from_millis(100), "{probes:?}");
    assert!(shed
        .iter()
        .chain(&probes)
        .all(|t| *t < Duration::from_secs(1)));
    let m = client::get(admin, "/metrics").expect("metrics").text();
    assert!(m.lines().any(|l| l == "http_requests_shed_total 5"), "{m}");

    tx.rollback().expect("unlock");
    assert_eq!(blocked.join().expect("join").expect("reply").status, 200);
    assert_eq!(
        queued.join().expect("join").expect("reply").status,
        200,
        "queued, not dropped"
    );
}
