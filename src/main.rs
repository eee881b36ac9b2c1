//! The `usersvc` binary: reads the command line and environment, runs the
//! command, and maps its outcome to an exit code: 0 clean shutdown, 1 a
//! failure at run time, 2 an invalid configuration or command line, 3 a
//! forced shutdown (`SHUTDOWN_TIMEOUT` passed with work unfinished), 130 a
//! second signal (exited from the signal thread, see `lifecycle`).
//!
//! What a serving process is made of lives in `usersvc::app`.

use std::process::ExitCode;

use usersvc::app::{self, App, StartError};
use usersvc::config::{self, Command};
use usersvc::console::{print_stderr, print_stdout};
use usersvc::runtime::{self, ShutdownOutcome};

/// The static (musl) build: musl's malloc behind a small cache of freed
/// blocks (`usersvc::allocator`; BENCHMARKS.md, "Static binary", has what
/// each allocator measured). `--features mimalloc`: mimalloc instead, for
/// comparison.
#[cfg(all(target_env = "musl", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: usersvc::allocator::CachingAlloc = usersvc::allocator::CachingAlloc::new();
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for an invalid configuration or command line.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    usersvc::allocator::return_large_blocks();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let command = match config::parse(&args, &|key| std::env::var(key).ok()) {
        Ok(command) => command,
        Err(errors) => {
            print_stderr("usersvc: invalid configuration:");
            for error in errors.errors() {
                print_stderr(&format!("  {error}"));
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match command {
        Command::Help => print_stdout(&config::help_text()),
        Command::Version => print_stdout(&config::version_text()),
        Command::PrintConfig(config) => match serde_json::to_string_pretty(&config.redacted_json())
        {
            Ok(json) => print_stdout(&json),
            Err(e) => {
                print_stderr(&format!("usersvc: cannot print the configuration: {e}"));
                ExitCode::FAILURE
            }
        },
        Command::Serve(config) => serve(&config),
        Command::Migrate(config, command) => match app::migrate(&config, command) {
            Ok(report) => print_stdout(&report),
            Err(e) => {
                print_stderr(&format!("usersvc migrate: {e}"));
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config: &config::Config) -> ExitCode {
    let app = match App::build(config) {
        Ok(app) => app,
        Err(StartError::Logging(e)) => {
            print_stderr(&format!("usersvc: cannot start logging: {e}"));
            return ExitCode::FAILURE;
        }
        Err(e) => {
            log::error!(error = e.cause().to_string().as_str(); "{}", e.what());
            return ExitCode::FAILURE;
        }
    };
    match app.serve() {
        Ok(ShutdownOutcome::Clean) => ExitCode::SUCCESS,
        Ok(ShutdownOutcome::Forced) => ExitCode::from(runtime::EXIT_FORCED),
        Err(e) => {
            log::error!(error = e.to_string().as_str(); "usersvc failed");
            ExitCode::FAILURE
        }
    }
}
