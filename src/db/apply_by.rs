//! The write fence: the moment after which a write must not be applied by
//! the database — a single statement, or the COMMIT of a transaction
//! ([`ApplyBy::commit_sql`]).
//!
//! Why it exists: past its client-side deadline a call is cut and answered
//! 503 (see [`super::call_deadline`]). But a database host that froze still
//! holds the statement in its socket buffer and runs it when it thaws:
//! without a fence a client told 503 would find its write applied. Every
//! statement [`DbPool::write_one`](super::DbPool::write_one) runs passes its
//! [`ApplyBy`] to the SQL function `usersvc_apply_by` (migration 000006),
//! which raises SQLSTATE [`PAST_DEADLINE`] instead of letting the statement
//! change anything once the database's clock has passed it.
//!
//! The deadline is the call's `statement_timeout` from the moment it is sent,
//! [`CALL_MARGIN`](super::pool::CALL_MARGIN) before the service cuts the call,
//! so a database clock up to that margin behind ours still fences every
//! write that could arrive after the cut; one ahead of ours by more than the
//! statement timeout refuses every write, and the error says so.

use std::error::Error;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// SQLSTATE raised by `usersvc_apply_by` for a write that arrived too late.
pub const PAST_DEADLINE: &str = "UD001";

/// When a single-statement write stops being valid; a `timestamptz`
/// statement parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyBy(SystemTime);

impl ApplyBy {
    /// The fence of a call sent now that may run for `statement_timeout`.
    pub fn after(statement_timeout: Duration) -> ApplyBy {
        ApplyBy(SystemTime::now() + statement_timeout)
    }

    /// The fenced end of a transaction, as one simple-protocol message: the
    /// fence, then `COMMIT`. The database runs them in order, so it cannot
    /// commit without first checking the fence, and a fence that raises
    /// skips the `COMMIT` (the transaction is left aborted, to be rolled
    /// back). A backend frozen with this message in its socket buffer
    /// refuses it when it thaws, as it refuses a fenced statement.
    pub fn commit_sql(&self) -> String {
        format!(
            "SELECT usersvc_apply_by('{}'::timestamptz); COMMIT",
            crate::rfc3339::format_utc_micros(self.0)
        )
    }
}

impl ToSql for ApplyBy {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}

/// Whether `e` is the fence refusing a write.
pub fn is_past_deadline(e: &postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code().code() == PAST_DEADLINE)
}
