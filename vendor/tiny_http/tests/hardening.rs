//! One regression test per defect of stock tiny_http 0.12.0 (see the README of this crate and
//! `shared/tiny_http-0.12-defects.md`), over raw TCP, asserting what a client sees.
//!
//! The file also compiles against stock tiny_http 0.12.0 (`--cfg stock_tiny_http`): every use
//! of an API that stock lacks is behind the `shim` module. `scripts/http-defects-vs-stock.sh`
//! runs it against both and prints the comparison table.
//!
//! Tests that count threads, change resource limits or may crash the process run their body in
//! a child process (the same test binary, `--exact NAME`).

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Header, Request, Response, Server};

/// Test-side limits (stock ignores them: it has none).
#[derive(Clone, Copy, Debug)]
pub struct Cfg {
    pub max_connections: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub stack: usize,
}

impl Default for Cfg {
    fn default() -> Self {
        Cfg {
            max_connections: 1024,
            read_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            stack: 256 * 1024,
        }
    }
}

/// A running server with `workers` threads answering requests with `f`.
pub struct Srv {
    pub addr: SocketAddr,
    pub server: Arc<Server>,
}

#[cfg(not(stock_tiny_http))]
mod shim {
    use super::*;
    use std::sync::mpsc;
    use tiny_http::{Dispatch, Limits};

    pub fn limits(c: &Cfg) -> Limits {
        Limits {
            max_connections: c.max_connections,
            read_timeout: c.read_timeout,
            write_timeout: c.write_timeout,
            idle_timeout: c.idle_timeout,
            thread_stack_size: c.stack,
            ..Limits::default()
        }
    }

    /// Queue mode (`recv()`), on a listener of ours.
    pub fn queue_server_on(l: TcpListener, c: Cfg) -> Server {
        Server::from_listener(l, limits(&c), Dispatch::Queue).unwrap()
    }

    /// Handler mode: the handler (on the connection thread) hands each request to a pool of
    /// `workers` threads over a channel, like the service does.
    pub fn worker_server(
        c: Cfg,
        workers: usize,
        f: impl Fn(Request) + Send + Sync + 'static,
    ) -> Srv {
        let (tx, rx) = mpsc::sync_channel::<Request>(1024);
        let rx = Arc::new(Mutex::new(rx));
        let f = Arc::new(f);
        for _ in 0..workers {
            let (rx, f) = (rx.clone(), f.clone());
            thread::spawn(move || loop {
                let rq = rx.lock().unwrap().recv();
                match rq {
                    Ok(rq) => f(rq),
                    Err(_) => break,
                }
            });
        }
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let handler: tiny_http::Handler = Arc::new(move |rq| {
            let _ = tx.send(rq);
        });
        let server = Server::from_listener(l, limits(&c), Dispatch::Handler(handler)).unwrap();
        Srv {
            addr,
            server: Arc::new(server),
        }
    }

    pub fn open_connections(s: &Server) -> usize {
        s.control().open_connections()
    }

    pub fn is_body_too_large(e: &io::Error) -> bool {
        tiny_http::is_body_too_large(e)
    }
}

#[cfg(stock_tiny_http)]
mod shim {
    use super::*;

    pub fn queue_server_on(l: TcpListener, _c: Cfg) -> Server {
        Server::from_listener(l, None).unwrap()
    }

    pub fn worker_server(
        _c: Cfg,
        workers: usize,
        f: impl Fn(Request) + Send + Sync + 'static,
    ) -> Srv {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let f = Arc::new(f);
        for _ in 0..workers {
            let (server, f) = (server.clone(), f.clone());
            thread::spawn(move || {
                while let Ok(rq) = server.recv() {
                    f(rq)
                }
            });
        }
        Srv { addr, server }
    }

    pub fn open_connections(s: &Server) -> usize {
        s.num_connections()
    }

