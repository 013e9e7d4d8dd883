//! `Conn`: what a unit of work sees. The same SQL text (with `$1` placeholders) runs on
//! either backend; the few things that must differ (bulk insert, id allocation) are methods.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
};

use postgres::types::ToSql as PgToSql;

use crate::{
    error::{StoreError, StoreResult},
    value::{Row, Value},
};

/// Which database engine a [`Conn`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A PostgreSQL client with its own prepared-statement cache.
pub(crate) struct PgClient {
    pub(crate) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

impl PgClient {
    pub(crate) fn new(client: postgres::Client) -> Self {
        Self { client, statements: HashMap::new() }
    }

    fn statement(&mut self, sql: &str) -> StoreResult<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        if self.statements.len() > 512 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

enum Inner<'c> {
    /// The connection, and the database's count of statements prepared again.
    Sqlite(&'c rusqlite::Connection, &'c AtomicU64),
    Postgres(&'c mut PgClient),
}

/// Up to this many rows, PostgreSQL inserts go row by row instead of through COPY.
const PG_SMALL_ROWS_MAX: usize = 16;

/// `$1, $2, … $count`.
fn placeholders(count: usize) -> String {
    (1..=count).map(|index| format!("${index}")).collect::<Vec<_>>().join(", ")
}

/// A secondary index dropped for a bulk load, with the statement that creates it again.
#[derive(Debug)]
#[must_use = "a deferred index must be restored before the transaction commits"]
pub struct DeferredIndex {
    name: String,
    sql: String,
}

/// A connection inside a unit of work (a transaction opened by the worker that runs it).
pub struct Conn<'c> {
    inner: Inner<'c>,
    /// Set when a statement failed in a way that a retry of the whole unit may fix.
    retryable_failure: bool,
    /// SQLite: highest id handed out per table in this transaction, so two allocations
    /// before the rows are written never overlap.
    reserved_ids: HashMap<&'static str, i64>,
}

/// Adds to `counter` the times SQLite had to prepare this cached statement again (its plan
/// depended on a bound value, or the schema changed). Steady work should add nothing; see
/// `repo` for the query shape that avoids it.
fn count_reprepares(statement: &rusqlite::Statement<'_>, counter: &AtomicU64) {
    if statement.get_status(rusqlite::StatementStatus::RePrepare) > 0 {
        let again = statement.reset_status(rusqlite::StatementStatus::RePrepare);
        counter.fetch_add(again.max(0) as u64, Ordering::Relaxed);
        tracing::debug!(
            sql = statement.expanded_sql().unwrap_or_default(),
            times = again,
            "SQLite prepared a statement again"
        );
    }
}

/// Rewrites `$1` placeholders to SQLite's `?1`. Our SQL never has `$` in string literals.
fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') { Cow::Owned(sql.replace('$', "?")) } else { Cow::Borrowed(sql) }
}

impl<'c> Conn<'c> {
    pub(crate) fn sqlite(connection: &'c rusqlite::Connection, reprepares: &'c AtomicU64) -> Self {
        Self {
            inner: Inner::Sqlite(connection, reprepares),
            retryable_failure: false,
            reserved_ids: HashMap::new(),
        }
    }

    pub(crate) fn postgres(client: &'c mut PgClient) -> Self {
        Self { inner: Inner::Postgres(client), retryable_failure: false, reserved_ids: HashMap::new() }
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(..) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// Asks for the whole unit of work to run again once it has failed: it found that a
    /// premise it had read no longer holds (a concurrent transaction changed it), and a
    /// fresh run will decide properly. Bounded like any retry.
    pub fn retry_unit(&mut self) {
        self.retryable_failure = true;
    }

    pub(crate) fn take_retryable_failure(&mut self) -> bool {
        std::mem::take(&mut self.retryable_failure)
    }

    fn note<T>(&mut self, result: StoreResult<T>) -> StoreResult<T> {
        if let Err(error) = &result
            && error.is_retryable()
        {
            self.retryable_failure = true;
        }
        result
    }

    /// Runs SQL without parameters or results (transaction control, DDL).
    pub(crate) fn batch(&mut self, sql: &str) -> StoreResult<()> {
        let result = match &mut self.inner {
            Inner::Sqlite(connection, _) => connection.execute_batch(sql).map_err(StoreError::from),
            Inner::Postgres(client) => client.client.batch_execute(sql).map_err(StoreError::from),
        };
        self.note(result)
    }

    /// Runs a short control statement through the statement cache.
    pub(crate) fn control(&mut self, sql: &str) -> StoreResult<()> {
        match &mut self.inner {
            Inner::Sqlite(connection, _) => {
                let result = connection
                    .prepare_cached(sql)
                    .and_then(|mut statement| statement.execute([]))
                    .map(|_| ())
                    .map_err(StoreError::from);
                self.note(result)
            }
            Inner::Postgres(_) => self.batch(sql),
        }
    }

    /// Executes one statement and returns the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> StoreResult<u64> {
        let result = match &mut self.inner {
            Inner::Sqlite(connection, reprepares) => connection
                .prepare_cached(&sqlite_sql(sql))
                .and_then(|mut statement| {
                    let changed = statement.execute(rusqlite::params_from_iter(params.iter()));
                    count_reprepares(&statement, reprepares);
                    changed
                })
                .map(|changed| changed as u64)
                .map_err(StoreError::from),
            Inner::Postgres(client) => client.statement(sql).and_then(|statement| {
                let refs: Vec<&(dyn PgToSql + Sync)> = params.iter().map(|value| value as _).collect();
                client.client.execute(&statement, &refs).map_err(StoreError::from)
            }),
        };
        self.note(result)
    }

