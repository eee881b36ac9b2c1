//! The Redis read-through cache against a real Redis and PostgreSQL: hits
//! and misses as a client and `/metrics` see them, invalidation racing
//! concurrent readers, and Redis stopped and started under load (a private
//! `redis-server`, never the shared one).

mod metrics_common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::client::{self, Conn};
use support::redis::{shared_url, unique_prefix, PrivateRedis};
use support::service::Service;
use support::TestDb;
use usersvc::cache::{
    BreakerPolicy, CacheObserver, CacheSettings, CachedUserRepository, Lookup, RedisPool, Timeouts,
    UserCache,
};
use usersvc::config::RedisUrl;
use usersvc::users::{CreateUser, PatchUser, PgUserRepository, UserError, UserService};

fn start(db: &TestDb, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![("DATABASE_URL", db.url())];
    env.extend_from_slice(extra);
    let svc = Service::start(&env);
    svc.wait_ready(Duration::from_secs(20));
    svc
}

fn create(conn: &mut Conn, name: &str, email: &str) -> i64 {
    let body = serde_json::json!({ "name": name, "email": email }).to_string();
    let r = conn
        .send(
            "POST",
            "/api/v1/users",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .expect("create");
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_i64().expect("id")
}

fn cache_count(text: &str, result: &str) -> f64 {
    metrics_common::value(text, "cache_requests_total", &[("result", result)])
}

#[test]
fn reads_hit_after_a_miss_and_writes_are_seen_at_once() {
    let db = TestDb::new();
    let prefix = unique_prefix();
    let redis = shared_url();
    let svc = start(&db, &[("REDIS_URL", &redis), ("CACHE_KEY_PREFIX", &prefix)]);
    let ready = client::get(svc.addr, "/readyz").expect("readyz");
    assert_eq!(ready.json()["checks"]["redis"], "ok", "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");

    let mut conn = Conn::open(svc.addr).expect("connect");
    let id = create(&mut conn, "Ada", "ada@example.com");
    let path = format!("/api/v1/users/{id}");
    let first = conn.send("GET", &path, &[], b"").expect("get");
    let second = conn.send("GET", &path, &[], b"").expect("get");
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.body, second.body, "a hit answers the same bytes");
    let text = metrics_common::scrape_until(&svc, |t| cache_count(t, "hit") == 1.0);
    assert_eq!(
        (cache_count(&text, "miss"), cache_count(&text, "hit")),
        (1.0, 1.0)
    );
    assert_eq!(cache_count(&text, "error"), 0.0);

    // The key is versioned and under the prefix.
    let mut r = redis::Client::open(redis.as_str())
        .and_then(|c| c.get_connection())
        .expect("redis");
    let key = format!("{prefix}:v1:user:{{{id}}}");
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut r).expect("pttl");
    assert!(ttl > 50_000 && ttl <= 60_000, "CACHE_TTL 60s: {ttl}");

    let patched = conn
        .send(
            "PATCH",
            &path,
            &[("Content-Type", "application/json")],
            br#"{"name":"Ada L."}"#,
        )
        .expect("patch");
    assert_eq!(patched.status, 200);
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query(&mut r)
        .expect("exists");
    assert!(!exists, "invalidated before the PATCH was answered");
    let after = conn.send("GET", &path, &[], b"").expect("get");
    assert_eq!(after.body, patched.body);
    assert_eq!(
        conn.send("DELETE", &path, &[], b"").expect("delete").status,
        204
    );
    assert_eq!(conn.send("GET", &path, &[], b"").expect("get").status, 404);
}

