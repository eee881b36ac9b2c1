//! The real binary when things go wrong (issue 13): the shutdown deadline
//! drops queued work and writes nothing nobody was told about; queued
//! requests past `QUEUE_TIMEOUT` get 503; a frozen database costs a bounded
//! 503, not a stuck worker; the admin log-level switch keeps one timer.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::client;
use support::service::Service;
use support::{TempCluster, TestDb};

fn start(url: &str, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![("DATABASE_URL", url)];
    env.extend_from_slice(extra);
    let svc = Service::start(&env);
    svc.wait_ready(Duration::from_secs(20));
    svc
}

/// One metric's value from the admin listener (0 when absent).
fn metric(svc: &Service, name: &str) -> f64 {
    let admin = svc.admin.expect("admin listener");
    let text = client::get(admin, "/metrics").expect("metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Statements of `db` waiting for a lock: a worker's, blocked behind the
/// test's `LOCK TABLE`.
fn blocked_on_a_lock(db: &TestDb) -> i64 {
    db.client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .expect("pg_stat_activity")
        .get(0)
}

/// Waits until `cond` holds; panics with `what` at the deadline.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn create(addr: std::net::SocketAddr, email: &str) -> std::io::Result<client::Reply> {
    let body = format!(r#"{{"name":"N","email":"{email}"}}"#);
    client::request(
        addr,
        "POST",
        "/api/v1/users",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

fn busy_workers(svc: &Service) -> usize {
    let admin = svc.admin.expect("admin listener");
    let v = client::get(admin, "/debug/workers")
        .expect("workers")
        .json();
    v["workers"]
        .as_array()
        .map_or(0, |w| w.iter().filter(|w| w["state"] == "busy").count())
}

#[test]
fn shutdown_deadline_drops_queued_jobs_commits_nothing_and_exits_forced() {
    let db = TestDb::new();
    let mut svc = start(
        db.url(),
        &[
            ("WORKERS", "1"),
            ("SHUTDOWN_TIMEOUT", "1s"),
            ("QUEUE_TIMEOUT", "30s"),
        ],
    );
    let mut locker = db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let addr = svc.addr;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(thread::spawn(move || {
            create(addr, &format!("cut{i}@example.com"))
        }));
        if i == 0 {
            // The first one holds the only worker, blocked on the lock.
            wait_until("the worker to be blocked", Duration::from_secs(5), || {
                blocked_on_a_lock(&db) >= 1
            });
        }
    }
    wait_until("four queued requests", Duration::from_secs(5), || {
        metric(&svc, "http_queue_depth") == 4.0
    });

    svc.signal("TERM");
    let summary = svc.wait_for_log(
        |v| {
            v["msg"]
                == "shutdown timeout reached; queued requests dropped, remaining connections cut"
        },
        Duration::from_secs(10),
    );
    // Counted whoever dropped them (the freed worker may take and drop some
    // before the queue is emptied).
    assert_eq!(summary["dropped"], 4, "{summary}");
    // The blocked insert may now go on: its COMMIT must be refused.
    tx.rollback().expect("unlock");
    let status = svc.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(3), "{}", svc.lines().join("\n"));

    // The blocked create was running on the server at the deadline: it is
    // cancelled there (rolled back) and may still be answered 503 before
    // its connection is cut. The queued ones never ran: no answer at all.
    for (i, c) in clients.into_iter().enumerate() {
        let reply = c.join().expect("join");
        match reply {
            Err(_) => {}
            Ok(r) if i == 0 && r.status == 503 => {}
            Ok(r) => panic!(
                "client {i} was told {} {}\n{}",
                r.status,
                r.text(),
                svc.lines().join("\n")
            ),
        }
    }
    let rows: i64 = db
        .client()
        .query_one("SELECT count(*) FROM users WHERE email LIKE 'cut%'", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 0, "nothing written for clients told nothing");
    let logs = svc.logs();
    let dropped = logs
        .iter()
        .filter(|v| {
            v["level"] == "ERROR"
                && v["msg"] == "shutdown deadline: queued request dropped without running it"
        })
        .count();
    assert_eq!(dropped, 4, "{}", svc.lines().join("\n"));
    let last = logs.last().expect("a line");
    assert_eq!(last["msg"], "shutdown complete");
    assert_eq!(last["forced"], true);
}

#[test]
fn queued_requests_older_than_queue_timeout_get_503() {
    let db = TestDb::new();
    // QUEUE_TIMEOUT well above a worker's wake-up on a loaded machine: the
    // first request must be taken before it expires (at 300 ms a CI run
    // under load once saw it expire too).
    let svc = start(db.url(), &[("WORKERS", "1"), ("QUEUE_TIMEOUT", "1s")]);
    let mut locker = db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let addr = svc.addr;
    let first = thread::spawn(move || create(addr, "first@example.com"));
    // The worker must hold the first request before the others are sent:
    // `active_connections` cannot tell (the scrape that reads it is a
    // request too), the database can.
    wait_until("the worker to be blocked", Duration::from_secs(5), || {
        blocked_on_a_lock(&db) >= 1
    });
    let queued: Vec<_> = (0..2)
        .map(|i| thread::spawn(move || create(addr, &format!("late{i}@example.com"))))
        .collect();
    wait_until("two queued", Duration::from_secs(5), || {
        metric(&svc, "http_queue_depth") == 2.0
    });
    thread::sleep(Duration::from_millis(1100));
    tx.rollback().expect("unlock");

    let first = first.join().expect("join").expect("reply");
    assert_eq!(
        first.status,
        201,
        "{}\n{}",
        first.text(),
        svc.lines().join("\n")
    );
    for q in queued {
        let r = q.join().expect("join").expect("reply");
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("Retry-After"), Some("1"));
        assert!(
            r.text().contains("waited more than 1000 ms"),
            "{}",
            r.text()
        );
    }
    assert_eq!(metric(&svc, "http_requests_queue_expired_total"), 2.0);
    let rows: i64 = db
        .client()
        .query_one("SELECT count(*) FROM users WHERE email LIKE 'late%'", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 0, "expired requests did not run");
}

fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads line")
}

