//! Keyset pagination: `?limit=&after=`.
//!
//! Pages are "ids greater than X, ascending", which stays fast at any depth
//! (an index range scan, no OFFSET) and stable while rows are inserted or
//! deleted. `next` is an opaque cursor (base64url of `v1:<last id>`) so the
//! encoding can change later without breaking clients; `after` also accepts
//! a plain id for humans and scripts.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::Value;

use super::model::User;
use super::validate::FieldError;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 20;
/// The largest page.
pub const MAX_LIMIT: u32 = 100;

/// A validated list request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListParams {
    /// 1..=100.
    pub limit: u32,
    /// Return ids strictly greater than this.
    pub after: Option<i64>,
}

impl Default for ListParams {
    fn default() -> Self {
        ListParams {
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

impl ListParams {
    /// Reads the raw query values (already percent-decoded); all errors at once.
    pub fn parse(limit: Option<&str>, after: Option<&str>) -> Result<ListParams, Vec<FieldError>> {
        let mut errors = Vec::new();
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => match super::validate::canonical_integer::<u32>(raw) {
                Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        "limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    ));
                    DEFAULT_LIMIT
                }
            },
        };
        let after = match after {
            None | Some("") => None,
            Some(raw) => {
                let id = decode(raw);
                if id.is_none() {
                    errors.push(FieldError::new(
                        "after",
                        "must be a cursor returned as `next` or a user id",
                    ));
                }
                id
            }
        };
        if errors.is_empty() {
            Ok(ListParams { limit, after })
        } else {
            Err(errors)
        }
    }
}

/// One page of users and the cursor for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Users in ascending id order.
    pub users: Vec<User>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

impl Page {
    /// Builds a page from up to `limit + 1` rows: the extra row only proves
    /// that another page exists and is not returned.
    pub fn from_rows(mut rows: Vec<User>, limit: u32) -> Page {
        let limit = limit as usize;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(|u| encode(u.id))
        } else {
            None
        };
        Page { users: rows, next }
    }

    /// `{"users":[...],"next":"..."|null}`, each user written by
    /// [`User::write_json`]: the bytes of a user are the same in a page
    /// as in `GET /api/v1/users/{id}` (one encoder, the documented key order).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.users.len() * 160);
        out.extend_from_slice(b"{\"users\":[");
        for (i, user) in self.users.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            user.write_json(&mut out);
        }
        out.extend_from_slice(b"],\"next\":");
        match &self.next {
            // A cursor is base64url text: nothing in it needs escaping, but
            // serde_json writes it so that this never depends on that.
            Some(next) => out.extend_from_slice(Value::from(next.as_str()).to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        out
    }
}

const PREFIX: &str = "v1:";

/// The opaque cursor for "after this id".
pub fn encode(id: i64) -> String {
    base64url_encode(format!("{PREFIX}{id}").as_bytes())
}

/// An id from a cursor or a plain non-negative integer.
pub fn decode(raw: &str) -> Option<i64> {
    if raw.bytes().all(|b| b.is_ascii_digit()) {
        return super::validate::canonical_integer(raw);
    }
    let bytes = base64url_decode(raw)?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let digits = text.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()
}

/// base64url without padding. Decoding accepts non-zero trailing bits, as
/// the cursor format always has.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// The longest cursor text accepted (a cursor of any i64 is 28 characters).
const MAX_CURSOR_LEN: usize = 64;

fn base64url_encode(input: &[u8]) -> String {
    BASE64URL.encode(input)
}

fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    if input.len() > MAX_CURSOR_LEN {
        return None;
    }
    BASE64URL.decode(input).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn user(id: i64) -> User {
        User {
            id,
            name: format!("u{id}"),
            email: format!("u{id}@example.com"),
            created_at: UNIX_EPOCH,
            updated_at: UNIX_EPOCH,
        }
    }

    #[test]
    fn cursor_round_trips_and_is_url_safe() {
        for id in [0, 1, 42, 999_999, i64::MAX] {
            let c = encode(id);
            assert!(
                c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{c}"
            );
            assert_eq!(decode(&c), Some(id), "{c}");
        }
        assert_eq!(encode(1), "djE6MQ");
    }

    #[test]
    fn plain_ids_are_accepted_and_garbage_is_not() {
        assert_eq!(decode("17"), Some(17));
        for bad in ["-1", "djE6", "djE6LTE", "!!!!", "a", "dj E6MQ", "eDox"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn params_default_and_bounds() {
        assert_eq!(ListParams::parse(None, None), Ok(ListParams::default()));
        assert_eq!(
            ListParams::parse(Some("100"), Some(&encode(5))),
            Ok(ListParams {
                limit: 100,
                after: Some(5)
            })
        );
        let errs = ListParams::parse(Some("0"), Some("zz!")).expect_err("invalid");
        assert_eq!(errs.len(), 2);
        assert!(ListParams::parse(Some("101"), None).is_err());
        assert!(ListParams::parse(Some("ten"), None).is_err());
    }

    #[test]
    fn page_has_next_only_when_more_rows_exist() {
        let p = Page::from_rows((1..=4).map(user).collect(), 3);
        assert_eq!(p.users.len(), 3);
        assert_eq!(p.next, Some(encode(3)));
        let p = Page::from_rows((1..=3).map(user).collect(), 3);
        assert_eq!(p.next, None);
        let j: Value = serde_json::from_slice(&p.to_json_bytes()).expect("JSON");
        assert!(j["next"].is_null());
        assert_eq!(j["users"][0]["id"], 1);
    }
}
