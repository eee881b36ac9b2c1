//! The static (musl) build's global allocator: the C library's `malloc`
//! behind a small, bounded cache of freed blocks.
//!
//! Why: musl's allocator (mallocng) is what keeps the static binary under
//! 4 MiB idle, but each `malloc`/`free` takes its global lock and often
//! returns memory to the kernel, which cost W3 (create a user) ~19% of the
//! glibc build's throughput. mimalloc and glibc's malloc are fast but idle
//! at 5 MiB or more (BENCHMARKS.md, "Static binary"). This cache keeps freed
//! small blocks (≤ 1 KiB, alignment ≤ 16) in per-size-class free lists, so
//! most allocations of the request path never reach `malloc`, while the
//! memory it can hold stays small and bounded: at most [`BIN_BYTES`] or
//! [`MIN_BLOCKS`] blocks, whichever is more, per class in each of
//! [`SHARDS`] shards (about 2.2 MiB in all, far less in practice: a bin
//! fills only with blocks its threads freed).
//!
//! Threads pick a shard once (round robin, a `Cell` in thread-local storage
//! with a constant initialiser: no allocation, no destructor). A freed block
//! goes to the freeing thread's shard; an allocation takes from its own
//! shard first and then from the others, since the request path allocates
//! on one thread and frees on another (`CachingAlloc::pop_any`). A bin is
//! guarded by a try-lock: when another thread holds it, the call goes
//! straight to `malloc`/`free` instead of waiting, so no thread ever spins
//! behind a preempted one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Block sizes cached, in bytes. Every cached block was allocated from
/// `malloc` with exactly its class's size and alignment [`ALIGN`].
const CLASSES: [usize; 14] = [
    16, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024,
];
/// The largest cached size.
const MAX_SMALL: usize = 1024;
/// Alignment of cached blocks (musl's `malloc` alignment on x86_64).
const ALIGN: usize = 16;
/// Shards of bins; threads are spread over them round robin.
pub const SHARDS: usize = 8;
/// Most bytes one bin (one class in one shard) keeps.
pub const BIN_BYTES: usize = 8 * 1024;

/// `CLASS_OF[(size + 15) / 16]`: the smallest class that fits `size`.
const CLASS_OF: [u8; MAX_SMALL / ALIGN + 1] = {
    let mut table = [0u8; MAX_SMALL / ALIGN + 1];
    let mut i = 0;
    while i < table.len() {
        let size = i * ALIGN;
        let mut c = 0;
        while CLASSES[c] < size {
            c += 1;
        }
        table[i] = c as u8;
        i += 1;
    }
    table
};

/// The class of a layout, `None` when it is not cached (too large or
/// over-aligned).
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_SMALL || layout.align() > ALIGN {
        return None;
    }
    Some(CLASS_OF[layout.size().div_ceil(ALIGN)] as usize)
}

/// The layout every block of class `c` has in `malloc`'s eyes.
fn class_layout(c: usize) -> Layout {
    // CLASSES are non-zero multiples of ALIGN, a power of two: always valid.
    Layout::from_size_align(CLASSES[c], ALIGN).unwrap_or(Layout::new::<[u128; 1]>())
}

/// A freed block, reused as a singly linked list node.
struct Node {
    next: *mut Node,
}

/// One size class's free list in one shard. Aligned to a cache line so that
/// threads on different cores using different bins do not contend for one.
#[repr(align(64))]
struct Bin {
    locked: AtomicBool,
    /// The list's first node. Changed only under the lock; read without it
    /// only as a hint (`is_empty`), so an empty bin costs a load, not a
    /// lock, to pass over.
    head: AtomicPtr<Node>,
    len: UnsafeCell<usize>,
}

// SAFETY: `len`, and the nodes `head` leads to, are only read or written by
// the thread that set `locked` from false to true (Acquire) and until it
// stores false (Release), so accesses never overlap and each sees the
// previous holder's writes. `head` is atomic: the unlocked hint reads it.
unsafe impl Sync for Bin {}
// SAFETY: the nodes are blocks owned by the cache, not tied to any thread.
unsafe impl Send for Bin {}

