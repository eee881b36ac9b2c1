//! From flag values and an environment lookup to a typed, validated
//! [`Config`], or to every error at once.
//!
//! Why this shape: the environment is a closure and the flags a map, so
//! tests build both by hand and never touch the process environment. Each
//! variable is read once, in the order of the `--help` table; a bad value records an error and
//! the default stands in, so that reading carries on and later variables
//! are checked too. Checks across variables (the shutdown budget) run only
//! when their inputs were valid, so they never report a consequence of an
//! error already listed.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use super::cli::FlagValues;
use super::database_url::DatabaseUrl;
use super::defaults;
use super::error::{quote, ConfigError};
use super::http_url::{mask_userinfo, HttpUrl};
use super::listen_addr::{self, parse_listen_addr, parse_optional_listen_addr};
use super::log_options::{parse_log_level, LogFormat};
use super::otel::{
    parse_headers, parse_only, parse_otlp_timeout, parse_propagators, parse_ratio,
    parse_resource_attributes, parse_sdk_disabled, parse_traces_exporter, OtelSampler,
    OTLP_COMPRESSION, OTLP_PROTOCOL, PROPAGATOR,
};
use super::redis_url::RedisUrl;
use super::retention::parse_retention;
use super::size::{format_size, parse_size};
use super::{Config, SHUTDOWN_MARGIN};
use crate::duration_text::{format_duration, parse_duration, DurationError};

/// Bounds of the numeric variables.
pub(crate) const MAX_CONNECTIONS: RangeInclusive<u32> = 1..=1000;
pub(crate) const WORKERS: RangeInclusive<usize> = 1..=1024;
pub(crate) const QUEUE_DEPTH: RangeInclusive<usize> = 1..=65536;
pub(crate) const MAX_CONNS: RangeInclusive<usize> = 1..=65536;
pub(crate) const MAX_BODY_BYTES: RangeInclusive<u64> = 1..=(1 << 30);
/// `OUTBOX_MAX_ATTEMPTS`.
pub(crate) const OUTBOX_MAX_ATTEMPTS: RangeInclusive<u32> = 1..=1000;
/// `OUTBOX_BACKOFF`: at most an hour (it doubles from there).
pub(crate) const OUTBOX_BACKOFF: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(3600);
pub(crate) const MAX_HEADER_BYTES: RangeInclusive<u64> = (1 << 10)..=(1 << 20);
pub(crate) const OTEL_BSP_MAX_QUEUE_SIZE: RangeInclusive<usize> = 1..=65536;
pub(crate) const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: RangeInclusive<usize> = 1..=65536;
pub(crate) const MAX_BODY_BUFFER: RangeInclusive<u64> = 1..=(1 << 40);
/// Every duration: above zero (parsing refuses zero), at most a day, so
/// that `Instant + duration` can never overflow.
pub(crate) const DURATION: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(24 * 3600);

const ADDR_EXPECTED: &str = "host:port with an IP address or localhost, \
    such as :8080 (all IPv4 interfaces), 127.0.0.1:8080 or [::1]:8080";
const DATABASE_URL_EXPECTED: &str = "postgres://user:password@host:port/db \
    or key=value pairs such as host=db user=app password=... dbname=users";
const HTTP_URL_EXPECTED: &str = "an http:// or https:// URL such as http://collector:4318";
const WEBHOOK_URL_EXPECTED: &str =
    "an http:// or https:// URL such as https://hooks.example.com/usersvc";

/// How a refused value appears in its error message.
#[derive(Clone, Copy)]
enum Show {
    /// Quoted as given.
    Value,
    /// Quoted with any URL user-info replaced by `***`.
    MaskUserinfo,
    /// Not at all: `the value (hidden)`.
    Hidden,
}

/// The outcome of reading one variable.
enum Lookup<T> {
    Unset,
    Valid(T),
    Invalid,
}

impl<T> Lookup<T> {
    /// The value, or `default` when unset or invalid (the error is already
    /// recorded).
    fn or(self, default: T) -> T {
        match self {
            Lookup::Valid(value) => value,
            Lookup::Unset | Lookup::Invalid => default,
        }
    }

    fn optional(self) -> Option<T> {
        match self {
            Lookup::Valid(value) => Some(value),
            Lookup::Unset | Lookup::Invalid => None,
        }
    }
}

