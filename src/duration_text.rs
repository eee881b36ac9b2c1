//! Durations as operators write them: `500ms`, `5s`, `2m`, `1h`, `1m30s`.
//! Read by `config`, written back by `config` and in messages (`health`:
//! "no answer within 2s"), so it sits below both.
//!
//! Why not a crate: the grammar is four units and whole numbers, it must
//! refuse what a timeout can never mean (zero, negative, a bare number
//! whose unit is a guess) and it must print a value back in the same form
//! for `--print-config`. That is less code than adapting `humantime`.

use std::fmt;
use std::time::Duration;

/// Units accepted, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Why a duration was refused; `Display` is a phrase that follows the value
/// (`"5" has no unit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    Empty,
    Negative,
    Zero,
    MissingUnit,
    UnknownUnit(String),
    Fraction,
    Malformed,
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str("is empty"),
            DurationError::Negative => f.write_str("is negative"),
            DurationError::Zero => f.write_str("is zero"),
            DurationError::MissingUnit => f.write_str("has no unit"),
            DurationError::UnknownUnit(unit) => write!(f, "has an unknown unit {unit:?}"),
            DurationError::Fraction => {
                f.write_str("has a fraction (write 1500ms rather than 1.5s)")
            }
            DurationError::Malformed => f.write_str("is not a duration"),
            DurationError::Overflow => f.write_str("is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses one or more `<whole number><unit>` parts (units `ms`, `s`, `m`,
/// `h`) into a positive duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return Err(DurationError::Malformed);
        }
        let (digits, tail) = rest.split_at(digits_len);
        if tail.starts_with('.') {
            return Err(DurationError::Fraction);
        }
        let unit_len = tail.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, tail) = tail.split_at(unit_len);
        if unit.is_empty() {
            return Err(if tail.is_empty() {
                DurationError::MissingUnit
            } else {
                DurationError::Malformed
            });
        }
        let unit_ms = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, ms)| *ms)
            .ok_or_else(|| DurationError::UnknownUnit(unit.to_owned()))?;
        let count: u64 = digits.parse().map_err(|_| DurationError::Overflow)?;
        total_ms = count
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or(DurationError::Overflow)?;
        rest = tail;
    }
    if total_ms == 0 {
        return Err(DurationError::Zero);
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way [`parse_duration`] reads it: `5s`, `2m`,
/// `1m30s`, `1s500ms`; `0s` for zero. Sub-millisecond parts (which parsing
/// never produces) are dropped.
pub fn format_duration(duration: Duration) -> String {
    let mut rest = duration.as_millis();
    if rest == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, unit_ms) in UNITS {
        let unit_ms = u128::from(unit_ms);
        let count = rest / unit_ms;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(name);
            rest %= unit_ms;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_combinations() {
        let cases = [
            ("500ms", 500),
            ("1ms", 1),
            ("5s", 5_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1h2m3s4ms", 3_723_004),
            ("0s1ms", 1),
            ("1500ms", 1_500),
            ("007s", 7_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_a_timeout_cannot_mean() {
        let cases = [
            ("", DurationError::Empty),
            ("-5s", DurationError::Negative),
            ("0s", DurationError::Zero),
            ("0ms", DurationError::Zero),
            ("0", DurationError::MissingUnit),
            ("5", DurationError::MissingUnit),
            ("5 s", DurationError::Malformed),
            (" 5s", DurationError::Malformed),
            ("5s ", DurationError::Malformed),
            ("+5s", DurationError::Malformed),
            ("s", DurationError::Malformed),
            ("1.5s", DurationError::Fraction),
            ("5sec", DurationError::UnknownUnit("sec".into())),
            ("5d", DurationError::UnknownUnit("d".into())),
            ("5S", DurationError::UnknownUnit("S".into())),
            ("5us", DurationError::UnknownUnit("us".into())),
            ("5s5", DurationError::MissingUnit),
            ("18446744073709551616ms", DurationError::Overflow),
            ("18446744073709551615h", DurationError::Overflow),
            ("18446744073709551615ms1ms", DurationError::Overflow),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn errors_read_as_a_phrase() {
        assert_eq!(DurationError::MissingUnit.to_string(), "has no unit");
        assert_eq!(
            DurationError::UnknownUnit("d".into()).to_string(),
            "has an unknown unit \"d\""
        );
    }

    #[test]
    fn formats_back_in_the_same_language() {
        let cases = [
            (0, "0s"),
            (1, "1ms"),
            (500, "500ms"),
            (1_500, "1s500ms"),
            (5_000, "5s"),
            (90_000, "1m30s"),
            (120_000, "2m"),
            (300_000, "5m"),
            (3_600_000, "1h"),
            (86_400_000, "24h"),
            (3_723_004, "1h2m3s4ms"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for ms in [1, 999, 1_000, 61_001, 3_600_000, 90_061_001] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
