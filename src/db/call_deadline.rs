//! A client-side deadline on every database call.
//!
//! Why: `statement_timeout` is enforced by the server, and keepalives or
//! `TCP_USER_TIMEOUT` by the kernel only when the peer stops acknowledging.
//! A database host that hangs (a stopped or swapped-out PostgreSQL, a frozen
//! VM) keeps its TCP stack alive: the kernel ACKs, nobody answers, and a
//! `postgres::Client` call blocks its worker forever. The driver offers no
//! per-call timeout and no access to its socket, so:
//!
//! - when a pooled connection is opened, [`find_socket`] finds its socket's
//!   file descriptor in this process: the one descriptor whose local and
//!   remote ports are the ones the server reports for the session
//!   (`inet_client_port()`, `inet_server_port()`);
//! - each call on a pooled connection registers `(fd, deadline)` with the
//!   one [`Watchdog`] thread (`db-watchdog`) for the length of the call;
//! - past the deadline the watchdog shuts the socket down
//!   (`shutdown(SHUT_RDWR)`, not `close`: the driver still owns the fd). The
//!   blocked read returns at once, the call fails with a connection error,
//!   the pool discards the connection, and the request answers 503.
//!
//! Where the socket cannot be found (a Unix socket, or a proxy that changes
//! the client port) the deadline cannot cut the call; that is logged once.

use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// How long a watchdog with no call to watch sleeps before it checks that
/// its pool still exists (and ends when it does not). A call watched
/// meanwhile wakes it at once if its deadline comes sooner.
const IDLE_RECHECK: Duration = Duration::from_secs(10);

/// The one thread that cuts calls past their deadline; cheap to clone.
///
/// The thread sleeps until the earliest deadline of the calls it watches,
/// not on a fixed tick: an idle service wakes it once per [`IDLE_RECHECK`],
/// and a call is cut at its deadline, not up to a tick later. Watching a
/// call takes the lock and pushes an entry; it wakes the thread only when
/// the new deadline comes before the time the thread will look anyway —
/// with every call given the same budget, that is the first call after a
/// quiet spell, not every call.
#[derive(Clone, Default)]
pub struct Watchdog {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Calls>,
    /// Signalled when a call is watched whose deadline comes before `wakes_at`.
    sooner: Condvar,
}

#[derive(Default)]
struct Calls {
    next_id: u64,
    watched: Vec<Watched>,
    thread_started: bool,
    /// When the thread will next look at `watched`; `None` before it first waits.
    wakes_at: Option<Instant>,
}

struct Watched {
    id: u64,
    fd: RawFd,
    deadline: Instant,
    /// Set (under the lock) when the thread cut the call.
    fired: bool,
}

/// A call under watch; [`Watch::finish`] (or dropping it) when the call
/// returns ends the watch.
pub struct Watch<'a> {
    watchdog: &'a Watchdog,
    id: Option<u64>,
}

