//! `config::parse` from the outside: every variable's valid and invalid
//! values, defaults, derived defaults, flag-over-env precedence, the
//! command line, and every error reported at once. The environment is a
//! map handed in as a closure; the process environment is never touched.

// The `defaults` test spells out every variable in one `json!`.
#![recursion_limit = "256"]

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use usersvc::config::{
    self, Command, Config, ConfigErrors, LogFormat, MigrateCommand, OtelSampler,
};

const DB: &str = "postgres://app:pw@127.0.0.1:5432/users";

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigErrors> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config::parse(&args, &|key| env.get(key).cloned())
}

/// The config for `args` and `env`, with a valid DATABASE_URL added unless
/// `env` has one.
fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
    let mut env = env.to_vec();
    if !env.iter().any(|(k, _)| *k == "DATABASE_URL") {
        env.push(("DATABASE_URL", DB));
    }
    match run(args, &env) {
        Ok(Command::Serve(config)) => config,
        Ok(other) => panic!("{args:?} {env:?}: expected Serve, got {other:?}"),
        Err(errors) => panic!("{args:?} {env:?}: refused:\n{errors}"),
    }
}

/// The errors for `args` and `env` (DATABASE_URL added as in [`config`]).
fn refused(args: &[&str], env: &[(&str, &str)]) -> ConfigErrors {
    let mut env = env.to_vec();
    if !env.iter().any(|(k, _)| *k == "DATABASE_URL") {
        env.push(("DATABASE_URL", DB));
    }
    match run(args, &env) {
        Ok(command) => panic!("{args:?} {env:?}: accepted as {command:?}"),
        Err(errors) => errors,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn sock(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

type Check = fn(&Config) -> bool;

/// Valid values of every variable and what they become.
fn valid_cases() -> Vec<(&'static str, &'static str, Check)> {
    vec![
        ("ADDR", ":9000", |c| c.addr == sock("0.0.0.0:9000")),
        ("ADDR", ":0", |c| c.addr == sock("0.0.0.0:0")),
        ("ADDR", "127.0.0.1:8081", |c| {
            c.addr == sock("127.0.0.1:8081")
        }),
        ("ADDR", "[::1]:8080", |c| c.addr == sock("[::1]:8080")),
        ("ADDR", "localhost:8080", |c| {
            c.addr == sock("127.0.0.1:8080")
        }),
        ("ADMIN_ADDR", "off", |c| c.admin_addr.is_none()),
        ("ADMIN_ADDR", "OFF", |c| c.admin_addr.is_none()),
        ("ADMIN_ADDR", ":9191", |c| {
            c.admin_addr == Some(sock("0.0.0.0:9191"))
        }),
        ("ADMIN_ADDR", "[::]:0", |c| {
            c.admin_addr == Some(sock("[::]:0"))
        }),
        ("DATABASE_URL", "postgresql://u@db/x", |c| {
            c.database_url.pg_config().get_dbname() == Some("x")
        }),
        ("DATABASE_URL", "host=db user=app dbname=users", |c| {
            c.database_url.pg_config().get_user() == Some("app")
        }),
        ("MAX_CONNECTIONS", "1", |c| c.max_connections == 1),
        ("MAX_CONNECTIONS", "1000", |c| c.max_connections == 1000),
        ("DB_CONN_MAX_LIFETIME", "30m", |c| {
            c.db_conn_max_lifetime == secs(1800)
        }),
        ("DB_CONN_MAX_LIFETIME", "1h", |c| {
            c.db_conn_max_lifetime == secs(3600)
        }),
        ("DB_ACQUIRE_TIMEOUT", "500ms", |c| {
            c.db_acquire_timeout == ms(500)
        }),
        ("DB_STATEMENT_TIMEOUT", "1m30s", |c| {
            c.db_statement_timeout == secs(90)
        }),
        ("MIGRATE_ON_START", "false", |c| !c.migrate_on_start),
        ("MIGRATE_ON_START", "TRUE", |c| c.migrate_on_start),
        ("MIGRATE_ON_START", "0", |c| !c.migrate_on_start),
        ("REDIS_URL", "redis://cache:6379/0", |c| {
            c.redis_url.as_ref().is_some_and(|u| u.host() == "cache")
        }),
        ("REDIS_URL", "rediss://:pw@cache", |c| {
            c.redis_url.as_ref().is_some_and(|u| u.tls())
        }),
        ("LOG_LEVEL", "trace", |c| {
            c.log_level == log::LevelFilter::Trace
        }),
        ("LOG_LEVEL", "DEBUG", |c| {
            c.log_level == log::LevelFilter::Debug
        }),
        ("LOG_LEVEL", "warn", |c| {
            c.log_level == log::LevelFilter::Warn
        }),
        ("LOG_LEVEL", "error", |c| {
            c.log_level == log::LevelFilter::Error
        }),
        ("LOG_FORMAT", "text", |c| c.log_format == LogFormat::Text),
        ("LOG_FORMAT", "json", |c| c.log_format == LogFormat::Json),
        ("WORKERS", "1", |c| c.workers == 1),
        ("WORKERS", "1024", |c| c.workers == 1024),
        ("QUEUE_DEPTH", "1", |c| c.queue_depth == 1),
        ("QUEUE_DEPTH", "65536", |c| c.queue_depth == 65536),
        ("MAX_CONNS", "1", |c| c.max_conns == 1),
        ("MAX_CONNS", "65536", |c| c.max_conns == 65536),
        ("READ_TIMEOUT", "1ms", |c| c.read_timeout == ms(1)),
        ("WRITE_TIMEOUT", "24h", |c| c.write_timeout == secs(86400)),
        ("IDLE_TIMEOUT", "2m", |c| c.idle_timeout == secs(120)),
        ("MAX_BODY_BYTES", "1", |c| c.max_body_bytes == 1),
        ("MAX_BODY_BYTES", "1GiB", |c| c.max_body_bytes == 1 << 30),
        ("MAX_BODY_BYTES", "10MB", |c| c.max_body_bytes == 10_000_000),
        ("MAX_HEADER_BYTES", "1KiB", |c| c.max_header_bytes == 1024),
        ("MAX_HEADER_BYTES", "1MiB", |c| {
            c.max_header_bytes == 1 << 20
        }),
        ("MAX_HEADER_BYTES", "8192", |c| c.max_header_bytes == 8192),
        ("DRAIN_DELAY", "3s", |c| c.drain_delay == secs(3)),
        // Zero means no delay (a local stop need not wait).
        ("DRAIN_DELAY", "0", |c| c.drain_delay == Duration::ZERO),
        ("DRAIN_DELAY", "0s", |c| c.drain_delay == Duration::ZERO),
        ("DRAIN_DELAY", "0ms", |c| c.drain_delay == Duration::ZERO),
        ("SHUTDOWN_TIMEOUT", "1s", |c| c.shutdown_timeout == secs(1)),
        ("TERMINATION_GRACE_PERIOD", "1h", |c| {
            c.termination_grace_period == secs(3600)
        }),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318",
            |c| c.otel_endpoint.as_ref().map(|u| u.as_str()) == Some("http://collector:4318"),
        ),
        ("OTEL_SERVICE_NAME", "users-api", |c| {
            c.otel_service_name == "users-api"
        }),
        ("OTEL_TRACES_SAMPLER", "always_on", |c| {
            c.otel_traces_sampler == OtelSampler::AlwaysOn
        }),
        ("OTEL_TRACES_SAMPLER", "traceidratio", |c| {
            c.otel_traces_sampler == OtelSampler::TraceIdRatio
        }),
        ("OTEL_TRACES_SAMPLER_ARG", "0", |c| {
            c.otel_traces_sampler_arg == 0.0
        }),
        ("OTEL_TRACES_SAMPLER_ARG", "1", |c| {
            c.otel_traces_sampler_arg == 1.0
        }),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25", |c| {
            c.otel_traces_sampler_arg == 0.25
        }),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://otel.example.com/custom/traces",
            |c| {
                c.otel_traces_endpoint.as_ref().map(|u| u.as_str())
                    == Some("https://otel.example.com/custom/traces")
            },
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=abc%2C123,x-tenant=users",
            |c| {
                c.otel_headers.expose()
                    == [
                        ("api-key".to_owned(), "abc,123".to_owned()),
                        ("x-tenant".to_owned(), "users".to_owned()),
                    ]
            },
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "k=v", |c| {
            c.otel_traces_headers.as_ref().map(|h| h.expose().len()) == Some(1)
        }),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500", |c| {
            c.otel_timeout == ms(2500)
        }),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3s", |c| {
            c.otel_timeout == secs(3)
        }),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "500ms", |c| {
            c.otel_traces_timeout == Some(ms(500))
        }),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", |_| true),
        (
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "HTTP/PROTOBUF",
            |_| true,
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none", |_| true),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none", |_| true),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod,team=users%20core",
            |c| {
                c.otel_resource_attributes
                    == [
                        ("deployment.environment".to_owned(), "prod".to_owned()),
                        ("team".to_owned(), "users core".to_owned()),
                    ]
            },
        ),
        ("OTEL_SDK_DISABLED", "true", |c| c.otel_sdk_disabled),
        ("OTEL_SDK_DISABLED", "False", |c| !c.otel_sdk_disabled),
        ("OTEL_BSP_SCHEDULE_DELAY", "250", |c| {
            c.otel_bsp_schedule_delay == ms(250)
        }),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64", |c| {
            c.otel_bsp_max_queue_size == 64
        }),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100", |c| {
            c.otel_bsp_max_export_batch_size == 100
        }),
        ("OTEL_TRACES_EXPORTER", "none", |c| {
            !c.otel_traces_exporter_otlp
        }),
        ("OTEL_TRACES_EXPORTER", "otlp", |c| {
            c.otel_traces_exporter_otlp
        }),
        ("OTEL_PROPAGATORS", "tracecontext", |_| true),
        ("WEBHOOK_URL", "https://hooks.example.com/users", |c| {
            c.webhook_url.as_ref().map(|u| u.as_str()) == Some("https://hooks.example.com/users")
        }),
        ("QUEUE_TIMEOUT", "250ms", |c| c.queue_timeout == ms(250)),
        ("CACHE_TTL", "5m", |c| c.cache_ttl == secs(300)),
        ("CACHE_TTL", "500ms", |c| c.cache_ttl == ms(500)),
        ("CACHE_KEY_PREFIX", "test-1:a_b.c", |c| {
            c.cache_key_prefix == "test-1:a_b.c"
        }),
        ("OUTBOX_MAX_ATTEMPTS", "1", |c| c.outbox_max_attempts == 1),
        ("OUTBOX_MAX_ATTEMPTS", "1000", |c| {
            c.outbox_max_attempts == 1000
        }),
        ("OUTBOX_RETENTION", "30d", |c| {
            c.outbox_retention == secs(30 * 86400)
        }),
        ("OUTBOX_RETENTION", "36h", |c| {
            c.outbox_retention == secs(36 * 3600)
        }),
        ("OUTBOX_RETENTION", "1m", |c| c.outbox_retention == secs(60)),
        ("OUTBOX_BACKOFF", "50ms", |c| c.outbox_backoff == ms(50)),
        ("OUTBOX_BACKOFF", "1h", |c| c.outbox_backoff == secs(3600)),
        ("WEBHOOK_TIMEOUT", "1500ms", |c| {
            c.webhook_timeout == ms(1500)
        }),
        ("WEBHOOK_TIMEOUT", "25s", |c| c.webhook_timeout == secs(25)),
        ("MAX_BODY_BUFFER", "1MiB", |c| c.max_body_buffer == 1 << 20),
        ("MAX_BODY_BUFFER", "1GiB", |c| c.max_body_buffer == 1 << 30),
        ("REUSE_PORT", "true", |c| c.reuse_port),
        ("REUSE_PORT", "off", |c| !c.reuse_port),
    ]
}

