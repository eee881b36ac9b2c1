//! Line formats: one JSON object per line ([`write_json`]) or one human line ([`write_text`]).
//!
//! Why pure functions: each takes the output, the wall-clock instant and the record, and touches
//! no global state except the thread's request context. Golden tests and the benchmark call them
//! directly with a fixed time; the installed logger calls them with `SystemTime::now()` and
//! env_logger's per-thread buffer, which is reused line after line, so a line allocates nothing.
//!
//! Rules shared by both formats:
//! - Built-in fields come first: `time`, `level`, `msg`, `target`, then `request_id`, `trace_id`,
//!   `span_id` when a request context is entered on this thread (see [`super::context`]).
//! - Then the record's own key/values, in call order. **The first occurrence of a name wins**:
//!   a key/value named like a built-in field (the three context names count while a context is
//!   entered, even if `trace_id`/`span_id` are absent) or like an earlier key/value is
//!   dropped. Some log stores (Elasticsearch among them) reject a whole document with a duplicate
//!   field, so dropping one field beats losing the line; it also means no call site can spoof
//!   `level` or another request's `request_id`. Deduplication tracks the first
//!   [`MAX_TRACKED_KEYS`] key/values of a record; beyond that, keys are written as they come.
//! - A `Display`/`Debug` impl that fails truncates its own value; one that panics has the panic
//!   caught and its value ends with [`PANIC_MARKER`]. Either way the line stays well-formed and
//!   env_logger's per-thread buffer is not left holding half a line.

mod json;
mod text;

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};

pub use json::write_json;
pub use text::write_text;

/// How many key/values per record are tracked for duplicate names.
pub const MAX_TRACKED_KEYS: usize = 32;

/// Appended to a value whose `Display`/`Debug` impl panicked while being formatted.
pub const PANIC_MARKER: &str = "<panicked while formatting>";

/// Names already written on this line, for the first-occurrence-wins rule.
///
/// Names are compared only when a 64-bit signature of (length, first byte) says they might be
/// equal, so the usual record, whose names are all distinct, costs one mask test per key/value.
///
/// The names live in an array that is not initialised up front: a line has a dozen key/values
/// and the tracker is made for every line, so filling 32 slots first cost more than the
/// tracking itself. Only `keys[..len]` is ever read, and each of those was written first.
struct Seen<'kvs> {
    builtin: &'static [&'static str],
    keys: [MaybeUninit<&'kvs str>; MAX_TRACKED_KEYS],
    /// How many of `keys`, from the first, are written.
    len: usize,
    /// Union of [`signature`]s of every name in `builtin` and `keys`.
    mask: u64,
}

/// The built-in field names, in output order; the context ones are present only inside a context.
const BUILTIN_WITH_CONTEXT: &[&str] = &[
    "time",
    "level",
    "msg",
    "target",
    "request_id",
    "trace_id",
    "span_id",
];
const BUILTIN: &[&str] = BUILTIN_WITH_CONTEXT.split_at(4).0;

/// One bit chosen by a name's length and first byte.
fn signature(name: &str) -> u64 {
    let first = name.as_bytes().first().copied().unwrap_or(0);
    1 << ((name.len() as u32)
        .wrapping_mul(7)
        .wrapping_add(u32::from(first))
        % 64)
}

impl<'kvs> Seen<'kvs> {
    fn new(builtin: &'static [&'static str]) -> Self {
        Seen {
            builtin,
            keys: [const { MaybeUninit::uninit() }; MAX_TRACKED_KEYS],
            len: 0,
            mask: builtin.iter().fold(0, |m, name| m | signature(name)),
        }
    }

    /// The names recorded so far.
    fn tracked(&self) -> &[&'kvs str] {
        let len = self.len.min(MAX_TRACKED_KEYS);
        // SAFETY: `keys[..len]` is initialised: `first` writes `keys[self.len]` before it
        // raises `len` past it, and nothing un-writes a slot (`len` never exceeds
        // MAX_TRACKED_KEYS; the `min` only restates it). `MaybeUninit<T>` has the size,
        // alignment and layout of `T`, so an initialised prefix of `[MaybeUninit<&str>]` is
        // a valid `[&str]`, borrowed from `self` for no longer than `self` lives.
        unsafe { std::slice::from_raw_parts(self.keys.as_ptr().cast::<&'kvs str>(), len) }
    }

    /// Records `key`; returns false if the name was already written on this line.
    fn first(&mut self, key: &log::kv::Key<'kvs>) -> bool {
        let name = key.as_str();
        let sig = signature(name);
        if self.mask & sig != 0 {
            let taken = |other: &&str| same(name, other);
            if self.builtin.iter().any(taken) || self.tracked().iter().any(taken) {
                return false;
            }
        }
        if let (Some(name), true) = (key.to_borrowed_str(), self.len < MAX_TRACKED_KEYS) {
            self.keys[self.len] = MaybeUninit::new(name);
            self.len += 1;
            self.mask |= sig;
        }
        true
    }
}

/// String equality that rejects most different names without calling `memcmp`.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// Writes an integer in decimal without `core::fmt` (which costs several times more per number).
fn write_u64<W: io::Write + ?Sized>(out: &mut W, negative: bool, n: u64) -> io::Result<()> {
    if negative {
        out.write_all(b"-")?;
    }
    out.write_all(crate::decimal::Decimal::new(n).as_bytes())
}

/// [`write_u64`] for the rare 128-bit value (128-bit division is slow, so it is kept apart).
fn write_u128<W: io::Write + ?Sized>(out: &mut W, negative: bool, mut n: u128) -> io::Result<()> {
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    out.write_all(&buf[i..])
}

/// Runs a `Display`-style write (`fmt::write`, `fmt::Display::fmt`) into `w`, containing its
/// failures: a `fmt::Error` just ends the value, a panic is caught and [`PANIC_MARKER`] written.
/// I/O errors are not reported here; the escapers keep them for the caller.
fn write_guarded<W: fmt::Write>(w: &mut W, f: impl FnOnce(&mut W) -> fmt::Result) {
    match panic::catch_unwind(AssertUnwindSafe(|| f(&mut *w))) {
        Ok(_) => {}
        Err(_) => {
            let _ = w.write_str(PANIC_MARKER);
        }
    }
}

/// Writes `args` through `w`, taking the no-argument fast path when there is nothing to format.
fn write_args<W: fmt::Write>(w: &mut W, args: &fmt::Arguments<'_>) {
    match args.as_str() {
        Some(s) => {
            let _ = w.write_str(s);
        }
        None => write_guarded(w, |w| fmt::write(w, *args)),
    }
}

/// Level names as logged: upper case, and padded to five characters for the text format.
fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARN",
        log::Level::Info => "INFO",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    }
}
