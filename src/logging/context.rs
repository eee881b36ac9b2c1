//! The per-request logging context: `request_id`, `trace_id`, `span_id` on the current thread.
//!
//! Why a thread-local: a request is served start to finish by one worker thread, so the worker
//! can set the context once, before calling the handler, and every line logged below it — in the
//! router, a repository, a dependency — gets the request's ids without threading them through
//! every function signature.
//!
//! Why fixed arrays: the context is entered on every request, so it must not allocate. A request
//! id is at most [`RequestId::MAX_LEN`] bytes held inline; trace and span ids are raw 16- and
//! 8-byte arrays rendered as lowercase hex by the formatter. The whole [`RequestContext`] is
//! `Copy` (~160 bytes); entering one is a memcpy into a `Cell`.
//!
//! Why a guard: [`enter`] returns a [`ContextGuard`] that puts the previous context back when it
//! drops, including during unwinding, so a panicking handler caught by the worker pool can never
//! leak its ids into the next request's lines. Guards nest.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

/// A validated request id: 1 to [`RequestId::MAX_LEN`] visible ASCII bytes (`!`..=`~`).
///
/// The same rule decides whether a caller's `X-Request-ID` header is sane enough to reuse.
/// Visible ASCII needs no JSON escaping and cannot break a log line or a header.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    buf: [u8; RequestId::MAX_LEN],
}

/// Why a string is not a valid [`RequestId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRequestId {
    /// The id is empty.
    Empty,
    /// The id is longer than [`RequestId::MAX_LEN`] bytes.
    TooLong,
    /// The id holds a byte outside visible ASCII (space, control, non-ASCII).
    BadByte,
}

impl fmt::Display for InvalidRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidRequestId::Empty => "request id is empty",
            InvalidRequestId::TooLong => "request id is longer than 128 bytes",
            InvalidRequestId::BadByte => "request id holds a byte outside visible ASCII",
        })
    }
}

impl std::error::Error for InvalidRequestId {}

impl RequestId {
    /// The longest accepted request id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates and copies `s`.
    pub fn parse(s: &str) -> Result<RequestId, InvalidRequestId> {
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            return Err(InvalidRequestId::Empty);
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(InvalidRequestId::TooLong);
        }
        if !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidRequestId::BadByte);
        }
        let mut buf = [0u8; Self::MAX_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(RequestId {
            len: bytes.len() as u8,
            buf,
        })
    }

    /// A fresh id from a UUID, in its hyphenated lowercase form (36 bytes), without allocating.
    pub fn from_uuid(id: uuid::Uuid) -> RequestId {
        // 8-4-4-4-12 lowercase hex digits, what `Uuid::hyphenated` writes: each byte's two
        // digits from a table, stored where they go (no formatter, no per-digit branch: this
        // runs for every request without an `X-Request-ID`).
        const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut buf = [0u8; Self::MAX_LEN];
        for (&b, at) in id.as_bytes().iter().zip(AT) {
            buf[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        for at in [8, 13, 18, 23] {
            buf[at] = b'-';
        }
        RequestId { len: 36, buf }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        let bytes = &self.buf[..usize::from(self.len)];
        debug_assert!(bytes.is_ascii());
        // SAFETY: every byte of `buf[..len]` is ASCII, so the slice is UTF-8.
        // The fields are private and only the two constructors write them:
        // `parse` copies bytes it checked are visible ASCII, `from_uuid`
        // writes hex digits and `-`; a copy (`Clone`, `Copy`) keeps the bytes.
        // Checking again here cost ~190 instructions a request (callgrind,
        // BENCHMARKS.md): the id is read for the header, the log and the span.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RequestId {}

/// What the formatter adds to every line logged while it is entered on this thread.
///
/// `trace_id` and `span_id` are the W3C Trace Context ids of the request's span, raw bytes;
/// they are logged as 32 and 16 lowercase hex digits. Either may be absent (tracing off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestContext {
    /// The request's id, as answered in `X-Request-ID`.
    pub request_id: RequestId,
    /// The trace this request belongs to.
    pub trace_id: Option<[u8; 16]>,
    /// The span that represents this request.
    pub span_id: Option<[u8; 8]>,
}

impl RequestContext {
    /// A context with a request id and no trace.
    pub fn new(request_id: RequestId) -> RequestContext {
        RequestContext {
            request_id,
            trace_id: None,
            span_id: None,
        }
    }

    /// A request's context: its id, its trace and its span.
    pub fn traced(request_id: RequestId, trace_id: [u8; 16], span_id: [u8; 8]) -> RequestContext {
        RequestContext {
            request_id,
            trace_id: Some(trace_id),
            span_id: Some(span_id),
        }
    }
}

thread_local! {
    // A `RefCell`, not a `Cell`: entering and leaving look at the slot in place. With
    // `Cell::replace` every request copied the 155-byte context out and back in (two calls to
    // `memcpy` per request on the I/O thread, ~160 instructions in the static build).
    // Borrows never outlive the three functions below, none of which runs other code while
    // holding one.
    static CURRENT: RefCell<Option<RequestContext>> = const { RefCell::new(None) };
}

/// Restores the previous context of this thread when dropped (also while unwinding).
///
/// Not `Send`: it must drop on the thread whose context it changed. Drop nested guards in
/// reverse order of entering (as scopes do); dropping an outer guard first restores the state
/// from before the outer `enter`, and the inner guard's later drop then reinstates the outer
/// context. Bind it to a named variable: `let _ = enter(..)` leaves the context at once.
#[must_use = "the context is left as soon as the guard is dropped"]
pub struct ContextGuard {
    restore: Restore,
    _not_send: PhantomData<*const ()>,
}

/// What a [`ContextGuard`] puts back.
#[derive(Debug)]
enum Restore {
    /// No context was entered before (the usual case): one word to keep.
    Nothing,
    /// The context `enter` replaced (a span's context inside a request's).
    Previous(Box<RequestContext>),
    /// `enter` could not reach the slot (thread teardown): leave it alone.
    Untouched,
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        let restore = std::mem::replace(&mut self.restore, Restore::Untouched);
        // `try_with`: during thread teardown the slot may already be gone; nothing to restore.
        let _ = CURRENT.try_with(|c| {
            let Ok(mut slot) = c.try_borrow_mut() else {
                return;
            };
            match restore {
                Restore::Nothing => *slot = None,
                Restore::Previous(ctx) => *slot = Some(*ctx),
                Restore::Untouched => {}
            }
        });
    }
}

impl fmt::Debug for ContextGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextGuard")
            .field("restore", &self.restore)
            .finish()
    }
}

