//! The data layer's error type and the rules that classify driver errors.
//!
//! Two concerns live here because every caller needs both: (1) a message an
//! operator can act on, built from the whole `source()` chain (the driver's own
//! `Display` says only "error performing TLS handshake" and hides the cause),
//! with any secret scrubbed; (2) whether a failure means "this connection is
//! dead" (safe to discard and retry elsewhere) as opposed to "the server
//! rejected the statement" (a real answer to pass up).

use std::error::Error as StdError;
use std::fmt;

use postgres::error::SqlState;

/// Why the data layer could not do what was asked.
#[derive(Debug)]
pub enum DbError {
    /// The database URL, TLS settings or CA file are unusable (start-up error).
    Config(String),
    /// No usable connection: pool acquire timed out, the server is down or went
    /// away mid-request, or a statement hit `statement_timeout`. Maps to 503.
    Unavailable(String),
    /// The server answered with an error for this statement (constraint
    /// violation, syntax error, ...). Callers inspect [`DbError::code`].
    Query(postgres::Error),
}

impl DbError {
    /// The SQLSTATE of a server-side error, if this is one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            DbError::Query(e) => e.code(),
            _ => None,
        }
    }

    /// The constraint a server-side error names (e.g. a unique index), if any.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            DbError::Query(e) => e.as_db_error().and_then(|d| d.constraint()),
            _ => None,
        }
    }

    /// Classifies a driver error: dead connections and timeouts become
    /// `Unavailable`, everything else stays a `Query` error.
    pub fn from_postgres(e: postgres::Error) -> DbError {
        if super::apply_by::is_past_deadline(&e) {
            DbError::Unavailable(format!(
                "the database refused a write that reached it after its deadline (it stalled, \
                 or its clock is ahead of ours by more than DB_STATEMENT_TIMEOUT): {}",
                describe(&e)
            ))
        } else if is_connection_error(&e) || is_statement_timeout(&e) {
            DbError::Unavailable(describe(&e))
        } else {
            DbError::Query(e)
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Config(m) => write!(f, "database configuration: {m}"),
            DbError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            DbError::Query(e) => write!(f, "database error: {}", describe(e)),
        }
    }
}

impl From<crate::config::ConnectSpecError> for DbError {
    fn from(e: crate::config::ConnectSpecError) -> Self {
        DbError::Config(e.to_string())
    }
}

impl StdError for DbError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            DbError::Query(e) => Some(e),
            _ => None,
        }
    }
}

/// One line describing a driver error with its whole cause chain.
///
/// For a server error it shows severity, SQLSTATE and message but NOT the
/// `DETAIL` line, which repeats row values (e-mail addresses) into logs.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    chain(e)
}

pub use crate::error_chain::chain;

/// True when the error means the connection itself is gone (closed socket,
/// I/O failure, server shutting down or terminating the backend), so the
/// connection must be discarded and the work may be retried elsewhere.
pub fn is_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || code.code().starts_with("08"); // connection_exception class
    }
    let mut cur = e.source();
    while let Some(c) = cur {
        if c.is::<std::io::Error>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// True when the server cancelled the statement (`statement_timeout`).
pub fn is_statement_timeout(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::QUERY_CANCELED)
}

/// Replaces every occurrence of `secret` in `msg` (defence in depth: no code
/// path is known to echo the password, but a log line must never show it).
pub fn redact(msg: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 3 => msg.replace(s, "[REDACTED]"),
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_every_occurrence() {
        assert_eq!(
            redact("a hunter2 b hunter2", Some("hunter2")),
            "a [REDACTED] b [REDACTED]"
        );
        assert_eq!(redact("nothing", None), "nothing");
        // Too short to scrub without mangling every message.
        assert_eq!(redact("a b", Some("a")), "a b");
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("error performing TLS handshake")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chain_includes_causes() {
        let e = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(
            chain(&e),
            "error performing TLS handshake: invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn display_of_own_errors() {
        let e = DbError::Unavailable("timed out after 2s".into());
        assert_eq!(e.to_string(), "database unavailable: timed out after 2s");
        assert!(e.code().is_none());
    }
}
