//! Readiness against a real PostgreSQL that goes away: stopped, hung, and
//! back — and a probe storm that must not become a ping storm. Liveness
//! never looks at the database.
//!
//! The stop/hang tests use a private `TempCluster`, never the shared server.

mod metrics_common;
mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use metrics_common::{scrape, value};
use support::client::{self, Conn, Reply};
use support::service::Service;
use support::{TempCluster, TestDb};

/// SPEC: readiness reports a dead database within 3 s.
const DETECT_WITHIN: Duration = Duration::from_secs(3);

fn readyz(addr: SocketAddr) -> (Reply, Duration) {
    let t = Instant::now();
    let r = client::get(addr, "/readyz").expect("readyz answers");
    (r, t.elapsed())
}

fn assert_healthy(addr: SocketAddr) {
    let t = Instant::now();
    let r = client::get(addr, "/healthz").expect("healthz answers");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    // Well under the 2 s database check timeout: liveness never waits for it
    // (the margin is for a loaded machine).
    assert!(
        t.elapsed() < Duration::from_millis(1_500),
        "healthz took {:?}",
        t.elapsed()
    );
}

/// Polls `/readyz` until `want` (status code), asserting liveness all along;
/// returns the reply and how long it took.
fn wait_for_readyz(svc: &Service, want: u16, within: Duration) -> (Reply, Duration) {
    let t = Instant::now();
    loop {
        let (r, _) = readyz(svc.addr);
        assert_healthy(svc.addr);
        if r.status == want {
            return (r, t.elapsed());
        }
        assert!(
            t.elapsed() < within,
            "/readyz not {want} within {within:?}; last: {} {}",
            r.status,
            r.text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn assert_unavailable(r: &Reply) -> String {
    assert_eq!(r.status, 503, "{}", r.text());
    let body = r.json();
    assert_eq!(body["status"], "unavailable", "{body}");
    let reason = body["checks"]["database"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!reason.is_empty() && reason != "ok", "a reason: {body}");
    reason
}

fn assert_ready(r: &Reply) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "ready", "checks": {"database": "ok"}})
    );
}

fn start_on(cluster: &TempCluster) -> Service {
    let url = cluster.url();
    let svc = Service::start(&[("DATABASE_URL", url.as_str())]);
    svc.wait_ready(Duration::from_secs(30));
    svc
}

#[test]
fn readiness_follows_a_stopped_database_and_recovers_without_a_restart() {
    let cluster = TempCluster::start_new();
    let svc = start_on(&cluster);
    let (r, _) = readyz(svc.addr);
    assert_ready(&r);

    cluster.stop();
    let (r, took) = wait_for_readyz(&svc, 503, DETECT_WITHIN);
    let reason = assert_unavailable(&r);
    eprintln!("database stopped: 503 after {took:?}: {reason}");

    // While it stays down every probe says so, quickly, with a reason; the
    // API answers 503 too; liveness holds.
    let mut reasons = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let (r, took) = readyz(svc.addr);
        let reason = assert_unavailable(&r);
        assert!(took < Duration::from_millis(2_500), "{took:?}: {reason}");
        reasons.insert(reason);
        assert_healthy(svc.addr);
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("reasons while down: {reasons:#?}");
    let text = scrape(&svc);
    assert_eq!(
        value(
            &text,
            "readiness_dependency_up",
            &[("dependency", "database")]
        ),
        0.0
    );
    assert!(value(&text, "readiness_checks_total", &[("result", "error")]) >= 1.0);

    cluster.start();
    let (r, took) = wait_for_readyz(&svc, 200, Duration::from_secs(10));
    assert_ready(&r);
    eprintln!("database started: 200 after {took:?}");
    let api = client::get(svc.addr, "/api/v1/users/1").expect("API");
    assert_eq!(
        api.status,
        404,
        "the API reads the database again: {}",
        api.text()
    );
    let text = scrape(&svc);
    assert_eq!(
        value(
            &text,
            "readiness_dependency_up",
            &[("dependency", "database")]
        ),
        1.0
    );
    assert_eq!(
        svc.logs()
            .iter()
            .filter(|l| l["msg"] == "listening")
            .count(),
        1,
        "the process was not restarted"
    );
}

/// Every process of a cluster: the postmaster (first line of
/// `postmaster.pid`) and its children.
fn cluster_pids(cluster: &TempCluster) -> Vec<u32> {
    let pidfile =
        std::fs::read_to_string(cluster.dir().join("data/postmaster.pid")).expect("postmaster.pid");
    let postmaster: u32 = pidfile
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid");
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // /proc/PID/stat: `pid (comm) state ppid ...`; comm may hold spaces.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

fn signal_all(pids: &[u32], sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pids:?}");
}

