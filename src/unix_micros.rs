//! Timestamps at the database's precision: whole microseconds since the Unix
//! epoch in an `i64`, what PostgreSQL's `timestamptz` holds. One conversion
//! for every place that stores or compares a time at that precision: the
//! cache's encoding of a user, a user's version (`ETag`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `t` in microseconds since the epoch (negative before it), truncated to
/// the microsecond; saturating at `i64`'s ends (±292,000 years).
pub fn from_time(t: SystemTime) -> i64 {
    let m = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_micros()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_micros()).unwrap_or(i128::MAX),
    };
    i64::try_from(m).unwrap_or(if m < 0 { i64::MIN } else { i64::MAX })
}

/// The time `micros` microseconds from the epoch.
pub fn to_time(micros: i64) -> SystemTime {
    let d = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_the_microsecond_both_sides_of_the_epoch() {
        for m in [0, 1, -1, 1_733_561_234_567_891, -86_400_000_001] {
            assert_eq!(from_time(to_time(m)), m);
        }
        let with_nanos = UNIX_EPOCH + Duration::new(5, 123_456_789);
        assert_eq!(
            from_time(with_nanos),
            5_123_456,
            "truncated to the microsecond"
        );
    }
}
