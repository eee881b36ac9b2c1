//! One client span per database statement, child of the request span.
//!
//! Called by `db::statements::Db` around every statement, so every query a
//! repository runs is covered without touching the repositories. Only the
//! statement's shape is recorded — `db.system.name`, `db.operation.name`,
//! `db.collection.name`, and the SQLSTATE of a failure — never a parameter
//! value. Outside a sampled span (tracing off, a background job, an
//! unsampled request) it costs one check and runs the statement as is.

use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

/// Runs `statement` (the execution of `sql`) inside a database span when
/// the current span is sampled.
pub fn span<T>(
    sql: &'static str,
    statement: impl FnOnce() -> Result<T, postgres::Error>,
) -> Result<T, postgres::Error> {
    let Some(tracing) = super::active() else {
        return statement();
    };
    if !Context::map_current(|cx| cx.span().span_context().is_sampled()) {
        return statement();
    }
    let (name, operation, collection) = named(sql);
    let mut attributes = vec![
        KeyValue::new("db.system.name", "postgresql"),
        KeyValue::new("db.operation.name", operation),
    ];
    if let Some(table) = collection {
        attributes.push(KeyValue::new("db.collection.name", table));
    }
    let mut span = tracing
        .tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start(&tracing.tracer);
    let result = statement();
    if let Err(e) = &result {
        let code = e.code().map_or("connection", |c| c.code()).to_owned();
        span.set_attribute(KeyValue::new("db.response.status_code", code.clone()));
        span.set_attribute(KeyValue::new("error.type", code));
        span.set_status(Status::error(""));
    }
    span.end();
    result
}

