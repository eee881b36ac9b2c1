//! `REDIS_URL`: the optional cache, validated at start-up and printable
//! without its credentials.
//!
//! Why a type: like `DATABASE_URL`, a typo must fail at start-up (exit 2),
//! not as a permanently "degraded" readiness check. The whole string is a
//! [`Secret`]; `Display`/`Debug` show it with the user-info replaced by
//! `***` (`rediss://***@cache:6380/0`), and errors never echo any of it.
//! The grammar is the one Redis clients share:
//! `redis[s]://[[user][:password]@]host[:port][/db][?params]`.

use std::fmt;
use std::net::Ipv6Addr;

use super::secret::Secret;

/// What the user-info of a redacted URL is replaced with.
const MASK: &str = "***";

/// The port when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;

/// A validated Redis URL; see the module docs.
#[derive(Clone)]
pub struct RedisUrl {
    raw: Secret<String>,
    redacted: String,
    tls: bool,
    host: String,
    port: u16,
    db: u32,
}

/// Why a Redis URL was refused. `Display` never contains any part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisUrlError {
    UnsupportedScheme,
    NoHost,
    InvalidHost,
    InvalidPort,
    InvalidDatabase,
    /// An `@` after the host: a password holding `/`, `?` or `#` as well as
    /// `@` would otherwise be read as host, path and query, and printed.
    StrayAt,
    /// Valid by the shared grammar, but the Redis client refuses it.
    RefusedByClient,
}

impl fmt::Display for RedisUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RedisUrlError::UnsupportedScheme => "does not start with redis:// or rediss://",
            RedisUrlError::NoHost => "names no host",
            RedisUrlError::InvalidHost => "has an invalid host",
            RedisUrlError::InvalidPort => "has an invalid port (expected 1 to 65535)",
            RedisUrlError::InvalidDatabase => "has an invalid database number after the host",
            RedisUrlError::StrayAt => {
                "has an `@` after the host; write `/`, `?`, `#` and `@` in a password as \
                 %2F, %3F, %23 and %40"
            }
            RedisUrlError::RefusedByClient => "is not accepted by the Redis client",
        })
    }
}

impl std::error::Error for RedisUrlError {}

impl RedisUrl {
    /// Validates `redis://` or `rediss://` (TLS) URLs.
    pub fn parse(text: &str) -> Result<Self, RedisUrlError> {
        let (scheme, rest) = text
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "redis" | "rediss"))
            .ok_or(RedisUrlError::UnsupportedScheme)?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if tail.contains('@') {
            return Err(RedisUrlError::StrayAt);
        }
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port)?;
        let db = parse_db(tail)?;
        // The client has its own parser (query parameters, percent-encoding):
        // what it refuses must fail here, at start-up, not at the first
        // connect. It parses without any I/O.
        redis::Client::open(text).map_err(|_| RedisUrlError::RefusedByClient)?;

        let mut redacted = format!("{scheme}://");
        if userinfo.is_some() {
            redacted.push_str(MASK);
            redacted.push('@');
        }
        redacted.push_str(host_port);
        redacted.push_str(&redact_query(tail));

        Ok(RedisUrl {
            raw: Secret::new(text.to_owned()),
            redacted,
            tls: scheme == "rediss",
            host: host.to_owned(),
            port,
            db,
        })
    }

    /// The URL as given, credentials included: only for the Redis client.
    pub fn expose_secret(&self) -> &str {
        self.raw.expose_secret()
    }

    /// The URL with its credentials replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// `rediss://`: the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The host name or IP address (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, 6379 when none is given.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database number, 0 when none is given.
    pub fn db(&self) -> u32 {
        self.db
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.redacted).finish()
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(text: &str) -> Result<(&str, u16), RedisUrlError> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (v6, after) = bracketed
            .split_once(']')
            .ok_or(RedisUrlError::InvalidHost)?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| RedisUrlError::InvalidHost)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(RedisUrlError::InvalidHost)?),
        };
        (v6, port)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(RedisUrlError::NoHost);
    }
    let host_ok = text.starts_with('[')
        || host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !host_ok {
        return Err(RedisUrlError::InvalidHost);
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(RedisUrlError::InvalidPort)?,
    };
    Ok((host, port))
}

