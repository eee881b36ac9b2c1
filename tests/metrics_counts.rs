//! After a known sequence of requests against the real binary, the request
//! counters and the latency histogram's counts equal exactly what was sent,
//! labelled by route pattern, method and status.

mod metrics_common;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_common::{named, scrape, scrape_until, value};
use support::client::Conn;
use support::service::Service;
use support::TestDb;

/// Routes that the test harness itself hits (readiness polling, scrapes):
/// their counts are not part of the sequence.
fn is_harness(path: &str) -> bool {
    matches!(path, "/readyz" | "/healthz" | "/startupz" | "/metrics")
}

type Key = (String, String, String);

fn request_counts(text: &str) -> BTreeMap<Key, f64> {
    named(text, "http_requests_total")
        .into_iter()
        .filter(|s| !is_harness(s.label("path")))
        .map(|s| {
            let key = (
                s.label("method").to_owned(),
                s.label("path").to_owned(),
                s.label("status").to_owned(),
            );
            (key, s.value)
        })
        .collect()
}

fn histogram_counts(text: &str) -> BTreeMap<(String, String), f64> {
    named(text, "http_request_duration_seconds_count")
        .into_iter()
        .filter(|s| !is_harness(s.label("path")))
        .map(|s| {
            let key = (s.label("method").to_owned(), s.label("path").to_owned());
            (key, s.value)
        })
        .collect()
}

#[test]
fn request_counters_and_histogram_counts_match_what_was_sent() {
    let db = TestDb::new();
    let svc = Service::start(&[("DATABASE_URL", db.url())]);
    svc.wait_ready(Duration::from_secs(20));
    let before = scrape(&svc);
    assert!(
        request_counts(&before).is_empty(),
        "no API request yet: {:?}",
        request_counts(&before)
    );

    let json = [("Content-Type", "application/json")];
    let mut c = Conn::open(svc.addr).expect("connect");
    let mut send = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        c.send(method, path, headers, body).expect("request").status
    };
    // 1 × 201 POST
    let ada = br#"{"name":"Ada","email":"ada@example.com"}"#;
    assert_eq!(send("POST", "/api/v1/users", &json, ada), 201);
    // 7 × GET existing user: 200
    for _ in 0..7 {
        assert_eq!(send("GET", "/api/v1/users/1", &[], b""), 200);
    }
    // 3 × GET a user that does not exist: 404 (answered by the handler)
    for id in [2, 99, 123456] {
        assert_eq!(send("GET", &format!("/api/v1/users/{id}"), &[], b""), 404);
    }
    // 2 × wrong method on a known route: 405 (answered inline)
    assert_eq!(send("PUT", "/api/v1/users/1", &json, b"{}"), 405);
    assert_eq!(send("PUT", "/api/v1/users/7", &json, b"{}"), 405);
    // 1 × invalid fields: 422
    let bad = br#"{"name":"","email":"not-an-email"}"#;
    assert_eq!(send("POST", "/api/v1/users", &json, bad), 422);
    // 1 × duplicate email: 409
    assert_eq!(send("POST", "/api/v1/users", &json, ada), 409);
    // 1 × unknown route with an invented method: 404, `other` / `unmatched`
    assert_eq!(send("BREW", "/coffee/pot", &[], b""), 404);
    drop(c);

    let want_requests: BTreeMap<Key, f64> = [
        (("POST", "/api/v1/users", "201"), 1.0),
        (("GET", "/api/v1/users/{id}", "200"), 7.0),
        (("GET", "/api/v1/users/{id}", "404"), 3.0),
        (("PUT", "/api/v1/users/{id}", "405"), 2.0),
        (("POST", "/api/v1/users", "422"), 1.0),
        (("POST", "/api/v1/users", "409"), 1.0),
        (("other", "unmatched", "404"), 1.0),
    ]
    .into_iter()
    .map(|((m, p, s), n)| ((m.to_owned(), p.to_owned(), s.to_owned()), n))
    .collect();
    let want_histogram: BTreeMap<(String, String), f64> = [
        (("POST", "/api/v1/users"), 3.0),
        (("GET", "/api/v1/users/{id}"), 10.0),
        (("PUT", "/api/v1/users/{id}"), 2.0),
        (("other", "unmatched"), 1.0),
    ]
    .into_iter()
    .map(|((m, p), n)| ((m.to_owned(), p.to_owned()), n))
    .collect();

    // The counter and then the histogram move after each response is
    // written: a scrape can come before either, or between the two. The
    // connections of the clients that hung up count until the I/O thread has
    // read their end of stream, which can also come after the scrape.
    let text = scrape_until(&svc, |t| {
        request_counts(t) == want_requests
            && histogram_counts(t) == want_histogram
            && value(t, "active_connections", &[]) == 1.0
    });
    assert_eq!(request_counts(&text), want_requests, "\n{text}");
    assert_eq!(histogram_counts(&text), want_histogram, "\n{text}");

    // Each histogram's +Inf bucket and _count agree, and its _sum is a
    // plausible total latency (seconds, not milliseconds).
    for ((method, path), n) in &want_histogram {
        let labels = [("method", method.as_str()), ("path", path.as_str())];
        let inf = named(&text, "http_request_duration_seconds_bucket")
            .into_iter()
            .find(|s| {
                s.label("method") == method && s.label("path") == path && s.label("le") == "+Inf"
            })
            .expect("+Inf bucket");
        assert_eq!(inf.value, *n);
        let sum = value(&text, "http_request_duration_seconds_sum", &labels);
        assert!(sum > 0.0 && sum < *n * 5.0, "{method} {path}: sum {sum}");
    }
    // Nothing was shed or panicked; no request is in flight but the scrape.
    assert_eq!(value(&text, "http_requests_shed_total", &[]), 0.0);
    assert_eq!(value(&text, "http_panics_total", &[]), 0.0);
    assert_eq!(value(&text, "active_connections", &[]), 1.0, "\n{text}");
    // The 201 and the 409 each sent one write statement, alone (one client:
    // nothing to write together); the 422 never reached the database.
    assert_eq!(value(&text, "db_write_statement_requests_count", &[]), 2.0);
    assert_eq!(value(&text, "db_write_statement_requests_sum", &[]), 2.0);
}