#[test]
fn every_variable_accepts_valid_values() {
    for (var, value, check) in valid_cases() {
        let config = config(&[], &[(var, value)]);
        assert!(check(&config), "{var}={value}: {config:?}");
    }
}

#[test]
fn every_variable_has_a_valid_case() {
    for var in config::VARS.iter() {
        assert!(
            valid_cases().iter().any(|(name, _, _)| *name == var.name),
            "{} has no valid case",
            var.name
        );
    }
}

/// Invalid values: the variable, the value, a piece of the expectation.
const INVALID: &[(&str, &str, &str)] = &[
    ("ADDR", "8080", "expected host:port"),
    ("ADDR", ":65536", "expected host:port"),
    ("ADDR", "example.com:80", "expected host:port"),
    ("ADDR", "off", "expected host:port"),
    ("ADMIN_ADDR", "of", "expected off, or host:port"),
    // The public listener's port (ADDR defaults to :8080), on the same or every address.
    (
        "ADMIN_ADDR",
        "127.0.0.1:8080",
        "takes the same port as ADDR (0.0.0.0:8080)",
    ),
    ("ADMIN_ADDR", ":8080", "takes the same port as ADDR"),
    // ADDR on the default admin port (127.0.0.1:9090).
    (
        "ADDR",
        ":9090",
        "takes the same port as ADMIN_ADDR (127.0.0.1:9090)",
    ),
    ("ADMIN_ADDR", "1.2.3.4", "expected off, or host:port"),
    (
        "MAX_CONNECTIONS",
        "abc",
        "expected a whole number from 1 to 1000",
    ),
    (
        "MAX_CONNECTIONS",
        "0",
        "expected a whole number from 1 to 1000",
    ),
    (
        "MAX_CONNECTIONS",
        "1001",
        "expected a whole number from 1 to 1000",
    ),
    (
        "MAX_CONNECTIONS",
        "-1",
        "expected a whole number from 1 to 1000",
    ),
    (
        "MAX_CONNECTIONS",
        "99999999999999999999",
        "expected a whole number from 1 to 1000",
    ),
    (
        "MAX_CONNECTIONS",
        "2.5",
        "expected a whole number from 1 to 1000",
    ),
    ("DB_CONN_MAX_LIFETIME", "5", "expected a duration"),
    (
        "DB_CONN_MAX_LIFETIME",
        "25h",
        "expected a duration from 1ms to 24h",
    ),
    ("DB_ACQUIRE_TIMEOUT", "0s", "expected a duration"),
    ("DB_ACQUIRE_TIMEOUT", "-2s", "expected a duration"),
    ("DB_STATEMENT_TIMEOUT", "5 seconds", "expected a duration"),
    ("MIGRATE_ON_START", "maybe", "expected true or false"),
    (
        "DB_STATEMENT_TIMEOUT",
        "99999999999999999999h",
        "expected a duration",
    ),
    (
        "LOG_LEVEL",
        "off",
        "expected one of trace, debug, info, warn, error",
    ),
    (
        "LOG_LEVEL",
        "verbose",
        "expected one of trace, debug, info, warn, error",
    ),
    ("LOG_FORMAT", "logfmt", "expected json or text"),
    ("WORKERS", "0", "expected a whole number from 1 to 1024"),
    ("WORKERS", "1025", "expected a whole number from 1 to 1024"),
    ("WORKERS", "many", "expected a whole number from 1 to 1024"),
    (
        "QUEUE_DEPTH",
        "0",
        "expected a whole number from 1 to 65536",
    ),
    (
        "QUEUE_DEPTH",
        "65537",
        "expected a whole number from 1 to 65536",
    ),
    ("MAX_CONNS", "0", "expected a whole number from 1 to 65536"),
    (
        "MAX_CONNS",
        "1e3",
        "expected a whole number from 1 to 65536",
    ),
    ("READ_TIMEOUT", "0ms", "expected a duration"),
    ("WRITE_TIMEOUT", "10", "expected a duration"),
    ("IDLE_TIMEOUT", "1d", "expected a duration"),
    ("IDLE_TIMEOUT", "1.5m", "expected a duration"),
    ("MAX_BODY_BYTES", "0", "expected a size from 1 to 1GiB"),
    ("MAX_BODY_BUFFER", "0", "expected a size from 1 to 1TiB"),
    ("MAX_BODY_BUFFER", "1Mi", "expected a size"),
    (
        "MAX_BODY_BUFFER",
        "512KiB",
        "is less than MAX_BODY_BYTES (1MiB)",
    ),
    ("REUSE_PORT", "maybe", "expected true or false"),
    ("MAX_BODY_BYTES", "2GiB", "expected a size from 1 to 1GiB"),
    ("MAX_BODY_BYTES", "1M", "expected a size"),
    ("MAX_BODY_BYTES", "-1", "expected a size"),
    ("MAX_BODY_BYTES", "99999999999999999999", "expected a size"),
    (
        "MAX_HEADER_BYTES",
        "1023",
        "expected a size from 1KiB to 1MiB",
    ),
    (
        "MAX_HEADER_BYTES",
        "2MiB",
        "expected a size from 1KiB to 1MiB",
    ),
    ("MAX_HEADER_BYTES", "lots", "expected a size"),
    ("DRAIN_DELAY", "2", "expected 0 or a duration"),
    ("DRAIN_DELAY", "25h", "expected 0 or a duration up to 24h"),
    ("DRAIN_DELAY", "-1s", "expected 0 or a duration"),
    ("SHUTDOWN_TIMEOUT", "0s", "expected a duration"),
    ("TERMINATION_GRACE_PERIOD", "30", "expected a duration"),
    ("QUEUE_TIMEOUT", "25h", "expected a duration"),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "collector:4318",
        "expected an http:// or https:// URL",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "grpc://collector:4317",
        "expected an http:// or https:// URL",
    ),
    ("OTEL_SERVICE_NAME", "bad\nname", "expected a name"),
    (
        "OTEL_TRACES_SAMPLER",
        "jaeger_remote",
        "expected one of always_on",
    ),
    (
        "OTEL_TRACES_SAMPLER",
        "sometimes",
        "parentbased_traceidratio",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "1.5",
        "expected a ratio from 0 to 1",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "-0.1",
        "expected a ratio from 0 to 1",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "NaN",
        "expected a ratio from 0 to 1",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "1%",
        "expected a ratio from 0 to 1",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "collector:4318/v1/traces",
        "expected an http:// or https:// URL",
    ),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "0", "expected milliseconds"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "61s", "1ms to 60s"),
    (
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "soon",
        "expected milliseconds",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "-5",
        "expected milliseconds",
    ),
    (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "grpc",
        "expected http/protobuf",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "http/json",
        "expected http/protobuf",
    ),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip", "expected none"),
    (
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "zstd",
        "expected none",
    ),
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment",
        "expected comma-separated key=value pairs",
    ),
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "team=%zz",
        "expected comma-separated key=value pairs",
    ),
    ("OTEL_SDK_DISABLED", "yes", "expected true or false"),
    ("OTEL_BSP_SCHEDULE_DELAY", "0", "expected milliseconds"),
    (
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "0",
        "expected a whole number from 1",
    ),
    (
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "0",
        "expected a whole number from 1",
    ),
    (
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "4096",
        "expected at most the queue size",
    ),
    ("OTEL_TRACES_EXPORTER", "console", "expected otlp, or none"),
    ("OTEL_TRACES_EXPORTER", "zipkin", "expected otlp, or none"),
    (
        "OTEL_PROPAGATORS",
        "tracecontext,baggage",
        "expected tracecontext",
    ),
    ("OTEL_PROPAGATORS", "b3", "expected tracecontext"),
    (
        "WEBHOOK_URL",
        "hooks.example.com",
        "expected an http:// or https:// URL",
    ),
    (
        "WEBHOOK_URL",
        "http://",
        "expected an http:// or https:// URL",
    ),
    ("CACHE_TTL", "60", "expected a duration"),
    ("CACHE_TTL", "0s", "expected a duration"),
    ("CACHE_TTL", "2d", "expected a duration"),
    ("CACHE_KEY_PREFIX", "a b", "expected 1 to 64 letters"),
    ("CACHE_KEY_PREFIX", "x{1}", "expected 1 to 64 letters"),
    (
        "CACHE_KEY_PREFIX",
        "0123456789012345678901234567890123456789012345678901234567890123456789",
        "expected 1 to 64 letters",
    ),
    (
        "OUTBOX_MAX_ATTEMPTS",
        "0",
        "expected a whole number from 1 to 1000",
    ),
    (
        "OUTBOX_MAX_ATTEMPTS",
        "1001",
        "expected a whole number from 1 to 1000",
    ),
    (
        "OUTBOX_MAX_ATTEMPTS",
        "ten",
        "expected a whole number from 1 to 1000",
    ),
    ("OUTBOX_RETENTION", "7", "expected an age from 1m to 365d"),
    ("OUTBOX_RETENTION", "0d", "expected an age from 1m to 365d"),
    (
        "OUTBOX_RETENTION",
        "366d",
        "expected an age from 1m to 365d",
    ),
    ("OUTBOX_RETENTION", "30s", "expected an age from 1m to 365d"),
    ("OUTBOX_RETENTION", "1w", "expected an age from 1m to 365d"),
    (
        "OUTBOX_BACKOFF",
        "0ms",
        "expected a duration from 1ms to 1h",
    ),
    ("OUTBOX_BACKOFF", "2h", "expected a duration from 1ms to 1h"),
    ("WEBHOOK_TIMEOUT", "5", "expected a duration"),
    ("WEBHOOK_TIMEOUT", "1.5s", "expected a duration"),
];

