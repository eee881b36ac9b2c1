//! The static (musl) build's `memcpy` and `memmove`.
//!
//! Why: musl's x86_64 `memcpy` is one `rep movsq` with byte loops before and
//! after it, so every copy, even of 5 bytes, pays the string instruction's
//! start-up and up to 14 single-byte moves. Rust calls `memcpy` for every
//! move of a struct larger than a few words: 57 calls per `POST
//! /api/v1/users`, 12 per `GET /healthz`, a third to a half of them of 16
//! bytes or fewer, a third of 257 to 1,024 bytes (measured with `perf
//! probe` under the bench's workloads). Under W3 musl's `memcpy` took 5.8%
//! of the process's CPU against 1.35% for glibc's. These two functions take
//! its place in the static binary (the link takes a symbol from the C
//! library's archive only when no object defines it); the glibc build keeps
//! glibc's. BENCHMARKS.md ("Static binary") has the before and after.
//!
//! How:
//! - up to 128 bytes: every byte is loaded into registers first, as a head
//!   and a tail chunk that may overlap (two 8-byte words for 9 to 16 bytes,
//!   eight 16-byte vectors for 65 to 128), then stored. No loop, no branch
//!   per byte, and overlapping buffers are harmless, so one path serves
//!   both functions;
//! - longer: a loop of 64-byte blocks (the last 64 bytes loaded before the
//!   loop and stored after it), forwards when the destination lies below the
//!   source or apart from it, backwards otherwise; from [`REP_MIN`] bytes on,
//!   when the buffers do not overlap, `rep movsq`, which moves whole cache
//!   lines at a time on current x86_64 cores.
//!
//! The loops are inline assembly on purpose: the optimiser recognises a copy
//! loop written in Rust and replaces it with a call to `memcpy`, which here
//! would call itself. The straight-line parts use SSE2 loads and stores
//! (part of every x86_64 CPU) and integer loads of at most 8 bytes, which the
//! compiler never turns into calls.

use std::arch::asm;
use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_storeu_si128};
use std::ptr;

/// From this size on, a copy between buffers that do not overlap uses
/// `rep movsq` instead of the 64-byte loop: below it the instruction's
/// start-up outweighs what it saves. Not tuned here; the bench's copies are
/// almost all shorter (see the module doc).
pub const REP_MIN: usize = 2048;

/// `memcpy(3)` for the static build.
///
/// # Safety
///
/// As `memcpy(3)`: `src` readable and `dest` writable for `n` bytes (any
/// alignment). Overlap is allowed too (this is also [`memmove`]).
#[cfg_attr(target_env = "musl", unsafe(no_mangle))]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract is `copy`'s.
    unsafe { copy(dest, src, n) };
    dest
}

/// `memmove(3)` for the static build. It must be defined together with
/// [`memcpy`]: musl's `memmove` jumps into musl's `memcpy` object, whose
/// `memcpy` would then clash with ours at link time.
///
/// # Safety
///
/// As `memmove(3)`: `src` readable and `dest` writable for `n` bytes, any
/// alignment, the two may overlap.
#[cfg_attr(target_env = "musl", unsafe(no_mangle))]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract is `copy`'s.
    unsafe { copy(dest, src, n) };
    dest
}

/// Copies `n` bytes from `src` to `dest`, which may overlap.
///
/// # Safety
///
/// `src` readable and `dest` writable for `n` bytes.
#[inline(always)]
unsafe fn copy(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY (every block below): each access stays within `[0, n)` of its
    // buffer, which the caller vouches for: a chunk of size k is read or
    // written at offset 0 or `n - k` only where `n >= k`, and the unaligned
    // SSE2 and integer loads and stores accept any alignment. Every chunk is
    // loaded before the first store, so overlap cannot change what is read.
    unsafe {
        match n {
            0 => {}
            1 => *dest = *src,
            2..=3 => {
                let (a, b) = (load::<u16>(src, 0), load::<u16>(src, n - 2));
                store(dest, 0, a);
                store(dest, n - 2, b);
            }
            4..=7 => {
                let (a, b) = (load::<u32>(src, 0), load::<u32>(src, n - 4));
                store(dest, 0, a);
                store(dest, n - 4, b);
            }
            8..=16 => {
                let (a, b) = (load::<u64>(src, 0), load::<u64>(src, n - 8));
                store(dest, 0, a);
                store(dest, n - 8, b);
            }
            17..=32 => {
                let (a, b) = (vload(src, 0), vload(src, n - 16));
                vstore(dest, 0, a);
                vstore(dest, n - 16, b);
            }
            33..=64 => {
                let head = [vload(src, 0), vload(src, 16)];
                let tail = [vload(src, n - 32), vload(src, n - 16)];
                vstore(dest, 0, head[0]);
                vstore(dest, 16, head[1]);
                vstore(dest, n - 32, tail[0]);
                vstore(dest, n - 16, tail[1]);
            }
            65..=128 => {
                let head = load64(src);
                let tail = load64(src.add(n - 64));
                store64(dest, head);
                store64(dest.add(n - 64), tail);
            }
            _ => copy_long(dest, src, n),
        }
    }
}

