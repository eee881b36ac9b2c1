//! The HTTP details a careful client sees, on the wire of the real binary:
//! a 204 without `Content-Length`, status lines whose reason phrase is the
//! problem's title (from the HTTP layer and the handlers alike), one 413
//! answer however the body was framed, one canonical form of an integer in a
//! path or query, and a `request completed` line for requests the HTTP layer
//! refuses before any handler sees them.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

use support::service::Service;
use support::TestDb;

const USERS: &str = "/api/v1/users";

/// `svc` first: the process is killed before its database is dropped.
struct Api {
    svc: Service,
    _db: TestDb,
}

fn start() -> Api {
    let db = TestDb::new();
    let svc = Service::start(&[("DATABASE_URL", db.url()), ("MAX_BODY_BYTES", "256")]);
    svc.wait_ready(Duration::from_secs(20));
    Api { svc, _db: db }
}

/// The bytes of one exchange: `raw` is sent, everything until the server
/// closes is returned (requests carry `Connection: close`, or are refused).
fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(raw).expect("write");
    let mut out = Vec::new();
    // A refused request may be answered before all of it was sent: whatever
    // came back before the reset is the answer.
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed answer: status line, headers, body.
struct Answer {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn parse(text: &str) -> Answer {
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let _version = parts.next();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Answer {
            status,
            reason,
            headers,
            body: body.to_owned(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The problem body; an `about:blank` title must be the status line's
    /// reason phrase.
    fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        let v: Value =
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body));
        assert_eq!(v["status"], json!(self.status), "{v}");
        // RFC 9457 §4.2.1: with `about:blank` the title is the reason
        // phrase; a problem type of our own has its own title.
        if v["type"] == "about:blank" {
            assert_eq!(v["title"], json!(self.reason), "title vs status line: {v}");
        }
        assert_eq!(v["request_id"].as_str(), self.header("x-request-id"), "{v}");
        v
    }
}

fn request(api: &Api, method: &str, target: &str, body: &str) -> Answer {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Answer::parse(&exchange(api.svc.addr, raw.as_bytes()))
}

