//! The composition root: which components a serving process has, built in
//! one place, in dependency order, each owned by one field.
//!
//! Why a typed root rather than wiring in `main`: the next components
//! (tracing exporters, caches, workers) are added as a field here and a
//! typed part handed to the runtime, not as another closure; and each
//! component's close or join is a named call, not a `drop` somewhere.
//!
//! [`App::build`] turns a [`Config`] into components (nothing listens yet);
//! [`App::serve`] hands them to [`runtime`](crate::runtime), which binds,
//! runs the start-up work ([`Startup`]) and drains. The one-shot
//! `usersvc migrate …` command is [`migrate`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::cache::{self, CachedUserRepository, RedisCheck, RedisPool, UserCache};
use crate::config::{self, Config, ConnectSpec, MigrateCommand, Secret};
use crate::db::{self, migrate, DbError, DbPool, DbPoolObserver, DbPoolSettings};
use crate::health::database::{self as database_check, DatabaseCheck};
use crate::health::{CheckError, DependencyCheck, Health};
use crate::http::admin::{AdminParts, BackgroundStatus, Exposition};
use crate::http::dispatch::ApiDispatcher;
use crate::http::pipeline::Hooks;
use crate::http::response::ApiResponse;
use crate::http::router::{RouteError, Router};
use crate::lifecycle::ServiceState;
use crate::logging::level::{GlobalLevel, LogLevelControl};
use crate::logging::{self, LogSettings};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, OutboxHandle, OutboxSettings, WakeOnWrite};
use crate::runtime::{
    self, Parts, Resource, RuntimeGauges, RuntimeObserver, ServeSettings, ShutdownOutcome,
    StartupWork,
};
use crate::tracing::{self, TracingError, TracingSettings};
use crate::users::idempotency::KEY_TTL;
use crate::users::{handlers, PgUserRepository, UserRepository, UserService};
use crate::{build_info, openapi};

/// Time allowed to open the migration connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the service could not be built. Logging's failure is told on stderr
/// (there is no logger); every other one is logged.
#[derive(Debug)]
pub enum StartError {
    Logging(log::SetLoggerError),
    Tracing(TracingError),
    Metrics(prometheus::Error),
    DatabasePool(DbError),
    Cache(redis::RedisError),
    Routes(RouteError),
}

impl StartError {
    /// What could not be started, as the log line's message.
    pub fn what(&self) -> &'static str {
        match self {
            StartError::Logging(_) => "cannot start logging",
            StartError::Tracing(_) => "cannot start tracing",
            StartError::Metrics(_) => "cannot register metrics",
            StartError::DatabasePool(_) => "cannot build the database pool",
            StartError::Cache(_) => "cannot set up the Redis cache",
            StartError::Routes(_) => "invalid route table",
        }
    }

    /// The underlying error, for the log line's `error` field.
    pub fn cause(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            StartError::Logging(e) => e,
            StartError::Tracing(e) => e,
            StartError::Metrics(e) => e,
            StartError::DatabasePool(e) => e,
            StartError::Cache(e) => e,
            StartError::Routes(e) => e,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what(), self.cause())
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause())
    }
}

/// A built service: every component, nothing listening yet.
pub struct App {
    settings: ServeSettings,
    state: Arc<ServiceState>,
    metrics: Arc<Metrics>,
    /// The database pool (closed at shutdown step 6).
    db: DbPool,
    /// The outbox worker (spawned by start-up work, joined at step 5).
    outbox: Arc<Outbox>,
    health: Arc<Health>,
    dispatcher: Arc<ApiDispatcher>,
    /// `GET /debug/config`.
    config_json: Value,
    log_level: LogLevelControl,
    /// Whether tracing was installed (its spans are flushed at step 6).
    tracing: bool,
    startup: Startup,
}

