//! The `usersvc` binary: wiring only.
//!
//! config → logging → (pool → migrations) → app → serve → drain. Every piece
//! lives in the library; this file decides which pieces, in which order, and
//! maps outcomes to exit codes: 0 clean shutdown, 1 a failure at run time,
//! 2 an invalid configuration or command line, 130 a second signal.

use std::process::ExitCode;
use std::sync::Arc;

use usersvc::config::{self, Command, Config};
use usersvc::health::Health;
use usersvc::http::admin::AdminParts;
use usersvc::http::dispatch::Dispatcher;
use usersvc::http::log_level::LogLevelControl;
use usersvc::http::pipeline::{Hooks, NoHooks};
use usersvc::http::router::Router;
use usersvc::lifecycle::ServiceState;
use usersvc::logging::{self, LogSettings};
use usersvc::runtime::{self, Parts, ServeSettings};
use usersvc::{build_info, metrics};

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
        Command::PrintConfig(config) => match serde_json::to_string_pretty(&config.redacted_json()) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("usersvc: cannot print the configuration: {e}");
                return ExitCode::FAILURE;
            }
        },
        Command::Serve(config) => return serve(config),
        Command::Migrate(_, _) => {
            eprintln!("usersvc: `migrate` is not available yet");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn serve(config: Config) -> ExitCode {
    let settings = LogSettings {
        level: config.log_level,
        format: config.log_format,
    };
    if let Err(e) = logging::init(settings) {
        eprintln!("usersvc: cannot start logging: {e}");
        return ExitCode::FAILURE;
    }
    logging::panic_hook::install();
    log::info!(
        version = build_info::VERSION,
        commit = build_info::COMMIT;
        "starting usersvc"
    );

    let state = ServiceState::new();
    let health = Arc::new(Health::new(Arc::clone(&state), Vec::new()));
    let hooks: Arc<dyn Hooks> = Arc::new(NoHooks);
    let dispatcher = Arc::new(Dispatcher {
        router: Router::new(),
        health: Arc::clone(&health),
        hooks: Arc::clone(&hooks),
        max_body_bytes: config.max_body_bytes,
    });
    let config_json = config.redacted_json();
    let log_level = LogLevelControl::new(config.log_level, Box::new(logging::set_level));
    let admin_health = Arc::clone(&health);
    let parts = Parts {
        settings: ServeSettings::from_config(&config),
        state,
        health,
        dispatcher,
        admin: Box::new(move |workers| AdminParts {
            health: admin_health,
            metrics: Box::new(metrics::render),
            config: config_json,
            workers,
            log_level,
            hooks,
        }),
        startup: Box::new(|| Ok(())),
        background: Vec::new(),
        resources: Vec::new(),
    };
    match runtime::run(parts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!(error = e.to_string().as_str(); "usersvc failed");
            ExitCode::FAILURE
        }
    }
}