    pub fn is_body_too_large(_e: &io::Error) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Client side helpers

const BIG: usize = 64 << 20;

/// The test application: records every URL it sees.
#[derive(Clone, Default)]
struct App {
    seen: Arc<Mutex<Vec<String>>>,
}

impl App {
    fn handle(&self, mut rq: Request) {
        let url = rq.url().to_string();
        self.seen.lock().unwrap().push(url.clone());
        if url.starts_with("/big") {
            let body = io::repeat(b'x').take(BIG as u64);
            let _ = rq.respond(Response::new(200.into(), vec![], body, Some(BIG), None));
        } else if url.starts_with("/close") {
            let close = Header::from_bytes(&b"Connection"[..], &b"close"[..]).unwrap();
            let _ = rq.respond(Response::from_string("bye").with_header(close));
        } else if url.starts_with("/noread") {
            let _ = rq.respond(Response::from_string("ok"));
        } else {
            let mut body = Vec::new();
            let status = match rq.as_reader().read_to_end(&mut body) {
                Ok(_) => 200,
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => 408,
                Err(e) if shim::is_body_too_large(&e) => 413,
                Err(_) => 400,
            };
            let text = format!("{} {}", url, String::from_utf8_lossy(&body));
            let _ = rq.respond(Response::from_string(text).with_status_code(status));
        }
    }

    fn saw(&self, needle: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|u| u.contains(needle))
    }

    fn server(&self, c: Cfg, workers: usize) -> Srv {
        let app = self.clone();
        shim::worker_server(c, workers, move |rq| app.handle(rq))
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn says_close(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

/// Reads one response (skipping 1xx) from a buffered client stream.
fn read_response_from(r: &mut impl BufRead) -> io::Result<Resp> {
    loop {
        let mut head = String::new();
        loop {
            let line = read_line(r)?;
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push_str(&line);
        }
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, head.clone()))?;
        if (100..200).contains(&status) {
            continue;
        }
        let mut resp = Resp {
            status,
            head,
            body: Vec::new(),
        };
        if let Some(n) = resp.header("Content-Length") {
            let n: usize = n.parse().unwrap();
            resp.body = vec![0; n];
            r.read_exact(&mut resp.body)?;
        } else if resp
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size = usize::from_str_radix(read_line(r)?.trim(), 16).unwrap();
                if size == 0 {
                    read_line(r)?;
                    break;
                }
                let mut chunk = vec![0; size + 2];
                r.read_exact(&mut chunk)?;
                resp.body.extend_from_slice(&chunk[..size]);
            }
        }
        return Ok(resp);
    }
}

fn read_response(s: &mut TcpStream) -> io::Result<Resp> {
    // One byte at a time: nothing past the response is consumed.
    struct ByteReader<'a>(&'a mut TcpStream);
    impl Read for ByteReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }
    let mut r = BufReader::with_capacity(1, ByteReader(s));
    read_response_from(&mut r)
}

/// Sends `req` on a new connection and reads one response.
fn roundtrip(addr: SocketAddr, req: &[u8]) -> io::Result<Resp> {
    let mut s = connect(addr);
    s.write_all(req)?;
    read_response(&mut s)
}

/// True if the peer closes the connection within `within` (EOF or reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes

const CHILD_ENV: &str = "HARDENING_CHILD";

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

fn child_command(name: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name);
    c
}

/// In the parent: runs the calling test in a child process, asserts it passed, returns true.
/// In the child: returns false (run the body).
fn in_child_process(name: &str) -> bool {
    if is_child(name) {
        return false;
    }
    let mut child = child_command(name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut out);
    match status {
        Some(st) => assert!(st.success(), "child process failed ({st}):\n{out}"),
        None => panic!("child process timed out:\n{out}"),
    }
    true
}

