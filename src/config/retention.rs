//! `OUTBOX_RETENTION`: an age counted in days as often as in hours.
//!
//! Why not the common duration grammar: every other duration is a timeout
//! (at most a day, and `5d` there is surely a typo), while a retention is
//! naturally `7d` or `30d`. So this one variable also takes whole days,
//! `<N>d`, and is printed back in days when it is a whole number of them.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::duration_text::{format_duration, parse_duration, DurationError};

/// One day.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The range `OUTBOX_RETENTION` accepts: a minute to a year.
pub(crate) const RETENTION: RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(365 * 24 * 3600);

/// Why a retention was refused; `Display` follows the value as a phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RetentionError {
    Duration(DurationError),
    OutOfRange,
}

impl std::fmt::Display for RetentionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetentionError::Duration(e) => e.fmt(f),
            RetentionError::OutOfRange => f.write_str("is out of range"),
        }
    }
}

/// `7d`, or anything [`parse_duration`] reads (`36h`, `90m`).
pub(crate) fn parse_retention(text: &str) -> Result<Duration, RetentionError> {
    let parsed = match text.strip_suffix('d') {
        Some(days) if !days.is_empty() && days.bytes().all(|b| b.is_ascii_digit()) => {
            let days: u32 = days.parse().map_err(|_| RetentionError::OutOfRange)?;
            DAY.checked_mul(days).ok_or(RetentionError::OutOfRange)?
        }
        _ => parse_duration(text).map_err(RetentionError::Duration)?,
    };
    if RETENTION.contains(&parsed) {
        Ok(parsed)
    } else {
        Err(RetentionError::OutOfRange)
    }
}

/// Whole days as `7d`, anything else as [`format_duration`] writes it.
pub fn format_retention(d: Duration) -> String {
    if !d.is_zero() && d.as_millis().is_multiple_of(DAY.as_millis()) {
        format!("{}d", d.as_millis() / DAY.as_millis())
    } else {
        format_duration(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_or_durations_within_a_minute_and_a_year() {
        assert_eq!(parse_retention("7d"), Ok(DAY * 7));
        assert_eq!(parse_retention("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_retention("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_retention("365d"), Ok(DAY * 365));
        for bad in [
            "0d",
            "366d",
            "59s",
            "d",
            "7",
            "7 d",
            "1.5d",
            "-1d",
            "99999999999d",
        ] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
        assert_eq!(format_retention(DAY * 7), "7d");
        assert_eq!(format_retention(Duration::from_secs(36 * 3600)), "36h");
    }
}
