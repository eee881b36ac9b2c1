//! The log lines of an HTTP I/O thread, written in batches.
//!
//! Why: an I/O thread answers probes, 404s and shed requests (503, queue
//! full) inline, each with its `request completed` line. Under overload it
//! sheds thousands of requests a second, and one `write(2)` per line was a
//! large share of what each shed cost: CPU taken from the requests being
//! served. So a thread that calls [`flush_this_thread`] (the I/O threads do,
//! through tiny_http's `before_wait` hook, each time they are about to wait
//! for events) has its lines appended to a buffer of its own and written
//! with one call at that point, or as soon as [`MAX_BATCH`] bytes are held.
//! Every other thread (workers, the outbox, main) writes each line at once.
//! Lines are whole either way, and no thread's lines interleave with
//! another's.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Bytes held before a batch is written regardless.
pub const MAX_BATCH: usize = 64 * 1024;

/// Where lines end up (stdout, or a test's writer).
pub(crate) type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// The sink of the installed logger, for [`flush_this_thread`].
static SINK: OnceLock<Sink> = OnceLock::new();

thread_local! {
    /// This thread's held lines; `None` until it first calls [`flush_this_thread`].
    static BATCH: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// The writer env_logger writes each formatted line to.
pub(crate) struct Batching {
    sink: Sink,
}

impl Batching {
    /// Installs `sink` as the process's log sink (once) and returns its writer.
    pub(crate) fn install(sink: Sink) -> Batching {
        let _ = SINK.set(Arc::clone(&sink));
        Batching { sink }
    }
}

fn write_to(sink: &Sink, bytes: &[u8]) -> io::Result<()> {
    let mut out = sink.lock().unwrap_or_else(PoisonError::into_inner);
    out.write_all(bytes)?;
    out.flush()
}

/// What [`Batching::write`] does with a line on the calling thread.
enum Line {
    /// The thread does not batch: written at once.
    Direct,
    /// Held until the thread flushes.
    Held,
    /// Held, and the batch is now full: written with it.
    Full(Vec<u8>),
}

impl Write for Batching {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let what = BATCH.with(|b| match b.borrow_mut().as_mut() {
            None => Line::Direct,
            Some(held) => {
                held.extend_from_slice(line);
                if held.len() >= MAX_BATCH {
                    Line::Full(std::mem::take(held))
                } else {
                    Line::Held
                }
            }
        });
        match what {
            Line::Direct => write_to(&self.sink, line)?,
            Line::Held => {}
            Line::Full(batch) => write_to(&self.sink, &batch)?,
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes this thread's held lines in one call; the first call turns
/// batching on for the calling thread.
pub fn flush_this_thread() {
    BATCH.with(|b| {
        let mut b = b.borrow_mut();
        let Some(held) = b.as_mut() else {
            *b = Some(Vec::new());
            return;
        };
        if held.is_empty() {
            return;
        }
        if let Some(sink) = SINK.get() {
            // A log sink that fails has nobody left to tell.
            let _ = write_to(sink, held);
        }
        held.clear();
        // Keep the allocation for the next batch unless a burst made it large.
        held.shrink_to(MAX_BATCH);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn writes(r: &Recorder) -> Vec<String> {
        r.0.lock()
            .expect("lock")
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    #[test]
    fn a_thread_that_flushes_batches_its_lines_and_others_do_not() {
        let rec = Recorder::default();
        let sink: Sink = Arc::new(Mutex::new(Box::new(rec.clone())));
        // Not through SINK (a process-wide OnceLock other tests may set):
        // flush by hand through the same path.
        let mut w = Batching {
            sink: Arc::clone(&sink),
        };
        std::thread::spawn(move || {
            w.write_all(b"one\n").expect("write");
            assert_eq!(writes(&rec), ["one\n"], "written at once before batching");
            BATCH.with(|b| *b.borrow_mut() = Some(Vec::new()));
            w.write_all(b"two\n").expect("write");
            w.write_all(b"three\n").expect("write");
            assert_eq!(writes(&rec), ["one\n"], "held");
            let held = BATCH.with(|b| b.borrow_mut().as_mut().map(std::mem::take));
            write_to(&sink, &held.expect("batching")).expect("flush");
            assert_eq!(writes(&rec), ["one\n", "two\nthree\n"], "one write");
            let big = vec![b'x'; MAX_BATCH];
            w.write_all(&big).expect("write");
            assert_eq!(writes(&rec).len(), 3, "a full batch is written at once");
        })
        .join()
        .expect("thread");
    }
}
