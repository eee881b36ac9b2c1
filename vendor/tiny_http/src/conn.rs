//! Connections: one I/O thread owns every socket of the listeners it serves.
//!
//! [`start`] takes one listener or several (the service's public and admin listeners share
//! one thread): each keeps its own limits, dispatch, connection cap and shutdown controls
//! ([`ServerShared`]); the thread, its `epoll` set, its read buffer, its waker and its
//! hand-back queue ([`IoShared`]) are common.
//!
//! The I/O thread waits on readiness (`epoll` through `mio`, edge-triggered) and drives each
//! connection through a small state machine:
//!
//! ```text
//!  accept ─> Idle ─first byte─> Head ─head complete─> Body ─body complete─> InFlight
//!             ^                  │ refused: 4xx/5xx       │ over budget: 503   │ respond() on any
//!             │                  v                        v                    v thread: bytes
//!             └──── keep-alive ─ Writing <────────────────────────────── (channel + waker)
//!                                  │ close after
//!                                  v
//!                             Lingering (FIN sent, discard what the client still sends) ─> closed
//! ```
//!
//! Nothing on this thread blocks: sockets are non-blocking, heads and bodies are parsed from
//! whatever has arrived, every state except `InFlight` has a deadline. A complete [`Request`]
//! (head and whole body, held in memory within the [`BodyBudget`](crate::BodyBudget)) is
//! handed to the dispatcher (a handler called on this thread, or the `recv()` queue). Whoever
//! answers it serialises the response into bytes and hands them back through
//! [`ServerShared::finish`] (a `Mutex<Vec>` plus a `mio::Waker`); this thread writes them as
//! the socket takes them, within one deadline for the whole response. While a request is in
//! flight its connection is still watched: a client that closes is noticed and the request
//! marked ([`Request::client_gone`](crate::Request::client_gone)).
//!
//! Idle connections cost a slot in a vector and a registration in the kernel, no thread and
//! no buffer. Deadlines are fields of the connections, swept at the earliest deadline known
//! (at most every [`SWEEP_GRANULARITY`]), so a request does not touch a timer structure.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::body::{Body, BodyLimits, Failure};
use crate::common::ShortText;
use crate::connection::{Connection, Listener};
use crate::head::{analyse, read_head, Head, HeadError, HeadScratch};
use crate::limits::Reservation;
use crate::response::ConnHeader;
use crate::{HTTPVersion, IoHooks, Limits, Request, Response, StatusCode};

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

/// How long a connection closed after an error keeps reading (and discarding) what the client
/// still sends, so that the client reads our response instead of a reset.
const LINGER_MAX: Duration = Duration::from_secs(2);

/// Deadlines are checked at most this often (the precision of every timeout).
const SWEEP_GRANULARITY: Duration = Duration::from_millis(10);

/// Bytes read from a socket at once (one buffer for the whole I/O thread).
const SCRATCH: usize = 64 * 1024;

/// Connections accepted in one round before the other connections get a turn.
const ACCEPT_BATCH: usize = 256;

/// The most of a declared body length allocated before the body arrives.
const BODY_PREALLOC_MAX: usize = 64 * 1024;

/// At the connection cap, an idle connection may be closed to let a waiting one in once it has
/// been idle this long (`IoThread::evict_idle`): long enough for a new connection's request,
/// already in its socket, to be read first.
const EVICT_MIN_IDLE: Duration = Duration::from_secs(1);

/// How long `stop_accepting` waits for the I/O thread to drain the accept queue.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// At most this many connections are taken from the accept queue when the listener closes.
const FINAL_ACCEPT_MAX: usize = 65536;

const WAKE: Token = Token(usize::MAX);
/// The token of the first listener; listener `i` has `LISTEN_FIRST - i` (connections count up
/// from 0).
const LISTEN_FIRST: usize = usize::MAX - 1;

/// Response bytes handed to the I/O thread: the whole response, or one part of a large one.
pub(crate) struct Finished {
    token: usize,
    id: u64,
    bytes: Vec<u8>,
    /// The last part: after it the connection goes on, closes or is handed over.
    last: bool,
    close: bool,
    /// Hand the socket (blocking again) over after the bytes (`Request::upgrade`).
    detach: Option<SyncSender<Connection>>,
}

/// A response body larger than this is handed over in parts of this size, each once the
/// previous one is written: memory stays bounded and a client that does not read stops the
/// response (the thread producing it waits, within the write deadline, only for responses this
/// large).
pub(crate) const RESPONSE_PART: usize = 256 * 1024;

/// What the I/O thread and the thread answering a request share about the request.
pub(crate) struct ReqShared {
    gone: AtomicBool,
    drained: Mutex<bool>,
    cv: Condvar,
}

impl ReqShared {
    fn new(gone: bool) -> ReqShared {
        ReqShared {
            gone: AtomicBool::new(gone),
            drained: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    fn mark_gone(&self) {
        self.gone.store(true, SeqCst);
        let _g = lock(&self.drained);
        self.cv.notify_all();
    }

    /// Made ready for the connection's next request. Only once the last one is done: no one
    /// else looks at it any more (its answer was the last thing its worker did with it).
    fn reset(&self, gone: bool) {
        self.gone.store(gone, SeqCst);
        *lock(&self.drained) = false;
    }

    fn mark_drained(&self) {
        *lock(&self.drained) = true;
        self.cv.notify_all();
    }

    /// Waits until the I/O thread has written the previous part.
    fn wait_drained(&self, deadline: Instant) -> io::Result<()> {
        let mut g = lock(&self.drained);
        loop {
            if self.gone.load(SeqCst) {
                return Err(io::Error::new(ErrorKind::BrokenPipe, "the client is gone"));
            }
            if *g {
                *g = false;
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "write deadline passed (client not reading)",
                ));
            }
            g = wait_timeout(&self.cv, g, deadline - now);
        }
    }
}

/// What the I/O thread shares with everyone who hands it work, whichever listener it is for.
pub(crate) struct IoShared {
    io_thread: OnceLock<thread::ThreadId>,
    waker: Waker,
    finished: Mutex<Vec<Finished>>,
}

/// State of one listener shared by the I/O thread, the threads answering its requests and the
/// control handles.
pub(crate) struct ServerShared {
    pub(crate) limits: Limits,
    draining: AtomicBool,
    stopped: AtomicBool,
    forced: AtomicBool,
    open: AtomicUsize,
    idle_lock: Mutex<()>,
    idle_cv: Condvar,
    listener: Mutex<Option<Arc<Listener>>>,
    /// Set by the I/O thread once the listener is shut down (after draining its queue).
    listener_closed: Mutex<bool>,
    listener_cv: Condvar,
    io: Arc<IoShared>,
}

