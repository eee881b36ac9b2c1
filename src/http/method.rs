//! HTTP methods as a closed set.
//!
//! Routing, logs and metric labels need a method that cannot carry an
//! attacker-chosen string: anything outside the standard set is `Other`, so a
//! flood of invented methods cannot create new metric series.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Trace,
    Connect,
    Other,
}

impl Method {
    /// Every method, in the order `Allow` headers list them.
    pub const ALL: [Method; 10] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
        Method::Trace,
        Method::Connect,
        Method::Other,
    ];

    /// Parses a request method token; case-sensitive as RFC 9110 says.
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// The token, or `other` for anything outside the standard set (this is
    /// also the metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
            Method::Other => "other",
        }
    }

    /// Position in [`Method::ALL`], for per-method tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<&tiny_http::Method> for Method {
    fn from(m: &tiny_http::Method) -> Method {
        Method::parse(m.as_str())
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_round_trip_and_others_collapse() {
        for m in Method::ALL {
            if m != Method::Other {
                assert_eq!(Method::parse(m.as_str()), m);
            }
            assert_eq!(Method::ALL[m.index()], m);
        }
        for odd in ["get", "BREW", "PROPFIND", "", "GET "] {
            assert_eq!(Method::parse(odd), Method::Other, "{odd:?}");
        }
        assert_eq!(Method::Other.as_str(), "other");
    }
}
