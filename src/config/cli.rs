//! The command line: flags that override environment variables, the
//! informational flags and the `migrate` sub-command.
//!
//! Why lexopt and a hand-written loop: the flags are exactly the table in
//! `vars.rs`, so one generic arm handles all of them, and errors must not
//! echo values (a mistyped `--databse-url=postgres://app:pw@...` must not
//! print the password), which rules out printing a parser's own error
//! text. Every problem is collected; `--help` and `--version` win over
//! any of them.

use std::collections::BTreeMap;
use std::ffi::OsString;

use lexopt::Arg;

use super::error::{quote, ConfigError};
use super::vars;

/// What the command line asks for, before the configuration is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Serve,
    PrintConfig,
    Help,
    Version,
    Migrate(MigrateCommand),
}

/// `usersvc migrate ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateCommand {
    /// Apply every pending migration.
    Up,
    /// Revert the last `n` applied migrations; `n >= 1`.
    Down(u32),
    /// Show applied and pending migrations.
    Status,
}

/// A value given by flag: which spelling was used, and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    pub flag: String,
    pub value: String,
}

/// Flag values by variable name (`MAX_CONNECTIONS`); the last one given
/// wins.
pub type FlagValues = BTreeMap<&'static str, FlagValue>;

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub action: Action,
    pub flags: FlagValues,
}

/// Parses the arguments after the program name. Returns what could be
/// understood together with every error, so that flag errors are reported
/// alongside environment errors.
pub fn parse_args(args: &[OsString]) -> (CommandLine, Vec<ConfigError>) {
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    let mut errors = Vec::new();
    let mut flags = FlagValues::new();
    let mut positionals = Vec::new();
    let (mut help, mut version, mut print_config) = (false, false, false);

    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => {
                errors.push(lexopt_error(&e));
                continue;
            }
        };
        match arg {
            Arg::Short('h') | Arg::Long("help") => help = true,
            Arg::Short('V') | Arg::Long("version") => version = true,
            Arg::Long("print-config") => print_config = true,
            Arg::Long(name) => {
                let spelled = format!("--{name}");
                match vars::by_flag(name) {
                    Some(var) => match flag_value(&mut parser, &spelled) {
                        Ok(value) => {
                            flags.insert(
                                var.name,
                                FlagValue {
                                    flag: spelled,
                                    value,
                                },
                            );
                        }
                        Err(e) => errors.push(e),
                    },
                    None => {
                        // Drop a `--name=value` value unseen: it may be a
                        // secret given to a mistyped flag.
                        let _ = parser.optional_value();
                        errors.push(ConfigError::argument(
                            spelled,
                            "unknown flag; see usersvc --help",
                        ));
                    }
                }
            }
            Arg::Short(c) => {
                let _ = parser.optional_value();
                errors.push(ConfigError::argument(
                    format!("-{c}"),
                    "unknown flag; see usersvc --help",
                ));
            }
            Arg::Value(value) => match value.into_string() {
                Ok(value) => positionals.push(value),
                Err(_) => errors.push(ConfigError::argument("argument", "is not valid UTF-8")),
            },
        }
    }

    let mut action = match sub_command(&positionals) {
        Ok(action) => action,
        Err(e) => {
            errors.push(e);
            Action::Serve
        }
    };
    if print_config {
        if let Action::Migrate(_) = action {
            errors.push(ConfigError::argument(
                "--print-config",
                "cannot be combined with migrate",
            ));
        }
        action = Action::PrintConfig;
    }
    if version {
        action = Action::Version;
    }
    if help {
        action = Action::Help;
    }
    (CommandLine { action, flags }, errors)
}

/// The value of a flag that takes one: `--flag value` or `--flag=value`.
fn flag_value(parser: &mut lexopt::Parser, flag: &str) -> Result<String, ConfigError> {
    let value = parser
        .value()
        .map_err(|_| ConfigError::argument(flag, "requires a value"))?;
    let value = value
        .into_string()
        .map_err(|_| ConfigError::argument(flag, "value is not valid UTF-8"))?;
    if value.is_empty() {
        return Err(ConfigError::argument(
            flag,
            "value is empty; leave the flag out to use the environment or the default",
        ));
    }
    Ok(value)
}

/// Turns a lexopt error into ours without its text, which can quote a
/// value.
fn lexopt_error(error: &lexopt::Error) -> ConfigError {
    match error {
        lexopt::Error::UnexpectedValue { option, .. } => {
            ConfigError::argument(option.clone(), "takes no value")
        }
        lexopt::Error::MissingValue {
            option: Some(option),
        } => ConfigError::argument(option.clone(), "requires a value"),
        _ => ConfigError::argument("arguments", "cannot be parsed; see usersvc --help"),
    }
}

/// No positional arguments = serve; `migrate up | down [N] | status`.
fn sub_command(positionals: &[String]) -> Result<Action, ConfigError> {
    const MIGRATE_USAGE: &str = "expected up, down [N] or status";
    let words: Vec<&str> = positionals.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] => Ok(Action::Serve),
        ["migrate"] => Err(ConfigError::argument("migrate", MIGRATE_USAGE)),
        ["migrate", "up"] => Ok(Action::Migrate(MigrateCommand::Up)),
        ["migrate", "status"] => Ok(Action::Migrate(MigrateCommand::Status)),
        ["migrate", "down"] => Ok(Action::Migrate(MigrateCommand::Down(1))),
        ["migrate", "down", n] => match n.parse::<u32>() {
            Ok(steps) if steps >= 1 => Ok(Action::Migrate(MigrateCommand::Down(steps))),
            _ => Err(ConfigError::argument(
                "migrate down",
                format!(
                    "{} is not a valid step count; expected a whole number of at least 1",
                    shown_number(n)
                ),
            )),
        },
        ["migrate", "up" | "status", extra, ..] | ["migrate", "down", _, extra, ..] => {
            Err(ConfigError::argument(
                "migrate",
                format!("unexpected argument {}; {MIGRATE_USAGE}", shown(extra)),
            ))
        }
        ["migrate", other, ..] => Err(ConfigError::argument(
            "migrate",
            format!("unknown sub-command {}; {MIGRATE_USAGE}", shown(other)),
        )),
        [other, ..] => Err(ConfigError::argument(
            "argument",
            format!(
                "unexpected argument {}; the only sub-command is migrate (see usersvc --help)",
                shown(other)
            ),
        )),
    }
}

/// A refused step count, quoted if it looks like a number at all.
fn shown_number(arg: &str) -> String {
    let numeric = arg.len() <= 24
        && arg
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.'));
    if numeric {
        quote(arg)
    } else {
        "(value hidden)".to_owned()
    }
}

/// An unexpected argument, quoted if it is a plain word; hidden otherwise,
/// since a misplaced connection string would otherwise be echoed.
fn shown(arg: &str) -> String {
    let plain = arg.len() <= 32
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        quote(arg)
    } else {
        "(value hidden)".to_owned()
    }
}
