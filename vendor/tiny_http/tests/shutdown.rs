//! Graceful shutdown through `ServerControl`, and connection semantics around it.

mod raw;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raw::*;
use tiny_http::{Handler, Limits, Request, Response, Server};

fn long_idle() -> Limits {
    Limits {
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

/// A handler that hands every request to the test through a channel.
fn captured() -> (Handler, mpsc::Receiver<Request>) {
    let (tx, rx) = mpsc::channel::<Request>();
    let tx = Mutex::new(tx);
    let h: Handler = Arc::new(move |rq| {
        let _ = tx.lock().unwrap().send(rq);
    });
    (h, rx)
}

#[test]
fn start_draining_closes_idle_keepalive_connection_promptly() {
    let (server, addr) = inline_server(long_idle());
    let mut s = connect(addr);
    s.write_all(&get("/one")).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert!(!r.says_close());
    thread::sleep(Duration::from_millis(100)); // the connection is idle now
    let t = Instant::now();
    server.control().start_draining();
    assert!(closed_within(&mut s, Duration::from_secs(1)));
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn in_flight_request_completes_with_connection_close() {
    let (handler, requests) = captured();
    let (server, addr) = handler_server(long_idle(), handler);
    let control = server.control();
    let mut s = connect(addr);
    s.write_all(&get("/slow")).unwrap();
    let rq = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    control.start_draining();
    assert!(control.is_draining());
    thread::sleep(Duration::from_millis(100));
    rq.respond(Response::from_string("done")).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"done");
    assert!(
        r.says_close(),
        "no Connection: close while draining: {}",
        r.head
    );
    assert!(closed_within(&mut s, Duration::from_secs(2)));
    assert!(control.wait_idle(Instant::now() + Duration::from_secs(2)));
    assert_eq!(control.open_connections(), 0);
}

#[test]
fn stop_accepting_refuses_new_connections() {
    let (server, addr) = inline_server(long_idle());
    let control = server.control();
    let mut kept = connect(addr);
    kept.write_all(&get("/before")).unwrap();
    assert_eq!(read_response(&mut kept).unwrap().status, 200);

    control.stop_accepting();
    assert!(
        eventually(Duration::from_millis(500), || TcpStream::connect(addr)
            .is_err()),
        "new connections still accepted"
    );
    // Connections already open keep being served.
    kept.write_all(&get("/after")).unwrap();
    let r = read_response(&mut kept).unwrap();
    assert_eq!(r.body, b"ok /after");
    control.stop_accepting(); // idempotent
}

#[test]
fn wait_idle_times_out_then_force_close_closes_everything() {
    let (server, addr) = inline_server(long_idle());
    let control = server.control();
    let mut a = connect(addr);
    let mut b = connect(addr);
    a.write_all(&get("/a")).unwrap();
    read_response(&mut a).unwrap();
    assert!(eventually(Duration::from_secs(2), || control
        .open_connections()
        == 2));

    let t = Instant::now();
    assert!(!control.wait_idle(Instant::now() + Duration::from_millis(300)));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(290) && waited < Duration::from_secs(1));

    control.force_close();
    assert!(closed_within(&mut a, Duration::from_secs(1)));
    assert!(closed_within(&mut b, Duration::from_secs(1)));
    assert!(control.wait_idle(Instant::now() + Duration::from_secs(2)));
    assert_eq!(control.open_connections(), 0);
}

#[test]
fn force_close_cuts_a_stuck_response() {
    let (handler, requests) = captured();
    let limits = Limits {
        write_timeout: Duration::from_secs(60),
        ..long_idle()
    };
    let (server, addr) = handler_server(limits, handler);
    let control = server.control();
    let mut s = connect(addr);
    s.write_all(&get("/big")).unwrap(); // never read: the response blocks in write()
    let rq = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    let worker = thread::spawn(move || {
        let big = 256 << 20;
        let body = std::io::Read::take(std::io::repeat(b'x'), big as u64);
        rq.respond(Response::new(200.into(), vec![], body, Some(big), None))
    });
    thread::sleep(Duration::from_millis(300));
    control.force_close();
    let res = worker.join().unwrap();
    assert!(res.is_ok() || res.is_err()); // the worker returned instead of blocking
    assert!(control.wait_idle(Instant::now() + Duration::from_secs(2)));
    drop(s);
}

#[test]
fn dropping_the_server_drains() {
    let (server, addr) = inline_server(long_idle());
    let control = server.control();
    let mut s = connect(addr);
    s.write_all(&get("/x")).unwrap();
    read_response(&mut s).unwrap();
    drop(server);
    assert!(closed_within(&mut s, Duration::from_secs(1)));
    assert!(TcpStream::connect(addr).is_err());
    assert!(control.wait_idle(Instant::now() + Duration::from_secs(2)));
}

#[test]
fn http10_keep_alive_semantics() {
    let (_server, addr) = inline_server(long_idle());
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut s = connect(addr);
    s.write_all(b"GET /a HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert!(r.head.starts_with("HTTP/1.0 200"));
    assert!(r.says_close());
    assert!(closed_within(&mut s, Duration::from_secs(2)));

    // HTTP/1.0 with keep-alive: the response says keep-alive and the connection stays usable.
    let mut s = connect(addr);
    for i in 0..3 {
        s.write_all(format!("GET /k{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(
            r.header("Connection").as_deref(),
            Some("keep-alive"),
            "{}",
            r.head
        );
        assert_eq!(r.body, format!("ok /k{i}").as_bytes());
    }

    // HTTP/1.1 with Connection: close: answered with Connection: close, then closed.
    s.write_all(b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert!(r.says_close());
    assert!(closed_within(&mut s, Duration::from_secs(2)));
}

#[test]
fn dropped_request_answers_500_once_and_connection_goes_on() {
    let (handler, requests) = captured();
    let (_server, addr) = handler_server(long_idle(), handler);
    let mut s = connect(addr);
    s.write_all(&get("/dropped")).unwrap();
    drop(requests.recv_timeout(Duration::from_secs(5)).unwrap());
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 500);
    // Exactly one response, and the connection serves the next request.
    s.write_all(&get("/next")).unwrap();
    let rq = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(rq.url(), "/next");
    rq.respond(Response::from_string("next")).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.body, b"next");
}

#[test]
fn chunked_body_over_the_limit_is_recognised() {
    let (handler, requests) = captured();
    let limits = Limits {
        max_body_bytes: 10,
        ..long_idle()
    };
    let (_server, addr) = handler_server(limits, handler);
    let mut s = connect(addr);
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
    )
    .unwrap();
    let mut rq = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    let mut body = Vec::new();
    let err = std::io::Read::read_to_end(rq.as_reader(), &mut body).unwrap_err();
    assert!(tiny_http::is_body_too_large(&err), "{err}");
    rq.respond(Response::empty(413)).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 413);
    assert!(r.says_close());
    assert!(closed_within(&mut s, Duration::from_secs(3)));
}

