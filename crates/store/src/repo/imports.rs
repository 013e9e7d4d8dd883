//! The record of every import run: what came in, from whom, and what was rejected.

use crate::{Conn, Row, StoreResult, params, repo::bounded};

#[derive(Debug, Clone, PartialEq)]
pub struct ImportRecord {
    pub id: i64,
    /// `customers` or `transactions`.
    pub kind: String,
    pub file_name: String,
    /// `committed`, `dry_run` or `failed`.
    pub status: String,
    pub dry_run: bool,
    pub skip_invalid: bool,
    pub rows_total: i64,
    pub rows_inserted: i64,
    pub rows_updated: i64,
    pub rows_rejected: i64,
    pub report_json: String,
    /// The rejected rows as CSV (header, line number, reasons), when rows were skipped.
    pub rejects_csv: Option<String>,
    pub started_by: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

const COLUMNS: &str = "id, kind, file_name, status, dry_run, skip_invalid, rows_total, rows_inserted, rows_updated, \
     rows_rejected, report_json, rejects_csv, started_by, started_at_ms, finished_at_ms";

fn from_row(row: &Row<'_>) -> StoreResult<ImportRecord> {
    Ok(ImportRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        file_name: row.get(2)?,
        status: row.get(3)?,
        dry_run: row.get(4)?,
        skip_invalid: row.get(5)?,
        rows_total: row.get(6)?,
        rows_inserted: row.get(7)?,
        rows_updated: row.get(8)?,
        rows_rejected: row.get(9)?,
        report_json: row.get(10)?,
        rejects_csv: row.get(11)?,
        started_by: row.get(12)?,
        started_at_ms: row.get(13)?,
        finished_at_ms: row.get(14)?,
    })
}

pub fn insert(conn: &mut Conn<'_>, record: &ImportRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO imports (kind, file_name, status, dry_run, skip_invalid, rows_total, rows_inserted, rows_updated, \
         rows_rejected, report_json, rejects_csv, started_by, started_at_ms, finished_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        params![
            &record.kind,
            &record.file_name,
            &record.status,
            i64::from(record.dry_run),
            i64::from(record.skip_invalid),
            record.rows_total,
            record.rows_inserted,
            record.rows_updated,
            record.rows_rejected,
            &record.report_json,
            &record.rejects_csv,
            &record.started_by,
            record.started_at_ms,
            record.finished_at_ms
        ],
        |row| row.get(0),
    )
}

pub fn finish(conn: &mut Conn<'_>, record: &ImportRecord) -> StoreResult<u64> {
    conn.execute(
        "UPDATE imports SET status = $2, rows_total = $3, rows_inserted = $4, rows_updated = $5, rows_rejected = $6, \
         report_json = $7, rejects_csv = $8, finished_at_ms = $9 WHERE id = $1",
        params![
            record.id,
            &record.status,
            record.rows_total,
            record.rows_inserted,
            record.rows_updated,
            record.rows_rejected,
            &record.report_json,
            &record.rejects_csv,
            record.finished_at_ms
        ],
    )
}

pub fn get(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<ImportRecord>> {
    conn.query_optional(&format!("SELECT {COLUMNS} FROM imports WHERE id = $1"), params![id], from_row)
}

/// Newest first.
pub fn list(conn: &mut Conn<'_>, before_id: Option<i64>, limit: i64) -> StoreResult<Vec<ImportRecord>> {
    conn.query(
        &format!("SELECT {COLUMNS} FROM imports WHERE (CAST($1 AS BIGINT) IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"),
        params![before_id, bounded(limit)],
        from_row,
    )
}
