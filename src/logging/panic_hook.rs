//! Panics as log lines.
//!
//! The default hook writes free text to stderr, outside the JSON stream and
//! without the request id. This hook logs one ERROR line instead — with the
//! message, the location and the thread — written while the panicking
//! thread's request context is still entered, so the line carries the
//! request id of the request that panicked. The worker pool's
//! `catch_unwind` then turns the panic into a 500.

use std::panic::PanicHookInfo;

/// Replaces the process's panic hook with one that logs through `log`.
pub fn install() {
    std::panic::set_hook(Box::new(log_panic));
}

fn log_panic(info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let thread = std::thread::current();
    log::error!(
        panic = message,
        location = location.as_str(),
        thread = thread.name().unwrap_or("unnamed");
        "panic"
    );
}
