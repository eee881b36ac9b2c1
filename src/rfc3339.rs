//! RFC 3339 timestamps in UTC, written by hand, in the two precisions the
//! service emits: microseconds for the API (user JSON, event payloads) and
//! milliseconds for log lines.
//!
//! - API: exactly six fractional digits, e.g. `2026-11-24T09:01:02.345678Z`:
//!   the precision PostgreSQL's `timestamptz` stores, so a value read back
//!   from the database formats identically every time and clients can
//!   compare strings.
//! - Logs: `2026-11-24T09:01:02.345Z`, a fixed 24-byte value on the stack
//!   ([`Rfc3339Millis`]), so formatting a log timestamp never allocates.
//!
//! One rule for both: the instant is floored to the precision (also before
//! 1970), and instants outside years 0000–9999, which RFC 3339 cannot
//! express, are clamped to the nearest representable one, so the text always
//! has its fixed length.
//!
//! Why by hand: the only date arithmetic we need is Howard Hinnant's
//! `civil_from_days` (below); a date crate would add a dependency, time-zone
//! machinery we never use and, for some, an allocation per call.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::decimal::two_digits;

/// Seconds from 1970-01-01T00:00:00Z to 0000-01-01T00:00:00Z (negative).
const MIN_SECS: i64 = -62_167_219_200;
/// Seconds from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MAX_SECS: i64 = 253_402_300_799;

/// Length of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
const MICROS_LEN: usize = 27;
/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
const MILLIS_LEN: usize = 24;

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds, floored).
pub fn format_utc_micros(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(MICROS_LEN);
    write_utc_micros(&mut out, t);
    // Only ASCII digits and punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `t` as [`format_utc_micros`] would, without allocating: this runs
/// twice for every user the API returns, and `format!` with padded integers
/// cost ~15% of a `GET /api/v1/users/{id}` (callgrind, BENCHMARKS.md).
pub fn write_utc_micros(out: &mut Vec<u8>, t: SystemTime) {
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let (secs, micros) = clamped(t);
    write_fields(&mut buf, secs, micros, 6);
    out.extend_from_slice(&buf);
}

/// A formatted log timestamp, `2026-11-24T09:01:02.345Z`, held inline (no
/// heap): always exactly 24 ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339Millis {
    buf: [u8; MILLIS_LEN],
}

impl Rfc3339Millis {
    /// Formats `t` (UTC, floored to the millisecond).
    pub fn new(t: SystemTime) -> Self {
        let mut buf = *b"0000-00-00T00:00:00.000Z";
        let (secs, micros) = clamped(t);
        write_fields(&mut buf, secs, micros / 1000, 3);
        Rfc3339Millis { buf }
    }

    /// The timestamp as text.
    pub fn as_str(&self) -> &str {
        // Every byte written is an ASCII digit or one of `-T:.Z`.
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

/// Whole seconds since the epoch and the microsecond within, floored (so
/// negative seconds before 1970) and clamped to years 0000–9999.
fn clamped(t: SystemTime) -> (i64, u32) {
    // In i64 seconds and u32 microseconds: 128-bit division cost more than
    // the rest of the formatting (this runs twice for every user returned).
    let (secs, micros) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_micros(),
        ),
        Err(e) => {
            // Before 1970: -(s + n/1e9) s, floored to the microsecond.
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-s, 0),
                n => (-s - 1, (1_000_000_000 - n) / 1000),
            }
        }
    };
    if secs < MIN_SECS {
        (MIN_SECS, 0)
    } else if secs > MAX_SECS {
        (MAX_SECS, 999_999)
    } else {
        (secs, micros)
    }
}

/// Fills `buf` (`YYYY-MM-DDTHH:MM:SS.` + `digits` fraction digits + `Z`):
/// two digits at a time from a table, since every user in a response and
/// every log line carries a timestamp (a digit-by-digit loop cost ~250
/// instructions per timestamp, two in each `GET /api/v1/users/{id}`).
fn write_fields(buf: &mut [u8], secs: i64, fraction: u32, digits: usize) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    // Clamped above: 0..=9999.
    let year = year as u32;
    put2(&mut buf[0..2], year / 100);
    put2(&mut buf[2..4], year % 100);
    put2(&mut buf[5..7], month);
    put2(&mut buf[8..10], day);
    put2(&mut buf[11..13], sod / 3600);
    put2(&mut buf[14..16], (sod % 3600) / 60);
    put2(&mut buf[17..19], sod % 60);
    match digits {
        6 => {
            put2(&mut buf[20..22], fraction / 10_000);
            put2(&mut buf[22..24], (fraction / 100) % 100);
            put2(&mut buf[24..26], fraction % 100);
        }
        _ => put(&mut buf[20..20 + digits], fraction),
    }
}

