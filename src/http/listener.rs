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
}
