//! OpenTelemetry tracing without an async runtime: one server span per
//! request, one child span per database statement, exported as OTLP/HTTP
//! protobuf.
//!
//! Why this shape: the official SDK does the span model, sampling and W3C
//! propagation; our span processor ([`batch`]) exports from one thread of
//! its own (`otel-export`) through a small blocking ureq client
//! ([`client`]), so there is no tokio runtime and no hidden thread. A
//! request only hands its finished span to a bounded queue, never waiting:
//! a dead, black-holed or failing collector never slows a request or a
//! worker; spans that cannot be sent are dropped, counted and
//! logged ([`export`]). Shutdown step 6 flushes within
//! [`crate::config::SPAN_FLUSH_TIMEOUT`], part of the budget the
//! grace-period check reserves.
//!
//! With no endpoint (or `OTEL_SDK_DISABLED=true`, or
//! `OTEL_TRACES_EXPORTER=none`) nothing is built and [`active`] is `None`:
//! the request path's only tracing work is that check.
//!
//! Pieces: [`request`] (server spans, `traceparent` extraction), [`db`]
//! (statement spans), [`propagation`] (the outgoing-call seam), [`batch`]
//! (the queue and its export thread), [`client`], [`export`] (accounting).

pub mod batch;
pub mod client;
pub mod db;
pub mod export;
pub mod ids;
pub mod otlp;
pub mod propagation;
pub mod request;
pub mod sampling;

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::build_info;
use crate::config::{Config, OtelSampler};

pub use export::{SPANS_DROPPED, SPANS_EXPORTED};
pub use request::RequestSpan;

/// What tracing needs from the configuration, resolved (signal-specific
/// variables over the general ones).
#[derive(Debug, Clone)]
pub struct TracingSettings {
    /// The full URL spans are POSTed to.
    pub traces_url: String,
    /// Extra headers on every export (values may be secrets: not logged).
    pub headers: Vec<(String, String)>,
    /// One export attempt, connect included.
    pub timeout: Duration,
    pub sampler: OtelSampler,
    pub ratio: f64,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    /// How often queued spans are exported.
    pub schedule_delay: Duration,
    /// Spans queued for export at most; beyond, they are dropped.
    pub max_queue_size: usize,
    /// Spans per export at most.
    pub max_export_batch_size: usize,
}

impl TracingSettings {
    /// `None` when tracing is off: no endpoint, `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`.
    pub fn from_config(config: &Config) -> Option<TracingSettings> {
        if config.otel_sdk_disabled || !config.otel_traces_exporter_otlp {
            return None;
        }
        let traces_url = match (&config.otel_traces_endpoint, &config.otel_endpoint) {
            (Some(url), _) => url.as_str().to_owned(),
            (None, Some(base)) => traces_url_of(base.as_str()),
            (None, None) => return None,
        };
        let mut headers = config
            .otel_traces_headers
            .as_ref()
            .unwrap_or(&config.otel_headers)
            .expose()
            .to_vec();
        let (traces_url, credentials) = split_userinfo(&traces_url);
        if let Some(basic) = credentials {
            if !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            {
                headers.push(("Authorization".to_owned(), basic));
            }
        }
        Some(TracingSettings {
            traces_url,
            headers,
            timeout: config.otel_traces_timeout.unwrap_or(config.otel_timeout),
            sampler: config.otel_traces_sampler,
            ratio: config.otel_traces_sampler_arg,
            service_name: config.otel_service_name.clone(),
            resource_attributes: config.otel_resource_attributes.clone(),
            schedule_delay: config.otel_bsp_schedule_delay,
            max_queue_size: config.otel_bsp_max_queue_size,
            max_export_batch_size: config.otel_bsp_max_export_batch_size,
        })
    }
}

