//! OpenTelemetry tracing of the real binary, checked against a real OTLP/HTTP
//! receiver running inside the test: it decodes every export with the
//! official OTLP protobuf schema (`opentelemetry-proto`), as a collector
//! would, and can also answer 500 or never answer at all.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message;
use serde_json::Value;

use support::client;
use support::service::Service;
use support::TestDb;

/// How the receiver answers an export.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Accept,
    Fail500,
    /// Reads the request and never answers (the connection stays open).
    BlackHole,
}

#[derive(Clone, Debug)]
struct Exported {
    resource: HashMap<String, String>,
    span: Span,
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<Exported>>,
    requests: Mutex<Vec<HashMap<String, String>>>,
    changed: Condvar,
}

/// A minimal OTLP/HTTP receiver on 127.0.0.1.
struct Receiver {
    addr: SocketAddr,
    received: Arc<Received>,
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Received::default());
        let r = Arc::clone(&received);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let r = Arc::clone(&r);
                thread::spawn(move || serve(stream, mode, &r));
            }
        });
        Receiver { addr, received }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Exported> {
        self.received.spans.lock().expect("lock").clone()
    }

    fn export_requests(&self) -> usize {
        self.received.requests.lock().expect("lock").len()
    }

    /// Waits until `pred` holds for the spans received so far.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&[Exported]) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut spans = self.received.spans.lock().expect("lock");
        while !pred(&spans) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}: {spans:#?}");
            spans = self
                .received
                .changed
                .wait_timeout(spans, left)
                .expect("wait")
                .0;
        }
    }
}

/// One connection: HTTP/1.1 requests with a Content-Length body, kept alive.
fn serve(stream: TcpStream, mode: Mode, received: &Received) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut headers = HashMap::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request_line = line.trim_end().to_owned();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        headers.insert(":request-line".into(), request_line);
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        received.requests.lock().expect("lock").push(headers);
        match mode {
            Mode::BlackHole => {
                // Hold the connection open, answering nothing, until the
                // client gives up.
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
                return;
            }
            Mode::Fail500 => {
                let _ = writer
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
                continue;
            }
            Mode::Accept => {}
        }
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        {
            let mut spans = received.spans.lock().expect("lock");
            for rs in export.resource_spans {
                let resource = rs
                    .resource
                    .map(|r| attrs(&r.attributes))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        spans.push(Exported {
                            resource: resource.clone(),
                            span,
                        });
                    }
                }
            }
        }
        received.changed.notify_all();
        let _ = writer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        );
    }
}