/// Writes `n % 100` as two decimal digits.
fn put2(dst: &mut [u8], n: u32) {
    dst.copy_from_slice(&two_digits(n));
}

/// Writes `n` as zero-padded decimal filling `dst` exactly (higher digits are
/// dropped).
fn put(dst: &mut [u8], mut n: u32) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms", `civil_from_days`: shift the
/// epoch to 0000-03-01 so that the leap day is the last day of a year, then split into 400-year
/// eras (146 097 days each), years of era, and a day of year whose month follows from the
/// `(5 * doy + 2) / 153` trick. Exact for every day a `SystemTime` can name.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
    }

    #[test]
    fn epoch() {
        assert_eq!(format_utc_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn known_instant_with_fixed_precision() {
        // 2026-11-24T09:01:02Z = 1795510862 (date -u -d ... +%s)
        assert_eq!(
            format_utc_micros(at(1_795_510_862, 345_678)),
            "2026-11-24T09:01:02.345678Z"
        );
        assert_eq!(
            format_utc_micros(at(1_795_510_862, 5)),
            "2026-11-24T09:01:02.000005Z"
        );
    }

    #[test]
    fn nanoseconds_are_truncated_not_rounded() {
        let t = at(0, 0) + Duration::from_nanos(999);
        assert_eq!(format_utc_micros(t), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn leap_days_and_year_ends() {
        // 2024-02-29T23:59:59Z = 1709251199
        assert_eq!(
            format_utc_micros(at(1_709_251_199, 999_999)),
            "2024-02-29T23:59:59.999999Z"
        );
        // 2000-03-01T00:00:00Z = 951868800 (2000 is a leap year)
        assert_eq!(
            format_utc_micros(at(951_868_800, 0)),
            "2000-03-01T00:00:00.000000Z"
        );
        // 1999-12-31T23:59:59Z = 946684799
        assert_eq!(
            format_utc_micros(at(946_684_799, 0)),
            "1999-12-31T23:59:59.000000Z"
        );
    }

    #[test]
    fn before_the_epoch() {
        let t = UNIX_EPOCH - Duration::from_micros(1);
        assert_eq!(format_utc_micros(t), "1969-12-31T23:59:59.999999Z");
        // 1900-01-01T00:00:00Z = -2208988800
        let t = UNIX_EPOCH - Duration::from_secs(2_208_988_800);
        assert_eq!(format_utc_micros(t), "1900-01-01T00:00:00.000000Z");
    }

    /// The fast writer agrees with a plain `format!` of the same fields over
    /// instants spread from 1900 to 2400, and past year 9999 it clamps.
    #[test]
    fn fast_writer_matches_the_general_formatter() {
        let reference = |t: SystemTime| {
            let d = t.duration_since(UNIX_EPOCH).expect("after epoch");
            let secs = d.as_secs() as i64;
            let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            format!(
                "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
                sod / 3600,
                (sod % 3600) / 60,
                sod % 60,
                d.subsec_micros()
            )
        };
        let mut secs: u64 = 0;
        while secs < 13_569_465_600 {
            let t = at(secs, (secs % 1_000_000) as u32);
            assert_eq!(format_utc_micros(t), reference(t), "{secs}");
            secs += 1_234_567_891;
        }
        // Past year 9999 the one rule holds: clamped, like the log lines.
        let far = UNIX_EPOCH + Duration::from_secs(750 * 146_097 * 86_400);
        assert_eq!(format_utc_micros(far), "9999-12-31T23:59:59.999999Z");
    }

    fn at_ms(secs: u64, ms: u64) -> String {
        Rfc3339Millis::new(UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms)).to_string()
    }

    #[test]
    fn known_instants() {
        assert_eq!(at_ms(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at_ms(951_782_400, 1), "2000-02-29T00:00:00.001Z");
        assert_eq!(at_ms(1_709_164_800, 500), "2024-02-29T00:00:00.500Z");
        assert_eq!(at_ms(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
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
    fn every_day_matches_a_naive_calendar_walk_ms() {
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
