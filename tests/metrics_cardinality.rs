//! No request a client can send creates a new metric series: 10,000 requests
//! to random unknown paths, with invented and standard methods, leave the
//! number of series in `/metrics` exactly where a short warm-up with the
//! same kinds of request put it. `path` is a route pattern or `unmatched`,
//! `method` a standard method or `other`, `status` a number.

mod metrics_common;
mod support;

use std::thread;
use std::time::{Duration, Instant};

use metrics_common::{named, samples, scrape, scrape_until};
use support::client::Conn;
use support::service::Service;
use support::TestDb;

/// A small xorshift generator: reproducible per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// `len` characters drawn from `alphabet`.
    fn token(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// RFC 9110 `tchar`s: anything here is a syntactically valid method.
const TCHAR: &[u8] =
    b"!#$%&'*+-.^_`|~ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The kinds of method sent: standard ones the routes do not all allow, and
/// invented ones (fixed and random).
const METHOD_KINDS: usize = 9;
fn method(kind: usize, rng: &mut Rng) -> String {
    match kind {
        0 => "GET".into(),
        1 => "POST".into(),
        2 => "DELETE".into(),
        3 => "HEAD".into(),
        4 => "OPTIONS".into(),
        5 => "BREW".into(),
        6 => "PROPFIND".into(),
        7 => "get".into(), // methods are case-sensitive: this is not GET
        _ => {
            let len = 1 + rng.below(16);
            rng.token(TCHAR, len)
        }
    }
}

/// The kinds of target sent: random unknown paths (some under the API
/// prefix, some with queries and encodings), and known routes, which an
/// odd method turns into 405.
const PATH_KINDS: usize = 5;
fn path(kind: usize, rng: &mut Rng) -> String {
    let seg = |rng: &mut Rng| {
        let len = 1 + rng.below(12);
        rng.token(ALNUM, len)
    };
    match kind {
        0 => format!("/{}", seg(rng)),
        1 => format!(
            "/{}/{}/{}?{}={}",
            seg(rng),
            seg(rng),
            seg(rng),
            seg(rng),
            seg(rng)
        ),
        2 => format!("/api/v1/users/{}/{}", rng.below(1000), seg(rng)),
        3 => format!("/api/v2/{}%20{}%2F..", seg(rng), seg(rng)),
        // Known routes: with an odd method, 405; with GET/HEAD/DELETE on an
        // unknown id, a worker answers 404 (bounded all the same).
        _ => format!("/api/v1/users/{}", 1_000_000 + rng.below(1_000_000)),
    }
}

fn send(conn: &mut Option<Conn>, addr: std::net::SocketAddr, method: &str, path: &str) -> u16 {
    for _ in 0..2 {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(Conn::open(addr).expect("connect")),
        };
        match c.send(method, path, &[], b"") {
            Ok(r) => {
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    *conn = None;
                }
                return r.status;
            }
            // The server may close a keep-alive connection after an error
            // answer; reconnect once.
            Err(_) => *conn = None,
        }
    }
    panic!("{method} {path}: no answer on a fresh connection");
}

fn series(text: &str) -> usize {
    samples(text).len()
}

#[test]
fn ten_thousand_random_requests_create_no_new_series() {
    let db = TestDb::migrated();
    let svc = Service::start(&[("DATABASE_URL", db.url())]);
    svc.wait_ready(Duration::from_secs(20));
    // The 10,000 `request completed` lines are not the point here.
    let level = support::client::request(
        metrics_common::admin(&svc),
        "PUT",
        "/debug/log-level?level=warn",
        &[],
        b"",
    )
    .expect("set log level");
    assert_eq!(level.status, 200, "{}", level.text());

    // Warm-up: every kind of method on every kind of path, once.
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut conn = None;
    for m in 0..METHOD_KINDS {
        for p in 0..PATH_KINDS {
            let (method, path) = (method(m, &mut rng), path(p, &mut rng));
            let status = send(&mut conn, svc.addr, &method, &path);
            assert!((400..500).contains(&status), "{method} {path}: {status}");
        }
    }
    drop(conn);
    let answered = |text: &str| -> f64 {
        named(text, "http_requests_total")
            .iter()
            .filter(|s| !matches!(s.label("path"), "/readyz" | "/metrics" | "/debug/log-level"))
            .map(|s| s.value)
            .sum()
    };
    let warmed = (METHOD_KINDS * PATH_KINDS) as f64;
    // The scrape's own series exist once the first scrape has been
    // recorded, which happens after its response was written: wait for
    // the last of them (its histogram) as well as for the warm-up's counts.
    scrape(&svc);
    let scrape_recorded = |t: &str| {
        let recorded = named(t, "http_request_duration_seconds_count");
        ["/metrics", "/debug/log-level"]
            .iter()
            .all(|p| recorded.iter().any(|s| s.label("path") == *p))
    };
    let warm = scrape_until(&svc, |t| answered(t) == warmed && scrape_recorded(t));
    assert!(scrape_recorded(&warm), "{warm}");
    assert_eq!(answered(&warm), warmed);
    let warm_series = series(&warm);

    // 10,000 random requests over 4 keep-alive connections.
    const THREADS: u64 = 4;
    const PER_THREAD: usize = 2_500;
    let started = Instant::now();
    let addr = svc.addr;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                let mut rng =
                    Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                let mut conn = None;
                for _ in 0..PER_THREAD {
                    let m = method(rng.below(METHOD_KINDS), &mut rng);
                    let p = path(rng.below(PATH_KINDS), &mut rng);
                    let status = send(&mut conn, addr, &m, &p);
                    assert!((400..500).contains(&status), "{m} {p}: {status}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client thread");
    }
    eprintln!("10,000 requests in {:?}", started.elapsed());

    let sent = warmed + 10_000.0;
    let after = scrape_until(&svc, |t| answered(t) == sent);
    assert_eq!(answered(&after), sent);
    assert_eq!(
        series(&after),
        warm_series,
        "series changed\n--- after warm-up ---\n{warm}\n--- after 10,000 ---\n{after}"
    );

    // Every label value is from a closed set.
    let standard = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other",
    ];
    let routes = [
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/openapi.json",
        "/readyz",
        "/healthz",
        "/startupz",
        "/metrics",
        "/debug/log-level",
        "/debug/workers",
        "/debug/config",
        "unmatched",
    ];
    for s in named(&after, "http_requests_total") {
        assert!(standard.contains(&s.label("method")), "{s:?}");
        assert!(routes.contains(&s.label("path")), "{s:?}");
        let status = s.label("status");
        assert!(
            status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()),
            "{s:?}"
        );
    }
}