#[test]
fn redis_down_at_start_is_degraded_not_unready() {
    let db = TestDb::new();
    let port = support::redis::free_port();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{port}");
    let svc = start(
        &db,
        &[("REDIS_URL", &url), ("CACHE_KEY_PREFIX", &unique_prefix())],
    );
    let ready = client::get(svc.addr, "/readyz").expect("readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "degraded");
    let reason = ready.json()["checks"]["redis"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.starts_with("connect: "), "{reason}");
    let mut conn = Conn::open(svc.addr).expect("connect");
    let id = create(&mut conn, "Bo", "bo@example.com");
    let got = conn
        .send("GET", &format!("/api/v1/users/{id}"), &[], b"")
        .expect("get");
    assert_eq!(got.status, 200);
    let text = metrics_common::scrape_until(&svc, |t| cache_count(t, "error") >= 1.0);
    assert!(cache_count(&text, "error") >= 1.0);
    assert!(
        !svc.lines().join("\n").contains("s3cret-pw"),
        "no secret in any line"
    );
}

struct Counting(AtomicUsize, AtomicUsize);
impl CacheObserver for Counting {
    fn lookup(&self, result: Lookup) {
        match result {
            Lookup::Hit => self.0.fetch_add(1, Ordering::Relaxed),
            _ => self.1.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Writers update and finally delete their user, recording each version
/// once it is acknowledged; readers read the same ids all along. A read may
/// never return a version older than the last one acknowledged before it
/// started.
#[test]
fn concurrent_readers_never_see_a_value_older_than_the_last_acknowledged_write() {
    let db = TestDb::migrated();
    let pool = support::pool(db.url(), 8);
    let url = RedisUrl::parse(&shared_url()).expect("redis url");
    let redis = RedisPool::new(&url, 8, Timeouts::default()).expect("redis pool");
    let counts = Arc::new(Counting(AtomicUsize::new(0), AtomicUsize::new(0)));
    let cache = Arc::new(UserCache::new(
        redis,
        CacheSettings {
            ttl: Duration::from_secs(60),
            prefix: unique_prefix(),
            breaker: BreakerPolicy::default(),
        },
        counts.clone(),
    ));
    let repo = CachedUserRepository::new(Arc::new(PgUserRepository::new(pool)), cache);
    let service = Arc::new(UserService::new(Arc::new(repo)));

    const USERS: usize = 4;
    const VERSIONS: i64 = 120;
    const DELETED: i64 = i64::MAX;
    let ids: Vec<i64> = (0..USERS)
        .map(|i| {
            service
                .create(&CreateUser {
                    name: Some("v0".into()),
                    email: Some(format!("race{i}@example.com")),
                })
                .expect("create")
                .id
        })
        .collect();
    let acked: Arc<Vec<AtomicI64>> = Arc::new((0..USERS).map(|_| AtomicI64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let reads = Arc::new(AtomicUsize::new(0));

    let readers: Vec<_> = (0..6)
        .map(|r| {
            let (service, acked, done, violations, reads, ids) = (
                Arc::clone(&service),
                Arc::clone(&acked),
                Arc::clone(&done),
                Arc::clone(&violations),
                Arc::clone(&reads),
                ids.clone(),
            );
            thread::spawn(move || {
                let mut n = r;
                while !done.load(Ordering::SeqCst) {
                    n = (n + 1) % USERS;
                    let floor = acked[n].load(Ordering::SeqCst);
                    let seen = match service.get(ids[n]) {
                        Ok(u) => u
                            .name
                            .trim_start_matches('v')
                            .parse::<i64>()
                            .expect("version"),
                        Err(UserError::NotFound) => DELETED,
                        Err(e) => panic!("read failed: {e}"),
                    };
                    reads.fetch_add(1, Ordering::Relaxed);
                    if seen < floor {
                        violations.lock().expect("lock").push((ids[n], floor, seen));
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..USERS)
        .map(|n| {
            let (service, acked, id) = (Arc::clone(&service), Arc::clone(&acked), ids[n]);
            thread::spawn(move || {
                for v in 1..=VERSIONS {
                    let patch = PatchUser {
                        name: Some(format!("v{v}")),
                        ..PatchUser::default()
                    };
                    service.patch(id, &patch).expect("patch");
                    acked[n].store(v, Ordering::SeqCst);
                }
                service.delete(id).expect("delete");
                acked[n].store(DELETED, Ordering::SeqCst);
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    // Readers go on a little after the last acknowledged delete.
    let until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().expect("reader");
    }
    let violations = violations.lock().expect("lock").clone();
    assert!(
        violations.is_empty(),
        "stale reads (id, acked, seen): {violations:?}"
    );
    let hits = counts.0.load(Ordering::Relaxed);
    eprintln!(
        "{} reads, {hits} cache hits, {} misses/errors",
        reads.load(Ordering::Relaxed),
        counts.1.load(Ordering::Relaxed)
    );
    assert!(hits > 0, "the cache was used");
}

#[test]
fn redis_stopped_mid_load_costs_nothing_and_hits_resume_when_it_returns() {
    let db = TestDb::new();
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let svc = start(
        &db,
        &[
            ("REDIS_URL", &url),
            ("CACHE_KEY_PREFIX", &unique_prefix()),
            ("MAX_CONNECTIONS", "4"),
        ],
    );
    let mut conn = Conn::open(svc.addr).expect("connect");
    let ids: Vec<i64> = (0..10)
        .map(|i| create(&mut conn, "L", &format!("load{i}@example.com")))
        .collect();

    #[derive(Clone, Copy, PartialEq)]
    enum Phase {
        Up,
        Down,
        Back,
    }
    let phase = Arc::new(Mutex::new(Phase::Up));
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(Phase, u16, Duration)>>> = Arc::default();
    let addr = svc.addr;
    let load: Vec<_> = (0..3)
        .map(|t| {
            let (phase, stop, samples, ids) = (
                Arc::clone(&phase),
                Arc::clone(&stop),
                Arc::clone(&samples),
                ids.clone(),
            );
            thread::spawn(move || {
                let mut conn = Conn::open(addr).expect("connect");
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    n = (n + 1) % ids.len();
                    let p = *phase.lock().expect("lock");
                    let t0 = Instant::now();
                    let status = conn
                        .send("GET", &format!("/api/v1/users/{}", ids[n]), &[], b"")
                        .map_or(0, |r| r.status);
                    samples
                        .lock()
                        .expect("lock")
                        .push((p, status, t0.elapsed()));
                    thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();

    let text = metrics_common::scrape_until(&svc, |t| cache_count(t, "hit") >= 20.0);
    assert!(cache_count(&text, "hit") >= 20.0, "hits while Redis is up");

    redis.stop();
    *phase.lock().expect("lock") = Phase::Down;
    let deadline = Instant::now() + Duration::from_secs(5);
    let degraded = loop {
        let r = client::get(svc.addr, "/readyz").expect("readyz");
        assert_eq!(r.status, 200, "never 503 for Redis: {}", r.text());
        if r.json()["status"] == "degraded" {
            break r.json();
        }
        assert!(Instant::now() < deadline, "not degraded: {}", r.text());
        thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(degraded["checks"]["redis"], "ok");
    assert_eq!(degraded["checks"]["database"], "ok");
    thread::sleep(Duration::from_millis(1000));
    let down = metrics_common::scrape(&svc);

    redis.restart();
    *phase.lock().expect("lock") = Phase::Back;
    let resumed =
        metrics_common::scrape_until(&svc, |t| cache_count(t, "hit") > cache_count(&down, "hit"));
    assert!(
        cache_count(&resumed, "hit") > cache_count(&down, "hit"),
        "hits resume without a restart"
    );
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.join().expect("load thread");
    }

    let samples = samples.lock().expect("lock").clone();
    assert!(samples.iter().all(|(_, s, _)| *s == 200), "every GET 200");
    let mut down_lat: Vec<Duration> = samples
        .iter()
        .filter(|(p, ..)| *p == Phase::Down)
        .map(|(.., d)| *d)
        .collect();
    down_lat.sort();
    assert!(
        down_lat.len() >= 50,
        "{} requests while Redis was down",
        down_lat.len()
    );
    let p99 = down_lat[(down_lat.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "while Redis was down: {} GETs, p99 {p99:?}, max {:?}; cache errors {}",
        down_lat.len(),
        down_lat.last().copied().unwrap_or_default(),
        cache_count(&down, "error")
    );
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    assert!(cache_count(&down, "error") >= 1.0);
    // Logged, but rate-limited: not one line per request.
    let warned = svc
        .logs()
        .iter()
        .filter(|v| v["target"] == "usersvc::cache" && v["level"] == "WARN")
        .count();
    assert!((1..=3).contains(&warned), "{warned} cache warnings");
}

/// `rediss://` really is TLS, verified against the web PKI roots: a server
/// whose certificate no public CA signed is refused (degraded, with the
/// reason), and so is plaintext to a TLS port.
#[test]
fn rediss_speaks_verified_tls() {
    let pki = support::certs::generate(&["127.0.0.1", "localhost"]);
    let dir = std::env::temp_dir().join(format!("usersvc-redis-tls-{}", unique_prefix()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, format!("{}{}", pki.leaf_pem, pki.ca_pem)).expect("cert");
    std::fs::write(&key, &pki.leaf_key_pem).expect("key");
    let redis = PrivateRedis::start_tls(&cert, &key);
    let db = TestDb::new();
    for (url, needle) in [
        (format!("rediss://127.0.0.1:{}", redis.port), "certificate"),
        (format!("redis://127.0.0.1:{}", redis.port), ""),
    ] {
        let svc = start(
            &db,
            &[("REDIS_URL", &url), ("CACHE_KEY_PREFIX", &unique_prefix())],
        );
        let ready = client::get(svc.addr, "/readyz").expect("readyz");
        assert_eq!(ready.status, 200, "{}", ready.text());
        assert_eq!(
            ready.json()["status"],
            "degraded",
            "{url}: {}",
            ready.text()
        );
        let reason = ready.json()["checks"]["redis"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(reason.contains(needle), "{url}: {reason}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
