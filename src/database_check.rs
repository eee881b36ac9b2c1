//! Readiness's view of the database: a `SELECT 1` through the pool.

use crate::db::Pool;
use crate::health::DependencyCheck;

/// Pings the database through the pool (the same path requests take).
pub struct DatabaseCheck {
    pub pool: Pool,
}

impl DependencyCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn required(&self) -> bool {
        true
    }

    fn check(&self) -> Result<(), String> {
        self.pool
            .read(|db| db.query_one("SELECT 1", &[]).map(|_| ()))
            .map_err(|e| e.to_string())
    }
}