#[test]
fn log_level_changes_share_one_timer_thread_and_for_is_capped() {
    let db = TestDb::new();
    let svc = start(db.url(), &[]);
    let admin = svc.admin.expect("admin listener");
    let mut conn = client::Conn::open(admin).expect("connect");
    let put = |conn: &mut client::Conn, path: &str| conn.send("PUT", path, &[], b"").expect("put");
    assert_eq!(
        put(&mut conn, "/debug/log-level?level=debug&for=1h").status,
        200
    );
    let before = threads_of(svc.pid());
    for _ in 0..500 {
        assert_eq!(
            put(&mut conn, "/debug/log-level?level=debug&for=1h").status,
            200
        );
    }
    let after = threads_of(svc.pid());
    assert!(after <= before + 1, "threads {before} -> {after}");

    for absurd in ["5124095576h", "25h"] {
        let r = put(
            &mut conn,
            &format!("/debug/log-level?level=debug&for={absurd}"),
        );
        assert_eq!(r.status, 400, "{absurd}: {}", r.text());
        assert!(r.text().contains("24h"), "the cap is said: {}", r.text());
    }
    let r = put(&mut conn, "/debug/log-level?level=warn&for=24h");
    assert_eq!(r.status, 200);
}

/// The postmaster of `cluster` and its children (the backends).
fn cluster_pids(cluster: &TempCluster) -> Vec<String> {
    let pidfile = std::fs::read_to_string(cluster.dir().join("data/postmaster.pid")).expect("pid");
    let postmaster = pidfile
        .lines()
        .next()
        .expect("first line")
        .trim()
        .to_owned();
    let mut pids = vec![postmaster.clone()];
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        if after.split_whitespace().nth(1) == Some(postmaster.as_str()) {
            pids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    pids
}

/// Stops the postmaster first (so that it forks no new backend), then every
/// child, until no unstopped child is left; returns every pid stopped.
fn freeze(cluster: &TempCluster) -> Vec<String> {
    let mut stopped: Vec<String> = Vec::new();
    loop {
        let fresh: Vec<String> = cluster_pids(cluster)
            .into_iter()
            .filter(|p| !stopped.contains(p))
            .collect();
        if fresh.is_empty() {
            return stopped;
        }
        signal_all(&fresh, "STOP");
        stopped.extend(fresh);
    }
}

fn signal_all(pids: &[String], sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids)
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig}");
}

