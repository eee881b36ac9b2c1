//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         // the server was unblocked (shutdown): stop
//!         Err(_) => break,
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handler mode, limits and graceful shutdown
//!
//! [`Server::from_listener`] takes a ready listener, [`Limits`] and a [`Dispatch`] mode. In
//! [`Dispatch::Handler`] mode a function is called on the listener's I/O thread for each request;
//! it answers inline or moves the `Request` to another thread. [`Server::control`] returns a
//! cloneable [`ServerControl`] for graceful shutdown (stop accepting, drain, wait, force close).
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conn::{Dispatcher, Queue, ServerShared};

pub use body::{is_body_too_large, BodyTooLarge};
pub use common::{FieldValue, HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use limits::{BodyBudget, ErrorBody, Limits, OnStop, Refusal};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod body;
mod common;
mod conn;
mod connection;
mod head;
mod limits;
mod request;
mod response;
mod scratch;
mod test;
mod util;

/// A request handler for [`Dispatch::Handler`].
pub type Handler = Arc<dyn Fn(Request) + Send + Sync + 'static>;

/// Code the application runs on the listener's I/O thread at fixed points.
#[derive(Clone, Default)]
pub struct IoHooks {
    /// Called on the I/O thread each time it has handled what was ready and is about to wait
    /// for events, and once when it exits: the place to flush output that the handlers
    /// buffered (for example one `write` for all the log lines of a burst of inline answers,
    /// instead of one per line).
    pub before_wait: Option<Arc<dyn Fn() + Send + Sync + 'static>>,
    /// Called once on the I/O thread when it starts, before it serves anything: the place for
    /// per-thread settings (for example a scheduler hint).
    pub on_start: Option<Arc<dyn Fn() + Send + Sync + 'static>>,
}

impl std::fmt::Debug for IoHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoHooks")
            .field("before_wait", &self.before_wait.is_some())
            .field("on_start", &self.on_start.is_some())
            .finish()
    }
}

/// Where the requests read by a [`Server`] go.
#[derive(Clone)]
pub enum Dispatch {
    /// Requests are queued for [`Server::recv`] and friends (upstream behaviour).
    Queue,
    /// The handler is called on the listener's I/O thread for each complete request (head and
    /// body read). It either responds inline (cheap answers only: every connection of the
    /// listener waits meanwhile) or moves the `Request` to another thread that responds later.
    /// The connection's next request is read only once this one is finished (answered, or
    /// dropped).
    Handler(Handler),
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dispatch::Queue => f.write_str("Queue"),
            Dispatch::Handler(_) => f.write_str("Handler(..)"),
        }
    }
}

/// The main class of this library.
///
/// Dropping it stops accepting, starts draining (idle connections are closed, in-flight
/// requests get their response with `Connection: close`) and answers requests still queued for
/// `recv()` with `503` and `Connection: close`.
pub struct Server {
    shared: Arc<ServerShared>,

    // queue mode only
    queue: Option<Arc<Queue>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,
}

// makes sure that Server, ServerControl and Request are Send (and the first two Sync)
const _: () = {
    const fn share<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    share::<Server>();
    share::<ServerControl>();
    send::<Request>();
};

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// One listener of [`Server::serve_together`].
pub struct ServerSpec {
    pub listener: Listener,
    pub limits: Limits,
    pub dispatch: Dispatch,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// Limits and timeouts of the connections.
    pub limits: Limits,
}

/// A cloneable handle for graceful shutdown and metrics, valid after the `Server` is dropped.
#[derive(Clone)]
pub struct ServerControl {
    shared: Arc<ServerShared>,
}

impl std::fmt::Debug for ServerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerControl")
            .field("open_connections", &self.open_connections())
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl ServerControl {
    /// Stops accepting: the listening socket is shut down at once (new connects are refused, or
    /// go to the other sockets of a `SO_REUSEPORT` group) and closed by the I/O thread.
    /// Connections already accepted are not affected. Idempotent.
    pub fn stop_accepting(&self) {
        self.shared.stop_accepting();
    }

    /// From now on every response carries `Connection: close` and its connection closes after
    /// it; connections idle between requests are closed now. Idempotent.
    pub fn start_draining(&self) {
        self.shared.start_draining();
    }

    /// True once [`start_draining`](Self::start_draining) was called (or the `Server` dropped).
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// Blocks until every connection is closed or `deadline` passes; returns whether every
    /// connection is closed.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        self.shared.wait_idle(deadline)
    }

    /// Shuts down every remaining socket (reads and writes on them fail at once).
    pub fn force_close(&self) {
        self.shared.force_close();
    }

    /// Connections currently open (none holds a thread: one I/O thread serves them all).
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }
}