impl Bin {
    const fn new() -> Bin {
        Bin {
            locked: AtomicBool::new(false),
            head: AtomicPtr::new(ptr::null_mut()),
            len: UnsafeCell::new(0),
        }
    }

    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Whether the bin looked empty a moment ago (no lock taken: a hint,
    /// which may be stale either way by the time it is used).
    #[inline(always)]
    fn looks_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// A cached block, if the bin is free and not empty.
    #[inline]
    fn pop(&self) -> *mut u8 {
        if self.looks_empty() || !self.try_lock() {
            return ptr::null_mut();
        }
        // SAFETY: we hold the lock (see `impl Sync`): `head` and the nodes
        // are ours until `unlock`, and Relaxed accesses are ordered by the
        // lock's Acquire/Release. Every node in the list is a block of at
        // least 16 bytes, 16-aligned, that nothing else uses (it was handed
        // to `push` by `dealloc`), so reading its `next` is valid.
        let block = unsafe {
            let head = self.head.load(Ordering::Relaxed);
            if !head.is_null() {
                self.head.store((*head).next, Ordering::Relaxed);
                *self.len.get() -= 1;
            }
            head
        };
        self.unlock();
        block.cast()
    }

    /// Keeps `block` unless the bin is busy or full; false means the caller
    /// must free it.
    ///
    /// # Safety
    /// `block` must be a block of this bin's class, no longer used by anyone.
    #[inline]
    unsafe fn push(&self, block: *mut u8, cap: usize) -> bool {
        if !self.try_lock() {
            return false;
        }
        // SAFETY: we hold the lock; `block` is ours alone (caller's contract)
        // and at least 16 bytes, 16-aligned, so a `Node` fits in it.
        let kept = unsafe {
            if *self.len.get() < cap {
                let node = block.cast::<Node>();
                node.write(Node {
                    next: self.head.load(Ordering::Relaxed),
                });
                self.head.store(node, Ordering::Relaxed);
                *self.len.get() += 1;
                true
            } else {
                false
            }
        };
        self.unlock();
        kept
    }
}

/// Fewest blocks a bin keeps room for, whatever its class's size: the HTTP
/// I/O thread renders the answers to a whole batch of ready connections
/// (one per connection with a request, 64 under the bench) before it frees
/// any, and with room for only `BIN_BYTES / 320` = 25 answers of the
/// common size the rest went to musl's `malloc` and `free` on every batch,
/// which mapped and unmapped a group of them each time (2,400 page faults a
/// second under W1, none with glibc).
pub const MIN_BLOCKS: usize = 64;

/// Most blocks a bin of class `c` keeps.
const fn cap(c: usize) -> usize {
    let by_bytes = BIN_BYTES / CLASSES[c];
    if by_bytes > MIN_BLOCKS {
        by_bytes
    } else {
        MIN_BLOCKS
    }
}

/// See the module documentation.
pub struct CachingAlloc {
    bins: [[Bin; CLASSES.len()]; SHARDS],
    next_shard: AtomicUsize,
}

thread_local! {
    /// This thread's shard, `usize::MAX` until its first allocation.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl CachingAlloc {
    pub const fn new() -> CachingAlloc {
        #[allow(clippy::declare_interior_mutable_const)]
        const BIN: Bin = Bin::new();
        #[allow(clippy::declare_interior_mutable_const)]
        const SHARD_BINS: [Bin; CLASSES.len()] = [BIN; CLASSES.len()];
        CachingAlloc {
            bins: [SHARD_BINS; SHARDS],
            next_shard: AtomicUsize::new(0),
        }
    }

    /// This thread's shard.
    #[inline(always)]
    fn shard(&self) -> usize {
        SHARD
            .try_with(|s| {
                let mut v = s.get();
                if v == usize::MAX {
                    v = self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
                    s.set(v);
                }
                v
            })
            .unwrap_or(0)
    }

    #[inline(always)]
    fn bin(&self, class: usize) -> &Bin {
        &self.bins[self.shard()][class]
    }

    /// A cached block of class `c`: from this thread's shard, else from the
    /// other shards in turn. The request path allocates on one thread and
    /// frees on another — the I/O thread reads a request head and boxes the
    /// job, a worker frees them; a worker renders the answer, the I/O thread
    /// frees it — so a thread's own bin of a class it only allocates stays
    /// empty while the bins of the threads that free it fill up: without the
    /// search, 4.6 of a GET's allocations went to `malloc` and its global
    /// lock (callgrind, W2). Only taking from other shards, never giving to
    /// them, keeps what the cache holds at most what it held before. An
    /// empty bin is passed over by one load, without its lock
    /// ([`Bin::looks_empty`]): the search mostly meets empty bins.
    fn pop_any(&self, c: usize) -> *mut u8 {
        let home = self.shard();
        for i in 0..SHARDS {
            let block = self.bins[(home + i) % SHARDS][c].pop();
            if !block.is_null() {
                return block;
            }
        }
        ptr::null_mut()
    }

    /// Blocks currently cached (for tests).
    pub fn cached_blocks(&self) -> usize {
        let mut n = 0;
        for shard in &self.bins {
            for bin in shard {
                while !bin.try_lock() {
                    std::hint::spin_loop();
                }
                // SAFETY: lock held.
                n += unsafe { *bin.len.get() };
                bin.unlock();
            }
        }
        n
    }
}

impl Default for CachingAlloc {
    fn default() -> Self {
        CachingAlloc::new()
    }
}

// SAFETY: every block handed out is either fresh from `System` or a cached
// block of the same class: the class of a layout is a pure function of it
// (`class_of`), and a block of class c was allocated from `System` with
// `class_layout(c)`, whose size is ≥ every size mapped to c and whose
// alignment (16) is ≥ every alignment mapped to any class. `dealloc` gets
// the layout the block was allocated with (GlobalAlloc's contract), so it
// files the block under the class it came from, or frees it with
// `class_layout(c)`, the layout `System` gave it. Uncached layouts go to
// `System` unchanged in both directions.
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(c) => {
                let block = self.pop_any(c);
                if block.is_null() {
                    // SAFETY: a valid non-zero layout.
                    unsafe { System.alloc(class_layout(c)) }
                } else {
                    block
                }
            }
            // SAFETY: caller's layout, passed through.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class_of(layout) {
            Some(c) => {
                // SAFETY: `block` has class c (see above) and the caller gives it up.
                if !unsafe { self.bin(c).push(block, cap(c)) } {
                    // SAFETY: allocated by System with class_layout(c).
                    unsafe { System.dealloc(block, class_layout(c)) }
                }
            }
            // SAFETY: allocated by System with this layout.
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = match Layout::from_size_align(new_size, layout.align()) {
            Ok(l) => l,
            Err(_) => return ptr::null_mut(),
        };
        match (class_of(layout), class_of(new_layout)) {
            // The block already has room: same class.
            (Some(a), Some(b)) if a == b => block,
            // SAFETY: allocated by System with `layout` (uncached).
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a valid layout; on success the old block is copied
                // (the smaller size) and given back under its own layout.
                unsafe {
                    let fresh = self.alloc(new_layout);
                    if !fresh.is_null() {
                        ptr::copy_nonoverlapping(block, fresh, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    fresh
                }
            }
        }
    }
}

