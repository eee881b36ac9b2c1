//! A COMMIT whose answer is lost (the backend terminated while committing)
//! is looked up by transaction id instead of being reported "unknown": here
//! the backend dies in a deferred trigger at COMMIT, so the transaction was
//! rolled back, and the caller is told exactly that. And a COMMIT that
//! reaches the database after the write's deadline is refused, not applied.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::TestDb;
use usersvc::db::{DbError, DbPool, DbPoolSettings};

fn settings() -> DbPoolSettings {
    DbPoolSettings {
        max_connections: 2,
        conn_max_lifetime: Duration::from_secs(300),
        acquire_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
    }
}

#[test]
fn a_commit_killed_midway_is_reported_as_not_committed() {
    let db = TestDb::migrated();
    let mut admin = db.client();
    admin
        .batch_execute(
            "CREATE TABLE t (v int);
             CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON t
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow();",
        )
        .expect("schema");
    let pool = DbPool::build(db.url(), &settings()).expect("pool");
    let writer = {
        let pool = pool.clone();
        thread::spawn(move || pool.write(|db| db.execute("INSERT INTO t VALUES (1)", &[])))
    };
    // Wait until COMMIT is running the deferred trigger, then kill it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE wait_event = 'PgSleep' AND datname = current_database()",
                &[],
            )
            .expect("kill")
            .get(0);
        if killed > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "COMMIT never reached the trigger"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let err = writer.join().expect("join").expect_err("killed");
    let text = err.to_string();
    assert!(matches!(err, DbError::Unavailable(_)), "{text}");
    assert!(text.contains("was not committed"), "{text}");
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 0);
    // The pool carries on.
    assert_eq!(
        pool.read(|db| db
            .query_one("SELECT 1::int4", &[])
            .map(|r| r.get::<_, i32>(0)))
            .expect("read"),
        1
    );
}

/// A transaction whose COMMIT reaches the database after the call's fence
/// (`DB_STATEMENT_TIMEOUT` from the start of the call, before the client-side
/// cut) — what a frozen host that thaws does with a COMMIT in its socket
/// buffer, here a client that is late — is refused: nothing is committed,
/// the caller gets `Unavailable`, and the connection is usable again.
/// Without the fence the row was committed.
#[test]
fn a_commit_that_arrives_after_the_deadline_is_not_applied() {
    let db = TestDb::migrated();
    let mut admin = db.client();
    admin
        .batch_execute("CREATE TABLE t (v int)")
        .expect("schema");
    let settings = DbPoolSettings {
        max_connections: 1,
        statement_timeout: Duration::from_millis(600),
        ..settings()
    };
    let pool = DbPool::build(db.url(), &settings).expect("pool");
    let late = pool.write(|db| {
        db.execute("INSERT INTO t VALUES (1)", &[])?;
        // Past the fence (600 ms from the call's start), before the cut
        // (600 + 500 ms): the COMMIT is sent late, but sent.
        thread::sleep(Duration::from_millis(800));
        Ok(())
    });
    let err = late.expect_err("a late COMMIT is refused");
    let text = err.to_string();
    assert!(matches!(err, DbError::Unavailable(_)), "{text}");
    assert!(text.contains("after its deadline"), "{text}");
    let count = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one("SELECT count(*) FROM t", &[])
            .expect("count")
            .get(0)
    };
    assert_eq!(
        count(&mut admin),
        0,
        "the late transaction was not committed"
    );
    // The same (only) connection commits a write in time.
    pool.write(|db| db.execute("INSERT INTO t VALUES (2)", &[]))
        .expect("a write in time");
    assert_eq!(count(&mut admin), 1);
}

/// Terminates the backends of this test's database that sleep in
/// `pg_sleep`; returns how many.
fn kill_sleepers(admin: &mut postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE wait_event = 'PgSleep' AND datname = current_database()",
            &[],
        )
        .expect("kill")
        .get(0)
}

/// A single-statement write whose connection dies leaves its outcome
/// unknown, and the recovery that finds it out may lose its connection too
/// (a storm of terminated backends): it is asked again, within the acquire
/// budget, rather than answering 503 for a write that may have committed.
#[test]
fn a_recovery_killed_midway_is_run_again() {
    let db = TestDb::new();
    let mut admin = db.client();
    let pool = DbPool::build(db.url(), &settings()).expect("pool");
    let recoveries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let pool = pool.clone();
        let recoveries = std::sync::Arc::clone(&recoveries);
        thread::spawn(move || {
            pool.write_one(
                |db, _| db.execute("SELECT pg_sleep(30)", &[]),
                |db, _| {
                    // The first recovery is killed as well; the second answers.
                    if recoveries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        db.execute("SELECT pg_sleep(30)", &[])
                    } else {
                        db.execute("SELECT 1", &[])
                    }
                },
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut killed = 0;
    while killed < 2 {
        killed += kill_sleepers(&mut admin);
        assert!(Instant::now() < deadline, "only {killed} sleeper(s) seen");
        thread::sleep(Duration::from_millis(20));
    }
    let result = writer.join().expect("join");
    assert_eq!(result.expect("recovered on the third connection"), 1);
    assert_eq!(recoveries.load(std::sync::atomic::Ordering::SeqCst), 2);
}
