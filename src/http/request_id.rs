//! Request ids: the caller's `X-Request-ID` when it is sane, else a fresh one.
//!
//! A caller-supplied id ends up in every log line and response of the
//! request, so it must not be able to break a log line or a header: only
//! 1–128 visible ASCII characters (0x21–0x7E) are accepted. Anything else is
//! replaced by a random UUID. The id lives in a fixed buffer: no allocation
//! per request.

use std::fmt;

/// Longest accepted caller-supplied id.
pub const MAX_LEN: usize = 128;

/// The header that carries the id in both directions.
pub const HEADER: &str = "X-Request-ID";

/// A validated request id.
#[derive(Clone, Copy)]
pub struct RequestId {
    buf: [u8; MAX_LEN],
    len: u8,
}

impl RequestId {
    /// The caller's id if it is acceptable, else a fresh random one.
    pub fn from_header_or_new(header: Option<&str>) -> RequestId {
        header
            .and_then(RequestId::parse)
            .unwrap_or_else(RequestId::generate)
    }

    /// Accepts 1–128 visible ASCII characters; `None` otherwise.
    pub fn parse(s: &str) -> Option<RequestId> {
        let bytes = s.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_LEN || !bytes.iter().all(|b| b.is_ascii_graphic())
        {
            return None;
        }
        let mut buf = [0u8; MAX_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(RequestId {
            buf,
            len: bytes.len() as u8,
        })
    }

    /// A fresh random (v4) UUID in its hyphenated lower-case form.
    pub fn generate() -> RequestId {
        let mut buf = [0u8; MAX_LEN];
        let len = uuid::Uuid::new_v4()
            .hyphenated()
            .encode_lower(&mut buf[..uuid::fmt::Hyphenated::LENGTH])
            .len();
        RequestId {
            buf,
            len: len as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII (validated) or UUID text is ever stored.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({:?})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sane_caller_ids() {
        let long = "a".repeat(MAX_LEN);
        for ok in ["abc", "req-123_ABC.def:ghi/~!", "0", long.as_str()] {
            assert_eq!(RequestId::from_header_or_new(Some(ok)).as_str(), ok);
        }
    }

    #[test]
    fn replaces_unsafe_or_missing_ids_with_a_uuid() {
        let too_long = "a".repeat(MAX_LEN + 1);
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
            let id = RequestId::from_header_or_new(b);
            let s = id.as_str();
            assert_eq!(s.len(), 36, "{b:?} -> {s}");
            assert!(uuid::Uuid::parse_str(s).is_ok(), "{s}");
            assert_ne!(Some(s), b);
        }
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(
            RequestId::generate().as_str(),
            RequestId::generate().as_str()
        );
    }
}