/// Fixes glibc's `malloc` threshold for serving large blocks from `mmap` at
/// its default, 128 KiB (glibc builds only; the static build's allocator is
/// above). Why: glibc raises the threshold each time it frees an `mmap`ed
/// block, up to 32 MiB, so that after the first request bodies were freed,
/// later ones up to that size come from its arenas, and freeing them there
/// leaves their pages resident. 150 clients holding 1 MiB bodies against a
/// 16 MiB `MAX_BODY_BUFFER` then grew RSS by up to 18.4 MiB: the refused
/// bodies' freed buffers, beyond the bound ARCHITECTURE.md states. A fixed
/// threshold gives every large block back to the kernel when it is freed.
#[cfg(target_env = "gnu")]
pub fn return_large_blocks() {
    // SAFETY: `mallopt` only sets a parameter of glibc's allocator; it is
    // called first thing in `main`, before any other thread exists (glibc
    // marks it MT-Unsafe), with a valid parameter and value. Its result (0 on
    // failure) only means the default behaviour stays.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// [`return_large_blocks`] has nothing to set outside glibc.
#[cfg(not(target_env = "gnu"))]
pub fn return_large_blocks() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_small_size_maps_to_the_smallest_class_that_fits() {
        for size in 1..=MAX_SMALL {
            let c = class_of(Layout::from_size_align(size, 1).expect("layout")).expect("small");
            assert!(CLASSES[c] >= size, "size {size} in class {}", CLASSES[c]);
            assert!(
                c == 0 || CLASSES[c - 1] < size,
                "size {size}: a smaller class fits"
            );
        }
        assert_eq!(class_of(Layout::from_size_align(1025, 8).expect("l")), None);
        assert_eq!(class_of(Layout::from_size_align(64, 32).expect("l")), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_the_cache_is_bounded() {
        let a = CachingAlloc::new();
        let l = Layout::from_size_align(100, 8).expect("layout");
        // SAFETY: valid layouts; every block is freed once with its layout.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            p.write_bytes(0xAB, 100);
            a.dealloc(p, l);
            assert_eq!(a.cached_blocks(), 1);
            // Same class (97..=128): the same block comes back.
            let q = a.alloc(Layout::from_size_align(120, 16).expect("layout"));
            assert_eq!(q, p);
            a.dealloc(q, Layout::from_size_align(120, 16).expect("layout"));

            let many: Vec<_> = (0..1000).map(|_| a.alloc(l)).collect();
            for p in many {
                a.dealloc(p, l);
            }
        }
        // One thread, one shard: at most one bin's worth is kept.
        assert_eq!(a.cached_blocks(), cap(class_of(l).expect("small")));
    }

    /// On a new thread (a shard of its own): allocates three blocks of `l`
    /// from `a` and frees them; returns the thread's shard and the blocks'
    /// addresses.
    fn churn_three_on_a_new_thread(a: &Arc<CachingAlloc>, l: Layout) -> (usize, Vec<usize>) {
        let a = Arc::clone(a);
        std::thread::spawn(move || {
            // SAFETY: valid layout; each block is freed once, with it.
            unsafe {
                let blocks: Vec<_> = (0..3).map(|_| a.alloc(l)).collect();
                let mut addrs: Vec<usize> = blocks.iter().map(|p| *p as usize).collect();
                for p in blocks {
                    a.dealloc(p, l);
                }
                addrs.sort_unstable();
                (a.shard(), addrs)
            }
        })
        .join()
        .expect("thread")
    }

    /// A block freed on one thread's shard serves an allocation on a thread
    /// of another shard (the I/O thread allocates what workers free).
    #[test]
    fn a_thread_takes_blocks_another_shard_cached() {
        let a = Arc::new(CachingAlloc::new());
        let l = Layout::from_size_align(200, 8).expect("layout");
        let (freer_shard, freed) = churn_three_on_a_new_thread(&a, l);
        assert_eq!(a.cached_blocks(), 3);
        let (taker_shard, taken) = churn_three_on_a_new_thread(&a, l);
        assert_ne!(freer_shard, taker_shard, "two threads, two shards");
        assert_eq!(taken, freed, "the other shard's blocks were reused");
        // Taking never adds: the three blocks, now in the taker's shard.
        assert_eq!(a.cached_blocks(), 3);
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_to_large() {
        let a = CachingAlloc::new();
        // SAFETY: valid layouts; each block is used within its size and freed once.
        unsafe {
            let l = Layout::from_size_align(10, 1).expect("layout");
            let p = a.alloc(l);
            for i in 0..10 {
                p.add(i).write(i as u8);
            }
            let p = a.realloc(p, l, 14); // same class: same block
            let p = a.realloc(p, Layout::from_size_align(14, 1).expect("l"), 700);
            let p = a.realloc(p, Layout::from_size_align(700, 1).expect("l"), 5000);
            for i in 0..10 {
                assert_eq!(p.add(i).read(), i as u8);
            }
            let p = a.realloc(p, Layout::from_size_align(5000, 1).expect("l"), 3);
            assert_eq!(p.add(2).read(), 2);
            a.dealloc(p, Layout::from_size_align(3, 1).expect("l"));
        }
    }

    #[test]
    fn threads_allocating_and_freeing_across_each_other_never_share_a_block() {
        let a = Arc::new(CachingAlloc::new());
        let (tx, rx) = std::sync::mpsc::channel::<(usize, u8)>();
        let producers: Vec<_> = (0..4u8)
            .map(|t| {
                let a = Arc::clone(&a);
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let l = Layout::from_size_align(48, 8).expect("layout");
                    for _ in 0..5000 {
                        // SAFETY: valid layout; the block goes to the consumer, which frees it.
                        let p = unsafe { a.alloc(l) };
                        // SAFETY: 48 bytes, ours.
                        unsafe { p.write_bytes(t, 48) };
                        tx.send((p as usize, t)).expect("send");
                    }
                })
            })
            .collect();
        drop(tx);
        let l = Layout::from_size_align(48, 8).expect("layout");
        for (p, t) in rx {
            let p = p as *mut u8;
            // SAFETY: the producer wrote 48 bytes of `t` and gave the block up.
            unsafe {
                for i in 0..48 {
                    assert_eq!(p.add(i).read(), t, "a block was handed out twice");
                }
                a.dealloc(p, l);
            }
        }
        for p in producers {
            p.join().expect("producer");
        }
        assert!(a.cached_blocks() <= SHARDS * cap(2));
    }
}
