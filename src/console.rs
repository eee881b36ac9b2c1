//! What the binary says to an operator outside the log: a command's output
//! on stdout and messages on stderr, written so that a reader that went
//! away is not a panic.
//!
//! Why not `println!`/`eprintln!`: they panic (exit 101) when the stream is
//! closed (`usersvc --help | head -1`), and the exit code must still say
//! what happened.

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

/// A message for the operator on stderr; a stderr whose reader has gone is
/// ignored (there is nobody left to tell).
pub fn print_stderr(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// A command's output on stdout: success also when the reader has gone away
/// (the output is simply not wanted any more), a failure on any other error.
pub fn print_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            print_stderr(&format!("usersvc: cannot write to stdout: {e}"));
            ExitCode::FAILURE
        }
    }
}
