//! The trace and span ids of every request, traced or not.
//!
//! Why: every log line written while serving a request carries `request_id`, `trace_id` and
//! `span_id` (SPEC, "Logs"), so that a request's lines join its caller's trace even when this
//! service exports no span for it (tracing off, or the request not sampled). A valid W3C
//! `traceparent` gives the trace id (the caller's trace); otherwise it is fresh and random. The
//! span id is always fresh, and a sampled request's server span is given the same two ids
//! ([`super::sampling::with_handed_ids`]): a line's ids do not depend on whether a span is
//! exported.

use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

/// 16 random bytes from the generator of the trace ids (a small, fast
/// generator per thread, seeded by the OS): what a fresh request id is made
/// of. A request id has to be unique, not secret; the `uuid` crate's own
/// generator (a cryptographic one) cost twice as much for each request.
pub fn random_bytes() -> [u8; 16] {
    RandomIdGenerator::default().new_trace_id().to_bytes()
}

/// A request's trace id and the id of its (server) span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl RequestIds {
    /// The ids of a request whose `traceparent` header is `traceparent`.
    pub fn for_request(traceparent: Option<&str>) -> RequestIds {
        let random = RandomIdGenerator::default();
        RequestIds {
            trace_id: traceparent
                .and_then(parent_trace_id)
                .unwrap_or_else(|| random.new_trace_id().to_bytes()),
            span_id: random.new_span_id().to_bytes(),
        }
    }
}

/// The trace id of a valid `traceparent` (W3C Trace Context: `version-traceid-parentid-flags`,
/// lower-case hex, version `00` exactly 55 characters, a later version may append `-…`; version
/// `ff` and all-zero ids are invalid), as the propagator reads it.
fn parent_trace_id(value: &str) -> Option<[u8; 16]> {
    let v = value.trim().as_bytes();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex_byte(&v[0..2])?;
    let valid_length = match version {
        0xff => false,
        0 => v.len() == 55,
        _ => v.len() == 55 || v[55] == b'-',
    };
    if !valid_length {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
    }
    let mut parent_id = [0u8; 8];
    for (i, b) in parent_id.iter_mut().enumerate() {
        *b = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
    }
    hex_byte(&v[53..55])?;
    (trace_id != [0; 16] && parent_id != [0; 8]).then_some(trace_id)
}

/// Two lower-case hex digits.
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(*two.first()?)? << 4 | digit(*two.get(1)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const TRACE_BYTES: [u8; 16] = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];

    #[test]
    fn a_valid_traceparent_gives_the_trace_id() {
        for tp in [
            format!("00-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{TRACE}-00f067aa0ba902b7-00"),
            format!("01-{TRACE}-00f067aa0ba902b7-01-future"),
            format!(" 00-{TRACE}-00f067aa0ba902b7-01 "),
        ] {
            assert_eq!(parent_trace_id(&tp), Some(TRACE_BYTES), "{tp}");
            assert_eq!(RequestIds::for_request(Some(&tp)).trace_id, TRACE_BYTES);
        }
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        for tp in [
            String::new(),
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{TRACE}-00f067aa0ba902b7-01-x"),
            format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_owned(),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{TRACE}-00f067aa0ba902b7-0g"),
            format!("00_{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{TRACE}-00f067aa0ba902b7"),
        ] {
            assert_eq!(parent_trace_id(&tp), None, "{tp:?}");
        }
        let a = RequestIds::for_request(None);
        let b = RequestIds::for_request(Some("junk"));
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.trace_id, [0; 16]);
        assert_ne!(a.span_id, [0; 8]);
    }
}
