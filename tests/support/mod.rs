//! Shared fixtures for the integration tests (`mod support;` in each file).
//!
//! - [`client`]: a raw-TCP HTTP/1.1 client that shows the bytes on the wire.
//! - [`service`]: the real binary as a child process.
//!
//! Each test binary uses a different subset, hence `dead_code` is allowed.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod service;
