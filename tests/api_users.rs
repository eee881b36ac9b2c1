//! The users API over HTTP against the real binary and a real PostgreSQL:
//! every endpoint's success and error answers (statuses, headers,
//! problem+json bodies), the rows and outbox events behind them, and the
//! concurrency guarantees (one e-mail, one row; idempotent creates).

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use support::client::{self, Reply};
use support::service::Service;
use support::TestDb;

const USERS: &str = "/api/v1/users";
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A service on a database of its own. `svc` is declared first so the
/// process is killed before its database is dropped.
struct Api {
    svc: Service,
    db: TestDb,
}

impl Api {
    fn start(extra: &[(&str, &str)]) -> Api {
        let db = TestDb::new();
        let mut env = vec![("DATABASE_URL", db.url())];
        env.extend_from_slice(extra);
        let svc = Service::start(&env);
        svc.wait_ready(Duration::from_secs(20));
        Api { svc, db }
    }

    fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let r = client::request(self.svc.addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        // Every response, success or error, carries a request id.
        assert!(
            r.header("X-Request-ID").is_some_and(|v| !v.is_empty()),
            "{method} {path} -> {} without X-Request-ID",
            r.status
        );
        r
    }

    fn get(&self, path: &str) -> Reply {
        self.req("GET", path, &[], b"")
    }

    fn post(&self, body: &str) -> Reply {
        self.req("POST", USERS, &[JSON], body.as_bytes())
    }

    fn patch(&self, id: i64, body: &str) -> Reply {
        self.req("PATCH", &format!("{USERS}/{id}"), &[JSON], body.as_bytes())
    }

    /// Creates a user; asserts 201 and returns its JSON.
    fn create(&self, name: &str, email: &str) -> Value {
        let r = self.post(&json!({"name": name, "email": email}).to_string());
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    }

