//! The table of configuration variables: name, flag, default, meaning.
//!
//! Why a table: `--help`, the flag parser and the tests all read this one
//! list, so a variable cannot gain a flag that `--help` does not show, or
//! lose its documentation. The typed parsing of each value lives in
//! `resolve.rs`; the defaults there must match the text here (a test
//! checks it through `--print-config`).

/// One configuration variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// The environment variable (`MAX_CONNECTIONS`).
    pub name: &'static str,
    /// The flag that overrides it, without dashes (`max-connections`).
    pub flag: Option<&'static str>,
    /// The default as `--help` shows it.
    pub default: &'static str,
    /// What it does, one line.
    pub meaning: &'static str,
}

const fn var(
    name: &'static str,
    flag: Option<&'static str>,
    default: &'static str,
    meaning: &'static str,
) -> Var {
    Var {
        name,
        flag,
        default,
        meaning,
    }
}

/// Every variable, in the order `--help` shows them.
pub const VARS: [Var; 52] = [
    var("ADDR", Some("addr"), ":8080", "public listener: API and probes"),
    var(
        "ADMIN_ADDR",
        Some("admin-addr"),
        "127.0.0.1:9090",
        "admin listener: /metrics, /debug/*, probes; `off` disables it",
    ),
    var(
        "DATABASE_URL",
        Some("database-url"),
        "(required)",
        "PostgreSQL URL or key=value string; the password is never shown",
    ),
    var(
        "MAX_CONNECTIONS",
        Some("max-connections"),
        "25",
        "DB pool size, 1 to 1000; min idle = max/2",
    ),
    var(
        "DB_CONN_MAX_LIFETIME",
        None,
        "5m",
        "recycle connections older than this",
    ),
    var(
        "DB_ACQUIRE_TIMEOUT",
        None,
        "2s",
        "waiting longer for a pooled connection answers 503",
    ),
    var(
        "DB_STATEMENT_TIMEOUT",
        None,
        "5s",
        "server-side statement_timeout on every connection",
    ),
    var(
        "MIGRATE_ON_START",
        None,
        "true",
        "apply pending migrations at start-up (true or false); /startupz is 503 until done",
    ),
    var(
        "REDIS_URL",
        Some("redis-url"),
        "(off)",
        "redis:// or rediss:// URL of the optional cache; credentials never shown",
    ),
    var(
        "LOG_LEVEL",
        Some("log-level"),
        "info",
        "trace, debug, info, warn or error; changeable at run time",
    ),
    var(
        "LOG_FORMAT",
        Some("log-format"),
        "json",
        "json, or text for a terminal",
    ),
    var(
        "WORKERS",
        Some("workers"),
        "MAX_CONNECTIONS",
        "fixed worker threads, 1 to 1024",
    ),
    var(
        "QUEUE_DEPTH",
        None,
        "4 x WORKERS",
        "bounded request queue, 1 to 65536; full = 503",
    ),
    var(
        "MAX_CONNS",
        None,
        "1024",
        "open TCP connections per listener, 1 to 65536",
    ),
    var("READ_TIMEOUT", None, "5s", "per connection: reading a request"),
    var("WRITE_TIMEOUT", None, "10s", "per connection: writing a response"),
    var("IDLE_TIMEOUT", None, "1m", "per connection: keep-alive idle time"),
    var(
        "MAX_BODY_BYTES",
        None,
        "1MiB",
        "request body limit, up to 1GiB; 413 beyond",
    ),
    var(
        "MAX_HEADER_BYTES",
        None,
        "16KiB",
        "request head limit, 1KiB to 1MiB; 431 beyond",
    ),
    var(
        "DRAIN_DELAY",
        None,
        "2s",
        "after SIGTERM: unready but still serving; 0 for none",
    ),
    var(
        "SHUTDOWN_TIMEOUT",
        None,
        "25s",
        "in-flight work must finish within it",
    ),
    var(
        "TERMINATION_GRACE_PERIOD",
        None,
        "30s",
        "must be >= DRAIN_DELAY + SHUTDOWN_TIMEOUT + 2s",
    ),
    var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        None,
        "(tracing off)",
        "OTLP/HTTP collector, http:// or https://",
    ),
    var("OTEL_SERVICE_NAME", None, "usersvc", "service.name of every span"),
    var(
        "OTEL_TRACES_SAMPLER",
        None,
        "parentbased_traceidratio",
        "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio",
    ),
    var(
        "OTEL_TRACES_SAMPLER_ARG",
        None,
        "0.01",
        "sampling ratio, 0 to 1",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        None,
        "(OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces)",
        "full URL spans are POSTed to, used as given; also turns tracing on",
    ),
    var(
        "OTEL_EXPORTER_OTLP_HEADERS",
        None,
        "(none)",
        "name=value,... headers on every export (percent-encoded values; never shown)",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        None,
        "(OTEL_EXPORTER_OTLP_HEADERS)",
        "replaces OTEL_EXPORTER_OTLP_HEADERS for spans",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        None,
        "10s",
        "one export attempt, in ms (10000) or as a duration; 1ms to 60s",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        None,
        "(OTEL_EXPORTER_OTLP_TIMEOUT)",
        "replaces OTEL_EXPORTER_OTLP_TIMEOUT for spans",
    ),
    var(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        None,
        "http/protobuf",
        "the only protocol built in; grpc and http/json are refused",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        None,
        "http/protobuf",
        "as OTEL_EXPORTER_OTLP_PROTOCOL, for spans",
    ),
    var(
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        None,
        "none",
        "the only compression built in; gzip is refused",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        None,
        "none",
        "as OTEL_EXPORTER_OTLP_COMPRESSION, for spans",
    ),
    var(
        "OTEL_RESOURCE_ATTRIBUTES",
        None,
        "(none)",
        "key=value,... added to the span resource (percent-encoded values)",
    ),
    var(
        "OTEL_SDK_DISABLED",
        None,
        "false",
        "true turns tracing off whatever the endpoint",
    ),
    var(
        "OTEL_BSP_SCHEDULE_DELAY",
        None,
        "5s",
        "how often queued spans are exported, in ms (5000) or as a duration; 1ms to 60s",
    ),
    var(
        "OTEL_BSP_MAX_QUEUE_SIZE",
        None,
        "2048",
        "spans waiting for export, 1 to 65536; beyond, spans are dropped and counted",
    ),
    var(
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        None,
        "512",
        "spans per export at most, up to OTEL_BSP_MAX_QUEUE_SIZE",
    ),
    var(
        "OTEL_TRACES_EXPORTER",
        None,
        "otlp",
        "otlp, or none to turn tracing off",
    ),
    var(
        "OTEL_PROPAGATORS",
        None,
        "tracecontext",
        "the only propagator built in (W3C traceparent/tracestate); others are refused",
    ),
    var(
        "WEBHOOK_URL",
        None,
        "(events only logged)",
        "http:// or https:// receiver of user.* events",
    ),
    var(
        "QUEUE_TIMEOUT",
        None,
        "1s",
        "a request queued longer is answered 503 + Retry-After, not run",
    ),
    var(
        "CACHE_TTL",
        None,
        "1m",
        "lifetime of a cached user in Redis (with REDIS_URL)",
    ),
    var(
        "CACHE_KEY_PREFIX",
        None,
        "usersvc",
        "first part of every Redis key: letters, digits, . _ - :, up to 64",
    ),
    var(
        "OUTBOX_MAX_ATTEMPTS",
        None,
        "10",
        "webhook attempts before an event is parked as failed, 1 to 1000",
    ),
    var(
        "OUTBOX_RETENTION",
        None,
        "7d",
        "delivered events older than this are purged; 1m to 365d (days as 7d)",
    ),
    var(
        "OUTBOX_BACKOFF",
        None,
        "1s",
        "delay before the first retry; doubles per attempt (with jitter), at most 1h",
    ),
    var(
        "WEBHOOK_TIMEOUT",
        None,
        "5s",
        "one webhook attempt, connect included; at most SHUTDOWN_TIMEOUT",
    ),
    var(
        "MAX_BODY_BUFFER",
        None,
        "32MiB (or MAX_BODY_BYTES if larger)",
        "request body bytes held at once, at least MAX_BODY_BYTES; 503 beyond",
    ),
    var(
        "REUSE_PORT",
        None,
        "false",
        "SO_REUSEPORT: let a new instance bind the same ports for a hand-over",
    ),
];

/// Every variable, in the order `--help` shows them.
pub fn all() -> impl Iterator<Item = &'static Var> {
    VARS.iter()
}

/// The variable a flag (without dashes) sets.
pub fn by_flag(flag: &str) -> Option<&'static Var> {
    all().find(|v| v.flag == Some(flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_flags_are_unique() {
        let names: std::collections::BTreeSet<_> = all().map(|v| v.name).collect();
        assert_eq!(names.len(), all().count());
        let flags: Vec<_> = all().filter_map(|v| v.flag).collect();
        let unique: std::collections::BTreeSet<_> = flags.iter().collect();
        assert_eq!(unique.len(), flags.len());
    }

    #[test]
    fn flags_are_the_lower_kebab_names() {
        for var in all() {
            if let Some(flag) = var.flag {
                assert_eq!(flag, var.name.to_ascii_lowercase().replace('_', "-"));
            }
        }
        assert_eq!(by_flag("workers").map(|v| v.name), Some("WORKERS"));
        assert_eq!(by_flag("bogus"), None);
    }
}
