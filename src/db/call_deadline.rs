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
//!   file descriptor in this process (the port the server reports for us,
//!   `inet_client_port()`, matched in `/proc/self/net/tcp*`, then the inode
//!   in `/proc/self/fd`);
//! - each call on a pooled connection registers `(fd, deadline)` with the
//!   one [`Watchdog`] thread (`db-watchdog`) for the length of the call;
//! - past the deadline the watchdog shuts the socket down
//!   (`shutdown(SHUT_RDWR)`, not `close`: the driver still owns the fd). The
//!   blocked read returns at once, the call fails with a connection error,
//!   the pool discards the connection, and the request answers 503.
//!
//! Where the socket cannot be found (a Unix socket, or a proxy that changes
//! the client port) the deadline cannot cut the call; that is logged once.

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// How often the watchdog looks for calls past their deadline.
const TICK: Duration = Duration::from_millis(50);

/// The one thread that cuts calls past their deadline; cheap to clone.
#[derive(Clone, Default)]
pub struct Watchdog {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Calls>,
}

#[derive(Default)]
struct Calls {
    next_id: u64,
    watched: Vec<Watched>,
    thread_started: bool,
}

struct Watched {
    id: u64,
    fd: RawFd,
    deadline: Instant,
    fired: Arc<AtomicBool>,
}

/// A call under watch; dropping it (when the call returns) ends the watch.
pub struct Watch<'a> {
    watchdog: &'a Watchdog,
    id: Option<u64>,
    fired: Arc<AtomicBool>,
}

impl Watch<'_> {
    /// Whether the watchdog cut the call (its deadline passed).
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.watchdog.lock().watched.retain(|w| w.id != id);
        }
    }
}

impl Watchdog {
    /// Watches a call on the socket `fd` until the returned guard drops.
    ///
    /// The caller must keep the socket open (hold the connection that owns
    /// it) for as long as the guard lives: [`Watch`] borrows `self` only,
    /// so [`crate::db::PgConnection`] creates it inside its own `&mut`
    /// borrow, which outlives the guard.
    pub(crate) fn watch(&self, fd: Option<RawFd>, deadline: Instant) -> Watch<'_> {
        let fired = Arc::new(AtomicBool::new(false));
        let Some(fd) = fd else {
            return Watch {
                watchdog: self,
                id: None,
                fired,
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
            fired: Arc::clone(&fired),
        });
        Watch {
            watchdog: self,
            id: Some(id),
            fired,
        }
    }

    /// Calls watched right now.
    pub fn watched(&self) -> usize {
        self.lock().watched.len()
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        self.inner
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn start_thread(inner: Weak<Inner>) -> bool {
    let spawned = thread::Builder::new()
        .name("db-watchdog".into())
        .spawn(move || loop {
            thread::sleep(TICK);
            let Some(inner) = inner.upgrade() else { return };
            let calls = inner.calls.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            for w in calls.watched.iter().filter(|w| w.deadline <= now) {
                if !w.fired.swap(true, Ordering::AcqRel) {
                    cut(w.fd);
                }
            }
        });
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
pub fn find_socket(local_port: u16, server_port: u16) -> Option<RawFd> {
    let mut inodes = HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(inodes_for(&text, local_port, server_port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let mut found = None;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if inodes.contains(&inode) {
            if found.is_some() {
                return None; // ambiguous: cut nothing rather than the wrong socket
            }
            found = entry.file_name().to_str().and_then(|n| n.parse().ok());
        }
    }
    found
}

/// Inodes of established sockets with these ports in a `/proc/net/tcp` table.
fn inodes_for(table: &str, local_port: u16, remote_port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| {
                addr.rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            };
            let established = f.get(3) == Some(&"01");
            (established
                && port(f.get(1)?) == Some(local_port)
                && port(f.get(2)?) == Some(remote_port))
            .then(|| f.get(9)?.parse().ok())
            .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn parses_the_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:D431 0100007F:1538 01 00000000:00000000 00:00000000 00000000   105        0 4242 1 0 20 4 30 10 -1\n   \
            1: 0100007F:D432 0100007F:1538 06 00000000:00000000 00:00000000 00000000   105        0 4243 1 0 20 4 30 10 -1\n";
        assert_eq!(inodes_for(table, 0xD431, 5432), vec![4242]);
        assert!(
            inodes_for(table, 0xD432, 5432).is_empty(),
            "not established"
        );
    }

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
        assert!(watch.fired());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        drop(watch);
        assert_eq!(watchdog.watched(), 0);
    }
}