/// The database number from `/db`, 0 for none; a fragment is refused.
fn parse_db(tail: &str) -> Result<u32, RedisUrlError> {
    let path = tail.split('?').next().unwrap_or("");
    if path.contains('#') || tail.contains('#') {
        return Err(RedisUrlError::InvalidDatabase);
    }
    match path.strip_prefix('/') {
        None | Some("") => Ok(0),
        Some(db) if db.bytes().all(|b| b.is_ascii_digit()) => {
            db.parse().map_err(|_| RedisUrlError::InvalidDatabase)
        }
        Some(_) => Err(RedisUrlError::InvalidDatabase),
    }
}

/// The path and query, with everything from the value of the first
/// credential-looking parameter (`password`, `pass`, `user`, `username`) on
/// replaced by `***`: an unencoded `&` in a password would otherwise show
/// the rest of it as further parameters.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let mut params: Vec<String> = Vec::new();
    for param in query.split('&') {
        match param.split_once('=') {
            Some((key, _))
                if ["password", "pass", "user", "username"]
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(key)) =>
            {
                params.push(format!("{key}={MASK}"));
                break;
            }
            _ => params.push(param.to_owned()),
        }
    }
    format!("{path}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "s3cr3t-pw";

    #[test]
    fn accepts_and_redacts() {
        let cases = [
            ("redis://cache", "redis://cache", false, "cache", 6379, 0),
            (
                "redis://cache:6380/2",
                "redis://cache:6380/2",
                false,
                "cache",
                6380,
                2,
            ),
            ("rediss://cache/", "rediss://cache/", true, "cache", 6379, 0),
            (
                "redis://:s3cr3t-pw@cache:6379/0",
                "redis://***@cache:6379/0",
                false,
                "cache",
                6379,
                0,
            ),
            (
                "rediss://app:s3cr3t-pw@10.0.0.7:6380",
                "rediss://***@10.0.0.7:6380",
                true,
                "10.0.0.7",
                6380,
                0,
            ),
            (
                "redis://app:s3cr3t@pw@cache",
                "redis://***@cache",
                false,
                "cache",
                6379,
                0,
            ),
            (
                "redis://[::1]:6379",
                "redis://[::1]:6379",
                false,
                "::1",
                6379,
                0,
            ),
            (
                "redis://cache/1?protocol=resp3&password=s3cr3t-pw",
                "redis://cache/1?protocol=resp3&password=***",
                false,
                "cache",
                6379,
                1,
            ),
        ];
        for (given, shown, tls, host, port, db) in cases {
            let url = match RedisUrl::parse(given) {
                Ok(url) => url,
                Err(e) => panic!("{given} refused: {e}"),
            };
            assert_eq!(url.to_string(), shown, "{given}");
            assert_eq!(url.redacted(), shown);
            assert_eq!(format!("{url:?}"), format!("RedisUrl({shown:?})"));
            assert_eq!(url.expose_secret(), given);
            assert_eq!(
                (url.tls(), url.host(), url.port(), url.db()),
                (tls, host, port, db)
            );
        }
    }

    #[test]
    fn refuses_without_echoing() {
        let cases = [
            ("cache:6379", RedisUrlError::UnsupportedScheme),
            ("http://:s3cr3t-pw@cache", RedisUrlError::UnsupportedScheme),
            ("REDIS://cache", RedisUrlError::UnsupportedScheme),
            ("redis://", RedisUrlError::NoHost),
            ("redis://:s3cr3t-pw@", RedisUrlError::NoHost),
            ("redis://:s3cr3t-pw@:6379", RedisUrlError::NoHost),
            ("redis://ca che", RedisUrlError::InvalidHost),
            ("redis://[::1", RedisUrlError::InvalidHost),
            ("redis://[nope]:6379", RedisUrlError::InvalidHost),
            ("redis://cache:0", RedisUrlError::InvalidPort),
            ("redis://cache:65536", RedisUrlError::InvalidPort),
            ("redis://cache:+1", RedisUrlError::InvalidPort),
            ("redis://cache:", RedisUrlError::InvalidPort),
            (
                "redis://:s3cr3t-pw@cache:s3cr3t-pw",
                RedisUrlError::InvalidPort,
            ),
            ("redis://cache/zero", RedisUrlError::InvalidDatabase),
            ("redis://cache/0#frag", RedisUrlError::InvalidDatabase),
        ];
        for (given, want) in cases {
            match RedisUrl::parse(given) {
                Ok(url) => panic!("{given} accepted as {url}"),
                Err(e) => {
                    assert_eq!(e, want, "{given}");
                    assert!(!e.to_string().contains(PW));
                }
            }
        }
    }
}
