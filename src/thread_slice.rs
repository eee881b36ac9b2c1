//! A latency hint for the HTTP I/O thread: a short scheduler slice.
//!
//! Every request passes through the one I/O thread, and it works in short bursts (read, parse,
//! hand over, write). Under CPU contention — 25 workers, PostgreSQL and a load generator on two
//! cores, or a neighbour on a shared host — Linux's fair scheduler (EEVDF) queues it behind
//! threads that run for their whole default slice, and then every connection waits. Since
//! Linux 6.12 a thread of the normal policy may ask for a shorter slice (`sched_attr`'s
//! `sched_runtime`, 0.1–100 ms, no privilege needed): it gets an earlier virtual deadline, so it
//! runs sooner after it wakes, for shorter turns — its share of the CPU is unchanged.
//! Measured with `scripts/bench/slice_ab.sh` (BENCHMARKS.md, "Final run of December 6,
//! night"): W2's p99 at the host's default scheduling lower in every pair of runs (e.g. 41 →
//! 27 ms, 29 → 17 ms), req/s unchanged within the noise.
//!
//! Older kernels accept the call and ignore the field; [`request`] tells the two apart by
//! reading the attribute back. A seccomp filter that refuses the call (`EPERM`) costs the hint
//! only; the systemd unit allows it explicitly.

use std::io;
use std::time::Duration;

/// The slice the I/O thread asks for: the kernel's minimum.
pub const IO_THREAD_SLICE: Duration = Duration::from_micros(100);

/// `struct sched_attr` as of Linux 3.14 (`SCHED_ATTR_SIZE_VER0`, 48 bytes); the kernel reads
/// and writes as many bytes as `size` says.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// What became of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel applied the slice (Linux 6.12+).
    Applied,
    /// The kernel took the call but has no custom slices: nothing changed.
    Unsupported,
}

/// Asks the kernel for a `slice` for the calling thread, keeping its policy and nice value.
pub fn request(slice: Duration) -> io::Result<Outcome> {
    let mut attr = get()?;
    attr.runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    set(&attr)?;
    Ok(if get()?.runtime == attr.runtime {
        Outcome::Applied
    } else {
        Outcome::Unsupported
    })
}

fn get() -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a live, writable, properly aligned `repr(C)` struct of `size` bytes with
    // the kernel's `sched_attr` layout (VER0); pid 0 is the calling thread, flags must be 0. The
    // kernel writes at most `size` bytes into it and keeps no pointer after returning.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr)
}

fn set(attr: &SchedAttr) -> io::Result<()> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        // No reset-on-fork, no utilisation clamps.
        flags: 0,
        ..*attr
    };
    // SAFETY: `attr` is a live, properly aligned `repr(C)` struct whose `size` field is its own
    // size; the kernel only reads it (at most `size` bytes) during the call. pid 0 is the
    // calling thread, flags must be 0.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_is_the_kernels_first_version() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 48);
    }

    /// The slice the scheduler reports for the calling thread (`se.slice`, ns), if it does.
    fn reported_slice() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = text.lines().find(|l| l.starts_with("se.slice"))?;
        line.rsplit(':').next()?.trim().parse().ok()
    }

    /// Linux 6.12 brought custom slices for the normal policy.
    fn kernel_has_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) >= (6, 12)
    }

    #[test]
    fn a_thread_gets_its_slice_where_the_kernel_has_them() {
        std::thread::spawn(|| {
            let before = get().expect("sched_getattr");
            let outcome = request(Duration::from_micros(300)).expect("sched_setattr");
            let after = get().expect("sched_getattr");
            // Policy and nice value are kept.
            assert_eq!((after.policy, after.nice), (before.policy, before.nice));
            assert_eq!(
                outcome == Outcome::Applied,
                kernel_has_custom_slices(),
                "{outcome:?}"
            );
            if outcome == Outcome::Applied {
                assert_eq!(after.runtime, 300_000);
                if let Some(slice) = reported_slice() {
                    assert_eq!(slice, 300_000, "what the scheduler uses");
                }
            }
        })
        .join()
        .expect("thread");
    }
}
