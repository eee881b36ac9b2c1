//! Readiness's view of Redis: a `PING` on a connection of its own.
//!
//! Like the database check, it does not borrow from the pool (a busy pool
//! would read as a dead Redis) and it is bounded by the pool's short
//! timeouts. Redis is optional: a failure makes `/readyz` 200 `degraded`
//! with the reason, never 503 — the service answers from PostgreSQL.

use std::sync::{Mutex, PoisonError};

use super::redis_pool::{connect, Timeouts};
use crate::health::{CheckError, DependencyCheck};

/// The `redis` readiness dependency.
pub struct RedisCheck {
    client: redis::Client,
    timeouts: Timeouts,
    conn: Mutex<Option<redis::Connection>>,
}

impl RedisCheck {
    pub fn new(client: redis::Client, timeouts: Timeouts) -> RedisCheck {
        RedisCheck {
            client,
            timeouts,
            conn: Mutex::new(None),
        }
    }
}

impl DependencyCheck for RedisCheck {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn required(&self) -> bool {
        false
    }

    fn check(&self) -> Result<(), CheckError> {
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(
                connect(&self.client, self.timeouts)
                    .map_err(|e| CheckError::Connect(e.to_string()))?,
            );
        }
        let Some(conn) = slot.as_mut() else {
            return Err(CheckError::Connect("no connection".to_owned()));
        };
        match redis::cmd("PING").query::<String>(conn) {
            Ok(_) => Ok(()),
            Err(e) => {
                *slot = None;
                Err(CheckError::Ping(e.to_string()))
            }
        }
    }
}
