//! Logging: JSON/text formatter on `log` + `env_logger`.
