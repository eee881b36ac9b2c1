//! The async Rust stack that usersvc is measured against: axum on tokio's
//! multi-threaded runtime (one worker thread per core), tokio-postgres with
//! prepared statements behind a deadpool pool of the same size as usersvc's
//! (25), and a JSON log line per request through `tracing` at INFO.
//!
//! Why it is here: the mission is to beat the stack a user would pick
//! instead *on the same machine*, and issue 17's targets are ratios to
//! pgbench ceilings that no HTTP service may reach on two shared cores. This
//! program answers both in one `make bench` run (`BENCH_VS=async`): it runs
//! the same SQL as usersvc — the user and its `user.created` event in one
//! statement, behind the same write fence — on the same schema.
//!
//! It speaks the bench's side of usersvc's contract only: `ADDR`,
//! `DATABASE_URL`, `LOG_LEVEL`, `/healthz`, `/readyz`, `GET` and `POST
//! /api/v1/users`, and a graceful stop on SIGTERM. It does not migrate (the
//! bench migrates with usersvc first) and has no admin listener.

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};

/// usersvc's `CREATE_USER` (src/users/pg_repository.rs), word for word.
const CREATE_USER: &str = "WITH u AS (\
     INSERT INTO users (name, email, created_at, updated_at) \
     SELECT $1::text, $2::text, $3::timestamptz, $3::timestamptz WHERE usersvc_apply_by($4) \
     RETURNING id, name, email, created_at, updated_at), \
     e AS (INSERT INTO events (type, payload) \
     SELECT 'user.created', user_json(id, name, email, created_at, updated_at)::json FROM u) \
     SELECT id, name, email, created_at, updated_at FROM u";
/// usersvc's `FIND_USER`.
const FIND_USER: &str = "SELECT id, name, email, created_at, updated_at FROM users WHERE id = $1";
/// usersvc's `DB_STATEMENT_TIMEOUT` default: the write fence's deadline.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// usersvc's `MAX_CONNECTIONS` default.
const POOL_SIZE: usize = 25;

#[derive(Serialize)]
struct User {
    id: i64,
    name: String,
    email: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<tokio_postgres::Row> for User {
    fn from(row: tokio_postgres::Row) -> Self {
        User {
            id: row.get(0),
            name: row.get(1),
            email: row.get(2),
            created_at: row.get(3),
            updated_at: row.get(4),
        }
    }
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    email: String,
}

/// A failure as the client sees it: a status and a JSON `{"error": …}`.
struct ApiError(StatusCode, &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(_: deadpool_postgres::PoolError) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                ApiError(StatusCode::CONFLICT, "email already exists")
            }
            _ => ApiError(StatusCode::INTERNAL_SERVER_ERROR, "database error"),
        }
    }
}

async fn get_user(State(pool): State<Pool>, Path(id): Path<i64>) -> Result<Json<User>, ApiError> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(FIND_USER).await?;
    match client.query_opt(&stmt, &[&id]).await? {
        Some(row) => Ok(Json(User::from(row))),
        None => Err(ApiError(StatusCode::NOT_FOUND, "user not found")),
    }
}

async fn create_user(
    State(pool): State<Pool>,
    Json(new): Json<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let name = new.name.trim();
    let email = new.email.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "invalid name"));
    }
    if !(3..=254).contains(&email.len()) || !email.contains('@') {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "invalid email"));
    }
    let now = Utc::now();
    let deadline = now + STATEMENT_TIMEOUT;
    let client = pool.get().await?;
    let stmt = client.prepare_cached(CREATE_USER).await?;
    match client
        .query_opt(&stmt, &[&name, &email, &now, &deadline])
        .await?
    {
        Some(row) => Ok((StatusCode::CREATED, Json(User::from(row)))),
        None => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "write fence closed",
        )),
    }
}

async fn ready(State(pool): State<Pool>) -> Result<&'static str, ApiError> {
    pool.get().await?.simple_query("").await?;
    Ok("{\"status\":\"ready\"}")
}

/// One JSON line per request at INFO, as the async stack's users log
/// (`"msg":"request completed"`, the line the bench counts).
async fn log_request(
    method: Method,
    uri: Uri,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let start = Instant::now();
    let res = next.run(req).await;
    tracing::info!(
        msg = "request completed",
        method = %method,
        path = uri.path(),
        status = res.status().as_u16(),
        duration_us = start.elapsed().as_micros() as u64,
    );
    res
}

fn level() -> tracing::Level {
    match std::env::var("LOG_LEVEL").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("info") => tracing::Level::INFO,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::WARN,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(level())
        .with_writer(std::io::stdout)
        .init();

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let url = std::env::var("DATABASE_URL")?;
    let mgr = Manager::from_config(
        url.parse()?,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(mgr).max_size(POOL_SIZE).build()?;

    let app = Router::new()
        .route("/healthz", get(|| async { "{\"status\":\"ok\"}" }))
        .route("/readyz", get(ready))
        .route("/api/v1/users", axum::routing::post(create_user))
        .route("/api/v1/users/{id}", get(get_user))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(pool);

    // TCP_NODELAY on every accepted connection, as usersvc sets it.
    let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(msg = "TCP_NODELAY", error = %e);
        }
    });
    let mut term = signal(SignalKind::terminate())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            term.recv().await;
        })
        .await?;
    Ok(())
}
