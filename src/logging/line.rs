//! The buffer a log line is formatted into before env_logger gets it.
//!
//! Why: the formatters write a line as some sixty small pieces (`{"time":"`,
//! the time, `","level":"`, a key, its value, ...). Written straight into
//! env_logger's formatter, every piece was a call through its
//! `RefCell`-guarded buffer and an out-of-line `memcpy`: about 4,000 of the
//! 19,000 instructions of a `GET /healthz` logged at INFO (callgrind, the
//! static build, whose size-optimised code inlines little). Here a piece is
//! appended inline, so a constant piece becomes a few register moves, and
//! the finished line goes to env_logger in one write.
//!
//! One buffer per thread, reused: no allocation per line once it has grown
//! to the longest line (a buffer grown past [`KEEP`] is released after its
//! line).

use std::cell::RefCell;
use std::io;
use std::ptr;

/// Capacity a thread keeps between lines.
pub const KEEP: usize = 4096;

thread_local! {
    static LINE: RefCell<LineBuf> = const { RefCell::new(LineBuf { bytes: Vec::new() }) };
}

/// A growable byte buffer whose `write_all` is inlined into the formatter.
#[derive(Debug, Default)]
pub struct LineBuf {
    bytes: Vec<u8>,
}

impl LineBuf {
    #[inline(always)]
    fn push(&mut self, piece: &[u8]) {
        let len = self.bytes.len();
        if self.bytes.capacity() - len < piece.len() {
            self.grow(piece.len());
        }
        // SAFETY: the capacity check above (or `grow`) leaves at least
        // `piece.len()` bytes of spare capacity after `len`, so the
        // destination range lies inside the vector's allocation; `piece` is
        // a shared borrow and `self.bytes` an exclusive one, so the two
        // ranges cannot overlap; after the copy the first `len +
        // piece.len()` bytes are initialised, which is what `set_len`
        // requires (and the sum cannot exceed the capacity).
        unsafe {
            ptr::copy_nonoverlapping(
                piece.as_ptr(),
                self.bytes.as_mut_ptr().add(len),
                piece.len(),
            );
            self.bytes.set_len(len + piece.len());
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, more: usize) {
        self.bytes.reserve(more.max(256));
    }
}

impl io::Write for LineBuf {
    #[inline(always)]
    fn write(&mut self, piece: &[u8]) -> io::Result<usize> {
        self.push(piece);
        Ok(piece.len())
    }

    #[inline(always)]
    fn write_all(&mut self, piece: &[u8]) -> io::Result<()> {
        self.push(piece);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Formats a line with `format` into this thread's buffer, then writes it
/// to `out` with one `write_all`. A line logged while another is being
/// formatted on the same thread (a `Display` that logs) gets a buffer of
/// its own.
pub fn write_through<W: io::Write + ?Sized>(
    out: &mut W,
    format: impl FnOnce(&mut LineBuf) -> io::Result<()>,
) -> io::Result<()> {
    let mut format = Some(format);
    let reused = LINE
        .try_with(|cell| {
            let mut line = cell.try_borrow_mut().ok()?;
            let f = format.take()?;
            line.bytes.clear();
            let result = f(&mut line).and_then(|()| out.write_all(&line.bytes));
            if line.bytes.capacity() > KEEP {
                line.bytes = Vec::new();
            }
            Some(result)
        })
        .ok()
        .flatten();
    if let Some(result) = reused {
        return result;
    }
    // The buffer is in use (or, at thread exit, gone): `format` was not taken.
    let Some(f) = format else { return Ok(()) };
    let mut line = LineBuf::default();
    f(&mut line)?;
    out.write_all(&line.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn pieces_arrive_whole_and_in_order() {
        let mut out = Vec::new();
        write_through(&mut out, |line| {
            line.write_all(b"{\"a\":")?;
            for i in 0..1000u32 {
                write!(line, "{i},")?;
            }
            line.write_all(b"}\n")
        })
        .expect("written");
        let mut want = b"{\"a\":".to_vec();
        for i in 0..1000u32 {
            want.extend_from_slice(format!("{i},").as_bytes());
        }
        want.extend_from_slice(b"}\n");
        assert_eq!(out, want);
    }

    #[test]
    fn a_line_logged_while_formatting_another_gets_its_own_buffer() {
        let mut outer = Vec::new();
        write_through(&mut outer, |line| {
            line.write_all(b"outer ")?;
            let mut inner = Vec::new();
            write_through(&mut inner, |l| l.write_all(b"inner"))?;
            line.write_all(&inner)
        })
        .expect("written");
        assert_eq!(outer, b"outer inner");
    }

    #[test]
    fn a_long_line_does_not_keep_its_buffer() {
        let mut out = Vec::new();
        write_through(&mut out, |line| line.write_all(&[b'x'; KEEP * 4])).expect("written");
        assert_eq!(out.len(), KEEP * 4);
        let kept = LINE.with(|cell| cell.borrow().bytes.capacity());
        assert!(kept <= KEEP, "kept {kept} bytes");
    }

    #[test]
    fn an_error_from_the_formatter_is_returned_and_nothing_is_written() {
        let mut out = Vec::new();
        let r = write_through(&mut out, |line| {
            line.write_all(b"half")?;
            Err(io::Error::other("boom"))
        });
        assert!(r.is_err());
        assert!(out.is_empty());
    }
}
