//! Staff accounts, console sessions and API tokens. Secrets arrive here already hashed.

use crate::{Conn, Row, StoreResult, params, repo::bounded};

#[derive(Debug, Clone, PartialEq)]
pub struct StaffRecord {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub store_id: Option<i64>,
    pub password_hash: String,
    pub status: String,
    pub failed_login_count: i64,
    pub locked_until_ms: Option<i64>,
    pub password_changed_at_ms: i64,
    pub last_login_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const STAFF_COLUMNS: &str = "id, username, display_name, role, store_id, password_hash, status, failed_login_count, \
     locked_until_ms, password_changed_at_ms, last_login_at_ms, created_at_ms, updated_at_ms";

fn staff_from_row(row: &Row<'_>) -> StoreResult<StaffRecord> {
    Ok(StaffRecord {
        id: row.get(0)?,
        username: row.get(1)?,
        display_name: row.get(2)?,
        role: row.get(3)?,
        store_id: row.get(4)?,
        password_hash: row.get(5)?,
        status: row.get(6)?,
        failed_login_count: row.get(7)?,
        locked_until_ms: row.get(8)?,
        password_changed_at_ms: row.get(9)?,
        last_login_at_ms: row.get(10)?,
        created_at_ms: row.get(11)?,
        updated_at_ms: row.get(12)?,
    })
}

pub fn insert(conn: &mut Conn<'_>, record: &StaffRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO staff (username, display_name, role, store_id, password_hash, status, failed_login_count, \
         locked_until_ms, password_changed_at_ms, last_login_at_ms, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        params![
            &record.username,
            &record.display_name,
            &record.role,
            record.store_id,
            &record.password_hash,
            &record.status,
            record.failed_login_count,
            record.locked_until_ms,
            record.password_changed_at_ms,
            record.last_login_at_ms,
            record.created_at_ms,
            record.updated_at_ms
        ],
        |row| row.get(0),
    )
}

/// Writes every mutable column of a staff row.
pub fn update(conn: &mut Conn<'_>, record: &StaffRecord) -> StoreResult<u64> {
    conn.execute(
        "UPDATE staff SET display_name = $2, role = $3, store_id = $4, password_hash = $5, status = $6, \
         failed_login_count = $7, locked_until_ms = $8, password_changed_at_ms = $9, last_login_at_ms = $10, \
         updated_at_ms = $11 WHERE id = $1",
        params![
            record.id,
            &record.display_name,
            &record.role,
            record.store_id,
            &record.password_hash,
            &record.status,
            record.failed_login_count,
            record.locked_until_ms,
            record.password_changed_at_ms,
            record.last_login_at_ms,
            record.updated_at_ms
        ],
    )
}

pub fn get(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<StaffRecord>> {
    conn.query_optional(
        &format!("SELECT {STAFF_COLUMNS} FROM staff WHERE id = $1"),
        params![id],
        staff_from_row,
    )
}

pub fn by_username(conn: &mut Conn<'_>, username: &str) -> StoreResult<Option<StaffRecord>> {
    conn.query_optional(
        &format!("SELECT {STAFF_COLUMNS} FROM staff WHERE username = $1"),
        params![username],
        staff_from_row,
    )
}

/// Staff in id order after `after_id`, optionally only those of one store.
pub fn list(
    conn: &mut Conn<'_>,
    store_id: Option<i64>,
    after_id: i64,
    limit: i64,
) -> StoreResult<Vec<StaffRecord>> {
    conn.query(
        &format!(
            "SELECT {STAFF_COLUMNS} FROM staff WHERE id > $1 AND (CAST($2 AS BIGINT) IS NULL OR store_id = $2) ORDER BY id LIMIT $3"
        ),
        params![after_id, store_id, bounded(limit)],
        staff_from_row,
    )
}

pub fn count_active_admins(conn: &mut Conn<'_>) -> StoreResult<i64> {
    conn.query_one(
        "SELECT count(*) FROM staff WHERE role = 'admin' AND status = 'active'",
        params![],
        |row| row.get(0),
    )
}

pub fn count(conn: &mut Conn<'_>) -> StoreResult<i64> {
    conn.query_one("SELECT count(*) FROM staff", params![], |row| row.get(0))
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: i64,
    pub token_hash: Vec<u8>,
    pub staff_id: i64,
    pub csrf_token: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub last_seen_at_ms: i64,
}

pub fn insert_session(conn: &mut Conn<'_>, record: &SessionRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO sessions (token_hash, staff_id, csrf_token, source_ip, user_agent, created_at_ms, expires_at_ms, \
         last_seen_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        params![
            &record.token_hash,
            record.staff_id,
            &record.csrf_token,
            &record.source_ip,
            &record.user_agent,
            record.created_at_ms,
            record.expires_at_ms,
            record.last_seen_at_ms
        ],
        |row| row.get(0),
    )
}

