//! `usersvc migrate up | down [N] | status` as an operator runs it: the real
//! binary with only `DATABASE_URL` set, against a real PostgreSQL.

mod support;

use std::process::{Command, Output};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use support::service::BIN;
use support::TestDb;
use usersvc::db::migrate::{LOCK_KEY, MIGRATIONS};

fn latest() -> i64 {
    MIGRATIONS.last().expect("at least one migration").version
}

fn all_versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

/// The version before the latest (versions need not be consecutive).
fn previous() -> i64 {
    let all = all_versions();
    all[all.len() - 2]
}

/// Runs `usersvc migrate <args>` with nothing but `DATABASE_URL` (and PATH).
fn migrate(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .arg("migrate")
        .args(args)
        .output()
        .expect("run usersvc migrate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn describe(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `migrate up` must succeed; returns the versions it printed as applied.
fn applied(o: &Output) -> Vec<i64> {
    assert!(o.status.success(), "{}", describe(o));
    parse_list(&stdout(o), "applied: ")
}

/// `[1, 2, 3]` after `prefix` on one line.
fn parse_list(text: &str, prefix: &str) -> Vec<i64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {text:?}"));
    line.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("a version"))
        .collect()
}

/// The rows of `schema_migrations`: (version, dirty).
fn schema_rows(db: &TestDb) -> Vec<(i64, bool)> {
    db.client()
        .query("SELECT version, dirty FROM schema_migrations", &[])
        .expect("schema_migrations")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn table_exists(db: &TestDb, table: &str) -> bool {
    db.client()
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .expect("to_regclass")
        .get(0)
}

/// Two `migrate up` processes started together on an empty database both
/// exit 0; between them every migration is applied exactly once, and the
/// schema ends at the latest version, clean.
#[test]
fn concurrent_migrate_up_applies_the_schema_once() {
    let db = TestDb::new();
    let url = db.url().to_owned();
    // Hold the runners' advisory lock so both are provably running (and
    // queued on it) before either can start: a real race, every time.
    let mut holder = db.client();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .expect("lock");
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (url, barrier) = (url.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                migrate(&url, &["up"])
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = holder
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                 WHERE l.locktype = 'advisory' AND NOT l.granted \
                 AND d.datname = current_database()",
                &[],
            )
            .expect("pg_locks")
            .get(0);
        if waiting == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runners never queued on the lock"
        );
        thread::sleep(Duration::from_millis(20));
    }
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .expect("unlock");
    let outputs: Vec<Output> = runs
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let mut versions: Vec<i64> = outputs.iter().flat_map(applied).collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        all_versions(),
        "each migration applied by exactly one runner:\n{}\n{}",
        describe(&outputs[0]),
        describe(&outputs[1])
    );
    assert_eq!(schema_rows(&db), [(latest(), false)]);
    for t in ["users", "events", "idempotency_keys"] {
        assert!(table_exists(&db, t), "{t}");
    }
    // A third run has nothing to do.
    assert_eq!(applied(&migrate(&url, &["up"])), Vec::<i64>::new());
}

/// `migrate down 1` reverts exactly the latest migration and `migrate up`
/// re-applies it; `down N` for all of them empties the schema and `up`
/// rebuilds it.
#[test]
fn migrate_down_then_up_round_trips() {
    let db = TestDb::new();
    let url = db.url();
    assert_eq!(applied(&migrate(url, &["up"])), all_versions());
    // Data in the tables the round trip does not touch survives it.
    db.client()
        .execute(
            "INSERT INTO users (name, email) VALUES ('Ada', 'ada@example.com')",
            &[],
        )
        .expect("insert");

    let full = db.schema();
    let down = migrate(url, &["down", "1"]);
    assert!(down.status.success(), "{}", describe(&down));
    assert_eq!(parse_list(&stdout(&down), "rolled back: "), [latest()]);
    assert_eq!(schema_rows(&db), [(previous(), false)]);
    assert_ne!(db.schema(), full, "the latest migration was undone");
    assert!(table_exists(&db, "users"));

    assert_eq!(applied(&migrate(url, &["up"])), [latest()]);
    assert_eq!(schema_rows(&db), [(latest(), false)]);
    assert_eq!(db.schema(), full, "and redone identically");
    let users: i64 = db
        .client()
        .query_one("SELECT count(*) FROM users", &[])
        .expect("count")
        .get(0);
    assert_eq!(users, 1);

    // `down` without N is one step.
    let down = migrate(url, &["down"]);
    assert_eq!(parse_list(&stdout(&down), "rolled back: "), [latest()]);
    // All the way down, then up again.
    let n = (all_versions().len() - 1).to_string();
    let down = migrate(url, &["down", &n]);
    assert!(down.status.success(), "{}", describe(&down));
    let mut expected: Vec<i64> = all_versions()[..all_versions().len() - 1].to_vec();
    expected.reverse();
    assert_eq!(parse_list(&stdout(&down), "rolled back: "), expected);
    assert!(schema_rows(&db).is_empty(), "{:?}", schema_rows(&db));
    for t in ["users", "events", "idempotency_keys"] {
        assert!(!table_exists(&db, t), "{t} left behind");
    }
    assert_eq!(applied(&migrate(url, &["up"])), all_versions());
    assert_eq!(schema_rows(&db), [(latest(), false)]);
}

