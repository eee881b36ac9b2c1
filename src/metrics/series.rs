//! Per-thread handles to the request series, so that counting a request does
//! not hash its labels.
//!
//! `IntCounterVec::with_label_values` hashes every label value (SipHash),
//! takes the vector's lock and clones an `Arc` on every call: about a
//! thousand instructions per request for the two request series, 3% of a
//! `GET /api/v1/users/{id}`. The label sets are few (method × route ×
//! status), so each thread keeps the children it has used in a short list
//! and finds them again by comparing three small values. A child stays valid
//! for as long as its vector (series are never removed), and the list is
//! keyed by the [`Metrics`](super::Metrics) instance it came from, so two
//! registries in one process (tests) never share a handle.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use crate::http::method::Method;

/// Handles kept per thread and per kind; past this, look-ups go to the vector.
const MAX_PER_THREAD: usize = 64;

/// A number no other `Metrics` instance of this process has.
pub(super) fn next_instance() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Identifies a route pattern by its address: patterns are `&'static str`
/// from the route table (two equal patterns at two addresses are merely two
/// entries for the same child).
fn route_key(route: &'static str) -> (usize, usize) {
    (route.as_ptr() as usize, route.len())
}

/// `(instance, method, route, status)`.
type RequestKey = (u64, Method, (usize, usize), u16);
/// `(instance, method, route)`.
type DurationKey = (u64, Method, (usize, usize));

#[derive(Default)]
struct Cache {
    requests: Vec<(RequestKey, IntCounter)>,
    durations: Vec<(DurationKey, Histogram)>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Adds one to `vec{method, route, status}`.
pub(super) fn count_request(
    instance: u64,
    vec: &IntCounterVec,
    method: Method,
    route: &'static str,
    status: u16,
) {
    let key = (instance, method, route_key(route), status);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, h)) = c.requests.iter().find(|(k, _)| *k == key) {
            return h.inc();
        }
        let digits = super::itoa_status(status);
        let status_text = std::str::from_utf8(&digits).unwrap_or("0");
        let h = vec.with_label_values(&[method.as_str(), route, status_text]);
        h.inc();
        if c.requests.len() < MAX_PER_THREAD {
            c.requests.push((key, h));
        }
    })
}

/// Observes `seconds` in `vec{method, route}`.
pub(super) fn observe_duration(
    instance: u64,
    vec: &HistogramVec,
    method: Method,
    route: &'static str,
    seconds: f64,
) {
    let key = (instance, method, route_key(route));
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, h)) = c.durations.iter().find(|(k, _)| *k == key) {
            return h.observe(seconds);
        }
        let h = vec.with_label_values(&[method.as_str(), route]);
        h.observe(seconds);
        if c.durations.len() < MAX_PER_THREAD {
            c.durations.push((key, h));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, Opts};

    fn vecs() -> (IntCounterVec, HistogramVec) {
        (
            IntCounterVec::new(Opts::new("r", "r"), &["method", "route", "status"])
                .expect("counter vec"),
            HistogramVec::new(HistogramOpts::new("d", "d"), &["method", "route"])
                .expect("histogram vec"),
        )
    }

    #[test]
    fn handles_count_into_their_own_series_and_instance() {
        let (a, ad) = vecs();
        let (b, _) = vecs();
        let (ia, ib) = (next_instance(), next_instance());
        for _ in 0..3 {
            count_request(ia, &a, Method::Get, "/x/{id}", 200);
        }
        count_request(ia, &a, Method::Get, "/x/{id}", 404);
        count_request(ia, &a, Method::Post, "/x/{id}", 200);
        count_request(ib, &b, Method::Get, "/x/{id}", 200);
        observe_duration(ia, &ad, Method::Get, "/x/{id}", 0.5);
        observe_duration(ia, &ad, Method::Get, "/x/{id}", 0.5);
        let get =
            |v: &IntCounterVec, m: &str, s: &str| v.with_label_values(&[m, "/x/{id}", s]).get();
        assert_eq!(get(&a, "GET", "200"), 3);
        assert_eq!(get(&a, "GET", "404"), 1);
        assert_eq!(get(&a, "POST", "200"), 1);
        assert_eq!(get(&b, "GET", "200"), 1);
        assert_eq!(
            ad.with_label_values(&["GET", "/x/{id}"]).get_sample_count(),
            2
        );
    }

    #[test]
    fn past_the_bound_look_ups_still_count() {
        let (a, _) = vecs();
        let i = next_instance();
        let routes: Vec<&'static str> = (0..MAX_PER_THREAD + 10)
            .map(|n| &*Box::leak(format!("/r{n}").into_boxed_str()))
            .collect();
        for _ in 0..2 {
            for r in &routes {
                count_request(i, &a, Method::Get, r, 200);
            }
        }
        for r in &routes {
            assert_eq!(a.with_label_values(&["GET", r, "200"]).get(), 2, "{r}");
        }
    }
}
