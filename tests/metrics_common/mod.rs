//! Scraping and reading `/metrics` in process-level tests
//! (`mod metrics_common;` next to `mod support;`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::client;
use crate::support::service::Service;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The admin listener of a running service.
pub fn admin(svc: &Service) -> SocketAddr {
    svc.admin.expect("the admin listener is on")
}

/// `GET /metrics` on the admin listener, as text.
pub fn scrape(svc: &Service) -> String {
    let reply = client::get(admin(svc), "/metrics").expect("scrape /metrics");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// Scrapes until `settled` holds for the exposition, or 5 s have passed,
/// and returns the last one. A request's metrics are recorded on the thread
/// that wrote its response, right after the write: a client can read its
/// last response before the counters move, so exact counts are awaited, not
/// read once.
pub fn scrape_until(svc: &Service, settled: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(svc);
        if settled(&text) || Instant::now() > deadline {
            return text;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Every sample line of an exposition (comments and blank lines skipped).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("unparsable sample line {l:?}")))
        .collect()
}

/// The samples of one metric (exact name, e.g. `http_requests_total` or
/// `http_request_duration_seconds_count`).
pub fn named(text: &str, name: &str) -> Vec<Sample> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .collect()
}

/// The value of the sample of `name` whose labels include all of `labels`
/// (summed over the other labels); 0 when there is none.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    named(text, name)
        .iter()
        .filter(|s| labels.iter().all(|(k, v)| s.label(k) == *v))
        .map(|s| s.value)
        .sum()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series.to_owned(), BTreeMap::new()),
        Some((name, rest)) => (name.to_owned(), parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` (values may contain escaped quotes, commas, braces).
fn parse_labels(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.insert(key.trim_start_matches(',').to_owned(), value);
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
    Some(out)
}

#[test]
fn labels_parse_with_escapes() {
    let s = parse_line(r#"x_total{a="1",b="q\"u,o}te"} 3"#).expect("parses");
    assert_eq!(s.name, "x_total");
    assert_eq!(s.label("a"), "1");
    assert_eq!(s.label("b"), "q\"u,o}te");
    assert_eq!(s.value, 3.0);
    assert_eq!(parse_line("up 1").expect("parses").labels.len(), 0);
}