    /// Runs a query and maps every row, streaming: nothing but the mapped values is kept.
    pub fn for_each(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        mut each: impl FnMut(&Row<'_>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let result = match &mut self.inner {
            Inner::Sqlite(connection, reprepares) => (|| {
                let mut statement = connection.prepare_cached(&sqlite_sql(sql))?;
                let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
                while let Some(row) = rows.next()? {
                    each(&Row::Sqlite(row))?;
                }
                drop(rows);
                count_reprepares(&statement, reprepares);
                Ok(())
            })(),
            Inner::Postgres(client) => (|| {
                let statement = client.statement(sql)?;
                let refs: Vec<&(dyn PgToSql + Sync)> = params.iter().map(|value| value as _).collect();
                let mut rows = client.client.query_raw(&statement, refs)?;
                use postgres::fallible_iterator::FallibleIterator;
                while let Some(row) = rows.next()? {
                    each(&Row::Postgres(&row))?;
                }
                Ok(())
            })(),
        };
        self.note(result)
    }

    /// Runs a query and collects the mapped rows.
    pub fn query<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        mut map: impl FnMut(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        self.for_each(sql, params, |row| {
            out.push(map(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs a query expected to return at most one row.
    pub fn query_optional<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnOnce(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let mut map = Some(map);
        let mut out = None;
        self.for_each(sql, params, |row| {
            if let Some(map) = map.take() {
                out = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs a query expected to return exactly one row.
    pub fn query_one<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnOnce(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.query_optional(sql, params, map)?.ok_or(StoreError::NoRow)
    }

    /// Reserves `count` fresh ids for `table` (whose `id` column is its primary key), so
    /// that rows can be encrypted with their id as associated data before they are written.
    /// SQLite has one writer, so the ids after the current maximum (and after any reserved
    /// earlier in this transaction) are free; PostgreSQL
    /// draws them from the table's sequence.
    pub fn allocate_ids(&mut self, table: &'static str, count: usize) -> StoreResult<Vec<i64>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        match self.backend() {
            Backend::Sqlite => {
                let sql = format!("SELECT coalesce(max(id), 0) FROM {table}");
                let in_table: i64 = self.query_one(&sql, &[], |row| row.get(0))?;
                let current = in_table.max(self.reserved_ids.get(table).copied().unwrap_or(0));
                let last = current + count as i64;
                self.reserved_ids.insert(table, last);
                Ok((current + 1..=last).collect())
            }
            Backend::Postgres => {
                let sql = format!(
                    "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, $1)"
                );
                self.query(&sql, &[Value::I64(count as i64)], |row| row.get(0))
            }
        }
    }

    /// Brings the planner's statistics of `table` up to date during a bulk load, so that
    /// lookups among the rows just written keep using indexes. PostgreSQL without statistics
    /// guesses that a 500-value `IN` list matches most of a table and scans it, which made
    /// a customer import slow down quadratically; `ANALYZE` inside the transaction counts
    /// the transaction's own rows. SQLite has no statistics unless asked and its planner
    /// already prefers these indexes, so this does nothing there.
    pub fn refresh_statistics(&mut self, table: &str) -> StoreResult<()> {
        match self.backend() {
            Backend::Sqlite => Ok(()),
            Backend::Postgres => self.batch(&format!("ANALYZE {table}")),
        }
    }

    /// For a bulk load into a big table: drops the secondary index `name` inside the current
    /// transaction so rows go in without a random index write each, and returns what
    /// [`Conn::restore_index`] needs to build it again, sorted, before the commit. A rollback
    /// brings the index back untouched. Only on SQLite, where readers keep their snapshot;
    /// on PostgreSQL dropping an index locks the table against readers, so this returns
    /// `None` and the index stays. Never use it on an index that enforces uniqueness.
    pub fn defer_index(&mut self, name: &str) -> StoreResult<Option<DeferredIndex>> {
        if self.backend() != Backend::Sqlite {
            return Ok(None);
        }
        let definition: Option<(String, i64)> = self.query_optional(
            "SELECT sql, (SELECT count(*) FROM pragma_index_list(tbl_name) WHERE name = $1 AND \"unique\" = 1) \
             FROM sqlite_master WHERE type = 'index' AND name = $1",
            &[Value::from(name)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let Some((sql, unique)) = definition else {
            return Err(StoreError::Invariant(format!("there is no index {name} to defer")));
        };
        if unique != 0 {
            return Err(StoreError::Invariant(format!(
                "index {name} enforces uniqueness; it cannot be deferred"
            )));
        }
        self.batch(&format!("DROP INDEX {name}"))?;
        Ok(Some(DeferredIndex { name: name.to_owned(), sql }))
    }

    /// Builds an index dropped by [`Conn::defer_index`] again, from its own definition.
    pub fn restore_index(&mut self, deferred: DeferredIndex) -> StoreResult<()> {
        self.batch(&deferred.sql).map_err(|error| {
            StoreError::Invariant(format!("rebuilding index {} failed: {error}", deferred.name))
        })
    }

    /// Inserts many rows, silently skipping those that collide with an existing row on the
    /// unique index named by `conflict_target` (`(external_id) WHERE external_id IS NOT NULL`).
    /// Returns how many rows were inserted. PostgreSQL copies into a session-local staging
    /// table first, then inserts from it.
    pub fn insert_rows_skipping_duplicates(
        &mut self,
        table: &str,
        columns: &[&str],
        conflict_target: &str,
        rows: &[Vec<Value<'_>>],
    ) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let column_list = columns.join(", ");
        match self.backend() {
            Backend::Sqlite => self.insert_rows_with(
                table,
                columns,
                rows,
                &format!(" ON CONFLICT {conflict_target} DO NOTHING"),
            ),
            Backend::Postgres if rows.len() <= PG_SMALL_ROWS_MAX => {
                let sql = format!(
                    "INSERT INTO {table} ({column_list}) VALUES ({}) ON CONFLICT {conflict_target} DO NOTHING",
                    placeholders(columns.len())
                );
                let mut inserted = 0;
                for row in rows {
                    inserted += self.execute(&sql, row)?;
                }
                Ok(inserted)
            }
            Backend::Postgres => {
                let staging = format!("staging_{table}");
                self.batch(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS \
                     SELECT {column_list} FROM {table} WITH NO DATA"
                ))?;
                self.insert_rows(&staging, columns, rows)?;
                let inserted = self.execute(
                    &format!(
                        "INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {staging} \
                         ON CONFLICT {conflict_target} DO NOTHING"
                    ),
                    &[],
                )?;
                self.batch(&format!("TRUNCATE {staging}"))?;
                Ok(inserted)
            }
        }
    }

    /// Inserts many rows at once: a prepared statement stepped per row on SQLite, binary COPY
    /// on PostgreSQL (prepared INSERTs for a handful of rows).
    /// Every row must have one value per column.
    pub fn insert_rows(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &[Vec<Value<'_>>],
    ) -> StoreResult<u64> {
        self.insert_rows_with(table, columns, rows, "")
    }

    fn insert_rows_with(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &[Vec<Value<'_>>],
        sqlite_suffix: &str,
    ) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        if self.backend() == Backend::Postgres && rows.len() <= PG_SMALL_ROWS_MAX {
            // A few rows (a checkout's lines): prepared INSERTs beat setting up a COPY.
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                columns.join(", "),
                placeholders(columns.len())
            );
            let mut inserted = 0;
            for row in rows {
                inserted += self.execute(&sql, row)?;
            }
            return Ok(inserted);
        }
        for row in rows {
            if row.len() != columns.len() {
                return Err(StoreError::Invariant(format!(
                    "insert into {table}: a row has {} values for {} columns",
                    row.len(),
                    columns.len()
                )));
            }
        }
        let column_list = columns.join(", ");
        let result = match &mut self.inner {
            Inner::Sqlite(connection, _) => {
                // One prepared single-row statement, stepped per row: a multi-row VALUES list
                // makes SQLite keep a statement journal (every touched page copied) and was
                // measured 25-35% slower here.
                let placeholders = vec!["?"; columns.len()].join(", ");
                let sql =
                    format!("INSERT INTO {table} ({column_list}) VALUES ({placeholders}){sqlite_suffix}");
                (|| {
                    let mut statement = connection.prepare_cached(&sql)?;
                    let mut inserted = 0_u64;
                    for row in rows {
                        inserted += statement.execute(rusqlite::params_from_iter(row.iter()))? as u64;
                    }
                    Ok(inserted)
                })()
            }
            Inner::Postgres(client) => (|| {
                let probe = client.statement(&format!("SELECT {column_list} FROM {table} LIMIT 0"))?;
                let types: Vec<postgres::types::Type> =
                    probe.columns().iter().map(|column| column.type_().clone()).collect();
                let sink =
                    client.client.copy_in(&format!("COPY {table} ({column_list}) FROM STDIN BINARY"))?;
                let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
                for row in rows {
                    let refs: Vec<&(dyn PgToSql + Sync)> = row.iter().map(|value| value as _).collect();
                    writer.write(&refs)?;
                }
                Ok(writer.finish()?)
            })(),
        };
        self.note(result)
    }
}
