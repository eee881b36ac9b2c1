//! Request ids: the caller's `X-Request-ID` when it is sane, else a fresh one.
//!
//! A caller-supplied id ends up in every log line and response of the
//! request, so it must not be able to break a log line or a header: only
//! 1–128 visible ASCII characters (the rule of [`RequestId::parse`]) are
//! accepted. Anything else is replaced by a random UUID. The id lives in a
//! fixed buffer (no allocation per request).

pub use crate::logging::RequestId;

/// The header that carries the id in both directions.
pub const HEADER: &str = "X-Request-ID";

/// The caller's id if it is acceptable, else a fresh random (v4) UUID.
pub fn from_header(header: Option<&str>) -> RequestId {
    header
        .and_then(|h| RequestId::parse(h).ok())
        .unwrap_or_else(|| {
            let random = crate::tracing::ids::random_bytes();
            RequestId::from_uuid(uuid::Builder::from_random_bytes(random).into_uuid())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sane_caller_ids() {
        let long = "a".repeat(RequestId::MAX_LEN);
        for ok in ["abc", "req-123_ABC.def:ghi/~!\"", "0", long.as_str()] {
            assert_eq!(from_header(Some(ok)).as_str(), ok);
        }
    }

    #[test]
    fn replaces_unsafe_or_missing_ids_with_a_uuid() {
        let too_long = "a".repeat(RequestId::MAX_LEN + 1);
        let bad = [
            None,
            Some(""),
            Some("has space"),
            Some("tab\there"),
            Some("new\nline"),
            Some("é"),
            Some("nul\0"),
            Some("\u{7f}"),
            Some(too_long.as_str()),
        ];
        for b in bad {
            let id = from_header(b);
            let s = id.as_str();
            let parsed = uuid::Uuid::parse_str(s);
            assert!(parsed.is_ok(), "{b:?} -> {s}");
            assert_eq!(parsed.map(|u| u.get_version_num()).ok(), Some(4), "{s}");
            assert_eq!(s.len(), 36);
        }
        assert_ne!(from_header(None), from_header(None));
    }
}