/// Sets `ctx` as this thread's request context until the returned guard drops.
pub fn enter(ctx: RequestContext) -> ContextGuard {
    let restore = CURRENT
        .try_with(|c| {
            let Ok(mut slot) = c.try_borrow_mut() else {
                return Restore::Untouched;
            };
            let restore = match &*slot {
                None => Restore::Nothing,
                Some(previous) => Restore::Previous(Box::new(*previous)),
            };
            *slot = Some(ctx);
            restore
        })
        .unwrap_or(Restore::Untouched);
    ContextGuard {
        restore,
        _not_send: PhantomData,
    }
}

/// Runs `f` with this thread's current request context, if any, without copying it (the JSON
/// formatter, once per line). A context entered inside `f` would not take effect.
pub fn with_current(f: impl FnOnce(Option<&RequestContext>)) {
    let mut f = Some(f);
    let _ = CURRENT.try_with(|c| {
        if let Some(f) = f.take() {
            let slot = c.try_borrow().ok();
            f(slot.as_deref().and_then(Option::as_ref));
        }
    });
    // The slot is gone (thread teardown) and `f` has not run.
    if let Some(f) = f {
        f(None);
    }
}

/// This thread's current request context, if any (a copy).
pub fn current() -> Option<RequestContext> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|slot| *slot))
        .ok()
        .flatten()
}

/// The two lowercase hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    t
};

/// Lowercase hex of `N` bytes into a `2 * N`-byte buffer (`M` must be `2 * N`).
pub(crate) fn hex<const N: usize, const M: usize>(bytes: &[u8; N]) -> [u8; M] {
    let mut out = [0u8; M];
    for (i, &b) in bytes.iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_rules() {
        assert_eq!(RequestId::parse("abc-123").unwrap().as_str(), "abc-123");
        assert_eq!(RequestId::parse(""), Err(InvalidRequestId::Empty));
        assert_eq!(RequestId::parse("a b"), Err(InvalidRequestId::BadByte));
        assert_eq!(RequestId::parse("é"), Err(InvalidRequestId::BadByte));
        assert_eq!(RequestId::parse("a\n"), Err(InvalidRequestId::BadByte));
        let max = "x".repeat(128);
        assert_eq!(RequestId::parse(&max).unwrap().as_str(), max);
        assert_eq!(
            RequestId::parse(&"x".repeat(129)),
            Err(InvalidRequestId::TooLong)
        );
    }

    #[test]
    fn from_uuid_is_hyphenated_lowercase() {
        let u = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            RequestId::from_uuid(u).as_str(),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
    }

    #[test]
    fn from_uuid_writes_what_uuid_writes() {
        for _ in 0..1000 {
            let u = uuid::Uuid::new_v4();
            assert_eq!(RequestId::from_uuid(u).as_str(), u.hyphenated().to_string());
        }
    }

    #[test]
    fn hex_is_lowercase() {
        let h: [u8; 4] = hex(&[0x0f, 0xa0]);
        assert_eq!(&h, b"0fa0");
    }

    #[test]
    fn guards_nest_and_restore() {
        assert!(current().is_none());
        let a = RequestContext::new(RequestId::parse("a").unwrap());
        let b = RequestContext::new(RequestId::parse("b").unwrap());
        let ga = enter(a);
        {
            let _gb = enter(b);
            assert_eq!(current(), Some(b));
        }
        assert_eq!(current(), Some(a));
        drop(ga);
        assert!(current().is_none());
    }

    #[test]
    fn with_current_sees_the_innermost_context_and_none_outside() {
        let seen = || {
            let mut id = None;
            with_current(|ctx| id = ctx.map(|c| c.request_id.as_str().to_owned()));
            id
        };
        assert_eq!(seen(), None);
        let _a = enter(RequestContext::new(RequestId::parse("a").unwrap()));
        assert_eq!(seen().as_deref(), Some("a"));
        {
            let _b = enter(RequestContext::new(RequestId::parse("b").unwrap()));
            assert_eq!(seen().as_deref(), Some("b"));
            // Entering inside `with_current` leaves the context as it is.
            with_current(|_| {
                let _c = enter(RequestContext::new(RequestId::parse("c").unwrap()));
                assert_eq!(current().map(|c| c.request_id), RequestId::parse("b").ok());
            });
            assert_eq!(seen().as_deref(), Some("b"));
        }
        assert_eq!(seen().as_deref(), Some("a"));
    }
}
