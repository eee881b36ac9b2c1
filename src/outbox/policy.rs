//! What to do after an attempt: the retry rules, as pure functions.
//!
//! | receiver answered | then |
//! |---|---|
//! | 2xx | delivered |
//! | 429 | retry after `Retry-After` (seconds or an HTTP-date; else the back-off) |
//! | 408, 5xx, 3xx (redirects are not followed), no answer | retry with back-off |
//! | any other 4xx | parked at once: the receiver will never accept it |
//!
//! The back-off doubles per attempt from `OUTBOX_BACKOFF`, capped at
//! [`MAX_BACKOFF`], with "equal jitter" (half fixed, half random) so that
//! replicas retrying the same receiver spread out while each gap still
//! grows. A retry that would be attempt `OUTBOX_MAX_ATTEMPTS + 1` parks the
//! event instead.

use std::time::{Duration, SystemTime};

/// The longest gap between two attempts, and the longest `Retry-After`
/// honoured.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How one attempt ended, before the attempt budget is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth trying again; `after` overrides the back-off (Retry-After).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Never worth trying again.
    Reject {
        reason: String,
    },
}

/// The `outbox_attempts_total{result}` label of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Success,
    ClientError,
    RateLimited,
    ServerError,
    Network,
}

impl AttemptResult {
    pub const ALL: [AttemptResult; 5] = [
        AttemptResult::Success,
        AttemptResult::ClientError,
        AttemptResult::RateLimited,
        AttemptResult::ServerError,
        AttemptResult::Network,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Success => "success",
            AttemptResult::ClientError => "client_error",
            AttemptResult::RateLimited => "rate_limited",
            AttemptResult::ServerError => "server_error",
            AttemptResult::Network => "network",
        }
    }
}

/// Classifies an HTTP answer; `retry_after` is the header's value.
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    now: SystemTime,
) -> (Outcome, AttemptResult) {
    match status {
        200..=299 => (Outcome::Delivered, AttemptResult::Success),
        429 => (
            Outcome::Retry {
                after: retry_after.and_then(|v| parse_retry_after(v, now)),
                reason: "HTTP 429".to_owned(),
            },
            AttemptResult::RateLimited,
        ),
        408 => (
            Outcome::Retry {
                after: None,
                reason: "HTTP 408".to_owned(),
            },
            AttemptResult::ClientError,
        ),
        400..=499 => (
            Outcome::Reject {
                reason: format!("HTTP {status}"),
            },
            AttemptResult::ClientError,
        ),
        _ => (
            Outcome::Retry {
                after: None,
                reason: format!("HTTP {status}"),
            },
            AttemptResult::ServerError,
        ),
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`,
/// capped at [`MAX_BACKOFF`]; a date in the past is "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let d = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_BACKOFF))
}

/// The gap before attempt `attempts + 1`, after `attempts` failed ones
/// (≥ 1); `jitter` is uniform in [0, 1).
pub fn backoff(base: Duration, attempts: u32, jitter: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let full = base.saturating_mul(1 << exp).min(MAX_BACKOFF);
    let half = full / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A uniform number in [0, 1) from the OS's randomness (a v4 UUID's bits).
pub fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let now = SystemTime::now();
        assert_eq!(classify(204, None, now).0, Outcome::Delivered);
        assert!(matches!(classify(400, None, now).0, Outcome::Reject { .. }));
        assert!(matches!(classify(404, None, now).0, Outcome::Reject { .. }));
        assert!(matches!(
            classify(408, None, now).0,
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify(500, None, now).0,
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(classify(302, None, now).0, Outcome::Retry { .. }));
        assert_eq!(
            classify(429, Some("3"), now).0,
            Outcome::Retry {
                after: Some(Duration::from_secs(3)),
                reason: "HTTP 429".into()
            }
        );
        assert_eq!(classify(429, Some("3"), now).1, AttemptResult::RateLimited);
    }

    #[test]
    fn retry_after_in_both_forms_and_capped() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999", now),
            Some(MAX_BACKOFF)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn backoff_doubles_within_its_jitter_band_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(base, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(base, 2, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(base, 3, 0.5), Duration::from_millis(300));
        assert_eq!(backoff(base, 200, 1.0), MAX_BACKOFF);
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
