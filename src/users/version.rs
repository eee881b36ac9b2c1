//! Optimistic concurrency: which version of a user a write expects.
//!
//! A user's version is its `updated_at`: every update sets it to the time of
//! the write (microseconds, as stored), so two versions of one user differ in
//! it. HTTP clients see it as a strong entity tag ([`etag`]): the
//! microseconds since the epoch as a 64-bit two's-complement number in 16
//! lowercase hex digits, quoted (hex: no division per digit, on every
//! `GET`), on `GET`, `PATCH` and a fresh `POST`; `PATCH` and
//! `DELETE` with `If-Match` ([`parse_if_match`]) write only when the stored
//! version is one of the tags named. The check is part of the writing
//! statement (`… AND updated_at = ANY($n)`), so no other write can come in
//! between the check and the write.
//!
//! Pure functions; the handlers map a failed check to 412.

use std::time::SystemTime;

use crate::logging::context::hex;
use crate::unix_micros;

/// What an `If-Match` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version (the write's own "no such user" stands).
    Any,
    /// One of these versions. Tags this service did not issue (weak ones,
    /// other shapes) are left out: they can never match, so an `If-Match`
    /// of only such tags is a list of none, and the write is refused (412).
    OneOf(Vec<SystemTime>),
}

impl IfMatch {
    /// The versions a write must find, or `None` for any.
    pub fn expected(&self) -> Option<&[SystemTime]> {
        match self {
            IfMatch::Any => None,
            IfMatch::OneOf(versions) => Some(versions),
        }
    }
}

/// The strong entity tag of a user whose `updated_at` is `version`.
pub fn etag(version: SystemTime) -> ETag {
    // Big-endian two's complement: a time before the epoch is a negative count.
    let digits: [u8; 16] = hex(&unix_micros::from_time(version).to_be_bytes());
    let mut tag = [b'"'; 18];
    tag[1..17].copy_from_slice(&digits);
    ETag(tag)
}

/// An entity tag as sent: 16 hex digits in quotes, held in place (it is
/// made for every user a `GET` returns).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ETag([u8; 18]);

impl ETag {
    /// The tag's ASCII bytes, quotes included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Display for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Quotes and hex digits: ASCII.
        f.write_str(std::str::from_utf8(&self.0).unwrap_or_default())
    }
}

impl std::fmt::Debug for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ETag({self})")
    }
}

/// Whether `stored` is one of `expected` (`None`: any), to the microsecond
/// the database keeps: what the writing statement's check does, for the
/// in-memory store of the unit tests.
#[cfg(test)]
pub(crate) fn matches(expected: Option<&[SystemTime]>, stored: SystemTime) -> bool {
    expected.is_none_or(|versions| names(versions, stored))
}

/// Whether `version` is one of `versions`, to the microsecond the database
/// keeps (a version read back from a tag has no nanoseconds).
fn names(versions: &[SystemTime], version: SystemTime) -> bool {
    let at = unix_micros::from_time;
    versions.iter().any(|v| at(*v) == at(version))
}

/// Parses an `If-Match` value (RFC 9110 §13.1.1: `*` or a comma-separated
/// list of entity tags). `Err` names what is malformed.
pub fn parse_if_match(raw: &str) -> Result<IfMatch, &'static str> {
    parse_tags(raw, Comparison::Strong)
}

/// Whether an `If-None-Match` value (RFC 9110 §13.1.2) lets a `GET` of the
/// user whose version is `current` send it: `false` when one of its tags is
/// the current one (compared weakly: `W/` is ignored) or it is `*`, and the
/// answer is then 304 Not Modified. `Err` names what is malformed.
pub fn none_match(raw: &str, current: SystemTime) -> Result<bool, &'static str> {
    Ok(match parse_tags(raw, Comparison::Weak)? {
        IfMatch::Any => false,
        IfMatch::OneOf(versions) => !names(&versions, current),
    })
}

/// How two entity tags are compared (RFC 9110 §8.8.3.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Both strong and the same (`If-Match`).
    Strong,
    /// The same opaque tag, weak or not (`If-None-Match`).
    Weak,
}

