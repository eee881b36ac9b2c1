//! The probes over the service's whole life, on the real binary:
//! `/startupz` is 503 until migrations and the first database connection are
//! done (and readiness says `starting`, without pinging anything), then
//! everything turns 200; after SIGTERM readiness says `draining` while
//! liveness stays 200. `service_state` follows on `/metrics`.

mod metrics_common;
mod support;

use std::thread;
use std::time::{Duration, Instant};

use metrics_common::{scrape, value};
use support::client;
use support::service::Service;
use support::TempCluster;

fn status(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = client::get(addr, path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (r.status, r.text())
}

fn state_gauge(svc: &Service, state: &str) -> f64 {
    value(&scrape(svc), "service_state", &[("state", state)])
}

#[test]
fn probes_over_the_life_of_the_service() {
    // A database that is not there yet: start-up work retries.
    let cluster = TempCluster::start_new();
    cluster.stop();
    let url = cluster.url();
    // DRAIN_DELAY long enough for the checks made within it on a loaded machine.
    let mut svc = Service::start(&[("DATABASE_URL", url.as_str()), ("DRAIN_DELAY", "3s")]);

    // Starting: listeners are up, start-up work is not done.
    for addr in [svc.addr, metrics_common::admin(&svc)] {
        assert_eq!(status(addr, "/startupz"), (503, "starting".to_owned()));
        let ready = client::get(addr, "/readyz").expect("readyz");
        assert_eq!(ready.status, 503);
        assert_eq!(
            ready.json(),
            serde_json::json!({"status": "starting", "checks": {}})
        );
        assert_eq!(status(addr, "/healthz"), (200, "ok".to_owned()));
    }
    thread::sleep(Duration::from_millis(500));
    assert_eq!(status(svc.addr, "/startupz").0, 503, "still starting");
    assert_eq!(state_gauge(&svc, "starting"), 1.0);
    assert_eq!(state_gauge(&svc, "ready"), 0.0);
    let text = scrape(&svc);
    assert_eq!(
        value(&text, "readiness_checks_total", &[]),
        0.0,
        "no dependency is pinged while starting"
    );

    // The database arrives: migrations run, a first connection is made, and
    // only then does /startupz turn 200.
    cluster.start();
    let t = Instant::now();
    while status(svc.addr, "/startupz").0 != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "start-up never finished"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // /startupz turns 200 just before "service ready" is logged.
    svc.wait_for_log(|v| v["msg"] == "service ready", Duration::from_secs(5));
    let logs = svc.logs();
    let pos = |msg: &str| logs.iter().position(|l| l["msg"] == msg);
    let migrated = pos("migrations applied").expect("migrations applied first");
    let ready = pos("service ready").expect("service ready logged");
    assert!(migrated < ready);
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let tables: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'",
            &[],
        )
        .expect("query")
        .get(0);
    assert_eq!(tables, 1, "the migrations ran before /startupz said so");
    drop(db);

    let ready = client::get(svc.addr, "/readyz").expect("readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(state_gauge(&svc, "ready"), 1.0);
    assert_eq!(state_gauge(&svc, "starting"), 0.0);

    // Draining: unready at once, alive all along.
    svc.signal("TERM");
    svc.wait_for_log(
        |v| v["msg"] == "shutdown started: draining",
        Duration::from_secs(5),
    );
    let draining = client::get(svc.addr, "/readyz").expect("readyz while draining");
    assert_eq!(draining.status, 503);
    assert_eq!(draining.json()["status"], "draining");
    assert_eq!(status(svc.addr, "/healthz"), (200, "ok".to_owned()));
    assert_eq!(status(svc.addr, "/startupz").0, 200);
    assert_eq!(state_gauge(&svc, "draining"), 1.0);
    assert_eq!(state_gauge(&svc, "ready"), 0.0);
    assert!(svc.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn start_on_a_current_schema_migrates_on_the_readiness_connection() {
    // A restart (the schema is current) at MAX_CONNECTIONS=1, so the pool
    // opens exactly one connection. Ready does not wait for it: the first
    // request right after ready is answered on it.
    let db = support::TestDb::migrated();
    let svc = Service::start(&[("DATABASE_URL", db.url()), ("MAX_CONNECTIONS", "1")]);
    svc.wait_ready(Duration::from_secs(15));
    let first = client::get(svc.addr, "/api/v1/users/1").expect("first request");
    assert_eq!(first.status, 404, "{}", first.text());

    let logs = svc.logs();
    let migrated = logs
        .iter()
        .find(|l| l["msg"] == "migrations applied")
        .expect("migrations applied logged");
    assert_eq!(migrated["applied"], 0);
    let notices: Vec<_> = svc
        .lines()
        .into_iter()
        .filter(|l| l.contains("NOTICE"))
        .collect();
    assert!(
        notices.is_empty(),
        "a current schema is checked without DDL: {notices:?}"
    );

    // The readiness check kept the connection the migrations ran on: it was
    // opened before "migrations applied" was logged, and no other one was
    // (the outbox worker's own connection, opened once start-up is done, is
    // not part of start-up).
    let mut c = db.client();
    let rows = c
        .query(
            "SELECT application_name, backend_start < $2::text::timestamptz \
             FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
             AND application_name <> 'usersvc-outbox' \
             ORDER BY application_name",
            &[&db.name(), &migrated["time"].as_str().expect("time")],
        )
        .expect("pg_stat_activity");
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        seen.len(),
        2,
        "one pooled + one readiness connection: {seen:?}"
    );
    assert_eq!(seen[0].0, "usersvc");
    assert_eq!(
        seen[1],
        ("usersvc-readiness".to_owned(), true),
        "readiness uses the migration connection: {seen:?}"
    );
}
