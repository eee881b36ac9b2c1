//! The HTTP side of the service: listeners, the worker pool, routing,
//! middleware and problem+json errors. See ARCHITECTURE.md for how a request
//! travels through these pieces.

pub mod addr_text;
pub mod admin;
pub mod dispatch;
pub mod listener;
pub mod method;
pub mod pipeline;
pub mod probes;
pub mod problem;
pub mod request;
pub mod request_id;
pub mod response;
pub mod router;
pub mod worker_pool;
