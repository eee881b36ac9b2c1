//! Users: the model, its rules, and its storage.
//!
//! Pure logic ([`validate`], [`cursor`], [`idempotency`], [`model`]) is kept
//! apart from I/O ([`PgUserRepository`]) so it is unit-tested without a
//! database. [`UserService`] is what HTTP handlers call.

pub mod body;
pub mod cursor;
pub mod error;
pub mod events;
pub mod handlers;
pub mod idempotency;
#[cfg(test)]
pub(crate) mod memory_repository;
pub mod model;
pub mod pg_repository;
pub mod repository;
pub mod service;
pub mod validate;
pub mod version;

pub use cursor::{ListParams, Page};
pub use error::UserError;
pub use idempotency::{IdempotencyKey, IdempotentResponse, StoredResponse};
pub use model::{CreateUser, NewUser, PatchUser, User, UserChanges};
pub use pg_repository::PgUserRepository;
pub use repository::UserRepository;
pub use service::UserService;
pub use validate::FieldError;