pub fn session_by_hash(conn: &mut Conn<'_>, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>> {
    conn.query_optional(
        "SELECT id, token_hash, staff_id, csrf_token, source_ip, user_agent, created_at_ms, expires_at_ms, last_seen_at_ms \
         FROM sessions WHERE token_hash = $1",
        params![token_hash],
        |row| {
            Ok(SessionRecord {
                id: row.get(0)?,
                token_hash: row.get(1)?,
                staff_id: row.get(2)?,
                csrf_token: row.get(3)?,
                source_ip: row.get(4)?,
                user_agent: row.get(5)?,
                created_at_ms: row.get(6)?,
                expires_at_ms: row.get(7)?,
                last_seen_at_ms: row.get(8)?,
            })
        },
    )
}

pub fn touch_session(
    conn: &mut Conn<'_>,
    id: i64,
    last_seen_at_ms: i64,
    expires_at_ms: i64,
) -> StoreResult<u64> {
    conn.execute(
        "UPDATE sessions SET last_seen_at_ms = $2, expires_at_ms = $3 WHERE id = $1",
        params![id, last_seen_at_ms, expires_at_ms],
    )
}

pub fn delete_session(conn: &mut Conn<'_>, token_hash: &[u8]) -> StoreResult<u64> {
    conn.execute("DELETE FROM sessions WHERE token_hash = $1", params![token_hash])
}

pub fn delete_sessions_of(conn: &mut Conn<'_>, staff_id: i64) -> StoreResult<u64> {
    conn.execute("DELETE FROM sessions WHERE staff_id = $1", params![staff_id])
}

pub fn delete_expired_sessions(conn: &mut Conn<'_>, now_ms: i64) -> StoreResult<u64> {
    conn.execute("DELETE FROM sessions WHERE expires_at_ms <= $1", params![now_ms])
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiTokenRecord {
    pub id: i64,
    pub name: String,
    pub token_hash: Vec<u8>,
    pub token_prefix: String,
    /// Space-separated permission names.
    pub scopes: String,
    pub store_id: Option<i64>,
    pub created_by: i64,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, name, token_hash, token_prefix, scopes, store_id, created_by, created_at_ms, \
     expires_at_ms, revoked_at_ms, last_used_at_ms";

fn token_from_row(row: &Row<'_>) -> StoreResult<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        token_hash: row.get(2)?,
        token_prefix: row.get(3)?,
        scopes: row.get(4)?,
        store_id: row.get(5)?,
        created_by: row.get(6)?,
        created_at_ms: row.get(7)?,
        expires_at_ms: row.get(8)?,
        revoked_at_ms: row.get(9)?,
        last_used_at_ms: row.get(10)?,
    })
}

pub fn insert_token(conn: &mut Conn<'_>, record: &ApiTokenRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO api_tokens (name, token_hash, token_prefix, scopes, store_id, created_by, created_at_ms, \
         expires_at_ms, revoked_at_ms, last_used_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        params![
            &record.name,
            &record.token_hash,
            &record.token_prefix,
            &record.scopes,
            record.store_id,
            record.created_by,
            record.created_at_ms,
            record.expires_at_ms,
            record.revoked_at_ms,
            record.last_used_at_ms
        ],
        |row| row.get(0),
    )
}

pub fn token_by_hash(conn: &mut Conn<'_>, token_hash: &[u8]) -> StoreResult<Option<ApiTokenRecord>> {
    conn.query_optional(
        &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1"),
        params![token_hash],
        token_from_row,
    )
}

pub fn get_token(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<ApiTokenRecord>> {
    conn.query_optional(
        &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
        params![id],
        token_from_row,
    )
}

pub fn list_tokens(conn: &mut Conn<'_>, after_id: i64, limit: i64) -> StoreResult<Vec<ApiTokenRecord>> {
    conn.query(
        &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id > $1 ORDER BY id LIMIT $2"),
        params![after_id, bounded(limit)],
        token_from_row,
    )
}

pub fn revoke_token(conn: &mut Conn<'_>, id: i64, now_ms: i64) -> StoreResult<u64> {
    conn.execute(
        "UPDATE api_tokens SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL",
        params![id, now_ms],
    )
}

pub fn touch_token(conn: &mut Conn<'_>, id: i64, now_ms: i64) -> StoreResult<u64> {
    conn.execute("UPDATE api_tokens SET last_used_at_ms = $2 WHERE id = $1", params![id, now_ms])
}
