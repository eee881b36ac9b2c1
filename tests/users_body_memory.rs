//! Memory amplification by JSON (issue 13): 50 concurrent creates whose
//! 1 MiB body carries an unknown member `"x":[[],[],…]` must not make the
//! real binary's memory grow by more than a small multiple of the bodies
//! themselves. Parsed into a `serde_json::Value` (as before), this took RSS
//! to 500–700 MiB; skipped without being built, the growth is about the 50
//! MiB of bodies the connections hold.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use support::client;
use support::service::Service;
use support::TestDb;

const CLIENTS: usize = 50;
const BODY_BYTES: usize = 1024 * 1024 - 64;

/// `VmRSS` / `VmHWM` (peak) of `pid`, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

fn hostile_body(i: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"name":"N{i}","email":"n{i}@example.com","x":["#).into_bytes();
    while body.len() < BODY_BYTES - 4 {
        body.extend_from_slice(b"[],");
    }
    body.extend_from_slice(b"[]]}");
    body
}

#[test]
fn megabyte_bodies_of_empty_arrays_do_not_amplify_memory() {
    let db = TestDb::new();
    let svc = Service::start(&[
        ("DATABASE_URL", db.url()),
        ("MAX_CONNECTIONS", "25"),
        ("QUEUE_DEPTH", "100"),
        // Room for all 50 bodies at once: this test is about what parsing
        // costs, not about MAX_BODY_BUFFER (whose 32 MiB default answers
        // 503 when the machine is slow enough for 33 bodies to be held at
        // once; tests/process_connlayer.rs covers that bound).
        ("MAX_BODY_BUFFER", "64MiB"),
    ]);
    svc.wait_ready(Duration::from_secs(20));
    // Warm up: every worker and the pool's connections exist before the
    // baseline, so the growth measured is the bodies' alone.
    let warm: Vec<_> = (0..25)
        .map(|i| {
            let addr = svc.addr;
            thread::spawn(move || {
                let body = format!(r#"{{"name":"W","email":"w{i}@example.com"}}"#);
                client::request(
                    addr,
                    "POST",
                    "/api/v1/users",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
                .expect("warm-up")
                .status
            })
        })
        .collect();
    for h in warm {
        assert_eq!(h.join().expect("thread"), 201);
    }
    let pid = svc.pid();
    let before = memory_kib(pid, "VmRSS:");

    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, barrier) = (svc.addr, Arc::clone(&barrier));
            let body = hostile_body(i);
            thread::spawn(move || {
                barrier.wait();
                let r = client::request(
                    addr,
                    "POST",
                    "/api/v1/users",
                    &[("Content-Type", "application/json")],
                    &body,
                )
                .expect("request");
                (r.status, r.text())
            })
        })
        .collect();
    for h in handles {
        let (status, text) = h.join().expect("thread");
        assert_eq!(status, 201, "{text}");
    }
    let peak = memory_kib(pid, "VmHWM:");
    let growth_mib = peak.saturating_sub(before) / 1024;
    let bodies_mib = (CLIENTS * BODY_BYTES / (1024 * 1024)) as u64;
    eprintln!(
        "RSS before {} MiB, peak {} MiB, growth {growth_mib} MiB for {bodies_mib} MiB of bodies",
        before / 1024,
        peak / 1024
    );
    assert!(
        growth_mib <= 2 * bodies_mib,
        "peak RSS grew {growth_mib} MiB for {bodies_mib} MiB of bodies"
    );
}
