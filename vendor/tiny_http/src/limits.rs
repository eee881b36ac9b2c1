//! Resource limits and timeouts applied to every connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Method;

/// Limits and timeouts applied to every connection of a [`Server`](crate::Server).
///
/// `Limits::default()` holds values that are safe to put on a network; every constructor of
/// `Server` applies them (use [`Server::from_listener`](crate::Server::from_listener) to pass
/// your own).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections per listener. When reached, the I/O thread stops calling `accept()`
    /// until a connection closes: new clients wait in the kernel backlog. A connection costs no
    /// thread (one I/O thread serves them all); an idle one holds no buffer. Default 1024.
    pub max_connections: usize,
    /// Deadline for a whole request head, counted from its first byte, and for a whole request
    /// body, counted from the end of the head. On expiry while reading the head the client gets
    /// `408` and the connection is closed; while reading the body the request is dispatched with
    /// what arrived, and its body reader then returns an `io::ErrorKind::TimedOut` error (the
    /// connection closes after the response). Default 5 s.
    pub read_timeout: Duration,
    /// Deadline for writing a whole response, counted from when it is handed to the I/O
    /// thread: a client that has not taken it all by then is disconnected. Default 10 s.
    pub write_timeout: Duration,
    /// How long a kept-alive connection may wait for the first byte of its next request before it
    /// is closed silently. Default 60 s.
    pub idle_timeout: Duration,
    /// Longest request line (method, target, version) in bytes; beyond: `414` and close.
    /// Default 8 KiB.
    pub max_request_line: usize,
    /// Total bytes of the header section (also bounds chunked trailers); beyond: `431` and close.
    /// Default 16 KiB.
    pub max_header_bytes: usize,
    /// Number of header fields (also bounds chunked trailers); beyond: `431` and close.
    /// Default 100.
    pub max_headers: usize,
    /// Largest request body. A larger `Content-Length` is answered `413` (and the connection
    /// closed) before the request is dispatched; a chunked body growing past it makes the body
    /// reader fail with an error recognised by [`is_body_too_large`](crate::is_body_too_large).
    /// Default 1 MiB.
    pub max_body_bytes: u64,
    /// At most this many bytes the client still sends are read and thrown away after an error
    /// response that closes the connection (the lingering close, at most 2 s), so that the
    /// client reads the response instead of a reset. Default 64 KiB.
    pub max_drain_bytes: u64,
    /// Stack size of the I/O thread. Handlers run on it in handler mode. Default 256 KiB.
    pub thread_stack_size: usize,
    /// Renders the headers and body of the error responses the server sends by itself
    /// (400, 408, 413, 414, 417, 431, 501, 505, and 503 over the body budget, for requests it
    /// refuses before any handler sees them),
    /// so that they carry the same body format and ids as the application's own errors.
    /// `None` (the default): an empty body.
    pub error_body: Option<ErrorBody>,
    /// Bytes of request bodies held in memory at once, shared by every server given a clone
    /// of these limits. A body is read whole before its request is dispatched; its bytes
    /// count from its head (the `Content-Length`, or as a chunked body grows) until the
    /// request is answered. A body that does not fit is refused at once with `503` +
    /// `Retry-After` and `Connection: close`. Default 32 MiB.
    pub body_buffer: BodyBudget,
    /// What [`ServerControl::stop_accepting`](crate::ServerControl::stop_accepting) does with
    /// the listening socket. Default [`OnStop::ShutdownSocket`].
    pub listener_on_stop: OnStop,
}

/// See [`Limits::listener_on_stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStop {
    /// Take in the connections already in the accept queue, then `shutdown(SHUT_RD)` the
    /// listening socket: Linux takes it out of the LISTEN state at once (new connects are
    /// refused, or go to the other `SO_REUSEPORT` sockets).
    #[default]
    ShutdownSocket,
    /// Leave the socket listening, for a socket that outlives the process (systemd socket
    /// activation): the I/O thread stops watching it and lets go of its descriptor, and the
    /// kernel keeps queueing connections for the next process, which takes them over.
    KeepListening,
}

/// The budget of [`Limits::body_buffer`]: a limit and the bytes reserved now. Clones share
/// the count.
#[derive(Clone)]
pub struct BodyBudget(Arc<BudgetInner>);

