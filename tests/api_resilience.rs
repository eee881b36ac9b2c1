//! The API when PostgreSQL goes away and comes back, against the real binary
//! and a private PostgreSQL server (`TempCluster`), so the shared test server
//! is never disturbed.

mod support;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::client::{self, Reply};
use support::service::Service;
use support::TempCluster;

const USERS: &str = "/api/v1/users";
const JSON: (&str, &str) = ("Content-Type", "application/json");
/// The configured `DB_ACQUIRE_TIMEOUT`.
const ACQUIRE: Duration = Duration::from_secs(1);

fn start(cluster: &TempCluster) -> Service {
    let url = cluster.url();
    let svc = Service::start(&[
        ("DATABASE_URL", url.as_str()),
        ("DB_ACQUIRE_TIMEOUT", "1s"),
        ("MAX_CONNECTIONS", "4"),
    ]);
    svc.wait_ready(Duration::from_secs(20));
    svc
}

/// The status of every `request completed` log line so far.
/// The statuses of the API requests the service logged (probes log their
/// lines too: the harness's readiness polls answered 503 before ready).
fn statuses(svc: &Service) -> Vec<u64> {
    let seen: Vec<u64> = svc
        .logs()
        .iter()
        .filter(|l| {
            l["msg"] == "request completed"
                && l["route"].as_str().is_some_and(|r| r.starts_with("/api/"))
        })
        .map(|l| l["status"].as_u64().expect("numeric status"))
        .collect();
    assert!(!seen.is_empty(), "no request completed lines");
    seen
}

fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (Reply, Duration) {
    let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &[JSON] };
    let t = Instant::now();
    let mut conn = client::Conn::open(addr).expect("connect");
    // Never hang: a reply must come well within this.
    conn.set_read_timeout(Duration::from_secs(10));
    let r = conn
        .send(method, path, headers, body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: no reply: {e}"));
    (r, t.elapsed())
}

fn create(addr: SocketAddr, email: &str) -> Value {
    let body = json!({"name": "Ada", "email": email}).to_string();
    let (r, _) = call(addr, "POST", USERS, &body);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// Asserts a 503 problem with `Retry-After`, answered within the acquire
/// timeout plus one second.
fn assert_unavailable(what: &str, r: &Reply, took: Duration) {
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/problem+json"));
    let retry: u64 = r
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{what}: Retry-After missing or not seconds: {:?}",
                r.headers
            )
        });
    assert!(retry >= 1);
    let v = r.json();
    assert_eq!(v["status"], 503);
    for k in ["type", "title", "detail"] {
        assert!(v[k].is_string(), "{what}: {v}");
    }
    assert_eq!(
        v["request_id"],
        json!(r.header("X-Request-ID").expect("id"))
    );
    assert!(
        took <= ACQUIRE + Duration::from_secs(1),
        "{what}: answered after {took:?}"
    );
}

