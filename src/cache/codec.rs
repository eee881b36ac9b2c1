//! Cache keys and the cached form of a user.
//!
//! Keys carry a schema version ([`SCHEMA_VERSION`]): a release that changes
//! what is cached bumps it, and old and new replicas during a rollout then
//! read and write different keys instead of misreading each other's. Both
//! keys of one user share a Redis Cluster hash tag (`{42}`), so the scripts
//! that touch both run on one node.
//!
//! The value is a small JSON object of our own (timestamps as microseconds)
//! rather than the API's JSON: it turns back into the exact [`User`], whose
//! API JSON is then byte-identical to what PostgreSQL's row gives.

use serde::{Deserialize, Serialize};

use crate::unix_micros;
use crate::users::User;

/// Bump when the cached form changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The two keys of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The cached user.
    pub user: String,
    /// Its generation token, replaced by every invalidation.
    pub generation: String,
}

/// `<prefix>:v1:user:{42}` and `<prefix>:v1:gen:{42}`.
pub fn keys(prefix: &str, id: i64) -> Keys {
    Keys {
        user: format!("{prefix}:v{SCHEMA_VERSION}:user:{{{id}}}"),
        generation: format!("{prefix}:v{SCHEMA_VERSION}:gen:{{{id}}}"),
    }
}

#[derive(Serialize, Deserialize)]
struct Cached {
    id: i64,
    name: String,
    email: String,
    /// `created_at`, microseconds since the Unix epoch.
    c: i64,
    /// `updated_at`, microseconds since the Unix epoch.
    u: i64,
}

/// The cached form of `user`.
pub fn encode(user: &User) -> Vec<u8> {
    let cached = Cached {
        id: user.id,
        name: user.name.clone(),
        email: user.email.clone(),
        c: unix_micros::from_time(user.created_at),
        u: unix_micros::from_time(user.updated_at),
    };
    serde_json::to_vec(&cached).unwrap_or_default()
}

/// The user back from its cached form.
pub fn decode(bytes: &[u8]) -> Result<User, serde_json::Error> {
    let c: Cached = serde_json::from_slice(bytes)?;
    Ok(User {
        id: c.id,
        name: c.name,
        email: c.email,
        created_at: unix_micros::to_time(c.c),
        updated_at: unix_micros::to_time(c.u),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_versioned_and_share_a_hash_tag() {
        let k = keys("usersvc", 42);
        assert_eq!(k.user, "usersvc:v1:user:{42}");
        assert_eq!(k.generation, "usersvc:v1:gen:{42}");
    }

    #[test]
    fn a_user_round_trips_to_identical_api_json() {
        use std::time::{Duration, UNIX_EPOCH};

        let user = User {
            id: 7,
            name: "Zoë \"Z\" \u{1F600}".into(),
            email: "z@example.com".into(),
            created_at: UNIX_EPOCH + Duration::from_micros(1_733_000_000_123_456),
            updated_at: UNIX_EPOCH - Duration::from_micros(5),
        };
        let back = decode(&encode(&user)).expect("decodes");
        assert_eq!(back, user);
        assert_eq!(back.to_json_string(), user.to_json_string());
        assert!(decode(b"{\"id\":1}").is_err());
    }
}
