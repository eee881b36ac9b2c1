//! DbPool behaviour when the database misbehaves: stopped, restarted, backends
//! killed, slow statements; plus the metrics hook and password redaction.
//! Tests that stop or kill the server use a private `TempCluster`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{TempCluster, TestDb};
use usersvc::db::{connect, AcquireOutcome, DbError, DbPool, DbPoolObserver, DbPoolSettings};

fn quick(max_connections: u32, acquire_timeout: Duration) -> DbPoolSettings {
    DbPoolSettings {
        max_connections,
        conn_max_lifetime: Duration::from_secs(300),
        acquire_timeout,
        statement_timeout: Duration::from_secs(5),
    }
}

fn select_one(pool: &DbPool) -> Result<i32, DbError> {
    pool.read(|db| db.query_one("SELECT 1::int4", &[]).map(|r| r.get(0)))
}

/// Waits (bounded) until the pool has opened at least `n` connections.
fn wait_for_connections(pool: &DbPool, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.state().connections < n {
        assert!(
            Instant::now() < deadline,
            "pool never reached {n} connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(Duration, AcquireOutcome)>>);

impl DbPoolObserver for Recorder {
    fn acquire_finished(&self, waited: Duration, outcome: AcquireOutcome) {
        if let Ok(mut v) = self.0.lock() {
            v.push((waited, outcome));
        }
    }
}

#[test]
fn stopped_database_gives_unavailable_within_the_timeout_and_the_same_pool_recovers() {
    let cluster = TempCluster::start_new();
    let timeout = Duration::from_millis(1000);
    let recorder = Arc::new(Recorder::default());
    let pool = DbPool::build_with_observer(&cluster.url(), &quick(4, timeout), recorder.clone())
        .expect("pool");
    assert_eq!(select_one(&pool).expect("up"), 1);
    wait_for_connections(&pool, 2);

    cluster.stop();
    for _ in 0..2 {
        let start = Instant::now();
        let err = select_one(&pool).expect_err("database is down");
        let took = start.elapsed();
        assert!(matches!(err, DbError::Unavailable(_)), "{err}");
        assert!(
            took <= timeout + Duration::from_millis(500),
            "took {took:?}, limit {timeout:?}"
        );
    }
    let timeouts = recorder
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, o)| *o == AcquireOutcome::TimedOut)
        .count();
    assert!(timeouts >= 2, "the observer saw the timeouts");

    cluster.start();
    assert_eq!(select_one(&pool).expect("the next call succeeds"), 1);
}

#[test]
fn pool_built_while_the_database_is_down_starts_at_once_and_works_later() {
    let cluster = TempCluster::start_new();
    cluster.stop();
    let start = Instant::now();
    let pool = DbPool::build(&cluster.url(), &quick(2, Duration::from_millis(500))).expect("pool");
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "build did not block"
    );
    assert!(matches!(pool.acquire(), Err(DbError::Unavailable(_))));
    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match select_one(&pool) {
            Ok(1) => break,
            other => assert!(Instant::now() < deadline, "never recovered: {other:?}"),
        }
    }
}

#[test]
fn terminated_backends_cost_no_failed_request() {
    let cluster = TempCluster::start_new();
    let recorder = Arc::new(Recorder::default());
    let pool = DbPool::build_with_observer(
        &cluster.url(),
        &quick(4, Duration::from_secs(2)),
        recorder.clone(),
    )
    .expect("pool");
    let acquires = || recorder.0.lock().expect("lock").len();
    // The schema: a transaction's COMMIT is fenced by its function.
    let mut setup = connect(&cluster.url(), Duration::from_secs(2)).expect("setup");
    usersvc::db::migrate::up(&mut setup).expect("migrations apply");
    setup
        .batch_execute("CREATE TABLE t (v int)")
        .expect("setup");
    wait_for_connections(&pool, 2);

    let kill_all = || {
        let mut admin = connect(&cluster.url(), Duration::from_secs(2)).expect("admin");
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = 'usersvc'",
                &[],
            )
            .expect("terminate")
            .get(0);
        assert!(killed >= 1, "killed {killed}");
    };

    kill_all();
    let before = acquires();
    assert_eq!(select_one(&pool).expect("first read after kill"), 1);
    assert!(
        acquires() >= before + 2,
        "the dead connection was detected and the read retried"
    );
    for _ in 0..5 {
        assert_eq!(select_one(&pool).expect("read after kill"), 1);
    }
    kill_all();
    for i in 0..6 {
        pool.write(|db| db.execute("INSERT INTO t VALUES ($1)", &[&i]))
            .expect("write after kill");
    }
    let n: i64 = pool
        .read(|db| {
            db.query_one("SELECT count(*) FROM t", &[])
                .map(|r| r.get(0))
        })
        .expect("count");
    assert_eq!(n, 6, "each retried write applied exactly once");
}

