//! The real logger, installed into a test-local buffer: lines written through `log` macros, the
//! run-time level switch, the cap on dependencies' debug output, and whole lines under
//! concurrency. One global logger per process, so the tests share it and take turns.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use log::LevelFilter;
use serde_json::Value;
use usersvc::logging::{self, context, LogFormat, LogSettings, RequestContext, RequestId};

/// A writer whose bytes the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the logger once and serializes the tests (the level is process-wide). Returns the
/// turn and a buffer emptied for this test.
fn setup() -> (MutexGuard<'static, ()>, Shared) {
    static BUF: OnceLock<Shared> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    let buf = BUF
        .get_or_init(|| {
            let buf = Shared::default();
            logging::init_with_writer(
                LogSettings {
                    level: LevelFilter::Info,
                    format: LogFormat::Json,
                },
                Box::new(buf.clone()),
            )
            .expect("first logger");
            buf
        })
        .clone();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    buf.0.lock().unwrap().clear();
    logging::set_level(LevelFilter::Info);
    (turn, buf)
}

fn lines(buf: &Shared) -> Vec<Value> {
    let bytes = std::mem::take(&mut *buf.0.lock().unwrap());
    let text = String::from_utf8(bytes).expect("UTF-8");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn messages(buf: &Shared) -> Vec<String> {
    lines(buf)
        .iter()
        .map(|v| v["msg"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn writes_json_lines_with_key_values() {
    let (_turn, buf) = setup();
    log::info!(target: "usersvc::http", method = "GET", status = 200, duration_ms = 1.5; "request completed");
    let raw = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let at = |field: &str| raw.find(&format!("\"{field}\":")).unwrap();
    assert!(raw.starts_with("{\"time\":\""), "{raw}");
    assert!(at("time") < at("level") && at("level") < at("msg") && at("msg") < at("target"));
    assert!(at("target") < at("method") && at("method") < at("status"));
    let got = lines(&buf);
    assert_eq!(got.len(), 1);
    let v = &got[0];
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["msg"], "request completed");
    assert_eq!(v["target"], "usersvc::http");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["status"], 200);
    assert_eq!(v["duration_ms"], 1.5);
}

#[test]
fn set_level_is_the_run_time_switch() {
    let (_turn, buf) = setup();
    assert_eq!(logging::level(), LevelFilter::Info);
    log::debug!(target: "usersvc::test", "hidden 1");
    log::info!(target: "usersvc::test", "shown 1");

    logging::set_level(LevelFilter::Debug);
    assert_eq!(logging::level(), LevelFilter::Debug);
    log::debug!(target: "usersvc::test", "shown 2");
    log::trace!(target: "usersvc::test", "hidden 2");

    logging::set_level(LevelFilter::Info);
    log::debug!(target: "usersvc::test", "hidden 3");

    logging::set_level(LevelFilter::Error);
    log::warn!(target: "usersvc::test", "hidden 4");
    log::error!(target: "usersvc::test", "shown 3");

    logging::set_level(LevelFilter::Off);
    log::error!(target: "usersvc::test", "hidden 5");

    assert_eq!(messages(&buf), ["shown 1", "shown 2", "shown 3"]);
}

#[test]
fn dependencies_debug_output_needs_trace() {
    let (_turn, buf) = setup();
    logging::set_level(LevelFilter::Debug);
    log::debug!(target: "tokio_postgres::query", "executing statement with parameters");
    log::info!(target: "r2d2", "dependency info passes");
    log::debug!(target: "usersvc::db", "our debug passes");

    logging::set_level(LevelFilter::Trace);
    log::debug!(target: "tokio_postgres::connection", "dependency debug at trace");
    log::trace!(target: "tokio_postgres::connection", "dependency trace at trace");
    // Statement parameters (users' names and e-mails): not even at trace.
    log::debug!(target: "tokio_postgres::query", "executing statement with parameters");

    assert_eq!(
        messages(&buf),
        [
            "dependency info passes",
            "our debug passes",
            "dependency debug at trace",
            "dependency trace at trace"
        ]
    );
}

#[test]
fn request_context_reaches_the_installed_logger() {
    let (_turn, buf) = setup();
    {
        let _guard = context::enter(RequestContext::new(RequestId::parse("abc").unwrap()));
        log::info!(target: "usersvc::http", "inside");
    }
    log::info!(target: "usersvc::http", "outside");
    let got = lines(&buf);
    assert_eq!(got[0]["request_id"], "abc");
    assert!(got[1].get("request_id").is_none());
}

#[test]
fn concurrent_lines_never_interleave() {
    let (_turn, buf) = setup();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let id = RequestId::parse(&format!("req-{t}")).unwrap();
                let _guard = context::enter(RequestContext::new(id));
                for i in 0..200 {
                    log::info!(target: "usersvc::test", thread = t, i = i; "line {i} of thread {t}, padded {}", "x".repeat(i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = lines(&buf);
    assert_eq!(got.len(), 8 * 200);
    for v in &got {
        let t = v["thread"].as_u64().unwrap();
        assert_eq!(v["request_id"], format!("req-{t}"));
    }
}

#[test]
fn a_second_init_is_refused() {
    let (_turn, _buf) = setup();
    assert!(logging::init(LogSettings::default()).is_err());
}
