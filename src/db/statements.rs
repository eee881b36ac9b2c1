//! Prepare each SQL statement once per connection, then reuse it.
//!
//! Preparing costs a round trip; doing it per query would double the cost of
//! every request. Each pooled connection carries a [`StatementCache`] keyed by
//! the SQL text. Keys are `&'static str`, so the cache is bounded by the SQL
//! literals compiled into the binary and can never grow from user input.
//! [`Db`] is the handle repositories use: the same `query`/`execute` calls on
//! a plain connection or inside a transaction (anything `GenericClient`).
//! Every statement runs inside `tracing::db::span` (a child span of the
//! request's when it is traced; a single check otherwise).

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement};

/// Statements prepared on one connection.
///
/// A short list found by the address of the SQL literal, not a map hashed by
/// its text: hashing a few hundred bytes of SQL on every query cost more
/// than the look-up itself. Two equal literals at two addresses are two
/// entries (prepared twice), which is harmless; the list stays as short as
/// the literals in the binary.
#[derive(Default)]
pub struct StatementCache {
    prepared: Vec<(&'static str, Statement)>,
}

impl StatementCache {
    /// The prepared statement for `sql`, preparing it on first use.
    pub fn get<C: GenericClient>(
        &mut self,
        client: &mut C,
        sql: &'static str,
    ) -> Result<Statement, postgres::Error> {
        let same =
            |k: &&'static str| std::ptr::eq(k.as_ptr(), sql.as_ptr()) && k.len() == sql.len();
        if let Some((_, s)) = self.prepared.iter().find(|(k, _)| same(k)) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql)?;
        self.prepared.push((sql, s.clone()));
        Ok(s)
    }

    /// How many statements this connection has prepared.
    pub fn len(&self) -> usize {
        self.prepared.len()
    }

    /// True before the first statement is prepared.
    pub fn is_empty(&self) -> bool {
        self.prepared.is_empty()
    }
}

/// A connection (or transaction) plus its statement cache.
pub struct Db<'a, C: GenericClient> {
    client: &'a mut C,
    cache: &'a mut StatementCache,
}

impl<'a, C: GenericClient> Db<'a, C> {
    pub(crate) fn new(client: &'a mut C, cache: &'a mut StatementCache) -> Self {
        Db { client, cache }
    }

    /// Rows of a cached statement.
    pub fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        crate::tracing::db::span(sql, || {
            let st = self.cache.get(self.client, sql)?;
            self.client.query(&st, params)
        })
    }

    /// Exactly one row (an error otherwise).
    pub fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        crate::tracing::db::span(sql, || {
            let st = self.cache.get(self.client, sql)?;
            self.client.query_one(&st, params)
        })
    }

    /// Zero or one row.
    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        crate::tracing::db::span(sql, || {
            let st = self.cache.get(self.client, sql)?;
            self.client.query_opt(&st, params)
        })
    }

    /// Affected row count.
    pub fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        crate::tracing::db::span(sql, || {
            let st = self.cache.get(self.client, sql)?;
            self.client.execute(&st, params)
        })
    }

    /// How many statements the underlying connection has prepared (for tests).
    pub fn prepared_statements(&self) -> usize {
        self.cache.len()
    }
}