/// `*`, or the versions named by a list of entity tags under `comparison`;
/// tags this service did not issue name none.
fn parse_tags(raw: &str, comparison: Comparison) -> Result<IfMatch, &'static str> {
    let raw = raw.trim_matches([' ', '\t']);
    if raw == "*" {
        return Ok(IfMatch::Any);
    }
    let mut versions = Vec::new();
    let mut rest = raw;
    let mut any = false;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (weak, tagged) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let Some(body) = tagged.strip_prefix('"') else {
            return Err("an entity tag must be quoted");
        };
        let Some(end) = body.find('"') else {
            return Err("an entity tag is not closed");
        };
        let opaque = &body[..end];
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return Err("an entity tag holds a character it may not");
        }
        rest = body[end + 1..].trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return Err("entity tags must be separated by commas");
        }
        any = true;
        // A weak tag never matches under strong comparison.
        if weak && comparison == Comparison::Strong {
            continue;
        }
        if let Some(version) = version_of(opaque) {
            versions.push(version);
        }
    }
    if !any {
        return Err("no entity tag");
    }
    Ok(IfMatch::OneOf(versions))
}

/// The version an opaque tag of [`etag`]'s shape names.
fn version_of(opaque: &str) -> Option<SystemTime> {
    if opaque.len() != 16
        || !opaque
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let bits = u64::from_str_radix(opaque, 16).ok()?;
    Some(unix_micros::to_time(i64::from_be_bytes(bits.to_be_bytes())))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(micros)
    }

    #[test]
    fn if_none_match_is_false_only_for_the_current_version_or_star() {
        let current = at(1_000_001);
        let tag = etag(current).to_string();
        assert_eq!(none_match(&tag, current), Ok(false));
        // Weak comparison: a weak tag of the current version matches too.
        assert_eq!(none_match(&format!("W/{tag}"), current), Ok(false));
        assert_eq!(
            none_match(&format!("{}, {tag}", etag(at(7))), current),
            Ok(false)
        );
        assert_eq!(none_match("*", current), Ok(false));
        // Another version, or a tag this service did not issue: send it.
        assert_eq!(
            none_match(&etag(at(1_000_000)).to_string(), current),
            Ok(true)
        );
        assert_eq!(none_match("\"abc\"", current), Ok(true));
        assert!(none_match("abc", current).is_err());
        assert!(none_match("", current).is_err());
    }

    #[test]
    fn an_etag_names_its_version_and_parses_back() {
        let v = at(1_733_561_234_567_891);
        assert_eq!(
            etag(v).to_string(),
            format!("\"{:016x}\"", 1_733_561_234_567_891_u64)
        );
        assert_eq!(
            parse_if_match(&etag(v).to_string()),
            Ok(IfMatch::OneOf(vec![v]))
        );
        let before = UNIX_EPOCH - Duration::from_micros(5);
        assert_eq!(
            parse_if_match(&etag(before).to_string()),
            Ok(IfMatch::OneOf(vec![before]))
        );
    }

    #[test]
    fn if_match_lists_star_and_foreign_tags() {
        assert_eq!(parse_if_match("*"), Ok(IfMatch::Any));
        assert_eq!(parse_if_match(" * "), Ok(IfMatch::Any));
        assert_eq!(
            parse_if_match(&format!(
                "{}, W/{},\"x\" ,{}",
                etag(at(1)),
                etag(at(2)),
                etag(at(3))
            )),
            Ok(IfMatch::OneOf(vec![at(1), at(3)])),
            "weak and foreign tags never match"
        );
        assert_eq!(
            parse_if_match(&format!("W/{}", etag(at(1)))),
            Ok(IfMatch::OneOf(vec![]))
        );
        assert_eq!(
            parse_if_match("\"1\""),
            Ok(IfMatch::OneOf(vec![])),
            "not our shape"
        );
        assert_eq!(
            parse_if_match("\"000000000000000A\""),
            Ok(IfMatch::OneOf(vec![])),
            "upper case is not what we issue"
        );
        assert_eq!(parse_if_match("\"\""), Ok(IfMatch::OneOf(vec![])));
        assert_eq!(
            parse_if_match("\"0123456789abcdef0\""),
            Ok(IfMatch::OneOf(vec![]))
        );
        assert_eq!(IfMatch::Any.expected(), None);
        assert_eq!(IfMatch::OneOf(vec![at(1)]).expected(), Some(&[at(1)][..]));
    }

    #[test]
    fn malformed_if_match_is_an_error() {
        for bad in [
            "",
            " ",
            ",",
            "1",
            "\"1",
            "\"1\" \"2\"",
            "W/1",
            "\"a b\"",
            "**",
        ] {
            assert!(parse_if_match(bad).is_err(), "{bad:?}");
        }
    }
}
