//! An open-loop load generator for `POST /api/v1/users`, with no async: the
//! reliability suite's overload driver (`make test-reliability`, scenario
//! `overload`).
//!
//! Why it exists: an overload check needs a fixed offered rate that does not
//! bend when the service slows down (a closed loop offers less exactly when
//! the service is in trouble), and a driver cheap enough to offer three
//! times what the service answers from one core of a small machine. The
//! suite's Python driver could not (one core under the GIL offered ~6.8k/s);
//! this one offers tens of thousands per second.
//!
//! How: `--conns` threads, each with one keep-alive connection and its own
//! schedule: request `k` of thread `i` is due at `start + (i + k × conns) /
//! rate`. A thread sleeps until its next request is due and sends it; one
//! that falls behind (its previous answer came late) sends at once, never
//! two to catch up. Every request carries a unique e-mail, so the suite can
//! check afterwards, by id, that every 201 is stored and nothing answered
//! otherwise is.
//!
//! Output: one CSV line per request on stdout, `email,status,latency_us,late_us`
//! (status 0: no answer — connection refused, reset, or no reply within
//! `--timeout`); a summary on stderr.
//!
//! ```text
//! cargo run --release --example open_loop -- --addr 127.0.0.1:8080 \
//!     --rate 15000 --secs 30 --conns 128 --prefix run1- > answers.csv
//! ```

use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use usersvc::console::print_stderr;

struct Args {
    addr: SocketAddr,
    rate: f64,
    secs: f64,
    conns: usize,
    prefix: String,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let (mut rate, mut secs, mut conns) = (1000.0, 10.0, 64usize);
    let mut prefix = "open-loop-".to_owned();
    let mut timeout = Duration::from_secs(10);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().map_err(|e| bad(&e))?),
            "--rate" => rate = value.parse().map_err(|e| bad(&e))?,
            "--secs" => secs = value.parse().map_err(|e| bad(&e))?,
            "--conns" => conns = value.parse().map_err(|e| bad(&e))?,
            "--prefix" => prefix = value,
            "--timeout-ms" => timeout = Duration::from_millis(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let addr = addr.ok_or("--addr is required")?;
    if !(rate > 0.0 && secs > 0.0 && conns > 0) {
        return Err("--rate, --secs and --conns must be positive".to_owned());
    }
    Ok(Args {
        addr,
        rate,
        secs,
        conns,
        prefix,
        timeout,
    })
}

/// What one request got.
struct Answer {
    email: String,
    status: u16,
    latency: Duration,
    late: Duration,
}

/// One keep-alive connection, reopened when the server closes it or fails.
struct Client {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    /// Sends one create and reads its answer; the status, or 0 for none.
    fn create(&mut self, email: &str) -> u16 {
        match self.try_create(email) {
            Ok((status, close)) => {
                if close {
                    self.stream = None;
                }
                status
            }
            Err(_) => {
                self.stream = None;
                0
            }
        }
    }

    fn try_create(&mut self, email: &str) -> io::Result<(u16, bool)> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.stream = Some(s);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let body = format!(r#"{{"name":"R","email":"{email}"}}"#);
        let request = format!(
            "POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes())?;
        read_response(stream, &mut self.buf)
    }
}

/// Reads one response (head and `Content-Length` body): its status and
/// whether the server closes the connection after it.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(u16, bool)> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let (mut length, mut close) = (0usize, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let mut have = buf.len() - head_end;
    while have < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    Ok((status, close))
}

fn run_connection(args: Arc<Args>, i: usize, start: Instant) -> Vec<Answer> {
    let mut client = Client {
        addr: args.addr,
        timeout: args.timeout,
        stream: None,
        buf: Vec::with_capacity(8192),
    };
    let mut answers = Vec::new();
    for k in 0.. {
        let offset = (i + k * args.conns) as f64 / args.rate;
        if offset >= args.secs {
            break;
        }
        let due = start + Duration::from_secs_f64(offset);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        let sent = Instant::now();
        let email = format!("{}{i}-{k}@example.com", args.prefix);
        let status = client.create(&email);
        answers.push(Answer {
            email,
            status,
            latency: sent.elapsed(),
            late: sent.saturating_duration_since(due),
        });
    }
    answers
}

fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            print_stderr(&format!("open_loop: {e}"));
            std::process::exit(2);
        }
    };
    let start = Instant::now() + Duration::from_millis(200);
    let threads: Vec<_> = (0..args.conns)
        .map(|i| {
            let args = Arc::clone(&args);
            thread::Builder::new()
                .name(format!("conn-{i}"))
                .stack_size(128 * 1024)
                .spawn(move || run_connection(args, i, start))
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        match t.map(|h| h.join()) {
            Ok(Ok(answers)) => all.extend(answers),
            _ => {
                print_stderr("open_loop: a connection thread failed");
                std::process::exit(1);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for a in &all {
        let written = writeln!(
            out,
            "{},{},{},{}",
            a.email,
            a.status,
            a.latency.as_micros(),
            a.late.as_micros()
        );
        if written.is_err() {
            std::process::exit(1);
        }
    }
    if out.flush().is_err() {
        std::process::exit(1);
    }
    let ok = all.iter().filter(|a| a.status == 201).count();
    print_stderr(&format!(
        "open_loop: {} requests in {elapsed:.1} s ({:.0}/s offered, {:.0}/s answered 201)",
        all.len(),
        all.len() as f64 / elapsed,
        ok as f64 / elapsed
    ));
}
