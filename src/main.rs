//! The `usersvc` binary: wiring only.
//!
//! config → logging → (pool → migrations) → app → serve → drain. Every piece
//! lives in the library; this file decides which pieces, in which order, and
//! maps outcomes to exit codes: 0 clean shutdown, 1 a failure at run time,
//! 2 an invalid configuration or command line, 130 a second signal.

use std::process::ExitCode;
use std::sync::Arc;

use usersvc::config::{self, Command, Config, MigrateCommand, Secret};
use usersvc::database_check::{self, DatabaseCheck};
use usersvc::db::PoolObserver;
use usersvc::db::{self, migrate, Pool, PoolSettings};
use usersvc::health::{DependencyCheck, Health};
use usersvc::http::admin::AdminParts;
use usersvc::http::dispatch::Dispatcher;
use usersvc::http::log_level::LogLevelControl;
use usersvc::http::pipeline::Hooks;
use usersvc::http::router::Router;
use usersvc::lifecycle::ServiceState;
use usersvc::logging::{self, LogSettings};
use usersvc::metrics::Metrics;
use usersvc::runtime::{self, Parts, RuntimeGauges, ServeSettings, StartupWork};
use usersvc::users::{handlers, PgUserRepository, UserService};
use usersvc::{build_info, openapi};

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
        Command::Serve(config) => serve(config),
        Command::Migrate(config, command) => migrate(&config, command),
    }
}

/// A message for the operator on stderr. Unlike `eprintln!`, a stderr
/// whose reader has gone is not a panic (exit 101): there is nobody left to
/// tell, and the exit code still says what happened.
fn print_stderr(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// A command's output on stdout. Unlike `println!`, a reader that has gone
/// away (`usersvc --help | head -1`) is not a panic: the output is simply
/// not wanted any more.
fn print_stdout(text: &str) -> ExitCode {
    use std::io::{ErrorKind, Write};
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            print_stderr(&format!("usersvc: cannot write to stdout: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    let settings = LogSettings {
        level: config.log_level,
        format: config.log_format,
    };
    if let Err(e) = logging::init(settings) {
        print_stderr(&format!("usersvc: cannot start logging: {e}"));
        return ExitCode::FAILURE;
    }
    logging::panic_hook::install();
    log::info!(
        version = build_info::VERSION,
        commit = build_info::COMMIT;
        "starting usersvc"
    );

    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => {
            log::error!(error = e.to_string().as_str(); "cannot register metrics");
            return ExitCode::FAILURE;
        }
    };
    let url = config.database_url.expose_secret().to_owned();
    let observer: Arc<dyn PoolObserver> = metrics.clone();
    let pool = match Pool::prepare(&url, &pool_settings(&config), observer) {
        Ok(pool) => pool,
        Err(e) => {
            log::error!(error = e.to_string().as_str(); "cannot build the database pool");
            return ExitCode::FAILURE;
        }
    };
    let users = Arc::new(UserService::new(Arc::new(PgUserRepository::new(
        pool.clone(),
    ))));
    let router = match handlers::routes(Router::new(), users).and_then(openapi::routes) {
        Ok(router) => router,
        Err(e) => {
            log::error!(error = e.to_string().as_str(); "invalid route table");
            return ExitCode::FAILURE;
        }
    };

    let state = ServiceState::new();
    let database_check = Arc::new(DatabaseCheck::new(Secret::new(url.clone())));
    let checks: Vec<Box<dyn DependencyCheck>> = vec![Box::new(Arc::clone(&database_check))];
    let health = Arc::new(Health::new(Arc::clone(&state), checks));
    let hooks: Arc<dyn Hooks> = metrics.clone();
    let dispatcher = Arc::new(Dispatcher {
        router,
        health: Arc::clone(&health),
        hooks: Arc::clone(&hooks),
        max_body_bytes: config.max_body_bytes,
    });
    let config_json = config.redacted_json();
    let log_level = LogLevelControl::new(config.log_level, Box::new(logging::set_level));
    let admin_health = Arc::clone(&health);
    let scrape_metrics = Arc::clone(&metrics);
    let gauge_state = Arc::clone(&state);
    let gauge_pool = pool.clone();
    let parts = Parts {
        settings: ServeSettings::from_config(&config),
        state,
        health,
        dispatcher,
        admin: Box::new(move |workers| AdminParts {
            health: admin_health,
            metrics: Box::new(move || scrape_metrics.render()),
            config: config_json,
            workers,
            log_level,
            hooks,
        }),
        startup: startup_work(url, config.migrate_on_start, pool.clone(), database_check),
        background: Vec::new(),
        resources: vec![Box::new(move || drop(pool))],
        gauges: Box::new(move |g: RuntimeGauges| {
            metrics.on_scrape(move |m| {
                m.set_state(gauge_state.get());
                let pool = gauge_pool.state();
                m.pool_connections
                    .with_label_values(&["idle"])
                    .set(i64::from(pool.idle));
                m.pool_connections
                    .with_label_values(&["in_use"])
                    .set(i64::from(pool.in_use()));
                m.queue_depth.set(count(g.queue_len.as_ref()()));
                m.connections_open
                    .with_label_values(&["public"])
                    .set(count(g.public.open_connections()));
                if let Some(admin) = &g.admin {
                    m.connections_open
                        .with_label_values(&["admin"])
                        .set(count(admin.open_connections()));
                }
            });
        }),
    };
    match runtime::run(parts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!(error = e.to_string().as_str(); "usersvc failed");
            ExitCode::FAILURE
        }
    }
}