/// Copies `n > 128` bytes from `src` to `dest`, which may overlap.
///
/// # Safety
///
/// `src` readable and `dest` writable for `n` bytes.
#[inline(never)]
unsafe fn copy_long(dest: *mut u8, src: *const u8, n: usize) {
    let apart = (dest as usize).abs_diff(src as usize) >= n;
    // Forwards is safe when the destination starts below the source (each
    // block is read before the blocks it could overwrite are reached) or when
    // the two do not overlap; otherwise backwards.
    let forwards = apart || (dest as usize) < (src as usize);
    // SAFETY: `n > 128`; the last (forwards) or first (backwards) 64 bytes
    // are held in registers before the loop, the loop moves the rest in
    // 64-byte blocks that stay within `[0, n)` (see the two functions), and
    // the held bytes are stored last, so overlap cannot change what is read.
    unsafe {
        if forwards {
            let tail = load64(src.add(n - 64));
            if apart && n >= REP_MIN {
                rep_movsq(dest, src, n - 64);
            } else {
                loop_forwards(dest, src, n - 64);
            }
            store64(dest.add(n - 64), tail);
        } else {
            let head = load64(src);
            loop_backwards(dest, src, n);
            store64(dest, head);
        }
    }
}

/// Copies at least the first `len > 64` bytes, and never more than `len +
/// 63`, in 64-byte blocks from the start.
///
/// # Safety
///
/// `src` readable and `dest` writable for `len + 64` bytes; `dest` below
/// `src`, or the two apart.
unsafe fn loop_forwards(dest: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the block at offset i is copied while i < len, so every access
    // lies below len + 64 (the caller's bound). Flags change (`sub`); the
    // direction flag is not touched; xmm0-3 are declared clobbered.
    unsafe {
        asm!(
            "2:",
            "movups xmm0, xmmword ptr [rsi]",
            "movups xmm1, xmmword ptr [rsi + 16]",
            "movups xmm2, xmmword ptr [rsi + 32]",
            "movups xmm3, xmmword ptr [rsi + 48]",
            "movups xmmword ptr [rdi], xmm0",
            "movups xmmword ptr [rdi + 16], xmm1",
            "movups xmmword ptr [rdi + 32], xmm2",
            "movups xmmword ptr [rdi + 48], xmm3",
            "add rsi, 64",
            "add rdi, 64",
            "sub rcx, 64",
            "ja 2b",
            inout("rdi") dest => _,
            inout("rsi") src => _,
            inout("rcx") len => _,
            out("xmm0") _,
            out("xmm1") _,
            out("xmm2") _,
            out("xmm3") _,
            options(nostack),
        );
    }
}

/// Copies the bytes `[k, n)` for some `k` in `(0, 64]`, in 64-byte blocks
/// from the end.
///
/// # Safety
///
/// `n > 64`; `src` readable and `dest` writable for `n` bytes; `dest` above
/// `src`, or the two apart.
unsafe fn loop_backwards(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the pointers start at the ends; a block is copied while more
    // than 64 bytes remain before its end, so the lowest block starts at an
    // offset in (0, 64] and every access lies within [0, n). Flags change;
    // the direction flag is not touched; xmm0-3 are declared clobbered.
    unsafe {
        asm!(
            "2:",
            "sub rsi, 64",
            "sub rdi, 64",
            "movups xmm0, xmmword ptr [rsi]",
            "movups xmm1, xmmword ptr [rsi + 16]",
            "movups xmm2, xmmword ptr [rsi + 32]",
            "movups xmm3, xmmword ptr [rsi + 48]",
            "movups xmmword ptr [rdi], xmm0",
            "movups xmmword ptr [rdi + 16], xmm1",
            "movups xmmword ptr [rdi + 32], xmm2",
            "movups xmmword ptr [rdi + 48], xmm3",
            "sub rcx, 64",
            "ja 2b",
            inout("rdi") dest.add(n) => _,
            inout("rsi") src.add(n) => _,
            inout("rcx") n - 64 => _,
            out("xmm0") _,
            out("xmm1") _,
            out("xmm2") _,
            out("xmm3") _,
            options(nostack),
        );
    }
}

/// Copies the first `len` bytes, rounded up to whole 8-byte words.
///
/// # Safety
///
/// `src` readable and `dest` writable for `len + 7` bytes; the two apart.
unsafe fn rep_movsq(dest: *mut u8, src: *const u8, len: usize) {
    // SAFETY: `len.div_ceil(8)` words cover at most `len + 7` bytes. The
    // System V ABI has the direction flag clear on entry to any function, so
    // `rep movsq` runs forwards; it changes no flag.
    unsafe {
        asm!(
            "rep movsq",
            inout("rdi") dest => _,
            inout("rsi") src => _,
            inout("rcx") len.div_ceil(8) => _,
            options(nostack, preserves_flags),
        );
    }
}

