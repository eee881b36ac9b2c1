//! `usersvc --help` and `usersvc --version`.
//!
//! Why generated: the variable list comes from the table in `vars.rs`, the
//! same one the flag parser reads, so the help cannot drift from what the
//! binary accepts.

use std::fmt::Write as _;

use super::vars;
use crate::build_info::{COMMIT, VERSION};

/// `usersvc <version> (commit <commit>)`.
pub fn version_text() -> String {
    format!("usersvc {VERSION} (commit {COMMIT})")
}

/// The full `--help` text: usage, every variable with its flag, default
/// and meaning, and the value formats.
pub fn help_text() -> String {
    let mut out = String::new();
    out.push_str(&version_text());
    out.push_str(
        "\nA users API: HTTP + PostgreSQL, synchronous, with a fixed worker pool.\n\
         \n\
         USAGE:\n\
         \x20 usersvc [FLAGS]                       serve the API\n\
         \x20 usersvc migrate up                    apply pending migrations, then exit\n\
         \x20 usersvc migrate down [N]              revert the last N (default 1; N > applied: refused)\n\
         \x20 usersvc migrate status                list applied and pending migrations\n\
         \x20 usersvc --print-config                print the effective configuration (secrets redacted) as JSON\n\
         \x20 usersvc --help | -h                   print this help\n\
         \x20 usersvc --version | -V                print version and commit\n\
         \n\
         CONFIGURATION:\n\
         \x20 Flags override environment variables, which override defaults. An empty\n\
         \x20 variable counts as unset. Flags take `--flag value` or `--flag=value`.\n\
         \x20 Every value is checked at start-up; all errors are listed, then exit 2.\n\n",
    );
    for var in vars::all() {
        let flag = var
            .flag
            .map(|f| format!(", --{f} <value>"))
            .unwrap_or_default();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  {}{flag}  [default: {}]", var.name, var.default);
        let _ = writeln!(out, "      {}", var.meaning);
    }
    out.push_str(
        "\nFORMATS:\n\
         \x20 durations  500ms, 5s, 2m, 1h, 1m30s (more than zero, at most 24h; DRAIN_DELAY also 0)\n\
         \x20 sizes      1024, 16KiB, 1MiB, 1GiB (powers of 1024); 16KB, 1MB (powers of 1000)\n\
         \x20 addresses  :8080 (all IPv4 interfaces), 127.0.0.1:8080, [::1]:8080, localhost:8080\n\
         \n\
         EXIT STATUS:\n\
         \x20 0    success: a clean shutdown (all in-flight work finished), or a command that did what it was asked\n\
         \x20 1    failure at run time (a listener that cannot bind, a failed migration, ...)\n\
         \x20 2    invalid configuration or arguments (nothing was started)\n\
         \x20 3    forced shutdown: SHUTDOWN_TIMEOUT passed with work unfinished (queued\n\
         \x20      requests dropped unexecuted, connections cut, or a worker still busy)\n\
         \x20 130  a second SIGTERM/SIGINT during shutdown: exit at once\n",
    );
    out
}