/// Attributes as strings (ints printed).
fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn start(db: &TestDb, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![
        ("DATABASE_URL", db.url()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    env.extend_from_slice(extra);
    let svc = Service::start(&env);
    svc.wait_ready(Duration::from_secs(20));
    svc
}

fn create_user(svc: &Service, email: &str, headers: &[(&str, &str)]) -> client::Reply {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let body = format!(r#"{{"name":"Traced","email":"{email}"}}"#);
    client::request(svc.addr, "POST", "/api/v1/users", &all, body.as_bytes()).expect("create")
}

/// SIGTERM, then the exit status within `within`; the shutdown's log lines.
fn stop(svc: &mut Service, within: Duration) -> Vec<Value> {
    svc.signal("TERM");
    let started = Instant::now();
    let status = svc.wait_exit(within + Duration::from_secs(5));
    let took = started.elapsed();
    assert!(status.success(), "exit {status:?}");
    assert!(took < within, "shutdown took {took:?}, budget {within:?}");
    svc.logs()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const UNSAMPLED_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

#[test]
fn a_sampled_parent_is_exported_with_route_attributes_and_db_spans() {
    let db = TestDb::new();
    let receiver = Receiver::start(Mode::Accept);
    // Credentials in the URL are sent as basic authentication.
    let endpoint = format!("http://otel:hunter2@{}", receiver.addr);
    let mut svc = start(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cret%21"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_SERVICE_NAME", "users-traced"),
        ],
    );
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let created = create_user(
        &svc,
        "traced@example.com",
        &[
            ("traceparent", &traceparent),
            ("tracestate", "vendor=opaque"),
            ("User-Agent", "tracing-test/1"),
        ],
    );
    assert_eq!(created.status, 201, "{}", created.text());
    // An unsampled caller: answered as usual, never exported.
    let unsampled = format!("00-{UNSAMPLED_TRACE_ID}-{PARENT_ID}-00");
    let reply = create_user(&svc, "quiet@example.com", &[("traceparent", &unsampled)]);
    assert_eq!(reply.status, 201);
    // Malformed headers are ignored, never an error.
    for bad in ["00-xyz-00f067aa0ba902b7-01", "garbage", &"0".repeat(600)] {
        let reply = client::request(
            svc.addr,
            "GET",
            "/api/v1/users",
            &[("traceparent", bad)],
            b"",
        )
        .expect("list");
        assert_eq!(reply.status, 200, "traceparent {bad:?}");
    }

    receiver.wait_for(
        "the server span and its DB spans",
        Duration::from_secs(10),
        |spans| {
            let ours: Vec<_> = spans
                .iter()
                .filter(|e| hex(&e.span.trace_id) == TRACE_ID)
                .collect();
            ours.iter().any(|e| e.span.kind == SpanKind::Server as i32)
                && ours
                    .iter()
                    .filter(|e| e.span.kind == SpanKind::Client as i32)
                    .count()
                    >= 1
        },
    );
    let spans = receiver.spans();
    let server = spans
        .iter()
        .find(|e| hex(&e.span.trace_id) == TRACE_ID && e.span.kind == SpanKind::Server as i32)
        .expect("server span");
    let s = &server.span;
    assert_eq!(s.name, "POST /api/v1/users");
    assert_eq!(
        hex(&s.parent_span_id),
        PARENT_ID,
        "the caller's span is the parent"
    );
    assert_eq!(s.trace_state, "vendor=opaque");
    let a = attrs(&s.attributes);
    for (key, want) in [
        ("http.request.method", "POST"),
        ("http.route", "/api/v1/users"),
        ("http.response.status_code", "201"),
        ("url.path", "/api/v1/users"),
        ("server.address", "test"),
        ("client.address", "127.0.0.1"),
        ("user_agent.original", "tracing-test/1"),
    ] {
        assert_eq!(a.get(key).map(String::as_str), Some(want), "{key}: {a:?}");
    }
    assert!(a.contains_key("usersvc.queue.duration_ms"), "{a:?}");
    assert_ne!(
        s.status.as_ref().map(|st| st.code),
        Some(StatusCode::Error as i32)
    );
    // Resource: ours, the operator's, the service's name.
    let r = &server.resource;
    assert_eq!(
        r.get("service.name").map(String::as_str),
        Some("users-traced")
    );
    assert_eq!(
        r.get("deployment.environment").map(String::as_str),
        Some("test")
    );
    for key in [
        "service.version",
        "service.instance.id",
        "host.name",
        "process.pid",
    ] {
        assert!(r.contains_key(key), "{key} missing: {r:?}");
    }
    assert_eq!(r.get("process.pid"), Some(&svc.pid().to_string()));

    // DB spans: children of the server span, the statement's shape only.
    let db_spans: Vec<_> = spans
        .iter()
        .filter(|e| hex(&e.span.trace_id) == TRACE_ID && e.span.kind == SpanKind::Client as i32)
        .collect();
    let mut collections = Vec::new();
    for e in &db_spans {
        assert_eq!(e.span.parent_span_id, s.span_id, "{:?}", e.span.name);
        let a = attrs(&e.span.attributes);
        assert_eq!(
            a.get("db.system.name").map(String::as_str),
            Some("postgresql")
        );
        assert!(a.contains_key("db.operation.name"), "{a:?}");
        collections.push(format!(
            "{} {}",
            a["db.operation.name"],
            a.get("db.collection.name").cloned().unwrap_or_default()
        ));
        for value in a.values() {
            assert!(
                !value.contains("traced@example.com"),
                "a parameter leaked: {a:?}"
            );
        }
        assert!(e.span.start_time_unix_nano >= s.start_time_unix_nano);
        assert!(e.span.end_time_unix_nano <= s.end_time_unix_nano);
    }
    assert!(
        collections.iter().any(|c| c == "INSERT users"),
        "{collections:?}"
    );

    // The exporter's headers reached the collector.
    let requests = receiver.received.requests.lock().expect("lock").clone();
    assert!(requests
        .iter()
        .all(|h| h.get("x-api-key").map(String::as_str) == Some("s3cret!")));
    assert!(requests
        .iter()
        .all(|h| h.get("authorization").map(String::as_str) == Some("Basic b3RlbDpodW50ZXIy")));
    assert!(requests
        .iter()
        .all(|h| h[":request-line"].starts_with("POST /v1/traces ")
            && h.get("content-type").map(String::as_str) == Some("application/x-protobuf")));

    // Every log line of the traced request carries its trace and span ids.
    let request_id = created
        .header("X-Request-ID")
        .expect("request id")
        .to_owned();
    let lines: Vec<Value> = svc
        .logs()
        .into_iter()
        .filter(|v| v["request_id"] == request_id.as_str())
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert_eq!(line["trace_id"], TRACE_ID, "{line}");
        assert_eq!(line["span_id"], hex(&s.span_id).as_str(), "{line}");
    }
    // The unsampled request's lines carry its caller's trace id and a span
    // id of its own, though no span is exported.
    let quiet_id = reply.header("X-Request-ID").expect("request id").to_owned();
    let quiet: Vec<Value> = svc
        .logs()
        .into_iter()
        .filter(|v| v["request_id"] == quiet_id.as_str())
        .collect();
    assert!(!quiet.is_empty());
    for line in &quiet {
        assert_eq!(line["trace_id"], UNSAMPLED_TRACE_ID, "{line}");
        assert!(
            line["span_id"]
                .as_str()
                .is_some_and(|s| s.len() == 16 && s != PARENT_ID),
            "{line}"
        );
    }

    let logs = stop(&mut svc, Duration::from_secs(3));
    let stopped = logs
        .iter()
        .find(|v| v["msg"] == "tracing stopped")
        .expect("tracing stopped line");
    assert_eq!(stopped["flushed"], true, "{stopped}");
    assert!(!receiver
        .spans()
        .iter()
        .any(|e| hex(&e.span.trace_id) == UNSAMPLED_TRACE_ID));
    // Header values and URL credentials are secrets: never logged.
    assert!(!svc
        .lines()
        .iter()
        .any(|l| l.contains("s3cret") || l.contains("hunter2")));
}

#[test]
fn a_5xx_is_an_error_span_and_a_failed_statement_an_error_db_span() {
    let db = TestDb::new();
    let receiver = Receiver::start(Mode::Accept);
    let mut svc = start(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ],
    );
    // Answered on the connection thread: a 404 (no route) and an unknown
    // method, still one span each.
    assert_eq!(client::get(svc.addr, "/nope").expect("404").status, 404);
    let brew = client::request(svc.addr, "BREW", "/nope", &[], b"").expect("brew");
    assert_eq!(brew.status, 404);
    receiver.wait_for("the 404 spans", Duration::from_secs(10), |spans| {
        spans
            .iter()
            .filter(|e| e.span.kind == SpanKind::Server as i32)
            .count()
            >= 2
    });
    let spans = receiver.spans();
    let get = spans
        .iter()
        .find(|e| e.span.name == "GET")
        .expect("GET span");
    let a = attrs(&get.span.attributes);
    assert_eq!(
        a.get("http.response.status_code").map(String::as_str),
        Some("404")
    );
    assert!(!a.contains_key("http.route"), "{a:?}");
    assert_ne!(
        get.span.status.as_ref().map(|st| st.code),
        Some(StatusCode::Error as i32),
        "a 4xx is not a server error"
    );
    let other = spans
        .iter()
        .find(|e| e.span.name == "HTTP")
        .expect("HTTP span");
    let a = attrs(&other.span.attributes);
    assert_eq!(
        a.get("http.request.method").map(String::as_str),
        Some("_OTHER")
    );

    // The statement now fails with 42P01 (undefined table): a 500.
    db.client()
        .batch_execute("ALTER TABLE users RENAME TO users_gone")
        .expect("rename");
    let reply = client::get(svc.addr, "/api/v1/users/7").expect("get");
    assert_eq!(reply.status, 500, "{}", reply.text());
    receiver.wait_for("the 500's spans", Duration::from_secs(10), |spans| {
        spans.iter().any(|e| {
            e.span.kind == SpanKind::Server as i32
                && attrs(&e.span.attributes).get("http.response.status_code")
                    == Some(&"500".to_owned())
        })
    });
    let spans = receiver.spans();
    let server = spans
        .iter()
        .find(|e| e.span.kind == SpanKind::Server as i32 && e.span.name == "GET /api/v1/users/{id}")
        .expect("server span");
    assert_eq!(
        server.span.status.as_ref().map(|st| st.code),
        Some(StatusCode::Error as i32)
    );
    assert!(server.span.parent_span_id.is_empty(), "a root span");
    let failed = spans
        .iter()
        .find(|e| e.span.parent_span_id == server.span.span_id)
        .expect("db span");
    let a = attrs(&failed.span.attributes);
    assert_eq!(
        a.get("db.response.status_code").map(String::as_str),
        Some("42P01")
    );
    assert_eq!(
        a.get("db.operation.name").map(String::as_str),
        Some("SELECT")
    );
    assert_eq!(
        failed.span.status.as_ref().map(|st| st.code),
        Some(StatusCode::Error as i32)
    );
    stop(&mut svc, Duration::from_secs(3));
}