/// An unaligned integer load at `src + offset`.
///
/// # Safety
///
/// `size_of::<T>()` bytes readable there.
#[inline(always)]
unsafe fn load<T: Copy>(src: *const u8, offset: usize) -> T {
    // SAFETY: the caller's contract; `read_unaligned` takes any alignment.
    unsafe { ptr::read_unaligned(src.add(offset).cast::<T>()) }
}

/// An unaligned integer store at `dest + offset`.
///
/// # Safety
///
/// `size_of::<T>()` bytes writable there.
#[inline(always)]
unsafe fn store<T: Copy>(dest: *mut u8, offset: usize, value: T) {
    // SAFETY: the caller's contract; `write_unaligned` takes any alignment.
    unsafe { ptr::write_unaligned(dest.add(offset).cast::<T>(), value) }
}

/// An unaligned 16-byte load at `src + offset`.
///
/// # Safety
///
/// 16 bytes readable there.
#[inline(always)]
unsafe fn vload(src: *const u8, offset: usize) -> __m128i {
    // SAFETY: the caller's contract; `movdqu` takes any alignment, and SSE2
    // is part of x86_64.
    unsafe { _mm_loadu_si128(src.add(offset).cast()) }
}

/// An unaligned 16-byte store at `dest + offset`.
///
/// # Safety
///
/// 16 bytes writable there.
#[inline(always)]
unsafe fn vstore(dest: *mut u8, offset: usize, value: __m128i) {
    // SAFETY: as `vload`.
    unsafe { _mm_storeu_si128(dest.add(offset).cast(), value) }
}

/// 64 bytes at `src`, held in four registers (not an array, which the
/// compiler could copy through the stack with a call to `memcpy`).
///
/// # Safety
///
/// 64 bytes readable at `src`.
#[inline(always)]
unsafe fn load64(src: *const u8) -> (__m128i, __m128i, __m128i, __m128i) {
    // SAFETY: the caller's contract.
    unsafe {
        (
            vload(src, 0),
            vload(src, 16),
            vload(src, 32),
            vload(src, 48),
        )
    }
}

/// Stores what [`load64`] held.
///
/// # Safety
///
/// 64 bytes writable at `dest`.
#[inline(always)]
unsafe fn store64(dest: *mut u8, (a, b, c, d): (__m128i, __m128i, __m128i, __m128i)) {
    // SAFETY: the caller's contract.
    unsafe {
        vstore(dest, 0, a);
        vstore(dest, 16, b);
        vstore(dest, 32, c);
        vstore(dest, 48, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ at every offset within any 251-byte window.
    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
    }

    /// Sizes that reach every branch and both sides of every boundary.
    fn sizes() -> Vec<usize> {
        let mut sizes: Vec<usize> = (0..=300).collect();
        for edge in [511, 512, 513, 1023, 1024, 1025, REP_MIN, 4096, 65536] {
            sizes.extend([edge - 1, edge, edge + 1, edge + 7]);
        }
        sizes.extend([REP_MIN - 64, REP_MIN + 63, 100_003]);
        sizes
    }

    #[test]
    fn copies_every_size_at_every_alignment_and_nothing_else() {
        const GUARD: usize = 80;
        for n in sizes() {
            let offsets: &[usize] = if n <= 300 {
                &[0, 1, 3, 7, 8, 15]
            } else {
                &[0, 5]
            };
            for &s in offsets {
                for &d in offsets {
                    let src = pattern(n + s, n);
                    let mut buf = vec![0xEEu8; GUARD + d + n + GUARD];
                    for f in [memcpy, memmove] {
                        buf.fill(0xEE);
                        // SAFETY: `src[s..]` holds n bytes, `buf` holds n
                        // bytes from GUARD + d; the two are apart.
                        let ret =
                            unsafe { f(buf.as_mut_ptr().add(GUARD + d), src.as_ptr().add(s), n) };
                        assert_eq!(ret, buf.as_mut_ptr().wrapping_add(GUARD + d));
                        assert!(
                            buf[GUARD + d..GUARD + d + n] == src[s..],
                            "n={n} s={s} d={d}"
                        );
                        assert!(
                            buf[..GUARD + d].iter().all(|&b| b == 0xEE),
                            "wrote before, n={n}"
                        );
                        assert!(
                            buf[GUARD + d + n..].iter().all(|&b| b == 0xEE),
                            "wrote after, n={n}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn overlapping_moves_match_copy_within() {
        for n in sizes().into_iter().filter(|&n| n <= 5000) {
            let shifts: Vec<isize> = if n <= 300 {
                (-70..=70).collect()
            } else {
                vec![-1, -8, -63, -64, -65, -200, 1, 8, 63, 64, 65, 200, 1000]
            };
            for shift in shifts {
                let base = 1200;
                let data = pattern(base + n + base, n + 1);
                let to = base
                    .checked_add_signed(shift)
                    .expect("shift within the margin");
                let mut expected = data.clone();
                expected.copy_within(base..base + n, to);
                let mut got = data.clone();
                // SAFETY: both ranges lie inside `got` (the margins exceed
                // every shift).
                unsafe { memmove(got.as_mut_ptr().add(to), got.as_ptr().add(base), n) };
                assert!(got == expected, "n={n} shift={shift}");
            }
        }
    }
}