/// PostgreSQL stopped mid-run: every API call answers 503 problem+json with
/// `Retry-After` within acquire timeout + 1 s (never 500, never a hang),
/// liveness stays 200 and readiness says why; once PostgreSQL is back the
/// same process serves again, with the data intact.
#[test]
fn database_outage_answers_503_and_recovers_without_restart() {
    let cluster = TempCluster::start_new();
    let svc = start(&cluster);
    let addr = svc.addr;
    let ada = create(addr, "ada@example.com");
    let id = ada["id"].as_i64().expect("id");
    let item = format!("{USERS}/{id}");
    // Warm the pool so it holds connections that are about to die.
    for _ in 0..8 {
        assert_eq!(call(addr, "GET", &item, "").0.status, 200);
    }

    cluster.stop();
    let calls = [
        ("GET", item.clone(), String::new()),
        ("GET", format!("{USERS}?limit=5"), String::new()),
        (
            "POST",
            USERS.to_owned(),
            r#"{"name":"Bob","email":"bob@example.com"}"#.to_owned(),
        ),
        ("PATCH", item.clone(), r#"{"name":"Ada K"}"#.to_owned()),
        ("DELETE", item.clone(), String::new()),
    ];
    // Twice: first against pooled connections that died with the server,
    // then against an empty pool that cannot connect.
    for round in 0..2 {
        for (method, path, body) in &calls {
            let (r, took) = call(addr, method, path, body);
            assert_unavailable(&format!("round {round}: {method} {path}"), &r, took);
        }
    }
    // Concurrent callers, one per worker: all 503 in time, none 500.
    let parallel: Vec<_> = (0..4)
        .map(|_| {
            let item = item.clone();
            thread::spawn(move || call(addr, "GET", &item, ""))
        })
        .collect();
    for h in parallel {
        let (r, took) = h.join().expect("thread");
        assert_unavailable("parallel GET", &r, took);
    }
    // Idempotent creates are refused the same way and do not burn the key.
    let (r, took) = {
        let t = Instant::now();
        let r = client::request(
            addr,
            "POST",
            USERS,
            &[JSON, ("Idempotency-Key", "outage-1")],
            br#"{"name":"Cy","email":"cy@example.com"}"#,
        )
        .expect("reply");
        (r, t.elapsed())
    };
    assert_unavailable("idempotent POST", &r, took);

    // Probes: alive, not ready (the database check says why).
    let health = client::get(addr, "/healthz").expect("healthz");
    assert_eq!(health.status, 200);
    // A probe never waits for the check it starts (the last result answers
    // meanwhile), so the outage shows within a check's time: poll.
    let polled = Instant::now();
    let ready = loop {
        let ready = client::get(addr, "/readyz").expect("readyz");
        if ready.status == 503 || polled.elapsed() > Duration::from_secs(3) {
            break ready;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["status"], "unavailable");
    assert_ne!(ready.json()["checks"]["database"], "ok");
    assert!(
        !statuses(&svc).contains(&500),
        "a request completed with 500"
    );

    cluster.start();
    let back = Instant::now();
    loop {
        let (r, _) = call(addr, "GET", &item, "");
        if r.status == 200 {
            assert_eq!(r.json(), ada, "data intact");
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "not serving 10 s after PostgreSQL came back"
        );
        thread::sleep(Duration::from_millis(100));
    }
    svc.wait_ready(Duration::from_secs(10));
    // Writes work too, including the idempotency key refused during the outage.
    let r = client::request(
        addr,
        "POST",
        USERS,
        &[JSON, ("Idempotency-Key", "outage-1")],
        br#"{"name":"Cy","email":"cy@example.com"}"#,
    )
    .expect("reply");
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.header("Idempotent-Replayed").is_none());
    let (r, _) = call(addr, "PATCH", &item, r#"{"name":"Ada K"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let (r, _) = call(addr, "GET", &format!("{USERS}?limit=10"), "");
    assert_eq!(r.json()["users"].as_array().map(Vec::len), Some(2));
    assert!(
        !statuses(&svc).contains(&500),
        "a request completed with 500"
    );
}

/// Every pooled backend killed by an administrator (`pg_terminate_backend`):
/// the next request of each kind still succeeds, because a dead connection
/// is discarded and the work retried on a live one.
#[test]
fn terminated_backends_are_replaced_transparently() {
    let cluster = TempCluster::start_new();
    let svc = start(&cluster);
    let addr = svc.addr;
    let ada = create(addr, "ada@example.com");
    let item = format!("{USERS}/{}", ada["id"]);
    let mut admin = usersvc::db::connect(&cluster.url(), Duration::from_secs(5)).expect("admin");

    let kill_all = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
                &[],
            )
            .expect("terminate")
            .get(0)
    };

    let steps: [(&str, String, String, u16); 4] = [
        ("GET", item.clone(), String::new(), 200),
        ("GET", format!("{USERS}?limit=5"), String::new(), 200),
        (
            "POST",
            USERS.to_owned(),
            r#"{"name":"Bob","email":"bob@example.com"}"#.to_owned(),
            201,
        ),
        ("PATCH", item.clone(), r#"{"name":"Ada K"}"#.to_owned(), 200),
    ];
    for (method, path, body, want) in &steps {
        // Fill the pool (several connections), then kill every backend.
        let parallel: Vec<_> = (0..4)
            .map(|_| {
                let item = item.clone();
                thread::spawn(move || call(addr, "GET", &item, "").0.status)
            })
            .collect();
        for h in parallel {
            assert_eq!(h.join().expect("thread"), 200);
        }
        let killed = kill_all(&mut admin);
        assert!(killed >= 1, "no service backend to terminate");
        thread::sleep(Duration::from_millis(100));
        let (r, took) = call(addr, method, path, body);
        assert_eq!(
            r.status,
            *want,
            "{method} {path} after killing {killed} backends: {}",
            r.text()
        );
        assert!(took < ACQUIRE, "{method} {path} took {took:?}");
    }
    let seen = statuses(&svc);
    assert!(seen.iter().all(|s| *s < 500), "a request failed: {seen:?}");
}
