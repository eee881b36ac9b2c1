//! The value grammars of the standard OpenTelemetry variables: the sampler
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the exporter's headers,
//! timeout, protocol and compression (`OTEL_EXPORTER_OTLP_*`), the resource
//! attributes (`OTEL_RESOURCE_ATTRIBUTES`) and `OTEL_SDK_DISABLED`.
//!
//! Why our own enum: the SDK reads these variables itself only if asked to,
//! and then ignores a typo silently (falling back to its default). We
//! validate them with everything else, so `parentbased_traceidration`
//! fails at start-up with exit 2. The names are the OTel specification's;
//! the remote samplers (`jaeger_remote`, `xray`) are not supported.

use std::fmt;
use std::time::Duration;

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

/// The one OTLP protocol this build speaks (`OTEL_EXPORTER_OTLP_PROTOCOL`):
/// `grpc` and `http/json` are refused, never silently replaced.
pub const OTLP_PROTOCOL: &str = "http/protobuf";

/// The one OTLP compression this build implements
/// (`OTEL_EXPORTER_OTLP_COMPRESSION`): `gzip` is refused.
pub const OTLP_COMPRESSION: &str = "none";

/// The one propagator built in (`OTEL_PROPAGATORS`): W3C Trace Context.
/// `baggage`, `b3`, `jaeger`, `xray` are refused.
pub const PROPAGATOR: &str = "tracecontext";

/// `OTEL_PROPAGATORS`: a comma-separated list whose every entry is
/// `tracecontext`.
pub fn parse_propagators(text: &str) -> Result<(), &'static str> {
    if text
        .split(',')
        .map(str::trim)
        .all(|p| p.eq_ignore_ascii_case(PROPAGATOR))
    {
        Ok(())
    } else {
        Err("names a propagator this build does not implement")
    }
}

/// `OTEL_TRACES_EXPORTER`: `otlp` (true) or `none` (false).
pub fn parse_traces_exporter(text: &str) -> Result<bool, &'static str> {
    if text.eq_ignore_ascii_case("otlp") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("none") {
        Ok(false)
    } else {
        Err("is not an exporter this build implements")
    }
}

/// The longest `OTEL_EXPORTER_OTLP_TIMEOUT`: an export attempt longer than a
/// minute only holds spans that will be dropped anyway.
pub const MAX_OTLP_TIMEOUT: Duration = Duration::from_secs(60);

/// `OTEL_EXPORTER_OTLP_HEADERS`: extra HTTP headers on every export, such as
/// an API key. `Debug` shows the names only: the values are often secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OtlpHeaders(Vec<(String, String)>);

impl OtlpHeaders {
    /// The headers, names and values, for the HTTP client only.
    pub fn expose(&self) -> &[(String, String)] {
        &self.0
    }