#[test]
fn every_variable_refuses_invalid_values_naming_variable_value_and_expectation() {
    for (var, value, expected) in INVALID {
        let errors = refused(&[], &[(var, value)]);
        assert_eq!(errors.len(), 1, "{var}={value:?}: {errors}");
        let error = &errors.errors()[0];
        let line = error.to_string();
        assert_eq!(error.variable_name(), Some(*var), "{line}");
        assert!(line.starts_with(&format!("{var}: ")), "{line}");
        assert!(
            line.contains(&format!("{value:?}")),
            "value missing: {line}"
        );
        assert!(line.contains(expected), "expectation missing: {line}");
        assert!(!line.contains('\n'), "one line per error: {line:?}");
    }
}

#[test]
fn secret_variables_are_refused_without_their_value() {
    let cases = [
        (
            "DATABASE_URL",
            "not a connection string",
            "expected postgres://",
        ),
        (
            "DATABASE_URL",
            "mysql://app:pw@db/users",
            "expected postgres://",
        ),
        ("DATABASE_URL", "postgres:///users", "expected postgres://"),
        (
            "DATABASE_URL",
            "host=db sslmode=sometimes",
            "expected postgres://",
        ),
        ("REDIS_URL", "cache:6379", "expected redis://"),
        ("REDIS_URL", "redis://:pw@cache:0", "expected redis://"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=s3cr3t\u{1}",
            "expected comma-separated name=value pairs",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "api key=s3cr3t",
            "expected comma-separated name=value pairs",
        ),
    ];
    for (var, value, expected) in cases {
        let errors = refused(&[], &[(var, value)]);
        assert_eq!(errors.len(), 1, "{var}: {errors}");
        let line = errors.errors()[0].to_string();
        assert!(
            line.starts_with(&format!("{var}: the value (hidden) ")),
            "{line}"
        );
        assert!(line.contains(expected), "{line}");
        assert!(!line.contains(value), "{line}");
    }
}