impl App {
    /// Starts logging (and tracing, when configured) and builds every
    /// component in dependency order. Nothing connects or listens yet.
    pub fn build(config: &Config) -> Result<App, StartError> {
        logging::init(LogSettings {
            level: config.log_level,
            format: config.log_format,
        })
        .map_err(StartError::Logging)?;
        logging::panic_hook::install();
        log::info!(
            version = build_info::VERSION,
            commit = build_info::COMMIT;
            "starting usersvc"
        );
        let tracing = match TracingSettings::from_config(config) {
            Some(settings) => tracing::install(&settings)
                .map(|_| true)
                .map_err(StartError::Tracing)?,
            None => false,
        };

        let metrics = Arc::new(Metrics::new().map_err(StartError::Metrics)?);
        let spec = config.database_url.connect_spec();
        let observer: Arc<dyn DbPoolObserver> = metrics.clone();
        let db = DbPool::prepare_with(spec, &pool_settings(config), observer)
            .map_err(StartError::DatabasePool)?;
        let outbox = Arc::new(Outbox::new(outbox_settings(config), metrics.clone()));
        let (repo, redis_check) =
            users_repository(config, &db, &metrics, &outbox).map_err(StartError::Cache)?;
        let users = Arc::new(UserService::new(repo));
        let router = handlers::routes(Router::new(), users)
            .and_then(openapi::routes)
            .map_err(StartError::Routes)?;

        let state = ServiceState::new();
        let database_check = Arc::new(DatabaseCheck::new(spec.clone()));
        let mut checks: Vec<Box<dyn DependencyCheck>> = vec![Box::new(Arc::clone(&database_check))];
        checks.extend(redis_check);
        let health = Arc::new(Health::new(Arc::clone(&state), checks, metrics.clone()));
        let dispatcher = Arc::new(ApiDispatcher {
            router,
            health: Arc::clone(&health),
            hooks: metrics.clone(),
            max_body_bytes: config.max_body_bytes,
            unstarted_dropped: Default::default(),
        });
        let startup = Startup {
            spec: spec.clone(),
            migrated: !config.migrate_on_start,
            warm_pool: config.reuse_port,
            db: db.clone(),
            database_check,
            outbox: Arc::clone(&outbox),
        };
        Ok(App {
            settings: ServeSettings::from_config(config),
            state,
            metrics,
            db,
            outbox,
            health,
            dispatcher,
            config_json: config.redacted_json(),
            log_level: LogLevelControl::new(config.log_level, GlobalLevel),
            tracing,
            startup,
        })
    }

    /// Serves until SIGTERM/SIGINT, then drains (see `runtime`).
    pub fn serve(self) -> std::io::Result<ShutdownOutcome> {
        let App {
            settings,
            state,
            metrics,
            db,
            outbox,
            health,
            dispatcher,
            config_json,
            log_level,
            tracing,
            startup,
        } = self;
        let hooks: Arc<dyn Hooks> = metrics.clone();
        let admin = AdminParts {
            health: Arc::clone(&health),
            metrics: metrics.clone(),
            config: config_json,
            background: vec![Arc::new(outbox.handle())],
            log_level,
            hooks,
        };
        let observer = ScrapeGauges {
            metrics,
            state: Arc::clone(&state),
            db: db.clone(),
        };
        // Step 6: the last spans are flushed first (for at most
        // SPAN_FLUSH_TIMEOUT, part of the grace-period budget), then the
        // database pool is closed.
        let mut resources: Vec<Box<dyn Resource>> = Vec::new();
        if tracing {
            resources.push(Box::new(SpanExporter));
        }
        resources.push(Box::new(DatabasePool(db.clone())));
        runtime::run(Parts {
            settings,
            state,
            health,
            dispatcher,
            admin,
            startup,
            background: vec![Box::new(outbox)],
            commit_gate: db.commit_gate(),
            resources,
            observer: Some(Box::new(observer)),
        })
    }
}