impl Lookup<String> {
    fn or_else_default(self, default: &str) -> String {
        self.optional().unwrap_or_else(|| default.to_owned())
    }
}

struct Resolver<'a> {
    flags: &'a FlagValues,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

/// Resolves every variable; see the module docs.
pub(crate) fn resolve(
    flags: &FlagValues,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut r = Resolver {
        flags,
        env,
        errors: Vec::new(),
    };
    let default_addr = SocketAddr::from(([0, 0, 0, 0], 8080));
    let default_admin = SocketAddr::from(([127, 0, 0, 1], 9090));

    let addr = r
        .read("ADDR", Show::Value, ADDR_EXPECTED, parse_listen_addr)
        .or(default_addr);
    let admin_addr = r
        .read(
            "ADMIN_ADDR",
            Show::Value,
            &format!("off, or {ADDR_EXPECTED}"),
            parse_optional_listen_addr,
        )
        .or(Some(default_admin));
    if let Some(admin) = admin_addr.filter(|admin| listen_addr::overlap(addr, *admin)) {
        // Blamed on ADMIN_ADDR when it was given, else on ADDR (which then took the
        // default admin port).
        let (name, other, other_addr) = match r.raw("ADMIN_ADDR") {
            Some(_) => ("ADMIN_ADDR", "ADDR", addr),
            None => ("ADDR", "ADMIN_ADDR", admin),
        };
        if let Some((value, flag)) = r.raw(name) {
            r.errors.push(ConfigError::variable(
                name,
                flag.as_deref(),
                format!(
                    "{} takes the same port as {other} ({other_addr}); expected another \
                     port for each listener, or ADMIN_ADDR=off",
                    quote(&value)
                ),
            ));
        }
    }
    let database_url = match r.read(
        "DATABASE_URL",
        Show::Hidden,
        DATABASE_URL_EXPECTED,
        DatabaseUrl::parse,
    ) {
        Lookup::Valid(url) => Some(url),
        Lookup::Invalid => None,
        Lookup::Unset => {
            r.missing("DATABASE_URL", DATABASE_URL_EXPECTED);
            None
        }
    };
    let max_connections = r
        .int("MAX_CONNECTIONS", MAX_CONNECTIONS)
        .or(defaults::MAX_CONNECTIONS);
    let db_conn_max_lifetime = r.duration("DB_CONN_MAX_LIFETIME", defaults::DB_CONN_MAX_LIFETIME);
    let db_acquire_timeout = r.duration("DB_ACQUIRE_TIMEOUT", defaults::DB_ACQUIRE_TIMEOUT);
    let db_statement_timeout = r.duration("DB_STATEMENT_TIMEOUT", defaults::DB_STATEMENT_TIMEOUT);
    let migrate_on_start = r
        .read("MIGRATE_ON_START", Show::Value, "true or false", |s| {
            parse_bool(s).ok_or("is not a boolean")
        })
        .or(true);
    let redis_url = r
        .read(
            "REDIS_URL",
            Show::Hidden,
            "redis://[user:password@]host[:port][/db] or rediss:// for TLS; empty turns the cache off",
            RedisUrl::parse,
        )
        .optional();
    let log_level = r
        .read(
            "LOG_LEVEL",
            Show::Value,
            "one of trace, debug, info, warn, error",
            |s| parse_log_level(s).ok_or("is not a log level"),
        )
        .or(log::LevelFilter::Info);
    let log_format = r
        .read("LOG_FORMAT", Show::Value, "json or text", |s| {
            s.parse::<LogFormat>().map_err(|_| "is not a log format")
        })
        .or(LogFormat::Json);
    let default_workers = usize::try_from(max_connections).unwrap_or(*WORKERS.end());
    let workers = r.int("WORKERS", WORKERS).or(default_workers);
    let queue_depth = r
        .int("QUEUE_DEPTH", QUEUE_DEPTH)
        .or(workers.saturating_mul(4));
    let max_conns = r.int("MAX_CONNS", MAX_CONNS).or(defaults::MAX_CONNS);
    let read_timeout = r.duration("READ_TIMEOUT", defaults::READ_TIMEOUT);
    let write_timeout = r.duration("WRITE_TIMEOUT", defaults::WRITE_TIMEOUT);
    let idle_timeout = r.duration("IDLE_TIMEOUT", defaults::IDLE_TIMEOUT);
    let max_body_bytes = r
        .size("MAX_BODY_BYTES", MAX_BODY_BYTES)
        .or(defaults::MAX_BODY_BYTES);
    let max_header_bytes = r
        .size("MAX_HEADER_BYTES", MAX_HEADER_BYTES)
        .or(defaults::MAX_HEADER_BYTES);
    let drain_delay = r.duration_or_zero("DRAIN_DELAY", defaults::DRAIN_DELAY);
    let shutdown_timeout = r.duration("SHUTDOWN_TIMEOUT", defaults::SHUTDOWN_TIMEOUT);
    let termination_grace_period = r.duration(
        "TERMINATION_GRACE_PERIOD",
        defaults::TERMINATION_GRACE_PERIOD,
    );
    r.check_shutdown_budget(drain_delay, shutdown_timeout, termination_grace_period);
    let otel_endpoint = r.http_url("OTEL_EXPORTER_OTLP_ENDPOINT");
    let otel_service_name = r
        .read(
            "OTEL_SERVICE_NAME",
            Show::Value,
            "a name of up to 255 characters without control characters",
            parse_service_name,
        )
        .or_else_default("usersvc");
    let otel_traces_sampler = r
        .read(
            "OTEL_TRACES_SAMPLER",
            Show::Value,
            "one of always_on, always_off, traceidratio, parentbased_always_on, \
             parentbased_always_off, parentbased_traceidratio",
            |s| OtelSampler::parse(s).ok_or("is not a supported sampler"),
        )
        .or(OtelSampler::ParentBasedTraceIdRatio);
    let otel_traces_sampler_arg = r
        .read(
            "OTEL_TRACES_SAMPLER_ARG",
            Show::Value,
            "a ratio from 0 to 1 such as 0.01",
            |s| parse_ratio(s).ok_or("is not a ratio from 0 to 1"),
        )
        .or(0.01);
    let otel_traces_endpoint = r.http_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let headers_expected = "comma-separated name=value pairs (values percent-encoded) \
        such as api-key=abc123,x-tenant=users";
    let otel_headers = r
        .read(
            "OTEL_EXPORTER_OTLP_HEADERS",
            Show::Hidden,
            headers_expected,
            parse_headers,
        )
        .or(Default::default());
    let otel_traces_headers = r
        .read(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            Show::Hidden,
            headers_expected,
            parse_headers,
        )
        .optional();
    let timeout_expected = "milliseconds such as 10000, or a duration such as 10s; 1ms to 60s";
    let otel_timeout = r
        .read(
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            Show::Value,
            timeout_expected,
            parse_otlp_timeout,
        )
        .or(Duration::from_secs(10));
    let otel_traces_timeout = r
        .read(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            Show::Value,
            timeout_expected,
            parse_otlp_timeout,
        )
        .optional();
    for name in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ] {
        r.read(name, Show::Value, OTLP_PROTOCOL, parse_only(OTLP_PROTOCOL));
    }
    for name in [
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    ] {
        r.read(
            name,
            Show::Value,
            OTLP_COMPRESSION,
            parse_only(OTLP_COMPRESSION),
        );
    }
    let otel_resource_attributes = r
        .read(
            "OTEL_RESOURCE_ATTRIBUTES",
            Show::Value,
            "comma-separated key=value pairs (values percent-encoded) \
             such as deployment.environment=prod",
            parse_resource_attributes,
        )
        .or(Vec::new());
    let otel_sdk_disabled = r
        .read(
            "OTEL_SDK_DISABLED",
            Show::Value,
            "true or false",
            parse_sdk_disabled,
        )
        .or(false);
    let otel_bsp_schedule_delay = r
        .read(
            "OTEL_BSP_SCHEDULE_DELAY",
            Show::Value,
            "milliseconds such as 5000, or a duration such as 5s; 1ms to 60s",
            parse_otlp_timeout,
        )
        .or(Duration::from_secs(5));
    let otel_bsp_max_queue_size = r
        .int("OTEL_BSP_MAX_QUEUE_SIZE", OTEL_BSP_MAX_QUEUE_SIZE)
        .or(2048);
    let otel_bsp_max_export_batch_size = r
        .int(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
        )
        .or(512.min(otel_bsp_max_queue_size));
    if otel_bsp_max_export_batch_size > otel_bsp_max_queue_size
        && !r.failed("OTEL_BSP_MAX_QUEUE_SIZE")
    {
        r.errors.push(ConfigError::variable(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            None,
            format!(
                "{} is more than OTEL_BSP_MAX_QUEUE_SIZE ({otel_bsp_max_queue_size}); \
                 expected at most the queue size",
                quote(&otel_bsp_max_export_batch_size.to_string()),
            ),
        ));
    }
    let otel_traces_exporter_otlp = r
        .read(
            "OTEL_TRACES_EXPORTER",
            Show::Value,
            "otlp, or none to turn tracing off",
            parse_traces_exporter,
        )
        .or(true);
    r.read(
        "OTEL_PROPAGATORS",
        Show::Value,
        PROPAGATOR,
        parse_propagators,
    );
    let webhook_url = r.http_url_as("WEBHOOK_URL", WEBHOOK_URL_EXPECTED);
    let queue_timeout = r.duration("QUEUE_TIMEOUT", defaults::QUEUE_TIMEOUT);
    let cache_ttl = r.duration("CACHE_TTL", defaults::CACHE_TTL);
    let cache_key_prefix = r
        .read(
            "CACHE_KEY_PREFIX",
            Show::Value,
            "1 to 64 letters, digits or . _ - :",
            parse_key_prefix,
        )
        .or_else_default("usersvc");
    let outbox_max_attempts = r
        .int("OUTBOX_MAX_ATTEMPTS", OUTBOX_MAX_ATTEMPTS)
        .or(defaults::OUTBOX_MAX_ATTEMPTS);
    let outbox_retention = r
        .read(
            "OUTBOX_RETENTION",
            Show::Value,
            "an age from 1m to 365d such as 7d, 36h or 90m",
            parse_retention,
        )
        .or(Duration::from_secs(7 * 24 * 3600));
    let outbox_backoff = r
        .read(
            "OUTBOX_BACKOFF",
            Show::Value,
            "a duration from 1ms to 1h such as 500ms or 1s",
            |s| match parse_duration(s) {
                Ok(d) if OUTBOX_BACKOFF.contains(&d) => Ok(d),
                Ok(_) => Err("is out of range".to_owned()),
                Err(e) => Err(e.to_string()),
            },
        )
        .or(Duration::from_secs(1));
    let webhook_timeout = r.duration("WEBHOOK_TIMEOUT", defaults::WEBHOOK_TIMEOUT);
    if webhook_url.is_some() {
        r.check_webhook_timeout(webhook_timeout, shutdown_timeout);
    }
    // Unset: 32MiB, or one largest body if MAX_BODY_BYTES is larger.
    let max_body_buffer = match r.size("MAX_BODY_BUFFER", MAX_BODY_BUFFER).optional() {
        Some(buffer) => {
            r.check_body_buffer(max_body_bytes, buffer);
            buffer
        }
        None => max_body_bytes.max(32 << 20),
    };
    let reuse_port = r
        .read("REUSE_PORT", Show::Value, "true or false", |s| {
            parse_bool(s).ok_or("is not a boolean")
        })
        .or(false);

    match database_url {
        Some(database_url) if r.errors.is_empty() => Ok(Config {
            addr,
            admin_addr,
            database_url,
            max_connections,
            db_conn_max_lifetime,
            db_acquire_timeout,
            db_statement_timeout,
            migrate_on_start,
            redis_url,
            log_level,
            log_format,
            workers,
            queue_depth,
            max_conns,
            read_timeout,
            write_timeout,
            idle_timeout,
            max_body_bytes,
            // Bounded by MAX_HEADER_BYTES (1MiB), so this cannot fail.
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(16 << 10),
            drain_delay,
            shutdown_timeout,
            queue_timeout,
            termination_grace_period,
            otel_endpoint,
            otel_service_name,
            otel_traces_sampler,
            otel_traces_sampler_arg,
            otel_traces_endpoint,
            otel_headers,
            otel_traces_headers,
            otel_timeout,
            otel_traces_timeout,
            otel_resource_attributes,
            otel_sdk_disabled,
            otel_bsp_schedule_delay,
            otel_bsp_max_queue_size,
            otel_bsp_max_export_batch_size,
            otel_traces_exporter_otlp,
            webhook_url,
            cache_ttl,
            cache_key_prefix,
            outbox_max_attempts,
            outbox_retention,
            outbox_backoff,
            webhook_timeout,
            max_body_buffer,
            reuse_port,
        }),
        _ => Err(r.errors),
    }
}

