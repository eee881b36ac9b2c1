//! The user service against a real PostgreSQL: every operation's outcomes,
//! the outbox row per change, keyset pagination.

mod support;

use std::sync::Arc;

use serde_json::Value;
use support::TestDb;
use usersvc::db::DbPool;
use usersvc::users::{CreateUser, ListParams, PatchUser, PgUserRepository, UserError, UserService};

struct Fixture {
    db: TestDb,
    pool: DbPool,
    svc: UserService,
}

fn fixture() -> Fixture {
    let db = TestDb::migrated();
    let pool = support::pool(db.url(), 4);
    let svc = UserService::new(Arc::new(PgUserRepository::new(pool.clone())));
    Fixture { db, pool, svc }
}

fn create(name: &str, email: &str) -> CreateUser {
    CreateUser {
        name: Some(name.into()),
        email: Some(email.into()),
    }
}

/// (type, payload) of every event, oldest first.
fn events(db: &TestDb) -> Vec<(String, Value)> {
    let mut c = db.client();
    c.query(
        "SELECT type, payload::text FROM events ORDER BY created_at, id",
        &[],
    )
    .expect("events")
    .iter()
    .map(|r| {
        let payload: String = r.get(1);
        (
            r.get(0),
            serde_json::from_str(&payload).expect("payload is JSON"),
        )
    })
    .collect()
}

fn count(db: &TestDb, table: &str) -> i64 {
    db.client()
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .expect("count")
        .get(0)
}

fn is_rfc3339_micro_utc(s: &str) -> bool {
    // 2026-11-24T09:01:02.345678Z
    let b = s.as_bytes();
    b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z'
        && s.chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 26].contains(&i) || c.is_ascii_digit())
}

#[test]
fn create_normalises_and_writes_one_created_event() {
    let f = fixture();
    let u = f
        .svc
        .create(&create("  Ada Lovelace ", " Ada@Example.COM "))
        .expect("created");
    assert!(u.id > 0);
    assert_eq!(u.name, "Ada Lovelace");
    assert_eq!(u.email, "ada@example.com");
    assert_eq!(u.created_at, u.updated_at);
    let json = u.to_json();
    assert!(is_rfc3339_micro_utc(
        json["created_at"].as_str().expect("string")
    ));
    let ev = events(&f.db);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, "user.created");
    assert_eq!(ev[0].1, json, "payload is the user as the API shows it");
}

#[test]
fn invalid_create_lists_every_field_and_writes_nothing() {
    let f = fixture();
    let err = f
        .svc
        .create(&CreateUser {
            name: Some("  ".into()),
            email: Some("not-an-email".into()),
        })
        .expect_err("invalid");
    let UserError::Invalid(fields) = err else {
        panic!("expected Invalid, got {err:?}");
    };
    let names: Vec<&str> = fields.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(names, ["name", "email"]);
    assert_eq!(count(&f.db, "users"), 0);
    assert_eq!(count(&f.db, "events"), 0);
}

#[test]
fn duplicate_email_is_a_case_insensitive_conflict_without_an_event() {
    let f = fixture();
    f.svc
        .create(&create("A", "dup@example.com"))
        .expect("first");
    let err = f
        .svc
        .create(&create("B", "DUP@example.com"))
        .expect_err("duplicate");
    assert!(matches!(err, UserError::Conflict(_)), "{err:?}");
    // The unique index also holds for rows written around the service.
    let raw = f.db.client().execute(
        "INSERT INTO users (name, email) VALUES ('C', 'Dup@Example.com')",
        &[],
    );
    assert!(raw.is_err(), "lower(email) index rejects mixed case");
    assert_eq!(count(&f.db, "users"), 1);
    assert_eq!(
        count(&f.db, "events"),
        1,
        "the failed create wrote no event"
    );
}

#[test]
fn get_found_not_found_and_non_positive_ids() {
    let f = fixture();
    let u = f
        .svc
        .create(&create("A", "a@example.com"))
        .expect("created");
    assert_eq!(f.svc.get(u.id).expect("found"), u);
    assert_eq!(f.svc.get(u.id + 1000), Err(UserError::NotFound));
    assert_eq!(f.svc.get(0), Err(UserError::NotFound));
    assert_eq!(f.svc.get(-5), Err(UserError::NotFound));
}

