//! A webhook receiver for the outbox tests: a small HTTP/1.1 server on its
//! own threads that records every request (time, headers, body) and answers
//! what the test's closure says — a status, a status with headers, or
//! nothing at all (a receiver that never answers).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub at: Instant,
    /// The wall-clock time of `at`: the outbox schedules retries by the
    /// database's clock, so gaps that must be at least some back-off are
    /// checked on this one (a VM paused and resumed steps the wall clock,
    /// not the monotonic one).
    pub wall: SystemTime,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Delivery {
    /// Wall-clock time from `earlier` to this delivery (zero if the clock says it came first).
    pub fn since(&self, earlier: &Delivery) -> Duration {
        self.wall.duration_since(earlier.wall).unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The `Idempotency-Key`.
    pub fn key(&self) -> String {
        self.header("idempotency-key")
            .unwrap_or_default()
            .to_owned()
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    StatusWith(u16, Vec<(String, String)>),
    /// Read the request, then never answer (until the test ends).
    Hang,
}

/// Decides the answer from the request and how many requests with the same
/// `Idempotency-Key` came before it.
pub type Decide = Arc<dyn Fn(&Delivery, usize) -> Answer + Send + Sync>;

#[derive(Default)]
struct Log {
    deliveries: Mutex<Vec<Delivery>>,
    changed: Condvar,
}

pub struct Receiver {
    pub addr: SocketAddr,
    log: Arc<Log>,
}

impl Receiver {
    /// Answers every request with `answer`.
    pub fn answering(status: u16) -> Receiver {
        Receiver::start(Arc::new(move |_, _| Answer::Status(status)))
    }

    pub fn start(decide: Decide) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Log::default());
        let accept_log = Arc::clone(&log);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = Arc::clone(&accept_log);
                let decide = Arc::clone(&decide);
                thread::spawn(move || serve(stream, &log, &*decide));
            }
        });
        Receiver { addr, log }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/users", self.addr)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.deliveries.lock().expect("lock").clone()
    }

    /// Waits until `pred` holds over the deliveries; panics after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.log.deliveries.lock().expect("lock");
        loop {
            if pred(&guard) {
                return guard.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("{what}: not within {timeout:?}; {} deliveries", guard.len());
            }
            guard = self
                .log
                .changed
                .wait_timeout(guard, deadline - now)
                .expect("wait")
                .0;
        }
    }
}

fn serve(
    stream: TcpStream,
    log: &Log,
    decide: &(dyn Fn(&Delivery, usize) -> Answer + Send + Sync),
) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let delivery = Delivery {
            at: Instant::now(),
            wall: SystemTime::now(),
            headers,
            body,
        };
        let answer = {
            let mut all = log.deliveries.lock().expect("lock");
            let key = delivery.key();
            let before = all.iter().filter(|d| d.key() == key).count();
            let answer = decide(&delivery, before);
            all.push(delivery);
            log.changed.notify_all();
            answer
        };
        let (status, extra) = match answer {
            Answer::Status(s) => (s, Vec::new()),
            Answer::StatusWith(s, h) => (s, h),
            Answer::Hang => {
                thread::sleep(Duration::from_secs(3600));
                return;
            }
        };
        let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n");
        for (n, v) in extra {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}
