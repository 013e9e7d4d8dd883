//! Stores (门店): the branches of the business, each with its own time zone.

use crate::{Conn, Row, StoreResult, params};

#[derive(Debug, Clone, PartialEq)]
pub struct StoreRecord {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub city: Option<String>,
    pub address: Option<String>,
    pub time_zone: String,
    pub status: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "id, code, name, city, address, time_zone, status, created_at_ms, updated_at_ms";

fn from_row(row: &Row<'_>) -> StoreResult<StoreRecord> {
    Ok(StoreRecord {
        id: row.get(0)?,
        code: row.get(1)?,
        name: row.get(2)?,
        city: row.get(3)?,
        address: row.get(4)?,
        time_zone: row.get(5)?,
        status: row.get(6)?,
        created_at_ms: row.get(7)?,
        updated_at_ms: row.get(8)?,
    })
}

/// Inserts a store; `record.id` is ignored and the new id returned.
pub fn insert(conn: &mut Conn<'_>, record: &StoreRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO stores (code, name, city, address, time_zone, status, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        params![
            &record.code,
            &record.name,
            &record.city,
            &record.address,
            &record.time_zone,
            &record.status,
            record.created_at_ms,
            record.updated_at_ms
        ],
        |row| row.get(0),
    )
}

pub fn update(conn: &mut Conn<'_>, record: &StoreRecord) -> StoreResult<u64> {
    conn.execute(
        "UPDATE stores SET name = $2, city = $3, address = $4, time_zone = $5, status = $6, updated_at_ms = $7 WHERE id = $1",
        params![record.id, &record.name, &record.city, &record.address, &record.time_zone, &record.status, record.updated_at_ms],
    )
}

pub fn get(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<StoreRecord>> {
    conn.query_optional(&format!("SELECT {COLUMNS} FROM stores WHERE id = $1"), params![id], from_row)
}

pub fn by_code(conn: &mut Conn<'_>, code: &str) -> StoreResult<Option<StoreRecord>> {
    conn.query_optional(&format!("SELECT {COLUMNS} FROM stores WHERE code = $1"), params![code], from_row)
}

/// Every store in code order (a business has tens to a few thousand stores).
pub fn list(conn: &mut Conn<'_>) -> StoreResult<Vec<StoreRecord>> {
    conn.query(&format!("SELECT {COLUMNS} FROM stores ORDER BY code LIMIT 10000"), params![], from_row)
}

/// A named installation fact from `system_settings`.
pub fn setting(conn: &mut Conn<'_>, name: &str) -> StoreResult<Option<String>> {
    conn.query_optional("SELECT value FROM system_settings WHERE name = $1", params![name], |row| row.get(0))
}

/// Sets an installation fact, replacing any earlier value.
pub fn set_setting(conn: &mut Conn<'_>, name: &str, value: &str, now_ms: i64) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO system_settings (name, value, updated_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
        params![name, value, now_ms],
    )?;
    Ok(())
}

/// A trivial query, to tell that the database answers.
pub fn ping(conn: &mut Conn<'_>) -> StoreResult<i64> {
    conn.query_one("SELECT 1", params![], |row| row.get(0))
}
