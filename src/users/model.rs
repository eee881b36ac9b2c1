//! The user as stored and as the API shows it, plus the request shapes.
//!
//! JSON is built here, once, so the HTTP response and the event payload of a
//! change are byte-for-byte the same document:
//! `{"id":1,"name":"Ada","email":"ada@example.com","created_at":"…Z","updated_at":"…Z"}`
//! with timestamps from [`crate::rfc3339::format_utc_micros`].

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::decimal::Decimal;
use crate::json_string::push_quoted;
use crate::rfc3339::{format_utc_micros, write_utc_micros};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Assigned by the database (identity column), positive.
    pub id: i64,
    /// Trimmed display name, 1–200 characters.
    pub name: String,
    /// Normalised (trimmed, lower-case) e-mail address, unique.
    pub email: String,
    /// When the row was inserted.
    pub created_at: SystemTime,
    /// When the row last changed.
    pub updated_at: SystemTime,
}

impl User {
    /// The API representation.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "created_at": format_utc_micros(self.created_at),
            "updated_at": format_utc_micros(self.updated_at),
        })
    }

    /// The API representation as a string (the documented key order: id, name, email, created_at, updated_at).
    pub fn to_json_string(&self) -> String {
        // Every piece is UTF-8: JSON text and ASCII timestamps.
        String::from_utf8(self.to_json_bytes()).unwrap_or_default()
    }

    /// [`User::to_json_string`]'s bytes: a response body as it is sent.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(120 + self.name.len() + self.email.len());
        self.write_json(&mut out);
        out
    }

    /// Appends the API representation to `out`: the one encoder of a user,
    /// alone or in a page.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // serde_json's Map keeps keys sorted, which would put created_at
        // first; write the documented order by hand instead, into one buffer
        // (this runs for every user the API returns).
        // The strings go through the crate's JSON string writer (the bytes
        // serde_json writes, by test, found eight bytes at a time).
        out.extend_from_slice(b"{\"id\":");
        if self.id < 0 {
            out.push(b'-');
        }
        out.extend_from_slice(Decimal::new(self.id.unsigned_abs()).as_bytes());
        out.extend_from_slice(b",\"name\":");
        push_quoted(out, &self.name);
        out.extend_from_slice(b",\"email\":");
        push_quoted(out, &self.email);
        out.extend_from_slice(b",\"created_at\":\"");
        write_utc_micros(out, self.created_at);
        out.extend_from_slice(b"\",\"updated_at\":\"");
        write_utc_micros(out, self.updated_at);
        out.extend_from_slice(b"\"}");
    }
}

/// `POST /api/v1/users` body. Fields are optional here so that a missing one
/// is reported with the others as a field error (422), not as bad JSON (400).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CreateUser {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
}

/// `PATCH /api/v1/users/{id}` body: any subset, at least one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PatchUser {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New e-mail address.
    #[serde(default)]
    pub email: Option<String>,
}

/// A validated, normalised new user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Trimmed name.
    pub name: String,
    /// Normalised e-mail.
    pub email: String,
}

/// A validated, normalised change; at least one field is `Some`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChanges {
    /// Trimmed name, if it changes.
    pub name: Option<String>,
    /// Normalised e-mail, if it changes.
    pub email: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn user() -> User {
        User {
            id: 7,
            name: "Ada \"Countess\" Lovelace".into(),
            email: "ada@example.com".into(),
            created_at: UNIX_EPOCH + Duration::from_micros(1_795_510_862_345_678),
            updated_at: UNIX_EPOCH + Duration::from_micros(1_795_510_862_345_679),
        }
    }

    #[test]
    fn json_string_has_spec_order_and_escaping() {
        assert_eq!(
            user().to_json_string(),
            r#"{"id":7,"name":"Ada \"Countess\" Lovelace","email":"ada@example.com","created_at":"2026-11-24T09:01:02.345678Z","updated_at":"2026-11-24T09:01:02.345679Z"}"#
        );
    }

    /// The hand-written encoder writes what serde_json writes for each field,
    /// for ids of every sign and size and strings that need escapes.
    #[test]
    fn json_string_fields_are_serde_json_text() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_510_862_345_678);
        for (id, name) in [
            (0, ""),
            (-1, "tab\there"),
            (i64::MIN, "nul\u{0}and\u{1f}"),
            (i64::MAX, "back\\slash é ☃ 😀 \u{2028}"),
            (1_000_000_007, "plain"),
        ] {
            let u = User {
                id,
                name: name.into(),
                email: format!("{name}@x"),
                created_at: t,
                updated_at: t,
            };
            let expected = format!(
                r#"{{"id":{},"name":{},"email":{},"created_at":"2026-11-24T09:01:02.345678Z","updated_at":"2026-11-24T09:01:02.345678Z"}}"#,
                serde_json::to_string(&id).expect("json"),
                serde_json::to_string(&u.name).expect("json"),
                serde_json::to_string(&u.email).expect("json"),
            );
            assert_eq!(u.to_json_string(), expected);
        }
    }

    #[test]
    fn json_value_and_string_agree() {
        let u = user();
        let parsed: Value = serde_json::from_str(&u.to_json_string()).expect("valid JSON");
        assert_eq!(parsed, u.to_json());
    }

    #[test]
    fn create_body_tolerates_missing_fields() {
        let c: CreateUser = serde_json::from_str(r#"{"name":"x"}"#).expect("parse");
        assert_eq!(c.email, None);
    }
}
