//! RFC 3339 timestamps in the one shape the API promises.
//!
//! Every timestamp the service emits (user JSON, event payloads) is UTC with
//! exactly six fractional digits, e.g. `2026-11-24T09:01:02.345678Z`: the
//! precision PostgreSQL's `timestamptz` stores, so a value read back from the
//! database formats identically every time and clients can compare strings.
//! It is written by hand (a civil-from-days conversion) because it is the only
//! date arithmetic we need, and a date crate would add far more than it saves.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds, truncated).
///
/// Times before 1970 are supported (PostgreSQL can store them); years outside
/// 0000..=9999 are clamped to four digits by the caller's data, not checked here.
pub fn format_utc_micros(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(LEN);
    write_utc_micros(&mut out, t);
    // Only ASCII digits and punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// The length of a timestamp with a four-digit year.
const LEN: usize = 27;

/// Appends `t` as [`format_utc_micros`] would, without allocating: this runs
/// twice for every user the API returns, and `format!` with padded integers
/// cost ~15% of a `GET /api/v1/users/{id}` (callgrind, BENCHMARKS.md).
pub fn write_utc_micros(out: &mut Vec<u8>, t: SystemTime) {
    // Whole seconds (floored) and microseconds (truncated) since the epoch, in
    // i64: 128-bit division would cost more than the rest of the formatting.
    let (secs, frac): (i64, u32) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_micros(),
        ),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_micros() {
                0 => (-s, 0),
                us => (-s - 1, 1_000_000 - us),
            }
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let year = match u32::try_from(year) {
        Ok(y) if y <= 9999 => y,
        // Outside four-digit years: rare enough for the general formatter.
        _ => {
            out.extend_from_slice(
                format!(
                    "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
                    sod / 3600,
                    (sod % 3600) / 60,
                    sod % 60
                )
                .as_bytes(),
            );
            return;
        }
    };
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    put(&mut buf[0..4], year);
    put(&mut buf[5..7], month);
    put(&mut buf[8..10], day);
    put(&mut buf[11..13], sod / 3600);
    put(&mut buf[14..16], (sod % 3600) / 60);
    put(&mut buf[17..19], sod % 60);
    put(&mut buf[20..26], frac);
    out.extend_from_slice(&buf);
}

/// Writes `n` as zero-padded decimal filling `dst` exactly (higher digits are
/// dropped); shared with the log timestamps.
pub(crate) fn put(dst: &mut [u8], mut n: u32) {
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
        let t = UNIX_EPOCH - Duration::from_millis(1_500);
        assert_eq!(format_utc_micros(t), "1969-12-31T23:59:58.500000Z");
        // Sub-microsecond parts are dropped toward the epoch, as after it.
        let t = UNIX_EPOCH - Duration::from_nanos(500);
        assert_eq!(format_utc_micros(t), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH - Duration::from_nanos(2_000_500);
        assert_eq!(format_utc_micros(t), "1969-12-31T23:59:59.998000Z");
    }

    /// The fast writer agrees with a plain `format!` of the same fields over
    /// instants spread from 1900 to 2400, and past year 9999 it falls back.
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
        // 300,000 years is 750 whole 400-year cycles of 146,097 days.
        let far = UNIX_EPOCH + Duration::from_secs(750 * 146_097 * 86_400);
        assert_eq!(format_utc_micros(far), "301970-01-01T00:00:00.000000Z");
    }
}
