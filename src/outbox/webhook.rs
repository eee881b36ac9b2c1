//! One delivery attempt: `POST` the CloudEvent to `WEBHOOK_URL` through a
//! blocking HTTP client (ureq 3, rustls), bounded by a connect and a total
//! timeout.
//!
//! The agent is configured for a webhook, not a browser: non-2xx answers
//! are returned as answers (429 and `Retry-After` must be seen), redirects
//! are not followed (a receiver that moved is a configuration error, and a
//! redirect could leak the event elsewhere), no proxy is read from the
//! environment, and every call has `timeout_connect` and `timeout_global`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::cloudevent;
use super::policy::{self, AttemptResult, Outcome};

/// Extra headers for one call (the `traceparent` seam: tracing supplies it
/// when tracing is on; `None` adds nothing).
pub type HeaderSupplier = Arc<dyn Fn() -> Option<(&'static str, String)> + Send + Sync>;

/// The longest connect, within the attempt's total timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What one attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    pub result: AttemptResult,
    pub took: Duration,
}

/// The receiver.
pub struct Webhook {
    agent: ureq::Agent,
    url: String,
    headers: Option<HeaderSupplier>,
}

impl Webhook {
    /// `timeout` bounds a whole attempt, connect included.
    pub fn new(url: &str, timeout: Duration, headers: Option<HeaderSupplier>) -> Webhook {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(format!("usersvc/{}", crate::build_info::VERSION))
            .build();
        Webhook {
            agent: crate::resolver::agent(config),
            url: url.to_owned(),
            headers,
        }
    }

    /// Delivers one event (`body` from [`cloudevent::body`]). With tracing
    /// on, the call is a client span and carries its `traceparent`.
    pub fn post(&self, event_id: &str, body: &[u8]) -> Attempt {
        crate::tracing::propagation::client_span("POST webhook", &self.url, || {
            self.post_now(event_id, body)
        })
    }

    fn post_now(&self, event_id: &str, body: &[u8]) -> (Attempt, Option<u16>) {
        let start = Instant::now();
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", cloudevent::CONTENT_TYPE)
            .header("Idempotency-Key", event_id);
        if let Some((name, value)) = self.headers.as_ref().and_then(|h| h()) {
            request = request.header(name, value);
        }
        let mut status = None;
        let (outcome, result) = match request.send(body) {
            Ok(response) => {
                status = Some(response.status().as_u16());
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                policy::classify(
                    response.status().as_u16(),
                    retry_after.as_deref(),
                    SystemTime::now(),
                )
            }
            Err(e) => (
                Outcome::Retry {
                    after: None,
                    reason: match e {
                        ureq::Error::Timeout(t) => format!("no answer in time ({t})"),
                        other => other.to_string(),
                    },
                },
                AttemptResult::Network,
            ),
        };
        let attempt = Attempt {
            outcome,
            result,
            took: start.elapsed(),
        };
        (attempt, status)
    }
}