#[test]
fn small_unread_body_is_drained_and_keeps_the_connection() {
    let (handler, requests) = captured();
    let (_server, addr) = handler_server(long_idle(), handler);
    let mut s = connect(addr);
    s.write_all(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let rq = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    rq.respond(Response::from_string("a")).unwrap(); // body not read
    let r = read_response(&mut s).unwrap();
    assert!(!r.says_close());
    s.write_all(&get("/b")).unwrap();
    let rq = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(rq.url(), "/b");
    rq.respond(Response::from_string("b")).unwrap();
    assert_eq!(read_response(&mut s).unwrap().body, b"b");
}

#[cfg(unix)]
#[test]
fn unix_listener_stop_accepting() {
    use std::os::unix::net::{UnixListener, UnixStream};
    let path = std::env::temp_dir().join(format!("tiny-http-stop-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let server =
        tiny_http::Server::from_listener(l, long_idle(), tiny_http::Dispatch::Queue).unwrap();
    server.control().stop_accepting();
    assert!(
        eventually(Duration::from_secs(2), || UnixStream::connect(&path)
            .is_err()),
        "unix listener still accepting"
    );
    drop(server);
    assert!(!path.exists());
}

/// `OnStop::KeepListening` (usersvc: systemd socket activation): the socket
/// outlives the server. After `stop_accepting` the server takes no new
/// connection, yet the socket still listens, so a client that connects then
/// is queued by the kernel and answered by the next server on that socket.
#[test]
fn keep_listening_leaves_the_socket_for_the_next_server() {
    let keep = Limits {
        listener_on_stop: tiny_http::OnStop::KeepListening,
        ..long_idle()
    };
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let held = l.try_clone().unwrap(); // what systemd keeps
    let handler: Handler = Arc::new(|rq: Request| {
        let _ = rq.respond(Response::from_string("first"));
    });
    let first =
        Server::from_listener(l, keep.clone(), tiny_http::Dispatch::Handler(handler)).unwrap();
    let mut s = connect(addr);
    s.write_all(&get("/a")).unwrap();
    assert_eq!(read_response(&mut s).unwrap().body, b"first");

    // Returns once the I/O thread has let go of the socket.
    first.control().stop_accepting();
    let mut queued = TcpStream::connect(addr).expect("the socket still listens");
    queued.write_all(&get("/b")).unwrap();
    queued
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        read_response(&mut queued).is_err(),
        "the stopped server answered a new connection"
    );
    drop(first);

    let handler: Handler = Arc::new(|rq: Request| {
        let _ = rq.respond(Response::from_string("second"));
    });
    let _second = Server::from_listener(held, keep, tiny_http::Dispatch::Handler(handler)).unwrap();
    queued
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(read_response(&mut queued).unwrap().body, b"second");
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Two listeners on one I/O thread (usersvc: public and admin): one thread for both, each
/// with its own limits, and each stopped and drained on its own — the other keeps serving.
#[cfg(target_os = "linux")]
#[test]
fn listeners_served_together_share_a_thread_and_stop_apart() {
    let answer = |name: &'static str| -> Handler {
        Arc::new(move |rq: Request| {
            let _ = rq.respond(Response::from_string(name));
        })
    };
    let (a, b) = (listener(), listener());
    let (addr_a, addr_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let before = threads();
    let servers = Server::serve_together(
        vec![
            tiny_http::ServerSpec {
                listener: a.into(),
                limits: long_idle(),
                dispatch: tiny_http::Dispatch::Handler(answer("a")),
            },
            tiny_http::ServerSpec {
                listener: b.into(),
                limits: Limits {
                    max_body_bytes: 10,
                    ..long_idle()
                },
                dispatch: tiny_http::Dispatch::Handler(answer("b")),
            },
        ],
        tiny_http::IoHooks::default(),
    )
    .unwrap();
    // Other tests of this binary start threads too: at most one more of ours.
    assert!(threads() <= before + 1, "{before} -> {}", threads());
    let (sa, sb) = (&servers[0], &servers[1]);

    let mut ka = connect(addr_a);
    let mut kb = connect(addr_b);
    ka.write_all(&get("/")).unwrap();
    kb.write_all(&get("/")).unwrap();
    assert_eq!(read_response(&mut ka).unwrap().body, b"a");
    assert_eq!(read_response(&mut kb).unwrap().body, b"b");

    // Each listener's own limits.
    let big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
    let mut s = connect(addr_a);
    s.write_all(big).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    let mut s = connect(addr_b);
    s.write_all(big).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 413);

    // Draining and stopping the first leaves the second alone.
    sa.control().start_draining();
    sa.control().stop_accepting();
    assert!(closed_within(&mut ka, Duration::from_secs(1)));
    assert!(TcpStream::connect(addr_a).is_err(), "a still accepts");
    assert!(!sb.control().is_draining());
    kb.write_all(&get("/")).unwrap();
    let r = read_response(&mut kb).unwrap();
    assert_eq!((r.body.as_slice(), r.says_close()), (&b"b"[..], false));
    let mut s = connect(addr_b);
    s.write_all(&get("/")).unwrap();
    assert_eq!(read_response(&mut s).unwrap().body, b"b");
    assert_eq!(sa.control().open_connections(), 0);
    assert!(sb.control().open_connections() >= 2);
}