impl Watch<'_> {
    /// Ends the watch; whether the watchdog cut the call (its deadline passed).
    pub fn finish(mut self) -> bool {
        self.end()
    }

    fn end(&mut self) -> bool {
        let Some(id) = self.id.take() else {
            return false;
        };
        let mut calls = self.watchdog.lock();
        match calls.watched.iter().position(|w| w.id == id) {
            Some(i) => calls.watched.swap_remove(i).fired,
            None => false,
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

impl Watchdog {
    /// Watches a call on the socket `fd` until the returned guard is
    /// finished or dropped.
    ///
    /// The caller must keep the socket open (hold the connection that owns
    /// it) for as long as the guard lives: [`Watch`] borrows `self` only,
    /// so [`crate::db::PgConnection`] creates it inside its own `&mut`
    /// borrow, which outlives the guard.
    pub(crate) fn watch(&self, fd: Option<RawFd>, deadline: Instant) -> Watch<'_> {
        let Some(fd) = fd else {
            return Watch {
                watchdog: self,
                id: None,
            };
        };
        let mut calls = self.lock();
        if !calls.thread_started {
            calls.thread_started = start_thread(Arc::downgrade(&self.inner));
        }
        calls.next_id += 1;
        let id = calls.next_id;
        calls.watched.push(Watched {
            id,
            fd,
            deadline,
            fired: false,
        });
        if calls.wakes_at.is_some_and(|at| deadline < at) {
            calls.wakes_at = Some(deadline);
            self.inner.sooner.notify_one();
        }
        Watch {
            watchdog: self,
            id: Some(id),
        }
    }

    /// Calls watched right now.
    pub fn watched(&self) -> usize {
        self.lock().watched.len()
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        lock(&self.inner)
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, Calls> {
    inner.calls.lock().unwrap_or_else(PoisonError::into_inner)
}

fn start_thread(inner: Weak<Inner>) -> bool {
    let spawned = thread::Builder::new()
        .name("db-watchdog".into())
        .spawn(move || run(&inner));
    match spawned {
        Ok(_) => true,
        Err(e) => {
            log::error!(
                target: "usersvc::db",
                error = e.to_string().as_str();
                "cannot start the database call watchdog; calls are bounded by the server only"
            );
            false
        }
    }
}

/// The watchdog thread: cuts what is due, sleeps until the next deadline;
/// ends once the pool (every [`Watchdog`] clone) is gone.
fn run(inner: &Weak<Inner>) {
    while let Some(inner) = inner.upgrade() {
        let mut calls = lock(&inner);
        let now = Instant::now();
        let mut next = now + IDLE_RECHECK;
        for w in calls.watched.iter_mut().filter(|w| !w.fired) {
            if w.deadline <= now {
                w.fired = true;
                cut(w.fd);
            } else {
                next = next.min(w.deadline);
            }
        }
        calls.wakes_at = Some(next);
        // A wait cut short (a sooner deadline, or spuriously) just looks again.
        drop(
            inner
                .sooner
                .wait_timeout(calls, next.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}

/// Shuts the socket down in both directions: the blocked read sees EOF.
fn cut(fd: RawFd) {
    // SAFETY: `fd` is the socket of a pooled connection whose call is being
    // watched. The entry is in `calls` (we hold its lock) until the `Watch`
    // guard drops, and the guard lives inside the call's `&mut PgConnection`
    // borrow, so the connection — which owns the fd — cannot be dropped and
    // its fd cannot be closed or reused while we use it here. `shutdown`
    // does not close the fd; the driver still owns it and closes it later.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let result = socket2::SockRef::from(&borrowed).shutdown(std::net::Shutdown::Both);
    if let Err(e) = result {
        log::debug!(target: "usersvc::db", error = e.to_string().as_str(); "socket shutdown failed");
    }
    log::warn!(
        target: "usersvc::db",
        "a database call passed its deadline; its connection was cut"
    );
}

/// The file descriptor, in this process, of the TCP socket whose local port
/// is `local_port` and remote port `server_port`, if there is exactly one.
///
/// Each open descriptor (`/proc/self/fd`) is asked for its two addresses
/// (`getpeername`, then `getsockname`): no text to read or parse. Matching
/// the socket's inode in `/proc/self/net/tcp` and in every `/proc/self/fd`
/// link instead costs time in proportion to every socket of the network
/// namespace: with 9,000 client connections open, refilling the pool after
/// its backends were killed took 0.50 s that way, and 0.16 s this way
/// (0.13 s with no client connection).
pub fn find_socket(local_port: u16, server_port: u16) -> Option<RawFd> {
    let mut found = None;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        if is_tcp_connection(fd, local_port, server_port) {
            if found.is_some() {
                return None; // ambiguous: cut nothing rather than the wrong socket
            }
            found = Some(fd);
        }
    }
    found
}

/// Whether `fd` is a connected TCP socket from `local_port` to `remote_port`.
fn is_tcp_connection(fd: RawFd, local_port: u16, remote_port: u16) -> bool {
    // SAFETY: `fd` was read from this process's descriptor table a moment
    // ago, and another thread may close it (or reuse its number) while we
    // look. Everything done through the borrow is a read-only query into
    // buffers socket2 owns (`getpeername`, `getsockname`, `SO_TYPE`): on a
    // closed number it fails with EBADF, on a reused one it describes that
    // file, and it never changes or closes the descriptor. The borrow ends
    // with this function. Only a stream socket with both ports of our new
    // connection is taken, and while that connection is open no other
    // socket of this process can have the same two ports.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    let port = |addr: std::io::Result<socket2::SockAddr>| {
        addr.ok().and_then(|a| a.as_socket()).map(|a| a.port())
    };
    port(sock.peer_addr()) == Some(remote_port)
        && port(sock.local_addr()) == Some(local_port)
        && sock.r#type().is_ok_and(|t| t == socket2::Type::STREAM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn finds_a_socket_and_cuts_a_blocked_read_at_its_deadline() {
        // A peer that accepts and never answers: the kernel ACKs, like a
        // stopped database.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server_port = listener.local_addr().expect("addr").port();
        let mut client = TcpStream::connect(("127.0.0.1", server_port)).expect("connect");
        let _peer = listener.accept().expect("accept");
        let local_port = client.local_addr().expect("addr").port();
        let fd = find_socket(local_port, server_port).expect("found");
        assert_eq!(fd, client.as_raw_fd());

        let watchdog = Watchdog::default();
        let started = Instant::now();
        let watch = watchdog.watch(Some(fd), Instant::now() + Duration::from_millis(200));
        let mut buf = [0u8; 1];
        let n = client.read(&mut buf).expect("EOF, not an error");
        assert_eq!(n, 0);
        let took = started.elapsed();
        assert!(watch.finish());
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(watchdog.watched(), 0);
    }

    /// The thread sleeps toward the earliest deadline it knows; a call with a
    /// sooner one wakes it, and is cut at its own deadline.
    #[test]
    fn a_sooner_deadline_wakes_the_sleeping_watchdog() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server_port = listener.local_addr().expect("addr").port();
        let connect = || {
            let client = TcpStream::connect(("127.0.0.1", server_port)).expect("connect");
            let peer = listener.accept().expect("accept");
            let port = client.local_addr().expect("addr").port();
            let fd = find_socket(port, server_port).expect("found");
            (client, fd, peer)
        };
        let (_slow, slow_fd, _p1) = connect();
        let (mut fast, fast_fd, _p2) = connect();
        let watchdog = Watchdog::default();
        let late = watchdog.watch(Some(slow_fd), Instant::now() + Duration::from_secs(30));
        // Let the thread start and go to sleep toward the 30 s deadline.
        thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let soon = watchdog.watch(Some(fast_fd), Instant::now() + Duration::from_millis(200));
        let n = fast.read(&mut [0u8; 1]).expect("EOF, not an error");
        let took = started.elapsed();
        assert_eq!(n, 0);
        assert!(soon.finish());
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(!late.finish(), "the later call was not cut");
        assert_eq!(watchdog.watched(), 0);
    }

    /// Of two connections to one server port, each is found by its own local
    /// port (and an accepted end by its own two); swapped or unknown ports
    /// find nothing.
    #[test]
    fn finds_only_the_socket_with_both_ports() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server_port = listener.local_addr().expect("addr").port();
        let a = TcpStream::connect(("127.0.0.1", server_port)).expect("connect");
        let a_peer = listener.accept().expect("accept");
        let b = TcpStream::connect(("127.0.0.1", server_port)).expect("connect");
        let _b_peer = listener.accept().expect("accept");
        let port = |s: &TcpStream| s.local_addr().expect("addr").port();
        assert_eq!(find_socket(port(&a), server_port), Some(a.as_raw_fd()));
        assert_eq!(find_socket(port(&b), server_port), Some(b.as_raw_fd()));
        assert_eq!(find_socket(port(&a), port(&b)), None);
        assert_eq!(
            find_socket(server_port, port(&a)),
            Some(a_peer.0.as_raw_fd())
        );
        assert_eq!(find_socket(1, server_port), None);
    }
}
