//! Configuration: environment variables, the flags that override them,
//! defaults, and validation of all of it at start-up.
//!
//! Why it is built this way: a service that starts with a bad value fails
//! later and further from the cause (a typo'd timeout, a pool of zero), so
//! every value is parsed into a type here and every mistake is reported at
//! once, with exit status 2. [`parse`] is pure — arguments in, an
//! environment-lookup closure in, a [`Command`] or [`ConfigErrors`] out — so
//! tests never touch the process environment. Secrets (the database
//! password, Redis credentials) are held in types whose `Debug`/`Display`
//! redact them; [`Config::redacted_json`] is the one printable view.
//!
//! Sub-modules, one concept each: value grammars (`size`, `listen_addr`,
//! `log_options`, `otel`; durations are `crate::duration_text`),
//! secret-bearing URLs (`secret`, `database_url` with its `connect_spec`,
//! `redis_url`, `http_url`), the variable table (`vars`) and its numeric
//! `defaults`, the command line (`cli`), resolution and validation
//! (`resolve`), output (`redacted`, `help`) and errors (`error`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

mod cli;
mod connect_spec;
mod database_url;
pub mod defaults;
mod error;
mod help;
mod http_url;
mod listen_addr;
mod log_options;
mod otel;
mod redacted;
mod redis_url;
mod resolve;
mod retention;
mod secret;
mod size;
mod vars;

pub use crate::duration_text::{format_duration, parse_duration, DurationError};
pub use cli::MigrateCommand;
pub use connect_spec::{ConnectSpec, ConnectSpecError, SslMode};
pub use database_url::{DatabaseUrl, DatabaseUrlError};
pub use error::{ConfigError, ConfigErrors};
pub use help::{help_text, version_text};
pub use http_url::{HttpUrl, HttpUrlError};
pub use listen_addr::{parse_listen_addr, ListenAddrError};
pub use log_options::{level_name, parse_log_level, LogFormat, LEVELS};
pub use otel::{OtelSampler, OtlpHeaders, OTLP_COMPRESSION, OTLP_PROTOCOL, PROPAGATOR};
pub use redis_url::{RedisUrl, RedisUrlError};
pub use retention::format_retention;
pub use secret::Secret;
pub use size::{format_size, parse_size, SizeError};
pub use vars::{Var, VARS};

/// Time the shutdown needs beyond `DRAIN_DELAY + SHUTDOWN_TIMEOUT` (joining
/// workers, flushing spans, closing the pool) before Kubernetes' SIGKILL.
/// It includes [`SPAN_FLUSH_TIMEOUT`].
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

/// The longest shutdown step 6 waits for the last spans to be exported,
/// whatever the collector does; part of [`SHUTDOWN_MARGIN`], so the
/// grace-period check covers it. Spans still unsent then are dropped and
/// counted.
pub const SPAN_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
const _: () = assert!(SPAN_FLUSH_TIMEOUT.as_millis() < SHUTDOWN_MARGIN.as_millis());

/// What the process was asked to do.
#[derive(Debug)]
pub enum Command {
    /// Serve the API (no sub-command).
    Serve(Config),
    /// `usersvc migrate up | down [N] | status`.
    Migrate(Config, MigrateCommand),
    /// `--print-config`: print [`Config::redacted_json`] and exit.
    PrintConfig(Config),
    /// `--help` / `-h`: print [`help_text`] and exit.
    Help,
    /// `--version` / `-V`: print [`version_text`] and exit.
    Version,
}

