//! systemd integration without libsystemd: readiness notification over
//! `NOTIFY_SOCKET` (`READY=1`, `STOPPING=1`, `WATCHDOG=1`) and socket
//! activation (`LISTEN_FDS`).
//!
//! Why: on a host without Kubernetes, `Type=notify` lets systemd order
//! dependents after the service is really ready, the watchdog restarts a hung
//! process, and socket activation keeps the listening sockets in systemd's
//! hands, so a restart queues connections in the kernel instead of refusing
//! them. Everything here is a no-op when the variables are absent (Kubernetes,
//! Docker, tests), so the rest of the service calls it unconditionally.
//!
//! Socket activation: when `LISTEN_PID` is this process and `LISTEN_FDS` is
//! n, fds 3..3+n are listening TCP sockets. Which is which: by
//! `LISTEN_FDNAMES` when every name is `public` or `admin` (the
//! `FileDescriptorName=` of `deploy/systemd/usersvc.socket`), otherwise by
//! order (the first is the public listener, the second the admin one). An
//! inherited socket replaces binding `ADDR` / `ADMIN_ADDR`; a socket the
//! configuration does not use (an admin socket with `ADMIN_ADDR=off`) is a
//! start-up error, as is an fd that is not a listening TCP socket.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

/// The first inherited fd (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Which listener an inherited socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Public,
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Admin => "admin",
        }
    }
}

/// A malformed socket-activation environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationError {
    BadCount(String),
    TooMany(usize),
    DuplicateName(&'static str),
    NotAListeningSocket(RawFd, String),
    Unused(Vec<&'static str>),
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::BadCount(v) => write!(f, "LISTEN_FDS={v:?} is not a count"),
            ActivationError::TooMany(n) => write!(
                f,
                "LISTEN_FDS={n}: at most 2 sockets (public, admin) can be passed"
            ),
            ActivationError::DuplicateName(n) => {
                write!(f, "LISTEN_FDNAMES names {n:?} twice")
            }
            ActivationError::NotAListeningSocket(fd, why) => {
                write!(f, "inherited fd {fd} is not a listening TCP socket: {why}")
            }
            ActivationError::Unused(roles) => write!(
                f,
                "systemd passed sockets the configuration does not use: {} (ADMIN_ADDR=off?)",
                roles.join(" and ")
            ),
        }
    }
}

impl std::error::Error for ActivationError {}

impl From<ActivationError> for io::Error {
    fn from(e: ActivationError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// Pure: which fd is for which role, from the three variables and our pid.
/// `Ok(empty)` when the sockets are not for this process (or there are none).
pub fn assign_fds(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    our_pid: u32,
) -> Result<HashMap<Role, RawFd>, ActivationError> {
    let mut out = HashMap::new();
    if listen_pid.and_then(|p| p.trim().parse::<u32>().ok()) != Some(our_pid) {
        return Ok(out);
    }
    let Some(count) = listen_fds else {
        return Ok(out);
    };
    let n: usize = count
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadCount(count.to_owned()))?;
    if n > 2 {
        return Err(ActivationError::TooMany(n));
    }
    let names: Vec<&str> = listen_fdnames
        .map(|s| s.split(':').collect())
        .unwrap_or_default();
    let by_name = names.len() == n && names.iter().all(|s| *s == "public" || *s == "admin");
    for i in 0..n {
        let role = if by_name {
            if names.get(i) == Some(&"public") {
                Role::Public
            } else {
                Role::Admin
            }
        } else if i == 0 {
            Role::Public
        } else {
            Role::Admin
        };
        if out.insert(role, LISTEN_FDS_START + i as RawFd).is_some() {
            return Err(ActivationError::DuplicateName(role.name()));
        }
    }
    Ok(out)
}

/// The sockets systemd passed, taken at most once each.
fn inherited() -> &'static Result<Mutex<HashMap<Role, TcpListener>>, ActivationError> {
    static INHERITED: OnceLock<Result<Mutex<HashMap<Role, TcpListener>>, ActivationError>> =
        OnceLock::new();
    INHERITED.get_or_init(|| {
        let var = |k| std::env::var(k).ok();
        let fds = assign_fds(
            var("LISTEN_PID").as_deref(),
            var("LISTEN_FDS").as_deref(),
            var("LISTEN_FDNAMES").as_deref(),
            std::process::id(),
        )?;
        let mut listeners = HashMap::new();
        for (role, fd) in fds {
            // SAFETY: LISTEN_PID names this process, so by the socket-activation protocol fds
            // 3..3+LISTEN_FDS were opened by the service manager and passed to us across exec,
            // and nothing in this process opened them (std hands out the lowest free fd, and
            // these were never free). Each fd is wrapped exactly once: this closure runs once
            // (OnceLock) and `assign_fds` maps distinct roles to distinct fds. The checks
            // below reject an fd that is not a listening stream socket before it is used.
            let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
            let checked = (|| {
                if socket.r#type()? != socket2::Type::STREAM {
                    return Err(io::Error::other("not a stream socket"));
                }
                if !socket.is_listener()? {
                    return Err(io::Error::other("not listening"));
                }
                socket
                    .local_addr()?
                    .as_socket()
                    .ok_or_else(|| io::Error::other("not TCP"))?;
                socket.set_cloexec(true)
            })();
            if let Err(e) = checked {
                // Not ours to close: forget it rather than closing an fd we did not vet.
                std::mem::forget(socket);
                return Err(ActivationError::NotAListeningSocket(fd, e.to_string()));
            }
            listeners.insert(role, TcpListener::from(socket));
        }
        Ok(Mutex::new(listeners))
    })
}

