//! The `usersvc` binary: wiring only.
//!
//! config → logging → (pool → migrations) → app → serve → drain. Every piece
//! lives in the library; this file decides which pieces, in which order, and
//! maps outcomes to exit codes: 0 clean shutdown, 1 a failure at run time,
//! 2 an invalid configuration or command line, 3 a forced shutdown
//! (`SHUTDOWN_TIMEOUT` passed with work unfinished), 130 a second signal.

use std::process::ExitCode;
use std::sync::Arc;

use usersvc::cache::{self, CachedUserRepository, RedisCheck, RedisPool, UserCache};
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
use usersvc::outbox::{Outbox, OutboxSettings, WakeOnWrite};
use usersvc::runtime::{self, Parts, RuntimeGauges, ServeSettings, ShutdownOutcome, StartupWork};
use usersvc::tracing::{self, TracingSettings};
use usersvc::users::idempotency::KEY_TTL;
use usersvc::users::{handlers, PgUserRepository, UserRepository, UserService};
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

    if let Some(settings) = TracingSettings::from_config(&config) {
        if let Err(e) = tracing::install(&settings) {
            log::error!(error = e.to_string().as_str(); "cannot start tracing");
            return ExitCode::FAILURE;
        }
    }

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
    let outbox = Arc::new(Outbox::new(outbox_settings(&config, &url), metrics.clone()));
    let (repo, redis_check) = match users_repository(&config, &pool, &metrics, &outbox) {
        Ok(wired) => wired,
        Err(e) => {
            log::error!(error = e.to_string().as_str(); "cannot set up the Redis cache");
            return ExitCode::FAILURE;
        }
    };
    let users = Arc::new(UserService::new(repo));
    let router = match handlers::routes(Router::new(), users).and_then(openapi::routes) {
        Ok(router) => router,
        Err(e) => {
            log::error!(error = e.to_string().as_str(); "invalid route table");
            return ExitCode::FAILURE;
        }
    };

    let state = ServiceState::new();
    let database_check = Arc::new(DatabaseCheck::new(Secret::new(url.clone())));
    let mut checks: Vec<Box<dyn DependencyCheck>> = vec![Box::new(Arc::clone(&database_check))];
    checks.extend(redis_check);
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
    let outbox_status = outbox.handle();
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
            background: Box::new(move || vec![outbox_status.status()]),
            log_level,
            hooks,
        }),
        startup: startup_work(
            url,
            config.migrate_on_start,
            pool.clone(),
            database_check,
            Arc::clone(&outbox),
            config.reuse_port,
        ),
        background: vec![Box::new(outbox)],
        commit_gate: pool.commit_gate(),
        // Step 6: the last spans are flushed first (for at most
        // SPAN_FLUSH_TIMEOUT, part of the grace-period budget), then the
        // pool is closed.
        resources: vec![
            Box::new(|| tracing::shutdown(config::SPAN_FLUSH_TIMEOUT)),
            Box::new(move || drop(pool)),
        ],
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
        Ok(ShutdownOutcome::Clean) => ExitCode::SUCCESS,
        Ok(ShutdownOutcome::Forced) => ExitCode::from(runtime::EXIT_FORCED),
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
    outbox: Arc<Outbox>,
    warm_pool: bool,
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
        if warm_pool {
            // REUSE_PORT: once ready, a shared port's new connections are
            // steered here at once; one pooled connection first, so that
            // they do not wait for a connect (a hand-over under load).
            pool.read(|_| Ok::<(), postgres::Error>(()))
                .map_err(|e| e.to_string())?;
        }
        database_check.check()?;
        // The outbox reads columns the migrations add: it starts after them.
        outbox
            .spawn()
            .map_err(|e| format!("cannot start the outbox worker: {e}"))
    })
}

/// The repository handlers use, and the `redis` readiness check if any.
type WiredUsers = (Arc<dyn UserRepository>, Option<Box<dyn DependencyCheck>>);

/// The users repository: PostgreSQL, the outbox's wake-up on every write,
/// and (with `REDIS_URL`) the read-through cache in front; plus the `redis`
/// readiness check when there is a cache.
fn users_repository(
    config: &Config,
    pool: &Pool,
    metrics: &Arc<Metrics>,
    outbox: &Outbox,
) -> Result<WiredUsers, redis::RedisError> {
    let outbox = outbox.handle();
    let repo: Arc<dyn UserRepository> = Arc::new(WakeOnWrite::new(
        Arc::new(PgUserRepository::new(pool.clone())),
        Arc::new(move || outbox.nudge()),
    ));
    let Some(redis_url) = &config.redis_url else {
        return Ok((repo, None));
    };
    let timeouts = cache::Timeouts::default();
    let max_size = u32::try_from(config.workers).unwrap_or(u32::MAX);
    let redis = RedisPool::new(redis_url, max_size, timeouts)?;
    let settings = cache::CacheSettings {
        ttl: config.cache_ttl,
        prefix: config.cache_key_prefix.clone(),
        breaker: cache::BreakerPolicy::default(),
    };
    let cache = Arc::new(UserCache::new(redis, settings, metrics.clone()));
    let check = RedisCheck::new(redis::Client::open(redis_url.expose_secret())?, timeouts);
    Ok((
        Arc::new(CachedUserRepository::new(repo, cache)),
        Some(Box::new(check)),
    ))
}

fn outbox_settings(config: &Config, url: &str) -> OutboxSettings {
    OutboxSettings {
        database_url: Secret::new(url.to_owned()),
        statement_timeout: config.db_statement_timeout,
        webhook_url: config.webhook_url.as_ref().map(|u| u.as_str().to_owned()),
        webhook_timeout: config.webhook_timeout,
        max_attempts: config.outbox_max_attempts,
        backoff: config.outbox_backoff,
        retention: config.outbox_retention,
        key_ttl: KEY_TTL,
        // `traceparent` (and `tracestate`) of the webhook call's client span
        // when tracing is on (`Webhook::post` runs in one).
        headers: Some(Arc::new(|| {
            tracing::propagation::current_traceparent().map(|v| ("traceparent", v))
        })),
    }
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
                "version: {version}\ndirty: {}\napplied: [{}]\npending: {:?}\nlatest: {}",
                s.dirty,
                s.applied.join(", "),
                s.pending,
                s.latest
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