fn create(api: &Api, email: &str) -> i64 {
    let a = request(
        api,
        "POST",
        USERS,
        &json!({"name": "Ada", "email": email}).to_string(),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    serde_json::from_str::<Value>(&a.body).expect("json")["id"]
        .as_i64()
        .expect("id")
}

#[test]
fn http_details_on_the_wire() {
    let api = start();
    let id = create(&api, "ada@example.com");

    // RFC 9110 §8.6: a 204 carries no Content-Length (and no body).
    let text = exchange(
        api.svc.addr,
        format!("DELETE {USERS}/{id} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text:?}");
    let a = Answer::parse(&text);
    assert_eq!(a.header("content-length"), None, "{text:?}");
    assert_eq!(a.header("transfer-encoding"), None, "{text:?}");
    assert_eq!(a.body, "", "{text:?}");

    // 413, sized (refused by the HTTP layer before reading) and chunked
    // (found by the handler while reading): the same answer.
    let big = json!({"name": "n".repeat(300), "email": "big@example.com"}).to_string();
    let sized = request(&api, "POST", USERS, &big);
    assert_eq!(
        (sized.status, sized.reason.as_str()),
        (413, "Content Too Large")
    );
    let chunked = Answer::parse(&exchange(
        api.svc.addr,
        format!(
            "POST {USERS} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    ));
    assert_eq!(chunked.status, 413);
    let (sized, chunked) = (sized.problem(), chunked.problem());
    for member in ["type", "title", "detail"] {
        assert_eq!(sized[member], chunked[member], "{sized} vs {chunked}");
    }
    assert_eq!(
        sized["detail"], "the request body exceeds the limit of 256 bytes",
        "{sized}"
    );

    // 414 from the HTTP layer: a title, not "Error".
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let a = Answer::parse(&exchange(api.svc.addr, long.as_bytes()));
    assert_eq!((a.status, a.reason.as_str()), (414, "URI Too Long"));
    a.problem();

    // 404 and 422 from the handlers: the same table.
    let a = request(&api, "GET", &format!("{USERS}/{id}"), "");
    assert_eq!((a.status, a.reason.as_str()), (404, "Not Found"));
    assert_eq!(a.problem()["title"], "Not Found");
    let a = request(&api, "POST", USERS, r#"{"name":"","email":"x"}"#);
    assert_eq!(
        (a.status, a.reason.as_str()),
        (422, "Unprocessable Content")
    );
    a.problem();
}

#[test]
fn integers_in_paths_and_queries_have_one_canonical_form() {
    let api = start();
    let id = create(&api, "ada@example.com");
    assert_eq!(id, 1, "a fresh database starts at 1");
    assert_eq!(request(&api, "GET", &format!("{USERS}/1"), "").status, 200);
    for target in [
        "/api/v1/users/01",
        "/api/v1/users/+1",
        "/api/v1/users/%2b1",
        "/api/v1/users/%2B1",
        "/api/v1/users/%31",
        "/api/v1/users?limit=05",
        "/api/v1/users?limit=+5",
        "/api/v1/users?limit=%2b5",
        "/api/v1/users?after=00",
        "/api/v1/users?after=%2b0",
    ] {
        let a = request(&api, "GET", target, "");
        assert_eq!(a.status, 400, "{target}: {}", a.body);
        a.problem();
    }
    for target in ["/api/v1/users?limit=5", "/api/v1/users?after=0"] {
        assert_eq!(request(&api, "GET", target, "").status, 200, "{target}");
    }
}

#[test]
fn requests_refused_by_the_http_layer_are_logged_like_any_other() {
    let api = start();
    let big = "x".repeat(300);
    let sized = request(&api, "POST", "/api/v1/users?x=1", &big);
    assert_eq!(sized.status, 413);
    let rid = sized.header("x-request-id").expect("request id").to_owned();
    let line = api.svc.wait_for_log(
        |l| l["msg"] == "request completed" && l["request_id"] == rid.as_str(),
        Duration::from_secs(5),
    );
    assert_eq!(line["status"], 413, "{line}");
    assert_eq!(line["method"], "POST", "{line}");
    assert_eq!(line["path"], "/api/v1/users", "{line}");
    assert!(
        line["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{line}"
    );
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{line}"
    );
    assert_eq!(line["bytes"], json!(sized.body.len()), "{line}");

    // A request line that cannot be read: no method or path to tell.
    let a = Answer::parse(&exchange(api.svc.addr, b"BAD\r\n\r\n"));
    assert_eq!(a.status, 400);
    let rid = a.header("x-request-id").expect("request id").to_owned();
    let line = api.svc.wait_for_log(
        |l| l["msg"] == "request completed" && l["request_id"] == rid.as_str(),
        Duration::from_secs(5),
    );
    assert_eq!(line["status"], 400, "{line}");
    assert!(line["remote_addr"].as_str().is_some_and(|a| !a.is_empty()));
    // The old line is gone.
    assert!(
        !api.svc
            .lines()
            .iter()
            .any(|l| l.contains("refused by the HTTP layer")),
        "old refusal line still logged"
    );
}

/// `OPTIONS *` asks about the server (RFC 9110 §9.3.7): 200, an `Allow` of
/// every method the API serves, no body. A `Host` that is not `host[:port]`
/// is refused with 400 (RFC 9112 §3.2), as a missing or a second one is.
#[test]
fn options_asterisk_and_the_host_field() {
    let api = start();
    let a = Answer::parse(&exchange(
        api.svc.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("allow"), Some("GET, HEAD, POST, PATCH, DELETE"));
    assert_eq!(a.header("content-length"), Some("0"));
    assert_eq!(a.body, "");

    let with_host = |host: &str| {
        Answer::parse(&exchange(
            api.svc.addr,
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        ))
    };
    for good in ["t", "example.com:8080", "[::1]:8080", "127.0.0.1"] {
        assert_eq!(with_host(good).status, 200, "{good}");
    }
    for bad in ["a b", "a/b", "user@host", "host:port", "[::1"] {
        let a = with_host(bad);
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        let detail = a.problem()["detail"].clone();
        assert_eq!(detail, "the request is malformed: invalid Host", "{bad}");
    }
    let none = Answer::parse(&exchange(
        api.svc.addr,
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    ));
    assert_eq!(none.status, 400);
    assert_eq!(
        none.problem()["detail"],
        "the request is malformed: missing Host"
    );
}