/// The URL without its `user:password@`, and those credentials as an
/// `Authorization` header value (`Basic …`): the HTTP client does not send
/// credentials written in a URL. An `Authorization` header set in
/// `OTEL_EXPORTER_OTLP_HEADERS` wins.
fn split_userinfo(url: &str) -> (String, Option<String>) {
    use base64::Engine as _;
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let decode = |s: &str| crate::percent::decode_lossy(s).into_owned();
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let pair = format!("{}:{}", decode(user), decode(password));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    (format!("{scheme}://{host}{tail}"), Some(basic))
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL: the specification appends
/// `v1/traces` to its path.
pub fn traces_url_of(base: &str) -> String {
    let (without_query, query) = match base.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (base, None),
    };
    let mut url = format!("{}/v1/traces", without_query.trim_end_matches('/'));
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Why tracing could not start.
#[derive(Debug)]
pub enum TracingError {
    /// [`install`] was called twice.
    AlreadyInstalled,
    /// The export thread could not be started.
    Thread(std::io::Error),
}

impl fmt::Display for TracingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TracingError::AlreadyInstalled => f.write_str("tracing is already installed"),
            TracingError::Thread(e) => write!(f, "cannot start the span export thread: {e}"),
        }
    }
}

impl std::error::Error for TracingError {}

/// The process's tracing: the provider (its batch thread), the tracer, the
/// W3C propagator.
pub struct Tracing {
    provider: SdkTracerProvider,
    pub(crate) tracer: SdkTracer,
    pub(crate) propagator: TraceContextPropagator,
    /// The sampler, for the decision taken before the SDK is called
    /// ([`sampling`]).
    pub(crate) sampler: sampling::SamplerSpec,
}

static ACTIVE: OnceLock<Tracing> = OnceLock::new();

/// The installed tracing, or `None` when tracing is off.
#[inline]
pub fn active() -> Option<&'static Tracing> {
    ACTIVE.get()
}

/// Builds the exporter and the batch thread and makes tracing [`active`].
/// Connects nothing: a collector that is down costs dropped spans, never
/// start-up.
pub fn install(settings: &TracingSettings) -> Result<&'static Tracing, TracingError> {
    if ACTIVE.get().is_some() {
        return Err(TracingError::AlreadyInstalled);
    }
    ACTIVE
        .set(build(settings)?)
        .map_err(|_| TracingError::AlreadyInstalled)?;
    let active = ACTIVE.get().ok_or(TracingError::AlreadyInstalled)?;
    log::info!(
        endpoint = crate::config::HttpUrl::parse(&settings.traces_url)
            .map(|u| u.redacted().to_owned())
            .unwrap_or_default()
            .as_str(),
        sampler = settings.sampler.as_str(),
        ratio = settings.ratio;
        "tracing on"
    );
    Ok(active)
}

fn build(settings: &TracingSettings) -> Result<Tracing, TracingError> {
    let exporter = client::OtlpExporter::new(
        settings.traces_url.clone(),
        settings.headers.clone(),
        settings.timeout,
    );
    let processor = batch::Batcher::start(
        exporter,
        batch::BatchSettings {
            capacity: settings.max_queue_size,
            batch_size: settings.max_export_batch_size,
            delay: settings.schedule_delay,
        },
    )
    .map_err(TracingError::Thread)?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler(settings.sampler, settings.ratio))
        .with_id_generator(sampling::HandedIds::default())
        .with_resource(resource(settings))
        .build();
    let tracer = provider.tracer("usersvc");
    Ok(Tracing {
        provider,
        tracer,
        propagator: TraceContextPropagator::new(),
        sampler: sampling::SamplerSpec {
            kind: settings.sampler,
            ratio: settings.ratio,
        },
    })
}

