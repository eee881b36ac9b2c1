//! `cargo bench --bench log_line`: the cost of one realistic `request completed` log line.
//!
//! Three measurements, each reporting nanoseconds per line (median of rounds) and heap
//! allocations per line (counted by a wrapping `GlobalAlloc`):
//! - `json, pure`: [`write_json`] into a reused `Vec<u8>` — the formatter alone;
//! - `text, pure`: [`write_text`] likewise;
//! - `json, log::info!`: the installed logger end to end — the `log` macro, our filter,
//!   env_logger's per-thread buffer, the formatter, and a locked write to a sink.
//!
//! The line: message `request completed`, 7 key/values (`method`, `path`, `route`, `status`,
//! `duration_ms`, `bytes`, `remote_addr`) and a request context with trace and span ids, stamped
//! with `SystemTime::now()` each time, as in production.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use log::kv::Value;
use log::{Level, LevelFilter, Record};
use usersvc::logging::format::{write_json, write_text};
use usersvc::logging::{self, context, LogFormat, LogSettings, RequestContext, RequestId};

/// Counts allocation calls and forwards everything to the system allocator.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

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

#[global_allocator]
static GLOBAL: Counting = Counting;

const LINES_PER_ROUND: u32 = 200_000;
const ROUNDS: usize = 7;

/// Runs `line` in rounds after a warm-up; returns (median ns per line, allocations per line).
fn measure(mut line: impl FnMut()) -> (f64, f64) {
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

fn main() -> io::Result<()> {
    let remote: SocketAddr = "10.0.0.7:51234".parse().expect("address");
    let _ctx = context::enter(RequestContext {
        request_id: RequestId::from_uuid(uuid::Uuid::from_u128(
            0x6f1c_2f7a_1b3e_4c5d_9e8f_0a1b_2c3d_4e5f,
        )),
        trace_id: Some([0x4b; 16]),
        span_id: Some([0x00; 8]),
    });
    let kvs: [(&str, Value<'_>); 7] = [
        ("method", Value::from("GET")),
        ("path", Value::from("/api/v1/users/42")),
        ("route", Value::from("/api/v1/users/{id}")),
        ("status", Value::from(200u16)),
        ("duration_ms", Value::from(1.734f64)),
        ("bytes", Value::from(512u64)),
        ("remote_addr", Value::from_display(&remote)),
    ];

    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut pure = |write: fn(&mut Vec<u8>, SystemTime, &Record<'_>) -> io::Result<()>| {
        measure(|| {
            buf.clear();
            let record = Record::builder()
                .level(Level::Info)
                .target("usersvc::http::worker")
                .args(format_args!("request completed"))
                .key_values(&kvs)
                .build();
            write(&mut buf, SystemTime::now(), &record).expect("Vec write");
            black_box(&buf);
        })
    };
    let json = pure(write_json::<Vec<u8>>);
    let text = pure(write_text::<Vec<u8>>);

    let mut sample = Vec::new();
    let record = Record::builder()
        .level(Level::Info)
        .target("usersvc::http::worker")
        .args(format_args!("request completed"))
        .key_values(&kvs)
        .build();
    write_json(&mut sample, SystemTime::now(), &record)?;

    logging::init_with_writer(
        LogSettings {
            level: LevelFilter::Info,
            format: LogFormat::Json,
        },
        Box::new(io::sink()),
    )
    .expect("logger");
    let (method, path, route) = ("GET", "/api/v1/users/42", "/api/v1/users/{id}");
    let (status, duration_ms, bytes) = (200u16, 1.734f64, 512u64);
    let installed = measure(|| {
        log::info!(
            target: "usersvc::http::worker",
            method, path, route, status, duration_ms, bytes, remote_addr:% = remote;
            "request completed"
        );
    });

    let mut out = io::stdout().lock();
    writeln!(
        out,
        "sample line ({} bytes):\n{}",
        sample.len() - 1,
        String::from_utf8_lossy(&sample).trim_end()
    )?;
    writeln!(
        out,
        "{:<22} {:>10} {:>14}",
        "log_line", "ns/line", "allocs/line"
    )?;
    for (name, (ns, allocs)) in [
        ("json, pure", json),
        ("text, pure", text),
        ("json, log::info!", installed),
    ] {
        writeln!(out, "{name:<22} {ns:>10.1} {allocs:>14.4}")?;
    }
    Ok(())
}
