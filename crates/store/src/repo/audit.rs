//! The audit log: append-only (the schema refuses UPDATE and DELETE on it).

use crate::{Conn, Row, StoreResult, params, repo::bounded};

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    /// `staff`, `token` or `system`.
    pub actor_kind: String,
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub actor_role: Option<String>,
    pub actor_store_id: Option<i64>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    /// What was done, `entity.verb`: `customer.create`, `customer.reveal`.
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
}

const COLUMNS: &str = "id, at_ms, actor_kind, actor_id, actor_name, actor_role, actor_store_id, source_ip, request_id, \
     action, entity_type, entity_id, before_json, after_json";

fn from_row(row: &Row<'_>) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        id: row.get(0)?,
        at_ms: row.get(1)?,
        actor_kind: row.get(2)?,
        actor_id: row.get(3)?,
        actor_name: row.get(4)?,
        actor_role: row.get(5)?,
        actor_store_id: row.get(6)?,
        source_ip: row.get(7)?,
        request_id: row.get(8)?,
        action: row.get(9)?,
        entity_type: row.get(10)?,
        entity_id: row.get(11)?,
        before_json: row.get(12)?,
        after_json: row.get(13)?,
    })
}

pub fn append(conn: &mut Conn<'_>, record: &AuditRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO audit_log (at_ms, actor_kind, actor_id, actor_name, actor_role, actor_store_id, source_ip, \
         request_id, action, entity_type, entity_id, before_json, after_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        params![
            record.at_ms,
            &record.actor_kind,
            record.actor_id,
            &record.actor_name,
            &record.actor_role,
            record.actor_store_id,
            &record.source_ip,
            &record.request_id,
            &record.action,
            &record.entity_type,
            &record.entity_id,
            &record.before_json,
            &record.after_json
        ],
        |row| row.get(0),
    )
}

/// Filters for reading the log; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub action: Option<String>,
    pub actor_kind: Option<String>,
    pub actor_id: Option<i64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only entries with a smaller id (newest first paging).
    pub before_id: Option<i64>,
}

/// Newest first.
pub fn list(conn: &mut Conn<'_>, filter: &AuditFilter, limit: i64) -> StoreResult<Vec<AuditRecord>> {
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM audit_log WHERE (CAST($1 AS TEXT) IS NULL OR entity_type = $1) \
             AND (CAST($2 AS TEXT) IS NULL OR entity_id = $2) AND (CAST($3 AS TEXT) IS NULL OR action = $3) \
             AND (CAST($4 AS TEXT) IS NULL OR actor_kind = $4) AND (CAST($5 AS BIGINT) IS NULL OR actor_id = $5) \
             AND (CAST($6 AS BIGINT) IS NULL OR at_ms >= $6) AND (CAST($7 AS BIGINT) IS NULL OR at_ms < $7) \
             AND (CAST($8 AS BIGINT) IS NULL OR id < $8) ORDER BY id DESC LIMIT $9"
        ),
        params![
            &filter.entity_type,
            &filter.entity_id,
            &filter.action,
            &filter.actor_kind,
            filter.actor_id,
            filter.since_ms,
            filter.until_ms,
            filter.before_id,
            bounded(limit)
        ],
        from_row,
    )
}
