//! A database of its own for one test, on the shared server.

use usersvc::db::{connect, migrate};

use std::time::Duration;

/// The server tests create databases on.
pub fn admin_url() -> String {
    std::env::var("USERSVC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `usersvc_t_<run>_<random>`, created on construction, dropped `WITH (FORCE)` on Drop.
pub struct TestDb {
    name: String,
    url: String,
    admin: String,
}

impl TestDb {
    /// An empty database, `usersvc_t_<run>_<random>`: `<run>` is
    /// `USERSVC_TEST_RUN` (set by scripts/run-tests.sh, which drops whatever
    /// its run left behind), `x` when unset.
    pub fn new() -> TestDb {
        let admin = admin_url();
        let run: String = std::env::var("USERSVC_TEST_RUN")
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(24)
            .collect::<String>()
            .to_ascii_lowercase();
        let name = format!(
            "usersvc_t_{}_{}",
            if run.is_empty() { "x" } else { run.as_str() },
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut client = connect(&admin, Duration::from_secs(5)).expect("connect to test server");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let url = with_dbname(&admin, &name);
        TestDb { name, url, admin }
    }

    /// A database with every migration applied.
    pub fn migrated() -> TestDb {
        let db = TestDb::new();
        let mut client = db.client();
        migrate::up(&mut client).expect("migrations apply");
        db
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh direct connection.
    pub fn client(&self) -> postgres::Client {
        connect(&self.url, Duration::from_secs(5)).expect("connect to test database")
    }

    /// What the migrations built, sorted, to compare: the public schema's
    /// columns (but `schema_migrations`'), indexes and functions.
    pub fn schema(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .client()
            .query(
                "SELECT table_name || '.' || column_name || ' ' || data_type \
                 FROM information_schema.columns WHERE table_schema = 'public' \
                 AND table_name <> 'schema_migrations' \
                 UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' \
                 UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p \
                 JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
                &[],
            )
            .expect("schema")
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.sort();
        out
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = connect(&self.admin, Duration::from_secs(5)) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// `url` with its database replaced by `name` (URL or key=value form).
pub fn with_dbname(url: &str, name: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (rest, String::new()),
        };
        let authority = before_query.split('/').next().unwrap_or(before_query);
        format!("{scheme}{authority}/{name}{query}")
    } else {
        format!("{url} dbname={name}")
    }
}
