//! What can go wrong with a user operation, in the terms a handler maps to
//! HTTP (see the table on [`UserError`]).

use std::fmt;
use std::sync::Arc;

use super::validate::FieldError;
use crate::db::DbError;

/// A user operation's failure.
///
/// | variant | HTTP |
/// |---|---|
/// | `NotFound` | 404 |
/// | `VersionMismatch` | 412 |
/// | `Conflict` | 409 |
/// | `Invalid` | 422 (400 for a bad path id, which handlers check first) |
/// | `IdempotencyMismatch` | 422 |
/// | `Unavailable` | 503 (+ `Retry-After`) |
/// | `Internal` | 500 (details logged, not shown) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// No user with that id.
    NotFound,
    /// The user's stored version is none of those the write expected
    /// (`If-Match`): it changed since the client read it.
    VersionMismatch,
    /// The e-mail address is already used by another user (case-insensitive).
    Conflict(String),
    /// Every invalid field of the request.
    Invalid(Vec<FieldError>),
    /// The Idempotency-Key was used before with a different request body.
    IdempotencyMismatch,
    /// The database cannot be reached, or did not answer in time.
    Unavailable(Unavailable),
    /// A bug or an unexpected database answer; for logs only.
    Internal(Internal),
}

/// Why the store could not be used (a [`DbError::Unavailable`]); shown in
/// the log as the store's own reason.
#[derive(Debug, Clone)]
pub struct Unavailable(Arc<DbError>);

impl Unavailable {
    /// The error of the data layer behind it.
    pub fn db_error(&self) -> &DbError {
        &self.0
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            DbError::Unavailable(reason) => f.write_str(reason),
            other => other.fmt(f),
        }
    }
}

/// What went wrong inside, for the log (the client sees a plain 500).
#[derive(Debug, Clone)]
pub enum Internal {
    /// The database answered with an error the rules do not expect.
    Database(Arc<DbError>),
    /// An idempotency key row has no stored response.
    IncompleteIdempotencyKey,
    /// A user row could not be decoded.
    UndecodableRow(Arc<postgres::Error>),
    /// The request that led this write's group commit did not hand over
    /// its outcome (it panicked, or ran past the statement's deadline):
    /// whether the write was applied is unknown.
    AbandonedBatch,
}

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Internal::Database(e) => e.fmt(f),
            Internal::IncompleteIdempotencyKey => {
                f.write_str("idempotency key row without a stored response")
            }
            Internal::UndecodableRow(e) => write!(f, "decoding a user row: {e}"),
            Internal::AbandonedBatch => f.write_str(
                "the request leading this write's batch did not hand over its outcome \
                 (it panicked or ran past its deadline); whether it was applied is unknown",
            ),
        }
    }
}

/// Equal when they read the same (the sources are driver errors, which
/// have no equality of their own).
impl PartialEq for Unavailable {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Unavailable {}

/// Equal when they read the same (see [`Unavailable`]'s).
impl PartialEq for Internal {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Internal {}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::NotFound => f.write_str("user not found"),
            UserError::VersionMismatch => {
                f.write_str("the user changed since the expected version")
            }
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
            e @ DbError::Unavailable(_) => UserError::Unavailable(Unavailable(Arc::new(e))),
            other => UserError::Internal(Internal::Database(Arc::new(other))),
        }
    }
}
