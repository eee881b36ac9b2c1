//! Raw-TCP client helpers shared by the bounds, burst and shutdown tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{self, BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Dispatch, Handler, Limits, Request, Response, Server};

/// A listener on 127.0.0.1 with a large backlog (std's default of 128 drops SYNs under load).
pub fn listener() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.listen(2048).unwrap();
    s.into()
}

/// A handler-mode server answering `ok <url>` inline, on the connection thread.
pub fn inline_server(limits: Limits) -> (Server, SocketAddr) {
    handler_server(
        limits,
        Arc::new(|rq: Request| {
            let body = format!("ok {}", rq.url());
            let _ = rq.respond(Response::from_string(body));
        }),
    )
}

pub fn handler_server(limits: Limits, handler: Handler) -> (Server, SocketAddr) {
    let l = listener();
    let addr = l.local_addr().unwrap();
    let server = Server::from_listener(l, limits, Dispatch::Handler(handler)).unwrap();
    (server, addr)
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn says_close(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

/// Reads one response with a Content-Length body (what these tests' servers send).
pub fn read_response(s: &mut TcpStream) -> io::Result<Resp> {
    struct ByteReader<'a>(&'a mut TcpStream);
    impl Read for ByteReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }
    let mut r = BufReader::with_capacity(1, ByteReader(s));
    let mut head = String::new();
    loop {
        let line = read_line(&mut r)?;
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, head.clone()))?;
    let mut resp = Resp {
        status,
        head,
        body: Vec::new(),
    };
    if let Some(n) = resp.header("Content-Length") {
        resp.body = vec![0; n.parse().unwrap()];
        r.read_exact(&mut resp.body)?;
    }
    Ok(resp)
}

/// True if the peer closes the connection within `within` (EOF or reset).
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
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

pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
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
