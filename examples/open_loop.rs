//! An open-loop load generator for `POST /api/v1/users`: the reliability
//! suite's overload driver (`make test-reliability`, scenario `overload`).
//!
//! Why it exists: an overload check needs a fixed offered rate that does not
//! bend when the service slows down (a closed loop offers less exactly when
//! the service is in trouble), from a driver cheap enough to offer three
//! times what the service answers without taking the CPU it measures. The
//! suite's Python driver offered ~1.3x at most; a thread per connection
//! (this driver's first version) offered enough, but each answer woke a
//! sleeping thread on the other core, and on loopback the service's core
//! pays for that wake-up (the sender runs the receiver's TCP stack): a
//! third of what each shed 503 cost the service was the driver's.
//!
//! How: one thread and one `epoll` loop (mio) over `--conns` keep-alive
//! connections, as wrk does. Each connection has its own schedule: request
//! `k` of connection `i` is due at `start + (i + k × conns) / rate`. A
//! connection whose previous answer came late sends at once, never two to
//! catch up, and nothing is sent after `--secs`: with a huge `--rate` every
//! connection is always behind, which makes a closed loop of `--conns`
//! clients (how the suite measures capacity). Every request carries a unique
//! e-mail, so the suite can check afterwards, by id, that every 201 is
//! stored and nothing answered otherwise is.
//!
//! Output: one CSV line per request on stdout, `email,status,latency_us,late_us`
//! (status 0: no answer — connection refused, reset, or no reply within
//! `--timeout-ms`); a summary on stderr. `--spin`: poll without ever
//! sleeping (for a driver on a core of its own: see `Driver::run`).
//!
//! ```text
//! cargo run --release --example open_loop -- --addr 127.0.0.1:8080 \
//!     --rate 15000 --secs 30 --conns 128 --prefix run1- > answers.csv
//! ```

use std::io::{self, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use usersvc::console::print_stderr;

struct Args {
    addr: SocketAddr,
    rate: f64,
    secs: f64,
    conns: usize,
    prefix: String,
    timeout: Duration,
    spin: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let (mut rate, mut secs, mut conns) = (1000.0, 10.0, 64usize);
    let mut prefix = "open-loop-".to_owned();
    let mut timeout = Duration::from_secs(10);
    let mut spin = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--spin" {
            spin = true;
            continue;
        }
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
        spin,
    })
}

/// What one request got.
struct Answer {
    email: String,
    status: u16,
    latency: Duration,
    late: Duration,
}

/// A request on the wire, waiting for its answer.
struct Pending {
    email: String,
    due: Instant,
    sent: Instant,
}

/// One keep-alive connection and its schedule.
struct Conn {
    /// Its index: request `k` is due at `start + (index + k × conns) / rate`.
    index: usize,
    /// Requests sent so far.
    k: usize,
    stream: Option<TcpStream>,
    pending: Option<Pending>,
    buf: Vec<u8>,
}

/// A complete response at the start of `buf`: its status and whether the
/// server closes the connection after it; `None` while incomplete.
fn parse_response(buf: &[u8]) -> io::Result<Option<(u16, bool)>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let (mut length, mut close) = (0usize, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| invalid("bad length"))?;
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok((buf.len() >= head_end + 4 + length).then_some((status, close)))
}

struct Driver {
    args: Args,
    poll: Poll,
    conns: Vec<Conn>,
    start: Instant,
    end: Instant,
    answers: Vec<Answer>,
}

impl Driver {
    fn due(&self, c: &Conn) -> Option<Instant> {
        let offset = (c.index + c.k * self.args.conns) as f64 / self.args.rate;
        (offset < self.args.secs).then(|| self.start + Duration::from_secs_f64(offset))
    }

    fn record(&mut self, t: usize, status: u16) {
        let c = &mut self.conns[t];
        if let Some(p) = c.pending.take() {
            self.answers.push(Answer {
                email: p.email,
                status,
                latency: p.sent.elapsed(),
                late: p.sent.saturating_duration_since(p.due),
            });
        }
        if status == 0 {
            if let Some(mut s) = c.stream.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
        }
        c.buf.clear();
    }

    /// Sends connection `t`'s next request (due at `due`).
    fn send(&mut self, t: usize, due: Instant) {
        let email = format!(
            "{}{}-{}@example.com",
            self.args.prefix, self.conns[t].index, self.conns[t].k
        );
        self.conns[t].k += 1;
        let sent = Instant::now();
        self.conns[t].pending = Some(Pending { email, due, sent });
        if let Err(_e) = self.try_send(t) {
            self.record(t, 0);
        }
    }

