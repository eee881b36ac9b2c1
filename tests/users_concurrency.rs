//! Races and retries: one e-mail from 50 threads, and Idempotency-Key replay,
//! mismatch, concurrency and expiry.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;

use support::TestDb;
use usersvc::users::idempotency::fingerprint;
use usersvc::users::{CreateUser, PgUserRepository, UserError, UserService};

fn service(db: &TestDb, max_connections: u32) -> UserService {
    let pool = support::pool(db.url(), max_connections);
    UserService::new(Arc::new(PgUserRepository::new(pool)))
}

fn create(name: &str, email: &str) -> CreateUser {
    CreateUser {
        name: Some(name.into()),
        email: Some(email.into()),
    }
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().query_one(sql, &[]).expect("count").get(0)
}

#[test]
fn fifty_concurrent_creates_with_one_email_make_exactly_one_user() {
    let db = TestDb::migrated();
    let svc = service(&db, 10);
    let barrier = Arc::new(Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let svc = svc.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                // Same address, different case and spacing.
                let email = if i % 2 == 0 {
                    "race@example.com"
                } else {
                    " RACE@Example.com"
                };
                svc.create(&create(&format!("racer {i}"), email))
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(UserError::Conflict(_))))
        .count();
    assert_eq!(ok, 1, "{results:?}");
    assert_eq!(conflicts, 49, "{results:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM events"), 1);
}

#[test]
fn same_key_and_body_replays_the_first_response_without_a_second_row() {
    let db = TestDb::migrated();
    let svc = service(&db, 2);
    let input = create("Ada", "ada@example.com");
    let fp = fingerprint(&input);
    let first = svc.create_idempotent("key-1", &fp, &input).expect("first");
    assert!(!first.replayed);
    assert_eq!(first.response.status, 201);
    let body: serde_json::Value = serde_json::from_str(&first.response.body).expect("JSON body");
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(first.response.resource_id, body["id"].as_i64());

    let again = svc.create_idempotent("key-1", &fp, &input).expect("replay");
    assert!(again.replayed);
    assert_eq!(again.response, first.response, "byte-identical response");
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM events"), 1);

    // A different key with another e-mail is an independent create.
    let other = create("Bob", "bob@example.com");
    let second = svc
        .create_idempotent("key-2", &fingerprint(&other), &other)
        .expect("other key");
    assert!(!second.replayed);
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 2);
}

#[test]
fn same_key_with_a_different_body_is_a_mismatch() {
    let db = TestDb::migrated();
    let svc = service(&db, 2);
    let a = create("Ada", "ada@example.com");
    let b = create("Ada", "ada2@example.com");
    svc.create_idempotent("k", &fingerprint(&a), &a)
        .expect("first");
    assert_eq!(
        svc.create_idempotent("k", &fingerprint(&b), &b),
        Err(UserError::IdempotencyMismatch)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 1);
}

#[test]
fn concurrent_requests_with_one_key_create_one_user_and_get_one_response() {
    let db = TestDb::migrated();
    let svc = service(&db, 10);
    let input = create("Ada", "ada@example.com");
    let fp = fingerprint(&input);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (svc, input, fp, barrier) =
                (svc.clone(), input.clone(), fp.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                svc.create_idempotent("shared-key", &fp, &input)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("every request succeeds"))
        .collect();
    assert_eq!(results.iter().filter(|r| !r.replayed).count(), 1);
    assert!(results.iter().all(|r| r.response == results[0].response));
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM events"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM idempotency_keys"), 1);
}

#[test]
fn failed_creates_are_not_remembered() {
    let db = TestDb::migrated();
    let svc = service(&db, 2);
    let taken = svc.create(&create("Ada", "ada@example.com")).expect("ada");
    let input = create("Imposter", "ADA@example.com");
    let fp = fingerprint(&input);
    assert!(matches!(
        svc.create_idempotent("k", &fp, &input),
        Err(UserError::Conflict(_))
    ));
    assert_eq!(count(&db, "SELECT count(*) FROM idempotency_keys"), 0);
    // Once the address is free, the same key and body succeed.
    svc.delete(taken.id).expect("delete");
    let ok = svc.create_idempotent("k", &fp, &input).expect("retry");
    assert!(!ok.replayed);
}

#[test]
fn invalid_keys_and_bodies_are_reported_together() {
    let db = TestDb::migrated();
    let svc = service(&db, 1);
    let input = create("", "nope");
    let Err(UserError::Invalid(fields)) = svc.create_idempotent("has space", "fp", &input) else {
        panic!("expected Invalid");
    };
    let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(names, ["Idempotency-Key", "name", "email"]);
}

#[test]
fn expired_keys_are_replaced_and_purged() {
    let db = TestDb::migrated();
    let svc = service(&db, 2);
    let a = create("Ada", "ada@example.com");
    let b = create("Bob", "bob@example.com");
    svc.create_idempotent("old", &fingerprint(&a), &a)
        .expect("first");
    svc.create_idempotent("stale", &fingerprint(&a), &create("Cy", "cy@example.com"))
        .expect("second");
    db.client()
        .batch_execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .expect("age the keys");
    // Expired: the same key with another body is a new request, not a mismatch.
    let fresh = svc
        .create_idempotent("old", &fingerprint(&b), &b)
        .expect("expired key reused");
    assert!(!fresh.replayed);
    assert_eq!(svc.purge_expired_idempotency_keys().expect("purge"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM idempotency_keys"), 1);
}

/// Holds an exclusive lock on `users` so that creates wait at the database;
/// returns once `waiting` backends are blocked on it.
fn lock_users(db: &TestDb) -> postgres::Transaction<'static> {
    let client = Box::leak(Box::new(db.client()));
    let mut tx = client.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE users IN EXCLUSIVE MODE")
        .expect("lock users");
    tx
}

fn wait_for_lock_waiters(db: &TestDb, waiting: i64) {
    let mut admin = db.client();
    let name = db.name().to_owned();
    for _ in 0..500 {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&name],
            )
            .expect("pg_stat_activity")
            .get(0);
        if n >= waiting {
            return;
        }
        thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no create reached the database's lock");
}

