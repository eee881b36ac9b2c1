//! What a handler answers, before it is written to the wire.
//!
//! Handlers build a plain [`ApiResponse`] (or return a [`Problem`]); the pipeline
//! adds `X-Request-ID`, turns it into a tiny_http response and writes it. Keeping
//! this type free of sockets lets handlers be tested as pure functions.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;

use crate::http::problem::{self, Problem};

/// A header value: most are constants (content types, `Retry-After: 1`) and
/// are not copied per response; a short one made per response (a user's
/// `ETag`) is held in place; the rest (`Location`) are built on the heap.
#[derive(Clone)]
pub struct HeaderValue(ValueRepr);

#[derive(Clone)]
enum ValueRepr {
    Static(&'static str),
    /// ASCII text made per response: in place up to
    /// [`tiny_http::FieldValue::INLINE`] bytes, on the heap beyond.
    Copied(tiny_http::FieldValue),
    Owned(String),
}

impl HeaderValue {
    /// A copy of `bytes`: in place when they are short ASCII (no allocation),
    /// else on the heap (anything not ASCII as U+FFFD; tiny_http drops such a
    /// value rather than send it).
    pub fn copied(bytes: &[u8]) -> HeaderValue {
        HeaderValue(match tiny_http::FieldValue::from_ascii(bytes) {
            Ok(v) => ValueRepr::Copied(v),
            Err(()) => ValueRepr::Owned(String::from_utf8_lossy(bytes).into_owned()),
        })
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            ValueRepr::Static(s) => s,
            ValueRepr::Copied(v) => v.as_str(),
            ValueRepr::Owned(s) => s,
        }
    }
}

impl From<&'static str> for HeaderValue {
    fn from(s: &'static str) -> HeaderValue {
        HeaderValue(ValueRepr::Static(s))
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> HeaderValue {
        HeaderValue(ValueRepr::Owned(s))
    }
}

impl Deref for HeaderValue {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for HeaderValue {
    fn eq(&self, other: &HeaderValue) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// An answer: status, headers (content type included) and a body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A response's headers: the content type, which nearly every answer has,
/// and the first other header (a user's `ETag`, an `Allow`, a
/// `Retry-After`) in place; any more in a `Vec`. An answer with up to one
/// header besides its type thus allocates nothing for them (one allocation
/// fewer per request).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headers {
    content_type: Option<HeaderValue>,
    first: Option<(&'static str, HeaderValue)>,
    more: Vec<(&'static str, HeaderValue)>,
}

impl Headers {
    /// Just a `Content-Type`.
    pub fn content_type(value: impl Into<HeaderValue>) -> Headers {
        Headers {
            content_type: Some(value.into()),
            first: None,
            more: Vec::new(),
        }
    }

    /// Adds a header (a second `Content-Type` is kept as given, after the first).
    pub fn push(&mut self, name: &'static str, value: impl Into<HeaderValue>) {
        let value = value.into();
        if self.content_type.is_none() && name.eq_ignore_ascii_case(CONTENT_TYPE) {
            self.content_type = Some(value);
        } else if self.first.is_none() {
            self.first = Some((name, value));
        } else {
            self.more.push((name, value));
        }
    }

    /// Every header in order, the content type first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        self.content_type
            .as_deref()
            .map(|v| (CONTENT_TYPE, v))
            .into_iter()
            .chain(
                self.first
                    .iter()
                    .chain(&self.more)
                    .map(|(n, v)| (*n, v.as_str())),
            )
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

const CONTENT_TYPE: &str = "Content-Type";

impl ApiResponse {
    /// No body (e.g. 204).
    pub fn empty(status: u16) -> ApiResponse {
        ApiResponse {
            status,
            headers: Headers::default(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` body.
    pub fn text(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: Headers::content_type("text/plain; charset=utf-8"),
            body: body.as_bytes().to_vec(),
        }
    }

    /// A JSON body.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> ApiResponse {
        match serde_json::to_vec(value) {
            Ok(body) => ApiResponse {
                status,
                headers: Headers::content_type("application/json"),
                body,
            },
            // Our own types always serialise; if one ever does not, say so
            // instead of sending half a body.
            Err(e) => ApiResponse::problem(
                &Problem::new(500, format!("response encoding failed: {e}")),
                "",
            ),
        }
    }

    /// A body that is already JSON text (a `String`, or its bytes).
    pub fn json_text(status: u16, body: impl Into<Vec<u8>>) -> ApiResponse {
        ApiResponse {
            status,
            headers: Headers::content_type("application/json"),
            body: body.into(),
        }
    }

    /// A problem+json body carrying the request id.
    pub fn problem(p: &Problem, request_id: &str) -> ApiResponse {
        let mut headers = Headers::content_type(problem::CONTENT_TYPE);
        for (name, value) in &p.headers {
            headers.push(name, value.clone());
        }
        ApiResponse {
            status: p.status,
            headers,
            body: p.to_body(request_id),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<HeaderValue>) -> ApiResponse {
        self.headers.push(name, value);
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_set_content_type_and_body() {
        let r = ApiResponse::json(201, &serde_json::json!({"id": 1}));
        assert_eq!(r.status, 201);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, br#"{"id":1}"#);
        let p = ApiResponse::problem(&Problem::new(404, "x"), "rid");
        assert_eq!(p.header("Content-Type"), Some("application/problem+json"));
        let t = ApiResponse::text(200, "ok").with_header("Retry-After", "1");
        assert_eq!(t.header("retry-after"), Some("1"));
        assert_eq!(t.body, b"ok");
    }

    #[test]
    fn copied_values_keep_their_text() {
        let long = "x".repeat(tiny_http::FieldValue::INLINE + 5);
        for text in ["\"0006620a1b2c3d4e\"", long.as_str(), ""] {
            assert_eq!(HeaderValue::copied(text.as_bytes()).as_str(), text);
        }
        assert_eq!(HeaderValue::copied(b"a\xffb").as_str(), "a\u{fffd}b");
    }

    #[test]
    fn headers_keep_their_order_with_the_content_type_first() {
        let r = ApiResponse::empty(503)
            .with_header("Retry-After", "1")
            .with_header("content-type", "text/plain")
            .with_header("Content-Type", "text/html")
            .with_header("Allow", "GET");
        let all: Vec<_> = r.headers.iter().collect();
        assert_eq!(
            all,
            [
                ("Content-Type", "text/plain"),
                ("Retry-After", "1"),
                ("Content-Type", "text/html"),
                ("Allow", "GET"),
            ]
        );
        assert_eq!(r.header("CONTENT-TYPE"), Some("text/plain"));
        assert_eq!(ApiResponse::empty(204).headers.iter().count(), 0);
    }
}
