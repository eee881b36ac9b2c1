//! Name resolution for the HTTP calls the service makes (webhooks, OTLP).
//!
//! ureq's default resolver, when a request has a timeout (ours always do),
//! spawns an unnamed thread for every look-up so that it can stop waiting for
//! `getaddrinfo` — even when the host is an IP address that needs no look-up
//! at all. That is a thread per webhook delivery and per span export, named
//! after whichever thread made the call. This resolver answers IP literals at
//! once, on the calling thread, and runs a look-up of a host name on a thread
//! named `dns-resolve`, waiting for it no longer than the request's timeout
//! (a look-up that outlives it finishes on its own and is dropped).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Addresses kept from a look-up (ureq's own bound).
const MAX_ADDRS: usize = 16;

/// See the module docs.
#[derive(Debug, Default)]
pub struct NamedResolver;

/// An agent with ureq's connector and [`NamedResolver`].
pub fn agent(config: Config) -> ureq::Agent {
    ureq::Agent::with_parts(config, DefaultConnector::default(), NamedResolver)
}

/// The host and port of `uri`: the port given, else the scheme's.
fn host_port(uri: &Uri) -> Option<(&str, u16)> {
    let host = uri.host()?;
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    })?;
    Some((host, port))
}

impl Resolver for NamedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (host, port) = host_port(uri).ok_or(ureq::Error::HostNotFound)?;
        let mut out = self.empty();
        // `[::1]` in a URI is the address `::1`.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            out.push(SocketAddr::new(ip, port));
            return Ok(out);
        }
        let target = format!("{host}:{port}");
        let found: Vec<SocketAddr> = if timeout.after.is_not_happening() {
            target.to_socket_addrs()?.collect()
        } else {
            let (tx, rx) = mpsc::sync_channel(1);
            thread::Builder::new()
                .name("dns-resolve".into())
                .spawn(move || {
                    let _ = tx.send(target.to_socket_addrs().map(Iterator::collect));
                })?;
            match rx.recv_timeout(*timeout.after) {
                Ok(found) => found?,
                Err(_) => return Err(ureq::Error::Timeout(timeout.reason)),
            }
        };
        for addr in config
            .ip_family()
            .keep_wanted(found.into_iter())
            .take(MAX_ADDRS)
        {
            out.push(addr);
        }
        if out.is_empty() {
            Err(ureq::Error::HostNotFound)
        } else {
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use ureq::unversioned::transport::time::Duration as UreqDuration;
    use ureq::Timeout;

    fn resolve(uri: &str) -> Result<Vec<SocketAddr>, ureq::Error> {
        let uri: Uri = uri.parse().expect("uri");
        let config = Config::default();
        let timeout = NextTimeout {
            after: UreqDuration::from(Duration::from_secs(5)),
            reason: Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        NamedResolver
            .resolve(&uri, &config, timeout)
            .map(|a| a.iter().copied().collect())
    }

    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
    }

    #[test]
    fn ip_literals_are_answered_without_a_thread() {
        let before = threads();
        assert_eq!(
            resolve("http://127.0.0.1:4318/v1/traces").expect("v4"),
            ["127.0.0.1:4318".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            resolve("https://[::1]/hook").expect("v6"),
            ["[::1]:443".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            resolve("http://10.1.2.3/").expect("default port"),
            ["10.1.2.3:80".parse::<SocketAddr>().expect("addr")]
        );
        // No thread was started for any of them (other tests may start
        // threads meanwhile, hence only "not more than before + noise").
        assert!(threads() <= before + 8);
    }

    #[test]
    fn host_names_are_looked_up() {
        let found = resolve("http://localhost:9/").expect("localhost");
        assert!(!found.is_empty());
        assert!(found.iter().all(|a| a.port() == 9 && a.ip().is_loopback()));
    }
}
