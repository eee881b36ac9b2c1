//! Which records reach the formatter: `log::max_level()` is the one run-time switch, plus a cap on
//! other crates' chatter.
//!
//! Why our own `Log` wrapper around env_logger: env_logger's filter is fixed when it is built, but
//! the level must change at run time (`PUT /debug/log-level`). So env_logger is built to let
//! everything through, and this wrapper decides from `log::max_level()`, which [`super::set_level`]
//! changes atomically for all threads at once.
//!
//! Why cap dependencies at INFO unless the level is `trace`: at `debug`, an operator wants *our*
//! debug lines. Dependencies' debug output is noise at best and a leak at worst:
//! `tokio_postgres` logs every statement *with its parameters* (users' names and e-mails) at
//! `debug`. So records below INFO from targets outside this crate (`usersvc`, `usersvc::*`) pass
//! only at `trace`, which means "everything, from everyone" and is for local debugging only.
//! Use targets under `usersvc::` for custom targets that should follow the level.
//!
//! One target is never written below INFO, not even at `trace`: `tokio_postgres::query`, whose
//! debug lines are the statements' parameters. `trace` can be switched on at run time in
//! production, and users' data must not reach the logs through it.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// This crate's name: targets equal to it or under `usersvc::` are ours.
const OWN_CRATE: &str = env!("CARGO_CRATE_NAME");

/// Targets whose records below INFO carry users' data: never written below INFO.
const NEVER_BELOW_INFO: &[&str] = &["tokio_postgres::query"];

/// Whether a record at `level` from `target` is written when the switch is at `max`.
pub(crate) fn passes(level: Level, target: &str, max: LevelFilter) -> bool {
    level <= max
        && (level <= Level::Info
            || (max == LevelFilter::Trace && !NEVER_BELOW_INFO.contains(&target))
            || is_own(target))
}

fn is_own(target: &str) -> bool {
    match target.strip_prefix(OWN_CRATE) {
        Some(rest) => rest.is_empty() || rest.starts_with("::"),
        None => false,
    }
}

/// The installed logger: [`passes`], then env_logger's writer and our format.
pub(crate) struct Filtered {
    pub(crate) inner: env_logger::Logger,
}

impl Log for Filtered {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        passes(metadata.level(), metadata.target(), log::max_level())
            && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_targets() {
        assert!(is_own("usersvc"));
        assert!(is_own("usersvc::http::worker"));
        assert!(!is_own("usersvcx"));
        assert!(!is_own("tokio_postgres::query"));
    }

    #[test]
    fn dependencies_are_capped_at_info_below_trace() {
        use Level::*;
        let d = LevelFilter::Debug;
        assert!(passes(Debug, "usersvc::db", d));
        assert!(!passes(Trace, "usersvc::db", d));
        assert!(!passes(Debug, "tokio_postgres::query", d));
        assert!(passes(Info, "r2d2", d));
        assert!(passes(Warn, "r2d2", LevelFilter::Warn));
        assert!(!passes(Info, "usersvc", LevelFilter::Warn));
        assert!(passes(
            Debug,
            "tokio_postgres::connection",
            LevelFilter::Trace
        ));
        // The statements' parameters (users' names and e-mails): not even at trace.
        assert!(!passes(Debug, "tokio_postgres::query", LevelFilter::Trace));
        assert!(!passes(Trace, "tokio_postgres::query", LevelFilter::Trace));
        assert!(passes(Info, "tokio_postgres::query", LevelFilter::Trace));
        assert!(!passes(Error, "usersvc", LevelFilter::Off));
    }
}