impl ServerShared {
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(SeqCst)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    fn wake(&self) {
        if let Err(e) = self.io.waker.wake() {
            log::error!("cannot wake the HTTP I/O thread: {}", e);
        }
    }

    /// Stops accepting. The I/O thread first accepts what is already in the kernel's accept
    /// queue (closing a listener resets those connections), then shuts the listener down;
    /// this waits for that (at most [`STOP_WAIT`]; then it shuts the listener down itself).
    pub(crate) fn stop_accepting(&self) {
        self.stopped.store(true, SeqCst);
        if !self.on_io_thread() {
            self.wake();
            let deadline = Instant::now() + STOP_WAIT;
            let mut closed = lock(&self.listener_closed);
            while !*closed {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                closed = wait_timeout(&self.listener_cv, closed, deadline - now);
            }
        }
        self.close_listener();
    }

    /// Shuts the listening socket down (idempotent); under [`crate::OnStop::KeepListening`]
    /// only lets go of it, listening.
    fn close_listener(&self) {
        let listener = lock(&self.listener).take();
        if let Some(l) = listener {
            if self.limits.listener_on_stop == crate::OnStop::ShutdownSocket {
                if let Err(e) = l.stop_listening() {
                    log::debug!("shutdown of the listening socket failed: {}", e);
                }
            }
        }
        *lock(&self.listener_closed) = true;
        self.listener_cv.notify_all();
        self.wake();
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, SeqCst);
        self.wake();
    }

    pub(crate) fn force_close(&self) {
        self.forced.store(true, SeqCst);
        self.wake();
    }

    pub(crate) fn wait_idle(&self, deadline: Instant) -> bool {
        let mut g = lock(&self.idle_lock);
        while self.open.load(SeqCst) > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = wait_timeout(&self.idle_cv, g, deadline - now);
        }
        true
    }

    fn conn_opened(&self) {
        self.open.fetch_add(1, SeqCst);
    }

    pub(crate) fn conn_closed(&self) {
        if self.open.fetch_sub(1, SeqCst) == 1 {
            let _g = lock(&self.idle_lock);
            self.idle_cv.notify_all();
        }
    }

    /// Hands a finished request to the I/O thread (one wake-up per batch).
    fn finish(&self, f: Finished) {
        let was_empty = {
            let mut q = lock(&self.io.finished);
            q.push(f);
            q.len() == 1
        };
        // An answer given on the I/O thread itself (an inline response) is taken from
        // `finished` later in the same turn of its loop: waking it would cost a system call
        // and an extra turn per response.
        if was_empty && !self.on_io_thread() {
            self.wake();
        }
    }

    fn on_io_thread(&self) -> bool {
        self.io.io_thread.get() == Some(&thread::current().id())
    }
}

/// The connection side of a [`Request`]: its body (read by the I/O thread), whether its client
/// is still there, and the way back to the I/O thread.
pub(crate) struct ReqIo {
    server: Arc<ServerShared>,
    token: usize,
    id: u64,
    /// The connection closes after the response.
    pub(crate) close_after: bool,
    body: Vec<u8>,
    pos: usize,
    failure: Option<Failure>,
    /// Held until the request is finished: the body bytes count against the budget until then.
    _reservation: Option<Reservation>,
    shared: Arc<ReqShared>,
    /// The socket, for writing a whole response at once without the I/O thread (see
    /// [`ReqIo::write_now`]); `None` when the I/O thread still has bytes of its own to write
    /// first (an unwritten `100 Continue`).
    stream: Option<Arc<Connection>>,
}

impl ReqIo {
    pub(crate) fn is_draining(&self) -> bool {
        self.server.is_draining()
    }

    pub(crate) fn client_gone(&self) -> bool {
        self.shared.gone.load(SeqCst)
    }

    fn send(
        &self,
        bytes: Vec<u8>,
        last: bool,
        close: bool,
        detach: Option<SyncSender<Connection>>,
    ) {
        self.server.finish(Finished {
            token: self.token,
            id: self.id,
            bytes,
            last,
            close,
            detach,
        });
    }

    /// A writer for the response: parts of [`RESPONSE_PART`] bytes go to the I/O thread as
    /// they fill, each once the previous one is written; [`PartWriter::finish`] sends the rest.
    pub(crate) fn writer(&self, capacity: usize) -> PartWriter<'_> {
        PartWriter {
            io: self,
            buf: crate::scratch::take(capacity.min(RESPONSE_PART)),
            sent: false,
            deadline: Instant::now() + self.server.limits.write_timeout,
        }
    }

    /// Sends the response bytes; the connection closes after them if `close`.
    pub(crate) fn finish(mut self, bytes: Vec<u8>, close: bool) {
        let mut rest = self.write_now(bytes);
        if rest.is_empty() {
            // All written: the buffer serves this thread's next response (see `scratch`).
            crate::scratch::give_back(std::mem::take(&mut rest));
        }
        // Let go of the socket before the I/O thread hears of the end of the request.
        self.stream = None;
        self.send(rest, true, close, None);
    }

    /// Sends the response bytes, then hands the socket over (blocking, no longer served).
    pub(crate) fn detach(mut self, bytes: Vec<u8>) -> (Receiver<Connection>, Arc<ServerShared>) {
        let (to, rx) = std::sync::mpsc::sync_channel(1);
        // The I/O thread takes the socket back whole: no clone may be left.
        self.stream = None;
        self.send(bytes, true, false, Some(to));
        (rx, self.server.clone())
    }

    /// Writes what the socket takes right now, without blocking, and returns the rest for the
    /// I/O thread to write as the socket drains. The answer then reaches the client without
    /// waiting for the I/O thread to be scheduled; a client that does not read costs the worker
    /// one `write` call that returns at once. The two threads never write to one connection at
    /// the same time: the I/O thread writes to a connection only when it is not in flight, and
    /// it learns that this response is done only from the hand-back that follows this call.
    fn write_now(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        let Some(stream) = &self.stream else {
            return bytes;
        };
        let mut written = 0;
        while written < bytes.len() {
            match (&**stream).write(&bytes[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // `WouldBlock`, or a failed socket: the I/O thread finds out and handles it.
                Err(_) => break,
            }
        }
        bytes.drain(..written);
        bytes
    }
}