#[test]
fn frozen_database_gives_bounded_503s_frees_workers_and_recovers() {
    let cluster = TempCluster::start_new();
    let url = cluster.url();
    let svc = start(
        &url,
        &[
            ("WORKERS", "2"),
            ("MAX_CONNECTIONS", "2"),
            ("DB_ACQUIRE_TIMEOUT", "1s"),
            ("DB_STATEMENT_TIMEOUT", "2s"),
            ("QUEUE_TIMEOUT", "10s"),
        ],
    );
    let created = create(svc.addr, "frozen@example.com").expect("create");
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].to_string();
    let path = format!("/api/v1/users/{}", id.trim_matches('"'));
    assert_eq!(client::get(svc.addr, &path).expect("get").status, 200);

    let pids = freeze(&cluster);
    let bound = Duration::from_secs(1 + 2 + 1);
    let addr = svc.addr;
    let gets: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            thread::spawn(move || {
                let t = Instant::now();
                (client::get(addr, &path), t.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for g in gets {
        let (reply, took) = g.join().expect("join");
        answers.push((reply.map(|r| r.status).ok(), took));
    }
    // Thaw before asserting, so that a failure leaves no stopped server. A
    // worker marks itself idle just after its answer is written: allow it a
    // moment.
    let settle = Instant::now() + Duration::from_secs(1);
    let mut busy_while_frozen = busy_workers(&svc);
    while busy_while_frozen > 0 && Instant::now() < settle {
        thread::sleep(Duration::from_millis(20));
        busy_while_frozen = busy_workers(&svc);
    }
    signal_all(&pids, "CONT");
    let thawed = Instant::now();
    for (status, took) in &answers {
        assert_eq!(
            *status,
            Some(503),
            "{answers:?}\n{}",
            svc.lines().join("\n")
        );
        assert!(*took <= bound, "{took:?} > {bound:?}");
    }
    assert_eq!(busy_while_frozen, 0, "every worker was freed");
    wait_until("full service after SIGCONT", Duration::from_secs(2), || {
        client::get(addr, &path).map(|r| r.status).ok() == Some(200)
    });
    assert!(thawed.elapsed() < Duration::from_secs(2));
    for _ in 0..10 {
        assert_eq!(client::get(addr, &path).expect("get").status, 200);
    }
}

/// A write cut by its deadline while the database is frozen is answered 503
/// and is NOT applied when the database thaws: the thawed backend finds the
/// statement in its socket buffer and runs it, and the write fence
/// (`usersvc_apply_by`, migration 000006) refuses it. Without the fence the
/// create, the update and the delete below were each applied after their
/// clients had been told 503.
#[test]
fn writes_cut_while_the_database_is_frozen_are_not_applied_when_it_thaws() {
    let cluster = TempCluster::start_new();
    let url = cluster.url();
    // One worker, one connection: the write below runs on the connection
    // the warm-up prepared its statements on, so the frozen backend holds
    // the Bind/Execute itself, not only a Parse.
    let svc = start(
        &url,
        &[
            ("WORKERS", "1"),
            ("MAX_CONNECTIONS", "1"),
            ("DB_ACQUIRE_TIMEOUT", "1s"),
            ("DB_STATEMENT_TIMEOUT", "1s"),
            ("QUEUE_TIMEOUT", "10s"),
        ],
    );
    let addr = svc.addr;
    let id_of = |r: client::Reply| -> i64 {
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_i64().expect("id")
    };
    let send = |method: &str, path: &str, body: &str| {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        client::request(addr, method, path, headers, body.as_bytes()).map(|r| r.status)
    };
    let kept = id_of(create(addr, "kept@example.com").expect("create"));
    let doomed = id_of(create(addr, "doomed@example.com").expect("create"));
    let late_create = (
        "POST",
        "/api/v1/users".to_owned(),
        r#"{"name":"N","email":"late@example.com"}"#,
    );
    let late_update = (
        "PATCH",
        format!("/api/v1/users/{kept}"),
        r#"{"name":"Renamed"}"#,
    );
    let late_delete = ("DELETE", format!("/api/v1/users/{doomed}"), "");
    for (round, (method, path, body)) in [late_create, late_update, late_delete]
        .into_iter()
        .enumerate()
    {
        // Prepare the create, update and delete statements on the pool's
        // one connection (after a cut it is a new one).
        let warm = id_of(create(addr, &format!("warm{round}@example.com")).expect("create"));
        let warm_path = format!("/api/v1/users/{warm}");
        assert_eq!(
            send("PATCH", &warm_path, r#"{"name":"W"}"#).expect("patch"),
            200
        );
        assert_eq!(send("DELETE", &warm_path, "").expect("delete"), 204);

        let pids = freeze(&cluster);
        let status = send(method, &path, body);
        signal_all(&pids, "CONT");
        assert_eq!(status.ok(), Some(503), "{method} {path}");
        wait_until("full service after SIGCONT", Duration::from_secs(5), || {
            client::get(addr, "/api/v1/users?limit=1")
                .map(|r| r.status)
                .ok()
                == Some(200)
        });
    }
    // Each write was on the wire when the database froze: each call was cut
    // at its deadline, so the thawed backend did receive it.
    let cuts = svc
        .lines()
        .iter()
        .filter(|l| l.contains("passed its deadline; its connection was cut"))
        .count();
    assert_eq!(cuts, 3, "{}", svc.lines().join("\n"));

    // Give the thawed backends a moment to run what they held, then look.
    thread::sleep(Duration::from_millis(500));
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let users: Vec<(i64, String, String)> = db
        .query(
            "SELECT id, name, email FROM users WHERE email NOT LIKE 'warm%' ORDER BY id",
            &[],
        )
        .expect("users")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        users,
        vec![
            (kept, "N".to_owned(), "kept@example.com".to_owned()),
            (doomed, "N".to_owned(), "doomed@example.com".to_owned()),
        ],
        "a write answered 503 was applied after the thaw"
    );
    let events: i64 = db
        .query_one(
            "SELECT count(*) FROM events WHERE payload->>'email' NOT LIKE 'warm%'",
            &[],
        )
        .expect("events")
        .get(0);
    assert_eq!(events, 2, "only the two creates wrote events");
}