/// Freezes a cluster (SIGSTOP): connections stay open, nothing answers —
/// a hung database. Thawed (SIGCONT) when dropped, so the cluster can stop.
struct Frozen(Vec<u32>);

impl Frozen {
    fn freeze(cluster: &TempCluster) -> Frozen {
        let pids = cluster_pids(cluster);
        signal_all(&pids, "STOP");
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .args(self.0.iter().map(u32::to_string))
            .status();
    }
}

#[test]
fn a_hung_database_does_not_hang_the_probe() {
    let cluster = TempCluster::start_new();
    let svc = start_on(&cluster);
    let (r, _) = readyz(svc.addr);
    assert_ready(&r);
    // Let the cached "ok" expire so that the next probe pings the frozen server.
    thread::sleep(Duration::from_millis(600));

    let frozen = Frozen::freeze(&cluster);
    // Probes never wait for the ping (they are answered on the HTTP I/O
    // thread): the last result until the ping is 2 s overdue, then 503.
    let (r, took) = wait_for_readyz(&svc, 503, Duration::from_millis(3_500));
    let reason = assert_unavailable(&r);
    eprintln!("database frozen: 503 after {took:?}: {reason}");
    assert!(reason.contains("no answer within 2s"), "{reason}");
    assert_healthy(svc.addr);

    // Later probes answer the known failure at once, and concurrent ones do
    // not start pings of their own.
    let pings_before = value(&scrape(&svc), "readiness_checks_total", &[]);
    let addr = svc.addr;
    let probes: Vec<_> = (0..20)
        .map(|_| thread::spawn(move || readyz(addr)))
        .collect();
    for p in probes {
        let (r, took) = p.join().expect("probe");
        assert_unavailable(&r);
        assert!(took < Duration::from_millis(2_500), "{took:?}");
    }
    let mut slow = 0;
    for _ in 0..10 {
        let (r, took) = readyz(svc.addr);
        assert_unavailable(&r);
        if took > Duration::from_millis(1_000) {
            slow += 1;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        slow <= 1,
        "{slow} of 10 probes took over 1 s while the database hung"
    );
    let pings = value(&scrape(&svc), "readiness_checks_total", &[]) - pings_before;
    assert!(pings <= 4.0, "{pings} pings finished in ~2 s of probing");

    drop(frozen);
    let (r, took) = wait_for_readyz(&svc, 200, Duration::from_secs(15));
    assert_ready(&r);
    eprintln!("database thawed: 200 after {took:?}");
}

#[test]
fn two_hundred_concurrent_probes_share_a_handful_of_pings() {
    let db = TestDb::new();
    let svc = Service::start(&[("DATABASE_URL", db.url())]);
    svc.wait_ready(Duration::from_secs(20));
    // Past the reuse window of the last result: the burst must ping afresh.
    thread::sleep(Duration::from_millis(600));
    let pings = |svc: &Service| {
        value(
            &scrape(svc),
            "readiness_checks_total",
            &[("dependency", "database")],
        )
    };
    let before = pings(&svc);

    const PROBES: usize = 200;
    let barrier = Arc::new(Barrier::new(PROBES));
    let addr = svc.addr;
    let probes: Vec<_> = (0..PROBES)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut c = Conn::open(addr).expect("connect");
                barrier.wait();
                let t = Instant::now();
                let r = c.send("GET", "/readyz", &[], b"").expect("readyz");
                (r.status, t.elapsed(), Instant::now())
            })
        })
        .collect();
    let results: Vec<_> = probes
        .into_iter()
        .map(|p| p.join().expect("probe"))
        .collect();
    let after = pings(&svc);

    assert!(
        results.iter().all(|(s, _, _)| *s == 200),
        "every probe ready"
    );
    let slowest = results.iter().map(|(_, t, _)| *t).max().unwrap_or_default();
    let first = results
        .iter()
        .map(|(_, t, end)| *end - *t)
        .min()
        .expect("some");
    let last = results.iter().map(|(_, _, end)| *end).max().expect("some");
    let burst = last - first;
    let pinged = after - before;
    eprintln!(
        "{PROBES} concurrent /readyz: {pinged} database ping(s); burst {burst:?}, slowest {slowest:?}"
    );
    assert!(pinged >= 1.0, "the burst checked the database");
    // One ping per reuse window (500 ms) at most, whatever the concurrency.
    let windows = (burst.as_millis() / 500 + 1) as f64;
    assert!(pinged <= windows, "{pinged} pings for a {burst:?} burst");
}
