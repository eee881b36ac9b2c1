//! Shared by the benches: an allocation-counting global allocator and a
//! median-of-rounds timer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Counts allocation calls and forwards everything to the system allocator.
pub struct Counting;

pub static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, whose implementation meets
// the `GlobalAlloc` contract; so blocks we return are exactly `System`'s (valid for `layout`),
// and we hand back to `System` only blocks it gave out, with the layout they were allocated with
// (our callers promise that to us, and we pass it on). The only other work is a relaxed atomic
// increment, which neither allocates (no re-entrancy into the allocator) nor panics (it wraps).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: `ptr` came from `System` via this allocator with `layout`; forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` via this allocator with `layout`; forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

const LINES_PER_ROUND: u32 = 200_000;
const ROUNDS: usize = 7;

/// Runs `line` in rounds after a warm-up; returns (median ns per line, allocations per line).
pub fn measure(mut line: impl FnMut()) -> (f64, f64) {
    for _ in 0..10_000 {
        line();
    }
    let mut ns = Vec::with_capacity(ROUNDS);
    let mut allocs = 0;
    for _ in 0..ROUNDS {
        let before = ALLOCS.load(Relaxed);
        let start = Instant::now();
        for _ in 0..LINES_PER_ROUND {
            line();
        }
        let elapsed = start.elapsed();
        allocs += ALLOCS.load(Relaxed) - before;
        ns.push(elapsed.as_nanos() as f64 / f64::from(LINES_PER_ROUND));
    }
    ns.sort_by(f64::total_cmp);
    let per_line = allocs as f64 / (ROUNDS as f64 * f64::from(LINES_PER_ROUND));
    (ns[ROUNDS / 2], per_line)
}
