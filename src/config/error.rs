//! Configuration errors, collected rather than returned one at a time.
//!
//! Why a list: an operator fixing a manifest should see every mistake in
//! one run, not one per deploy. Each error names the variable (and the flag,
//! when the value came from one), the value unless it is secret, and what
//! would have been accepted.

use std::fmt;

/// One refused input: a variable, a flag or a command-line argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    variable: Option<&'static str>,
    flag: Option<String>,
    message: String,
}

impl ConfigError {
    /// An error about a configuration variable; `flag` when the value came
    /// from its flag rather than the environment.
    pub fn variable(
        variable: &'static str,
        flag: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            variable: Some(variable),
            flag: flag.map(str::to_owned),
            message: message.into(),
        }
    }

    /// An error about the command line itself (an unknown flag, a missing
    /// value, a bad sub-command); `subject` is the flag or argument.
    pub fn argument(subject: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            variable: None,
            flag: Some(subject.into()),
            message: message.into(),
        }
    }

    /// The variable this error is about, if any (`MAX_CONNECTIONS`).
    pub fn variable_name(&self) -> Option<&'static str> {
        self.variable
    }

    /// What is wrong and what is expected, without the subject.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.variable, &self.flag) {
            (Some(var), Some(flag)) => write!(f, "{var} ({flag}): {}", self.message),
            (Some(var), None) => write!(f, "{var}: {}", self.message),
            (None, Some(subject)) => write!(f, "{subject}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one pass; never empty when returned as an `Err`.
/// `Display` writes one error per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub(crate) fn new(errors: Vec<ConfigError>) -> Self {
        ConfigErrors(errors)
    }

    /// The errors, in the order of the variables in `--help`.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false for a returned `ConfigErrors`; here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// How a refused value is quoted in a message: `Debug` quoting (escapes
/// control characters, so a value cannot forge extra log lines), cut at
/// 80 characters.
pub(crate) fn quote(value: &str) -> String {
    const LIMIT: usize = 80;
    match value.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_subject() {
        let cases = [
            (
                ConfigError::variable("WORKERS", None, "bad"),
                "WORKERS: bad",
            ),
            (
                ConfigError::variable("WORKERS", Some("--workers"), "bad"),
                "WORKERS (--workers): bad",
            ),
            (
                ConfigError::argument("--bogus", "unknown flag"),
                "--bogus: unknown flag",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
    }

    #[test]
    fn one_line_per_error() {
        let errors = ConfigErrors::new(vec![
            ConfigError::variable("A", None, "x"),
            ConfigError::variable("B", None, "y"),
        ]);
        assert_eq!(errors.to_string(), "A: x\nB: y");
        assert_eq!(errors.len(), 2);
        assert!(!errors.is_empty());
        assert_eq!(errors.errors()[1].variable_name(), Some("B"));
        assert_eq!(errors.errors()[1].message(), "y");
    }

    #[test]
    fn quoting_escapes_and_truncates() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(200);
        let quoted = quote(&long);
        assert!(quoted.len() < 100, "{quoted}");
        assert!(quoted.ends_with("\"..."));
    }
}