#[test]
fn the_example_messages() {
    let errors = refused(&[], &[("MAX_CONNECTIONS", "abc")]);
    assert_eq!(
        errors.to_string(),
        "MAX_CONNECTIONS: \"abc\" is not a valid integer; expected a whole number from 1 to 1000"
    );
    let errors = refused(&[], &[("DATABASE_URL", "nonsense")]);
    assert_eq!(
        errors.to_string(),
        "DATABASE_URL: the value (hidden) is not a valid PostgreSQL connection string; \
         expected postgres://user:password@host:port/db or key=value pairs such as \
         host=db user=app password=... dbname=users"
    );
}

#[test]
fn database_url_is_required() {
    let errors = run(&[], &[]).expect_err("no DATABASE_URL");
    assert_eq!(errors.len(), 1, "{errors}");
    assert!(
        errors.to_string().starts_with("DATABASE_URL: is required"),
        "{errors}"
    );
    // Empty = unset.
    let errors = run(&[], &[("DATABASE_URL", "")]).expect_err("empty DATABASE_URL");
    assert!(errors.to_string().contains("is required"), "{errors}");
}

#[test]
fn defaults() {
    let json = config(&[], &[]).redacted_json();
    let want = json!({
        "ADDR": "0.0.0.0:8080",
        "ADMIN_ADDR": "127.0.0.1:9090",
        "DATABASE_URL": "postgres://app:***@127.0.0.1:5432/users",
        "MAX_CONNECTIONS": 25,
        "DB_CONN_MAX_LIFETIME": "5m",
        "DB_ACQUIRE_TIMEOUT": "2s",
        "DB_STATEMENT_TIMEOUT": "5s",
        "MIGRATE_ON_START": true,
        "REDIS_URL": null,
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        "WORKERS": 25,
        "QUEUE_DEPTH": 100,
        "MAX_CONNS": 1024,
        "READ_TIMEOUT": "5s",
        "WRITE_TIMEOUT": "10s",
        "IDLE_TIMEOUT": "1m",
        "MAX_BODY_BYTES": "1MiB",
        "MAX_HEADER_BYTES": "16KiB",
        "DRAIN_DELAY": "2s",
        "SHUTDOWN_TIMEOUT": "25s",
        "TERMINATION_GRACE_PERIOD": "30s",
        "OTEL_EXPORTER_OTLP_ENDPOINT": null,
        "OTEL_SERVICE_NAME": "usersvc",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": 0.01,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": null,
        "OTEL_EXPORTER_OTLP_HEADERS": null,
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": null,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "10s",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": null,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
        "OTEL_RESOURCE_ATTRIBUTES": {},
        "OTEL_SDK_DISABLED": false,
        "OTEL_BSP_SCHEDULE_DELAY": "5s",
        "OTEL_BSP_MAX_QUEUE_SIZE": 2048,
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_PROPAGATORS": "tracecontext",
        "WEBHOOK_URL": null,
        "QUEUE_TIMEOUT": "1s",
        "CACHE_TTL": "1m",
        "CACHE_KEY_PREFIX": "usersvc",
        "OUTBOX_MAX_ATTEMPTS": 10,
        "OUTBOX_RETENTION": "7d",
        "OUTBOX_BACKOFF": "1s",
        "WEBHOOK_TIMEOUT": "5s",
        "MAX_BODY_BUFFER": "32MiB",
        "REUSE_PORT": false,
    });
    assert_eq!(json, want);

    let c = config(&[], &[]);
    assert_eq!(c.addr, sock("0.0.0.0:8080"));
    assert_eq!(c.admin_addr, Some(sock("127.0.0.1:9090")));
    assert_eq!(c.max_connections, 25);
    assert_eq!(c.db_conn_max_lifetime, secs(300));
    assert_eq!(c.db_acquire_timeout, secs(2));
    assert_eq!(c.db_statement_timeout, secs(5));
    assert!(c.redis_url.is_none());
    assert_eq!(c.log_level, log::LevelFilter::Info);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!((c.workers, c.queue_depth, c.max_conns), (25, 100, 1024));
    assert_eq!(
        (c.read_timeout, c.write_timeout, c.idle_timeout),
        (secs(5), secs(10), secs(60))
    );
    assert_eq!((c.max_body_bytes, c.max_header_bytes), (1 << 20, 16 << 10));
    assert_eq!(
        (
            c.drain_delay,
            c.shutdown_timeout,
            c.termination_grace_period
        ),
        (secs(2), secs(25), secs(30))
    );
    assert!(c.otel_endpoint.is_none());
    assert_eq!(c.otel_service_name, "usersvc");
    assert_eq!(c.otel_traces_sampler, OtelSampler::ParentBasedTraceIdRatio);
    assert_eq!(c.otel_traces_sampler_arg, 0.01);
    assert!(c.webhook_url.is_none());
    assert_eq!(c.otel_timeout, secs(10));
    assert!(c.otel_headers.is_empty() && c.otel_traces_headers.is_none());
    assert!(!c.otel_sdk_disabled);
    assert_eq!(
        (c.cache_ttl, c.cache_key_prefix.as_str()),
        (secs(60), "usersvc")
    );
    assert_eq!(c.outbox_max_attempts, 10);
    assert_eq!(c.outbox_retention, secs(7 * 86400));
    assert_eq!((c.outbox_backoff, c.webhook_timeout), (secs(1), secs(5)));
}

