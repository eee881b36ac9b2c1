//! `cargo bench --bench hot_paths`: the per-request costs outside the
//! database, each in ns and heap allocations per call (median of rounds):
//! routing, request-id handling, JSON encoding of a user, a metrics
//! observation, and a problem+json body.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use usersvc::http::method::Method;
use usersvc::http::pipeline::{Hooks, Meta};
use usersvc::http::problem::Problem;
use usersvc::http::request_id;
use usersvc::http::router::{Match, Router};
use usersvc::metrics::Metrics;
use usersvc::users::{handlers, PgUserRepository, User, UserService};

#[path = "support/measure.rs"]
mod measure;

#[global_allocator]
static GLOBAL: measure::Counting = measure::Counting;

fn report(name: &str, (ns, allocs): (f64, f64)) {
    println!("{name:<44} {ns:>9.1} ns  {allocs:>5.2} allocs");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The real API route table (the pool is never used: nothing connects).
    let pool = usersvc::db::DbPool::build(
        "postgres://bench@127.0.0.1:1/bench",
        &usersvc::db::DbPoolSettings::default(),
    )?;
    let users = Arc::new(UserService::new(Arc::new(PgUserRepository::new(pool))));
    let router = handlers::routes(Router::new(), users)?;
    report(
        "route GET /api/v1/users/{id}",
        measure::measure(|| {
            let m = router.at(Method::Get, black_box("/api/v1/users/12345"));
            black_box(matches!(m, Match::Found { .. }));
        }),
    );
    report(
        "route unknown path (404)",
        measure::measure(|| {
            let m = router.at(Method::Get, black_box("/no/such/path"));
            black_box(matches!(m, Match::NotFound));
        }),
    );
    report(
        "request id: accept the caller's",
        measure::measure(|| {
            black_box(request_id::from_header(black_box(Some("abc-123-def-456"))));
        }),
    );
    report(
        "request id: generate a UUID",
        measure::measure(|| {
            black_box(request_id::from_header(black_box(None)));
        }),
    );
    let user = User {
        id: 4242,
        name: "Ada \"Countess\" Lovelace".into(),
        email: "ada@example.com".into(),
        created_at: UNIX_EPOCH + Duration::from_micros(1_795_510_862_345_678),
        updated_at: UNIX_EPOCH + Duration::from_micros(1_795_510_862_345_679),
    };
    report(
        "JSON encoding of a user",
        measure::measure(|| {
            black_box(black_box(&user).to_json_bytes());
        }),
    );
    let metrics = Metrics::new()?;
    let meta = Meta {
        method: Method::Get,
        route: "/api/v1/users/{id}",
        request_id: request_id::from_header(None),
        remote_addr: None,
        started: Instant::now(),
        ids: usersvc::tracing::ids::RequestIds::for_request(None),
        target: usersvc::http::request::TargetSplit::of("/api/v1/users/4242"),
    };
    report(
        "metrics: one finished request",
        measure::measure(|| {
            metrics.started(black_box(&meta));
            metrics.finished(black_box(&meta), 200, Duration::from_micros(800), 120);
        }),
    );
    let problem = Problem::new(404, "no user with that id");
    report(
        "problem+json body",
        measure::measure(|| {
            black_box(black_box(&problem).to_body("6f1c2f7a-1b3e-4c5d-9e8f-0a1b2c3d4e5f"));
        }),
    );
    Ok(())
}