/// Why one attempt at start-up work failed (it is retried).
#[derive(Debug)]
pub enum StartupError {
    Connect(DbError),
    Migrate(migrate::MigrateError),
    WarmPool(DbError),
    Readiness(CheckError),
    Outbox(std::io::Error),
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Connect(e) | StartupError::WarmPool(e) => e.fmt(f),
            StartupError::Migrate(e) => e.fmt(f),
            StartupError::Readiness(e) => e.fmt(f),
            StartupError::Outbox(e) => write!(f, "cannot start the outbox worker: {e}"),
        }
    }
}

impl std::error::Error for StartupError {}

/// Before the service is ready: migrations (unless `MIGRATE_ON_START` is
/// off) on the connection the readiness check then keeps, then the pool is
/// opened, then the readiness check's ping, then the outbox worker.
///
/// Start-up waits for one connect. The pool's min-idle fill starts only
/// after the migrations (nothing competes with them) and runs in the
/// background: ready means what `/readyz` checks from then on (the database
/// answers, the schema is current), and a request that arrives before the
/// first pooled connection waits for it within `DB_ACQUIRE_TIMEOUT`.
struct Startup {
    spec: ConnectSpec,
    /// Whether the migrations are done (or not wanted).
    migrated: bool,
    /// `REUSE_PORT`: take one pooled connection before getting ready.
    warm_pool: bool,
    db: DbPool,
    database_check: Arc<DatabaseCheck>,
    outbox: Arc<Outbox>,
}

impl StartupWork for Startup {
    type Error = StartupError;

    fn attempt(&mut self) -> Result<(), StartupError> {
        if !self.migrated {
            let mut client = db::connect_with(
                &self.spec,
                CONNECT_TIMEOUT,
                database_check::APPLICATION_NAME,
            )
            .map_err(StartupError::Connect)?;
            let applied = migrate::up(&mut client).map_err(StartupError::Migrate)?;
            log::info!(applied = applied.len(); "migrations applied");
            self.migrated = true;
            self.database_check.adopt(client);
        }
        self.db.open();
        if self.warm_pool {
            // REUSE_PORT: once ready, a shared port's new connections are
            // steered here at once; one pooled connection first, so that
            // they do not wait for a connect (a hand-over under load).
            self.db
                .read(|_| Ok::<(), postgres::Error>(()))
                .map_err(StartupError::WarmPool)?;
        }
        self.database_check
            .check()
            .map_err(StartupError::Readiness)?;
        // The outbox reads columns the migrations add: it starts after them.
        self.outbox.start(&self.db).map_err(StartupError::Outbox)
    }
}

/// The gauges read from other components at every scrape.
struct ScrapeGauges {
    metrics: Arc<Metrics>,
    state: Arc<ServiceState>,
    db: DbPool,
}

impl RuntimeObserver for ScrapeGauges {
    fn runtime_started(&self, g: RuntimeGauges) {
        let state = Arc::clone(&self.state);
        let db = self.db.clone();
        self.metrics.on_scrape(move |m| {
            m.set_state(state.get());
            let pool = db.state();
            m.pool_connections
                .with_label_values(&["idle"])
                .set(i64::from(pool.idle));
            m.pool_connections
                .with_label_values(&["in_use"])
                .set(i64::from(pool.in_use()));
            m.queue_depth.set(count(g.queue_len.get()));
            m.connections_open
                .with_label_values(&["public"])
                .set(count(g.public.open_connections()));
            if let Some(admin) = &g.admin {
                m.connections_open
                    .with_label_values(&["admin"])
                    .set(count(admin.open_connections()));
            }
        });
    }
}

/// A count as a gauge value.
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Exposition for Metrics {
    fn render(&self) -> ApiResponse {
        Metrics::render(self)
    }
}

impl BackgroundStatus for OutboxHandle {
    fn status(&self) -> Value {
        OutboxHandle::status(self)
    }
}

/// The span exporter: its last spans are flushed within
/// `config::SPAN_FLUSH_TIMEOUT`.
struct SpanExporter;

