//! `Secret<T>`: a value that must never reach a log line, an error message,
//! `--print-config` or a metric.
//!
//! Why a wrapper rather than discipline: `{:?}` on a config struct, a stray
//! `log::info!("{config:?}")` or a derived `Debug` on a type holding a
//! password leaks it silently. Wrapping the value makes every accidental
//! formatting print `[REDACTED]`; reading it takes an explicit
//! [`Secret::expose_secret`] call that stands out in review and in `grep`.
//! There is deliberately no `Serialize`, `Display` of the inner value or
//! `Deref`.

use std::fmt;

/// What every formatting of a [`Secret`] prints.
pub const REDACTED: &str = "[REDACTED]";

/// A value that formats as `[REDACTED]`; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The wrapped value. Every call site is a place where the secret
    /// leaves its wrapper: hand it straight to the consumer (the database
    /// driver, the Redis client), never to a formatter.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "[REDACTED]");
        assert_eq!(format!("{secret}"), "[REDACTED]");
        assert_eq!(format!("{secret:#?}"), "[REDACTED]");
    }

    #[test]
    fn redacted_inside_a_derived_debug() {
        #[derive(Debug)]
        #[allow(dead_code)] // only formatted
        struct Holder {
            password: Secret<String>,
        }
        let holder = Holder {
            password: Secret::from("hunter2".to_owned()),
        };
        let printed = format!("{holder:?} {holder:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("[REDACTED]"));
    }

    #[test]
    fn expose_secret_gives_the_value() {
        let secret = Secret::new(42_u32);
        assert_eq!(*secret.expose_secret(), 42);
        assert_eq!(secret.clone(), Secret::new(42));
    }
}
