//! One response buffer per thread, used again for the next response.
//!
//! Why: a worker renders each response into a buffer and writes it to the socket at once
//! ([`crate::conn`]'s `write_now`). When the socket takes it all — nearly always — the buffer
//! is empty again; handing it to the I/O thread only to be freed there cost an allocation on
//! one thread and a free on another for every response (about 500 instructions of glibc's
//! `malloc`, most of them the cross-thread free). Kept here, the next response on this thread
//! renders into the same memory. A response the socket did not take whole still goes to the
//! I/O thread with its buffer; this thread then starts a new one.
//!
//! Bound: one buffer per thread that answers, kept only while its capacity is at most
//! [`KEEP_AT_MOST`]; a larger one is freed when it comes back.

use std::cell::Cell;

/// The largest capacity a thread keeps between responses.
pub(crate) const KEEP_AT_MOST: usize = 16 * 1024;

thread_local! {
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes: this thread's spare when it has
/// one.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    let mut buf = SPARE.try_with(Cell::take).unwrap_or_default();
    buf.reserve(capacity);
    buf
}

/// Gives a buffer back for this thread's next response; its bytes are dropped.
pub(crate) fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > KEEP_AT_MOST {
        return;
    }
    buf.clear();
    // During thread exit the spare is gone: the buffer is simply freed.
    let _ = SPARE.try_with(|spare| spare.set(buf));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_the_next_one_taken() {
        let mut first = take(100);
        first.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let at = first.as_ptr();
        give_back(first);
        let second = take(50);
        assert!(second.is_empty(), "bytes of the last response are dropped");
        assert_eq!(second.as_ptr(), at, "the same memory is used again");
        assert!(second.capacity() >= 100);
    }

    #[test]
    fn a_large_buffer_is_not_kept() {
        let big = take(KEEP_AT_MOST + 1);
        give_back(big);
        let next = take(10);
        assert!(
            next.capacity() <= KEEP_AT_MOST,
            "a fresh buffer, not the large one"
        );
    }
}