    fn count(&self, sql: &str) -> i64 {
        self.db
            .client()
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    fn users_in_table(&self) -> i64 {
        self.count("SELECT count(*) FROM users")
    }
}

/// Asserts an RFC 9457 problem: status, content type, the five members, and
/// `request_id` equal to the `X-Request-ID` header. Returns the body.
fn assert_problem(r: &Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(
        r.header("Content-Type"),
        Some("application/problem+json"),
        "{}",
        r.text()
    );
    let v = r.json();
    assert!(v["type"].is_string(), "type: {v}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert!(v["detail"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert_eq!(v["status"], json!(status), "{v}");
    let rid = r.header("X-Request-ID").expect("X-Request-ID");
    assert_eq!(v["request_id"], json!(rid), "{v}");
    v
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &s[i..] {
        "Z" | "z" => true,
        off => {
            let o = off.as_bytes();
            o.len() == 6
                && matches!(o[0], b'+' | b'-')
                && o[1..3].iter().all(u8::is_ascii_digit)
                && o[3] == b':'
                && o[4..6].iter().all(u8::is_ascii_digit)
        }
    }
}

/// Asserts the documented user shape: exactly the five members.
fn assert_user(v: &Value, name: &str, email: &str) -> i64 {
    let obj = v.as_object().expect("user is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "email", "id", "name", "updated_at"],
        "{v}"
    );
    assert_eq!(v["name"], name);
    assert_eq!(v["email"], email);
    for k in ["created_at", "updated_at"] {
        let t = v[k].as_str().expect("timestamp string");
        assert!(is_rfc3339(t), "{k} not RFC 3339: {t}");
    }
    let id = v["id"].as_i64().expect("integer id");
    assert!(id > 0);
    id
}

fn field_errors(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {v}"))
        .iter()
        .map(|e| {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            e["field"].as_str().expect("field").to_owned()
        })
        .collect()
}

#[test]
fn rfc3339_checker_is_strict() {
    assert!(is_rfc3339("2024-01-02T03:04:05Z"));
    assert!(is_rfc3339("2024-01-02T03:04:05.123456Z"));
    assert!(is_rfc3339("2024-01-02T03:04:05+02:00"));
    assert!(!is_rfc3339("2024-01-02 03:04:05Z"));
    assert!(!is_rfc3339("2024-01-02T03:04:05"));
    assert!(!is_rfc3339("2024-01-02T03:04:05.Z"));
}

/// POST 201 with `Location` and the normalised user; the `Location` serves
/// the same document; the row and one `user.created` event are stored.
#[test]
fn create_answers_201_with_location_and_the_user() {
    let api = Api::start(&[]);
    let r = api.post(r#"{"name":"  Ada Lovelace ","email":" Ada@Example.COM "}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let user = r.json();
    let id = assert_user(&user, "Ada Lovelace", "ada@example.com");
    assert_eq!(user["created_at"], user["updated_at"]);
    let location = r.header("Location").expect("Location");
    assert_eq!(location, format!("{USERS}/{id}"));

    let got = api.get(location);
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), user);
    // `charset` parameters and case in the media type are fine.
    let r = api.req(
        "POST",
        USERS,
        &[("content-type", "Application/JSON; charset=utf-8")],
        br#"{"name":"Bob","email":"bob@example.com"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());

    assert_eq!(api.users_in_table(), 2);
    let row = api
        .db
        .client()
        .query_one(
            "SELECT type, payload::text FROM events WHERE (payload->>'id')::bigint = $1",
            &[&id],
        )
        .expect("one event for the user");
    assert_eq!(row.get::<_, String>(0), "user.created");
    let payload: Value = serde_json::from_str(&row.get::<_, String>(1)).expect("payload JSON");
    assert_eq!(
        payload, user,
        "the event carries the user as the API shows it"
    );
}

/// 422 lists every invalid field at once, whatever the fault (missing,
/// empty, malformed, wrong JSON type); nothing is written.
#[test]
fn create_with_invalid_fields_is_422_listing_every_field() {
    let api = Api::start(&[]);
    let cases: [(&str, &[&str]); 9] = [
        ("{}", &["name", "email"]),
        (
            r#"{"name":"   ","email":"not-an-address"}"#,
            &["name", "email"],
        ),
        (r#"{"name":"Ada"}"#, &["email"]),
        (r#"{"email":"ada@example.com"}"#, &["name"]),
        (r#"{"name":"x\u0000y","email":"a@b"}"#, &["name", "email"]),
        (r#"{"name":5,"email":true}"#, &["name", "email"]),
        (r#"{"name":"Ada","email":null}"#, &["email"]),
        (r#"{"name":["Ada"],"email":"nope"}"#, &["name", "email"]),
        (r#"{"email":{"a":1}}"#, &["name", "email"]),
    ];
    for (body, fields) in cases {
        let r = api.post(body);
        let v = assert_problem(&r, 422);
        assert_eq!(
            v["type"], "https://usersvc.dev/problems/validation",
            "{body}"
        );
        assert_eq!(field_errors(&v), *fields, "{body}: {v}");
    }
    let long = json!({"name": "n".repeat(201), "email": format!("{}@x.io", "a".repeat(65))});
    let v = assert_problem(&api.post(&long.to_string()), 422);
    assert_eq!(field_errors(&v), ["name", "email"]);
    // Members that are no field are ignored on create.
    let r = api.post(r#"{"name":"Ada","email":"ada@example.com","id":99,"admin":true}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_ne!(r.json()["id"], 99);
    api.db
        .client()
        .batch_execute("TRUNCATE users, events")
        .expect("truncate");
    assert_eq!(api.users_in_table(), 0);
    assert_eq!(api.count("SELECT count(*) FROM events"), 0);
}

/// The e-mail is unique case-insensitively (and after trimming): 409.
#[test]
fn duplicate_email_is_409_case_insensitive() {
    let api = Api::start(&[]);
    api.create("Ada", "ada@example.com");
    for email in ["ada@example.com", "ADA@Example.Com", "  Ada@EXAMPLE.com "] {
        let r = api.post(&json!({"name": "Other", "email": email}).to_string());
        let v = assert_problem(&r, 409);
        assert_eq!(v["type"], "https://usersvc.dev/problems/email-taken");
    }
    assert_eq!(api.users_in_table(), 1);
    assert_eq!(api.count("SELECT count(*) FROM events"), 1);
}

/// Issue 13's refusals, on create and patch: names of invisible characters
/// only, bidi overrides, line separators (422, nothing written); one
/// mailbox however its domain is spelt (IDNA), stored in its Unicode form.
#[test]
fn hostile_names_are_422_and_idna_spellings_are_one_mailbox() {
    let api = Api::start(&[]);
    let created = api.create("Ada", "u@bücher.de");
    let id = created["id"].as_i64().expect("id");
    for name in [
        "\u{200b}",
        "\u{200b}\u{200b}\u{2060}",
        "\u{202e}gnp.exe",
        "Ada\u{2066}x\u{2069}",
        "line\u{2028}separator",
        "\u{3164}",
    ] {
        let v = assert_problem(
            &api.post(&json!({"name": name, "email": "new@example.com"}).to_string()),
            422,
        );
        assert_eq!(field_errors(&v), ["name"], "{name:?}: {v}");
        let v = assert_problem(&api.patch(id, &json!({ "name": name }).to_string()), 422);
        assert_eq!(field_errors(&v), ["name"], "{name:?}: {v}");
    }
    // NFC and space mapping: what is stored is the normalised name.
    let r = api.patch(
        id,
        &json!({"name": "\u{a0}Jose\u{301}\u{3000}\u{3000}K "}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "José K");

    assert_eq!(created["email"], "u@bücher.de");
    for spelling in ["u@xn--bcher-kva.de", "U@BÜCHER.DE", "u@bu\u{308}cher.de"] {
        let r = api.post(&json!({"name": "Twin", "email": spelling}).to_string());
        assert_problem(&r, 409);
    }
    let other = api.create("Bob", "bob@xn--mnchen-3ya.de");
    assert_eq!(other["email"], "bob@münchen.de");
    let bob = other["id"].as_i64().expect("id");
    assert_problem(&api.patch(bob, r#"{"email":"u@xn--bcher-kva.de"}"#), 409);
    // Its own address in another spelling is no conflict.
    let r = api.patch(id, r#"{"email":"u@XN--BCHER-KVA.de"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["email"], "u@bücher.de");
    assert_eq!(api.users_in_table(), 2);
}

/// A body that is not JSON, or JSON but not an object: 400.
#[test]
fn bad_json_or_non_object_is_400() {
    let api = Api::start(&[]);
    for body in [
        "",
        "{",
        "{\"name\":\"a\",}",
        "not json",
        "[]",
        "[{\"name\":\"a\",\"email\":\"a@b.io\"}]",
        "\"a string\"",
        "42",
        "null",
        "true",
        "{\"name\":\"a\"} trailing",
    ] {
        let r = api.post(body);
        assert_problem(&r, 400);
    }
    // Invalid UTF-8 inside a JSON string.
    let r = api.req(
        "POST",
        USERS,
        &[JSON],
        b"{\"name\":\"\xff\",\"email\":\"a@b.io\"}",
    );
    assert_problem(&r, 400);
    assert_eq!(api.users_in_table(), 0);
}

/// A member given twice is refused (400) instead of "last one wins", on
/// create and patch, however the name is spelt; nothing is written.
#[test]
fn duplicate_members_are_400() {
    let api = Api::start(&[]);
    let id = api.create("Ada", "ada@example.com")["id"]
        .as_i64()
        .expect("id");
    for (body, member) in [
        (r#"{"name":"A","email":"bad","email":"ok@x.io"}"#, "email"),
        (r#"{"name":"A","n\u0061me":"B","email":"b@x.io"}"#, "name"),
        (r#"{"name":"A","email":"c@x.io","x":1,"x":2}"#, "x"),
    ] {
        let v = assert_problem(&api.post(body), 400);
        let detail = v["detail"].as_str().expect("detail");
        assert!(
            detail.contains(&format!("member \"{member}\" more than once")),
            "{body}: {detail}"
        );
        let v = assert_problem(&api.patch(id, body), 400);
        assert!(v["detail"]
            .as_str()
            .expect("detail")
            .contains("more than once"));
    }
    // More members than any user body needs: 400 too.
    let many: Vec<String> = (0..40).map(|i| format!("\"m{i}\":0")).collect();
    let v = assert_problem(&api.post(&format!("{{{}}}", many.join(","))), 400);
    assert!(v["detail"]
        .as_str()
        .expect("detail")
        .contains("more than 32 members"));
    assert_eq!(api.users_in_table(), 1);
    let now = api.get(&format!("{USERS}/{id}")).json();
    assert_user(&now, "Ada", "ada@example.com");
}

/// Anything but `application/json` (or no `Content-Type`) is 415, with an
/// `Accept` hint, on POST and PATCH alike.
#[test]
fn wrong_or_missing_content_type_is_415() {
    let api = Api::start(&[]);
    let id = api.create("Ada", "ada@example.com")["id"]
        .as_i64()
        .expect("id");
    let body = br#"{"name":"Bob","email":"bob@example.com"}"#;
    let item = format!("{USERS}/{id}");
    for (method, path) in [("POST", USERS), ("PATCH", item.as_str())] {
        for headers in [
            &[("Content-Type", "text/plain")][..],
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &[("Content-Type", "application/jsonx")],
            &[("Content-Type", "")],
            &[],
        ] {
            let r = api.req(method, path, headers, body);
            assert_problem(&r, 415);
            assert_eq!(r.header("Accept"), Some("application/json"), "{headers:?}");
        }
    }
    assert_eq!(api.users_in_table(), 1);
}

/// Sends `body` with chunked framing (no `Content-Length`), so the limit is
/// found while reading the body.
fn send_chunked(api: &Api, method: &str, path: &str, body: &str) -> Reply {
    let mut conn = client::Conn::open(api.svc.addr).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    conn.write_raw(head.as_bytes()).expect("write");
    conn.read_reply(false).expect("reply")
}

/// A body over `MAX_BODY_BYTES` is 413 problem+json on POST and PATCH, and
/// nothing is written; a body within the limit is read.
#[test]
fn body_over_max_body_bytes_is_413() {
    let api = Api::start(&[("MAX_BODY_BYTES", "256")]);
    let id = api.create("Ada", "ada@example.com")["id"]
        .as_i64()
        .expect("id");
    let big = json!({"name": "n".repeat(300), "email": "big@example.com"}).to_string();
    assert!(big.len() > 256);
    let item = format!("{USERS}/{id}");
    for (method, path) in [("POST", USERS), ("PATCH", item.as_str())] {
        // Chunked: the limit is hit while reading; a full problem.
        let r = send_chunked(&api, method, path, &big);
        let v = assert_problem(&r, 413);
        assert!(
            v["detail"].as_str().is_some_and(|d| d.contains("256")),
            "{v}"
        );
        // Declared Content-Length over the limit: refused before reading.
        let r =
            client::request(api.svc.addr, method, path, &[JSON], big.as_bytes()).expect("reply");
        assert_eq!(r.status, 413);
        assert_eq!(r.header("Connection"), Some("close"));
    }
    // Just under the limit is read (and judged on its fields: 422).
    let fits = json!({"name": "n".repeat(201), "email": "x@example.com"}).to_string();
    assert!(fits.len() <= 256);
    assert_problem(&api.post(&fits), 422);
    assert_eq!(api.users_in_table(), 1);
    assert_eq!(api.get(&item).json()["name"], "Ada");
}

/// SPEC: every error body is problem+json and every response carries
/// `X-Request-ID`. Requests the HTTP layer refuses before routing (a
/// declared `Content-Length` over `MAX_BODY_BYTES`; a header value with a
/// control character) get the same
/// problem+json body and a fresh request id, rendered for vendor/tiny_http's
/// `send_error` by `Limits::error_body`.
#[test]
fn requests_refused_by_the_http_layer_get_a_problem() {
    let api = Api::start(&[("MAX_BODY_BYTES", "256")]);
    let big = json!({"name": "n".repeat(300), "email": "big@example.com"}).to_string();
    assert_problem(&api.post(&big), 413);
    let mut conn = client::Conn::open(api.svc.addr).expect("connect");
    let body = br#"{"name":"Ada","email":"ada@example.com"}"#;
    let mut raw = format!(
        "POST {USERS} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nIdempotency-Key: ",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(b"k\x01\r\n\r\n");
    raw.extend_from_slice(body);
    conn.write_raw(&raw).expect("write");
    let r = conn.read_reply(false).expect("reply");
    assert_problem(&r, 400);
    assert_eq!(api.users_in_table(), 0);
}

/// obs-text (bytes 0x80-0xFF) is allowed in a field value (RFC 9110 §5.5):
/// a UTF-8 `User-Agent` is served like any other; an `Idempotency-Key` the
/// service reads is still held to its own rule (visible ASCII), a 400 that
/// names the header, and nothing is created.
#[test]
fn non_ascii_header_values_reach_the_service() {
    let api = Api::start(&[]);
    let body = br#"{"name":"Ada","email":"ada@example.com"}"#;
    let send = |extra: &[u8]| {
        let mut conn = client::Conn::open(api.svc.addr).expect("connect");
        let mut raw = format!(
            "POST {USERS} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(extra);
        raw.extend_from_slice(b"\r\n\r\n");
        raw.extend_from_slice(body);
        conn.write_raw(&raw).expect("write");
        conn.read_reply(false).expect("reply")
    };
    let r = send(b"Idempotency-Key: k\xc3\x97");
    assert_problem(&r, 400);
    assert!(r.text().contains("Idempotency-Key"), "{}", r.text());
    assert_eq!(api.users_in_table(), 0);
    let r = send(b"User-Agent: caf\xc3\xa9/1.0 \xff");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(api.users_in_table(), 1);
}

/// A request target in absolute-form (`GET http://host/path`, as a proxy
/// sends it; RFC 9112 §3.2.2: a server must accept it) is the same request
/// as in origin-form: its route, its query, its answer.
#[test]
fn absolute_form_targets_are_served_like_origin_form() {
    let api = Api::start(&[]);
    let id = api.create("Ada", "ada@example.com")["id"]
        .as_i64()
        .expect("id");
    for target in [
        format!("http://test{USERS}/{id}"),
        format!("HTTP://test:8080{USERS}/{id}"),
        format!("http://test{USERS}?limit=1"),
    ] {
        let mut conn = client::Conn::open(api.svc.addr).expect("connect");
        conn.write_raw(format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .expect("write");
        let r = conn.read_reply(false).expect("reply");
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let body = r.json();
        let user = body.get("users").and_then(|u| u.get(0)).unwrap_or(&body);
        assert_eq!(user["id"], id, "{target}: {body}");
    }
    let mut conn = client::Conn::open(api.svc.addr).expect("connect");
    conn.write_raw(b"GET http://test/healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("write");
    assert_eq!(conn.read_reply(false).expect("reply").status, 200);
}

/// GET: 200 for a user, 404 for none, 400 for ids that are not positive
/// integers.
#[test]
fn get_user_200_404_400() {
    let api = Api::start(&[]);
    let user = api.create("Ada", "ada@example.com");
    let id = user["id"].as_i64().expect("id");
    let r = api.get(&format!("{USERS}/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_user(&r.json(), "Ada", "ada@example.com");
    assert_eq!(r.json(), user);

    for missing in [id + 1, 999_999, i64::MAX] {
        assert_problem(&api.get(&format!("{USERS}/{missing}")), 404);
    }
    for bad in [
        "abc",
        "0",
        "-1",
        "+1",
        "1.5",
        "1e3",
        "%20",
        "99999999999999999999",
    ] {
        assert_problem(&api.get(&format!("{USERS}/{bad}")), 400);
    }
}

/// Keyset pagination: following `next` from page to page visits every user
/// once, in id order, and ends with `next: null`; `after` also takes an id.
#[test]
fn list_walks_every_page_with_next_until_null() {
    let api = Api::start(&[]);
    let empty = api.get(USERS);
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json(), json!({"users": [], "next": null}));

    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            api.create(&format!("U{i}"), &format!("u{i}@example.com"))["id"]
                .as_i64()
                .expect("id"),
        );
    }
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut path = format!("{USERS}?limit=3");
    loop {
        let r = api.get(&path);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let page = r.json();
        let users = page["users"].as_array().expect("users");
        pages.push(users.len());
        for u in users {
            assert_user(
                u,
                u["name"].as_str().expect("name"),
                u["email"].as_str().expect("email"),
            );
            seen.push(u["id"].as_i64().expect("id"));
        }
        match &page["next"] {
            Value::Null => break,
            Value::String(next) => path = format!("{USERS}?limit=3&after={next}"),
            other => panic!("next is {other}"),
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(pages, [3, 3, 1]);
    assert_eq!(seen, ids);

    // Exactly a full last page: `next` must be null there, not on an extra empty page.
    let r = api.get(&format!("{USERS}?limit=7"));
    assert_eq!(r.json()["next"], Value::Null);
    assert_eq!(r.json()["users"].as_array().map(Vec::len), Some(7));
    // Default limit (20) covers all seven.
    let r = api.get(USERS);
    assert_eq!(r.json()["users"].as_array().map(Vec::len), Some(7));
    // A plain id is accepted as `after`.
    let r = api.get(&format!("{USERS}?after={}&limit=100", ids[4]));
    let rest: Vec<i64> = r.json()["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(rest, ids[5..]);
}

/// `limit` outside 1..=100 or not a number, or an `after` that is no cursor:
/// 400 naming the parameter.
#[test]
fn list_with_bad_query_is_400() {
    let api = Api::start(&[]);
    for (query, fields) in [
        ("limit=0", &["limit"][..]),
        ("limit=101", &["limit"]),
        ("limit=abc", &["limit"]),
        ("limit=-1", &["limit"]),
        ("limit=", &["limit"]),
        ("after=not-a-cursor!", &["after"]),
        ("after=-5", &["after"]),
        ("limit=0&after=%%%", &["limit", "after"]),
    ] {
        let r = api.get(&format!("{USERS}?{query}"));
        let v = assert_problem(&r, 400);
        assert_eq!(field_errors(&v), fields, "{query}");
    }
    for ok in ["limit=1", "limit=100"] {
        assert_eq!(api.get(&format!("{USERS}?{ok}")).status, 200, "{ok}");
    }
}

/// PATCH: 200 with the changed user (`updated_at` moves, `created_at` does
/// not), 404, 409, 422, 400 and 415; failed patches change nothing.
#[test]
fn patch_answers_200_404_409_422_400_415() {
    let api = Api::start(&[]);
    let ada = api.create("Ada", "ada@example.com");
    let id = ada["id"].as_i64().expect("id");
    api.create("Bob", "bob@example.com");

    thread::sleep(Duration::from_millis(5));
    let r = api.patch(id, r#"{"name":" Ada King "}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_user(&v, "Ada King", "ada@example.com");
    assert_eq!(v["id"], ada["id"]);
    assert_eq!(v["created_at"], ada["created_at"]);
    assert_ne!(v["updated_at"], ada["updated_at"]);
    assert!(v["updated_at"].as_str() > ada["updated_at"].as_str());

    let r = api.patch(id, r#"{"email":"ADA.KING@example.com"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_user(&r.json(), "Ada King", "ada.king@example.com");
    // Changing the e-mail to its own value (any case) is no conflict.
    let r = api.patch(id, r#"{"email":"Ada.King@Example.com","name":"Ada"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(api.get(&format!("{USERS}/{id}")).json(), r.json());

    assert_problem(&api.patch(999_999, r#"{"name":"X"}"#), 404);
    let v = assert_problem(&api.patch(id, r#"{"email":"BOB@example.com"}"#), 409);
    assert_eq!(v["type"], "https://usersvc.dev/problems/email-taken");

    let v = assert_problem(&api.patch(id, "{}"), 422);
    assert_eq!(field_errors(&v), ["body"]);
    let v = assert_problem(&api.patch(id, r#"{"name":"","email":"nope"}"#), 422);
    assert_eq!(field_errors(&v), ["name", "email"]);
    let v = assert_problem(&api.patch(id, r#"{"name":42}"#), 422);
    assert_eq!(field_errors(&v), ["name"]);
    let v = assert_problem(&api.patch(id, r#"{"email":false,"name":""}"#), 422);
    assert_eq!(field_errors(&v), ["name", "email"]);
    // `null` is not "leave unchanged", and unknown members are not ignored.
    let v = assert_problem(
        &api.patch(id, r#"{"name":null,"email":"n@example.com"}"#),
        422,
    );
    assert_eq!(field_errors(&v), ["name"]);
    let v = assert_problem(&api.patch(id, r#"{"nmae":"Typo"}"#), 422);
    assert_eq!(field_errors(&v), ["nmae"]);
    let v = assert_problem(&api.patch(id, r#"{"name":"Ada","id":7}"#), 422);
    assert_eq!(field_errors(&v), ["id"]);

    assert_problem(&api.patch(id, "{"), 400);
    assert_problem(&api.patch(id, "[1]"), 400);
    for bad in ["abc", "0", "-1"] {
        let r = api.req(
            "PATCH",
            &format!("{USERS}/{bad}"),
            &[JSON],
            br#"{"name":"X"}"#,
        );
        assert_problem(&r, 400);
    }
    let r = api.req(
        "PATCH",
        &format!("{USERS}/{id}"),
        &[("Content-Type", "text/plain")],
        br#"{"name":"X"}"#,
    );
    assert_problem(&r, 415);

    let now = api.get(&format!("{USERS}/{id}")).json();
    assert_user(&now, "Ada", "ada.king@example.com");
}

/// DELETE: 204 with no body, then the user is gone (GET, PATCH, DELETE 404),
/// and its e-mail is free again.
#[test]
fn delete_is_204_then_404() {
    let api = Api::start(&[]);
    let id = api.create("Ada", "ada@example.com")["id"]
        .as_i64()
        .expect("id");
    let path = format!("{USERS}/{id}");
    let r = api.req("DELETE", &path, &[], b"");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert!(r.header("Content-Type").is_none(), "{:?}", r.headers);
    assert_problem(&api.req("DELETE", &path, &[], b""), 404);
    assert_problem(&api.get(&path), 404);
    assert_problem(&api.patch(id, r#"{"name":"X"}"#), 404);
    for bad in ["abc", "0", "-1"] {
        assert_problem(&api.req("DELETE", &format!("{USERS}/{bad}"), &[], b""), 400);
    }
    assert_eq!(api.users_in_table(), 0);
    api.create("Ada again", "ADA@example.com");
}

/// Exactly one outbox event per successful create, update and delete, in
/// order, each carrying the user as the API showed it; failures write none.
#[test]
fn every_change_writes_one_event() {
    let api = Api::start(&[]);
    let created = api.create("Ada", "ada@example.com");
    let id = created["id"].as_i64().expect("id");
    api.create("Bob", "bob@example.com");
    let patched = api.patch(id, r#"{"name":"Ada K"}"#).json();
    // Failures: 409, 422, 404 write nothing.
    assert_eq!(api.patch(id, r#"{"email":"bob@example.com"}"#).status, 409);
    assert_eq!(api.patch(id, "{}").status, 422);
    assert_eq!(api.patch(999, r#"{"name":"x"}"#).status, 404);
    assert_eq!(
        api.post(r#"{"name":"B","email":"bob@example.com"}"#).status,
        409
    );
    assert_eq!(
        api.req("DELETE", &format!("{USERS}/{id}"), &[], b"").status,
        204
    );
    assert_eq!(
        api.req("DELETE", &format!("{USERS}/{id}"), &[], b"").status,
        404
    );

    let rows = api
        .db
        .client()
        .query(
            "SELECT type, payload::text FROM events WHERE (payload->>'id')::bigint = $1 \
             ORDER BY created_at",
            &[&id],
        )
        .expect("events");
    let events: Vec<(String, Value)> = rows
        .iter()
        .map(|r| {
            let payload: String = r.get(1);
            (r.get(0), serde_json::from_str(&payload).expect("payload"))
        })
        .collect();
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["user.created", "user.updated", "user.deleted"]);
    assert_eq!(events[0].1, created);
    assert_eq!(events[1].1, patched);
    assert_eq!(events[2].1["id"], json!(id));
    assert_eq!(api.count("SELECT count(*) FROM events"), 4);
}

/// A sane caller `X-Request-ID` is echoed on every answer (and is the
/// problem's `request_id`); an unsafe one is replaced by a fresh UUID.
#[test]
fn request_id_is_echoed_and_errors_carry_it() {
    let api = Api::start(&[]);
    let id = api.create("Ada", "ada@example.com")["id"]
        .as_i64()
        .expect("id");
    let item = format!("{USERS}/{id}");
    let rid = ("X-Request-ID", "trace-me-123");
    type Call<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a [u8], u16);
    let calls: Vec<Call> = vec![
        (
            "POST",
            USERS.into(),
            vec![rid, JSON],
            br#"{"name":"B","email":"b@example.com"}"#,
            201,
        ),
        ("POST", USERS.into(), vec![rid, JSON], b"{}", 422),
        ("POST", USERS.into(), vec![rid, JSON], b"[", 400),
        ("POST", USERS.into(), vec![rid], b"{}", 415),
        (
            "POST",
            USERS.into(),
            vec![rid, JSON],
            br#"{"name":"A","email":"ada@example.com"}"#,
            409,
        ),
        ("GET", item.clone(), vec![rid], b"", 200),
        ("GET", format!("{USERS}/424242"), vec![rid], b"", 404),
        ("GET", format!("{USERS}/abc"), vec![rid], b"", 400),
        ("GET", format!("{USERS}?limit=2"), vec![rid], b"", 200),
        ("GET", format!("{USERS}?limit=0"), vec![rid], b"", 400),
        (
            "PATCH",
            item.clone(),
            vec![rid, JSON],
            br#"{"name":"C"}"#,
            200,
        ),
        ("PUT", item.clone(), vec![rid, JSON], b"{}", 405),
        ("GET", "/api/v1/nope".into(), vec![rid], b"", 404),
        ("DELETE", item.clone(), vec![rid], b"", 204),
        ("DELETE", item.clone(), vec![rid], b"", 404),
    ];
    for (method, path, headers, body, status) in calls {
        let r = api.req(method, &path, &headers, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(
            r.header("X-Request-ID"),
            Some("trace-me-123"),
            "{method} {path}"
        );
        if status >= 400 {
            assert_problem(&r, status);
        }
        if status == 405 {
            let allow = r.header("Allow").expect("Allow on 405");
            for m in ["GET", "PATCH", "DELETE"] {
                assert!(allow.contains(m), "Allow: {allow}");
            }
        }
    }
    // Unsafe or missing ids get a fresh UUID, distinct per request.
    let long = "a".repeat(129);
    let mut seen = Vec::new();
    for h in [
        &[("X-Request-ID", "has space")][..],
        &[("X-Request-ID", long.as_str())],
        &[],
    ] {
        let r = api.req("GET", &format!("{USERS}/0"), h, b"");
        let v = assert_problem(&r, 400);
        let got = r.header("X-Request-ID").expect("id").to_owned();
        assert!(uuid::Uuid::parse_str(&got).is_ok(), "{got}");
        assert_eq!(v["request_id"], json!(got));
        seen.push(got);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3);
}

/// 50 simultaneous creates with one e-mail (in varying case): exactly one
/// 201, 49 × 409, one row, one event.
#[test]
fn concurrent_creates_with_one_email_make_one_user() {
    let api = Api::start(&[("MAX_CONNECTIONS", "8"), ("QUEUE_DEPTH", "100")]);
    let n = 50;
    let barrier = Arc::new(Barrier::new(n));
    let addr = api.svc.addr;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let email = if i % 2 == 0 {
                    "race@example.com"
                } else {
                    "RACE@Example.com"
                };
                let body = json!({"name": format!("racer {i}"), "email": email}).to_string();
                let mut conn = client::Conn::open(addr).expect("connect");
                barrier.wait();
                conn.send("POST", USERS, &[JSON], body.as_bytes())
                    .expect("reply")
            })
        })
        .collect();
    let replies: Vec<Reply> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let created = replies.iter().filter(|r| r.status == 201).count();
    let conflicts: Vec<&Reply> = replies.iter().filter(|r| r.status == 409).collect();
    assert_eq!(
        (created, conflicts.len()),
        (1, 49),
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in conflicts {
        assert_problem(r, 409);
    }
    assert_eq!(api.users_in_table(), 1);
    assert_eq!(api.count("SELECT count(*) FROM events"), 1);
}

fn post_with_key(addr: std::net::SocketAddr, key: &str, body: &str) -> Reply {
    client::request(
        addr,
        "POST",
        USERS,
        &[JSON, ("Idempotency-Key", key)],
        body.as_bytes(),
    )
    .expect("reply")
}

/// The same key and body replays the first response byte for byte (with
/// `Idempotent-Replayed: true`) and creates nothing more; the same key with
/// another body is 422; a failed create does not burn the key.
#[test]
fn idempotent_create_replays_and_rejects_mismatch() {
    let api = Api::start(&[]);
    let addr = api.svc.addr;
    let body = r#"{"name":"Ada","email":"ada@example.com"}"#;
    let first = post_with_key(addr, "key-1", body);
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(first.header("Idempotent-Replayed").is_none());
    let id = assert_user(&first.json(), "Ada", "ada@example.com");
    assert_eq!(
        first.header("Location"),
        Some(format!("{USERS}/{id}").as_str())
    );
    // The first answer names the user's version, as a GET of it does.
    let tag = first
        .header("ETag")
        .expect("a keyed create carries an ETag");
    let got = client::request(addr, "GET", &format!("{USERS}/{id}"), &[], b"").expect("reply");
    assert_eq!(got.header("ETag"), Some(tag));

    // Whitespace and key order do not matter: same fields, same request.
    for again in [body, r#"{ "email": "ada@example.com", "name": "Ada" }"#] {
        let replay = post_with_key(addr, "key-1", again);
        assert_eq!(replay.status, 201);
        assert_eq!(replay.body, first.body, "identical body");
        assert_eq!(replay.header("Idempotent-Replayed"), Some("true"));
        assert_eq!(replay.header("Location"), first.header("Location"));
        assert_eq!(replay.header("ETag"), Some(tag), "the same version");
        assert_eq!(replay.header("Content-Type"), Some("application/json"));
    }
    // A key stored before the version was kept (migration 7) still replays,
    // without an ETag.
    api.db
        .client()
        .execute("UPDATE idempotency_keys SET resource_version = NULL", &[])
        .expect("forget the version");
    let old = post_with_key(addr, "key-1", body);
    assert_eq!((old.status, &old.body), (201, &first.body));
    assert_eq!(old.header("Idempotent-Replayed"), Some("true"));
    assert!(old.header("ETag").is_none(), "{:?}", old.header("ETag"));

    let v = assert_problem(
        &post_with_key(
            addr,
            "key-1",
            r#"{"name":"Ada","email":"other@example.com"}"#,
        ),
        422,
    );
    assert_eq!(
        v["type"],
        "https://usersvc.dev/problems/idempotency-key-reused"
    );
    assert_eq!(api.users_in_table(), 1);
    assert_eq!(api.count("SELECT count(*) FROM events"), 1);
    assert_eq!(api.count("SELECT count(*) FROM idempotency_keys"), 1);

    // A failed create is not remembered: the key can be used again.
    assert_problem(
        &post_with_key(addr, "key-2", r#"{"name":"","email":"x"}"#),
        422,
    );
    assert_problem(
        &post_with_key(addr, "key-2", r#"{"name":"B","email":"ada@example.com"}"#),
        409,
    );
    let ok = post_with_key(addr, "key-2", r#"{"name":"Bob","email":"bob@example.com"}"#);
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert!(ok.header("Idempotent-Replayed").is_none());

    // A key that is too long is rejected before anything happens.
    assert_problem(&post_with_key(addr, &"k".repeat(256), body), 400);
    assert_eq!(api.users_in_table(), 2);
}

/// 20 simultaneous creates with one key and body: one row, and every
/// caller gets the same status and body (one original, 19 replays).
#[test]
fn concurrent_idempotent_creates_make_one_user() {
    let api = Api::start(&[("MAX_CONNECTIONS", "8"), ("QUEUE_DEPTH", "100")]);
    let n = 20;
    let barrier = Arc::new(Barrier::new(n));
    let addr = api.svc.addr;
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut conn = client::Conn::open(addr).expect("connect");
                barrier.wait();
                conn.send(
                    "POST",
                    USERS,
                    &[JSON, ("Idempotency-Key", "same-key")],
                    br#"{"name":"Ada","email":"ada@example.com"}"#,
                )
                .expect("reply")
            })
        })
        .collect();
    let replies: Vec<Reply> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    for r in &replies {
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.body, replies[0].body);
        assert_eq!(r.header("Location"), replies[0].header("Location"));
        assert!(r.header("ETag").is_some(), "{:?}", r.header("ETag"));
        assert_eq!(r.header("ETag"), replies[0].header("ETag"));
    }
    let replayed = replies
        .iter()
        .filter(|r| r.header("Idempotent-Replayed") == Some("true"))
        .count();
    assert_eq!(replayed, n - 1);
    assert_eq!(api.users_in_table(), 1);
    assert_eq!(api.count("SELECT count(*) FROM events"), 1);
}

/// One encoder for a user: the object in a page is, byte for byte, the
/// object `GET /api/v1/users/{id}` answers (same keys, same order, same
/// escaping).
#[test]
fn list_and_single_user_objects_are_byte_identical() {
    let api = Api::start(&[]);
    let mut singles = Vec::new();
    for body in [
        r#"{"name":"Ada","email":"ada@example.com"}"#,
        r#"{"name":"Zoë \"Z\" Ångström","email":"zoe@example.com"}"#,
    ] {
        let created = api.post(body);
        assert_eq!(created.status, 201, "{}", created.text());
        let id = created.json()["id"].clone();
        let single = api.get(&format!("{USERS}/{id}"));
        assert_eq!(single.status, 200);
        singles.push(single.text());
    }
    let page = api.get(USERS);
    assert_eq!(page.status, 200);
    let page = page.text();
    for single in &singles {
        assert!(
            page.contains(single.as_str()),
            "the page does not hold {single} as it is:\n{page}"
        );
    }
}

/// Creates Ada; her id, URL and the `ETag` of the 201.
fn create_ada(api: &Api) -> (i64, String, String) {
    let created = api.post(&json!({"name": "Ada", "email": "ada@example.com"}).to_string());
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_i64().expect("id");
    let tag = created.header("ETag").expect("ETag on 201").to_owned();
    (id, format!("{USERS}/{id}"), tag)
}

/// Conditional reads (RFC 9110 §13.1.2): a `GET` whose `If-None-Match`
/// names the user's current version (strong or weak, in a list, or `*`) is
/// 304 with the tag and no body; an older version gets the 200; a malformed
/// value is 400; an unknown user stays 404.
#[test]
fn if_none_match_answers_304_while_the_clients_copy_is_current() {
    let api = Api::start(&[]);
    let (id, item, tag) = create_ada(&api);
    let get_if = |value: &str| api.req("GET", &item, &[("If-None-Match", value)], b"");

    // The current version, strong or weak, alone or in a list, or `*`: 304,
    // the tag again, no body and no framing headers.
    let weak = format!("W/{tag}");
    let listed = format!("\"0000000000000001\", {tag}");
    for value in [tag.as_str(), weak.as_str(), listed.as_str(), "*"] {
        let r = get_if(value);
        assert_eq!(r.status, 304, "{value}: {}", r.text());
        assert_eq!(r.header("ETag"), Some(tag.as_str()), "{value}");
        assert!(r.body.is_empty(), "{value}");
        assert_eq!(r.header("Content-Length"), None, "{value}");
        assert_eq!(r.header("Transfer-Encoding"), None, "{value}");
        assert!(r.header("X-Request-ID").is_some(), "{value}");
    }

    // Once the user changes, the old tag gets the new representation.
    let changed = api.req(
        "PATCH",
        &item,
        &[JSON],
        json!({"name": "Bea"}).to_string().as_bytes(),
    );
    assert_eq!(changed.status, 200, "{}", changed.text());
    let newer = changed.header("ETag").expect("ETag").to_owned();
    let r = get_if(&tag);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "Bea");
    assert_eq!(r.header("ETag"), Some(newer.as_str()));
    assert_eq!(get_if(&newer).status, 304);

    // A malformed value is refused; an unknown user stays 404.
    assert_problem(&get_if("not-quoted"), 400);
    let missing = api.req(
        "GET",
        &format!("{USERS}/{}", id + 1000),
        &[("If-None-Match", "*")],
        b"",
    );
    assert_problem(&missing, 404);
}

/// Optimistic concurrency (RFC 9110 §13.1.1): a user's responses carry a
/// strong `ETag`; a `PATCH` or `DELETE` with `If-Match` writes only while
/// that version is current. A stale tag is 412 and changes nothing (no row,
/// no event); `*` and no header write unconditionally; an unknown user is
/// 404 even with a tag (404 wins over 412); a malformed `If-Match` is 400.
#[test]
fn if_match_guards_writes_against_lost_updates() {
    let api = Api::start(&[]);
    let (_, item, first) = create_ada(&api);
    assert!(first.starts_with('"') && first.ends_with('"'), "{first}");
    assert_eq!(api.get(&item).header("ETag"), Some(first.as_str()));

    // Two clients read the same version; the first write wins.
    let body = json!({"name": "Bea"}).to_string();
    fn headers(tag: &str) -> [(&'static str, &str); 2] {
        [JSON, ("If-Match", tag)]
    }
    let won = api.req("PATCH", &item, &headers(&first), body.as_bytes());
    assert_eq!(won.status, 200, "{}", won.text());
    let second = won.header("ETag").expect("ETag on 200").to_owned();
    assert_ne!(second, first, "a write makes a new version");
    assert_eq!(api.get(&item).header("ETag"), Some(second.as_str()));
    let events = || api.count("SELECT count(*) FROM events");
    let before = events();

    let lost = api.req(
        "PATCH",
        &item,
        &headers(&first),
        json!({"name": "Cy"}).to_string().as_bytes(),
    );
    assert_problem(&lost, 412);
    assert_eq!(
        api.get(&item).json()["name"],
        "Bea",
        "the stale write changed nothing"
    );
    assert_eq!(events(), before, "and wrote no event");
    let stale_delete = api.req("DELETE", &item, &[("If-Match", &first)], b"");
    assert_problem(&stale_delete, 412);
    assert_eq!(api.users_in_table(), 1);

    // A list naming the current version matches; weak tags never do.
    let weak = format!("W/{second}");
    let r = api.req("PATCH", &item, &headers(&weak), body.as_bytes());
    assert_problem(&r, 412);
    let list = format!("\"1\", {second}");
    let r = api.req("PATCH", &item, &headers(&list), body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let third = r.header("ETag").expect("ETag").to_owned();

    assert_problem(&api.req("DELETE", &item, &[("If-Match", "abc")], b""), 400);
    assert_eq!(
        api.req("PATCH", &item, &headers("*"), body.as_bytes())
            .status,
        200
    );
    let gone = api.req("DELETE", &item, &[("If-Match", "*")], b"");
    assert_eq!(gone.status, 204, "{}", gone.text());
    assert_eq!(api.users_in_table(), 0);
    assert_problem(&api.req("DELETE", &item, &[("If-Match", &third)], b""), 404);
}
