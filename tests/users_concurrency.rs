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
