//! A client's address as text, written without `fmt` and without a heap
//! allocation.
//!
//! Why: every request's `request completed` line carries `remote_addr`, and
//! a sampled request's span `client.address`. `SocketAddr`'s `Display` went
//! through `fmt` for each octet and allocated a `String` per request — a
//! few percent of what an inline answer costs (a 404, a shed 503) under
//! callgrind. IPv4, what nearly every client is, is written by hand; IPv6
//! goes through `Display` into the same fixed buffer.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Longest text: `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535`.
const CAP: usize = 64;

/// An address or socket address as text, in a fixed buffer.
pub struct AddrText {
    buf: [u8; CAP],
    len: usize,
}

impl AddrText {
    /// `ip:port`, or `[ip6%scope]:port` — what `SocketAddr`'s `Display` writes.
    pub fn socket(addr: SocketAddr) -> AddrText {
        match addr {
            SocketAddr::V4(v4) => {
                let mut text = AddrText::ip(IpAddr::V4(*v4.ip()));
                text.push(b':');
                text.push_decimal(u32::from(v4.port()));
                text
            }
            SocketAddr::V6(v6) => {
                let mut text = AddrText::empty();
                // Cannot fail: the longest IPv6 socket address fits the buffer.
                let _ = write!(text, "{v6}");
                text
            }
        }
    }

    fn empty() -> AddrText {
        AddrText {
            buf: [0; CAP],
            len: 0,
        }
    }

    /// The address alone, as `IpAddr`'s `Display` writes it.
    pub fn ip(ip: IpAddr) -> AddrText {
        let mut text = AddrText::empty();
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    text.push_decimal(u32::from(octet));
                }
            }
            // Cannot fail: the longest IPv6 text fits the buffer.
            IpAddr::V6(v6) => {
                let _ = write!(text, "{v6}");
            }
        }
        text
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written (digits, '.', ':', '[', ']', hex, '%').
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, b: u8) {
        if self.len < CAP {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn push_decimal(&mut self, n: u32) {
        for &d in crate::decimal::Decimal::new(u64::from(n)).as_bytes() {
            self.push(d);
        }
    }
}

impl std::fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.len + s.len() > CAP {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::AddrText;
    use std::net::{IpAddr, SocketAddr};

    #[test]
    fn the_same_text_as_display() {
        let ips = [
            "0.0.0.0",
            "127.0.0.1",
            "10.9.100.255",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "2001:db8:85a3::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.0.2.128",
        ];
        for ip in ips {
            let ip: IpAddr = ip.parse().expect("an address");
            assert_eq!(AddrText::ip(ip).as_str(), ip.to_string());
            for port in [0, 7, 80, 8080, 65535] {
                let addr = SocketAddr::new(ip, port);
                assert_eq!(AddrText::socket(addr).as_str(), addr.to_string());
            }
        }
        for n in 0..=255u8 {
            let addr = SocketAddr::from(([n, 255 - n, n / 3, 7], u16::from(n) * 257));
            assert_eq!(AddrText::socket(addr).as_str(), addr.to_string());
        }
        let scoped: SocketAddr = "[fe80::1%4294967295]:65535".parse().expect("scoped");
        assert_eq!(AddrText::socket(scoped).as_str(), scoped.to_string());
    }
}