/// In the child: serves the test app, warms up, prints `PORT n` and waits for stdin to close.
fn child_server_main(c: Cfg) -> ! {
    let app = App::default();
    let srv = app.server(c, 2);
    let r = roundtrip(srv.addr, &get("/warmup")).unwrap();
    assert_eq!(r.status, 200);
    println!("PORT {}", srv.addr.port());
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    std::process::exit(0)
}

/// In the parent: starts the child server of test `name`.
fn start_child_server(name: &str) -> (Child, SocketAddr) {
    let mut child = child_command(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let port = loop {
        let line = read_line(&mut out).expect("child server did not start");
        // libtest prints `test NAME ... ` on the same line
        if let Some(i) = line.find("PORT ") {
            break line[i + 5..].trim().parse::<u16>().unwrap();
        }
    };
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn prlimit(pid: u32, arg: &str) {
    let st = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(arg)
        .status()
        .expect("prlimit(1) is needed");
    assert!(st.success(), "prlimit {arg} failed");
}

/// The `n` lowest descriptor numbers not in use by process `pid` (the kernel hands out the
/// lowest free number, and fails with EMFILE when it is not below RLIMIT_NOFILE).
fn free_fds(pid: u32, n: usize) -> Vec<usize> {
    let used: std::collections::HashSet<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).filter(|fd| !used.contains(fd)).take(n).collect()
}

fn vm_size_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn stop_child(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// Threads and connections

/// Defect: one OS thread per open connection, without bound (idle keep-alive included).
#[test]
fn threads_are_bounded_by_max_connections() {
    if in_child_process("threads_are_bounded_by_max_connections") {
        return;
    }
    let base = threads();
    let cfg = Cfg {
        max_connections: 20,
        idle_timeout: Duration::from_secs(3),
        ..Cfg::default()
    };
    let srv = App::default().server(cfg, 2);
    let idle: Vec<TcpStream> = (0..150).map(|_| connect(srv.addr)).collect();
    thread::sleep(Duration::from_millis(500));
    let peak = threads();
    // Ours: connections cost no thread (one I/O thread, plus the test's 2 workers), so the
    // bound does not depend on the number of connections at all, not even on the cap of 20.
    assert!(
        peak <= base + 8,
        "{} threads for 150 idle connections (base {})",
        peak,
        base
    );
    drop(idle);
}

/// Defect: race in `TaskPool::spawn`; in a burst of keep-alive clients some are never read.
#[test]
fn burst_of_keepalive_clients_all_answered() {
    let srv = App::default().server(Cfg::default(), 4);
    let n = 300;
    let start = Arc::new(Barrier::new(n));
    let end = Arc::new(Barrier::new(n));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let (start, end, answered) = (start.clone(), end.clone(), answered.clone());
            thread::spawn(move || {
                start.wait();
                let mut s = connect(srv.addr);
                let ok = s.write_all(&get("/burst")).is_ok()
                    && read_response(&mut s).is_ok_and(|r| r.status == 200);
                if ok {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                end.wait(); // keep the connection open until every client is done
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(answered.load(Ordering::SeqCst), n);
}

/// Defect: any `accept()` error (here EMFILE) ends the accept loop for good (#283).
#[test]
fn accept_error_does_not_kill_the_server() {
    const NAME: &str = "accept_error_does_not_kill_the_server";
    if is_child(NAME) {
        child_server_main(Cfg::default());
    }
    let (child, addr) = start_child_server(NAME);
    let pid = child.id();
    // No free descriptor: the server's accept() fails with EMFILE.
    prlimit(pid, &format!("--nofile={}:", free_fds(pid, 1)[0]));
    let mut s = connect(addr);
    s.write_all(&get("/after-emfile")).unwrap();
    thread::sleep(Duration::from_millis(500));
    prlimit(pid, "--nofile=4096:");
    let r = read_response(&mut s);
    stop_child(child);
    assert_eq!(r.expect("no answer after EMFILE").status, 200);
}

/// Defect: `try_clone().unwrap()` on EMFILE panics the accept thread (#195).
#[test]
fn fd_exhaustion_after_accept_does_not_kill_the_server() {
    const NAME: &str = "fd_exhaustion_after_accept_does_not_kill_the_server";
    if is_child(NAME) {
        child_server_main(Cfg::default());
    }
    let (child, addr) = start_child_server(NAME);
    let pid = child.id();
    // Exactly one free descriptor: accept() succeeds, a dup() would fail.
    prlimit(pid, &format!("--nofile={}:", free_fds(pid, 2)[1]));
    let mut s = connect(addr);
    s.write_all(&get("/one-fd-left")).unwrap();
    let first = read_response(&mut s);
    drop(s);
    prlimit(pid, "--nofile=4096:");
    let second = roundtrip(addr, &get("/after"));
    stop_child(child);
    assert_eq!(first.expect("no answer with one fd left").status, 200);
    assert_eq!(second.expect("server dead afterwards").status, 200);
}

/// Defect: a failed thread spawn panics the accept thread (#221).
#[test]
fn thread_spawn_failure_does_not_kill_the_server() {
    const NAME: &str = "thread_spawn_failure_does_not_kill_the_server";
    if is_child(NAME) {
        // Connection threads with a 16 MiB stack, so that the address-space limit below makes
        // spawning them fail (stock uses 2 MiB stacks, which fail as well).
        child_server_main(Cfg {
            stack: 16 << 20,
            ..Cfg::default()
        });
    }
    let (child, addr) = start_child_server(NAME);
    let pid = child.id();
    // Headroom under the limit: room for the heap to grow while the test runs (a failed
    // allocation aborts any Rust process, which is not the defect under test; with 1 MiB it
    // did, once, on a loaded machine), too little for one more connection thread's stack.
    #[cfg(not(stock_tiny_http))]
    const HEADROOM_KIB: u64 = 8 * 1024; // half of the 16 MiB stacks above
    #[cfg(stock_tiny_http)]
    const HEADROOM_KIB: u64 = 1024; // stock's stacks are 2 MiB
    prlimit(
        pid,
        &format!("--as={}:", (vm_size_kib(pid) + HEADROOM_KIB) * 1024),
    );
    // Kept-alive connections, one after the other, until every idle thread (stock keeps a pool
    // of 4) is taken and the server must spawn one.
    let mut conns = Vec::new();
    let mut unanswered = 0;
    for _ in 0..8 {
        if let Ok(mut s) = TcpStream::connect(addr) {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(&get("/no-thread"));
            if read_response(&mut s).is_err() {
                unanswered += 1;
            }
            conns.push(s);
        }
        thread::sleep(Duration::from_millis(50));
    }
    prlimit(pid, "--as=unlimited:");
    // Ours spawns no thread per connection (one I/O thread serves them all), so the limit
    // costs no connection its answer: a stricter bound than "a failed spawn closes that
    // connection and the server goes on".
    #[cfg(not(stock_tiny_http))]
    assert_eq!(
        unanswered, 0,
        "a connection went unanswered under the limit"
    );
    #[cfg(stock_tiny_http)]
    let _ = unanswered;
    let r = roundtrip(addr, &get("/after-spawn-failure"));
    drop(conns);
    stop_child(child);
    assert_eq!(r.expect("server dead after a failed spawn").status, 200);
}

/// Defect: `num_connections()` is `unimplemented!()`.
#[test]
fn open_connections_are_counted() {
    let srv = App::default().server(Cfg::default(), 1);
    let conns: Vec<TcpStream> = (0..3).map(|_| connect(srv.addr)).collect();
    assert!(eventually(Duration::from_secs(2), || {
        shim::open_connections(&srv.server) == 3
    }));
    drop(conns);
    assert!(eventually(Duration::from_secs(2), || {
        shim::open_connections(&srv.server) == 0
    }));
}

// ---------------------------------------------------------------------------------------------
// Timeouts

/// Defect: no idle timeout: a kept-alive connection stays open forever.
#[test]
fn idle_keepalive_connection_is_closed() {
    let cfg = Cfg {
        idle_timeout: Duration::from_secs(1),
        ..Cfg::default()
    };
    let srv = App::default().server(cfg, 1);
    let mut s = connect(srv.addr);
    s.write_all(&get("/first")).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    let t = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(4)));
    assert!(t.elapsed() >= Duration::from_millis(800));
}

/// Defect: no read timeout and an expired read never becomes 408: slowloris keeps a
/// connection (and its thread) forever.
#[test]
fn slowloris_head_gets_408() {
    let cfg = Cfg {
        read_timeout: Duration::from_secs(1),
        ..Cfg::default()
    };
    let srv = App::default().server(cfg, 1);
    let mut s = connect(srv.addr);
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n");
        for _ in 0..30 {
            if w.write_all(b"X").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    let t = Instant::now();
    let r = read_response(&mut s).expect("no 408");
    assert_eq!(r.status, 408);
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(closed_within(&mut s, Duration::from_secs(4)));
    writer.join().unwrap();
}

/// Defect: SO_RCVTIMEO on the listening socket (the only way to get timeouts in stock) makes
/// accept() time out, which ends the accept loop.
#[test]
fn listener_with_rcvtimeo_keeps_accepting() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&l)
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr = l.local_addr().unwrap();
    let server = Arc::new(shim::queue_server_on(l, Cfg::default()));
    let s2 = server.clone();
    thread::spawn(move || {
        while let Ok(rq) = s2.recv() {
            let _ = rq.respond(Response::from_string("ok"));
        }
    });
    thread::sleep(Duration::from_millis(700));
    let r = roundtrip(addr, &get("/late"));
    assert_eq!(r.expect("accept loop died").status, 200);
}

/// Defect: no body read timeout: a client stalling mid-body blocks the worker reading it.
#[test]
fn stalled_body_read_times_out() {
    let cfg = Cfg {
        read_timeout: Duration::from_secs(1),
        ..Cfg::default()
    };
    let srv = App::default().server(cfg, 1);
    let mut s = connect(srv.addr);
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
        .unwrap();
    let r = read_response(&mut s).expect("worker stuck on the body");
    assert_eq!(r.status, 408);
    assert!(r.says_close());
}

/// Defect: no write timeout: a client that does not read its response blocks a worker forever.
#[test]
fn write_timeout_frees_the_worker() {
    let cfg = Cfg {
        write_timeout: Duration::from_secs(1),
        ..Cfg::default()
    };
    let srv = App::default().server(cfg, 1);
    let mut hog = connect(srv.addr);
    hog.write_all(&get("/big")).unwrap(); // and never read
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let r = roundtrip(srv.addr, &get("/small"));
    assert_eq!(r.expect("the only worker is stuck writing").status, 200);
    assert!(t.elapsed() < Duration::from_secs(4));
    drop(hog);
}

// ---------------------------------------------------------------------------------------------
// Limits and framing

/// Defect: unbounded header line length.
#[test]
fn oversized_header_line_gets_431() {
    let srv = App::default().server(Cfg::default(), 1);
    let req = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let mut s = connect(srv.addr);
    let _ = s.write_all(req.as_bytes());
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 431);
    assert!(closed_within(&mut s, Duration::from_secs(4)));
}

/// Defect: unbounded header count.
#[test]
fn too_many_headers_get_431() {
    let srv = App::default().server(Cfg::default(), 1);
    let headers: String = (0..500).map(|i| format!("X-{i}: v\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
    let r = roundtrip(srv.addr, req.as_bytes()).unwrap();
    assert_eq!(r.status, 431);
}

/// Defect: unbounded request line.
#[test]
fn oversized_request_line_gets_414() {
    let srv = App::default().server(Cfg::default(), 1);
    let req = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(64 * 1024));
    let r = roundtrip(srv.addr, req.as_bytes()).unwrap();
    assert_eq!(r.status, 414);
}

/// Defect: no body limit; the unread body is drained with `vec![0; remaining]`, so
/// `Content-Length: 1e11` aborts the process.
#[test]
fn huge_content_length_gets_413() {
    if in_child_process("huge_content_length_gets_413") {
        return;
    }
    let app = App::default();
    let srv = app.server(Cfg::default(), 1);
    let mut s = connect(srv.addr);
    s.write_all(b"POST /noread HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000000\r\n\r\nxx")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 413);
    assert!(r.says_close());
    assert!(!app.saw("/noread"), "the request was dispatched");
    // The process is still alive and serving.
    assert_eq!(roundtrip(srv.addr, &get("/alive")).unwrap().status, 200);
}

/// Defect: `Content-Length: u64::MAX` panics the drain (#252).
#[test]
fn content_length_u64_max_gets_413() {
    if in_child_process("content_length_u64_max_gets_413") {
        return;
    }
    let srv = App::default().server(Cfg::default(), 1);
    let r = roundtrip(
        srv.addr,
        b"POST /noread HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551615\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(roundtrip(srv.addr, &get("/alive")).unwrap().status, 200);
}

/// Defect: draining an unread body blocks the worker until the client sends it all.
#[test]
fn unread_body_does_not_block_the_worker() {
    let srv = App::default().server(Cfg::default(), 1);
    let mut a = connect(srv.addr);
    a.write_all(b"POST /noread HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let ra = read_response(&mut a).unwrap();
    assert_eq!(ra.status, 200);
    assert!(
        ra.says_close(),
        "an undrainable body must close the connection"
    );
    let t = Instant::now();
    let rb = roundtrip(srv.addr, &get("/next")).expect("worker blocked by the drain");
    assert_eq!(rb.status, 200);
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// Sends `req` and checks that it is refused with `status`, the connection closes, and the
/// handler never sees the smuggled `/smuggled` request.
fn assert_refused_no_smuggling(req: &[u8], statuses: &[u16]) {
    let app = App::default();
    let srv = app.server(Cfg::default(), 1);
    let mut s = connect(srv.addr);
    s.write_all(req).unwrap();
    let r = read_response(&mut s).expect("no response");
    // Read whatever else comes: a second response would mean a smuggled request.
    let mut rest = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let _ = s.read_to_end(&mut rest);
    assert!(
        !app.saw("/smuggled"),
        "smuggled request reached the handler"
    );
    assert!(
        statuses.contains(&r.status),
        "status {} not in {:?}",
        r.status,
        statuses
    );
    assert!(rest.is_empty(), "more than one response");
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

/// Defect (smuggling): with several Content-Length headers the first wins.
#[test]
fn duplicate_content_length_is_rejected() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    assert_refused_no_smuggling(req.as_bytes(), &[400]);
}

/// Defect (smuggling): a non-numeric Content-Length means "no body".
#[test]
fn non_numeric_content_length_is_rejected() {
    let req = format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\n{SMUGGLED}");
    assert_refused_no_smuggling(req.as_bytes(), &[400]);
}

/// Defect (smuggling): any Transfer-Encoding value is treated as chunked.
#[test]
fn unknown_transfer_encoding_is_rejected() {
    let req =
        format!("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: foo\r\n\r\n0\r\n\r\n{SMUGGLED}");
    assert_refused_no_smuggling(req.as_bytes(), &[400, 501]);
}

/// Defect (smuggling): Content-Length together with Transfer-Encoding is accepted.
#[test]
fn content_length_with_transfer_encoding_is_rejected() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    assert_refused_no_smuggling(req.as_bytes(), &[400]);
}

/// Defect (smuggling): an unread chunked body is not drained; its bytes are parsed as the next
/// request.
#[test]
fn unread_chunked_body_is_not_parsed_as_a_request() {
    let app = App::default();
    let srv = app.server(Cfg::default(), 1);
    let mut s = connect(srv.addr);
    // A valid chunked body (last chunk with an extension, one trailer) that also reads as a
    // request line `0;GET /smuggled HTTP/1.1` with a Host header.
    s.write_all(
        b"POST /noread HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0;GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    let mut rest = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let _ = s.read_to_end(&mut rest);
    assert!(!app.saw("/smuggled"), "chunked body parsed as a request");
    assert!(rest.is_empty(), "more than one response");
}

/// Defect: chunk-size lines (with extensions) have no length limit.
#[test]
fn oversized_chunk_size_line_is_rejected() {
    let srv = App::default().server(Cfg::default(), 1);
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n",
        "e".repeat(64 * 1024)
    );
    let mut s = connect(srv.addr);
    let _ = s.write_all(req.as_bytes());
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.says_close());
}

/// Defect: chunked trailers are rejected.
#[test]
fn chunked_trailers_are_accepted() {
    let srv = App::default().server(Cfg::default(), 1);
    let r = roundtrip(
        srv.addr,
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"/upload hello");
}

/// Defect: one client pipelining large responses without reading them blocks every worker.
#[test]
fn pipelining_client_cannot_block_every_worker() {
    let cfg = Cfg {
        write_timeout: Duration::from_secs(1),
        ..Cfg::default()
    };
    let srv = App::default().server(cfg, 2);
    let mut hog = connect(srv.addr);
    let mut pipelined = Vec::new();
    for _ in 0..4 {
        pipelined.extend_from_slice(&get("/big"));
    }
    hog.write_all(&pipelined).unwrap(); // and never read
    thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let r = roundtrip(srv.addr, &get("/other"));
    assert_eq!(r.expect("every worker blocked by one client").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(hog);
}

/// Defect: the server cannot send `Connection: close` (`Response::add_header` drops it).
#[test]
fn connection_close_response_header_is_sent() {
    let srv = App::default().server(Cfg::default(), 1);
    let mut s = connect(srv.addr);
    s.write_all(&get("/close")).unwrap();
    let r = read_response(&mut s).unwrap();
    assert!(r.says_close(), "no Connection: close in {:?}", r.head);
    assert!(closed_within(&mut s, Duration::from_secs(2)));
}

/// Defect: bare-LF line endings hang the connection.
#[test]
fn bare_lf_request_gets_400() {
    let srv = App::default().server(Cfg::default(), 1);
    let mut s = connect(srv.addr);
    s.write_all(b"GET / HTTP/1.1\nHost: t\n\n").unwrap();
    let r = read_response(&mut s).expect("connection hangs");
    assert_eq!(r.status, 400);
    assert!(closed_within(&mut s, Duration::from_secs(4)));
}

/// Defect: an `HTTP/2.0` request line deadlocks the 505 path and leaks the thread and its fds.
#[test]
fn http2_request_line_gets_505() {
    if in_child_process("http2_request_line_gets_505") {
        return;
    }
    let srv = App::default().server(Cfg::default(), 1);
    let base = threads();
    for _ in 0..5 {
        let mut s = connect(srv.addr);
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        let r = read_response(&mut s).expect("no answer to HTTP/2.0");
        assert_eq!(r.status, 505);
        assert!(closed_within(&mut s, Duration::from_secs(4)));
    }
    assert!(
        eventually(Duration::from_secs(3), || threads() <= base),
        "connection threads leaked"
    );
}

/// Defect: HTTP/0.9 is accepted.
#[test]
fn http09_request_is_rejected() {
    let app = App::default();
    let srv = app.server(Cfg::default(), 1);
    let mut s = connect(srv.addr);
    s.write_all(b"GET /old HTTP/0.9\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 400);
    assert!(!app.saw("/old"));
    assert!(closed_within(&mut s, Duration::from_secs(4)));
}

/// Defect: `peer_addr().unwrap()` panics when the peer has already gone (#180).
#[test]
fn peer_gone_before_accept_does_not_panic() {
    if in_child_process("peer_gone_before_accept_does_not_panic") {
        return;
    }
    let panics = Arc::new(AtomicUsize::new(0));
    let p = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        p.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let srv = App::default().server(Cfg::default(), 2);
    // A burst of clients that send a request and reset the connection at once, so that many of
    // them are gone by the time the server accepts them.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..40 {
                    if let Ok(s) = TcpStream::connect(srv.addr) {
                        let _ = (&s).write_all(&get("/gone"));
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    thread::sleep(Duration::from_millis(500));
    assert_eq!(roundtrip(srv.addr, &get("/alive")).unwrap().status, 200);
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a server thread panicked");
}

// ---------------------------------------------------------------------------------------------
// Shutdown

/// Defect: after `Server` is dropped, a new request on a kept-alive connection is queued where
/// nobody reads it, and the client hangs.
#[test]
fn dropped_server_leaves_no_client_hanging() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = shim::queue_server_on(l, Cfg::default());
    let mut s = connect(addr);
    s.write_all(&get("/one")).unwrap();
    let rq = server.recv().unwrap();
    rq.respond(Response::from_string("one")).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    drop(server);
    thread::sleep(Duration::from_millis(100));
    // Either served or closed, within a bound; never left hanging.
    let _ = s.write_all(&get("/two"));
    let outcome = match read_response(&mut s) {
        Ok(r) => r.status > 0,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
    };
    assert!(outcome, "the client hangs after the server was dropped");
}

/// Defect: `unblock()` frees exactly one `recv()`.
#[test]
fn unblock_releases_every_receiver() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Arc::new(shim::queue_server_on(l, Cfg::default()));
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let (server, done) = (server.clone(), done.clone());
        thread::spawn(move || {
            let _ = server.recv();
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    thread::sleep(Duration::from_millis(200));
    server.unblock();
    assert!(eventually(Duration::from_secs(2), || {
        done.load(Ordering::SeqCst) == 3
    }));
}

/// Defect: `try_recv()` silently eats the unblock marker.
#[test]
fn try_recv_does_not_eat_unblock() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Arc::new(shim::queue_server_on(l, Cfg::default()));
    server.unblock();
    assert!(server.try_recv().unwrap().is_none());
    let done = Arc::new(AtomicUsize::new(0));
    let (s2, d2) = (server.clone(), done.clone());
    thread::spawn(move || {
        let _ = s2.recv();
        d2.fetch_add(1, Ordering::SeqCst);
    });
    assert!(
        eventually(Duration::from_secs(2), || done.load(Ordering::SeqCst) == 1),
        "recv() blocks after unblock() + try_recv()"
    );
}

/// Defect: `recv_timeout()` waits the full timeout again after a spurious wake-up.
#[test]
fn recv_timeout_honours_its_deadline() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Arc::new(shim::queue_server_on(l, Cfg::default()));
    let s2 = server.clone();
    let waiter = thread::spawn(move || {
        let t = Instant::now();
        let _ = s2.recv_timeout(Duration::from_secs(1));
        t.elapsed()
    });
    thread::sleep(Duration::from_millis(300));
    // Wake the waiter: in stock, `unblock()` queues a marker and wakes one waiter, and the
    // `try_recv()` right after it takes the marker first, so the waiter wakes up to an empty
    // queue (a spurious wake-up). Ours: `unblock()` is permanent and the waiter returns.
    for _ in 0..3 {
        server.unblock();
        let _ = server.try_recv();
        thread::sleep(Duration::from_millis(100));
    }
    let elapsed = waiter.join().unwrap();
    assert!(
        elapsed < Duration::from_millis(1300),
        "recv_timeout(1s) returned after {elapsed:?}"
    );
}
