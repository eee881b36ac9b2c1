//! Logging: our own JSON (or text) line format on `log` + `env_logger`, a per-request context,
//! and a run-time level switch.
//!
//! The pieces, each in its own file:
//! - [`format`](mod@format): the pure line writers [`format::write_json`] and [`format::write_text`]. Pure so
//!   that golden tests and the benchmark need no global logger.
//! - [`context`]: the thread-local `request_id` / `trace_id` / `span_id` the formatter adds to
//!   every line written while serving a request, entered with a restoring guard.
//! - timestamps: [`crate::rfc3339::Rfc3339Millis`] (the one RFC 3339 writer, shared with the API).
//! - `escape`: JSON and terminal escaping that streams into the output, so lines need no
//!   intermediate `String`.
//! - [`level`]: the run-time level switch behind `PUT /debug/log-level`, with timed reverts.
//! - `line`: the per-thread buffer a line is formatted into, piece by inlined piece, before it
//!   is handed to env_logger in one write.
//! - [`batch`]: the HTTP I/O threads' lines, held and written with one call each time the thread
//!   is about to wait for events (every other thread writes each line at once).
//! - `filter`: the installed `Log`, which makes `log::max_level()` the single run-time switch and
//!   keeps dependencies' debug output (including SQL parameters) out unless the level is `trace`.
//!
//! env_logger supplies the rest: a per-thread line buffer that is reused (no allocation per line
//! in the steady state) and a locked write of each whole line to our [`batch`] writer, so lines
//! from concurrent workers never interleave. Its own filter is built wide open and `RUST_LOG` is not
//! read: `LOG_LEVEL` (via [`LogSettings`]) and [`set_level`] are the only knobs.

pub mod batch;
pub mod context;
mod escape;
mod filter;
pub mod format;
pub mod level;
mod line;
pub mod panic_hook;

use std::io;
use std::time::SystemTime;

pub use context::{ContextGuard, RequestContext, RequestId};
pub use log::LevelFilter;

/// The line format (parsed by `config`, which owns the names).
pub use crate::config::LogFormat;

/// What [`init`] needs from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// The initial level; [`set_level`] changes it later.
    pub level: LevelFilter,
    /// The line format, fixed for the life of the process.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: LevelFilter::Info,
            format: LogFormat::Json,
        }
    }
}

/// Installs the global logger, writing to stdout. Call once, first thing in `main`.
///
/// Fails only if a global logger is already installed.
pub fn init(settings: LogSettings) -> Result<(), log::SetLoggerError> {
    install(settings, Box::new(io::stdout()))
}

/// Like [`init`], writing each line to `writer` instead (tests; one `write_all` per line).
pub fn init_with_writer(
    settings: LogSettings,
    writer: Box<dyn io::Write + Send + 'static>,
) -> Result<(), log::SetLoggerError> {
    install(settings, writer)
}

fn install(
    settings: LogSettings,
    writer: Box<dyn io::Write + Send + 'static>,
) -> Result<(), log::SetLoggerError> {
    let target = env_logger::Target::Pipe(Box::new(batch::Batching::install(std::sync::Arc::new(
        std::sync::Mutex::new(writer),
    ))));
    let format = settings.format;
    let inner = env_logger::Builder::new()
        .filter_level(LevelFilter::Trace)
        .target(target)
        .format(move |buf, record| match format {
            LogFormat::Json => line::write_through(buf, |line| {
                format::write_json(line, SystemTime::now(), record)
            }),
            LogFormat::Text => line::write_through(buf, |line| {
                format::write_text(line, SystemTime::now(), record)
            }),
        })
        .build();
    log::set_boxed_logger(Box::new(filter::Filtered { inner }))?;
    set_level(settings.level);
    Ok(())
}

/// Changes the level for every thread at once (one atomic store). Takes effect on the next call
/// to a `log` macro; no lock, no rebuild.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// The current level.
pub fn level() -> LevelFilter {
    log::max_level()
}
