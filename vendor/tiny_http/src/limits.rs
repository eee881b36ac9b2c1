//! Resource limits and timeouts applied to every connection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Limits and timeouts applied to every connection of a [`Server`](crate::Server).
///
/// `Limits::default()` holds values that are safe to put on a network; every constructor of
/// `Server` applies them (use [`Server::from_listener`](crate::Server::from_listener) to pass
/// your own).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections per listener. When reached, the accept loop stops calling `accept()`
    /// until a connection closes: new clients wait in the kernel backlog. Each open connection
    /// holds one thread, so this also bounds the threads of the server. Default 1024.
    pub max_connections: usize,
    /// Deadline for a whole request head, counted from its first byte, and for a whole request
    /// body, counted from the first body read. On expiry while reading the head the client gets
    /// `408` and the connection is closed; while reading the body the body reader returns an
    /// `io::ErrorKind::TimedOut` error. Default 5 s.
    pub read_timeout: Duration,
    /// Timeout of each socket write (`SO_SNDTIMEO`): a write that makes no progress for this long
    /// fails and the connection is closed. Default 10 s.
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
    /// At most this many bytes of a body the handler left unread are read and thrown away after
    /// the response (within the read deadline) to keep the connection alive; a longer rest closes
    /// the connection instead. Default 64 KiB.
    pub max_drain_bytes: u64,
    /// Stack size of connection threads. Handlers run on them in handler mode. Default 256 KiB.
    pub thread_stack_size: usize,
    /// Renders the headers and body of the error responses the server sends by itself
    /// (400, 408, 413, 414, 431, 501, 505 for requests it refuses before any handler sees them),
    /// so that they carry the same body format and ids as the application's own errors.
    /// `None` (the default): an empty body.
    pub error_body: Option<ErrorBody>,
    /// What [`ServerControl::stop_accepting`](crate::ServerControl::stop_accepting) does with
    /// the listening socket. Default [`OnStop::ShutdownSocket`].
    pub listener_on_stop: OnStop,
}

/// See [`Limits::listener_on_stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStop {
    /// `shutdown(SHUT_RD)` on the listening socket: Linux takes it out of the LISTEN state at
    /// once (new connects are refused, or go to the other `SO_REUSEPORT` sockets) and wakes the
    /// accept thread.
    #[default]
    ShutdownSocket,
    /// Leave the socket listening, for a socket that outlives the process (systemd socket
    /// activation): the kernel keeps queueing connections for the next process. The accept
    /// thread waits in `accept()` at most [`ACCEPT_POLL`] at a time (`SO_RCVTIMEO`, set by
    /// `from_listener`) and stops within that; a connection it accepted meanwhile is served
    /// (with `Connection: close`, as the server is draining), not dropped.
    KeepListening,
}

/// How long the accept thread blocks in one `accept()` under [`OnStop::KeepListening`].
pub const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// See [`Limits::error_body`]: status code in, extra headers and body out. Called on the
/// connection thread, before the response is written; a closure, so that it can also count
/// the refusal.
#[derive(Clone)]
pub struct ErrorBody(Arc<dyn Fn(u16) -> ErrorParts + Send + Sync>);

/// The extra headers and the body of an error response.
pub type ErrorParts = (Vec<crate::Header>, Vec<u8>);

impl ErrorBody {
    /// Wraps a renderer.
    pub fn new(render: impl Fn(u16) -> ErrorParts + Send + Sync + 'static) -> ErrorBody {
        ErrorBody(Arc::new(render))
    }

    /// The headers and body for `status`.
    pub fn render(&self, status: u16) -> ErrorParts {
        (self.0)(status)
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
