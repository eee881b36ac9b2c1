//! What a handler answers, before it is written to the wire.
//!
//! Handlers build a plain [`ApiResponse`] (or return a [`Problem`]); the pipeline
//! adds `X-Request-ID`, turns it into a tiny_http response and writes it. Keeping
//! this type free of sockets lets handlers be tested as pure functions.

use std::borrow::Cow;

use serde::Serialize;

use crate::http::problem::{self, Problem};

/// A header value: most are constants (content types, `Retry-After: 1`) and
/// are not copied per response; the rest (`Location`) are built.
pub type HeaderValue = Cow<'static, str>;

/// An answer: status, headers (content type included) and a body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, HeaderValue)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// No body (e.g. 204).
    pub fn empty(status: u16) -> ApiResponse {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` body.
    pub fn text(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("Content-Type", Cow::Borrowed("text/plain; charset=utf-8"))],
            body: body.as_bytes().to_vec(),
        }
    }

    /// A JSON body.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> ApiResponse {
        match serde_json::to_vec(value) {
            Ok(body) => ApiResponse {
                status,
                headers: vec![("Content-Type", Cow::Borrowed("application/json"))],
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

    /// A body that is already JSON text.
    pub fn json_text(status: u16, body: String) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("Content-Type", Cow::Borrowed("application/json"))],
            body: body.into_bytes(),
        }
    }

    /// A problem+json body carrying the request id.
    pub fn problem(p: &Problem, request_id: &str) -> ApiResponse {
        let mut headers = Vec::with_capacity(1 + p.headers.len());
        headers.push(("Content-Type", Cow::Borrowed(problem::CONTENT_TYPE)));
        headers.extend(p.headers.iter().cloned());
        ApiResponse {
            status: p.status,
            headers,
            body: p.to_body(request_id),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<HeaderValue>) -> ApiResponse {
        self.headers.push((name, value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
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
}
