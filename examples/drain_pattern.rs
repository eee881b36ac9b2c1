//! usersvc's concurrency pattern in one file, with nothing else around it.
//!
//! ```text
//! cargo run --example drain_pattern            # serves on 127.0.0.1:8081
//! curl -i localhost:8081/                      # 200 from a worker
//! kill -TERM <pid>  (or Ctrl-C)                # drains, joins, exits 0
//! ```
//!
//! The whole idea, which `ARCHITECTURE.md` follows through the real service:
//!
//! 1. **One acceptor thread** owns the listener. It never does the work: it
//!    hands each connection to the workers over a **bounded** channel with
//!    `try_send`. A full channel is answered `503` at once — overload turns
//!    into fast refusals, never into an unbounded queue.
//! 2. **A fixed pool of workers** pulls from the channel. The number of
//!    threads is decided at start-up and never grows, whatever clients do.
//! 3. **A signal flips an `AtomicBool`** (signal-hook does it inside the
//!    signal handler, where almost nothing else is allowed). The main thread
//!    sees it, tells the acceptor to stop, and waits.
//! 4. **Closing the channel is the stop message.** When the acceptor returns,
//!    it drops the only `Sender`; each worker finishes the jobs still queued,
//!    then `recv()` fails and the worker returns. `join` waits for all of
//!    them: nothing accepted is lost, and the process exits only afterwards.
//!
//! No async runtime, no executor: blocking calls on threads whose number is
//! a configuration value.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

const WORKERS: usize = 4;
const QUEUE_DEPTH: usize = 16;
/// How often the acceptor and the main thread look at the shutdown flag.
const POLL: Duration = Duration::from_millis(50);
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One unit of work: an accepted connection and when it was accepted.
struct Job {
    stream: TcpStream,
    accepted: Instant,
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let listener = TcpListener::bind(&addr)?;
    // Non-blocking accept, so the acceptor can notice the flag between
    // connections instead of sleeping in accept() forever.
    listener.set_nonblocking(true)?;
    log(&format!("listening on {}", listener.local_addr()?));

    // 3. The signal handler only stores `true`; everything else happens on
    //    ordinary threads.
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&shutdown))?;
    }

    // 1 + 2. The bounded channel and the fixed workers.
    let (sender, receiver) = bounded::<Job>(QUEUE_DEPTH);
    let workers: Vec<_> = (0..WORKERS)
        .map(|n| {
            let receiver = receiver.clone();
            thread::Builder::new()
                .name(format!("worker-{n}"))
                .spawn(move || work(&receiver))
        })
        .collect::<io::Result<_>>()?;
    drop(receiver); // only the workers hold receivers now

    let acceptor = {
        let shutdown = Arc::clone(&shutdown);
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || accept(&listener, sender, &shutdown))?
    };

    // The main thread waits for the signal, then for everyone else.
    while !shutdown.load(Ordering::Acquire) {
        thread::sleep(POLL);
    }
    log("shutdown signal: no new connections; finishing queued work");
    let started = Instant::now();
    // 4. The acceptor returns and drops the only Sender: the channel closes.
    let _ = acceptor.join();
    for worker in workers {
        let _ = worker.join();
    }
    log(&format!(
        "shutdown complete in {} ms",
        started.elapsed().as_millis()
    ));
    Ok(())
}

/// The acceptor: accept until the flag is set, hand every connection over
/// without ever blocking on a full queue.
fn accept(listener: &TcpListener, sender: Sender<Job>, shutdown: &AtomicBool) {
    while !shutdown.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let job = Job {
                    stream,
                    accepted: Instant::now(),
                };
                match sender.try_send(job) {
                    Ok(()) => {}
                    // Overload: refuse now, cheaply, on this thread.
                    Err(TrySendError::Full(job)) => respond(job.stream, "503 Service Unavailable"),
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(e) => {
                log(&format!("accept failed: {e}"));
                thread::sleep(POLL);
            }
        }
    }
    // `sender` is dropped here: the workers see the channel close once they
    // have emptied it.
}

/// A worker: run jobs until the channel is closed *and* empty.
fn work(receiver: &Receiver<Job>) {
    let me = thread::current().name().unwrap_or("worker").to_owned();
    while let Ok(job) = receiver.recv() {
        log(&format!("{me} took a connection"));
        let waited = job.accepted.elapsed();
        if let Err(e) = handle(job.stream) {
            log(&format!("request failed: {e}"));
        }
        if waited > Duration::from_millis(100) {
            log(&format!(
                "a job waited {} ms in the queue",
                waited.as_millis()
            ));
        }
    }
}

/// Reads the request head (bounded by a timeout) and answers.
fn handle(stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    // Pretend to do some work, as a database call would.
    thread::sleep(Duration::from_millis(20));
    respond(reader.into_inner(), "200 OK");
    Ok(())
}

fn respond(mut stream: TcpStream, status: &str) {
    let body = format!("{status}\n");
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The example's only output: one line per event on stderr.
fn log(message: &str) {
    let _ = writeln!(io::stderr().lock(), "drain_pattern: {message}");
}
