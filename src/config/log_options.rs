//! `LOG_LEVEL` and `LOG_FORMAT`: which log lines are written, and how.
//!
//! Why separate from `log::LevelFilter::from_str`: that also accepts `off`,
//! and a service whose logs can be switched off by a typo in a manifest is
//! not operable; the documented range is `trace` to `error`.

use std::fmt;
use std::str::FromStr;

/// The accepted `LOG_LEVEL` names, most verbose first (also those of
/// `PUT /debug/log-level?level=`).
pub const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors (the default).
    #[default]
    Json,
    /// One human-readable line per record, for a terminal.
    Text,
}

impl LogFormat {
    /// The name `LOG_FORMAT` uses: `json` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `LOG_FORMAT` is neither `json` nor `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLogFormat;

impl fmt::Display for InvalidLogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected `json` or `text`")
    }
}

impl std::error::Error for InvalidLogFormat {}

impl FromStr for LogFormat {
    type Err = InvalidLogFormat;

    /// Accepts `json` and `text`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else if s.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else {
            Err(InvalidLogFormat)
        }
    }
}

/// `trace`, `debug`, `info`, `warn` or `error`, any case; `off` is refused.
pub fn parse_log_level(text: &str) -> Option<log::LevelFilter> {
    if !LEVELS.iter().any(|level| level.eq_ignore_ascii_case(text)) {
        return None;
    }
    text.parse().ok()
}

/// The level as `LOG_LEVEL` spells it (`info`).
pub fn level_name(level: log::LevelFilter) -> String {
    level.as_str().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::LevelFilter;

    #[test]
    fn levels() {
        let cases = [
            ("trace", Some(LevelFilter::Trace)),
            ("debug", Some(LevelFilter::Debug)),
            ("info", Some(LevelFilter::Info)),
            ("INFO", Some(LevelFilter::Info)),
            ("Warn", Some(LevelFilter::Warn)),
            ("error", Some(LevelFilter::Error)),
            ("off", None),
            ("warning", None),
            ("", None),
            (" info", None),
        ];
        for (given, want) in cases {
            assert_eq!(parse_log_level(given), want, "{given:?}");
        }
        assert_eq!(level_name(LevelFilter::Warn), "warn");
    }

    #[test]
    fn formats() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("TEXT".parse(), Ok(LogFormat::Text));
        assert!("logfmt".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Text.to_string(), "text");
        assert_eq!(LogFormat::Json.as_str(), "json");
    }
}
