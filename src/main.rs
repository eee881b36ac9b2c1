//! The `usersvc` binary: wiring only.
//!
//! For now: configuration. `--help`, `--version` and `--print-config` print
//! and exit 0; an invalid configuration lists every error on stderr and
//! exits 2. Serving and migrating are wired in by later issues.

use std::process::ExitCode;

use usersvc::config::{self, Command};

/// Exit status for an invalid configuration or command line.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let command = match config::parse(&args, &|key| std::env::var(key).ok()) {
        Ok(command) => command,
        Err(errors) => {
            eprintln!("usersvc: invalid configuration:");
            for error in errors.errors() {
                eprintln!("  {error}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match command {
        Command::Help => println!("{}", config::help_text()),
        Command::Version => println!("{}", config::version_text()),
        Command::PrintConfig(config) => {
            match serde_json::to_string_pretty(&config.redacted_json()) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    eprintln!("usersvc: cannot print the configuration: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Command::Serve(_) | Command::Migrate(_, _) => {}
    }
    ExitCode::SUCCESS
}
