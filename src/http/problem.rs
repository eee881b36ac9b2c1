//! RFC 9457 problem details: the one shape of every error body.
//!
//! `{"type","title","status","detail","request_id"}` plus optional extension
//! members (e.g. `errors` for 422), served as `application/problem+json`.

use serde_json::{Map, Value};

use crate::http::response::HeaderValue;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error answer before it is rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
    /// A URI reference naming the problem type; `about:blank` when the status
    /// code says it all.
    pub kind: &'static str,
    pub extensions: Map<String, Value>,
    /// Extra response headers, e.g. `Allow` on 405, `Retry-After` on 503.
    pub headers: Vec<(&'static str, HeaderValue)>,
}

impl Problem {
    /// A problem whose status code's reason phrase is its title.
    pub fn new(status: u16, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            title: reason_phrase(status),
            detail: detail.into(),
            kind: "about:blank",
            extensions: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_type(mut self, kind: &'static str, title: &'static str) -> Problem {
        self.kind = kind;
        self.title = title;
        self
    }

    pub fn with_extension(mut self, key: &str, value: Value) -> Problem {
        self.extensions.insert(key.to_owned(), value);
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<HeaderValue>) -> Problem {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON body, with the request id that every error carries.
    pub fn to_body(&self, request_id: &str) -> Vec<u8> {
        let mut obj = Map::with_capacity(5 + self.extensions.len());
        obj.insert("type".into(), Value::from(self.kind));
        obj.insert("title".into(), Value::from(self.title));
        obj.insert("status".into(), Value::from(self.status));
        obj.insert("detail".into(), Value::from(self.detail.as_str()));
        obj.insert("request_id".into(), Value::from(request_id));
        for (k, v) in &self.extensions {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        // Serialising a Value built from strings and numbers cannot fail.
        serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
    }
}

/// The reason phrase of `status`, which is also the title of its problem
/// bodies: the HTTP layer's one table (RFC 9110 §15), so that the status line
/// and the body never disagree.
pub fn reason_phrase(status: u16) -> &'static str {
    tiny_http::StatusCode(status).default_reason_phrase()
}

/// 413: the same answer whether the HTTP layer saw a `Content-Length` over
/// the limit or a handler counted a chunked body past it.
pub fn body_too_large(max_body_bytes: u64) -> Problem {
    Problem::new(
        413,
        format!("the request body exceeds the limit of {max_body_bytes} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_every_rfc9457_member_and_the_request_id() {
        let p = Problem::new(404, "no user with id 7")
            .with_extension("errors", serde_json::json!([{"field": "email"}]));
        let v: Value = serde_json::from_slice(&p.to_body("rid-1")).expect("json");
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["title"], "Not Found");
        assert_eq!(v["status"], 404);
        assert_eq!(v["detail"], "no user with id 7");
        assert_eq!(v["request_id"], "rid-1");
        assert_eq!(v["errors"][0]["field"], "email");
    }

    #[test]
    fn titles_are_the_status_lines_reason_phrases() {
        for (status, title) in [
            (404, "Not Found"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (417, "Expectation Failed"),
            (422, "Unprocessable Content"),
            (505, "HTTP Version Not Supported"),
        ] {
            assert_eq!(Problem::new(status, "").title, title);
        }
    }

    #[test]
    fn extensions_cannot_override_standard_members() {
        let p = Problem::new(400, "bad").with_extension("status", Value::from(200));
        let v: Value = serde_json::from_slice(&p.to_body("r")).expect("json");
        assert_eq!(v["status"], 400);
    }
}