    fn try_send(&mut self, t: usize) -> io::Result<()> {
        if self.conns[t].stream.is_none() {
            let std = std::net::TcpStream::connect_timeout(&self.args.addr, self.args.timeout)?;
            std.set_nodelay(true)?;
            std.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(std);
            self.poll
                .registry()
                .register(&mut stream, Token(t), Interest::READABLE)?;
            self.conns[t].stream = Some(stream);
        }
        let c = &mut self.conns[t];
        let Some(pending) = &c.pending else {
            return Ok(());
        };
        let body = format!(r#"{{"name":"R","email":"{}"}}"#, pending.email);
        let request = format!(
            "POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let Some(stream) = c.stream.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        // A few hundred bytes into an empty send buffer: all or an error.
        let n = stream.write(request.as_bytes())?;
        if n != request.len() {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(())
    }

    /// Reads what connection `t` has; records its answer when complete.
    fn readable(&mut self, t: usize) {
        let mut chunk = [0u8; 8192];
        loop {
            let c = &mut self.conns[t];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            match stream.read(&mut chunk) {
                Ok(0) => return self.record(t, 0),
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.record(t, 0),
            }
        }
        if self.conns[t].pending.is_none() {
            return;
        }
        match parse_response(&self.conns[t].buf) {
            Ok(None) => {}
            Ok(Some((status, close))) => {
                self.record(t, status);
                if close {
                    if let Some(mut s) = self.conns[t].stream.take() {
                        let _ = self.poll.registry().deregister(&mut s);
                    }
                }
            }
            Err(_) => self.record(t, 0),
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            // Send what is due; find the next thing to wait for.
            let mut wake: Option<Instant> = None;
            let mut busy = false;
            for t in 0..self.conns.len() {
                if let Some(p) = &self.conns[t].pending {
                    if now.duration_since(p.sent) >= self.args.timeout {
                        self.record(t, 0);
                    } else {
                        busy = true;
                        let at = p.sent + self.args.timeout;
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                        continue;
                    }
                }
                if now >= self.end {
                    continue;
                }
                let Some(due) = self.due(&self.conns[t]) else {
                    continue;
                };
                if due <= now {
                    self.send(t, due);
                    busy |= self.conns[t].pending.is_some();
                } else {
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                }
            }
            if now >= self.end && !busy {
                return Ok(());
            }
            // Nothing due before the end: wait for answers, or for the end.
            let wake = match wake {
                Some(w) if now >= self.end => w,
                Some(w) => w.min(self.end),
                None => self.end,
            };
            // `--spin`: never sleep in epoll_wait. On loopback the service's core
            // pays for waking a sleeping receiver with every answer it sends; a
            // driver on a core of its own can spin instead.
            let timeout = if self.args.spin {
                Some(Duration::ZERO)
            } else {
                Some(wake.saturating_duration_since(Instant::now()))
            };
            self.poll.poll(&mut events, timeout)?;
            if self.args.spin && events.is_empty() {
                // Spinning, but anything else on this core (the suite's prober)
                // runs first.
                std::thread::yield_now();
            }
            for ev in events.iter() {
                self.readable(ev.token().0);
            }
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            print_stderr(&format!("open_loop: {e}"));
            std::process::exit(2);
        }
    };
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            print_stderr(&format!("open_loop: epoll: {e}"));
            std::process::exit(1);
        }
    };
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(args.secs);
    let conns = (0..args.conns)
        .map(|index| Conn {
            index,
            k: 0,
            stream: None,
            pending: None,
            buf: Vec::with_capacity(4096),
        })
        .collect();
    let mut driver = Driver {
        args,
        poll,
        conns,
        start,
        end,
        answers: Vec::new(),
    };
    if let Err(e) = driver.run() {
        print_stderr(&format!("open_loop: {e}"));
        std::process::exit(1);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for a in &driver.answers {
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
    let all = &driver.answers;
    let ok = all.iter().filter(|a| a.status == 201).count();
    print_stderr(&format!(
        "open_loop: {} requests in {elapsed:.1} s ({:.0}/s offered, {:.0}/s answered 201)",
        all.len(),
        all.len() as f64 / elapsed,
        ok as f64 / elapsed
    ));
}
