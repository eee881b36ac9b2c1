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

use std::hint::black_box;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::time::SystemTime;

use log::kv::Value;
use log::{Level, LevelFilter, Record};
use usersvc::logging::format::{write_json, write_text};
use usersvc::logging::{self, context, LogFormat, LogSettings, RequestContext, RequestId};

#[path = "support/measure.rs"]
mod measure;

#[global_allocator]
static GLOBAL: measure::Counting = measure::Counting;

use measure::measure;

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