#[test]
fn requests_the_http_layer_refuses_are_counted() {
    let db = TestDb::new();
    let svc = Service::start(&[("DATABASE_URL", db.url()), ("MAX_BODY_BYTES", "1KiB")]);
    svc.wait_ready(Duration::from_secs(20));
    let refusals = |text: &str| -> BTreeMap<String, f64> {
        named(text, "http_requests_total")
            .into_iter()
            .filter(|s| s.label("method") == "other" && s.label("path") == "unmatched")
            .map(|s| (s.label("status").to_owned(), s.value))
            .collect()
    };
    assert!(refusals(&scrape(&svc)).is_empty());

    let send_raw = |bytes: &[u8]| {
        let mut c = Conn::open(svc.addr).expect("connect");
        c.write_raw(bytes).expect("write");
        c.read_reply(false).expect("reply").status
    };
    // Malformed request line: 400, twice.
    assert_eq!(send_raw(b"NOT HTTP AT ALL\r\n\r\n"), 400);
    assert_eq!(send_raw(b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
    // A declared body over MAX_BODY_BYTES: 413, refused before any handler.
    assert_eq!(
        send_raw(
            b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 4096\r\n\r\n"
        ),
        413
    );

    // Counted before the answer is written, so one scrape sees them.
    let text = scrape(&svc);
    let want = BTreeMap::from([("400".to_owned(), 2.0), ("413".to_owned(), 1.0)]);
    assert_eq!(refusals(&text), want, "\n{text}");
    // No latency is made up for a request that never started.
    assert!(
        !named(&text, "http_request_duration_seconds_count")
            .iter()
            .any(|s| s.label("path") == "unmatched"),
        "\n{text}"
    );
}
