//! Binding the listening sockets.
//!
//! Both listeners are bound with `SO_REUSEPORT`, so that outside Kubernetes a
//! new instance can bind the same port while the old one still runs, become
//! ready, and then SIGTERM the old one with zero failed requests (the kernel
//! spreads new connections over every socket bound to the port; the old one
//! stops accepting at step 2 of its shutdown). The backlog is where clients
//! wait when every connection slot (`MAX_CONNS`) is taken.
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

/// A listener and what stopping must do with it.
pub struct Bound {
    pub listener: TcpListener,
    pub on_stop: tiny_http::OnStop,
}

/// The socket systemd passed for `role`, else a fresh bind of `addr`.
pub fn bind_or_inherit(role: crate::systemd::Role, addr: SocketAddr) -> io::Result<Bound> {
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
            }
        }
        None => Bound {
            listener: bind(addr)?,
            on_stop: tiny_http::OnStop::ShutdownSocket,
        },
    })
}

/// Binds a blocking TCP listener with `SO_REUSEADDR` + `SO_REUSEPORT`.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
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
    fn two_listeners_share_one_port() {
        let a = bind("127.0.0.1:0".parse().expect("addr")).expect("first bind");
        let port = a.local_addr().expect("addr").port();
        let b = bind(SocketAddr::from(([127, 0, 0, 1], port))).expect("second bind, same port");
        assert_eq!(b.local_addr().expect("addr").port(), port);
    }
}