impl Resource for SpanExporter {
    fn name(&self) -> &'static str {
        "span exporter"
    }
    fn close(self: Box<Self>) {
        tracing::shutdown(config::SPAN_FLUSH_TIMEOUT);
    }
}

/// The database pool: the app's handle is dropped. The pool has no close of
/// its own yet (its r2d2 pool sits in a `OnceLock`): its connections close
/// with the last handle, which the repositories and gauges hold until the
/// process exits.
struct DatabasePool(DbPool);

impl Resource for DatabasePool {
    fn name(&self) -> &'static str {
        "database pool"
    }
    fn close(self: Box<Self>) {
        drop(self.0);
    }
}

fn pool_settings(config: &Config) -> DbPoolSettings {
    DbPoolSettings {
        max_connections: config.max_connections,
        conn_max_lifetime: config.db_conn_max_lifetime,
        acquire_timeout: config.db_acquire_timeout,
        statement_timeout: config.db_statement_timeout,
    }
}

/// The repository handlers use, and the `redis` readiness check if any.
type WiredUsers = (Arc<dyn UserRepository>, Option<Box<dyn DependencyCheck>>);

/// The users repository: PostgreSQL, the outbox's wake-up on every write
/// (with `WEBHOOK_URL`), and (with `REDIS_URL`) the read-through cache in
/// front; plus the `redis` readiness check when there is a cache.
fn users_repository(
    config: &Config,
    db: &DbPool,
    metrics: &Arc<Metrics>,
    outbox: &Outbox,
) -> Result<WiredUsers, redis::RedisError> {
    let pg: Arc<dyn UserRepository> = Arc::new(PgUserRepository::new(db.clone()));
    // Without a webhook there is nothing to deliver: a write need not wake
    // the outbox (it would only recount the backlog, a scan of every
    // pending event, once per write).
    let repo: Arc<dyn UserRepository> = if config.webhook_url.is_some() {
        let outbox = outbox.handle();
        Arc::new(WakeOnWrite::new(pg, Arc::new(move || outbox.nudge())))
    } else {
        pg
    };
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

fn outbox_settings(config: &Config) -> OutboxSettings {
    OutboxSettings {
        database_url: Secret::new(config.database_url.expose_secret().to_owned()),
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

/// Why `usersvc migrate …` failed.
#[derive(Debug)]
pub enum MigrateCommandError {
    Connect(DbError),
    Migrate(migrate::MigrateError),
}

impl fmt::Display for MigrateCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateCommandError::Connect(e) => write!(f, "cannot connect: {e}"),
            MigrateCommandError::Migrate(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for MigrateCommandError {}

/// `usersvc migrate up | down [N] | status`: what it did, as printed.
pub fn migrate(config: &Config, command: MigrateCommand) -> Result<String, MigrateCommandError> {
    let mut client = db::connect_with(
        config.database_url.connect_spec(),
        CONNECT_TIMEOUT,
        db::pool::MIGRATE_APPLICATION_NAME,
    )
    .map_err(MigrateCommandError::Connect)?;
    let outcome = match command {
        MigrateCommand::Up => migrate::up(&mut client).map(|v| format!("applied: {v:?}")),
        MigrateCommand::Down(n) => {
            migrate::down(&mut client, n as usize).map(|v| format!("rolled back: {v:?}"))
        }
        MigrateCommand::Status => migrate::status(&mut client).map(|s| {
            let version = s
                .version
                .map_or_else(|| "none".to_owned(), |v| v.to_string());
            let mut text = format!(
                "version: {version}\ndirty: {}\napplied: [{}]\npending: {:?}\nlatest: {}",
                s.dirty,
                s.applied.join(", "),
                s.pending,
                s.latest
            );
            if s.newer_than_binary() {
                text.push_str(&format!(
                    "\nwarning: the database is at version {version}, newer than this binary's \
                     latest ({}); `up` leaves it alone and `down` refuses it",
                    s.latest
                ));
            }
            text
        }),
    };
    outcome.map_err(MigrateCommandError::Migrate)
}
