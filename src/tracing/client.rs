//! The span exporter: OTLP/HTTP protobuf through a blocking HTTP client.
//!
//! Why our own: opentelemetry-otlp's ready-made HTTP clients are reqwest
//! (which starts a tokio runtime on a hidden thread) and hyper (which needs
//! one), and its encoding path cost more than everything else tracing does
//! (see [`super::otlp`]). [`super::batch`]'s export thread calls it once
//! per batch, so an exporter that simply blocks is all it needs: the request
//! body is written by [`super::otlp`] and POSTed with ureq, configured for
//! that job: a global and a connect timeout (ureq has none by default),
//! non-2xx answers returned as responses (a failed export, counted by
//! [`super::batch`]), no redirects, no proxy from the environment, and a
//! bound on the response body read.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

use super::batch::SendBatch;
use super::otlp::{self, Buffers, EncodedResource};

/// The largest response body read from the collector (a partial-success
/// message is a few hundred bytes).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// POSTs each batch to the collector as one `ExportTraceServiceRequest`.
pub struct OtlpExporter {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    /// The encoded resource and the buffers reused by every export (one
    /// batch at a time: the batch thread is the only caller).
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    resource: EncodedResource,
    bufs: Buffers,
    body: Vec<u8>,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be secrets: only their names.
        f.debug_struct("OtlpExporter")
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl OtlpExporter {
    /// An exporter to `url` whose every request, connect included, ends
    /// within `timeout`.
    pub fn new(url: String, headers: Vec<(String, String)>, timeout: Duration) -> OtlpExporter {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .build();
        OtlpExporter {
            agent: crate::resolver::agent(config),
            url,
            headers,
            state: Mutex::new(State::default()),
        }
    }

    fn send(&self, batch: &[SpanData]) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            resource,
            bufs,
            body,
        } = &mut *state;
        otlp::encode_request(body, bufs, resource, batch);
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let failed = |e: &dyn std::fmt::Display| OTelSdkError::InternalFailure(e.to_string());
        let mut response = request.send(&body[..]).map_err(|e| failed(&e))?;
        // Read (bounded) what the collector says, so the connection is reused.
        let _ = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec();
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(failed(&format_args!("the collector answered {status}")))
        }
    }
}

impl SendBatch for OtlpExporter {
    fn send(&self, batch: &[SpanData]) -> OTelSdkResult {
        OtlpExporter::send(self, batch)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .resource = otlp::resource(resource);
    }
}
