//! Threads and fds stay bounded whatever clients do: with `max_connections = 50`, 100 idle
//! connections and 200 slowloris connections (one header byte per 500 ms) add no server thread
//! at all (one I/O thread serves every connection); a normal request still gets a slot and is
//! answered; everything is closed within the timeouts and the threads return to the baseline.
//!
//! Alone in its test binary so that the thread count (`/proc/self/task`) is its own.

mod raw;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use raw::*;
use tiny_http::Limits;

const MAX: usize = 50;
/// Threads the test itself may add (the slowloris driver) plus a margin.
const SLACK: usize = 2;

#[test]
fn idle_and_slowloris_connections_stay_bounded() {
    let started = Instant::now();
    let limits = Limits {
        max_connections: MAX,
        read_timeout: Duration::from_millis(1500),
        idle_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let (server, addr) = inline_server(limits);
    let control = server.control();

    // Thread monitor (started before the baseline so that it is part of it).
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (stop, peak) = (stop.clone(), peak.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(threads(), Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    thread::sleep(Duration::from_millis(50));
    let base = threads();

    // 2 x MAX idle connections.
    let idle: Vec<TcpStream> = (0..2 * MAX).map(|_| connect(addr)).collect();

    // 200 slowloris connections, driven by one thread: one header byte each per 500 ms.
    let slow_done = Arc::new(AtomicBool::new(false));
    let slowloris = {
        let slow_done = slow_done.clone();
        thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
            let head = b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let mut i = 0;
            while !slow_done.load(Ordering::SeqCst) && !conns.is_empty() {
                let b = head[i.min(head.len() - 1)];
                conns.retain_mut(|c| c.write_all(&[b]).is_ok());
                i += 1;
                thread::sleep(Duration::from_millis(500));
            }
            conns.len()
        })
    };

    // A normal request, queued behind all of them in the backlog.
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let mut normal = connect(addr);
    normal
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    normal.write_all(&get("/normal")).unwrap();
    let r = read_response(&mut normal).expect("the normal request was not answered");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok /normal");
    eprintln!("normal request answered after {:?}", t.elapsed());

    // Every idle connection was closed by the idle timeout.
    drop(normal);
    let mut idle = idle;
    for c in idle.iter_mut() {
        assert!(
            closed_within(c, Duration::from_secs(10)),
            "idle connection left open"
        );
    }
    // Every slowloris connection is cut by the head deadline (the driver stops writing when
    // all its connections fail).
    assert!(
        control.wait_idle(Instant::now() + Duration::from_secs(10)),
        "{} connections still open",
        control.open_connections()
    );
    slow_done.store(true, Ordering::SeqCst);
    let still_open = slowloris.join().unwrap();
    eprintln!("slowloris connections still writable at the end: {still_open}");

    let peak_seen = peak.load(Ordering::SeqCst);
    eprintln!("baseline {base} threads, peak {peak_seen}");
    // The baseline includes the server's I/O thread; after it only the test's slowloris
    // driver starts a thread. Connections cost none (the bound was `MAX + SLACK` when each
    // connection held a thread).
    assert!(
        peak_seen <= base + SLACK,
        "thread count reached {peak_seen} (baseline {base}, cap {MAX})"
    );

    // Threads return to the baseline (the slowloris driver has exited).
    assert!(
        eventually(Duration::from_secs(3), || threads() <= base),
        "threads did not return to the baseline: {} vs {}",
        threads(),
        base
    );
    stop.store(true, Ordering::SeqCst);
    monitor.join().unwrap();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