pub(crate) fn sampler(kind: OtelSampler, ratio: f64) -> Sampler {
    let root = |s: Sampler| Sampler::ParentBased(Box::new(s));
    match kind {
        OtelSampler::AlwaysOn => Sampler::AlwaysOn,
        OtelSampler::AlwaysOff => Sampler::AlwaysOff,
        OtelSampler::TraceIdRatio => Sampler::TraceIdRatioBased(ratio),
        OtelSampler::ParentBasedAlwaysOn => root(Sampler::AlwaysOn),
        OtelSampler::ParentBasedAlwaysOff => root(Sampler::AlwaysOff),
        OtelSampler::ParentBasedTraceIdRatio => root(Sampler::TraceIdRatioBased(ratio)),
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES` first, then what the service knows, which
/// wins on a clash (`service.name` is `OTEL_SERVICE_NAME`). Built from the
/// validated configuration only: the SDK's own detectors would read the
/// environment again.
fn resource(settings: &TracingSettings) -> Resource {
    let mut attributes: Vec<KeyValue> = settings
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attributes.extend([
        KeyValue::new("service.version", build_info::VERSION),
        KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
        KeyValue::new("process.pid", i64::from(std::process::id())),
        KeyValue::new("process.runtime.name", "rust"),
        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        KeyValue::new("telemetry.sdk.language", "rust"),
    ]);
    if let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    {
        attributes.push(KeyValue::new("process.executable.name", exe));
    }
    if let Some(host) = host_name() {
        attributes.push(KeyValue::new("host.name", host));
    }
    attributes.push(KeyValue::new("host.arch", std::env::consts::ARCH));
    attributes.push(KeyValue::new("os.type", std::env::consts::OS));
    Resource::builder_empty()
        .with_attributes(attributes)
        .with_service_name(settings.service_name.clone())
        .build()
}

/// The kernel's host name (Linux); `None` elsewhere.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Shutdown step 6: exports what is queued, waiting at most `bound`; spans
/// still unsent then are counted as dropped. The batch thread, if stuck on
/// a black-holed collector, is left behind: the process is about to exit.
pub fn shutdown(bound: Duration) {
    let Some(tracing) = active() else {
        return;
    };
    let started = Instant::now();
    // The batcher counts what is still unsent when the bound runs out.
    let result = tracing.provider.shutdown_with_timeout(bound);
    log::info!(
        exported_total = SPANS_EXPORTED.get(),
        dropped_total = SPANS_DROPPED.get(),
        flush_ms = crate::http::pipeline::millis(started.elapsed()),
        flushed = result.is_ok();
        "tracing stopped"
    );
}

#[cfg(test)]
mod tests {
    use super::{split_userinfo, traces_url_of, TracingSettings};

    fn settings(env: &[(&str, &str)]) -> Option<TracingSettings> {
        let mut all = vec![("DATABASE_URL", "postgres://u@h/db")];
        all.extend_from_slice(env);
        let lookup = |k: &str| {
            all.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        match crate::config::parse(&[], &lookup) {
            Ok(crate::config::Command::Serve(config)) => TracingSettings::from_config(&config),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_turns_tracing_on_and_which_variable_wins() {
        assert!(settings(&[]).is_none());
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        let s = settings(&on).expect("on");
        assert_eq!(s.traces_url, "http://c:4318/v1/traces");
        assert_eq!(s.timeout, std::time::Duration::from_secs(10));
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert!(settings(&[on[0], off]).is_none(), "{off:?}");
        }
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/x"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3s"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2s"),
        ])
        .expect("on");
        assert_eq!(s.traces_url, "http://t:1/x", "used as given");
        assert_eq!(s.headers, [("b".to_owned(), "2".to_owned())]);
        assert_eq!(s.timeout, std::time::Duration::from_secs(2));
    }

    #[test]
    fn url_credentials_become_a_basic_header() {
        let s = settings(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://otel:s3cr%21t@c:4318",
        )])
        .expect("on");
        assert_eq!(s.traces_url, "https://c:4318/v1/traces");
        // base64("otel:s3cr!t")
        assert_eq!(
            s.headers,
            [(
                "Authorization".to_owned(),
                "Basic b3RlbDpzM2NyIXQ=".to_owned()
            )]
        );
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel:pw@c"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t"),
        ])
        .expect("on");
        assert_eq!(
            s.headers,
            [("authorization".to_owned(), "Bearer t".to_owned())]
        );
        assert_eq!(
            split_userinfo("http://c/p@q"),
            ("http://c/p@q".to_owned(), None)
        );
    }

    #[test]
    fn base_endpoint_gets_the_signal_path() {
        assert_eq!(
            traces_url_of("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url_of("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url_of("https://o.example.com/otlp?tenant=a"),
            "https://o.example.com/otlp/v1/traces?tenant=a"
        );
    }
}
