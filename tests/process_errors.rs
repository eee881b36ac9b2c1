//! Errors and messages that say what failed, from the real binary: a busy
//! port names the listener and the address (exit 1), a log level change
//! names the new level, and `DRAIN_DELAY=0` stops without a drain pause.

mod support;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::client;
use support::service::{Service, BIN};
use support::TestDb;

/// Runs the binary to its exit (bounded) and returns (status, stdout+stderr).
fn run_to_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_busy_port_names_the_listener_and_the_address() {
    // Held without SO_REUSEPORT, so the service cannot share it.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = holder.local_addr().expect("addr").to_string();
    for (var, other, listener) in [
        ("ADDR", "ADMIN_ADDR", "public listener"),
        ("ADMIN_ADDR", "ADDR", "admin listener"),
    ] {
        let (status, out) = run_to_exit(&[
            // Never reached: binding comes first.
            ("DATABASE_URL", "postgres://app@127.0.0.1:1/users"),
            (var, busy.as_str()),
            (other, "127.0.0.1:0"),
        ]);
        assert_eq!(status, Some(1), "{out}");
        let line = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["msg"] == "usersvc failed")
            .unwrap_or_else(|| panic!("no failure line in {out}"));
        let error = line["error"].as_str().unwrap_or_default();
        assert_eq!(
            error,
            format!(
                "cannot listen on {busy} ({listener}, {var}): Address already in use (os error 98); \
                 another process listens there (is another instance running? for a hand-over \
                 between two instances on one port, start both with REUSE_PORT=true)"
            ),
            "{line}"
        );
    }
    drop(holder);
}

#[test]
fn a_second_instance_on_the_same_port_fails_unless_both_opt_into_reuse_port() {
    let db = TestDb::new();
    let first = Service::start(&[("DATABASE_URL", db.url())]);
    let port = first.addr.to_string();
    // Started by mistake on the port of a running instance: refused, exit 1.
    let (status, out) = run_to_exit(&[
        ("DATABASE_URL", db.url()),
        ("ADDR", port.as_str()),
        ("ADMIN_ADDR", "127.0.0.1:0"),
        ("REUSE_PORT", "true"),
    ]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("Address already in use"), "{out}");
    drop(first);

    // Both with REUSE_PORT=true: the second binds the same port (a hand-over).
    let first = Service::start(&[("DATABASE_URL", db.url()), ("REUSE_PORT", "true")]);
    let port = first.addr.to_string();
    let second = Service::start(&[
        ("DATABASE_URL", db.url()),
        ("ADDR", port.as_str()),
        ("REUSE_PORT", "true"),
    ]);
    assert_eq!(second.addr, first.addr);
}

#[test]
fn log_level_changes_name_the_new_level_and_zero_drain_delay_does_not_wait() {
    let db = TestDb::new();
    let mut svc = Service::start(&[("DATABASE_URL", db.url()), ("DRAIN_DELAY", "0")]);
    svc.wait_ready(Duration::from_secs(20));
    let admin = svc.admin.expect("admin listener");
    let r = client::request(admin, "PUT", "/debug/log-level?level=warn&for=1s", &[], b"")
        .expect("put level");
    assert_eq!(r.status, 200, "{}", r.text());
    // Logged also when the new level hides INFO.
    let changed = svc.wait_for_log(|v| v["msg"] == "log level changed", Duration::from_secs(3));
    assert_eq!(changed["new_level"], "WARN", "{changed}");
    assert_eq!(changed["previous_level"], "INFO", "{changed}");
    assert_eq!(changed["for_secs"], 1, "{changed}");
    let reverted = svc.wait_for_log(|v| v["msg"] == "log level reverted", Duration::from_secs(5));
    assert_eq!(reverted["new_level"], "INFO", "{reverted}");
    // Logged also when the new level hides WARN, the line's own level.
    let r = client::request(
        admin,
        "PUT",
        "/debug/log-level?level=error&for=1s",
        &[],
        b"",
    )
    .expect("put level");
    assert_eq!(r.status, 200, "{}", r.text());
    let quiet = svc.wait_for_log(
        |v| v["msg"] == "log level changed" && v["new_level"] == "ERROR",
        Duration::from_secs(3),
    );
    assert_eq!(quiet["previous_level"], "INFO", "{quiet}");
    // A `for` of zero is refused.
    let r = client::request(
        admin,
        "PUT",
        "/debug/log-level?level=error&for=0s",
        &[],
        b"",
    )
    .expect("put level");
    assert_eq!(r.status, 400, "{}", r.text());
    // Back to INFO, for the shutdown lines below.
    let r =
        client::request(admin, "PUT", "/debug/log-level?level=info", &[], b"").expect("put level");
    assert_eq!(r.status, 200, "{}", r.text());

    svc.signal("TERM");
    let status = svc.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    let started = svc.wait_for_log(
        |v| v["msg"] == "shutdown started: draining",
        Duration::from_secs(1),
    );
    assert_eq!(started["drain_delay_ms"], 0, "{started}");
    let complete = svc.wait_for_log(|v| v["msg"] == "shutdown complete", Duration::from_secs(1));
    let drain_ms = complete["drain_ms"].as_f64().expect("drain_ms");
    assert!(drain_ms < 100.0, "{complete}");
}
