//! Idempotency keys for `POST /api/v1/users`: rules and types, no I/O.
//!
//! A client that retries a create with the same `Idempotency-Key` and the
//! same body gets the first response again instead of a second user (or a
//! confusing 409). The same key with a different body is a client bug and
//! gets [`super::UserError::IdempotencyMismatch`] (422).
//!
//! Only successful creates are remembered. A failed one (422, 409, 503)
//! rolls back with its transaction, so the client may retry with the same key
//! and get a fresh answer — which is what a retry after a 503 needs.
//!
//! Expiry: a key lives [`KEY_TTL`] (24 h, as Stripe's). An expired key is
//! ignored and replaced when it is used again, and
//! [`super::UserService::purge_expired_idempotency_keys`] deletes expired rows
//! in bounded batches (to be called periodically by a background worker).

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::model::CreateUser;
use super::validate::FieldError;

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest key, in bytes.
pub const KEY_MAX_BYTES: usize = 255;

/// A syntactically valid key: 1–255 visible ASCII characters (0x21–0x7E).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates a raw header value.
    pub fn parse(raw: &str) -> Result<IdempotencyKey, FieldError> {
        let ok = !raw.is_empty()
            && raw.len() <= KEY_MAX_BYTES
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(IdempotencyKey(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "Idempotency-Key",
                format!("must be 1 to {KEY_MAX_BYTES} visible ASCII characters"),
            ))
        }
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A canonical fingerprint of a create request: the raw fields as a JSON
/// object with sorted keys, so formatting and key order do not matter but any
/// change of value does. Handlers may pass their own fingerprint instead
/// (e.g. a hash of the raw body) as long as they always use the same one.
pub fn fingerprint(input: &CreateUser) -> String {
    json!({ "email": input.email, "name": input.name }).to_string()
}

/// A response remembered for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status (201 for a create).
    pub status: u16,
    /// The exact JSON body.
    pub body: String,
    /// The created resource's id (for the `Location` header).
    pub resource_id: Option<i64>,
    /// The created resource's version (for the `ETag` header): the same on
    /// every replay. None for keys stored before migration 7.
    pub version: Option<SystemTime>,
}

/// The outcome of an idempotent create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    /// What to send: identical for the first request and every replay.
    pub response: StoredResponse,
    /// True when this is a replay (handlers may add `Idempotent-Replayed: true`).
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("550e8400-e29b-41d4-a716-446655440000").is_ok());
        for bad in ["", "has space", "tab\t", "é", "\u{7f}"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn fingerprint_ignores_order_but_not_values() {
        let a: CreateUser = serde_json::from_str(r#"{"name":"A","email":"a@x.io"}"#).expect("json");
        let b: CreateUser =
            serde_json::from_str(r#"{ "email" : "a@x.io", "name":"A" }"#).expect("json");
        let c: CreateUser = serde_json::from_str(r#"{"name":"B","email":"a@x.io"}"#).expect("json");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