#[test]
fn statement_timeout_is_set_on_every_connection() {
    let db = TestDb::new();
    let settings = DbPoolSettings {
        statement_timeout: Duration::from_millis(300),
        ..quick(2, Duration::from_secs(2))
    };
    let pool = DbPool::build(db.url(), &settings).expect("pool");
    let shown: String = pool
        .read(|db| {
            db.query_one("SHOW statement_timeout", &[])
                .map(|r| r.get(0))
        })
        .expect("show");
    assert_eq!(shown, "300ms");
    let start = Instant::now();
    let err = pool
        .read(|db| db.execute("SELECT pg_sleep(5)", &[]))
        .expect_err("cancelled");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, DbError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("57014"), "{err}");
    assert_eq!(select_one(&pool).expect("connection still usable"), 1);
}

#[test]
fn acquire_durations_are_reported() {
    let db = TestDb::new();
    let recorder = Arc::new(Recorder::default());
    let pool = DbPool::build_with_observer(
        db.url(),
        &quick(2, Duration::from_secs(2)),
        recorder.clone(),
    )
    .expect("pool");
    for _ in 0..3 {
        select_one(&pool).expect("query");
    }
    let seen = recorder.0.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|(d, o)| *o == AcquireOutcome::Acquired && *d < Duration::from_secs(2)));
}

#[test]
fn no_error_shows_the_password() {
    const SECRET: &str = "Sup3r-Secret-pw";
    let cluster = TempCluster::start_new();
    let port = cluster.port();

    // A server-side refusal (no such database), straight from the driver.
    let url = format!("postgres://postgres:{SECRET}@127.0.0.1:{port}/no_such_db?sslmode=disable");
    let raw = url
        .parse::<postgres::Config>()
        .expect("driver parses")
        .connect(postgres::NoTls)
        .err()
        .expect("no such database");
    let shown = format!("{raw} {raw:?} {}", usersvc::db::error::chain(&raw));
    assert!(!shown.contains(SECRET), "{shown}");
    // Through our own connect and pool.
    let ours = connect(&url, Duration::from_secs(2))
        .err()
        .expect("no such database");
    let shown = format!("{ours} {ours:?}");
    assert!(shown.contains("no_such_db"), "useful: {shown}");
    assert!(!shown.contains(SECRET), "{shown}");

    cluster.stop();
    let url = format!("postgres://postgres:{SECRET}@127.0.0.1:{port}/postgres");
    let pool = DbPool::build(&url, &quick(1, Duration::from_millis(300))).expect("pool");
    let err = select_one(&pool).expect_err("down");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("error connecting"), "useful: {shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    let direct = connect(&url, Duration::from_millis(300))
        .err()
        .expect("down");
    let shown = format!("{direct} {direct:?}");
    assert!(!shown.contains(SECRET), "{shown}");
}

#[test]
fn a_prepared_pool_connects_nothing_until_opened() {
    let db = TestDb::migrated();
    let sessions = || -> i64 {
        db.client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'usersvc'",
                &[&db.name()],
            )
            .expect("count")
            .get(0)
    };
    let recorder = Arc::new(Recorder::default());
    let pool = DbPool::prepare(
        db.url(),
        &quick(4, Duration::from_secs(2)),
        recorder.clone(),
    )
    .expect("prepare");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sessions(), 0, "prepare opened a connection");
    assert_eq!(pool.state().connections, 0);
    // Before open, an acquire waits for the pool within its acquire
    // timeout (2 s here), then gives up.
    let started = Instant::now();
    match select_one(&pool) {
        Err(DbError::Unavailable(m)) => assert!(m.contains("not open"), "{m}"),
        other => panic!("expected Unavailable before open, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1_900),
        "gave up before the acquire timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(sessions(), 0, "a refused acquire opened a connection");

    // One that is waiting when the pool opens is served.
    let waiting = {
        let pool = pool.clone();
        std::thread::spawn(move || select_one(&pool))
    };
    pool.open();
    pool.open(); // idempotent
    assert_eq!(waiting.join().expect("join").expect("served once open"), 1);
    assert_eq!(select_one(&pool).expect("after open"), 1);
    wait_for_connections(&pool, 2); // min idle = 4 / 2
    assert_eq!(pool.state().max, 4);
    assert!(sessions() >= 2);
}