/// See [`ReqIo::writer`].
pub(crate) struct PartWriter<'a> {
    io: &'a ReqIo,
    buf: Vec<u8>,
    sent: bool,
    deadline: Instant,
}

impl PartWriter<'_> {
    /// Sends what is buffered as the last part (written at once as far as the socket takes
    /// it when it is the whole response).
    pub(crate) fn finish(self, close: bool) {
        let mut rest = if self.sent {
            self.buf
        } else {
            self.io.write_now(self.buf)
        };
        if rest.is_empty() {
            crate::scratch::give_back(std::mem::take(&mut rest));
        }
        self.io.send(rest, true, close, None);
    }

    fn send_part(&mut self) -> io::Result<()> {
        if self.sent {
            self.io.shared.wait_drained(self.deadline)?;
        }
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(RESPONSE_PART));
        self.io.send(part, false, false, None);
        self.sent = true;
        Ok(())
    }
}

impl Write for PartWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() >= RESPONSE_PART {
            self.send_part()?;
        }
        let n = data.len().min(RESPONSE_PART - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `ReqIo` reads the body of the current request (from memory: the I/O thread read it).
impl Read for ReqIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.body[self.pos.min(self.body.len())..];
        if rest.is_empty() {
            // Fully read: give the memory back now (the reservation ends with the request).
            self.body = Vec::new();
            self.pos = 0;
            return match self.failure {
                Some(f) => Err(f.to_error()),
                None => Ok(0),
            };
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
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

/// One listener for [`start`]: its socket, its limits and where its requests go.
pub(crate) struct ListenerSpec {
    pub(crate) listener: Arc<Listener>,
    pub(crate) limits: Limits,
    pub(crate) dispatch: Dispatcher,
}

/// Starts one I/O thread serving every listener of `specs`; returns their shared states in
/// the same order.
pub(crate) fn start(
    specs: Vec<ListenerSpec>,
    hooks: IoHooks,
) -> io::Result<Vec<Arc<ServerShared>>> {
    let poll = Poll::new()?;
    let io = Arc::new(IoShared {
        io_thread: OnceLock::new(),
        waker: Waker::new(poll.registry(), WAKE)?,
        finished: Mutex::new(Vec::new()),
    });
    let mut stack = 0;
    let mut sites = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        poll.registry().register(
            &mut SourceFd(&spec.listener.as_raw_fd()),
            Token(LISTEN_FIRST - i),
            Interest::READABLE,
        )?;
        stack = stack.max(spec.limits.thread_stack_size);
        let server = Arc::new(ServerShared {
            limits: spec.limits,
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            forced: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle_cv: Condvar::new(),
            listener: Mutex::new(Some(spec.listener.clone())),
            listener_closed: Mutex::new(false),
            listener_cv: Condvar::new(),
            io: io.clone(),
        });
        sites.push(Site {
            server,
            listener: Some(spec.listener),
            dispatch: spec.dispatch,
            count: 0,
            accept_ready: true,
            accept_retry: None,
            backoff: Duration::ZERO,
            last_log: None,
            last_evict_log: None,
            drain_seen: false,
        });
    }
    let servers = sites.iter().map(|s| s.server.clone()).collect();
    let thread = IoThread {
        poll,
        io: io.clone(),
        sites,
        hooks,
        conns: Vec::new(),
        free: Vec::new(),
        next_id: 0,
        scratch: vec![0; SCRATCH],
        discarded: 0,
        head_scratch: HeadScratch::default(),
        next_sweep: None,
        last_sweep: Instant::now(),
        spare: Vec::new(),
    };
    thread::Builder::new()
        .name("http-io".to_owned())
        .stack_size(stack)
        .spawn(move || {
            let _ = io.io_thread.set(thread::current().id());
            thread.run()
        })?;
    Ok(servers)
}

/// Where a connection is in its life (see the module doc).
enum State {
    /// Waiting for the first byte of a request (deadline: idle timeout).
    Idle,
    /// Reading a request head (deadline: read timeout from its first byte).
    Head { started: Instant },
    /// Reading a request body (deadline: read timeout from the end of the head).
    Body(Box<PendingBody>),
    /// The request is with the application (no deadline).
    InFlight,
    /// Writing a response (deadline: write timeout for the whole response).
    Writing,
    /// FIN sent after a response that closes the connection; discarding what still arrives.
    Lingering { budget: u64 },
}

/// A request whose head is read and whose body is arriving.
struct PendingBody {
    head: Head,
    body: Body,
    data: Vec<u8>,
    keep_alive: bool,
    content_length: Option<u64>,
    reservation: Reservation,
}

struct Conn {
    id: u64,
    /// Index of its listener in [`IoThread::sites`].
    site: usize,
    /// Shared with the worker answering the in-flight request (see [`ReqIo::write_now`]).
    stream: Arc<Connection>,
    remote: Option<SocketAddr>,
    state: State,
    /// Received, not yet parsed (a partial head, or pipelined bytes).
    inbuf: Vec<u8>,
    /// The socket may have more to read (edge-triggered: cleared on `WouldBlock`).
    readable: bool,
    /// The client sent FIN (or the socket failed).
    eof: bool,
    deadline: Option<Instant>,
    out: Vec<u8>,
    out_pos: usize,
    /// After `out` is written: close (`Some(linger)`) or serve the next request (`None`).
    close_after_write: Option<bool>,
    detach: Option<SyncSender<Connection>>,
    /// What the in-flight request shares with whoever answers it.
    gone: Option<Arc<ReqShared>>,
    /// The last request's, kept for the next one: one allocation per connection, not one
    /// per request (made on one thread and freed on another).
    spare_shared: Option<Arc<ReqShared>>,
    /// More parts of the response are coming.
    more: bool,
    /// The in-flight request's body was not read to its end (the client may still send).
    body_unfinished: bool,
    /// Responses completed on this connection (a draining server closes idle connections
    /// that were served; a new one gets its first request answered).
    served: u32,
    /// When it last became idle (accepted, or its last response written): at the connection
    /// cap, only a connection idle for [`EVICT_MIN_IDLE`] may be closed for a new one.
    idle_since: Instant,
}

/// Result of reading from a socket.
enum ReadResult {
    Data,
    Blocked,
    Full,
    Closed,
}

/// One listener served by the I/O thread, and where accepting from it stands.
struct Site {
    server: Arc<ServerShared>,
    /// `None` once it stopped accepting.
    listener: Option<Arc<Listener>>,
    dispatch: Dispatcher,
    /// Its open connections (capped by its `max_connections`).
    count: usize,
    accept_ready: bool,
    accept_retry: Option<Instant>,
    backoff: Duration,
    last_log: Option<Instant>,
    /// When closing idle connections at the cap was last logged (once per 10 s at most).
    last_evict_log: Option<Instant>,
    drain_seen: bool,
}

impl Site {
    /// Ready to accept now, without waiting for an event.
    fn can_accept_now(&self) -> bool {
        self.accept_ready
            && self.listener.is_some()
            && self.accept_retry.is_none()
            && self.count < self.server.limits.max_connections
    }

    /// Connections wait to be accepted, and the cap is reached (see `IoThread::evict_idle`).
    fn waiting_at_cap(&self) -> bool {
        self.accept_ready
            && self.listener.is_some()
            && self.accept_retry.is_none()
            && self.count >= self.server.limits.max_connections
            && !self.server.stopped.load(SeqCst)
    }

    /// Stopped, and every connection closed: nothing left to serve.
    fn finished(&self) -> bool {
        self.listener.is_none() && self.count == 0 && self.server.stopped.load(SeqCst)
    }
}

struct IoThread {
    poll: Poll,
    io: Arc<IoShared>,
    sites: Vec<Site>,
    hooks: IoHooks,
    /// Boxed: `drive` moves a connection out of its slot and back for every event, and a
    /// pointer moves for free where the ~300-byte `Conn` would be copied twice.
    conns: Vec<Option<Box<Conn>>>,
    free: Vec<usize>,
    next_id: u64,
    scratch: Vec<u8>,
    /// Bytes thrown away by the last `discard`.
    discarded: usize,
    head_scratch: HeadScratch,
    /// No deadline of any connection is earlier than this.
    next_sweep: Option<Instant>,
    last_sweep: Instant,
    /// Swapped with [`IoShared::finished`] to take its batch: the queue keeps a buffer with
    /// room, so handing a response back does not allocate.
    spare: Vec<Finished>,
}

impl IoThread {
    fn lim(&self, site: usize) -> &Limits {
        &self.sites[site].server.limits
    }

    /// Head bytes held per connection: enough for the limits to be detected by the parser.
    fn head_cap(&self, site: usize) -> usize {
        let l = self.lim(site);
        l.max_request_line + l.max_header_bytes + 64
    }

    /// The listener a token stands for, if it is a listener's.
    fn listener_site(&self, token: usize) -> Option<usize> {
        let i = LISTEN_FIRST.checked_sub(token)?;
        (i < self.sites.len()).then_some(i)
    }

    fn run(mut self) {
        if let Some(hook) = &self.hooks.on_start {
            hook();
        }
        log::debug!("HTTP I/O thread running");
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Some(hook) = &self.hooks.before_wait {
                hook();
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!("epoll_wait failed: {}", e);
                    thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for ev in events.iter() {
                let Token(t) = ev.token();
                if t == WAKE.0 {
                    continue;
                }
                if let Some(i) = self.listener_site(t) {
                    self.sites[i].accept_ready = true;
                    continue;
                }
                if let Some(Some(c)) = self.conns.get_mut(t) {
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        c.readable = true;
                    }
                }
                self.drive(t);
            }
            self.control();
            self.take_finished();
            self.accept();
            let now = Instant::now();
            if self.next_sweep.is_some_and(|t| t <= now) {
                self.sweep(now);
            }
            if self.sites.iter().all(Site::finished) {
                break;
            }
        }
        log::debug!("HTTP I/O thread stopped");
        if let Some(hook) = &self.hooks.before_wait {
            hook();
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        if self.sites.iter().any(Site::can_accept_now) {
            return Some(Duration::ZERO);
        }
        if self.sites.iter().any(Site::waiting_at_cap) {
            // A connection may become idle long enough to be closed for a waiting one.
            return Some(EVICT_MIN_IDLE / 10);
        }
        if !lock(&self.io.finished).is_empty() {
            return Some(Duration::ZERO);
        }
        let sweep = self
            .next_sweep
            .map(|t| t.max(self.last_sweep + SWEEP_GRANULARITY));
        let retry = self.sites.iter().filter_map(|s| s.accept_retry).min();
        let at = match (sweep, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        at.map(|t| t.saturating_duration_since(now))
    }

    /// Applies `stop_accepting`, `start_draining` and `force_close` of every listener.
    fn control(&mut self) {
        for i in 0..self.sites.len() {
            self.control_site(i);
        }
    }

    fn control_site(&mut self, i: usize) {
        let (stopped, forced, draining) = {
            let s = &self.sites[i].server;
            (
                s.stopped.load(SeqCst),
                s.forced.load(SeqCst),
                s.draining.load(SeqCst),
            )
        };
        if stopped {
            if let Some(l) = self.sites[i].listener.take() {
                // Take in what already completed its handshake (the connections in the accept
                // queue would be reset when the listener closes), then close it. A socket that
                // keeps listening keeps its queue for the next process.
                let server = self.sites[i].server.clone();
                let keep_listening = server.limits.listener_on_stop == crate::OnStop::KeepListening;
                let mut taken = 0;
                while !keep_listening && taken < FINAL_ACCEPT_MAX {
                    match l.accept() {
                        Ok((conn, addr)) => {
                            taken += 1;
                            self.add_conn(i, conn, addr);
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
                            ) => {}
                        Err(_) => break,
                    }
                }
                if taken > 0 {
                    log::debug!(
                        "took {} queued connections in before closing the listener",
                        taken
                    );
                }
                server.close_listener();
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&l.as_raw_fd()));
                // Dropping our reference closes the socket once `stop_accepting` let go too.
            }
        }
        if forced {
            for t in 0..self.conns.len() {
                if !matches!(&self.conns[t], Some(c) if c.site == i) {
                    continue;
                }
                if let Some(c) = self.conns[t].take() {
                    let _ = c.stream.shutdown(Shutdown::Both);
                    self.drop_conn(t, c);
                }
            }
        }
        if draining && !self.sites[i].drain_seen {
            self.sites[i].drain_seen = true;
            for t in 0..self.conns.len() {
                let idle = matches!(&self.conns[t],
                    Some(c) if c.site == i && matches!(c.state, State::Idle) && c.inbuf.is_empty());
                if idle {
                    self.drive(t);
                }
            }
        }
    }

    fn take_finished(&mut self) {
        loop {
            let mut batch = std::mem::take(&mut self.spare);
            std::mem::swap(&mut *lock(&self.io.finished), &mut batch);
            if batch.is_empty() {
                self.spare = batch;
                return;
            }
            for f in batch.drain(..) {
                let t = f.token;
                let Some(Some(c)) = self.conns.get_mut(t) else {
                    continue;
                };
                if c.id != f.id {
                    continue;
                }
                let first = matches!(c.state, State::InFlight);
                let expected = first || (matches!(c.state, State::Writing) && c.more);
                if !expected {
                    continue;
                }
                if f.last {
                    c.more = false;
                    c.detach = f.detach;
                    let linger = c.body_unfinished || !c.inbuf.is_empty();
                    let close = (f.close || c.eof) && c.detach.is_none();
                    c.close_after_write = close.then_some(linger);
                } else {
                    c.more = true;
                }
                if c.out_pos >= c.out.len() {
                    c.out = f.bytes;
                } else {
                    c.out.drain(..c.out_pos);
                    c.out.extend_from_slice(&f.bytes);
                }
                c.out_pos = 0;
                if first {
                    c.state = State::Writing;
                    let d = Instant::now() + self.sites[c.site].server.limits.write_timeout;
                    self.arm(t, d);
                }
                self.drive(t);
            }
            self.spare = batch;
        }
    }

    fn accept(&mut self) {
        for i in 0..self.sites.len() {
            self.accept_site(i);
        }
    }

    /// Accepts from listener `i` what its connection cap allows, at most [`ACCEPT_BATCH`].
    fn accept_site(&mut self, i: usize) {
        let site = &mut self.sites[i];
        if site.server.stopped.load(SeqCst) {
            return;
        }
        if let Some(at) = site.accept_retry {
            if Instant::now() < at {
                return;
            }
            site.accept_retry = None;
            site.accept_ready = true;
        }
        let mut n = 0;
        while n < ACCEPT_BATCH {
            let site = &mut self.sites[i];
            if !site.accept_ready {
                return;
            }
            if site.count >= site.server.limits.max_connections && !self.evict_idle(i) {
                return;
            }
            let site = &mut self.sites[i];
            let Some(listener) = &site.listener else {
                return;
            };
            if site.server.stopped.load(SeqCst) {
                return;
            }
            match listener.accept() {
                Ok((conn, addr)) => {
                    n += 1;
                    site.backoff = Duration::ZERO;
                    self.add_conn(i, conn, addr);
                }
                Err(e) => match e.kind() {
                    ErrorKind::WouldBlock => site.accept_ready = false,
                    ErrorKind::Interrupted
                    | ErrorKind::TimedOut
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::ConnectionReset => {}
                    _ if site.server.stopped.load(SeqCst) => return,
                    _ => {
                        // EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: back off and retry.
                        site.backoff = (site.backoff * 2)
                            .clamp(Duration::from_millis(10), Duration::from_millis(100));
                        if site
                            .last_log
                            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                        {
                            log::error!("accept() failed: {}; retrying in {:?}", e, site.backoff);
                            site.last_log = Some(Instant::now());
                        }
                        site.accept_retry = Some(Instant::now() + site.backoff);
                        return;
                    }
                },
            }
        }
    }

    fn add_conn(&mut self, site: usize, stream: Connection, remote: Option<SocketAddr>) {
        if let Err(e) = stream.set_nonblocking(true) {
            log::debug!(
                "closing a new connection: cannot make it non-blocking: {}",
                e
            );
            return;
        }
        let _ = stream.set_nodelay();
        let t = match self.free.pop() {
            Some(t) => t,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&stream.as_raw_fd()),
            Token(t),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("closing a new connection: cannot register it: {}", e);
            self.free.push(t);
            return;
        }
        self.next_id += 1;
        self.conns[t] = Some(Box::new(Conn {
            id: self.next_id,
            site,
            stream: Arc::new(stream),
            remote,
            state: State::Idle,
            inbuf: Vec::new(),
            readable: true,
            eof: false,
            deadline: None,
            out: Vec::new(),
            out_pos: 0,
            close_after_write: None,
            detach: None,
            gone: None,
            spare_shared: None,
            more: false,
            body_unfinished: false,
            served: 0,
            idle_since: Instant::now(),
        }));
        self.sites[site].count += 1;
        self.sites[site].server.conn_opened();
        // A new connection has the read timeout (not the idle timeout, which is for
        // keep-alive connections between requests) to start its first request, as Go's
        // `ReadHeaderTimeout` runs from accept: a client that connects and sends nothing holds
        // a slot for seconds, not for a minute.
        let lim = self.lim(site);
        let d = Instant::now() + lim.read_timeout.min(lim.idle_timeout);
        self.arm(t, d);
    }

    /// At the connection cap with connections waiting to be accepted: closes the connection
    /// of listener `site` that is the best to lose, if one is idle — one that never sent a
    /// byte before one that was served and waits for its next request (a keep-alive client
    /// reconnects; HTTP lets a server close an idle connection at any time), the one waiting
    /// longest first, and only one idle for [`EVICT_MIN_IDLE`] at least. A connection with a
    /// request under way (head, body, in flight, response) is never closed for this. So
    /// clients that open connections and send nothing cannot keep others out; with nothing
    /// idle, new connections wait in the kernel's backlog. Returns whether one was closed.
    fn evict_idle(&mut self, site: usize) -> bool {
        // Idle for a moment at least: a connection just accepted may have its request in the
        // socket, not yet read.
        let Some(idle_before) = Instant::now().checked_sub(EVICT_MIN_IDLE) else {
            return false;
        };
        // (served before, idle since) of the best candidate: fresh ones first, then oldest.
        let mut best: Option<(usize, (bool, Instant))> = None;
        for (t, slot) in self.conns.iter().enumerate() {
            let Some(c) = slot else { continue };
            let idle = matches!(c.state, State::Idle)
                && c.site == site
                && c.idle_since <= idle_before
                && c.inbuf.is_empty()
                && c.out_pos >= c.out.len();
            if !idle {
                continue;
            }
            let key = (c.served > 0, c.idle_since);
            if best.is_none_or(|(_, b)| key < b) {
                best = Some((t, key));
            }
        }
        let Some((t, _)) = best else {
            return false;
        };
        let Some(c) = self.conns[t].take() else {
            return false;
        };
        let s = &mut self.sites[site];
        if s.last_evict_log
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
        {
            log::warn!(
                "connection cap reached ({} open): closing idle connections to accept new ones",
                s.server.limits.max_connections
            );
            s.last_evict_log = Some(Instant::now());
        }
        self.drop_conn(t, c);
        true
    }

    /// Sets the deadline of connection `t`.
    fn arm(&mut self, t: usize, at: Instant) {
        if let Some(Some(c)) = self.conns.get_mut(t) {
            c.deadline = Some(at);
        }
        self.note_deadline(at);
    }

    fn note_deadline(&mut self, at: Instant) {
        self.next_sweep = Some(self.next_sweep.map_or(at, |s| s.min(at)));
    }

    /// Closes and forgets a connection taken out of its slot.
    fn drop_conn(&mut self, t: usize, c: Box<Conn>) {
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&c.stream.as_raw_fd()));
        if let Some(g) = &c.gone {
            g.mark_gone();
        }
        let site = &mut self.sites[c.site];
        drop(c);
        self.free.push(t);
        site.count -= 1;
        site.server.conn_closed();
        if !site.accept_ready && site.listener.is_some() {
            // Below the cap again: connections may be waiting in the backlog.
            site.accept_ready = true;
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        self.next_sweep = None;
        let mut expired = Vec::new();
        for (t, slot) in self.conns.iter().enumerate() {
            if let Some(c) = slot {
                match c.deadline {
                    Some(d) if d <= now => expired.push(t),
                    Some(d) => self.next_sweep = Some(self.next_sweep.map_or(d, |s| s.min(d))),
                    None => {}
                }
            }
        }
        for t in expired {
            self.expire(t);
        }
    }

    /// A connection's deadline passed.
    fn expire(&mut self, t: usize) {
        let Some(mut c) = self.conns[t].take() else {
            return;
        };
        c.deadline = None;
        match std::mem::replace(&mut c.state, State::InFlight) {
            State::Head { started } => {
                // 408 with what is known of the request line.
                let mut request_line = None;
                let mut src = &c.inbuf[..];
                let _ = read_head(
                    &mut src,
                    &self.sites[c.site].server.limits,
                    &mut self.head_scratch,
                    &mut request_line,
                );
                c.inbuf.clear();
                self.refuse(&mut c, 408, request_line, None, started, false);
                self.conns[t] = Some(c);
                self.drive(t);
            }
            State::Body(pb) => {
                // The application answers (e.g. 408) from the body reader's `TimedOut`.
                let pb = *pb;
                self.conns[t] = Some(c);
                self.dispatch_request(t, pb, Some(Failure::TimedOut));
                self.drive(t);
            }
            State::InFlight => {
                self.conns[t] = Some(c);
            }
            // Idle (silent close), Writing (the client does not read), Lingering (done).
            State::Idle | State::Writing | State::Lingering { .. } => self.drop_conn(t, c),
        }
    }

    /// Reads what the socket has into `inbuf`, up to `cap` bytes held.
    fn read_into(&mut self, c: &mut Conn, cap: usize) -> ReadResult {
        if c.eof {
            return ReadResult::Closed;
        }
        if !c.readable {
            return ReadResult::Blocked;
        }
        let room = cap.saturating_sub(c.inbuf.len()).min(self.scratch.len());
        if room == 0 {
            return ReadResult::Full;
        }
        loop {
            match (&*c.stream).read(&mut self.scratch[..room]) {
                Ok(0) => {
                    c.eof = true;
                    return ReadResult::Closed;
                }
                Ok(n) => {
                    c.inbuf.extend_from_slice(&self.scratch[..n]);
                    // A short read emptied the socket's receive queue: the next
                    // read would be `WouldBlock`. Skip that system call; data that
                    // arrives from now on is a new edge that epoll reports.
                    if n < room {
                        c.readable = false;
                    }
                    return ReadResult::Data;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.readable = false;
                    return ReadResult::Blocked;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    c.eof = true;
                    return ReadResult::Closed;
                }
            }
        }
    }

    /// Reads and throws away what the socket has (lingering close); the count in `discarded`.
    fn discard(&mut self, c: &mut Conn) -> ReadResult {
        if c.eof {
            return ReadResult::Closed;
        }
        if !c.readable {
            return ReadResult::Blocked;
        }
        loop {
            match (&*c.stream).read(&mut self.scratch) {
                Ok(0) => {
                    c.eof = true;
                    return ReadResult::Closed;
                }
                Ok(n) => {
                    self.discarded = n;
                    return ReadResult::Data;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.readable = false;
                    return ReadResult::Blocked;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    c.eof = true;
                    return ReadResult::Closed;
                }
            }
        }
    }

    /// Writes what the socket takes. `Ok(true)` once everything is written.
    fn flush(c: &mut Conn) -> io::Result<bool> {
        while c.out_pos < c.out.len() {
            match (&*c.stream).write(&c.out[c.out_pos..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        c.out = Vec::new();
        c.out_pos = 0;
        Ok(true)
    }

    /// Moves connection `t` as far as it can go without waiting.
    fn drive(&mut self, t: usize) {
        let Some(Some(mut c)) = self.conns.get_mut(t).map(Option::take) else {
            return;
        };
        loop {
            match &mut c.state {
                State::Writing => match Self::flush(&mut c) {
                    Err(_) => return self.drop_conn(t, c),
                    Ok(false) => break,
                    Ok(true) if c.more => {
                        // The producer may send the next part.
                        if let Some(g) = &c.gone {
                            g.mark_drained();
                        }
                        break;
                    }
                    Ok(true) => {
                        c.spare_shared = c.gone.take();
                        if let Some(to) = c.detach.take() {
                            return self.detach(t, *c, to);
                        }
                        if let Some(linger) = c.close_after_write {
                            c.close_after_write = None;
                            if !self.close(&mut c, linger) {
                                return self.drop_conn(t, c);
                            }
                            continue;
                        }
                        c.state = State::Idle;
                        c.served = c.served.saturating_add(1);
                        c.body_unfinished = false;
                        c.idle_since = Instant::now();
                        c.deadline = Some(c.idle_since + self.lim(c.site).idle_timeout);
                        self.note_deadline(c.deadline.unwrap_or_else(Instant::now));
                    }
                },
                State::Idle => {
                    if c.inbuf.is_empty() {
                        if c.eof {
                            return self.drop_conn(t, c);
                        }
                        // No buffer while idle.
                        c.inbuf = Vec::new();
                        match self.read_into(&mut c, SCRATCH) {
                            ReadResult::Data => {}
                            ReadResult::Blocked | ReadResult::Full => {
                                if self.sites[c.site].server.draining.load(SeqCst) {
                                    if c.served > 0 {
                                        return self.drop_conn(t, c);
                                    }
                                    // New (e.g. taken from the accept queue at the last
                                    // moment): its first request is on its way; it gets the
                                    // read timeout to arrive, and is answered with close.
                                    let d = Instant::now() + self.lim(c.site).read_timeout;
                                    if c.deadline.is_none_or(|x| x > d) {
                                        c.deadline = Some(d);
                                        self.note_deadline(d);
                                    }
                                }
                                break;
                            }
                            ReadResult::Closed => return self.drop_conn(t, c),
                        }
                    }
                    let now = Instant::now();
                    c.state = State::Head { started: now };
                    let d = now + self.lim(c.site).read_timeout;
                    c.deadline = Some(d);
                    self.note_deadline(d);
                }
                State::Head { started } => {
                    let started = *started;
                    match self.parse_head(&mut c, started) {
                        HeadStep::Complete(pb) => {
                            let Some(back) = self.dispatch_from_drive(t, c, pb, None) else {
                                return;
                            };
                            c = back;
                            continue;
                        }
                        HeadStep::Parsed => continue,
                        HeadStep::Refused => continue,
                        HeadStep::NeedMore => {}
                    }
                    let cap = self.head_cap(c.site);
                    match self.read_into(&mut c, cap) {
                        ReadResult::Data => {}
                        ReadResult::Blocked => break,
                        ReadResult::Full => {
                            self.refuse(&mut c, 431, None, None, started, true);
                        }
                        ReadResult::Closed => return self.drop_conn(t, c),
                    }
                }
                State::Body(pb) => {
                    let lim = body_limits(self.lim(c.site));
                    let before = pb.data.len();
                    let res =
                        pb.body
                            .feed(&c.inbuf, &mut pb.data, &lim, &mut self.head_scratch.line);
                    let grown = (pb.data.len() - before) as u64;
                    let consumed = res.unwrap_or_default();
                    c.inbuf.drain(..consumed);
                    if c.inbuf.is_empty() && c.inbuf.capacity() > 4096 {
                        // Body bytes move on to the request: hold no read buffer meanwhile.
                        c.inbuf = Vec::new();
                    }
                    let over_budget = grown > 0 && !pb.reservation.grow(grown);
                    if over_budget {
                        let Some(pb) = take_body(&mut c) else { break };
                        let started = Instant::now();
                        let request_line = Some((pb.head.method, pb.head.target));
                        drop(pb.data);
                        self.refuse(&mut c, 503, request_line, None, started, true);
                        continue;
                    }
                    match res {
                        Err(f) => {
                            let Some(pb) = take_body(&mut c) else { break };
                            let Some(back) = self.dispatch_from_drive(t, c, *pb, Some(f)) else {
                                return;
                            };
                            c = back;
                            continue;
                        }
                        Ok(_) if pb.body.is_done() => {
                            let Some(pb) = take_body(&mut c) else { break };
                            let Some(back) = self.dispatch_from_drive(t, c, *pb, None) else {
                                return;
                            };
                            c = back;
                            continue;
                        }
                        Ok(_) => {}
                    }
                    let cap = c.inbuf.len() + SCRATCH;
                    match self.read_into(&mut c, cap) {
                        ReadResult::Data => {}
                        ReadResult::Blocked | ReadResult::Full => break,
                        // The client left before its body arrived: nobody to answer.
                        ReadResult::Closed => return self.drop_conn(t, c),
                    }
                }
                State::InFlight => {
                    // Watch the client (and keep what it pipelines, within the head bound).
                    let cap = self.head_cap(c.site);
                    match self.read_into(&mut c, cap) {
                        ReadResult::Data => {}
                        ReadResult::Blocked | ReadResult::Full => break,
                        ReadResult::Closed => {
                            if let Some(g) = &c.gone {
                                g.mark_gone();
                            }
                            break;
                        }
                    }
                }
                State::Lingering { .. } => {
                    c.inbuf = Vec::new();
                    match self.discard(&mut c) {
                        ReadResult::Data => {
                            let n = self.discarded as u64;
                            if let State::Lingering { budget } = &mut c.state {
                                *budget = budget.saturating_sub(n);
                                if *budget == 0 {
                                    return self.drop_conn(t, c);
                                }
                            }
                        }
                        ReadResult::Blocked | ReadResult::Full => break,
                        ReadResult::Closed => return self.drop_conn(t, c),
                    }
                }
            }
        }
        self.conns[t] = Some(c);
    }

    /// After a response that closes: FIN, then linger (`true` returned) or close now.
    fn close(&mut self, c: &mut Conn, linger: bool) -> bool {
        let _ = c.stream.shutdown(Shutdown::Write);
        if !linger || c.eof {
            return false;
        }
        c.inbuf = Vec::new();
        c.state = State::Lingering {
            budget: self.lim(c.site).max_drain_bytes.max(1),
        };
        let d = Instant::now() + self.lim(c.site).read_timeout.min(LINGER_MAX);
        c.deadline = Some(d);
        self.note_deadline(d);
        true
    }

    /// Tries to parse a request head from `c.inbuf`.
    fn parse_head(&mut self, c: &mut Conn, started: Instant) -> HeadStep {
        let lim = &self.sites[c.site].server.limits;
        let mut request_line = None;
        let mut src = &c.inbuf[..];
        let head = match read_head(&mut src, lim, &mut self.head_scratch, &mut request_line) {
            Ok(h) => h,
            Err(HeadError::Closed) | Err(HeadError::TimedOut) => {
                if c.inbuf.len() >= self.head_cap(c.site) {
                    self.refuse(c, 431, request_line, None, started, true);
                    return HeadStep::Refused;
                }
                return HeadStep::NeedMore;
            }
            Err(HeadError::Reject(status, why)) => {
                log::debug!(
                    "rejecting request from {:?} with {}: {}",
                    c.remote,
                    status,
                    why
                );
                self.refuse(c, status, request_line, Some(why), started, true);
                return HeadStep::Refused;
            }
        };
        let consumed = c.inbuf.len() - src.len();
        c.inbuf.drain(..consumed);
        let plan = match analyse(&head, lim) {
            Ok(p) => p,
            Err((status, why)) => {
                log::debug!(
                    "rejecting request from {:?} with {}: {}",
                    c.remote,
                    status,
                    why
                );
                let request_line = Some((head.method, head.target));
                self.refuse(c, status, request_line, Some(why), started, true);
                return HeadStep::Refused;
            }
        };
        // The body buffer's budget is taken as the body's bytes arrive, never for a length
        // only declared: heads that announce large bodies and send none must not fill it
        // (32 heads of `Content-Length: 1048576` held every create out at the default
        // budget). A body that outgrows what is left is refused when it does (in `drive`).
        let reservation = Reservation::empty(&lim.body_buffer);
        if plan.expects_continue && !plan.body.is_done() {
            c.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if Self::flush(c).is_err() {
                c.eof = true;
            }
        }
        // Room for the declared length at once up to [`BODY_PREALLOC_MAX`] (every body of
        // this API): no reallocation, no copy. A larger one grows as it arrives, so that a
        // length only declared takes no more than that much even of address space.
        let capacity = plan
            .content_length
            .map_or(0, |n| usize::try_from(n).unwrap_or(0))
            .min(BODY_PREALLOC_MAX);
        let pb = PendingBody {
            head,
            body: plan.body,
            data: Vec::with_capacity(capacity),
            keep_alive: plan.keep_alive,
            content_length: plan.content_length,
            reservation,
        };
        if pb.body.is_done() {
            // No body (most requests): complete already, no state to keep
            // nor a body deadline to set.
            return HeadStep::Complete(pb);
        }
        c.state = State::Body(Box::new(pb));
        let d = Instant::now() + lim.read_timeout;
        c.deadline = Some(d);
        self.note_deadline(d);
        HeadStep::Parsed
    }

    /// [`IoThread::dispatch_request`] from inside [`IoThread::drive`], which holds the
    /// connection out of its slot: it is put back for the dispatch (an inline answer reaches
    /// it through the slot) and taken out again; `None` when the dispatch closed it.
    fn dispatch_from_drive(
        &mut self,
        t: usize,
        c: Box<Conn>,
        pb: PendingBody,
        failure: Option<Failure>,
    ) -> Option<Box<Conn>> {
        self.conns[t] = Some(c);
        self.dispatch_request(t, pb, failure);
        self.conns.get_mut(t).and_then(Option::take)
    }

    /// Hands a complete request (or one whose body failed) to the application.
    fn dispatch_request(&mut self, t: usize, pb: PendingBody, failure: Option<Failure>) {
        let Some(Some(c)) = self.conns.get_mut(t) else {
            return;
        };
        let shared = match c.spare_shared.take() {
            Some(spare) => {
                spare.reset(c.eof);
                spare
            }
            None => Arc::new(ReqShared::new(c.eof)),
        };
        c.gone = Some(shared.clone());
        c.state = State::InFlight;
        c.deadline = None;
        c.body_unfinished = failure.is_some();
        let site = &self.sites[c.site];
        let io = ReqIo {
            server: site.server.clone(),
            token: t,
            id: c.id,
            close_after: !pb.keep_alive || failure.is_some(),
            body: pb.data,
            pos: 0,
            failure,
            _reservation: Some(pb.reservation),
            shared,
            stream: (c.out_pos >= c.out.len()).then(|| Arc::clone(&c.stream)),
        };
        let rq = Request::from_conn(io, pb.head, pb.content_length, c.remote);
        site.dispatch.dispatch(rq);
    }

    /// Queues an error response the server sends by itself, then closes.
    fn refuse(
        &mut self,
        c: &mut Conn,
        status: u16,
        request_line: Option<(crate::Method, ShortText)>,
        why: Option<&'static str>,
        started: Instant,
        linger: bool,
    ) {
        let lim = &self.sites[c.site].server.limits;
        let (mut headers, body) = match &lim.error_body {
            Some(error_body) => error_body.render(&crate::Refusal {
                status,
                request_line: request_line
                    .as_ref()
                    .map(|(method, target)| (method, target.as_str())),
                why,
                remote_addr: c.remote,
                started,
                limits: lim,
            }),
            None => (Vec::new(), Vec::new()),
        };
        if status == 503 && !headers.iter().any(|h| h.field.equiv("Retry-After")) {
            if let Ok(h) = crate::Header::from_bytes(&b"Retry-After"[..], &b"1"[..]) {
                headers.push(h);
            }
        }
        let len = body.len();
        let response = Response::new(
            StatusCode(status),
            headers,
            std::io::Cursor::new(body),
            Some(len),
            None,
        );
        // After what is still unwritten (a `100 Continue`).
        let mut bytes = std::mem::take(&mut c.out);
        bytes.drain(..c.out_pos.min(bytes.len()));
        let _ = response.raw_print_conn(
            &mut bytes,
            HTTPVersion(1, 1),
            &[],
            false,
            None,
            ConnHeader::Close,
        );
        c.out = bytes;
        c.out_pos = 0;
        c.close_after_write = Some(linger);
        c.state = State::Writing;
        let d = Instant::now() + lim.write_timeout;
        c.deadline = Some(d);
        self.note_deadline(d);
    }

    /// Hands the socket of an upgraded connection over (blocking again, no longer polled).
    fn detach(&mut self, t: usize, c: Conn, to: SyncSender<Connection>) {
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&c.stream.as_raw_fd()));
        self.free.push(t);
        let site = &mut self.sites[c.site];
        site.count -= 1;
        // Still counted in `open` until the stream is dropped (see `ConnStream`).
        if !site.accept_ready && site.listener.is_some() {
            site.accept_ready = true;
        }
        let server = site.server.clone();
        let Conn { stream, .. } = c;
        // The worker let go of its clone before handing the response back (`ReqIo::detach`).
        let Ok(stream) = Arc::try_unwrap(stream) else {
            log::error!("cannot hand an upgraded connection over: its socket is still shared");
            server.conn_closed();
            return;
        };
        if stream.set_nonblocking(false).is_err() || to.send(stream).is_err() {
            server.conn_closed();
        }
    }
}

/// Moves the pending body out of a connection in `State::Body` (leaving it `InFlight`).
fn take_body(c: &mut Conn) -> Option<Box<PendingBody>> {
    match std::mem::replace(&mut c.state, State::InFlight) {
        State::Body(pb) => Some(pb),
        other => {
            c.state = other;
            None
        }
    }
}

enum HeadStep {
    /// A request without a body: ready to dispatch.
    Complete(PendingBody),
    /// A head whose body is still to be read (`State::Body`).
    Parsed,
    Refused,
    NeedMore,
}

fn body_limits(l: &Limits) -> BodyLimits {
    BodyLimits {
        max_body: l.max_body_bytes,
        max_trailer_bytes: l.max_header_bytes,
        max_trailers: l.max_headers,
    }
}
