//! RFC 9457 problem details: the one shape of every error body.
//!
//! `{"type","title","status","detail","request_id"}` plus optional extension
//! members (e.g. `errors` for 422), served as `application/problem+json`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::http::response::HeaderValue;
use crate::json_string;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error answer before it is rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: u16,
    pub title: &'static str,
    /// Mostly a fixed sentence (`&'static`, not copied); built when it names
    /// a value.
    pub detail: Cow<'static, str>,
    /// A URI reference naming the problem type; `about:blank` when the status
    /// code says it all.
    pub kind: &'static str,
    pub extensions: Map<String, Value>,
    /// Extra response headers, e.g. `Allow` on 405, `Retry-After` on 503.
    pub headers: Vec<(&'static str, HeaderValue)>,
}

impl Problem {
    /// A problem whose status code's reason phrase is its title.
    pub fn new(status: u16, detail: impl Into<Cow<'static, str>>) -> Problem {
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

    /// The JSON body, with the request id that every error carries: the
    /// members in name order (what serialising them as a `serde_json::Map`
    /// gives, byte for byte), written straight into the buffer — a shed 503
    /// is rendered on the I/O thread thousands of times a second under
    /// overload, and building a map of `Value`s first cost an allocation
    /// per member. An extension never replaces one of the five members.
    pub fn to_body(&self, request_id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.detail.len());
        let mut fixed = [
            ("detail", Member::Str(&self.detail)),
            ("request_id", Member::Str(request_id)),
            ("status", Member::Int(self.status)),
            ("title", Member::Str(self.title)),
            ("type", Member::Str(self.kind)),
        ]
        .into_iter()
        .peekable();
        let mut extensions = self
            .extensions
            .iter()
            .filter(|(k, _)| !FIXED_MEMBERS.contains(&k.as_str()))
            .peekable();
        out.push(b'{');
        let mut first = true;
        loop {
            let take_fixed = match (fixed.peek(), extensions.peek()) {
                (Some((f, _)), Some((e, _))) => *f < e.as_str(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if !first {
                out.push(b',');
            }
            first = false;
            if take_fixed {
                let Some((name, member)) = fixed.next() else {
                    break;
                };
                // The five names are plain ASCII: written as they are.
                out.push(b'"');
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                match member {
                    Member::Str(v) => json_string::push_quoted(&mut out, v),
                    Member::Int(n) => {
                        out.extend_from_slice(crate::decimal::Decimal::new(u64::from(n)).as_bytes())
                    }
                }
            } else {
                let Some((name, value)) = extensions.next() else {
                    break;
                };
                json_string::push_quoted(&mut out, name);
                out.push(b':');
                // Writing a `Value` into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, value);
            }
        }
        out.push(b'}');
        out
    }
}

/// The members every problem body has, in name order.
const FIXED_MEMBERS: [&str; 5] = ["detail", "request_id", "status", "title", "type"];

/// A value of one of the fixed members.
enum Member<'a> {
    Str(&'a str),
    Int(u16),
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

    /// The body as a `serde_json::Map` serialises it: what `to_body` wrote
    /// before it wrote the members itself.
    fn via_map(p: &Problem, request_id: &str) -> Vec<u8> {
        let mut obj = Map::new();
        obj.insert("type".into(), Value::from(p.kind));
        obj.insert("title".into(), Value::from(p.title));
        obj.insert("status".into(), Value::from(p.status));
        obj.insert("detail".into(), Value::from(p.detail.as_ref()));
        obj.insert("request_id".into(), Value::from(request_id));
        for (k, v) in &p.extensions {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        serde_json::to_vec(&Value::Object(obj)).expect("serialises")
    }

    #[test]
    fn body_bytes_are_those_of_the_sorted_map() {
        let problems = [
            Problem::new(503, "the service is overloaded; retry later"),
            Problem::new(404, "no user with id 7"),
            Problem::new(422, "bad \"quotes\", a tab\t, \u{1} and é \u{202e}")
                .with_extension("errors", serde_json::json!([{"field": "email", "n": 1.5}])),
            Problem::new(400, "x")
                .with_type("https://example.com/p", "Custom")
                .with_extension("a", Value::Null)
                .with_extension("status", Value::from("not replaced"))
                .with_extension("retry_after", Value::from(3))
                .with_extension("zz", serde_json::json!({"k": [true, false]})),
        ];
        for p in &problems {
            for rid in ["rid-1", "quote\"d"] {
                assert_eq!(
                    String::from_utf8(p.to_body(rid)).expect("utf-8"),
                    String::from_utf8(via_map(p, rid)).expect("utf-8")
                );
            }
        }
    }

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