#[test]
fn without_a_parent_ratio_zero_exports_nothing_and_ratio_one_everything() {
    let db = TestDb::new();
    for (ratio, want) in [("0", 0), ("1", 5)] {
        let receiver = Receiver::start(Mode::Accept);
        let mut svc = start(
            &db,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", ratio),
            ],
        );
        for _ in 0..5 {
            assert_eq!(
                client::get(svc.addr, "/api/v1/users").expect("list").status,
                200
            );
        }
        // The shutdown flush exports whatever is still queued.
        let logs = stop(&mut svc, Duration::from_secs(3));
        let stopped = logs
            .iter()
            .find(|v| v["msg"] == "tracing stopped")
            .expect("line");
        assert_eq!(stopped["flushed"], true);
        let servers = receiver
            .spans()
            .iter()
            .filter(|e| e.span.kind == SpanKind::Server as i32)
            .count();
        assert_eq!(servers, want, "ratio {ratio}");
        assert_eq!(
            stopped["exported_total"].as_u64(),
            Some(receiver.spans().len() as u64)
        );
    }
}

#[test]
fn a_dead_black_holed_or_failing_collector_never_blocks_requests_or_shutdown() {
    let db = TestDb::new();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let black_hole = Receiver::start(Mode::BlackHole);
    let failing = Receiver::start(Mode::Fail500);
    for (what, endpoint) in [
        ("dead", dead),
        ("black hole", black_hole.endpoint()),
        ("500", failing.endpoint()),
    ] {
        let mut svc = start(
            &db,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_TRACES_SAMPLER", "always_on"),
                // Far longer than the shutdown flush bound.
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "20s"),
            ],
        );
        let started = Instant::now();
        for i in 0..30 {
            let reply = create_user(
                &svc,
                &format!("{what}-{i}@example.com").replace(' ', "-"),
                &[],
            );
            assert_eq!(reply.status, 201, "{what}: {}", reply.text());
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{what}: 30 requests took {took:?}"
        );
        if what != "black hole" {
            // Failed exports are counted.
            let admin = svc.admin.expect("admin");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let text = client::get(admin, "/metrics").expect("metrics").text();
                let dropped = text
                    .lines()
                    .find_map(|l| l.strip_prefix("otel_spans_dropped_total "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                if dropped > 0.0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: nothing counted:\n{text}"
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
        // DRAIN_DELAY 300ms + the 1s flush bound + slack.
        let logs = stop(&mut svc, Duration::from_secs(3));
        let stopped = logs
            .iter()
            .find(|v| v["msg"] == "tracing stopped")
            .expect("tracing stopped line");
        // Nothing is lost silently: whatever did not arrive is counted.
        assert!(
            stopped["dropped_total"].as_u64().unwrap_or(0) >= 30,
            "{what}: {stopped}"
        );
        assert_eq!(stopped["exported_total"], 0, "{what}: {stopped}");
        if what == "black hole" {
            assert_eq!(stopped["flushed"], false, "{what}: {stopped}");
        }
        let warnings = logs.iter().filter(|v| v["msg"] == "spans dropped").count();
        assert!(
            (1..=2).contains(&warnings),
            "{what}: {warnings} drop warnings"
        );
        assert!(logs.iter().any(|v| v["msg"] == "shutdown complete"));
    }
    assert!(
        black_hole.export_requests() >= 1,
        "the black hole was reached"
    );
    assert!(
        failing.export_requests() >= 1,
        "the failing collector was reached"
    );
}

/// The names of the process's threads, from `/proc/PID/task/*/comm`.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let comm = entry.expect("entry").path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            names.push(name.trim().to_owned());
        }
    }
    names
}

