//! Connections: the accept loop, one thread per open connection, per-connection deadlines,
//! the hand-off of a connection to the thread answering a request and back, and the
//! server-wide state used by graceful shutdown.
//!
//! A connection thread reads one request head, builds a [`Request`] that owns the connection's
//! I/O state ([`ConnIo`]) and dispatches it (calls the handler, or queues it for `recv()`). The
//! connection thread then sleeps until the `Request` is finished (responded to, turned into a
//! writer or upgraded stream that was dropped, or dropped) — at that point the `ConnIo` is put
//! back into the connection's slot, which wakes the connection thread exactly once. It then
//! drains what is left of the request body (bounded) and reads the next request, or closes.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::body::{Body, BodyLimits};
use crate::connection::{Connection, Listener};
use crate::head::{analyse, read_head, HeadError};
use crate::response::ConnHeader;
use crate::{HTTPVersion, Limits, Request, Response, StatusCode};

/// Locks a mutex, ignoring poisoning (the protected data stays consistent: every critical
/// section here is a handful of non-panicking operations).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

fn wait_timeout<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>, d: Duration) -> MutexGuard<'a, T> {
    match cv.wait_timeout(g, d) {
        Ok((g, _)) => g,
        Err(e) => e.into_inner().0,
    }
}

/// Connection states, for closing idle connections when draining.
const BUSY: u8 = 0;
const IDLE: u8 = 1;
const CLOSING: u8 = 2;

/// How long a connection closed after an error keeps reading (and discarding) what the client
/// still sends, so that the client reads our response instead of a reset.
const LINGER_MAX: Duration = Duration::from_secs(2);

/// A read timeout already set on the socket is kept when it overshoots the deadline by less.
const TIMEOUT_SLACK: Duration = Duration::from_millis(20);

/// Response bytes are gathered up to this size before a `write()`.
const OUT_CAP: usize = 16 * 1024;

/// Size of the per-connection read buffer.
const READ_BUF: usize = 8 * 1024;

/// State shared by the accept thread, the connection threads and the control handles.
pub(crate) struct ServerShared {
    pub(crate) limits: Limits,
    pub(crate) draining: AtomicBool,
    stopped: AtomicBool,
    open: AtomicUsize,
    table: Mutex<Table>,
    table_cv: Condvar,
    listener: Mutex<Option<Arc<Listener>>>,
}

struct Table {
    next_id: u64,
    conns: HashMap<u64, Arc<ConnShared>>,
}

