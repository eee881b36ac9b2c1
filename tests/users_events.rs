//! The outbox event payload is the API's own representation of the user,
//! byte for byte: what the real binary answered to a create, a patch and a
//! delete equals `events.payload::text`, and the SQL renderer the writing
//! statements use (`user_json`, migration 000004) equals the API encoder
//! (`User::to_json_string`) over a table of awkward values. Also: the
//! idempotency key's stored body is those same bytes.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use support::client::{self, Reply};
use support::service::Service;
use support::TestDb;
use usersvc::users::User;

const USERS: &str = "/api/v1/users";
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Names that exercise the encoders: quotes, backslashes, slashes, HTML,
/// non-ASCII letters, CJK, emoji (with joiners and a variation selector),
/// and the longest name allowed.
fn awkward_names() -> Vec<String> {
    vec![
        r#"Ada "Countess" Lovelace"#.to_owned(),
        r"back\slash \\ double".to_owned(),
        "</script><b>&amp;</b> a/b 'single'".to_owned(),
        "José Ñúñez-Ångström".to_owned(),
        "李小龍 محمد".to_owned(),
        "😀 family 👨\u{200d}👩\u{200d}👧 heart ❤\u{fe0f}".to_owned(),
        "é".repeat(200),
    ]
}

fn payloads(db: &TestDb) -> Vec<(String, String)> {
    db.client()
        .query(
            "SELECT type, payload::text FROM events ORDER BY created_at",
            &[],
        )
        .expect("events")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn call(svc: &Service, method: &str, path: &str, body: &str) -> Reply {
    client::request(svc.addr, method, path, &[JSON], body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

#[test]
fn event_payloads_are_the_api_bytes() {
    let db = TestDb::new();
    let svc = Service::start(&[("DATABASE_URL", db.url())]);
    svc.wait_ready(Duration::from_secs(20));

    let mut answers = Vec::new();
    for (i, name) in awkward_names().iter().enumerate() {
        let email = format!("o'neil+{i}@Bücher.example");
        let r = call(
            &svc,
            "POST",
            USERS,
            &json!({"name": name, "email": email}).to_string(),
        );
        assert_eq!(r.status, 201, "{name}: {}", r.text());
        let id = r.json()["id"].as_i64().expect("id");
        answers.push(("user.created", r.text()));
        // A patch that changes only the e-mail: the payload carries the
        // unchanged name and created_at, which only the statement knows.
        let item = format!("{USERS}/{id}");
        let r = call(
            &svc,
            "PATCH",
            &item,
            &json!({"email": format!("x{i}@example.com")}).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        answers.push(("user.updated", r.text()));
        let get = call(&svc, "GET", &item, "");
        assert_eq!(get.text(), r.text(), "GET shows what PATCH answered");
        let r = call(&svc, "DELETE", &item, "");
        assert_eq!(r.status, 204);
        answers.push(("user.deleted", get.text()));
    }
    let stored = payloads(&db);
    assert_eq!(stored.len(), answers.len());
    for ((kind, body), (stored_kind, payload)) in answers.iter().zip(&stored) {
        assert_eq!(kind, stored_kind);
        assert_eq!(
            payload, body,
            "{kind}: event payload differs from the API's bytes"
        );
    }
}

#[test]
fn idempotent_create_stores_and_replays_the_same_bytes() {
    let db = TestDb::new();
    let svc = Service::start(&[("DATABASE_URL", db.url())]);
    svc.wait_ready(Duration::from_secs(20));
    let body = json!({"name": r#"Q "uote" \ 😀"#, "email": "q@example.com"}).to_string();
    let post = || {
        client::request(
            svc.addr,
            "POST",
            USERS,
            &[JSON, ("Idempotency-Key", "k-1")],
            body.as_bytes(),
        )
        .expect("post")
    };
    let first = post();
    assert_eq!(first.status, 201, "{}", first.text());
    let again = post();
    assert_eq!(again.status, 201);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(
        again.text(),
        first.text(),
        "a replay is the first answer's bytes"
    );
    let get = call(&svc, "GET", &format!("{USERS}/{}", first.json()["id"]), "");
    assert_eq!(get.text(), first.text());
    let stored = payloads(&db);
    assert_eq!(stored.len(), 1, "one user, one event");
    assert_eq!(stored[0].1, first.text());
    let key_body: String = db
        .client()
        .query_one(
            "SELECT response_body FROM idempotency_keys WHERE key = 'k-1'",
            &[],
        )
        .expect("key row")
        .get(0);
    assert_eq!(key_body, first.text());
}

/// The SQL renderer against the API encoder on values the API cannot be
/// made to produce on demand: timestamps on second, millisecond and leap-day
/// boundaries, before 1970, and strings with every JSON escape.
#[test]
fn sql_renderer_equals_the_api_encoder() {
    let db = TestDb::migrated();
    let mut client = db.client();
    let at = |micros: i64| {
        if micros >= 0 {
            UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
        }
    };
    let times: [SystemTime; 6] = [
        at(0),
        at(1_795_510_862_000_000),
        at(1_795_510_862_000_001),
        at(951_782_400_999_999), // 2000-02-29T00:00:00.999999Z
        at(-1),
        SystemTime::now(),
    ];
    let mut strings = awkward_names();
    // Characters the name rules refuse still must not make the two differ.
    strings.extend(
        [
            "\u{0}\u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f}\u{2028}",
            "\"\\/",
            "",
        ]
        .map(String::from),
    );
    // And 100 pseudo-random strings over every plane (xorshift, fixed seed).
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..100 {
        let len = (next() % 24) as usize;
        let s: String = (0..len)
            .filter_map(|_| {
                let r = next();
                // Half ASCII (where the escapes are), half anywhere.
                let c = if r % 2 == 0 {
                    (r >> 8) % 0x80
                } else {
                    (r >> 8) % 0x11_0000
                };
                char::from_u32(c as u32)
            })
            .collect();
        strings.push(s);
    }
    let mut checked = 0;
    for (i, name) in strings.iter().enumerate() {
        for (j, t) in times.iter().enumerate() {
            let user = User {
                id: (i * 10 + j) as i64 + 1,
                name: name.replace('\u{0}', ""), // text cannot hold NUL
                email: format!("u{i}@bücher.example"),
                created_at: *t,
                updated_at: times[(j + 1) % times.len()],
            };
            let sql: String = client
                .query_one(
                    "SELECT user_json($1, $2, $3, $4, $5)",
                    &[
                        &user.id,
                        &user.name,
                        &user.email,
                        &user.created_at,
                        &user.updated_at,
                    ],
                )
                .expect("user_json")
                .get(0);
            assert_eq!(sql, user.to_json_string(), "{user:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, strings.len() * times.len());
}

/// A write whose connection died (the backend killed while idle in the
/// pool) has an unknown outcome; the repository's recovery finds out on a
/// live connection and applies it once: each create, patch and delete still
/// answers as usual and writes exactly one event.
#[test]
fn writes_on_killed_connections_are_recovered_exactly_once() {
    let db = TestDb::new();
    let svc = Service::start(&[
        ("DATABASE_URL", db.url()),
        ("MAX_CONNECTIONS", "1"),
        ("LOG_LEVEL", "debug"),
    ]);
    svc.wait_ready(Duration::from_secs(20));
    let ada = call(
        &svc,
        "POST",
        USERS,
        r#"{"name":"Ada","email":"ada@example.com"}"#,
    );
    assert_eq!(ada.status, 201, "{}", ada.text());
    let item = format!("{USERS}/{}", ada.json()["id"]);
    let mut admin = db.client();
    let kill = |admin: &mut postgres::Client| {
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'usersvc'",
                &[&db.name()],
            )
            .expect("terminate")
            .get(0);
        assert_eq!(killed, 1, "the pool's one connection");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND application_name = 'usersvc'",
                    &[&db.name()],
                )
                .expect("count")
                .get(0);
            if left == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "backend still there");
            std::thread::yield_now();
        }
    };
    let steps = [
        (
            "POST",
            USERS.to_owned(),
            r#"{"name":"Bob","email":"bob@example.com"}"#,
            201,
        ),
        ("PATCH", item.clone(), r#"{"name":"Ada K"}"#, 200),
        ("DELETE", item.clone(), "", 204),
    ];
    for (method, path, body, want) in &steps {
        kill(&mut admin);
        let r = call(&svc, method, path, body);
        assert_eq!(r.status, *want, "{method} {path}: {}", r.text());
    }
    let recovered = svc
        .lines()
        .iter()
        .filter(|l| l.contains("discarding dead connection"))
        .count();
    assert_eq!(
        recovered,
        steps.len(),
        "each write went through the recovery"
    );
    let kinds: Vec<String> = payloads(&db).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "user.created",
            "user.created",
            "user.updated",
            "user.deleted"
        ]
    );
    let users: i64 = admin
        .query_one("SELECT count(*) FROM users", &[])
        .expect("count")
        .get(0);
    assert_eq!(users, 1, "Bob only");
}