#[test]
fn webhook_timeout_fits_the_shutdown_budget() {
    const HOOK: (&str, &str) = ("WEBHOOK_URL", "http://hooks.example.com/users");
    config(&[], &[HOOK, ("WEBHOOK_TIMEOUT", "25s")]);
    config(
        &[],
        &[HOOK, ("WEBHOOK_TIMEOUT", "3s"), ("SHUTDOWN_TIMEOUT", "3s")],
    );
    // Without a webhook nothing is delivered: no constraint.
    config(
        &[],
        &[("WEBHOOK_TIMEOUT", "4s"), ("SHUTDOWN_TIMEOUT", "3s")],
    );
    let errors = refused(
        &[],
        &[HOOK, ("WEBHOOK_TIMEOUT", "4s"), ("SHUTDOWN_TIMEOUT", "3s")],
    );
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.errors()[0].variable_name(), Some("WEBHOOK_TIMEOUT"));
    let line = errors.to_string();
    assert!(
        line.contains("4s is longer than SHUTDOWN_TIMEOUT (3s)"),
        "{line}"
    );
    // Not checked on top of an invalid input.
    let errors = refused(
        &[],
        &[HOOK, ("WEBHOOK_TIMEOUT", "9s"), ("SHUTDOWN_TIMEOUT", "x")],
    );
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.errors()[0].variable_name(), Some("SHUTDOWN_TIMEOUT"));
}