impl Resolver<'_> {
    /// The raw value: the flag's if given, else the environment's; an empty
    /// environment variable counts as unset.
    fn raw(&self, name: &'static str) -> Option<(String, Option<String>)> {
        if let Some(given) = self.flags.get(name) {
            return Some((given.value.clone(), Some(given.flag.clone())));
        }
        (self.env)(name)
            .filter(|value| !value.is_empty())
            .map(|value| (value, None))
    }

    /// Reads and parses one variable; a parse failure is recorded as
    /// `<value> <reason>; expected <expected>`.
    fn read<T, E: Display>(
        &mut self,
        name: &'static str,
        show: Show,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Lookup<T> {
        let Some((value, flag)) = self.raw(name) else {
            return Lookup::Unset;
        };
        match parse(&value) {
            Ok(parsed) => Lookup::Valid(parsed),
            Err(reason) => {
                let shown = match show {
                    Show::Value => quote(&value),
                    Show::MaskUserinfo => quote(&mask_userinfo(&value)),
                    Show::Hidden => "the value (hidden)".to_owned(),
                };
                self.errors.push(ConfigError::variable(
                    name,
                    flag.as_deref(),
                    format!("{shown} {reason}; expected {expected}"),
                ));
                Lookup::Invalid
            }
        }
    }

    fn missing(&mut self, name: &'static str, expected: &str) {
        self.errors.push(ConfigError::variable(
            name,
            None,
            format!("is required but not set; expected {expected}"),
        ));
    }

    /// A whole number within `range`.
    fn int<T>(&mut self, name: &'static str, range: RangeInclusive<T>) -> Lookup<T>
    where
        T: FromStr + PartialOrd + Display,
    {
        let expected = format!("a whole number from {} to {}", range.start(), range.end());
        self.read(name, Show::Value, &expected, |s| match s.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            Ok(_) => Err("is out of range"),
            Err(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                Err("is out of range")
            }
            Err(_) => Err("is not a valid integer"),
        })
    }

    /// A duration within [`DURATION`]; `default_secs` when unset or invalid.
    fn duration(&mut self, name: &'static str, default: Duration) -> Duration {
        let expected = format!(
            "a duration from {} to {} such as 500ms, 5s, 2m or 1h",
            format_duration(*DURATION.start()),
            format_duration(*DURATION.end()),
        );
        self.read(name, Show::Value, &expected, |s| match parse_duration(s) {
            Ok(d) if DURATION.contains(&d) => Ok(d),
            Ok(_) => Err("is out of range".to_owned()),
            Err(e) => Err(e.to_string()),
        })
        .or(default)
    }

    /// Like [`Self::duration`], but zero (`0`, `0s`, `0ms`) is allowed and
    /// means "none": a delay that may be switched off.
    fn duration_or_zero(&mut self, name: &'static str, default: Duration) -> Duration {
        let expected = format!(
            "0 or a duration up to {} such as 500ms, 5s, 2m or 1h",
            format_duration(*DURATION.end()),
        );
        self.read(name, Show::Value, &expected, |s| match parse_duration(s) {
            Ok(d) if d <= *DURATION.end() => Ok(d),
            Ok(_) => Err("is out of range".to_owned()),
            Err(DurationError::Zero) => Ok(Duration::ZERO),
            Err(_) if s == "0" => Ok(Duration::ZERO),
            Err(e) => Err(e.to_string()),
        })
        .or(default)
    }

    /// A byte size within `range`.
    fn size(&mut self, name: &'static str, range: RangeInclusive<u64>) -> Lookup<u64> {
        let expected = format!(
            "a size from {} to {} such as 1024, 16KiB, 1MiB or 1MB",
            format_size(*range.start()),
            format_size(*range.end()),
        );
        self.read(name, Show::Value, &expected, |s| match parse_size(s) {
            Ok(n) if range.contains(&n) => Ok(n),
            Ok(_) => Err("is out of range".to_owned()),
            Err(e) => Err(e.to_string()),
        })
    }

    /// An optional `http(s)://` URL; unset = off.
    fn http_url(&mut self, name: &'static str) -> Option<HttpUrl> {
        self.http_url_as(name, HTTP_URL_EXPECTED)
    }

    /// An http(s) URL whose error names `expected` (with its own example).
    fn http_url_as(&mut self, name: &'static str, expected: &str) -> Option<HttpUrl> {
        self.read(name, Show::MaskUserinfo, expected, HttpUrl::parse)
            .optional()
    }

    fn failed(&self, name: &str) -> bool {
        self.errors.iter().any(|e| e.variable_name() == Some(name))
    }

    /// The outbox worker's delivery in hand at shutdown runs inside the
    /// `SHUTDOWN_TIMEOUT` budget (it is asked to stop when the listeners
    /// stop accepting, and starts no attempt that could not end by the
    /// deadline): one attempt must fit in it. Checked only with a
    /// `WEBHOOK_URL` (without one nothing is delivered).
    fn check_webhook_timeout(&mut self, webhook: Duration, shutdown: Duration) {
        if self.failed("WEBHOOK_TIMEOUT") || self.failed("SHUTDOWN_TIMEOUT") {
            return;
        }
        if webhook > shutdown {
            self.errors.push(ConfigError::variable(
                "WEBHOOK_TIMEOUT",
                None,
                format!(
                    "{} is longer than SHUTDOWN_TIMEOUT ({}); expected at most SHUTDOWN_TIMEOUT, \
                     so that the delivery in hand at shutdown ends within the budget",
                    format_duration(webhook),
                    format_duration(shutdown),
                ),
            ));
        }
    }

    /// Kubernetes kills the pod `TERMINATION_GRACE_PERIOD` after SIGTERM; the
    /// drain, the in-flight budget and a margin for the rest of the
    /// shutdown must fit in it, or in-flight requests get cut.
    /// One body of `MAX_BODY_BYTES` must fit in `MAX_BODY_BUFFER`, else such a body could
    /// never be accepted.
    fn check_body_buffer(&mut self, max_body: u64, buffer: u64) {
        if self.failed("MAX_BODY_BYTES") || self.failed("MAX_BODY_BUFFER") {
            return;
        }
        if buffer < max_body {
            let (given, flag) = self
                .raw("MAX_BODY_BUFFER")
                .unwrap_or_else(|| (format_size(buffer), None));
            self.errors.push(ConfigError::variable(
                "MAX_BODY_BUFFER",
                flag.as_deref(),
                format!(
                    "{} is less than MAX_BODY_BYTES ({}); expected MAX_BODY_BUFFER of at \
                     least {}, or a smaller MAX_BODY_BYTES",
                    quote(&given),
                    format_size(max_body),
                    format_size(max_body),
                ),
            ));
        }
    }

    fn check_shutdown_budget(&mut self, drain: Duration, shutdown: Duration, grace: Duration) {
        let names = [
            "DRAIN_DELAY",
            "SHUTDOWN_TIMEOUT",
            "TERMINATION_GRACE_PERIOD",
        ];
        if names.iter().any(|name| self.failed(name)) {
            return;
        }
        let needed = drain
            .saturating_add(shutdown)
            .saturating_add(SHUTDOWN_MARGIN);
        if needed > grace {
            self.errors.push(ConfigError::variable(
                "TERMINATION_GRACE_PERIOD",
                None,
                format!(
                    "{} is less than DRAIN_DELAY ({}) + SHUTDOWN_TIMEOUT ({}) + {} margin = {}; \
                     expected TERMINATION_GRACE_PERIOD of at least {}, or a shorter \
                     DRAIN_DELAY or SHUTDOWN_TIMEOUT",
                    format_duration(grace),
                    format_duration(drain),
                    format_duration(shutdown),
                    format_duration(SHUTDOWN_MARGIN),
                    format_duration(needed),
                    format_duration(needed),
                ),
            ));
        }
    }
}

/// `CACHE_KEY_PREFIX`: short, and made of characters that need no quoting
/// in `redis-cli` and cannot collide with the key's own separators' meaning.
fn parse_key_prefix(text: &str) -> Result<String, &'static str> {
    if text.len() > 64 {
        Err("is too long")
    } else if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        Err("contains characters other than letters, digits and . _ - :")
    } else {
        Ok(text.to_owned())
    }
}

/// `OTEL_SERVICE_NAME`: non-empty (empty is unset), short, printable.
/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), any case.
fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_service_name(text: &str) -> Result<String, &'static str> {
    if text.chars().count() > 255 {
        Err("is too long")
    } else if text.chars().any(char::is_control) {
        Err("contains control characters")
    } else {
        Ok(text.to_owned())
    }
}