impl ServerShared {
    pub(crate) fn new(limits: Limits, listener: Arc<Listener>) -> ServerShared {
        ServerShared {
            limits,
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            table: Mutex::new(Table {
                next_id: 0,
                conns: HashMap::new(),
            }),
            table_cv: Condvar::new(),
            listener: Mutex::new(Some(listener)),
        }
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(SeqCst)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    pub(crate) fn stop_accepting(&self) {
        self.stopped.store(true, SeqCst);
        let listener = lock(&self.listener).take();
        // Under KeepListening the socket stays in LISTEN and the accept thread notices
        // `stopped` within ACCEPT_POLL.
        let shut_down = self.limits.listener_on_stop == crate::OnStop::ShutdownSocket;
        if let Some(l) = listener.filter(|_| shut_down) {
            if let Err(e) = l.stop_listening() {
                log::debug!("shutdown of the listening socket failed: {}", e);
            }
        }
        // Wake the accept thread if it waits for a free connection slot.
        let _t = lock(&self.table);
        self.table_cv.notify_all();
    }

    fn snapshot(&self) -> Vec<Arc<ConnShared>> {
        lock(&self.table).conns.values().cloned().collect()
    }

    pub(crate) fn start_draining(&self) {
        // Order matters (see `serve`): publish the flag, then look at the states.
        self.draining.store(true, SeqCst);
        for c in self.snapshot() {
            if c.state
                .compare_exchange(IDLE, CLOSING, SeqCst, SeqCst)
                .is_ok()
            {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
        }
    }

    pub(crate) fn force_close(&self) {
        for c in self.snapshot() {
            c.state.store(CLOSING, SeqCst);
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn wait_idle(&self, deadline: Instant) -> bool {
        let mut t = lock(&self.table);
        while !t.conns.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            t = wait_timeout(&self.table_cv, t, deadline - now);
        }
        true
    }
}

/// Per-connection state shared with the control handles and the thread answering a request.
pub(crate) struct ConnShared {
    pub(crate) stream: Connection,
    state: AtomicU8,
    slot: Mutex<Option<Box<ConnIo>>>,
    cv: Condvar,
    pub(crate) server: Arc<ServerShared>,
}

impl ConnShared {
    fn wait_return(&self) -> Box<ConnIo> {
        let mut g = lock(&self.slot);
        loop {
            if let Some(io) = g.take() {
                return io;
            }
            g = wait(&self.cv, g);
        }
    }
}

/// Hands a connection back to its connection thread (one wake-up, none if the request was
/// answered on the connection thread itself).
pub(crate) fn give_back(io: Box<ConnIo>) {
    let shared = io.shared().clone();
    *lock(&shared.slot) = Some(io);
    shared.cv.notify_one();
}

/// Reads from the socket with a deadline, translating an expired `SO_RCVTIMEO` (reported as
/// `WouldBlock` on Linux) into `ErrorKind::TimedOut`. The socket option is only changed when the
/// value already set would overshoot the deadline.
pub(crate) struct SockReader {
    shared: Arc<ConnShared>,
    deadline: Instant,
    timeout_set: Option<Duration>,
}

impl Read for SockReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(io::Error::new(ErrorKind::TimedOut, "read deadline passed"));
            }
            if self
                .timeout_set
                .is_none_or(|t| t > remaining + TIMEOUT_SLACK)
            {
                let t = remaining.max(Duration::from_millis(1));
                self.shared.stream.set_read_timeout(Some(t))?;
                self.timeout_set = Some(t);
            }
            match (&self.shared.stream).read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    // Set the exact remaining time on the next round.
                    self.timeout_set = None;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Writes to the socket; an expired `SO_SNDTIMEO` becomes `ErrorKind::TimedOut`.
pub(crate) fn write_sock(stream: &Connection, data: &[u8]) -> io::Result<usize> {
    let mut s = stream;
    match s.write(data) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Err(io::Error::new(
            ErrorKind::TimedOut,
            "write timed out (client not reading)",
        )),
        r => r,
    }
}

fn write_all_sock(stream: &Connection, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match write_sock(stream, data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Buffers response bytes and writes them to the socket in large pieces.
pub(crate) struct ConnWriter<'a> {
    stream: &'a Connection,
    buf: &'a mut Vec<u8>,
}

impl ConnWriter<'_> {
    fn flush_buf(&mut self) -> io::Result<()> {
        let r = write_all_sock(self.stream, self.buf);
        self.buf.clear();
        r
    }
}

impl Write for ConnWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > OUT_CAP {
            self.flush_buf()?;
            if data.len() >= OUT_CAP {
                return write_sock(self.stream, data);
            }
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

/// The I/O state of a connection, owned by the connection thread between requests and by the
/// [`Request`] while it is being answered.
pub(crate) struct ConnIo {
    reader: BufReader<SockReader>,
    /// Framing state of the current request body.
    pub(crate) body: Body,
    body_started: bool,
    /// The connection closes after the current response.
    pub(crate) close_after: bool,
    line: Vec<u8>,
    out: Vec<u8>,
}

impl ConnIo {
    fn new(shared: Arc<ConnShared>) -> ConnIo {
        ConnIo {
            reader: BufReader::with_capacity(
                READ_BUF,
                SockReader {
                    shared,
                    deadline: Instant::now(),
                    timeout_set: None,
                },
            ),
            body: Body::Done,
            body_started: false,
            close_after: false,
            line: Vec::new(),
            out: Vec::new(),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<ConnShared> {
        &self.reader.get_ref().shared
    }

    pub(crate) fn stream(&self) -> &Connection {
        &self.reader.get_ref().shared.stream
    }

    fn limits(&self) -> &Limits {
        &self.reader.get_ref().shared.server.limits
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.shared().server.is_draining()
    }

    fn set_deadline(&mut self, deadline: Instant) {
        self.reader.get_mut().deadline = deadline;
    }

    /// Starts the body deadline (once per request).
    pub(crate) fn start_body(&mut self) {
        if !self.body_started {
            self.body_started = true;
            let d = Instant::now() + self.limits().read_timeout;
            self.set_deadline(d);
        }
    }

    /// For upgraded connections: each read may wait up to the idle timeout.
    pub(crate) fn rolling_deadline(&mut self) {
        let d = Instant::now() + self.limits().idle_timeout;
        self.set_deadline(d);
    }

    pub(crate) fn reader_mut(&mut self) -> &mut BufReader<SockReader> {
        &mut self.reader
    }

    pub(crate) fn writer(&mut self) -> ConnWriter<'_> {
        ConnWriter {
            stream: &self.reader.get_ref().shared.stream,
            buf: &mut self.out,
        }
    }

    /// Whether what is left of the body can be drained after the response without closing.
    pub(crate) fn body_drainable(&self) -> bool {
        match self.body.remaining() {
            Some(n) => n <= self.limits().max_drain_bytes,
            None => false,
        }
    }

    fn body_limits(&self) -> BodyLimits {
        let l = self.limits();
        BodyLimits {
            max_body: l.max_body_bytes,
            max_trailer_bytes: l.max_header_bytes,
            max_trailers: l.max_headers,
        }
    }

    /// Reads and discards the rest of the body: at most `max_drain_bytes`, within the body
    /// deadline. Returns whether the connection can go on.
    fn drain(&mut self) -> bool {
        if self.body.is_done() {
            return true;
        }
        if !self.body_drainable() {
            return false;
        }
        self.start_body();
        let mut budget = self.limits().max_drain_bytes;
        let mut scratch = [0u8; 4096];
        loop {
            match self.read(&mut scratch) {
                Ok(0) => return true,
                Ok(n) => {
                    budget = budget.saturating_sub(n as u64);
                    if budget == 0 && !self.body.is_done() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    }
}

/// `ConnIo` reads the body of the current request.
impl Read for ConnIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.start_body();
        let lim = self.body_limits();
        let r = self.body.read(&mut self.reader, buf, &lim, &mut self.line);
        if r.is_err() {
            self.close_after = true;
        }
        r
    }
}

/// Where parsed requests go.
#[derive(Clone)]
pub(crate) enum Dispatcher {
    Queue(Arc<Queue>),
    Handler(Arc<dyn Fn(Request) + Send + Sync>),
}

impl Dispatcher {
    fn dispatch(&self, rq: Request) {
        match self {
            Dispatcher::Handler(h) => {
                if catch_unwind(AssertUnwindSafe(|| h(rq))).is_err() {
                    log::error!("request handler panicked");
                }
            }
            Dispatcher::Queue(q) => {
                if let Some(rq) = q.push(rq) {
                    let _ = rq.respond(Response::empty(503).with_connection_close());
                }
            }
        }
    }
}

/// The request queue of queue mode (`Server::recv`).
pub(crate) struct Queue {
    inner: Mutex<QueueInner>,
    cv: Condvar,
}

struct QueueInner {
    items: VecDeque<Request>,
    unblocked: bool,
    closed: bool,
}

impl Queue {
    pub(crate) fn new() -> Queue {
        Queue {
            inner: Mutex::new(QueueInner {
                items: VecDeque::new(),
                unblocked: false,
                closed: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// Queues a request; gives it back if the queue is closed.
    fn push(&self, rq: Request) -> Option<Request> {
        let mut g = lock(&self.inner);
        if g.closed {
            return Some(rq);
        }
        g.items.push_back(rq);
        drop(g);
        self.cv.notify_one();
        None
    }

    /// Waits for a request until `deadline` (forever if `None`). `Err` once unblocked and empty.
    pub(crate) fn pop(&self, deadline: Option<Instant>) -> Result<Option<Request>, ()> {
        let mut g = lock(&self.inner);
        loop {
            if let Some(rq) = g.items.pop_front() {
                return Ok(Some(rq));
            }
            if g.unblocked {
                return Err(());
            }
            match deadline {
                None => g = wait(&self.cv, g),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    g = wait_timeout(&self.cv, g, d - now);
                }
            }
        }
    }

    pub(crate) fn try_pop(&self) -> Option<Request> {
        lock(&self.inner).items.pop_front()
    }

    pub(crate) fn unblock(&self) {
        lock(&self.inner).unblocked = true;
        self.cv.notify_all();
    }

    /// Refuses further requests and returns those still queued.
    pub(crate) fn close(&self) -> Vec<Request> {
        let mut g = lock(&self.inner);
        g.closed = true;
        g.unblocked = true;
        let rest = g.items.drain(..).collect();
        drop(g);
        self.cv.notify_all();
        rest
    }
}

/// Removes a connection from the table when its thread ends (or could not be spawned).
struct ConnGuard {
    server: Arc<ServerShared>,
    id: u64,
    shared: Option<Arc<ConnShared>>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(s) = self.shared.take() {
            let _ = s.stream.shutdown(Shutdown::Both);
        }
        let removed = {
            let mut t = lock(&self.server.table);
            let removed = t.conns.remove(&self.id);
            self.server.open.store(t.conns.len(), SeqCst);
            removed
        };
        // Last reference: this closes the socket before waiters are told.
        drop(removed);
        let _t = lock(&self.server.table);
        self.server.table_cv.notify_all();
    }
}

/// The accept loop: survives every error, and stops calling `accept()` while
/// `max_connections` connections are open.
pub(crate) fn accept_loop(
    listener: Arc<Listener>,
    server: Arc<ServerShared>,
    dispatch: Dispatcher,
) {
    let mut backoff = Duration::ZERO;
    let mut last_log: Option<Instant> = None;
    log::debug!("accept thread running");
    loop {
        {
            let mut t = lock(&server.table);
            while t.conns.len() >= server.limits.max_connections && !server.stopped.load(SeqCst) {
                t = wait(&server.table_cv, t);
            }
        }
        if server.stopped.load(SeqCst) {
            break;
        }
        match listener.accept() {
            Ok((conn, addr)) => {
                backoff = Duration::ZERO;
                if server.stopped.load(SeqCst) {
                    if server.limits.listener_on_stop == crate::OnStop::KeepListening {
                        // Taken off a socket that keeps listening: serve it (draining).
                        spawn_connection(&server, conn, addr, &dispatch);
                    }
                    break;
                }
                spawn_connection(&server, conn, addr, &dispatch);
            }
            Err(e) => {
                if server.stopped.load(SeqCst) {
                    break;
                }
                match e.kind() {
                    ErrorKind::Interrupted
                    | ErrorKind::WouldBlock
                    | ErrorKind::TimedOut
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::ConnectionReset => continue,
                    _ => {
                        // EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: back off and retry.
                        backoff = (backoff * 2)
                            .clamp(Duration::from_millis(10), Duration::from_millis(100));
                        if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                            log::error!("accept() failed: {}; retrying in {:?}", e, backoff);
                            last_log = Some(Instant::now());
                        }
                        thread::sleep(backoff);
                    }
                }
            }
        }
    }
    log::debug!("accept thread stopped");
}

fn spawn_connection(
    server: &Arc<ServerShared>,
    conn: Connection,
    remote: Option<SocketAddr>,
    dispatch: &Dispatcher,
) {
    let lim = &server.limits;
    if let Err(e) = conn.set_write_timeout(Some(lim.write_timeout)) {
        log::debug!(
            "closing a new connection: cannot set its write timeout: {}",
            e
        );
        return;
    }
    let _ = conn.set_nodelay();
    let shared = Arc::new(ConnShared {
        stream: conn,
        state: AtomicU8::new(BUSY),
        slot: Mutex::new(None),
        cv: Condvar::new(),
        server: server.clone(),
    });
    let id = {
        let mut t = lock(&server.table);
        let id = t.next_id;
        t.next_id += 1;
        t.conns.insert(id, shared.clone());
        server.open.store(t.conns.len(), SeqCst);
        id
    };
    let guard = ConnGuard {
        server: server.clone(),
        id,
        shared: Some(shared),
    };
    let dispatch = dispatch.clone();
    let spawned = thread::Builder::new()
        .name("http-conn".to_owned())
        .stack_size(lim.thread_stack_size)
        .spawn(move || {
            let guard = guard;
            if let Some(shared) = guard.shared.clone() {
                serve(shared, remote, &dispatch);
            }
        });
    // On failure the closure (and the guard in it) is dropped: the connection is closed and
    // its slot released.
    if let Err(e) = spawned {
        log::error!(
            "cannot spawn a connection thread, closing the connection: {}",
            e
        );
    }
}

/// The connection thread.
fn serve(shared: Arc<ConnShared>, remote: Option<SocketAddr>, dispatch: &Dispatcher) {
    let server = shared.server.clone();
    let lim = &server.limits;
    let mut io = Box::new(ConnIo::new(shared.clone()));
    loop {
        if io.reader.buffer().is_empty() {
            // Idle: wait for the first byte of the next request.
            shared.state.store(IDLE, SeqCst);
            if server.draining.load(SeqCst) {
                return;
            }
            if io.out.capacity() > 4096 {
                io.out = Vec::new();
            }
            io.set_deadline(Instant::now() + lim.idle_timeout);
            match io.reader.fill_buf() {
                Ok(b) if !b.is_empty() => {}
                _ => return, // EOF, idle timeout, reset, or closed by start_draining
            }
            if shared
                .state
                .compare_exchange(IDLE, BUSY, SeqCst, SeqCst)
                .is_err()
            {
                return;
            }
        }

        io.set_deadline(Instant::now() + lim.read_timeout);
        let head = match read_head(&mut io.reader, lim, &mut io.line) {
            Ok(h) => h,
            Err(HeadError::Closed) => return,
            Err(HeadError::TimedOut) => {
                send_error(&mut io, 408);
                close(&mut io, false);
                return;
            }
            Err(HeadError::Reject(status, why)) => {
                log::debug!(
                    "rejecting request from {:?} with {}: {}",
                    remote,
                    status,
                    why
                );
                send_error(&mut io, status);
                close(&mut io, true);
                return;
            }
        };
        let plan = match analyse(&head, lim) {
            Ok(p) => p,
            Err((status, why)) => {
                log::debug!(
                    "rejecting request from {:?} with {}: {}",
                    remote,
                    status,
                    why
                );
                send_error(&mut io, status);
                close(&mut io, true);
                return;
            }
        };
        io.body_started = false;
        dispatch.dispatch(Request::from_conn(io, head, plan, remote));
        io = shared.wait_return();
        if io.close_after || !io.drain() {
            // Linger only if the client may still be sending (unread body or pipelined bytes):
            // a client that sent a complete request and keeps its socket open after our FIN
            // must not hold the connection thread.
            let linger = !io.body.is_done() || !io.reader.buffer().is_empty();
            close(&mut io, linger);
            return;
        }
    }
}

/// Answers a request that could not be read, with `Connection: close`.
fn send_error(io: &mut ConnIo, status: u16) {
    let (headers, body) = match &io.limits().error_body {
        Some(error_body) => error_body.render(status),
        None => (Vec::new(), Vec::new()),
    };
    let len = body.len();
    let response = Response::new(
        StatusCode(status),
        headers,
        std::io::Cursor::new(body),
        Some(len),
        None,
    );
    let mut w = io.writer();
    let _ = response
        .raw_print_conn(
            &mut w,
            HTTPVersion(1, 1),
            &[],
            false,
            None,
            ConnHeader::Close,
        )
        .and_then(|()| w.flush());
}

/// Closes a connection after a response: FIN first, then (if `linger`) a short, bounded read of
/// whatever the client still sends, so that closing with unread data does not reset the
/// connection before the client has read the response.
fn close(io: &mut ConnIo, linger: bool) {
    let _ = io.stream().shutdown(Shutdown::Write);
    if linger {
        let deadline = Instant::now() + io.limits().read_timeout.min(LINGER_MAX);
        let mut budget = io.limits().max_drain_bytes;
        io.set_deadline(deadline);
        while budget > 0 {
            let n = match io.reader.fill_buf() {
                Ok(b) if !b.is_empty() => b.len(),
                _ => break,
            };
            io.reader.consume(n);
            budget = budget.saturating_sub(n as u64);
        }
    }
}