    /// `name=***,name=***`: how `--print-config` shows them.
    pub fn redacted(&self) -> String {
        self.0
            .iter()
            .map(|(name, _)| format!("{name}=***"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OtlpHeaders")
            .field(&self.redacted())
            .finish()
    }
}

/// The OTel specification's `key1=value1,key2=value2` list (W3C Baggage
/// without properties): entries trimmed, values percent-decoded, empty
/// entries skipped. Keys must be non-empty; duplicates keep the last value.
fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (key, value) = entry.split_once('=').ok_or("has an entry without '='")?;
        let key = key.trim();
        if key.is_empty() {
            return Err("has an entry with an empty key");
        }
        let value = crate::percent::decode_strict(value.trim())
            .map_err(|_| "has a badly percent-encoded value")?;
        pairs.retain(|(k, _)| k != key);
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: names are HTTP tokens, values visible
/// ASCII (spaces and tabs inside allowed) after percent-decoding.
pub fn parse_headers(text: &str) -> Result<OtlpHeaders, &'static str> {
    let pairs = parse_pairs(text)?;
    for (name, value) in &pairs {
        if !name.bytes().all(is_token_byte) {
            return Err("has a header name that is not an HTTP token");
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
        {
            return Err("has a header value with control or non-ASCII characters");
        }
    }
    Ok(OtlpHeaders(pairs))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs (values percent-decoded)
/// added to every span's resource; printable text only.
pub fn parse_resource_attributes(text: &str) -> Result<Vec<(String, String)>, &'static str> {
    let pairs = parse_pairs(text)?;
    if pairs
        .iter()
        .any(|(k, v)| k.chars().chain(v.chars()).any(char::is_control))
    {
        return Err("contains control characters");
    }
    Ok(pairs)
}

/// Why an OTLP timeout is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtlpTimeoutError {
    /// Zero, above 60s, or too many milliseconds to count.
    OutOfRange,
    /// Not a duration either.
    Duration(crate::duration_text::DurationError),
}

impl std::fmt::Display for OtlpTimeoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OtlpTimeoutError::OutOfRange => f.write_str("is out of range"),
            OtlpTimeoutError::Duration(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OtlpTimeoutError {}

/// `OTEL_EXPORTER_OTLP_TIMEOUT`: whole milliseconds as the specification
/// writes it (`10000`), or a duration (`10s`); 1ms to 60s.
pub fn parse_otlp_timeout(text: &str) -> Result<Duration, OtlpTimeoutError> {
    let duration = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_millis(
            text.parse::<u64>()
                .map_err(|_| OtlpTimeoutError::OutOfRange)?,
        )
    } else {
        crate::duration_text::parse_duration(text).map_err(OtlpTimeoutError::Duration)?
    };
    if duration.is_zero() || duration > MAX_OTLP_TIMEOUT {
        return Err(OtlpTimeoutError::OutOfRange);
    }
    Ok(duration)
}

/// `OTEL_SDK_DISABLED`: `true` or `false`, any case (the specification's
/// only values; anything else is refused rather than read as `false`).
pub fn parse_sdk_disabled(text: &str) -> Result<bool, &'static str> {
    if text.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err("is not true or false")
    }
}

/// A variable whose only implemented value is `only` (protocol, compression).
pub fn parse_only(only: &'static str) -> impl Fn(&str) -> Result<(), &'static str> {
    move |text| {
        if text.eq_ignore_ascii_case(only) {
            Ok(())
        } else {
            Err("is not supported by this build")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_attributes() {
        let h = parse_headers("api-key=s3cret, x-tenant = a%20b ,,").expect("valid");
        assert_eq!(
            h.expose(),
            &[
                ("api-key".to_owned(), "s3cret".to_owned()),
                ("x-tenant".to_owned(), "a b".to_owned())
            ]
        );
        assert_eq!(h.redacted(), "api-key=***,x-tenant=***");
        assert!(!format!("{h:?}").contains("s3cret"));
        assert!(parse_headers("novalue").is_err());
        assert!(parse_headers("=v").is_err());
        assert!(parse_headers("bad name=v").is_err());
        assert!(parse_headers("k=%0d%0aInjected: yes").is_err());
        assert!(parse_headers("k=%zz").is_err());
        let a = parse_resource_attributes("deployment.environment=prod,team=a%2Cb").expect("ok");
        assert_eq!(a[1], ("team".to_owned(), "a,b".to_owned()));
        assert!(parse_resource_attributes("k=%07").is_err());
    }

    #[test]
    fn timeouts_and_switches() {
        assert_eq!(parse_otlp_timeout("10000"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_otlp_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_otlp_timeout("0").is_err());
        assert!(parse_otlp_timeout("61s").is_err());
        assert!(parse_otlp_timeout("99999999999999999999").is_err());
        assert_eq!(parse_sdk_disabled("TRUE"), Ok(true));
        assert_eq!(parse_sdk_disabled("false"), Ok(false));
        assert!(parse_sdk_disabled("1").is_err());
        assert!(parse_only(OTLP_PROTOCOL)("http/protobuf").is_ok());
        assert!(parse_only(OTLP_PROTOCOL)("grpc").is_err());
        assert!(parse_propagators("tracecontext, TraceContext").is_ok());
        assert!(parse_propagators("tracecontext,baggage").is_err());
        assert_eq!(parse_traces_exporter("OTLP"), Ok(true));
        assert_eq!(parse_traces_exporter("none"), Ok(false));
        assert!(parse_traces_exporter("console").is_err());
    }

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