/// A statement's span name (`INSERT users`), operation and table.
type Named = (&'static str, &'static str, Option<&'static str>);

thread_local! {
    /// [`named`]'s answers on this thread, by SQL literal (its address: every
    /// statement is a `&'static str`).
    static NAMES: std::cell::RefCell<Vec<(&'static str, Named)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// [`summarize`] plus the span name, worked out once per SQL literal and
/// thread: the name is leaked, so a span takes it without allocating. That
/// is bounded like the statement cache (`db::statements`): by the SQL
/// literals compiled into the binary, times the threads that trace.
fn named(sql: &'static str) -> Named {
    let same = |k: &&'static str| std::ptr::eq(k.as_ptr(), sql.as_ptr()) && k.len() == sql.len();
    if let Some(found) = NAMES.with(|n| n.borrow().iter().find(|(k, _)| same(k)).map(|(_, v)| *v)) {
        return found;
    }
    let (operation, collection) = summarize(sql);
    let name: &'static str = match collection {
        Some(table) => Box::leak(format!("{operation} {table}").into_boxed_str()),
        None => operation,
    };
    let named = (name, operation, collection);
    NAMES.with(|n| n.borrow_mut().push((sql, named)));
    named
}

/// The operation (`SELECT`, `INSERT`, …) and the table it works on, read
/// from the SQL text. For `WITH … <statement>` it is the first write inside
/// the common table expressions, else the outer statement's. Allocates nothing: it runs
/// for every statement of a traced request.
pub fn summarize(sql: &'static str) -> (&'static str, Option<&'static str>) {
    let mut words = TopLevelWords::new(sql);
    let Some(first) = words.next() else {
        return ("", None);
    };
    let operation = if first.eq_ignore_ascii_case("WITH") {
        // A data-modifying CTE (`WITH u AS (INSERT INTO users …), e AS (…)
        // SELECT … FROM u`) is named by its first write: that is what the
        // statement does, the outer SELECT only returns it.
        if let Some(write) = first_write(sql) {
            return write;
        }
        match words.by_ref().find(|w| is_statement(w)) {
            Some(op) => op,
            None => return (first, None),
        }
    } else {
        first
    };
    // `words` now stands just after the operation.
    let table = |keyword: &str, mut rest: TopLevelWords| {
        rest.find(|w| w.eq_ignore_ascii_case(keyword))
            .and_then(|_| rest.next())
            .map(|t| t.trim_end_matches([',', ';']))
    };
    let collection =
        if operation.eq_ignore_ascii_case("SELECT") || operation.eq_ignore_ascii_case("DELETE") {
            table("FROM", words)
        } else if operation.eq_ignore_ascii_case("INSERT") {
            table("INTO", words)
        } else if operation.eq_ignore_ascii_case("UPDATE") {
            words.next()
        } else {
            None
        };
    (operation, collection)
}

/// The first INSERT, UPDATE or DELETE at any depth, with its table.
fn first_write(sql: &'static str) -> Option<(&'static str, Option<&'static str>)> {
    let mut words = sql
        .split(|c: char| c.is_ascii_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty());
    while let Some(w) = words.next() {
        let table = if w.eq_ignore_ascii_case("INSERT") {
            words.next().filter(|k| k.eq_ignore_ascii_case("INTO"))?;
            words.next()
        } else if w.eq_ignore_ascii_case("UPDATE") {
            words.next()
        } else if w.eq_ignore_ascii_case("DELETE") {
            words.next().filter(|k| k.eq_ignore_ascii_case("FROM"))?;
            words.next()
        } else {
            continue;
        };
        return Some((w, table.map(|t| t.trim_end_matches([',', ';']))));
    }
    None
}

fn is_statement(word: &str) -> bool {
    ["SELECT", "INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// The words of a SQL text outside any parentheses (a CTE's body, a
/// sub-query, a value list), as slices of the original text.
#[derive(Clone)]
struct TopLevelWords {
    sql: &'static str,
    at: usize,
    depth: usize,
}

impl TopLevelWords {
    fn new(sql: &'static str) -> Self {
        TopLevelWords {
            sql,
            at: 0,
            depth: 0,
        }
    }
}

impl Iterator for TopLevelWords {
    type Item = &'static str;

    fn next(&mut self) -> Option<&'static str> {
        let bytes = self.sql.as_bytes();
        while self.at < bytes.len() {
            let b = bytes[self.at];
            if b.is_ascii_whitespace() || b == b'(' || b == b')' {
                match b {
                    b'(' => self.depth += 1,
                    b')' => self.depth = self.depth.saturating_sub(1),
                    _ => {}
                }
                self.at += 1;
                continue;
            }
            let start = self.at;
            while self.at < bytes.len()
                && !(bytes[self.at].is_ascii_whitespace()
                    || bytes[self.at] == b'('
                    || bytes[self.at] == b')')
            {
                self.at += 1;
            }
            if self.depth == 0 {
                // Boundaries are ASCII bytes, so these are char boundaries.
                return self.sql.get(start..self.at);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn operation_and_table() {
        let cases = [
            (
                "SELECT id, name FROM users WHERE id = $1",
                ("SELECT", Some("users")),
            ),
            (
                "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id",
                ("INSERT", Some("users")),
            ),
            (
                "UPDATE users SET name = COALESCE($2, name) WHERE id = $1",
                ("UPDATE", Some("users")),
            ),
            (
                "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM other LIMIT $2)",
                ("DELETE", Some("idempotency_keys")),
            ),
            (
                "WITH u AS (INSERT INTO users (name) VALUES ($1) RETURNING *) \
                 INSERT INTO events (type) SELECT 'x' FROM u",
                ("INSERT", Some("users")),
            ),
            (
                "WITH u AS (UPDATE users SET name = $2 WHERE id = $1 RETURNING *), \
                 e AS (INSERT INTO events (type) SELECT 'x' FROM u) SELECT id FROM u",
                ("UPDATE", Some("users")),
            ),
            (
                "WITH recent AS (SELECT id FROM users LIMIT 5) SELECT id FROM recent",
                ("SELECT", Some("recent")),
            ),
            (
                "WITH d AS (DELETE FROM users WHERE id = $1 RETURNING *) SELECT * FROM d",
                ("DELETE", Some("users")),
            ),
            ("SELECT 1", ("SELECT", None)),
            ("", ("", None)),
        ];
        for (sql, want) in cases {
            assert_eq!(summarize(sql), want, "{sql}");
        }
    }
}