#[test]
fn export_batch_follows_a_small_queue() {
    let c = config(&[], &[("OTEL_BSP_MAX_QUEUE_SIZE", "64")]);
    assert_eq!(c.otel_bsp_max_export_batch_size, 64);
    let c = config(
        &[],
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
        ],
    );
    assert_eq!(c.otel_bsp_max_export_batch_size, 64);
    // A bad queue size is reported once, not again as the batch's problem.
    let errors = refused(
        &[],
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100"),
        ],
    );
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn otlp_headers_are_never_printed() {
    let c = config(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr3t-value"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "authorization=Bearer%20tok3n",
            ),
        ],
    );
    let shown = format!("{} {c:?}", c.redacted_json());
    assert!(
        !shown.contains("s3cr3t-value") && !shown.contains("tok3n"),
        "{shown}"
    );
    assert_eq!(
        c.redacted_json()["OTEL_EXPORTER_OTLP_HEADERS"],
        "api-key=***"
    );
    assert_eq!(
        c.redacted_json()["OTEL_EXPORTER_OTLP_TRACES_HEADERS"],
        "authorization=***"
    );
}

#[test]
fn documented_defaults_are_the_real_ones() {
    // Setting a variable to the default `--help` shows changes nothing.
    let defaults = config(&[], &[]).redacted_json();
    for var in config::VARS.iter() {
        let derived = var.default.starts_with('(')
            || var.default.chars().any(|c| c == ' ')
            || var.default == "MAX_CONNECTIONS";
        if derived {
            continue;
        }
        let explicit = config(&[], &[(var.name, var.default)]).redacted_json();
        assert_eq!(explicit, defaults, "{} default {:?}", var.name, var.default);
    }
}

#[test]
fn empty_variables_count_as_unset() {
    let defaults = config(&[], &[]).redacted_json();
    for var in config::VARS.iter().filter(|v| v.name != "DATABASE_URL") {
        let with_empty = config(&[], &[(var.name, "")]).redacted_json();
        assert_eq!(with_empty, defaults, "{}", var.name);
    }
}

#[test]
fn derived_defaults() {
    let c = config(&[], &[("MAX_CONNECTIONS", "10")]);
    assert_eq!((c.workers, c.queue_depth), (10, 40));
    let c = config(&[], &[("MAX_CONNECTIONS", "1000")]);
    assert_eq!((c.workers, c.queue_depth), (1000, 4000));
    let c = config(&[], &[("MAX_CONNECTIONS", "10"), ("WORKERS", "3")]);
    assert_eq!((c.max_connections, c.workers, c.queue_depth), (10, 3, 12));
    let c = config(&[], &[("WORKERS", "3"), ("QUEUE_DEPTH", "5")]);
    assert_eq!((c.workers, c.queue_depth), (3, 5));
    let c = config(&["--max-connections", "7"], &[("MAX_CONNECTIONS", "10")]);
    assert_eq!((c.workers, c.queue_depth), (7, 28));
    let c = config(&["--workers=2"], &[("MAX_CONNECTIONS", "10")]);
    assert_eq!((c.workers, c.queue_depth), (2, 8));
}

/// For every flag: env value, flag value, what the flag value becomes.
const FLAG_CASES: &[(&str, &str, &str, &str, &str)] = &[
    ("ADDR", "--addr", ":1111", ":2222", "0.0.0.0:2222"),
    ("ADMIN_ADDR", "--admin-addr", ":1111", "off", "off"),
    (
        "DATABASE_URL",
        "--database-url",
        "postgres://a@env-db/x",
        "postgres://a@flag-db/x",
        "postgres://a@flag-db/x",
    ),
    ("MAX_CONNECTIONS", "--max-connections", "10", "20", "20"),
    (
        "REDIS_URL",
        "--redis-url",
        "redis://env-cache",
        "redis://flag-cache",
        "redis://flag-cache",
    ),
    ("LOG_LEVEL", "--log-level", "error", "debug", "debug"),
    ("LOG_FORMAT", "--log-format", "json", "text", "text"),
    ("WORKERS", "--workers", "3", "4", "4"),
];

