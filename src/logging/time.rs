//! RFC 3339 timestamps in UTC with millisecond precision, computed by hand.
//!
//! Why by hand: the only timestamp the logger needs is `YYYY-MM-DDTHH:MM:SS.mmmZ`, and that is
//! thirty lines of integer arithmetic (Howard Hinnant's `civil_from_days`). A date crate would add
//! a dependency, time-zone machinery we never use and, for some, an allocation per call. The result
//! is a fixed 24-byte value on the stack, so formatting a timestamp never allocates.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
const LEN: usize = 24;

/// Seconds from 1970-01-01T00:00:00Z to 0000-01-01T00:00:00Z (negative).
const MIN_SECS: i64 = -62_167_219_200;
/// Seconds from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MAX_SECS: i64 = 253_402_300_799;

/// A formatted RFC 3339 timestamp, `2026-11-24T09:01:02.345Z`, held inline (no heap).
///
/// Instants outside years 0000–9999 (which RFC 3339 cannot express) are clamped to the nearest
/// representable millisecond, so the value is always exactly 24 ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339Millis {
    buf: [u8; LEN],
}

impl Rfc3339Millis {
    /// Formats `t` (UTC, truncated to the millisecond).
    pub fn new(t: SystemTime) -> Self {
        let (secs, millis) = split_epoch(t);
        let (secs, millis) = if secs < MIN_SECS {
            (MIN_SECS, 0)
        } else if secs > MAX_SECS {
            (MAX_SECS, 999)
        } else {
            (secs, millis)
        };
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);

        let mut buf = *b"0000-00-00T00:00:00.000Z";
        put(&mut buf[0..4], year as u32);
        put(&mut buf[5..7], month);
        put(&mut buf[8..10], day);
        put(&mut buf[11..13], sod / 3600);
        put(&mut buf[14..16], sod / 60 % 60);
        put(&mut buf[17..19], sod % 60);
        put(&mut buf[20..23], millis);
        Rfc3339Millis { buf }
    }

    /// The timestamp as text.
    pub fn as_str(&self) -> &str {
        // Every byte written above is an ASCII digit or one of `-T:.Z`.
        std::str::from_utf8(&self.buf).unwrap_or("0000-00-00T00:00:00.000Z")
    }

    /// The timestamp as ASCII bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Rfc3339Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Whole seconds since the epoch (floored, so negative before 1970) and the millisecond within.
fn split_epoch(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_millis(),
        ),
        Err(e) => {
            // `t` is before the epoch by `d`: floor to the millisecond below.
            let d = e.duration();
            let total_ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
            let total_ms = i128::try_from(total_ms).unwrap_or(i128::MAX);
            let ms = -total_ms;
            let secs = i64::try_from(ms.div_euclid(1000)).unwrap_or(i64::MIN);
            (secs, ms.rem_euclid(1000) as u32)
        }
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); shared
/// with the API's timestamps.
pub(crate) use crate::rfc3339::{civil_from_days, put};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, ms: u64) -> String {
        Rfc3339Millis::new(UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms)).to_string()
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.001Z");
        assert_eq!(at(1_709_164_800, 500), "2024-02-29T00:00:00.500Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn before_epoch_floors() {
        let t = UNIX_EPOCH - Duration::from_micros(1);
        assert_eq!(Rfc3339Millis::new(t).as_str(), "1969-12-31T23:59:59.999Z");
        let t = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(Rfc3339Millis::new(t).as_str(), "1969-12-31T00:00:00.000Z");
    }

    #[test]
    fn clamps_outside_four_digit_years() {
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(Rfc3339Millis::new(far).as_str(), "9999-12-31T23:59:59.999Z");
        let early = UNIX_EPOCH - Duration::from_secs(70_000_000_000);
        assert_eq!(
            Rfc3339Millis::new(early).as_str(),
            "0000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn every_day_matches_a_naive_calendar_walk() {
        // Walk day by day from 1970 to 2400 with a naive calendar and compare.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..(430 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > len[(m - 1) as usize] {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
