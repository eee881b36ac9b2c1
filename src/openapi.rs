//! The OpenAPI 3.1 document of the public API, served at `GET /openapi.json`.
//!
//! `openapi.yaml` is the document people edit; `scripts/openapi-json.sh`
//! renders it to `openapi.json`, which is embedded here. `tests/openapi.rs`
//! fails when the two disagree, and schemathesis checks the running service
//! against it.

use crate::http::dispatch::ApiHandler;
use crate::http::method::Method;
use crate::http::response::ApiResponse;
use crate::http::router::{RouteError, Router};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// Adds `GET /openapi.json`.
pub fn routes(router: Router<ApiHandler>) -> Result<Router<ApiHandler>, RouteError> {
    router.route(
        Method::Get,
        "/openapi.json",
        Box::new(|_req| Ok(ApiResponse::json_text(200, DOCUMENT.to_owned()))),
    )
}
