//! Listener addresses (`ADDR`, `ADMIN_ADDR`) in the forms Go services use.
//!
//! Why by hand: `SocketAddr::from_str` refuses `:8080` (every IPv4
//! interface), which is the documented default, and `localhost:8080`. Names
//! other than `localhost` are refused rather than resolved, so that parsing
//! stays pure and the bound address is exactly what the operator reads in
//! `--print-config`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The word that turns the admin listener off.
pub const OFF: &str = "off";

/// Why an address was refused; `Display` is a phrase that follows the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddrError {
    MissingPort,
    InvalidPort,
    InvalidHost,
    HostName,
}

impl fmt::Display for ListenAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenAddrError::MissingPort => "has no port",
            ListenAddrError::InvalidPort => "has an invalid port",
            ListenAddrError::InvalidHost => "has an invalid host",
            ListenAddrError::HostName => {
                "names a host other than localhost (names are not resolved)"
            }
        })
    }
}

impl std::error::Error for ListenAddrError {}

/// Parses `:port` (all IPv4 interfaces), `ipv4:port`, `[ipv6]:port` or
/// `localhost:port`. Port 0 (any free port) is allowed.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, ListenAddrError> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(ListenAddrError::InvalidHost)?;
        let port = after.strip_prefix(':').ok_or(if after.is_empty() {
            ListenAddrError::MissingPort
        } else {
            ListenAddrError::InvalidHost
        })?;
        let ip = v6
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| ListenAddrError::InvalidHost)?;
        (IpAddr::V6(ip), port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or(ListenAddrError::MissingPort)?;
        let ip = match host {
            "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            _ if host.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ if host.contains(':') => return Err(ListenAddrError::InvalidHost),
            _ => match host.parse::<Ipv4Addr>() {
                Ok(ip) => IpAddr::V4(ip),
                Err(_) if looks_like_name(host) => return Err(ListenAddrError::HostName),
                Err(_) => return Err(ListenAddrError::InvalidHost),
            },
        };
        (ip, port)
    };
    if port.is_empty() {
        return Err(ListenAddrError::MissingPort);
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ListenAddrError::InvalidPort);
    }
    let port: u16 = port.parse().map_err(|_| ListenAddrError::InvalidPort)?;
    Ok(SocketAddr::new(host, port))
}

/// `off` (any case) → `None`, else [`parse_listen_addr`].
pub fn parse_optional_listen_addr(text: &str) -> Result<Option<SocketAddr>, ListenAddrError> {
    if text.eq_ignore_ascii_case(OFF) {
        Ok(None)
    } else {
        parse_listen_addr(text).map(Some)
    }
}

/// Whether two listeners would take the same socket: the same port (not 0,
/// which picks a free one) and the same address, or either on every
/// address (`0.0.0.0`, `::`) of the other's family. Two such listeners bind
/// only with `REUSE_PORT`, and then the kernel splits one port's
/// connections between two routers.
pub fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A DNS-name-shaped host with at least one letter (so `10.0.0.256` is an
/// invalid address, not a name).
fn looks_like_name(host: &str) -> bool {
    host.bytes().any(|b| b.is_ascii_alphabetic())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_style_addresses() {
        let cases = [
            (":8080", "0.0.0.0:8080"),
            (":0", "0.0.0.0:0"),
            ("0.0.0.0:80", "0.0.0.0:80"),
            ("127.0.0.1:9090", "127.0.0.1:9090"),
            ("localhost:9090", "127.0.0.1:9090"),
            ("LocalHost:1", "127.0.0.1:1"),
            ("[::1]:8080", "[::1]:8080"),
            ("[::]:65535", "[::]:65535"),
            ("10.1.2.3:08080", "10.1.2.3:8080"),
        ];
        for (given, want) in cases {
            assert_eq!(
                parse_listen_addr(given).map(|a| a.to_string()),
                Ok(want.to_owned()),
                "{given}"
            );
        }
    }

    #[test]
    fn refuses_what_cannot_be_bound() {
        let cases = [
            ("", ListenAddrError::MissingPort),
            ("8080", ListenAddrError::MissingPort),
            ("0.0.0.0", ListenAddrError::MissingPort),
            ("127.0.0.1:", ListenAddrError::MissingPort),
            ("[::1]", ListenAddrError::MissingPort),
            ("[::1]:", ListenAddrError::MissingPort),
            (":65536", ListenAddrError::InvalidPort),
            (":-1", ListenAddrError::InvalidPort),
            (":+80", ListenAddrError::InvalidPort),
            (":http", ListenAddrError::InvalidPort),
            ("::1:8080", ListenAddrError::InvalidHost),
            ("[::1:8080", ListenAddrError::InvalidHost),
            ("[::1]8080", ListenAddrError::InvalidHost),
            ("[1.2.3.4]:80", ListenAddrError::InvalidHost),
            ("10.0.0.256:80", ListenAddrError::InvalidHost),
            ("a b:80", ListenAddrError::InvalidHost),
            ("example.com:80", ListenAddrError::HostName),
            ("off", ListenAddrError::MissingPort),
        ];
        for (given, want) in cases {
            assert_eq!(parse_listen_addr(given), Err(want), "{given:?}");
        }
    }

    #[test]
    fn off_turns_an_optional_listener_off() {
        assert_eq!(parse_optional_listen_addr("off"), Ok(None));
        assert_eq!(parse_optional_listen_addr("OFF"), Ok(None));
        assert_eq!(
            parse_optional_listen_addr("127.0.0.1:9090").map(|a| a.map(|a| a.port())),
            Ok(Some(9090))
        );
        assert_eq!(
            parse_optional_listen_addr("of"),
            Err(ListenAddrError::MissingPort)
        );
    }
}
