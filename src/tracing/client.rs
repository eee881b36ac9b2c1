//! The blocking HTTP client the OTLP exporter sends through.
//!
//! Why our own: the exporter's ready-made clients are reqwest (which starts a
//! tokio runtime on a hidden thread) and hyper (which needs one). The SDK's
//! batch processor already runs on its own thread and drives the export
//! future with `block_on`, so a client that simply blocks inside
//! `send_bytes` is all it needs. ureq 3 is configured for that job: a
//! global and a connect timeout (ureq has none by default), non-2xx answers
//! returned as responses so the exporter's retry logic sees 429/503 and
//! `Retry-After`, no redirects, no proxy from the environment, and a bound
//! on the response body.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// The largest response body read from the collector (a partial-success
/// message is a few hundred bytes).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// A ureq agent behind the SDK's `HttpClient` trait.
#[derive(Debug)]
pub struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    /// A client whose every request, connect included, ends within `timeout`.
    pub fn new(timeout: Duration) -> UreqClient {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .build();
        UreqClient {
            agent: crate::resolver::agent(config),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let response = self.agent.run(request.map(|body| body.to_vec()))?;
        let (parts, mut body) = response.into_parts();
        let bytes = body.with_config().limit(MAX_RESPONSE_BYTES).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}
