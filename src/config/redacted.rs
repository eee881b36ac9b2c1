//! The printable view of a [`Config`]: `--print-config` and, later,
//! `GET /debug/config`.
//!
//! Why its own piece: it is the one place where the whole configuration is
//! turned into text, so it is where redaction is guaranteed. Keys are the
//! the variables' names and values are written the way an operator would
//! set them (`5s`, `1MiB`, `off`), so the output can be read against a
//! manifest line by line.

use serde_json::{json, Value};

use super::log_options::level_name;
use super::size::format_size;
use super::Config;
use crate::duration_text::format_duration;

impl Config {
    /// The effective configuration keyed by variable name, secrets
    /// redacted (`postgres://app:***@db/users`), unset optional
    /// dependencies as `null`.
    pub fn redacted_json(&self) -> Value {
        let max_header_bytes = u64::try_from(self.max_header_bytes).unwrap_or(u64::MAX);
        let mut json = json!({
            "ADDR": self.addr.to_string(),
            "ADMIN_ADDR": self
                .admin_addr
                .map_or_else(|| "off".to_owned(), |a| a.to_string()),
            "DATABASE_URL": self.database_url.redacted(),
            "MAX_CONNECTIONS": self.max_connections,
            "DB_CONN_MAX_LIFETIME": format_duration(self.db_conn_max_lifetime),
            "DB_ACQUIRE_TIMEOUT": format_duration(self.db_acquire_timeout),
            "DB_STATEMENT_TIMEOUT": format_duration(self.db_statement_timeout),
            "MIGRATE_ON_START": self.migrate_on_start,
            "REDIS_URL": self.redis_url.as_ref().map(|u| u.redacted()),
            "LOG_LEVEL": level_name(self.log_level),
            "LOG_FORMAT": self.log_format.as_str(),
            "WORKERS": self.workers,
            "QUEUE_DEPTH": self.queue_depth,
            "MAX_CONNS": self.max_conns,
            "READ_TIMEOUT": format_duration(self.read_timeout),
            "WRITE_TIMEOUT": format_duration(self.write_timeout),
            "IDLE_TIMEOUT": format_duration(self.idle_timeout),
            "MAX_BODY_BYTES": format_size(self.max_body_bytes),
            "MAX_HEADER_BYTES": format_size(max_header_bytes),
            "DRAIN_DELAY": format_duration(self.drain_delay),
            "SHUTDOWN_TIMEOUT": format_duration(self.shutdown_timeout),
            "QUEUE_TIMEOUT": format_duration(self.queue_timeout),
            "TERMINATION_GRACE_PERIOD": format_duration(self.termination_grace_period),
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otel_endpoint.as_ref().map(|u| u.redacted()),
            "OTEL_SERVICE_NAME": self.otel_service_name,
            "OTEL_TRACES_SAMPLER": self.otel_traces_sampler.as_str(),
            "OTEL_TRACES_SAMPLER_ARG": self.otel_traces_sampler_arg,
            "WEBHOOK_URL": self.webhook_url.as_ref().map(|u| u.redacted()),
            "CACHE_TTL": format_duration(self.cache_ttl),
            "CACHE_KEY_PREFIX": self.cache_key_prefix,
            "OUTBOX_MAX_ATTEMPTS": self.outbox_max_attempts,
            "OUTBOX_RETENTION": super::retention::format_retention(self.outbox_retention),
            "OUTBOX_BACKOFF": format_duration(self.outbox_backoff),
            "WEBHOOK_TIMEOUT": format_duration(self.webhook_timeout),
        });
        // The exporter's variables, in a second object: one `json!` of every
        // key exceeds the macro's recursion limit.
        let otlp = json!({
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
                self.otel_traces_endpoint.as_ref().map(|u| u.redacted()),
            "OTEL_EXPORTER_OTLP_HEADERS":
                (!self.otel_headers.is_empty()).then(|| self.otel_headers.redacted()),
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS":
                self.otel_traces_headers.as_ref().map(|h| h.redacted()),
            "OTEL_EXPORTER_OTLP_TIMEOUT": format_duration(self.otel_timeout),
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": self.otel_traces_timeout.map(format_duration),
            "OTEL_EXPORTER_OTLP_PROTOCOL": super::OTLP_PROTOCOL,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": super::OTLP_PROTOCOL,
            "OTEL_EXPORTER_OTLP_COMPRESSION": super::OTLP_COMPRESSION,
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": super::OTLP_COMPRESSION,
            "OTEL_RESOURCE_ATTRIBUTES": self
                .otel_resource_attributes
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect::<serde_json::Map<_, _>>(),
            "OTEL_SDK_DISABLED": self.otel_sdk_disabled,
            "OTEL_BSP_SCHEDULE_DELAY": format_duration(self.otel_bsp_schedule_delay),
            "OTEL_BSP_MAX_QUEUE_SIZE": self.otel_bsp_max_queue_size,
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": self.otel_bsp_max_export_batch_size,
            "OTEL_TRACES_EXPORTER": if self.otel_traces_exporter_otlp { "otlp" } else { "none" },
            "OTEL_PROPAGATORS": super::PROPAGATOR,
            "MAX_BODY_BUFFER": format_size(self.max_body_buffer),
            "REUSE_PORT": self.reuse_port,
        });
        if let (Value::Object(all), Value::Object(otlp)) = (&mut json, otlp) {
            all.extend(otlp);
        }
        json
    }
}
