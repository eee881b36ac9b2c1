//! The standard OpenTelemetry sampler variables, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`.
//!
//! Why our own enum: the SDK reads these variables itself only if asked to,
//! and then ignores a typo silently (falling back to its default). We
//! validate them with everything else, so `parentbased_traceidration`
//! fails at start-up with exit 2. The names are the OTel specification's;
//! the remote samplers (`jaeger_remote`, `xray`) are not supported.

use std::fmt;

/// A sampler from the OpenTelemetry environment-variable specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtelSampler {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio,
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio,
}

impl OtelSampler {
    /// Every sampler, in the specification's order.
    pub const ALL: [OtelSampler; 6] = [
        OtelSampler::AlwaysOn,
        OtelSampler::AlwaysOff,
        OtelSampler::TraceIdRatio,
        OtelSampler::ParentBasedAlwaysOn,
        OtelSampler::ParentBasedAlwaysOff,
        OtelSampler::ParentBasedTraceIdRatio,
    ];

    /// The name as `OTEL_TRACES_SAMPLER` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OtelSampler::AlwaysOn => "always_on",
            OtelSampler::AlwaysOff => "always_off",
            OtelSampler::TraceIdRatio => "traceidratio",
            OtelSampler::ParentBasedAlwaysOn => "parentbased_always_on",
            OtelSampler::ParentBasedAlwaysOff => "parentbased_always_off",
            OtelSampler::ParentBasedTraceIdRatio => "parentbased_traceidratio",
        }
    }

    /// A sampler by name, any case.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// Whether `OTEL_TRACES_SAMPLER_ARG` (the ratio) applies.
    pub fn uses_ratio(self) -> bool {
        matches!(
            self,
            OtelSampler::TraceIdRatio | OtelSampler::ParentBasedTraceIdRatio
        )
    }
}

impl fmt::Display for OtelSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sampling ratio from 0 to 1 inclusive (`0.01`, `1`, `0`); not NaN,
/// not infinite.
pub fn parse_ratio(text: &str) -> Option<f64> {
    // `f64::from_str` also takes "inf", "NaN" and "1e-2"; only plain
    // decimals are documented, but exponents are harmless.
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sampler_round_trips() {
        for sampler in OtelSampler::ALL {
            assert_eq!(OtelSampler::parse(sampler.as_str()), Some(sampler));
            assert_eq!(sampler.to_string(), sampler.as_str());
        }
        assert_eq!(
            OtelSampler::parse("ParentBased_TraceIdRatio"),
            Some(OtelSampler::ParentBasedTraceIdRatio)
        );
        assert_eq!(OtelSampler::parse("jaeger_remote"), None);
        assert_eq!(OtelSampler::parse("parentbased_traceidration"), None);
        assert_eq!(OtelSampler::parse(""), None);
        assert!(OtelSampler::TraceIdRatio.uses_ratio());
        assert!(!OtelSampler::AlwaysOn.uses_ratio());
    }

    #[test]
    fn ratios() {
        let cases = [
            ("0", Some(0.0)),
            ("1", Some(1.0)),
            ("0.01", Some(0.01)),
            (".5", Some(0.5)),
            ("1.0", Some(1.0)),
            ("1e-2", Some(0.01)),
            ("1.01", None),
            ("-0.1", None),
            ("NaN", None),
            ("inf", None),
            ("half", None),
            ("", None),
            ("0,5", None),
        ];
        for (given, want) in cases {
            assert_eq!(parse_ratio(given), want, "{given:?}");
        }
    }
}