struct BudgetInner {
    limit: u64,
    used: AtomicU64,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> BodyBudget {
        BodyBudget(Arc::new(BudgetInner {
            limit,
            used: AtomicU64::new(0),
        }))
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.0.limit
    }

    /// Bytes reserved now by bodies being read or held by requests not yet answered.
    pub fn in_use(&self) -> u64 {
        self.0.used.load(Ordering::SeqCst)
    }

    fn try_take(&self, n: u64) -> bool {
        let mut cur = self.0.used.load(Ordering::SeqCst);
        loop {
            let next = match cur.checked_add(n) {
                Some(v) if v <= self.0.limit => v,
                _ => return false,
            };
            match self
                .0
                .used
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    fn give_back(&self, n: u64) {
        self.0.used.fetch_sub(n, Ordering::SeqCst);
    }
}

impl fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyBudget")
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// Bytes of a [`BodyBudget`] held by one request; given back when dropped.
pub(crate) struct Reservation {
    budget: BodyBudget,
    bytes: u64,
}

impl Reservation {
    pub(crate) fn empty(budget: &BodyBudget) -> Reservation {
        Reservation {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// Reserves `n` more bytes; false (nothing reserved) when the budget has no room.
    pub(crate) fn grow(&mut self, n: u64) -> bool {
        if self.budget.try_take(n) {
            self.bytes += n;
            true
        } else {
            false
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.bytes);
        }
    }
}

/// See [`Limits::error_body`]: status code in, extra headers and body out. Called on the
/// I/O thread, before the response is written; a closure, so that it can also count
/// the refusal.
#[derive(Clone)]
pub struct ErrorBody(Arc<dyn Fn(&Refusal<'_>) -> ErrorParts + Send + Sync>);

/// A request the HTTP layer refuses before any handler sees it, with what is known of it:
/// enough for the application to answer and log it like any other request.
#[derive(Debug)]
pub struct Refusal<'a> {
    /// The status it is answered with (400, 408, 413, 414, 417, 431, 501, 505, and 503 when
    /// the body does not fit in [`Limits::body_buffer`]).
    pub status: u16,
    /// The method and request target, when the request line was read.
    pub request_line: Option<(&'a Method, &'a str)>,
    /// What was wrong with the request, when the parser says (e.g. "missing Host",
    /// "invalid Content-Length"): fixed text, safe to show the client.
    pub why: Option<&'static str>,
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// When the first byte of the request arrived.
    pub started: Instant,
    /// The limits in force (e.g. `max_body_bytes` for a 413's detail).
    pub limits: &'a Limits,
}

/// The extra headers and the body of an error response.
pub type ErrorParts = (Vec<crate::Header>, Vec<u8>);

impl ErrorBody {
    /// Wraps a renderer.
    pub fn new(render: impl Fn(&Refusal<'_>) -> ErrorParts + Send + Sync + 'static) -> ErrorBody {
        ErrorBody(Arc::new(render))
    }

    /// The headers and body for `refusal`.
    pub fn render(&self, refusal: &Refusal<'_>) -> ErrorParts {
        (self.0)(refusal)
    }
}

impl fmt::Debug for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErrorBody(..)")
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            max_drain_bytes: 64 * 1024,
            thread_stack_size: 256 * 1024,
            error_body: None,
            body_buffer: BodyBudget::new(32 * 1024 * 1024),
            listener_on_stop: OnStop::ShutdownSocket,
        }
    }
}

impl Limits {
    /// Replaces zero values (which would disable a protection or make `set_read_timeout` fail)
    /// with the smallest sane value.
    pub(crate) fn sanitized(mut self) -> Self {
        let min = Duration::from_millis(1);
        self.max_connections = self.max_connections.max(1);
        self.read_timeout = self.read_timeout.max(min);
        self.write_timeout = self.write_timeout.max(min);
        self.idle_timeout = self.idle_timeout.max(min);
        self.max_request_line = self.max_request_line.max(16);
        self.max_header_bytes = self.max_header_bytes.max(16);
        self.thread_stack_size = self.thread_stack_size.max(64 * 1024);
        self
    }
}
