//! usersvc: a users API in synchronous Rust.
//!
//! The binary (`src/main.rs`) only parses the command line, runs the command
//! and maps the outcome to an exit code; which components a serving process
//! has is decided in [`app`], and everything with behaviour lives here so
//! that tests can reach it without a process. `ARCHITECTURE.md` is the map
//! of modules and their layers, threads, the path of a request and the
//! shutdown sequence.

pub mod allocator;
pub mod app;
pub mod build_info;
pub mod cache;
pub mod config;
pub mod console;
pub mod db;
pub mod decimal;
pub mod duration_text;
pub mod error_chain;
pub mod health;
pub mod http;
pub mod json_string;
pub mod lifecycle;
pub mod logging;
#[cfg(target_arch = "x86_64")]
pub mod memcpy;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod percent;
pub mod rate_log;
pub mod resolver;
pub mod rfc3339;
pub mod runtime;
pub mod systemd;
pub mod thread_slice;
pub mod tracing;
pub mod unix_micros;
pub mod users;