#[test]
fn patch_outcomes_and_updated_events() {
    let f = fixture();
    let a = f.svc.create(&create("A", "a@example.com")).expect("a");
    let b = f.svc.create(&create("B", "b@example.com")).expect("b");

    let renamed = f
        .svc
        .patch(
            a.id,
            &PatchUser {
                name: Some(" Alice ".into()),
                email: None,
            },
        )
        .expect("rename");
    assert_eq!(renamed.name, "Alice");
    assert_eq!(renamed.email, "a@example.com");
    assert_eq!(renamed.created_at, a.created_at);
    assert!(renamed.updated_at > a.updated_at);

    let moved = f
        .svc
        .patch(
            a.id,
            &PatchUser {
                name: None,
                email: Some("ALICE@example.com".into()),
            },
        )
        .expect("new email");
    assert_eq!(moved.email, "alice@example.com");

    let conflict = f.svc.patch(
        b.id,
        &PatchUser {
            name: Some("Bee".into()),
            email: Some("Alice@Example.com".into()),
        },
    );
    assert!(
        matches!(conflict, Err(UserError::Conflict(_))),
        "{conflict:?}"
    );
    assert_eq!(
        f.svc.get(b.id).expect("b unchanged"),
        b,
        "nothing of the failed patch stuck"
    );

    assert!(matches!(
        f.svc.patch(a.id, &PatchUser::default()),
        Err(UserError::Invalid(_))
    ));
    assert!(matches!(
        f.svc.patch(
            a.id,
            &PatchUser {
                name: Some(String::new()),
                email: Some("x".into())
            }
        ),
        Err(UserError::Invalid(v)) if v.len() == 2
    ));
    assert_eq!(
        f.svc.patch(
            9_999_999,
            &PatchUser {
                name: Some("Z".into()),
                email: None
            }
        ),
        Err(UserError::NotFound)
    );

    let ev = events(&f.db);
    let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "user.created",
            "user.created",
            "user.updated",
            "user.updated"
        ]
    );
    assert_eq!(ev[3].1, moved.to_json());
}

#[test]
fn delete_then_not_found_with_a_deleted_event() {
    let f = fixture();
    let u = f.svc.create(&create("A", "a@example.com")).expect("a");
    f.svc.delete(u.id).expect("deleted");
    assert_eq!(f.svc.get(u.id), Err(UserError::NotFound));
    assert_eq!(f.svc.delete(u.id), Err(UserError::NotFound));
    let ev = events(&f.db);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].0, "user.deleted");
    assert_eq!(ev[1].1["id"], u.id);
    // The e-mail is free again.
    f.svc.create(&create("A2", "A@example.com")).expect("reuse");
}

#[test]
fn keyset_pagination_walks_250_rows_in_order() {
    let f = fixture();
    {
        // Bulk insert directly; the service path is covered elsewhere.
        let mut c = f.db.client();
        c.batch_execute(
            "INSERT INTO users (name, email) \
             SELECT 'user ' || g, 'u' || g || '@example.com' FROM generate_series(1, 250) g",
        )
        .expect("seed");
    }
    let mut seen = Vec::new();
    let mut params = ListParams {
        limit: 100,
        after: None,
    };
    let mut pages = 0;
    loop {
        let page = f.svc.list(&params).expect("page");
        pages += 1;
        assert!(page.users.len() <= 100);
        seen.extend(page.users.iter().map(|u| u.id));
        match page.next {
            Some(cursor) => {
                params = ListParams::parse(Some("100"), Some(&cursor)).expect("cursor parses");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "ascending, no repeats"
    );

    // Default limit, plain id as `after`, empty page at the end.
    let page = f
        .svc
        .list(&ListParams::parse(None, Some(&seen[9].to_string())).expect("params"))
        .expect("page");
    assert_eq!(page.users.len(), 20);
    assert_eq!(page.users[0].id, seen[10]);
    let last = f
        .svc
        .list(&ListParams::parse(Some("5"), Some(&seen[249].to_string())).expect("params"))
        .expect("page");
    assert!(last.users.is_empty());
    assert_eq!(last.next, None);

    // Exactly `limit` rows left: no `next`.
    let tail = f
        .svc
        .list(&ListParams::parse(Some("50"), Some(&seen[199].to_string())).expect("params"))
        .expect("page");
    assert_eq!(tail.users.len(), 50);
    assert_eq!(tail.next, None);
}

#[test]
fn statements_are_prepared_once_per_connection() {
    let db = TestDb::migrated();
    let pool = support::pool(db.url(), 1);
    let svc = UserService::new(Arc::new(PgUserRepository::new(pool.clone())));
    let u = svc.create(&create("A", "a@example.com")).expect("a");
    for _ in 0..20 {
        svc.get(u.id).expect("found");
    }
    let mut conn = pool.acquire().expect("the only connection");
    // The simple-query protocol prepares nothing itself.
    let rows = conn
        .client()
        .simple_query("SELECT count(*) FROM pg_prepared_statements")
        .expect("count");
    let server_side = rows
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse::<i64>().ok()),
            _ => None,
        })
        .expect("a count");
    // The create (user and event: one statement) and the SELECT by id,
    // each prepared once.
    assert_eq!(conn.prepared_statements(), 2);
    assert_eq!(server_side, 2);
}

#[test]
fn pool_state_counts_connections() {
    let f = fixture();
    f.svc.create(&create("A", "a@example.com")).expect("a");
    let held = f.pool.acquire().expect("conn");
    let s = f.pool.state();
    assert_eq!(s.max, 4);
    assert!(s.connections >= 1 && s.connections <= 4, "{s:?}");
    assert!(s.in_use() >= 1, "{s:?}");
    drop(held);
}