#[test]
fn flags_override_the_environment_in_both_spellings() {
    // How `--print-config` shows the variable: strings unquoted.
    fn shown_of(config: &Config, var: &str) -> String {
        match &config.redacted_json()[var] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    for (var, flag, env_value, flag_value, shown) in FLAG_CASES {
        let env = [(*var, *env_value)];
        assert_ne!(
            shown_of(&config(&[], &env), var),
            *shown,
            "{var}: test values must differ"
        );
        let separate = config(&[flag, flag_value], &env);
        assert_eq!(shown_of(&separate, var), *shown, "{flag} {flag_value}");
        let joined = config(&[&format!("{flag}={flag_value}")], &env);
        assert_eq!(shown_of(&joined, var), *shown, "{flag}={flag_value}");
        // A flag needs no environment variable behind it.
        let alone = config(&[flag, flag_value], &[]);
        assert_eq!(shown_of(&alone, var), *shown, "{flag} alone");
    }
}

#[test]
fn every_flag_in_the_table_is_tested() {
    for var in config::VARS.iter().filter(|v| v.flag.is_some()) {
        assert!(
            FLAG_CASES.iter().any(|(name, ..)| *name == var.name),
            "{} has a flag without a precedence case",
            var.name
        );
    }
}

#[test]
fn the_last_flag_wins() {
    let c = config(&["--workers", "3", "--workers=5"], &[]);
    assert_eq!(c.workers, 5);
}

#[test]
fn a_bad_flag_value_names_the_variable_and_the_flag() {
    let errors = refused(&["--max-connections", "lots"], &[("MAX_CONNECTIONS", "10")]);
    assert_eq!(
        errors.to_string(),
        "MAX_CONNECTIONS (--max-connections): \"lots\" is not a valid integer; \
         expected a whole number from 1 to 1000"
    );
    // A good flag hides a bad environment value.
    let c = config(&["--max-connections", "9"], &[("MAX_CONNECTIONS", "lots")]);
    assert_eq!(c.max_connections, 9);
}

#[test]
fn every_error_is_reported_at_once() {
    let bad = [
        ("ADDR", "nope"),
        ("MAX_CONNECTIONS", "0"),
        ("DB_ACQUIRE_TIMEOUT", "2"),
        ("LOG_LEVEL", "loud"),
        ("WORKERS", "-3"),
        ("MAX_BODY_BYTES", "1.5MiB"),
        ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ("WEBHOOK_URL", "ftp://x"),
    ];
    let errors = run(&["--bogus", "--log-format=xml"], &bad).expect_err("all bad");
    // + DATABASE_URL missing, --bogus, --log-format.
    assert_eq!(errors.len(), bad.len() + 3, "{errors}");
    let text = errors.to_string();
    assert_eq!(text.lines().count(), errors.len());
    for (var, value) in bad {
        assert!(
            text.lines()
                .any(|l| l.starts_with(var) && l.contains(&format!("{value:?}"))),
            "{var} missing from:\n{text}"
        );
    }
    for needle in [
        "DATABASE_URL: is required",
        "--bogus: unknown flag",
        "LOG_FORMAT (--log-format): \"xml\"",
        // Each URL's example is its own, not the OTel collector's.
        "WEBHOOK_URL: \"ftp://x\" does not start with http:// or https://; expected an \
         http:// or https:// URL such as https://hooks.example.com/usersvc",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // Every variable wrong at once: one error each.
    let all_bad: Vec<(&str, &str)> = config::VARS
        .iter()
        .map(|v| {
            (
                v.name,
                if v.name == "ADMIN_ADDR" {
                    "nope"
                } else {
                    "\u{7f}bad"
                },
            )
        })
        .collect();
    let errors = run(&[], &all_bad).expect_err("all bad");
    assert_eq!(errors.len(), config::VARS.len(), "{errors}");
    for (error, var) in errors.errors().iter().zip(config::VARS.iter()) {
        assert_eq!(error.variable_name(), Some(var.name), "{error}");
    }
}

#[test]
fn shutdown_budget() {
    // 3s + 25s + 2s = 30s: just fits.
    config(&[], &[("DRAIN_DELAY", "3s")]);
    config(&[], &[("DRAIN_DELAY", "10s"), ("SHUTDOWN_TIMEOUT", "18s")]);
    config(
        &[],
        &[("DRAIN_DELAY", "10s"), ("TERMINATION_GRACE_PERIOD", "1m")],
    );

    let errors = refused(&[], &[("DRAIN_DELAY", "10s")]);
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(
        errors.errors()[0].variable_name(),
        Some("TERMINATION_GRACE_PERIOD")
    );
    let line = errors.to_string();
    for needle in [
        "TERMINATION_GRACE_PERIOD",
        "DRAIN_DELAY (10s)",
        "SHUTDOWN_TIMEOUT (25s)",
        "2s margin",
        "37s",
        "expected",
    ] {
        assert!(line.contains(needle), "{needle} missing: {line}");
    }
    let errors = refused(&[], &[("DRAIN_DELAY", "3001ms")]);
    assert!(errors.to_string().contains("at least 30s1ms"), "{errors}");

    // Not checked on top of an invalid input.
    let errors = refused(
        &[],
        &[("DRAIN_DELAY", "10"), ("TERMINATION_GRACE_PERIOD", "1s")],
    );
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.errors()[0].variable_name(), Some("DRAIN_DELAY"));
}

#[test]
fn help_and_version_need_no_configuration() {
    let broken = [("MAX_CONNECTIONS", "abc"), ("DATABASE_URL", "nonsense")];
    for args in [
        &["--help"][..],
        &["-h"],
        &["--version", "--help"],
        &["--bogus", "-h"],
        &["migrate", "-h"],
    ] {
        assert!(matches!(run(args, &broken), Ok(Command::Help)), "{args:?}");
        assert!(matches!(run(args, &[]), Ok(Command::Help)), "{args:?}");
    }
    for args in [&["--version"][..], &["-V"], &["--print-config", "-V"]] {
        assert!(
            matches!(run(args, &broken), Ok(Command::Version)),
            "{args:?}"
        );
    }
}

#[test]
fn help_lists_every_variable_with_flag_default_and_meaning() {
    let help = config::help_text();
    for var in config::VARS.iter() {
        let line = help
            .lines()
            .find(|l| {
                l.trim_start().starts_with(&format!("{} ", var.name))
                    || l.trim_start().starts_with(&format!("{},", var.name))
            })
            .unwrap_or_else(|| panic!("{} missing from help", var.name));
        if let Some(flag) = var.flag {
            assert!(line.contains(&format!("--{flag}")), "{line}");
        }
        assert!(line.contains(var.default), "{line}");
        assert!(help.contains(var.meaning), "{}", var.name);
    }
    for needle in [
        "migrate up",
        "migrate down [N]",
        "migrate status",
        "--print-config",
        "--version",
    ] {
        assert!(help.contains(needle), "{needle}");
    }
}

/// EXIT STATUS lists every status the binary exits with.
#[test]
fn help_lists_every_exit_status() {
    let help = config::help_text();
    let section = help
        .split_once("EXIT STATUS:")
        .map(|(_, rest)| rest)
        .expect("EXIT STATUS section");
    for status in ["0", "1", "2", "3", "130"] {
        assert!(
            section
                .lines()
                .any(|l| l.split_whitespace().next() == Some(status)),
            "exit status {status} missing from:{section}"
        );
    }
}

/// One format for every duration: the default `--help` shows is the value
/// `--print-config` prints when nothing is set.
#[test]
fn help_defaults_print_as_print_config_prints_them() {
    let Ok(Command::PrintConfig(c)) = run(
        &["--print-config"],
        &[("DATABASE_URL", "postgres://app@db/users")],
    ) else {
        panic!("--print-config");
    };
    let printed = c.redacted_json();
    let mut durations = 0;
    for var in config::VARS.iter() {
        if config::parse_duration(var.default).is_ok() {
            durations += 1;
            assert_eq!(printed[var.name], var.default, "{}", var.name);
        }
    }
    assert!(durations >= 8, "{durations} duration variables");
}

#[test]
fn version_names_version_and_commit() {
    let text = config::version_text();
    assert_eq!(
        text,
        format!(
            "usersvc {} (commit {})",
            usersvc::build_info::VERSION,
            usersvc::build_info::COMMIT
        )
    );
}

#[test]
fn print_config_and_migrate() {
    let env = [("DATABASE_URL", DB)];
    assert!(matches!(
        run(&["--print-config"], &env),
        Ok(Command::PrintConfig(_))
    ));
    let cases: &[(&[&str], MigrateCommand)] = &[
        (&["migrate", "up"], MigrateCommand::Up),
        (&["migrate", "status"], MigrateCommand::Status),
        (&["migrate", "down"], MigrateCommand::Down(1)),
        (&["migrate", "down", "3"], MigrateCommand::Down(3)),
        (
            &["--workers", "2", "migrate", "down", "2"],
            MigrateCommand::Down(2),
        ),
        (&["migrate", "up", "--log-level=debug"], MigrateCommand::Up),
    ];
    for (args, want) in cases {
        match run(args, &env) {
            Ok(Command::Migrate(_, got)) => assert_eq!(got, *want, "{args:?}"),
            other => panic!("{args:?}: {other:?}"),
        }
    }
    // Migrations validate the configuration like serving does.
    assert!(run(&["migrate", "up"], &[]).is_err());
}

#[test]
fn command_line_mistakes() {
    let env = [("DATABASE_URL", DB)];
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "--bogus: unknown flag"),
        (&["--bogus=1"], "--bogus: unknown flag"),
        (&["-x"], "-x: unknown flag"),
        (&["--addr"], "--addr: requires a value"),
        (&["--addr="], "--addr: value is empty"),
        (&["--print-config=yes"], "--print-config: takes no value"),
        (&["serve"], "unexpected argument \"serve\""),
        (&["migrate"], "migrate: expected up, down [N] or status"),
        (&["migrate", "sideways"], "unknown sub-command \"sideways\""),
        (&["migrate", "up", "now"], "unexpected argument \"now\""),
        (
            &["migrate", "down", "0"],
            "\"0\" is not a valid step count; expected a whole number of at least 1",
        ),
        (&["migrate", "down", "-1"], "-1: unknown flag"),
        (
            &["migrate", "down", "two"],
            "(value hidden) is not a valid step count",
        ),
        (
            &["migrate", "down", "99999999999"],
            "is not a valid step count",
        ),
        (&["migrate", "down", "1", "2"], "unexpected argument \"2\""),
        (
            &["migrate", "up", "--print-config"],
            "--print-config: cannot be combined with migrate",
        ),
    ];
    for (args, want) in cases {
        let errors = run(args, &env).expect_err("refused");
        assert_eq!(errors.len(), 1, "{args:?}: {errors}");
        assert!(errors.to_string().contains(want), "{args:?}: {errors}");
    }
}

#[test]
fn json_is_keyed_by_every_variable() {
    let json = config(&[], &[]).redacted_json();
    let Value::Object(map) = json else {
        panic!("not an object")
    };
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    let mut names: Vec<&str> = config::VARS.iter().map(|v| v.name).collect();
    names.sort_unstable();
    assert_eq!(keys, names);
}
