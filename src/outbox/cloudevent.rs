//! The webhook body: a CloudEvents 1.0 structured-mode JSON document.
//!
//! `data` is the event's stored payload embedded verbatim (a
//! [`RawValue`]): the bytes the receiver gets are the user exactly as the
//! API returned it when the change was made, never re-serialised.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::rfc3339::format_utc_micros;

/// `Content-Type` of a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The `source` attribute.
pub const SOURCE: &str = "usersvc";

#[derive(Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'static str,
    #[serde(rename = "type")]
    kind: &'a str,
    time: String,
    datacontenttype: &'static str,
    data: &'a RawValue,
}

/// The body for one event. Fails only when `payload` is not JSON.
pub fn body(
    id: &str,
    kind: &str,
    created_at: SystemTime,
    payload: &str,
) -> Result<Vec<u8>, serde_json::Error> {
    let data: &RawValue = serde_json::from_str(payload)?;
    serde_json::to_vec(&Envelope {
        specversion: "1.0",
        id,
        source: SOURCE,
        kind,
        time: format_utc_micros(created_at),
        datacontenttype: "application/json",
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn structured_mode_with_the_payload_verbatim() {
        let payload = r#"{"id":7,"name":"Ada  \u00e9","email":"a@x.io","created_at":"2024-01-01T00:00:00.000001Z","updated_at":"2024-01-01T00:00:00.000001Z"}"#;
        let t = UNIX_EPOCH + Duration::from_micros(1_704_067_200_000_001);
        let bytes = body("0b6c…", "user.created", t, payload).expect("json payload");
        let text = String::from_utf8(bytes).expect("utf8");
        assert_eq!(
            text,
            format!(
                "{{\"specversion\":\"1.0\",\"id\":\"0b6c…\",\"source\":\"usersvc\",\
                 \"type\":\"user.created\",\"time\":\"2024-01-01T00:00:00.000001Z\",\
                 \"datacontenttype\":\"application/json\",\"data\":{payload}}}"
            )
        );
        assert!(body("x", "user.created", t, "not json").is_err());
    }
}