/// The effective, validated configuration. Field docs name the variable;
/// `usersvc --help` has the defaults and meanings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ADDR`: the public listener.
    pub addr: SocketAddr,
    /// `ADMIN_ADDR`: the admin listener; `None` when `off`.
    pub admin_addr: Option<SocketAddr>,
    /// `DATABASE_URL`.
    pub database_url: DatabaseUrl,
    /// `MAX_CONNECTIONS`: the DB pool size.
    pub max_connections: u32,
    /// `DB_CONN_MAX_LIFETIME`.
    pub db_conn_max_lifetime: Duration,
    /// `DB_ACQUIRE_TIMEOUT`.
    pub db_acquire_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT`.
    pub db_statement_timeout: Duration,
    /// `MIGRATE_ON_START`: apply pending migrations before becoming ready.
    pub migrate_on_start: bool,
    /// `REDIS_URL`; `None` = no cache.
    pub redis_url: Option<RedisUrl>,
    /// `LOG_LEVEL`: the start-up level (changeable at run time).
    pub log_level: log::LevelFilter,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `WORKERS`: defaults to `max_connections`.
    pub workers: usize,
    /// `QUEUE_DEPTH`: defaults to 4 × `workers`.
    pub queue_depth: usize,
    /// `MAX_CONNS`: open TCP connections per listener.
    pub max_conns: usize,
    /// `READ_TIMEOUT`.
    pub read_timeout: Duration,
    /// `WRITE_TIMEOUT`.
    pub write_timeout: Duration,
    /// `IDLE_TIMEOUT`.
    pub idle_timeout: Duration,
    /// `MAX_BODY_BYTES`.
    pub max_body_bytes: u64,
    /// `MAX_HEADER_BYTES`.
    pub max_header_bytes: usize,
    /// `DRAIN_DELAY`.
    pub drain_delay: Duration,
    /// `SHUTDOWN_TIMEOUT`.
    pub shutdown_timeout: Duration,
    /// `QUEUE_TIMEOUT`: a queued request older than this is answered 503
    /// (`Retry-After`) instead of run.
    pub queue_timeout: Duration,
    /// `TERMINATION_GRACE_PERIOD`; at least `drain_delay + shutdown_timeout
    /// + SHUTDOWN_MARGIN`.
    pub termination_grace_period: Duration,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; `None` = tracing off.
    pub otel_endpoint: Option<HttpUrl>,
    /// `OTEL_SERVICE_NAME`.
    pub otel_service_name: String,
    /// `OTEL_TRACES_SAMPLER`.
    pub otel_traces_sampler: OtelSampler,
    /// `OTEL_TRACES_SAMPLER_ARG`: 0 to 1.
    pub otel_traces_sampler_arg: f64,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: used as given (nothing appended);
    /// overrides `otel_endpoint`, and alone also turns tracing on.
    pub otel_traces_endpoint: Option<HttpUrl>,
    /// `OTEL_EXPORTER_OTLP_HEADERS`.
    pub otel_headers: OtlpHeaders,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`: replaces `otel_headers` when set.
    pub otel_traces_headers: Option<OtlpHeaders>,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`: one export attempt.
    pub otel_timeout: Duration,
    /// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`: replaces `otel_timeout` when set.
    pub otel_traces_timeout: Option<Duration>,
    /// `OTEL_RESOURCE_ATTRIBUTES`: extra resource attributes, in order.
    pub otel_resource_attributes: Vec<(String, String)>,
    /// `OTEL_SDK_DISABLED`: tracing off whatever the endpoint.
    pub otel_sdk_disabled: bool,
    /// `OTEL_BSP_SCHEDULE_DELAY`: how often queued spans are exported.
    pub otel_bsp_schedule_delay: Duration,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting for export at most.
    pub otel_bsp_max_queue_size: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans per export at most; at most
    /// `otel_bsp_max_queue_size`.
    pub otel_bsp_max_export_batch_size: usize,
    /// `OTEL_TRACES_EXPORTER`: `otlp` (true) or `none` (false: tracing off).
    pub otel_traces_exporter_otlp: bool,
    /// `WEBHOOK_URL`; `None` = events stay pending.
    pub webhook_url: Option<HttpUrl>,
    /// `CACHE_TTL`: lifetime of a cached user.
    pub cache_ttl: Duration,
    /// `CACHE_KEY_PREFIX`: the first part of every Redis key.
    pub cache_key_prefix: String,
    /// `OUTBOX_MAX_ATTEMPTS`: attempts before an event is parked as failed.
    pub outbox_max_attempts: u32,
    /// `OUTBOX_RETENTION`: delivered events older than this are purged.
    pub outbox_retention: Duration,
    /// `OUTBOX_BACKOFF`: the delay before the first retry.
    pub outbox_backoff: Duration,
    /// `WEBHOOK_TIMEOUT`: one delivery attempt, connect included.
    pub webhook_timeout: Duration,
    /// `MAX_BODY_BUFFER`: request body bytes held at once (both listeners); at least
    /// `max_body_bytes`.
    pub max_body_buffer: u64,
    /// `REUSE_PORT`: bind the listeners with `SO_REUSEPORT`.
    pub reuse_port: bool,
}

/// Parses the command line (`args`: the arguments after the program name)
/// and the environment (`env`: a lookup such as
/// `|k| std::env::var(k).ok()`) into what to do. `--help` and `--version`
/// need no configuration; everything else is validated in full, and every
/// error — of flags and of variables — is returned together.
pub fn parse(
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, ConfigErrors> {
    let (command_line, mut errors) = cli::parse_args(args);
    match command_line.action {
        cli::Action::Help => return Ok(Command::Help),
        cli::Action::Version => return Ok(Command::Version),
        _ => {}
    }
    let config = match resolve::resolve(&command_line.flags, env) {
        Ok(config) if errors.is_empty() => config,
        Ok(_) => return Err(ConfigErrors::new(errors)),
        Err(more) => {
            errors.extend(more);
            return Err(ConfigErrors::new(errors));
        }
    };
    Ok(match command_line.action {
        cli::Action::Migrate(migrate) => Command::Migrate(config, migrate),
        cli::Action::PrintConfig => Command::PrintConfig(config),
        cli::Action::Serve | cli::Action::Help | cli::Action::Version => Command::Serve(config),
    })
}
