//! Percent-decoding (`%XX`), on the `percent-encoding` crate, in the two
//! ways the service needs it.
//!
//! - [`decode_lossy`]: what a browser would do with a query string or a URL
//!   component; a `%` that starts no escape stays as it is and bytes that
//!   are not UTF-8 become U+FFFD, so validation sees and rejects them.
//! - [`decode_strict`]: for configuration (`DATABASE_URL` parameters,
//!   `OTEL_EXPORTER_OTLP_HEADERS`), where a broken escape is a typo to
//!   report at start-up, not text to pass on.
//!
//! One module so that every caller agrees on what an escape is.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// `%XX` escapes decoded; broken escapes kept; invalid UTF-8 replaced.
pub fn decode_lossy(text: &str) -> Cow<'_, str> {
    percent_decode_str(text).decode_utf8_lossy()
}

/// A query component as HTML forms write it: `+` is a space, then
/// [`decode_lossy`].
pub fn decode_query_lossy(text: &str) -> Cow<'_, str> {
    if text.contains('+') {
        Cow::Owned(decode_lossy(&text.replace('+', " ")).into_owned())
    } else {
        decode_lossy(text)
    }
}

/// Why [`decode_strict`] refused a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` that does not start two hex digits.
    BrokenEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

/// `%XX` escapes decoded; an error when a `%` does not start two hex digits
/// or the result is not UTF-8.
pub fn decode_strict(text: &str) -> Result<String, PercentError> {
    let bytes = text.as_bytes();
    let broken = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if broken {
        return Err(PercentError::BrokenEscape);
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| PercentError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_keeps_broken_escapes() {
        assert_eq!(decode_lossy("pass%77ord"), "password");
        assert_eq!(decode_lossy("a%2"), "a%2");
        assert_eq!(decode_lossy("%zz%"), "%zz%");
        assert_eq!(decode_lossy("%ff"), "\u{fffd}");
        assert!(matches!(decode_lossy("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn query_plus_is_a_space_but_an_escaped_plus_is_not() {
        assert_eq!(decode_query_lossy("a+b%2Bc"), "a b+c");
        assert_eq!(decode_query_lossy("%E2%9C%93"), "✓");
    }

    #[test]
    fn strict_refuses_broken_escapes_and_non_utf8() {
        assert_eq!(decode_strict("a%20b").as_deref(), Ok("a b"));
        assert_eq!(decode_strict("verify%2Dfull").as_deref(), Ok("verify-full"));
        for bad in ["%", "%2", "%zz", "a%+1"] {
            assert_eq!(
                decode_strict(bad),
                Err(PercentError::BrokenEscape),
                "{bad:?}"
            );
        }
        assert_eq!(decode_strict("%ff"), Err(PercentError::NotUtf8));
    }
}
