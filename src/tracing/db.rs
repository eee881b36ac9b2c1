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
    let (operation, collection) = summarize(sql);
    let name = match collection {
        Some(table) => format!("{operation} {table}"),
        None => operation.to_owned(),
    };
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

/// The operation (`SELECT`, `INSERT`, …) and the table it works on, read
/// from the SQL text. For `WITH … <statement>` it is the outer statement's
/// (the one after the common table expressions).
pub fn summarize(sql: &'static str) -> (&'static str, Option<&'static str>) {
    let words = top_level_words(sql);
    let mut iter = words.iter().copied();
    let Some(first) = iter.next() else {
        return ("", None);
    };
    let operation = if first.eq_ignore_ascii_case("WITH") {
        words
            .iter()
            .copied()
            .skip(1)
            .find(|w| is_statement(w))
            .unwrap_or(first)
    } else {
        first
    };
    let after = |keyword: &str| -> Option<&'static str> {
        let mut seen_op = false;
        let mut iter = words.iter().copied();
        while let Some(w) = iter.next() {
            if !seen_op {
                seen_op = std::ptr::eq(w, operation);
                continue;
            }
            if w.eq_ignore_ascii_case(keyword) {
                return iter.next().map(|t| t.trim_end_matches([',', ';']));
            }
        }
        None
    };
    let collection = match operation.to_ascii_uppercase().as_str() {
        "SELECT" | "DELETE" => after("FROM"),
        "INSERT" => after("INTO"),
        "UPDATE" => {
            let mut iter = words.iter().copied();
            iter.find(|w| std::ptr::eq(*w, operation));
            iter.next()
        }
        _ => None,
    };
    (operation, collection)
}

fn is_statement(word: &str) -> bool {
    ["SELECT", "INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// The words of `sql` outside any parentheses (a CTE's body, a sub-query, a
/// value list), as slices of the original text.
fn top_level_words(sql: &'static str) -> Vec<&'static str> {
    let mut words = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    for (i, c) in sql.char_indices() {
        let boundary = c.is_whitespace() || c == '(' || c == ')';
        if boundary {
            if let Some(s) = start.take() {
                if depth == 0 {
                    words.push(&sql[s..i]);
                }
            }
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        if depth == 0 {
            words.push(&sql[s..]);
        }
    }
    words
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
                ("INSERT", Some("events")),
            ),
            (
                "WITH d AS (DELETE FROM users WHERE id = $1 RETURNING *) SELECT * FROM d",
                ("SELECT", Some("d")),
            ),
            ("SELECT 1", ("SELECT", None)),
            ("", ("", None)),
        ];
        for (sql, want) in cases {
            assert_eq!(summarize(sql), want, "{sql}");
        }
    }
}
