//! Binding the listening sockets.
//!
//! By default a port is exclusive: a second instance started by mistake on a busy port fails
//! with `Address already in use` instead of silently taking half the traffic (and the admin
//! port). With `REUSE_PORT=true` both listeners are bound with `SO_REUSEPORT`, so that a new
//! instance (also with `REUSE_PORT=true`) can bind the same ports while the old one still
//! runs, become ready, and then SIGTERM the old one: the kernel spreads new connections over
//! every socket bound to the port; the old one stops accepting at step 2 of its shutdown and
//! its I/O thread keeps serving the connections it accepted. What a host needs for that
//! hand-over to lose nothing is in ARCHITECTURE.md ("Rolling restart on one port"). The
//! backlog is where clients wait when every connection slot (`MAX_CONNS`) is taken.
//!
//! Under systemd socket activation ([`crate::systemd`]) the listener is the
//! one systemd passed instead, and it must stay listening when this process
//! stops accepting (`OnStop::KeepListening`): the next process takes it over.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel accept queue length asked for (the kernel caps it at
/// `net.core.somaxconn`).
pub const BACKLOG: i32 = 1024;

/// Whether a port may be shared with other sockets (`REUSE_PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSharing {
    /// The bind fails if another socket listens on the port.
    Exclusive,
    /// `SO_REUSEPORT`: every socket of the same user with it set shares the port.
    ReusePort,
}

impl PortSharing {
    pub fn from_flag(reuse_port: bool) -> PortSharing {
        if reuse_port {
            PortSharing::ReusePort
        } else {
            PortSharing::Exclusive
        }
    }
}

/// A listener and what stopping must do with it.
pub struct Bound {
    pub listener: TcpListener,
    pub on_stop: tiny_http::OnStop,
    /// Passed by systemd (not bound here): never steered, never shut down.
    pub inherited: bool,
}

/// The socket systemd passed for `role`, else a fresh bind of `addr`.
pub fn bind_or_inherit(
    role: crate::systemd::Role,
    addr: SocketAddr,
    sharing: PortSharing,
) -> io::Result<Bound> {
    Ok(match crate::systemd::take_listener(role)? {
        Some(listener) => {
            log::info!(
                listener = format!("{role:?}").to_lowercase().as_str(),
                addr = listener.local_addr()?.to_string().as_str();
                "using the socket passed by systemd"
            );
            Bound {
                listener,
                on_stop: tiny_http::OnStop::KeepListening,
                inherited: true,
            }
        }
        None => Bound {
            listener: bind(addr, sharing)?,
            on_stop: tiny_http::OnStop::ShutdownSocket,
            inherited: false,
        },
    })
}

/// Binds a TCP listener with `SO_REUSEADDR` (and `SO_REUSEPORT` if asked).
pub fn bind(addr: SocketAddr, sharing: PortSharing) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if sharing == PortSharing::ReusePort {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `[::]:port` serves IPv4 too, as Go's `:port` does.
        socket.set_only_v6(false)?;
    }
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Which socket of a `SO_REUSEPORT` group gets the group's new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// The group's first socket: the running instance's, while a new one starts (set by the
    /// new one right after it listens, so that it gets no connection before it is ready).
    Oldest,
    /// The group's second socket: the new instance's, once it is ready. From then on the old
    /// instance's accept queue gets no new connection, so closing its listener (after taking
    /// in what is queued) resets none. When the old socket leaves, the kernel moves the new
    /// one into its place; the index falls outside the group and the kernel's hash picks
    /// among the one socket left.
    Newest,
}

/// Steers the new connections of the `SO_REUSEPORT` group `listener` belongs to (one classic
/// BPF instruction, `SO_ATTACH_REUSEPORT_CBPF`: the program is the group's, whoever attaches
/// it). Works without `net.ipv4.tcp_migrate_req`; see ARCHITECTURE.md.
#[cfg(target_os = "linux")]
pub fn steer(listener: &TcpListener, to: Steer) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // `ret #k` (BPF_RET | BPF_K): "the socket at index k of the group".
    let index = match to {
        Steer::Oldest => 0,
        Steer::Newest => 1,
    };
    let mut program = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: index,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sock_fprog>())
        .map_err(io::Error::other)?;
    // SAFETY: `fd` is a socket owned by `listener`, alive for the call. `fprog` is a valid
    // `sock_fprog` whose `filter` points at `len = 1` initialised `sock_filter`s in `program`,
    // which outlives the call; the kernel copies the program and keeps no pointer. `optlen` is
    // the size of the struct passed.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&fprog).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the kernel's hash spreads the connections (no steering).
#[cfg(not(target_os = "linux"))]
pub fn steer(_listener: &TcpListener, _to: Steer) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_listeners_share_one_port_only_with_reuse_port() {
        let a =
            bind("127.0.0.1:0".parse().expect("addr"), PortSharing::ReusePort).expect("first bind");
        let port = a.local_addr().expect("addr").port();
        let same = SocketAddr::from(([127, 0, 0, 1], port));
        let b = bind(same, PortSharing::ReusePort).expect("second bind, same port");
        assert_eq!(b.local_addr().expect("addr").port(), port);

        let c = bind("127.0.0.1:0".parse().expect("addr"), PortSharing::Exclusive)
            .expect("exclusive bind");
        let same = SocketAddr::from(([127, 0, 0, 1], c.local_addr().expect("addr").port()));
        let err = bind(same, PortSharing::Exclusive).expect_err("the port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let err = bind(same, PortSharing::ReusePort).expect_err("the first did not opt in");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn steering_sends_every_new_connection_to_the_newest_socket() {
        let old = bind("127.0.0.1:0".parse().expect("addr"), PortSharing::ReusePort).expect("old");
        let addr = old.local_addr().expect("addr");
        let new = bind(addr, PortSharing::ReusePort).expect("new");
        new.set_nonblocking(true).expect("nonblocking");
        old.set_nonblocking(true).expect("nonblocking");
        let count = |l: &TcpListener| std::iter::from_fn(|| l.accept().ok()).count();
        let connect = |n| -> Vec<std::net::TcpStream> {
            (0..n)
                .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
                .collect()
        };
        // While the new one starts, everything goes to the old one…
        steer(&new, Steer::Oldest).expect("attach");
        let clients = connect(40);
        // (every handshake completed in `connect`: the queues are final)
        assert_eq!((count(&old), count(&new)), (40, 0));
        // … and once it is ready, everything goes to the new one.
        steer(&new, Steer::Newest).expect("attach");
        let more = connect(40);
        assert_eq!((count(&old), count(&new)), (0, 40));
        drop((clients, more));
        // The old socket leaves the group: the newest is alone and gets everything.
        drop(old);
        let _c = std::net::TcpStream::connect(addr).expect("connect after the old left");
        assert_eq!(count(&new), 1);
    }
}
