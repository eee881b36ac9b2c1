//! The outbox worker against a real PostgreSQL and a recording webhook
//! receiver, through the real binary: CloudEvents on the wire, per-user
//! order, retries with growing gaps, parking, two replicas sharing the work,
//! SIGTERM midway with a restart, a receiver that never answers, and the
//! retention purge.

mod metrics_common;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::client::{self, Conn};
use support::service::Service;
use support::webhook::{Answer, Receiver};
use support::TestDb;

fn start(db: &TestDb, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![("DATABASE_URL", db.url())];
    env.extend_from_slice(extra);
    let svc = Service::start(&env);
    svc.wait_ready(Duration::from_secs(20));
    svc
}

fn create(conn: &mut Conn, name: &str, email: &str) -> client::Reply {
    let body = serde_json::json!({ "name": name, "email": email }).to_string();
    conn.send(
        "POST",
        "/api/v1/users",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect("create")
}

/// Waits until `pred` holds on a fresh query result; panics after `timeout`.
fn wait_db(
    db: &TestDb,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&mut postgres::Client) -> bool,
) {
    let mut c = db.client();
    let deadline = Instant::now() + timeout;
    while !pred(&mut c) {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn count(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).expect("count").get(0)
}

#[test]
fn changes_arrive_as_cloudevents_in_order_with_the_api_bytes() {
    let db = TestDb::new();
    let receiver = Receiver::answering(204);
    let url = receiver.url();
    let svc = start(&db, &[("WEBHOOK_URL", &url)]);
    let mut conn = Conn::open(svc.addr).expect("connect");
    let created = create(&mut conn, "Ada", "ada@example.com");
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_i64().expect("id");
    let patched = conn
        .send(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            &[("Content-Type", "application/json")],
            br#"{"name":"Ada L."}"#,
        )
        .expect("patch");
    assert_eq!(patched.status, 200);
    let deleted = conn
        .send("DELETE", &format!("/api/v1/users/{id}"), &[], b"")
        .expect("delete");
    assert_eq!(deleted.status, 204);

    let got = receiver.wait_for("three deliveries", Duration::from_secs(10), |d| {
        d.len() >= 3
    });
    assert_eq!(got.len(), 3, "each event once");
    let types: Vec<String> = got
        .iter()
        .map(|d| d.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(types, ["user.created", "user.updated", "user.deleted"]);
    // `data` is the stored payload, embedded verbatim; once the column is
    // `json` (text-preserving) that is byte for byte the API's response.
    let mut c = db.client();
    let payload_is_json: bool = c
        .query_one(
            "SELECT data_type = 'json' FROM information_schema.columns \
             WHERE table_name = 'events' AND column_name = 'payload'",
            &[],
        )
        .expect("column type")
        .get(0);
    for (d, api_body) in got.iter().zip([&created.body, &patched.body]) {
        let text = String::from_utf8(d.body.clone()).expect("utf8");
        let stored: String = c
            .query_one(
                "SELECT payload::text FROM events WHERE id = $1::text::uuid",
                &[&d.key()],
            )
            .expect("event row")
            .get(0);
        assert!(
            text.ends_with(&format!(",\"data\":{stored}}}")),
            "{text}\nvs {stored}"
        );
        let api = String::from_utf8(api_body.clone()).expect("utf8");
        assert_eq!(
            d.json()["data"],
            serde_json::from_str::<Value>(&api).expect("json")
        );
        if payload_is_json {
            assert_eq!(stored, api, "byte-identical to the API's response");
        }
    }
    for d in &got {
        assert_eq!(
            d.header("content-type"),
            Some("application/cloudevents+json")
        );
        let ev = d.json();
        assert_eq!(ev["specversion"], "1.0");
        assert_eq!(ev["source"], "usersvc");
        assert_eq!(ev["datacontenttype"], "application/json");
        assert_eq!(ev["data"]["id"], id);
        assert_eq!(
            ev["id"].as_str(),
            Some(d.key().as_str()),
            "Idempotency-Key = id"
        );
        assert!(uuid::Uuid::parse_str(&d.key()).is_ok());
        assert!(ev["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    wait_db(&db, "all marked delivered", Duration::from_secs(5), |c| {
        count(c, "SELECT count(*) FROM events WHERE delivered_at IS NULL") == 0
    });
    let text = metrics_common::scrape_until(&svc, |t| {
        metrics_common::value(t, "outbox_delivered_total", &[]) == 3.0
            && metrics_common::value(t, "outbox_pending", &[]) == 0.0
    });
    assert_eq!(
        metrics_common::value(&text, "outbox_delivered_total", &[]),
        3.0
    );
    assert_eq!(
        metrics_common::value(&text, "outbox_attempts_total", &[("result", "success")]),
        3.0
    );
    assert_eq!(
        metrics_common::value(&text, "outbox_delivery_duration_seconds_count", &[]),
        3.0
    );
    assert_eq!(
        metrics_common::value(&text, "outbox_oldest_pending_age_seconds", &[]),
        0.0
    );

    let workers = client::get(metrics_common::admin(&svc), "/debug/workers").expect("workers");
    let bg = &workers.json()["background"];
    assert_eq!(bg[0]["thread"], "outbox", "{bg}");
    assert_eq!(bg[0]["webhook"], true);
}

#[test]
fn retries_with_growing_gaps_and_parks_what_the_receiver_refuses() {
    let db = TestDb::new();
    // Ada's event fails three times, then succeeds; Bob's is refused (400).
    let receiver = Receiver::start(Arc::new(|d, before| {
        let email = d.json()["data"]["email"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match (email.as_str(), before) {
            ("bob@example.com", _) => Answer::Status(400),
            (_, 0..=2) => Answer::Status(503),
            _ => Answer::Status(200),
        }
    }));
    let url = receiver.url();
    let mut svc = start(
        &db,
        &[
            ("WEBHOOK_URL", &url),
            ("OUTBOX_BACKOFF", "200ms"),
            ("OUTBOX_MAX_ATTEMPTS", "5"),
        ],
    );
    let mut conn = Conn::open(svc.addr).expect("connect");
    assert_eq!(create(&mut conn, "Ada", "ada@example.com").status, 201);
    assert_eq!(create(&mut conn, "Bob", "bob@example.com").status, 201);

    let ada = |d: &support::webhook::Delivery| d.json()["data"]["email"] == "ada@example.com";
    let got = receiver.wait_for(
        "Ada delivered on the 4th try",
        Duration::from_secs(15),
        |ds| ds.iter().filter(|d| ada(d)).count() >= 4,
    );
    let tries: Vec<&support::webhook::Delivery> = got.iter().filter(|d| ada(d)).collect();
    assert_eq!(tries.len(), 4, "no fifth attempt after a success");
    let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1].since(w[0])).collect();
    // Equal jitter: gap n is within [base·2^(n-1)/2, base·2^(n-1)].
    for (gap, floor_ms) in gaps.iter().zip([100, 200, 400]) {
        assert!(*gap >= Duration::from_millis(floor_ms), "{gaps:?}");
    }
    assert!(gaps[2] > gaps[0], "gaps grow: {gaps:?}");
    let keys: HashSet<String> = got.iter().filter(|d| ada(d)).map(|d| d.key()).collect();
    assert_eq!(
        keys.len(),
        1,
        "every retry carries the same Idempotency-Key"
    );

    wait_db(
        &db,
        "Ada delivered, Bob parked",
        Duration::from_secs(5),
        |c| {
            count(
                c,
                "SELECT count(*) FROM events WHERE delivered_at IS NOT NULL AND attempts = 4",
            ) == 1
                && count(
                    c,
                    "SELECT count(*) FROM events WHERE failed_at IS NOT NULL AND attempts = 1 \
                 AND last_error = 'HTTP 400'",
                ) == 1
        },
    );
    let bob: Vec<_> = receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.json()["data"]["email"] == "bob@example.com")
        .collect();
    assert_eq!(bob.len(), 1, "a 400 is not retried");
    let text = metrics_common::scrape_until(&svc, |t| {
        metrics_common::value(t, "outbox_failed_total", &[]) == 1.0
    });
    assert_eq!(
        metrics_common::value(&text, "outbox_failed_total", &[]),
        1.0
    );
    assert_eq!(
        metrics_common::value(
            &text,
            "outbox_attempts_total",
            &[("result", "server_error")]
        ),
        3.0
    );
    assert_eq!(
        metrics_common::value(
            &text,
            "outbox_attempts_total",
            &[("result", "client_error")]
        ),
        1.0
    );
    svc.wait_for_log(
        |v| v["msg"] == "event parked as failed" && v["reason"] == "HTTP 400",
        Duration::from_secs(5),
    );
    svc.signal("TERM");
    assert!(svc.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn a_users_later_events_wait_for_its_earlier_ones() {
    let db = TestDb::new();
    // Ada's creation fails twice; her update is written meanwhile. Bob's
    // event is not held up by hers.
    let receiver = Receiver::start(Arc::new(|d, before| {
        let ev = d.json();
        if ev["type"] == "user.created" && ev["data"]["email"] == "ada@example.com" && before < 2 {
            Answer::Status(503)
        } else {
            Answer::Status(200)
        }
    }));
    let url = receiver.url();
    let svc = start(&db, &[("WEBHOOK_URL", &url), ("OUTBOX_BACKOFF", "300ms")]);
    let mut conn = Conn::open(svc.addr).expect("connect");
    let ada = create(&mut conn, "Ada", "ada@example.com").json()["id"]
        .as_i64()
        .expect("id");
    receiver.wait_for("Ada's first attempt", Duration::from_secs(10), |d| {
        !d.is_empty()
    });
    let patched = conn
        .send(
            "PATCH",
            &format!("/api/v1/users/{ada}"),
            &[("Content-Type", "application/json")],
            br#"{"name":"Ada L."}"#,
        )
        .expect("patch");
    assert_eq!(patched.status, 200);
    assert_eq!(create(&mut conn, "Bob", "bob@example.com").status, 201);
    let got = receiver.wait_for("Ada's update", Duration::from_secs(10), |d| {
        d.iter().any(|d| d.json()["type"] == "user.updated")
    });
    let order: Vec<(String, String)> = got
        .iter()
        .map(|d| {
            let ev = d.json();
            (
                ev["data"]["email"].as_str().unwrap_or_default().to_owned(),
                ev["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let ada_order: Vec<&str> = order
        .iter()
        .filter(|(e, _)| e == "ada@example.com")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        ada_order,
        [
            "user.created",
            "user.created",
            "user.created",
            "user.updated"
        ],
        "the update only after the creation was delivered"
    );
    let bob_at = order
        .iter()
        .position(|(e, _)| e == "bob@example.com")
        .expect("Bob delivered");
    let ada_done = order
        .iter()
        .rposition(|(e, t)| e == "ada@example.com" && t == "user.created")
        .expect("Ada created");
    assert!(
        bob_at < ada_done,
        "another user's event is not held up: {order:?}"
    );
}

#[test]
fn attempts_are_capped_and_429_waits_for_retry_after() {
    let db = TestDb::new();
    let receiver = Receiver::start(Arc::new(|_, before| match before {
        0 => Answer::StatusWith(429, vec![("Retry-After".into(), "1".into())]),
        _ => Answer::Status(500),
    }));
    let url = receiver.url();
    let svc = start(
        &db,
        &[
            ("WEBHOOK_URL", &url),
            ("OUTBOX_BACKOFF", "10ms"),
            ("OUTBOX_MAX_ATTEMPTS", "3"),
        ],
    );
    let mut conn = Conn::open(svc.addr).expect("connect");
    assert_eq!(create(&mut conn, "Cy", "cy@example.com").status, 201);
    let got = receiver.wait_for("three attempts", Duration::from_secs(10), |d| d.len() >= 3);
    assert!(
        got[1].since(&got[0]) >= Duration::from_secs(1),
        "Retry-After: 1 honoured"
    );
    wait_db(
        &db,
        "parked after 3 attempts",
        Duration::from_secs(5),
        |c| {
            count(
                c,
                "SELECT count(*) FROM events WHERE failed_at IS NOT NULL AND attempts = 3",
            ) == 1
        },
    );
    // No fourth attempt.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.deliveries().len(), 3);
}

#[test]
fn without_a_webhook_events_stay_pending_and_are_counted() {
    let db = TestDb::new();
    let svc = start(&db, &[]);
    let mut conn = Conn::open(svc.addr).expect("connect");
    for i in 0..3 {
        assert_eq!(
            create(&mut conn, "P", &format!("p{i}@example.com")).status,
            201
        );
    }
    let text = metrics_common::scrape_until(&svc, |t| {
        metrics_common::value(t, "outbox_pending", &[]) == 3.0
    });
    assert_eq!(metrics_common::value(&text, "outbox_pending", &[]), 3.0);
    assert!(metrics_common::value(&text, "outbox_oldest_pending_age_seconds", &[]) >= 0.0);
    let mut c = db.client();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM events WHERE delivered_at IS NULL"
        ),
        3
    );
    // Nothing to deliver: no thread of its own, its passes run on the pool's threads.
    let workers = client::get(metrics_common::admin(&svc), "/debug/workers").expect("workers");
    let bg = &workers.json()["background"];
    assert_eq!(bg[0]["thread"], "db-pool", "{bg}");
    assert_eq!(bg[0]["webhook"], false);
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", svc.pid()))
        .expect("tasks")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    assert!(!names.iter().any(|n| n == "outbox"), "{names:?}");
}

#[test]
fn retention_purges_expired_keys_and_old_delivered_events_only() {
    let db = TestDb::migrated();
    let mut c = db.client();
    c.batch_execute(
        "INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body, created_at) VALUES \
           ('old', 'f', 201, '{}', now() - interval '25 hours'), \
           ('fresh', 'f', 201, '{}', now() - interval '1 hour'); \
         INSERT INTO events (type, payload, created_at, delivered_at) VALUES \
           ('user.created', '{\"id\":1}', now() - interval '9 days', now() - interval '8 days'), \
           ('user.created', '{\"id\":2}', now() - interval '2 days', now() - interval '1 day'); \
         INSERT INTO events (type, payload, created_at) VALUES \
           ('user.created', '{\"id\":3}', now() - interval '30 days'); \
         INSERT INTO events (type, payload, created_at, failed_at, next_attempt_at) VALUES \
           ('user.created', '{\"id\":4}', now() - interval '30 days', now() - interval '29 days', 'infinity');",
    )
    .expect("seed");
    let _svc = start(&db, &[("OUTBOX_RETENTION", "7d")]);
    wait_db(&db, "old rows purged", Duration::from_secs(10), |c| {
        count(c, "SELECT count(*) FROM idempotency_keys") == 1
            && count(c, "SELECT count(*) FROM events") == 3
    });
    let keys: Vec<String> = c
        .query("SELECT key FROM idempotency_keys", &[])
        .expect("keys")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, ["fresh"]);
    let ids: Vec<String> = c
        .query("SELECT payload->>'id' FROM events ORDER BY 1", &[])
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        ids,
        ["2", "3", "4"],
        "recent delivered, pending and parked stay"
    );
}

#[test]
fn two_instances_deliver_each_event_exactly_once() {
    let db = TestDb::migrated();
    let receiver = Receiver::answering(200);
    let url = receiver.url();
    let a = start(&db, &[("WEBHOOK_URL", &url)]);
    let b = start(&db, &[("WEBHOOK_URL", &url)]);
    let n = 200;
    let writers: Vec<_> = [a.addr, b.addr]
        .into_iter()
        .enumerate()
        .map(|(w, addr)| {
            thread::spawn(move || {
                let mut conn = Conn::open(addr).expect("connect");
                for i in 0..n / 2 {
                    let r = create(&mut conn, "Two", &format!("w{w}-{i}@example.com"));
                    assert_eq!(r.status, 201);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let got = receiver.wait_for("every event", Duration::from_secs(20), |d| {
        d.iter().map(|d| d.key()).collect::<HashSet<_>>().len() >= n
    });
    thread::sleep(Duration::from_millis(300));
    let got = receiver.deliveries().len().max(got.len());
    assert_eq!(got, n, "each event exactly once");
    let mut c = db.client();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM events WHERE delivered_at IS NULL"
        ),
        0
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM events WHERE attempts <> 1"),
        0
    );
}

/// 1,000 users created by clients that retry (with an `Idempotency-Key`)
/// until they get a 201, SIGTERM midway, the service restarted on a new
/// port: every event is delivered at least once, and a duplicate is only
/// ever an event that was in flight at the signal, under the same id.
#[test]
fn sigterm_midway_then_restart_loses_nothing() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 250;
    let db = TestDb::migrated();
    let receiver = Receiver::answering(200);
    let url = receiver.url();
    let env = [("WEBHOOK_URL", url.as_str()), ("SHUTDOWN_TIMEOUT", "5s")];
    let mut svc = start(&db, &env);
    let addr = Arc::new(Mutex::new(svc.addr));
    let created = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (created, addr) = (Arc::clone(&created), Arc::clone(&addr));
            thread::spawn(move || {
                let mut conn: Option<Conn> = None;
                for i in 0..PER_WRITER {
                    let key = format!("k{w}-{i}");
                    let body = format!(r#"{{"name":"K","email":"{key}@example.com"}}"#);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        assert!(Instant::now() < deadline, "{key} never created");
                        if conn.is_none() {
                            let target = *addr.lock().expect("lock");
                            conn = Conn::open(target).ok();
                        }
                        let reply = conn.as_mut().map(|c| {
                            c.send(
                                "POST",
                                "/api/v1/users",
                                &[
                                    ("Content-Type", "application/json"),
                                    ("Idempotency-Key", &key),
                                ],
                                body.as_bytes(),
                            )
                        });
                        match reply {
                            Some(Ok(r)) if r.status == 201 => break,
                            Some(Ok(r)) if r.status == 503 => {}
                            Some(Ok(r)) => panic!("{key}: {} {}", r.status, r.text()),
                            _ => conn = None,
                        }
                        thread::sleep(Duration::from_millis(10));
                    }
                    created.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while created.load(Ordering::Relaxed) < WRITERS * PER_WRITER / 2 {
        assert!(Instant::now() < deadline, "half of the creates not reached");
        thread::sleep(Duration::from_millis(2));
    }
    let signalled = Instant::now();
    svc.signal("TERM");
    let status = svc.wait_exit(Duration::from_secs(15));
    let took = signalled.elapsed();
    assert!(status.success(), "exit 0: {status:?}");
    // DRAIN_DELAY 300ms + SHUTDOWN_TIMEOUT 5s + 2s margin.
    assert!(took < Duration::from_millis(7300), "{took:?}");
    let before_restart: HashSet<String> = receiver.deliveries().iter().map(|d| d.key()).collect();
    let created_before = created.load(Ordering::Relaxed);

    let restarted = start(&db, &env);
    *addr.lock().expect("lock") = restarted.addr;
    for w in writers {
        w.join().expect("writer");
    }
    let mut c = db.client();
    assert_eq!(count(&mut c, "SELECT count(*) FROM users"), 1000);
    let want: HashSet<String> = c
        .query("SELECT id::text FROM events", &[])
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(want.len(), 1000, "one event per user, none lost");
    receiver.wait_for(
        "every event after the restart",
        Duration::from_secs(30),
        |d| {
            let got: HashSet<String> = d.iter().map(|d| d.key()).collect();
            want.is_subset(&got)
        },
    );
    wait_db(&db, "all marked delivered", Duration::from_secs(10), |c| {
        count(c, "SELECT count(*) FROM events WHERE delivered_at IS NULL") == 0
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    for d in receiver.deliveries() {
        *seen.entry(d.key()).or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "created before the signal {created_before}, delivered before the restart {}, \
         duplicates {}, shutdown took {took:?}",
        before_restart.len(),
        duplicates.len()
    );
    // At most one batch was in hand at the signal.
    assert!(duplicates.len() <= 10, "{duplicates:?}");
    for (key, _) in &duplicates {
        assert!(
            before_restart.contains(*key),
            "a duplicate not in flight at the signal"
        );
    }
    assert!(
        seen.keys().all(|k| want.contains(k)),
        "nothing unknown delivered"
    );
}

#[test]
fn a_receiver_that_never_answers_does_not_hold_up_shutdown() {
    let db = TestDb::new();
    let receiver = Receiver::start(Arc::new(|_, _| Answer::Hang));
    let url = receiver.url();
    let mut svc = start(
        &db,
        &[
            ("WEBHOOK_URL", &url),
            ("WEBHOOK_TIMEOUT", "2s"),
            ("SHUTDOWN_TIMEOUT", "2s"),
        ],
    );
    let mut conn = Conn::open(svc.addr).expect("connect");
    assert_eq!(create(&mut conn, "H", "h@example.com").status, 201);
    receiver.wait_for("the attempt", Duration::from_secs(10), |d| !d.is_empty());
    let t = Instant::now();
    svc.signal("TERM");
    let status = svc.wait_exit(Duration::from_secs(10));
    let took = t.elapsed();
    assert!(status.success(), "{status:?}");
    // DRAIN_DELAY 300ms + SHUTDOWN_TIMEOUT 2s + 2s margin.
    assert!(took < Duration::from_millis(4300), "{took:?}");
    let mut c = db.client();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM events WHERE delivered_at IS NULL AND failed_at IS NULL"
        ),
        1,
        "still pending for the next start"
    );
}
