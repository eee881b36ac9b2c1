//! `/metrics` on the real binary is valid, lint-clean Prometheus text
//! (`promtool check metrics`) and exposes every metric SPEC names, each
//! once, with its type, label set and HELP.

mod metrics_common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use metrics_common::{named, samples, scrape};
use support::client;
use support::service::Service;
use support::TestDb;

/// A ready service that has answered a few requests of each kind, so every
/// labelled family has series.
fn busy_service(db: &TestDb) -> Service {
    let svc = Service::start(&[("DATABASE_URL", db.url())]);
    svc.wait_ready(Duration::from_secs(20));
    let created = client::request(
        svc.addr,
        "POST",
        "/api/v1/users",
        &[("Content-Type", "application/json")],
        br#"{"name":"Ada","email":"ada@example.com"}"#,
    )
    .expect("create");
    assert_eq!(created.status, 201, "{}", created.text());
    for (method, path) in [
        ("GET", "/api/v1/users/1"),
        ("GET", "/api/v1/users/999"),
        ("BREW", "/coffee"),
        ("PUT", "/api/v1/users/1"),
    ] {
        client::request(svc.addr, method, path, &[], b"").expect("request");
    }
    // Each request is recorded just after its response: wait for all five.
    let answered = |t: &str| -> f64 {
        metrics_common::named(t, "http_request_duration_seconds_count")
            .iter()
            .filter(|s| !matches!(s.label("path"), "/readyz" | "/metrics"))
            .map(|s| s.value)
            .sum()
    };
    let text = metrics_common::scrape_until(&svc, |t| answered(t) == 5.0);
    assert_eq!(answered(&text), 5.0, "{text}");
    svc
}

/// `promtool`, installing it with `scripts/ensure-tools.sh` if it is missing.
fn promtool() -> Option<PathBuf> {
    let find = || {
        std::env::var_os("PROMTOOL").map(PathBuf::from).or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-tools.sh");
    let status = Command::new("bash").arg(&script).status();
    eprintln!("promtool missing; ran {}: {status:?}", script.display());
    find()
}

#[test]
fn promtool_check_metrics_passes_on_a_live_scrape() {
    let Some(promtool) = promtool() else {
        eprintln!(
            "\n\n!!!!!!!! SKIPPED: promtool is not installed and scripts/ensure-tools.sh \
             could not install it (Debian package `prometheus`). !!!!!!!!\n\n"
        );
        return;
    };
    let db = TestDb::new();
    let svc = busy_service(&db);
    let text = scrape(&svc);

    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: {}\n{report}", out.status);
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics failed ({}):\n{report}\n--- scrape ---\n{text}",
        out.status
    );
}

/// SPEC's metrics (and issue 15's outbox metrics): name, type, label names.
const SPEC: &[(&str, &str, &[&str])] = &[
    (
        "http_requests_total",
        "counter",
        &["method", "path", "status"],
    ),
    (
        "http_request_duration_seconds",
        "histogram",
        &["method", "path"],
    ),
    ("active_connections", "gauge", &[]),
    ("http_connections_open", "gauge", &["listener"]),
    ("http_queue_depth", "gauge", &[]),
    ("http_requests_shed_total", "counter", &[]),
    ("http_requests_queue_expired_total", "counter", &[]),
    ("http_requests_shutdown_dropped_total", "counter", &[]),
    ("http_requests_abandoned_total", "counter", &[]),
    ("http_panics_total", "counter", &[]),
    ("db_pool_connections", "gauge", &["state"]),
    ("db_pool_acquire_duration_seconds", "histogram", &[]),
    ("db_pool_acquire_timeouts_total", "counter", &[]),
    ("db_write_statement_requests", "histogram", &[]),
    ("cache_requests_total", "counter", &["result"]),
    ("outbox_pending", "gauge", &[]),
    ("outbox_delivered_total", "counter", &[]),
    ("outbox_failed_total", "counter", &[]),
    ("outbox_attempts_total", "counter", &["result"]),
    ("outbox_delivery_duration_seconds", "histogram", &[]),
    ("outbox_oldest_pending_age_seconds", "gauge", &[]),
    ("service_state", "gauge", &["state"]),
    ("build_info", "gauge", &["version", "commit"]),
    (
        "readiness_checks_total",
        "counter",
        &["dependency", "result"],
    ),
    ("readiness_dependency_up", "gauge", &["dependency"]),
    ("otel_spans_dropped_total", "counter", &[]),
    ("otel_spans_exported_total", "counter", &[]),
    ("process_cpu_seconds_total", "counter", &[]),
    ("process_open_fds", "gauge", &[]),
    ("process_max_fds", "gauge", &[]),
    ("process_virtual_memory_bytes", "gauge", &[]),
    ("process_resident_memory_bytes", "gauge", &[]),
    ("process_start_time_seconds", "gauge", &[]),
    ("process_threads", "gauge", &[]),
];

#[test]
fn every_spec_metric_is_exposed_once_with_its_type_and_labels() {
    let db = TestDb::new();
    let svc = busy_service(&db);
    let text = scrape(&svc);

    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE line");
            assert!(types.insert(name, ty).is_none(), "{name} typed twice");
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP line");
            assert!(!help.trim().is_empty(), "{name} has an empty HELP");
            assert!(helps.insert(name, help).is_none(), "{name} described twice");
        }
    }
    for (name, ty, labels) in SPEC {
        assert_eq!(types.get(name), Some(ty), "TYPE of {name}:\n{text}");
        assert!(helps.contains_key(name), "HELP of {name}");
        let series = match *ty {
            "histogram" => named(&text, &format!("{name}_count")),
            _ => named(&text, name),
        };
        assert!(!series.is_empty(), "{name} has no series:\n{text}");
        let want: BTreeSet<&str> = labels.iter().copied().collect();
        for s in &series {
            let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
            assert_eq!(got, want, "labels of {name}: {s:?}");
        }
    }
    // Nothing exposed that SPEC does not know about.
    for name in types.keys() {
        assert!(
            SPEC.iter().any(|(n, _, _)| n == name),
            "unexpected metric family {name}"
        );
    }

    // The request histogram's buckets are SPEC's, in seconds.
    let les: Vec<String> = named(&text, "http_request_duration_seconds_bucket")
        .iter()
        .filter(|s| s.label("path") == "/api/v1/users/{id}" && s.label("method") == "GET")
        .map(|s| s.label("le").to_owned())
        .collect();
    assert_eq!(
        les,
        ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"]
    );

    // build_info carries the embedded version and commit; service_state is
    // one-hot on `ready`.
    let build = named(&text, "build_info");
    assert_eq!(build.len(), 1);
    assert_eq!(build[0].label("version"), env!("CARGO_PKG_VERSION"));
    assert!(!build[0].label("commit").is_empty());
    assert_eq!(build[0].value, 1.0);
    let states: BTreeMap<String, f64> = named(&text, "service_state")
        .into_iter()
        .map(|s| (s.label("state").to_owned(), s.value))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("draining".to_owned(), 0.0),
            ("ready".to_owned(), 1.0),
            ("starting".to_owned(), 0.0),
            ("stopping".to_owned(), 0.0),
        ])
    );
    // process_* describes this very process.
    assert!(metrics_common::value(&text, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(metrics_common::value(&text, "process_threads", &[]) >= 4.0);
    assert!(samples(&text)
        .iter()
        .all(|s| s.value.is_finite() || s.label("le") == "+Inf"));
}
