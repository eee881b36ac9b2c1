//! The request as a handler sees it: method, path, route parameters, query,
//! headers, the (already read, bounded) body and the request id.
//!
//! The body is read by the listener's I/O thread before the request is
//! queued, within READ_TIMEOUT, MAX_BODY_BYTES and MAX_BODY_BUFFER, so a slow
//! client can hold a connection slot but never a thread.

use std::borrow::Cow;

use crate::percent::decode_query_lossy;

use crate::http::method::Method;
use crate::http::request_id::RequestId;
use crate::http::router::Params;

pub struct ApiRequest<'a> {
    pub method: Method,
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub route: &'static str,
    pub params: Params<'a>,
    pub request_id: &'a RequestId,
    pub headers: &'a [tiny_http::Header],
    pub body: &'a [u8],
}

impl<'a> ApiRequest<'a> {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        header(self.headers, name)
    }

    /// The first query parameter with this name, percent-decoded; `None`
    /// when absent. Undecodable values come back lossily decoded, so the
    /// handler's validation rejects them.
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode_query_lossy(k).as_ref() == name).then(|| decode_query_lossy(v))
            })
            .next()
    }
}

/// The first header with this name in a tiny_http header list.
pub fn header<'h>(headers: &'h [tiny_http::Header], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Splits a request target into path and query. A target in absolute-form
/// (`http://host/path?query`, which proxies send and RFC 9112 §3.2.2 says a
/// server must accept) is taken as its path and query, `/` when it has no
/// path: routed, logged and counted as the same request in origin-form.
pub fn split_target(url: &str) -> (&str, &str) {
    TargetSplit::of(url).apply(url)
}

/// Where [`split_target`] finds a target's path and query, as byte ranges
/// of the target: found once, when the request arrives, and carried with it
/// (it borrows nothing), so that routing, the handler and the log line do
/// not search the target again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSplit {
    /// The path's range; `None` for an absolute-form target without a path,
    /// whose path is `/`.
    path: Option<(u32, u32)>,
    query: (u32, u32),
}

impl TargetSplit {
    pub fn of(url: &str) -> TargetSplit {
        let (start, absolute) = match absolute_form_rest(url) {
            Some(rest) => (url.len() - rest.len(), true),
            None => (0, false),
        };
        // memchr: `split_once(char)` sets up a searcher, and a byte loop costs
        // ~5 instructions a byte (callgrind, BENCHMARKS.md).
        let (path_end, query) = match memchr::memchr(b'?', &url.as_bytes()[start..]) {
            Some(i) => (start + i, (start + i + 1, url.len())),
            None => (url.len(), (url.len(), url.len())),
        };
        // A target is at most a request head long (`MAX_HEADER_BYTES`).
        let range = |(a, b): (usize, usize)| (a as u32, b as u32);
        TargetSplit {
            path: (!(absolute && path_end == start)).then(|| range((start, path_end))),
            query: range(query),
        }
    }

    /// The path and query of `url`, the target this was made [`of`](TargetSplit::of).
    pub fn apply<'t>(&self, url: &'t str) -> (&'t str, &'t str) {
        // `?` and the end of the scheme and authority are ASCII: char
        // boundaries, so `get` finds them (another string gets empty parts).
        let part = |(start, end): (u32, u32)| url.get(start as usize..end as usize);
        let path = match self.path {
            Some(range) => part(range).unwrap_or(""),
            None => "/",
        };
        (path, part(self.query).unwrap_or(""))
    }
}

/// What follows the scheme and authority of an absolute-form target
/// (`http://host:port` or `https://…`, scheme in any case); `None` for any
/// other form (origin-form starts with `/`: the one check most requests pay).
fn absolute_form_rest(url: &str) -> Option<&str> {
    if url.starts_with('/') {
        return None;
    }
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let after = &url[scheme_end + 3..];
    // The authority ends at the path or the query (`/` and `?` are ASCII).
    let end = after.find(['/', '?']).unwrap_or(after.len());
    Some(&after[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(query: &'a str, id: &'a RequestId) -> ApiRequest<'a> {
        ApiRequest {
            method: Method::Get,
            path: "/",
            query,
            route: "/",
            params: Params::default(),
            request_id: id,
            headers: &[],
            body: &[],
        }
    }

    #[test]
    fn query_params_are_found_and_decoded() {
        let id = RequestId::from_uuid(uuid::Uuid::new_v4());
        let r = req("limit=10&after=a%2Bb&name=x+y&flag&bad=%zz&pct=%4", &id);
        assert_eq!(r.query_param("limit").as_deref(), Some("10"));
        assert_eq!(r.query_param("after").as_deref(), Some("a+b"));
        assert_eq!(r.query_param("name").as_deref(), Some("x y"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(r.query_param("pct").as_deref(), Some("%4"));
        assert_eq!(r.query_param("missing"), None);
    }

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(split_target("/a?b=c"), ("/a", "b=c"));
        assert_eq!(split_target("/a"), ("/a", ""));
        assert_eq!(split_target("/a?"), ("/a", ""));
    }

    #[test]
    fn absolute_form_targets_are_their_path_and_query() {
        assert_eq!(split_target("http://h/a?b=c"), ("/a", "b=c"));
        assert_eq!(split_target("HTTPS://h:8080/a/b"), ("/a/b", ""));
        assert_eq!(split_target("http://h"), ("/", ""));
        assert_eq!(split_target("http://h?x=1"), ("/", "x=1"));
        assert_eq!(split_target("http://u@h/a"), ("/a", ""));
        // Not absolute-form: left as they are (the router finds no route).
        assert_eq!(split_target("*"), ("*", ""));
        assert_eq!(split_target("ftp://h/a"), ("ftp://h/a", ""));
        assert_eq!(split_target("h/a"), ("h/a", ""));
        // An origin-form path that happens to hold `://`.
        assert_eq!(split_target("/x/http://h/a"), ("/x/http://h/a", ""));
    }

    #[test]
    fn headers_match_case_insensitively() {
        let hs =
            [tiny_http::Header::from_bytes(&b"X-Request-ID"[..], &b"abc"[..]).expect("header")];
        assert_eq!(header(&hs, "x-request-id"), Some("abc"));
        assert_eq!(header(&hs, "host"), None);
    }
}