fn pool_settings(config: &Config) -> PoolSettings {
    PoolSettings {
        max_connections: config.max_connections,
        conn_max_lifetime: config.db_conn_max_lifetime,
        acquire_timeout: config.db_acquire_timeout,
        statement_timeout: config.db_statement_timeout,
    }
}

/// Before the service is ready: migrations (unless `MIGRATE_ON_START` is
/// off) on the connection the readiness check then keeps, then the pool is
/// opened, then the readiness check's ping. Retried by the runtime until it
/// works.
///
/// Start-up waits for one connect. The pool's min-idle fill starts only
/// after the migrations (nothing competes with them) and runs in the
/// background: ready means what `/readyz` checks from then on (the database
/// answers, the schema is current), and a request that arrives before the
/// first pooled connection waits for it within `DB_ACQUIRE_TIMEOUT`.
fn startup_work(
    url: String,
    migrate_on_start: bool,
    pool: Pool,
    database_check: Arc<DatabaseCheck>,
) -> StartupWork {
    let mut migrated = !migrate_on_start;
    Box::new(move || {
        if !migrated {
            let mut client =
                db::connect_as(&url, CONNECT_TIMEOUT, database_check::APPLICATION_NAME)
                    .map_err(|e| e.to_string())?;
            let applied = migrate::up(&mut client).map_err(|e| e.to_string())?;
            log::info!(applied = applied.len(); "migrations applied");
            migrated = true;
            database_check.adopt(client);
        }
        pool.open();
        database_check.check()
    })
}

/// Time allowed to open the migration connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `usersvc migrate up | down [N] | status`: prints what it did, exits 0 on
/// success and 1 on failure.
fn migrate(config: &Config, command: MigrateCommand) -> ExitCode {
    let mut client = match db::connect(config.database_url.expose_secret(), CONNECT_TIMEOUT) {
        Ok(client) => client,
        Err(e) => {
            print_stderr(&format!("usersvc migrate: cannot connect: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let outcome = match command {
        MigrateCommand::Up => migrate::up(&mut client).map(|v| format!("applied: {v:?}")),
        MigrateCommand::Down(n) => {
            migrate::down(&mut client, n as usize).map(|v| format!("rolled back: {v:?}"))
        }
        MigrateCommand::Status => migrate::status(&mut client).map(|s| {
            let version = s
                .version
                .map_or_else(|| "none".to_owned(), |v| v.to_string());
            format!(
                "version: {version}\ndirty: {}\npending: {:?}\nlatest: {}",
                s.dirty, s.pending, s.latest
            )
        }),
    };
    match outcome {
        Ok(text) => print_stdout(&text),
        Err(e) => {
            print_stderr(&format!("usersvc migrate: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// A count as a gauge value.
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