/// Occupies both group-commit statements with a create each, blocked at the
/// database on `users`' lock, so that the creates that come next queue.
fn block_both_statements(
    db: &TestDb,
    svc: &UserService,
) -> (
    postgres::Transaction<'static>,
    Vec<thread::JoinHandle<Result<usersvc::users::User, UserError>>>,
) {
    let lock = lock_users(db);
    let leaders = (1..=2)
        .map(|i| {
            let svc = svc.clone();
            let leader = thread::spawn(move || {
                svc.create(&create(
                    &format!("Leader {i}"),
                    &format!("leader{i}@example.com"),
                ))
            });
            wait_for_lock_waiters(db, i);
            leader
        })
        .collect();
    (lock, leaders)
}

/// Transactions that inserted the users: rows of one statement share one.
fn transactions_of_users(db: &TestDb) -> i64 {
    count(db, "SELECT count(DISTINCT xmin::text) FROM users")
}

/// Group commit (`src/db/group_commit.rs`): while a create waits at the
/// database, the creates behind it queue and then go in ONE statement; each
/// gets its own answer — its user, or 409 for an e-mail already stored or
/// taken by an earlier create of the same batch — and every created user
/// has exactly one event whose payload is the API's bytes for it.
#[test]
fn creates_that_wait_are_written_together_and_answered_one_by_one() {
    let db = TestDb::migrated();
    let svc = service(&db, 4);
    svc.create(&create("Existing", "taken@example.com"))
        .expect("existing user");

    let (lock, leaders) = block_both_statements(&db, &svc);
    let emails = [
        "a@example.com",
        "b@example.com",
        "TAKEN@example.com",
        "c@example.com",
        "a@example.com",
        "d@example.com",
    ];
    let followers: Vec<_> = emails
        .iter()
        .enumerate()
        .map(|(i, email)| {
            let svc = svc.clone();
            let email = (*email).to_owned();
            thread::spawn(move || {
                let name = format!("follower {i}");
                (
                    email.clone(),
                    name.clone(),
                    svc.create(&create(&name, &email)),
                )
            })
        })
        .collect();
    // Let them queue behind the statements that wait, then let those go.
    thread::sleep(std::time::Duration::from_millis(500));
    lock.commit().expect("release the lock");

    let mut created: Vec<_> = leaders
        .into_iter()
        .map(|h| h.join().expect("leader thread").expect("leader created"))
        .collect();
    let mut conflicts = Vec::new();
    for h in followers {
        let (email, name, result) = h.join().expect("follower thread");
        match result {
            Ok(user) => {
                // Its own row, even where another create sent its e-mail.
                assert_eq!(
                    (user.email.as_str(), user.name.as_str()),
                    (email.to_lowercase().as_str(), name.as_str())
                );
                created.push(user);
            }
            Err(UserError::Conflict(_)) => conflicts.push(email),
            Err(e) => panic!("{email}: {e}"),
        }
    }
    conflicts.sort();
    // The stored e-mail, and the second create of a@ (whichever came second).
    assert_eq!(conflicts, vec!["TAKEN@example.com", "a@example.com"]);
    // The two leaders, a, b, c and d.
    assert_eq!(created.len(), 6, "{created:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 7);
    // The six new users went in fewer statements than creates: those
    // queued behind the leaders shared one.
    let statements = transactions_of_users(&db) - 1;
    assert!(statements < 6, "{statements} statements for 6 creates");

    let mut client = db.client();
    for user in &created {
        let payloads: Vec<String> = client
            .query(
                "SELECT payload::text FROM events WHERE type = 'user.created' AND payload->>'id' = $1",
                &[&user.id.to_string()],
            )
            .expect("events")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(payloads, vec![user.to_json_string()], "{user:?}");
        assert_eq!(svc.get(user.id).expect("read back"), *user);
    }
    assert_eq!(count(&db, "SELECT count(*) FROM events"), 7);
}

/// A batch the database refuses for one of its rows (a trigger stands in
/// for any error the rules do not foresee) does not fail the others: each
/// create is tried again alone, and only the bad one fails.
#[test]
fn one_bad_row_fails_only_its_own_create() {
    let db = TestDb::migrated();
    let svc = service(&db, 4);
    db.client()
        .batch_execute(
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.name = 'boom' THEN RAISE EXCEPTION 'no boom'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER refuse_boom BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION refuse_boom();",
        )
        .expect("trigger");

    let (lock, leaders) = block_both_statements(&db, &svc);
    let followers: Vec<_> = ["x", "boom", "y"]
        .iter()
        .map(|name| {
            let svc = svc.clone();
            let name = (*name).to_owned();
            thread::spawn(move || {
                (
                    name.clone(),
                    svc.create(&create(&name, &format!("{name}@example.com"))),
                )
            })
        })
        .collect();
    thread::sleep(std::time::Duration::from_millis(500));
    lock.commit().expect("release the lock");

    for h in leaders {
        h.join().expect("leader thread").expect("leader created");
    }
    for h in followers {
        let (name, result) = h.join().expect("follower thread");
        match name.as_str() {
            "boom" => assert!(matches!(result, Err(UserError::Internal(_))), "{result:?}"),
            _ => assert_eq!(result.expect("created").name, name),
        }
    }
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 4);
    assert_eq!(count(&db, "SELECT count(*) FROM events"), 4);
}
