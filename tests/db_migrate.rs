//! Migrations against a real PostgreSQL: concurrency, round trips, status.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use support::TestDb;
use usersvc::db::migrate::{self, MigrateError, Migration, MIGRATIONS};

fn latest() -> i64 {
    MIGRATIONS
        .last()
        .map(|m| m.version)
        .expect("at least one migration")
}

fn table_exists(client: &mut postgres::Client, name: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .expect("query")
        .get(0)
}

#[test]
fn status_before_and_after_up() {
    let db = TestDb::new();
    let mut c = db.client();
    let before = migrate::status(&mut c).expect("status");
    assert_eq!(before.version, None);
    assert!(!before.dirty);
    assert_eq!(
        before.pending,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    let applied = migrate::up(&mut c).expect("up");
    assert_eq!(applied, before.pending);
    let after = migrate::status(&mut c).expect("status");
    assert_eq!(after.version, Some(latest()));
    assert!(after.pending.is_empty());
    assert_eq!(after.latest, latest());
    assert!(migrate::up(&mut c).expect("second up").is_empty());
    for t in ["users", "events", "idempotency_keys", "schema_migrations"] {
        assert!(table_exists(&mut c, t), "{t} missing");
    }
}

#[test]
fn concurrent_up_from_two_connections_applies_once() {
    let db = Arc::new(TestDb::new());
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let db = Arc::clone(&db);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut c = db.client();
                barrier.wait();
                migrate::up(&mut c)
            })
        })
        .collect();
    let mut applied: Vec<i64> = Vec::new();
    for h in handles {
        let got = h.join().expect("thread").expect("both runners succeed");
        applied.extend(got);
    }
    applied.sort_unstable();
    let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "each migration applied exactly once in total");
    let mut c = db.client();
    let rows: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 1);
}

#[test]
fn down_one_then_up_round_trips() {
    let db = TestDb::migrated();
    let mut c = db.client();
    let full = db.schema();
    let previous = MIGRATIONS[MIGRATIONS.len() - 2].version;
    let reverted = migrate::down(&mut c, 1).expect("down 1");
    assert_eq!(reverted, vec![latest()]);
    let s = migrate::status(&mut c).expect("status");
    assert_eq!(s.version, Some(previous));
    assert_eq!(s.pending, vec![latest()]);
    assert_ne!(db.schema(), full, "the latest migration was undone");
    assert_eq!(migrate::up(&mut c).expect("up"), vec![latest()]);
    assert_eq!(db.schema(), full, "and redone identically");
    assert!(table_exists(&mut c, "idempotency_keys"));
}

#[test]
fn down_everything_leaves_no_version() {
    let db = TestDb::migrated();
    let mut c = db.client();
    let reverted = migrate::down(&mut c, MIGRATIONS.len()).expect("down all");
    assert_eq!(reverted.len(), MIGRATIONS.len());
    let s = migrate::status(&mut c).expect("status");
    assert_eq!(s.version, None);
    assert!(!table_exists(&mut c, "users"));
    assert!(matches!(
        migrate::down(&mut c, 1),
        Err(MigrateError::TooFewApplied {
            requested: 1,
            applied: 0
        })
    ));
}

#[test]
fn down_more_than_applied_is_refused_and_reverts_nothing() {
    let db = TestDb::migrated();
    let mut c = db.client();
    let full = db.schema();
    let err = migrate::down(&mut c, MIGRATIONS.len() + 1).expect_err("too many");
    assert!(
        matches!(err, MigrateError::TooFewApplied { requested, applied }
            if requested == MIGRATIONS.len() + 1 && applied == MIGRATIONS.len()),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was reverted"), "{err}");
    assert_eq!(
        migrate::status(&mut c).expect("status").version,
        Some(latest())
    );
    assert_eq!(db.schema(), full, "the schema is untouched");
}

#[test]
fn failed_migration_rolls_back_and_leaves_the_previous_version() {
    let db = TestDb::new();
    let mut c = db.client();
    let bad = [
        MIGRATIONS[0],
        Migration {
            version: 2,
            name: "000002_broken",
            up: "CREATE TABLE half_done (id int); SELECT no_such_function();",
            down: "DROP TABLE half_done;",
        },
    ];
    let err = migrate::up_with(&mut c, &bad).expect_err("must fail");
    assert!(
        matches!(err, MigrateError::Failed { version: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("rolled back"), "{err}");
    let s = migrate::status_with(&mut c, &bad).expect("status");
    assert_eq!(s.version, Some(1));
    assert!(!s.dirty);
    assert!(
        !table_exists(&mut c, "half_done"),
        "the failed migration's DDL was rolled back"
    );
}

#[test]
fn dirty_database_is_refused() {
    let db = TestDb::migrated();
    let mut c = db.client();
    c.batch_execute("UPDATE schema_migrations SET dirty = true")
        .expect("mark dirty");
    let s = migrate::status(&mut c).expect("status");
    assert!(s.dirty);
    let err = migrate::up(&mut c).expect_err("dirty");
    assert!(matches!(err, MigrateError::Dirty(v) if v == latest()));
    assert!(matches!(
        migrate::down(&mut c, 1),
        Err(MigrateError::Dirty(_))
    ));
}

#[test]
fn newer_database_is_left_alone_by_up_but_not_by_down() {
    let db = TestDb::migrated();
    let mut c = db.client();
    c.batch_execute("UPDATE schema_migrations SET version = 999")
        .expect("pretend newer");
    assert!(migrate::up(&mut c).expect("no-op").is_empty());
    assert!(migrate::status(&mut c).expect("status").newer_than_binary());
    assert!(matches!(
        migrate::down(&mut c, 1),
        Err(MigrateError::UnknownVersion(999))
    ));
}

#[test]
fn up_on_a_current_schema_does_not_wait_for_the_migration_lock() {
    // Another process holds the lock (say, a replica mid-migration); a start
    // whose schema is already current must not queue behind it.
    let db = TestDb::migrated();
    let mut holder = db.client();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&migrate::LOCK_KEY])
        .expect("take the lock");
    let up_in_thread = || {
        let (tx, rx) = std::sync::mpsc::channel();
        let url = db.url().to_owned();
        thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            let _ = tx.send(migrate::up(&mut c).map_err(|e| e.to_string()));
        });
        rx
    };
    let got = up_in_thread()
        .recv_timeout(Duration::from_secs(10))
        .expect("up returned while the lock was held");
    assert_eq!(got, Ok(Vec::new()));

    // A schema that is behind still waits for the lock, then migrates.
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&migrate::LOCK_KEY])
        .expect("release");
    migrate::down(&mut db.client(), 1).expect("down 1");
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&migrate::LOCK_KEY])
        .expect("take the lock again");
    let waiting = up_in_thread();
    assert!(
        waiting.recv_timeout(Duration::from_millis(500)).is_err(),
        "a pending migration waits for the lock"
    );
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&migrate::LOCK_KEY])
        .expect("release");
    let got = waiting
        .recv_timeout(Duration::from_secs(10))
        .expect("up finished once the lock was free");
    assert_eq!(got, Ok(vec![latest()]));
}
