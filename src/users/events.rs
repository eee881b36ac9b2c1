//! The outbox event types a user change produces.
//!
//! The payload is the user exactly as the API returns it ([`User::to_json_string`]),
//! so the outbox worker can put it into a CloudEvent's `data` untouched. The
//! repository renders it inside the writing statement with the SQL function
//! `user_json` (migration 000004; why: `pg_repository`'s module docs);
//! [`payload`] is the API's rendition it must equal byte for byte, which
//! `tests/users_events.rs` checks.

use super::model::User;

/// The `type` column / CloudEvents `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A user was created.
    Created,
    /// A user's name and/or e-mail changed.
    Updated,
    /// A user was deleted (payload: the user as it was).
    Deleted,
}

impl EventType {
    /// `user.created`, `user.updated` or `user.deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "user.created",
            EventType::Updated => "user.updated",
            EventType::Deleted => "user.deleted",
        }
    }
}

/// The event payload for a change to `user`.
pub fn payload(user: &User) -> String {
    user.to_json_string()
}
