//! Prometheus metrics, exposed on the admin listener's `/metrics`.

use prometheus::{Encoder, TextEncoder};

use crate::http::response::Response;

/// The text exposition of every registered metric.
pub fn render() -> Response {
    let families = prometheus::gather();
    let encoder = TextEncoder::new();
    let mut body = Vec::with_capacity(4096);
    match encoder.encode(&families, &mut body) {
        Ok(()) => Response {
            status: 200,
            headers: vec![("Content-Type", encoder.format_type().to_owned())],
            body,
        },
        Err(e) => Response::text(500, &format!("metrics encoding failed: {e}")),
    }
}
