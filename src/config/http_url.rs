//! `http://` / `https://` URLs of things we call out to: the OTLP collector
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`) and the webhook receiver (`WEBHOOK_URL`).
//!
//! Why a type: a URL that cannot work (no scheme, a typo'd port) must fail
//! at start-up, not as silently dropped spans or an ever-growing outbox.
//! Such URLs often carry credentials: basic-auth user-info, and tokens in the
//! query (`?token=…`, a signature). So `Display`/`Debug` replace any
//! user-info, every query value and the fragment with `***` (query names
//! stay, to show which were set); the full URL is reached through
//! [`HttpUrl::as_str`], for the HTTP client only. A token in the path is
//! not recognisable as one and is shown.

use std::fmt;
use std::net::Ipv6Addr;

/// A validated `http://` or `https://` URL; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    raw: String,
    redacted: String,
}

/// Why a URL was refused; `Display` is a phrase that follows the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpUrlError {
    UnsupportedScheme,
    NoHost,
    InvalidHost,
    InvalidPort,
    Whitespace,
    /// An `@` after the host; see [`RedisUrlError::StrayAt`](super::redis_url::RedisUrlError::StrayAt).
    StrayAt,
}

impl fmt::Display for HttpUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpUrlError::UnsupportedScheme => "does not start with http:// or https://",
            HttpUrlError::NoHost => "names no host",
            HttpUrlError::InvalidHost => "has an invalid host",
            HttpUrlError::InvalidPort => "has an invalid port",
            HttpUrlError::Whitespace => "contains whitespace",
            HttpUrlError::StrayAt => {
                "has an `@` after the host; write `/`, `?`, `#` and `@` in a password or path \
                 as %2F, %3F, %23 and %40"
            }
        })
    }
}

impl std::error::Error for HttpUrlError {}

impl HttpUrl {
    /// Validates scheme, host and port; the path and query are kept as given.
    pub fn parse(text: &str) -> Result<Self, HttpUrlError> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(HttpUrlError::Whitespace);
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or(HttpUrlError::UnsupportedScheme)?;
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return Err(HttpUrlError::UnsupportedScheme);
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if tail.contains('@') {
            return Err(HttpUrlError::StrayAt);
        }
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        check_host_port(host_port)?;
        let tail = mask_query(tail);
        let redacted = match userinfo {
            Some(_) => format!("{scheme}://***@{host_port}{tail}"),
            None => format!("{scheme}://{host_port}{tail}"),
        };
        Ok(HttpUrl {
            raw: text.to_owned(),
            redacted,
        })
    }

    /// The URL as given, for the HTTP client.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The URL with any user-info, query value and fragment replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HttpUrl").field(&self.redacted).finish()
    }
}

/// `tail` (a URL's path, query and fragment) with every query value and the
/// fragment replaced by `***`; a query item without `=` is a value too.
fn mask_query(tail: &str) -> String {
    let (rest, fragment) = match tail.split_once('#') {
        Some((rest, _)) => (rest, "#***"),
        None => (tail, ""),
    };
    let Some((path, query)) = rest.split_once('?') else {
        return format!("{rest}{fragment}");
    };
    let items: Vec<String> = query
        .split('&')
        .map(|item| match item.split_once('=') {
            Some((name, _)) => format!("{name}=***"),
            None if item.is_empty() => String::new(),
            None => "***".to_owned(),
        })
        .collect();
    format!("{path}?{}{fragment}", items.join("&"))
}

/// `text` with everything between `://` and its last `@` replaced by
/// `***`: how a refused URL is quoted in an error message. A refused URL is
/// malformed by definition, so the last `@` anywhere is taken as the end of
/// the user-info (a password may hold unencoded `/`, `?` or `#`).
pub fn mask_userinfo(text: &str) -> String {
    let (prefix, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (&text[..scheme.len() + 3], rest),
        None => ("", text),
    };
    match rest.rsplit_once('@') {
        Some((_, after)) => format!("{prefix}***@{after}"),
        None => text.to_owned(),
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; port 1 to 65535.
fn check_host_port(text: &str) -> Result<(), HttpUrlError> {
    let port = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(HttpUrlError::InvalidHost)?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| HttpUrlError::InvalidHost)?;
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(HttpUrlError::InvalidHost)?),
        }
    } else {
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        if host.is_empty() {
            return Err(HttpUrlError::NoHost);
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(HttpUrlError::InvalidHost);
        }
        port
    };
    match port {
        None => Ok(()),
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(()),
            _ => Err(HttpUrlError::InvalidPort),
        },
        Some(_) => Err(HttpUrlError::InvalidPort),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https() {
        let cases = [
            ("http://collector:4318", "http://collector:4318"),
            ("https://otel.example.com", "https://otel.example.com"),
            (
                "HTTPS://hooks.example.com/a/b?x=1",
                "HTTPS://hooks.example.com/a/b?x=***",
            ),
            (
                "https://hooks.example.com/in?token=s3cr3t-pw&v=2&flag&&#s3cr3t-pw",
                "https://hooks.example.com/in?token=***&v=***&***&&#***",
            ),
            (
                "https://bot:s3cr3t-pw@hooks.example.com/in?sig=s3cr3t-pw",
                "https://***@hooks.example.com/in?sig=***",
            ),
            ("http://[::1]:4318/v1/traces", "http://[::1]:4318/v1/traces"),
            ("http://10.0.0.1", "http://10.0.0.1"),
            (
                "https://bot:s3cr3t-pw@hooks.example.com/in",
                "https://***@hooks.example.com/in",
            ),
        ];
        for (given, shown) in cases {
            let url = match HttpUrl::parse(given) {
                Ok(url) => url,
                Err(e) => panic!("{given} refused: {e}"),
            };
            assert_eq!(url.as_str(), given);
            assert_eq!(url.to_string(), shown);
            assert_eq!(url.redacted(), shown);
            assert!(!format!("{url:?}").contains("s3cr3t-pw"));
        }
    }

    #[test]
    fn masks_userinfo_of_any_url() {
        let cases = [
            ("https://u:pw@h:0/p", "https://***@h:0/p"),
            ("grpc://u:pw@h", "grpc://***@h"),
            ("http://h/p@q", "http://***@q"),
            ("https://u:p/w?x#y@h/p", "https://***@h/p"),
            ("u:pw@h:4318", "***@h:4318"),
            ("collector:4318", "collector:4318"),
        ];
        for (given, want) in cases {
            assert_eq!(mask_userinfo(given), want);
        }
    }

    #[test]
    fn refuses_urls_that_cannot_work() {
        let cases = [
            ("collector:4318", HttpUrlError::UnsupportedScheme),
            ("grpc://collector:4317", HttpUrlError::UnsupportedScheme),
            ("ftp://x", HttpUrlError::UnsupportedScheme),
            ("http://", HttpUrlError::NoHost),
            ("http:///path", HttpUrlError::NoHost),
            ("http://:80", HttpUrlError::NoHost),
            ("http://exa mple.com", HttpUrlError::Whitespace),
            ("http://example.com\n", HttpUrlError::Whitespace),
            ("http://exa$mple.com", HttpUrlError::InvalidHost),
            ("http://[::1", HttpUrlError::InvalidHost),
            ("http://example.com:0", HttpUrlError::InvalidPort),
            ("http://example.com:70000", HttpUrlError::InvalidPort),
            ("http://example.com:", HttpUrlError::InvalidPort),
            ("http://example.com:x", HttpUrlError::InvalidPort),
        ];
        for (given, want) in cases {
            assert_eq!(HttpUrl::parse(given), Err(want), "{given:?}");
        }
    }
}