impl Server {
    /// Shortcut for a simple server on a specific address, with `Limits::default()`.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            limits: Limits::default(),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            limits: Limits::default(),
        })
    }

    /// Builds a new server that listens on the specified address (queue mode).
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Ok(Self::from_listener(
            listener,
            config.limits,
            Dispatch::Queue,
        )?)
    }

    /// Builds a new server on a ready listener (for example a `std::net::TcpListener` bound with
    /// `SO_REUSEPORT`, or one inherited from systemd), with the given limits and dispatch mode.
    ///
    /// The listener is switched to non-blocking mode and served by one I/O thread.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        limits: Limits,
        dispatch: Dispatch,
    ) -> IoResult<Server> {
        Self::from_listener_with(listener, limits, dispatch, IoHooks::default())
    }

    /// [`Server::from_listener`] with [`IoHooks`] run on the I/O thread.
    pub fn from_listener_with<L: Into<Listener>>(
        listener: L,
        limits: Limits,
        dispatch: Dispatch,
        hooks: IoHooks,
    ) -> IoResult<Server> {
        let mut servers = Server::serve_together(
            vec![ServerSpec {
                listener: listener.into(),
                limits,
                dispatch,
            }],
            hooks,
        )?;
        servers
            .pop()
            .ok_or_else(|| IoError::other("no server was started"))
    }

    /// Serves several listeners from one I/O thread: one `Server` per spec, in order, each
    /// with its own limits, dispatch, connection cap and shutdown controls. Costs one thread
    /// and one read buffer for all of them; an inline [`Dispatch::Handler`] of one listener
    /// holds up the connections of every listener while it runs.
    pub fn serve_together(specs: Vec<ServerSpec>, hooks: IoHooks) -> IoResult<Vec<Server>> {
        let mut inner = Vec::with_capacity(specs.len());
        let mut servers = Vec::with_capacity(specs.len());
        for spec in specs {
            let local_addr = spec.listener.local_addr()?;
            spec.listener.set_nonblocking(true)?;
            log::debug!("Server listening on {}", local_addr);
            let (queue, dispatcher) = match spec.dispatch {
                Dispatch::Queue => {
                    let q = Arc::new(Queue::new());
                    (Some(q.clone()), Dispatcher::Queue(q))
                }
                Dispatch::Handler(h) => (None, Dispatcher::Handler(h)),
            };
            inner.push(conn::ListenerSpec {
                listener: Arc::new(spec.listener),
                limits: spec.limits.sanitized(),
                dispatch: dispatcher,
            });
            servers.push((queue, local_addr));
        }
        let shared = conn::start(inner, hooks)?;
        Ok(shared
            .into_iter()
            .zip(servers)
            .map(|(shared, (queue, listening_addr))| Server {
                shared,
                queue,
                listening_addr,
            })
            .collect())
    }

    /// A cloneable handle for graceful shutdown and metrics.
    pub fn control(&self) -> ServerControl {
        ServerControl {
            shared: self.shared.clone(),
        }
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` once `unblock()` was called and the queue is empty.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        self.shared.open_connections()
    }

    fn queue(&self) -> IoResult<&Queue> {
        self.queue.as_deref().ok_or_else(|| {
            IoError::new(
                IoErrorKind::Unsupported,
                "the server dispatches requests to a handler",
            )
        })
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    ///
    /// Returns an error once `unblock()` was called and no request is queued.
    pub fn recv(&self) -> IoResult<Request> {
        match self.queue()?.pop(None) {
            Ok(Some(rq)) => Ok(rq),
            _ => Err(unblocked()),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout. `Ok(None)` on timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        let deadline = Instant::now().checked_add(timeout);
        self.queue()?.pop(deadline).map_err(|()| unblocked())
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        Ok(self.queue()?.try_pop())
    }

    /// Unblocks every thread stuck in `recv()`, `recv_timeout()` or `incoming_requests()`, now
    /// and later: once the queued requests are taken, they return an error (`None` for the
    /// iterator) instead of blocking. This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        if let Some(q) = &self.queue {
            q.unblock();
        }
    }
}

fn unblocked() -> IoError {
    IoError::other("thread unblocked")
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop_accepting();
        self.shared.start_draining();
        if let Some(q) = &self.queue {
            for rq in q.close() {
                let _ = rq.respond(Response::empty(503).with_connection_close());
            }
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