/// The listening socket systemd passed for `role`, if any (taken: a second
/// call returns `None`).
pub fn take_listener(role: Role) -> io::Result<Option<TcpListener>> {
    match inherited() {
        Err(e) => Err(e.clone().into()),
        Ok(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner()).remove(&role)),
    }
}

/// Fails when systemd passed a socket that no listener took.
pub fn check_all_taken() -> io::Result<()> {
    match inherited() {
        Err(e) => Err(e.clone().into()),
        Ok(m) => {
            let left = m.lock().unwrap_or_else(|p| p.into_inner());
            if left.is_empty() {
                return Ok(());
            }
            let mut roles: Vec<_> = left.keys().map(|r| r.name()).collect();
            roles.sort_unstable();
            Err(ActivationError::Unused(roles).into())
        }
    }
}

/// `sd_notify` without libsystemd: one datagram per message to the
/// `NOTIFY_SOCKET` path (or `@abstract` name).
struct Notifier {
    socket: UnixDatagram,
    addr: UnixAddr,
}

impl Notifier {
    fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let made = (|| {
            let bytes = path.as_encoded_bytes();
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    UnixAddr::from_abstract_name(name)?
                }
                None => UnixAddr::from_pathname(&path)?,
            };
            Ok::<_, io::Error>(Notifier {
                socket: UnixDatagram::unbound()?,
                addr,
            })
        })();
        match made {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!(error = e.to_string().as_str(); "NOTIFY_SOCKET unusable; not notifying systemd");
                None
            }
        }
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            log::warn!(error = e.to_string().as_str(), message = message; "sd_notify failed");
        }
    }
}

fn notifier() -> Option<&'static Notifier> {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    NOTIFIER.get_or_init(Notifier::from_env).as_ref()
}

/// `READY=1`: start-up work done, the service answers `/readyz` 200.
pub fn notify_ready() {
    if let Some(n) = notifier() {
        n.send("READY=1\nSTATUS=serving");
    }
}

/// `STOPPING=1`: the drain has begun.
pub fn notify_stopping() {
    if let Some(n) = notifier() {
        n.send("STOPPING=1\nSTATUS=draining");
    }
}

/// Pure: the keep-alive interval for `WATCHDOG_USEC` (half of it, as
/// sd_watchdog_enabled(3) advises), when the watchdog is meant for us.
pub fn watchdog_interval(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
    our_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = watchdog_pid {
        if pid.trim().parse::<u32>().ok() != Some(our_pid) {
            return None;
        }
    }
    let usec: u64 = watchdog_usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// Starts a thread sending `WATCHDOG=1` every half `WATCHDOG_USEC`, when
/// systemd asked for it (`WatchdogSec=`); otherwise does nothing.
pub fn start_watchdog() -> io::Result<()> {
    let var = |k| std::env::var(k).ok();
    let Some(every) = watchdog_interval(
        var("WATCHDOG_USEC").as_deref(),
        var("WATCHDOG_PID").as_deref(),
        std::process::id(),
    ) else {
        return Ok(());
    };
    let Some(n) = notifier() else {
        return Ok(());
    };
    log::info!(interval_ms = every.as_millis() as u64; "systemd watchdog enabled");
    thread::Builder::new()
        .name("sd-watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            n.send("WATCHDOG=1");
            thread::sleep(every);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_for_another_process_are_ignored() {
        let got = assign_fds(Some("42"), Some("2"), None, 7).expect("ok");
        assert!(got.is_empty());
        assert!(assign_fds(None, Some("2"), None, 7).expect("ok").is_empty());
    }

    #[test]
    fn fds_by_order_without_names() {
        let got = assign_fds(Some("7"), Some("2"), None, 7).expect("ok");
        assert_eq!(got[&Role::Public], 3);
        assert_eq!(got[&Role::Admin], 4);
        let got = assign_fds(Some("7"), Some("2"), Some("usersvc.socket:x"), 7).expect("ok");
        assert_eq!(got[&Role::Public], 3);
    }

    #[test]
    fn fds_by_name() {
        let got = assign_fds(Some("7"), Some("2"), Some("admin:public"), 7).expect("ok");
        assert_eq!(got[&Role::Admin], 3);
        assert_eq!(got[&Role::Public], 4);
        let one = assign_fds(Some("7"), Some("1"), Some("admin"), 7).expect("ok");
        assert_eq!(one.get(&Role::Admin), Some(&3));
        assert_eq!(one.get(&Role::Public), None);
    }

    #[test]
    fn bad_activation_environments_are_errors() {
        assert_eq!(
            assign_fds(Some("7"), Some("x"), None, 7),
            Err(ActivationError::BadCount("x".into()))
        );
        assert_eq!(
            assign_fds(Some("7"), Some("3"), None, 7),
            Err(ActivationError::TooMany(3))
        );
        assert_eq!(
            assign_fds(Some("7"), Some("2"), Some("admin:admin"), 7),
            Err(ActivationError::DuplicateName("admin"))
        );
    }

    #[test]
    fn watchdog_every_half_the_timeout_when_meant_for_us() {
        assert_eq!(
            watchdog_interval(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }
}