/// `migrate status` prints the version, the dirty flag, what is pending and
/// the latest known version, before and after `up`, and changes nothing.
#[test]
fn migrate_status_reports_where_the_schema_stands() {
    let db = TestDb::new();
    let url = db.url();
    let status = migrate(url, &["status"]);
    assert!(status.status.success(), "{}", describe(&status));
    let text = stdout(&status);
    assert!(text.contains("version: none"), "{text}");
    assert!(text.contains("dirty: false"), "{text}");
    assert!(text.contains("\napplied: []\n"), "{text}");
    assert_eq!(parse_list(&text, "pending: "), all_versions());
    assert!(text.contains(&format!("latest: {}", latest())), "{text}");
    assert!(!table_exists(&db, "users"), "status applied nothing");

    applied(&migrate(url, &["up"]));
    let text = stdout(&migrate(url, &["status"]));
    assert!(text.contains(&format!("version: {}", latest())), "{text}");
    assert!(text.contains("dirty: false"), "{text}");
    assert_eq!(parse_list(&text, "pending: "), Vec::<i64>::new());
    // The applied migrations, by name, as the help promises.
    let names: Vec<String> = usersvc::db::migrations::MIGRATIONS
        .iter()
        .map(|m| m.name.to_owned())
        .collect();
    assert!(
        text.contains(&format!("\napplied: [{}]\n", names.join(", "))),
        "{text}"
    );

    let down = migrate(url, &["down", "1"]);
    assert!(down.status.success(), "{}", describe(&down));
    let text = stdout(&migrate(url, &["status"]));
    assert!(text.contains(&format!("version: {}", previous())), "{text}");
    assert_eq!(parse_list(&text, "pending: "), [latest()]);
    assert!(
        text.contains(&format!(
            "\napplied: [{}]\n",
            names[..names.len() - 1].join(", ")
        )),
        "{text}"
    );
}

/// A database golang-migrate left dirty is refused (exit 1, the version is
/// named) by `up` and reported by `status`.
#[test]
fn dirty_schema_is_refused() {
    let db = TestDb::new();
    applied(&migrate(db.url(), &["up"]));
    db.client()
        .execute("UPDATE schema_migrations SET dirty = true", &[])
        .expect("make dirty");
    let up = migrate(db.url(), &["up"]);
    assert_eq!(up.status.code(), Some(1), "{}", describe(&up));
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(err.contains(&latest().to_string()), "{err}");
    let text = stdout(&migrate(db.url(), &["status"]));
    assert!(text.contains("dirty: true"), "{text}");
}

/// `down N` beyond what is applied is a typo, not a request for an empty
/// schema: exit 1, the reason on stderr, and nothing reverted.
#[test]
fn down_beyond_what_is_applied_is_refused_and_changes_nothing() {
    let db = TestDb::new();
    let url = db.url();
    applied(&migrate(url, &["up"]));
    let full = db.schema();
    let too_many = (all_versions().len() + 94).to_string();
    let down = migrate(url, &["down", &too_many]);
    assert_eq!(down.status.code(), Some(1), "{}", describe(&down));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(
        err.contains(&format!("only {} applied", all_versions().len())),
        "{err}"
    );
    assert!(err.contains("nothing was reverted"), "{err}");
    assert_eq!(schema_rows(&db), [(latest(), false)]);
    assert_eq!(db.schema(), full);
}

/// `status` against a schema a newer binary migrated says so, and exits 0.
#[test]
fn status_warns_about_a_schema_newer_than_the_binary() {
    let db = TestDb::new();
    applied(&migrate(db.url(), &["up"]));
    db.client()
        .execute("UPDATE schema_migrations SET version = 999", &[])
        .expect("pretend a newer binary migrated");
    let status = migrate(db.url(), &["status"]);
    assert!(status.status.success(), "{}", describe(&status));
    let text = stdout(&status);
    assert!(text.contains("version: 999"), "{text}");
    assert!(
        text.contains("warning: the database is at version 999, newer than this binary's"),
        "{text}"
    );
    // A current schema carries no warning.
    let db = TestDb::new();
    applied(&migrate(db.url(), &["up"]));
    let text = stdout(&migrate(db.url(), &["status"]));
    assert!(!text.contains("warning"), "{text}");
}

/// An unreachable database: exit 1 with a message on stderr that does not
/// reveal the password.
#[test]
fn unreachable_database_fails_without_leaking_the_password() {
    // Port 1 on localhost: refused at once.
    let out = migrate("postgres://app:hunter2-secret@127.0.0.1:1/app", &["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("cannot connect"), "{all}");
    assert!(!all.contains("hunter2"), "password leaked: {all}");
}