#[test]
fn tracing_switched_off_builds_nothing_and_sends_nothing() {
    let db = TestDb::new();
    let receiver = Receiver::start(Mode::Accept);
    let endpoint = receiver.endpoint();
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SDK_DISABLED", "true"),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_TRACES_EXPORTER", "none"),
        ],
    ];
    for off in cases {
        let mut env = vec![("OTEL_TRACES_SAMPLER", "always_on")];
        env.extend_from_slice(off);
        let mut svc = start(&db, &env);
        let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
        let reply = client::request(
            svc.addr,
            "GET",
            "/api/v1/users",
            &[("traceparent", &traceparent)],
            b"",
        )
        .expect("list");
        assert_eq!(reply.status, 200);
        let names = thread_names(svc.pid());
        assert!(
            !names.iter().any(|n| n.starts_with("OpenTelemetry")),
            "{off:?}: {names:?}"
        );
        let logs = stop(&mut svc, Duration::from_secs(3));
        assert!(
            !logs
                .iter()
                .any(|v| v["msg"] == "tracing on" || v["msg"] == "tracing stopped"),
            "{off:?}"
        );
        // Tracing off: every line of a request still carries trace and span
        // ids (SPEC: every line written while serving a request), the
        // caller's trace id where it sent one; no other line has any.
        let listed = reply.header("X-Request-ID").expect("request id");
        for line in &logs {
            match line.get("request_id").and_then(Value::as_str) {
                Some(id) if id == listed => {
                    assert_eq!(line["trace_id"], TRACE_ID, "{off:?}: {line}")
                }
                Some(_) => assert!(
                    line["trace_id"].as_str().is_some_and(|t| t.len() == 32)
                        && line["span_id"].as_str().is_some_and(|s| s.len() == 16),
                    "{off:?}: {line}"
                ),
                None => assert!(line.get("trace_id").is_none(), "{off:?}: {line}"),
            }
        }
    }
    assert_eq!(receiver.export_requests(), 0);
}

#[test]
fn every_thread_of_a_tracing_process_is_named_and_none_is_tokio() {
    let db = TestDb::new();
    let receiver = Receiver::start(Mode::Accept);
    let mut svc = start(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ],
    );
    for i in 0..5 {
        assert_eq!(
            create_user(&svc, &format!("t{i}@example.com"), &[]).status,
            201
        );
    }
    receiver.wait_for("an export", Duration::from_secs(10), |s| !s.is_empty());
    let names = thread_names(svc.pid());
    let known = [
        "usersvc",
        "worker-",
        "http-",
        "db-pool-",
        "otel-export",
        "readiness-",
        "outbox",
        "db-watchdog",
        "db-cancel",
        "log-level-revert",
        "redis-pool-",
        "dns-resolve",
    ];
    for name in &names {
        assert!(
            known.iter().any(|k| name.starts_with(k)),
            "unexpected thread {name:?} in {names:?}"
        );
        assert!(!name.to_lowercase().contains("tokio") && !name.contains("reqwest"));
    }
    assert_eq!(
        names.iter().filter(|n| *n == "otel-export").count(),
        1,
        "{names:?}"
    );
    stop(&mut svc, Duration::from_secs(3));
}
