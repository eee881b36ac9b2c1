//! What can go wrong with a user operation, in the terms a handler maps to
//! HTTP (see the table on [`UserError`]).

use std::fmt;

use super::validate::FieldError;
use crate::db::DbError;

/// A user operation's failure.
///
/// | variant | HTTP |
/// |---|---|
/// | `NotFound` | 404 |
/// | `Conflict` | 409 |
/// | `Invalid` | 422 (400 for a bad path id, which handlers check first) |
/// | `IdempotencyMismatch` | 422 |
/// | `Unavailable` | 503 (+ `Retry-After`) |
/// | `Internal` | 500 (details logged, not shown) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// No user with that id.
    NotFound,
    /// The e-mail address is already used by another user (case-insensitive).
    Conflict(String),
    /// Every invalid field of the request.
    Invalid(Vec<FieldError>),
    /// The Idempotency-Key was used before with a different request body.
    IdempotencyMismatch,
    /// The database cannot be reached, or did not answer in time.
    Unavailable(String),
    /// A bug or an unexpected database answer; the message is for logs only.
    Internal(String),
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::NotFound => f.write_str("user not found"),
            UserError::Conflict(m) => f.write_str(m),
            UserError::Invalid(fields) => {
                f.write_str("invalid request:")?;
                for e in fields {
                    write!(f, " {}: {};", e.field, e.message)?;
                }
                Ok(())
            }
            UserError::IdempotencyMismatch => {
                f.write_str("the Idempotency-Key was already used with a different request body")
            }
            UserError::Unavailable(m) => write!(f, "service unavailable: {m}"),
            UserError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for UserError {}

impl From<DbError> for UserError {
    /// The generic mapping; repositories recognise constraint violations
    /// (Conflict) before falling back to this.
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(m) => UserError::Unavailable(m),
            other => UserError::Internal(other.to_string()),
        }
    }
}
