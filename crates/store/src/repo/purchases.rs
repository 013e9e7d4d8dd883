//! Purchase records: what a customer bought, where, when and for how much. Cards and points
//! (later capabilities) read these; this table knows nothing of them.

use crate::{Conn, Row, StoreResult, Value, params, repo::bounded};

#[derive(Debug, Clone, PartialEq)]
pub struct PurchaseRecord {
    pub id: i64,
    pub customer_id: i64,
    pub store_id: Option<i64>,
    pub occurred_at_ms: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub category: Option<String>,
    pub channel: String,
    /// The id the sending system gave it; unique, so a re-sent record is stored once.
    pub external_id: Option<String>,
    pub import_id: Option<i64>,
    /// The checkout (or its refund) that made this record.
    pub operation_id: Option<i64>,
    pub created_at_ms: i64,
}

pub const INSERT_COLUMNS: [&str; 11] = [
    "customer_id",
    "store_id",
    "occurred_at_ms",
    "amount_minor",
    "currency",
    "category",
    "channel",
    "external_id",
    "import_id",
    "created_at_ms",
    "operation_id",
];

impl PurchaseRecord {
    pub fn values(&self) -> Vec<Value<'_>> {
        vec![
            self.customer_id.into(),
            self.store_id.into(),
            self.occurred_at_ms.into(),
            self.amount_minor.into(),
            (&self.currency).into(),
            (&self.category).into(),
            (&self.channel).into(),
            (&self.external_id).into(),
            self.import_id.into(),
            self.created_at_ms.into(),
            self.operation_id.into(),
        ]
    }
}

fn from_row(row: &Row<'_>) -> StoreResult<PurchaseRecord> {
    Ok(PurchaseRecord {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        store_id: row.get(2)?,
        occurred_at_ms: row.get(3)?,
        amount_minor: row.get(4)?,
        currency: row.get(5)?,
        category: row.get(6)?,
        channel: row.get(7)?,
        external_id: row.get(8)?,
        import_id: row.get(9)?,
        created_at_ms: row.get(10)?,
        operation_id: row.get(11)?,
    })
}

const COLUMNS: &str = "id, customer_id, store_id, occurred_at_ms, amount_minor, currency, category, channel, \
     external_id, import_id, created_at_ms, operation_id";

/// Inserts one purchase. Returns its id, or `None` when a purchase with the same external id
/// is already stored (a re-sent record).
pub fn insert(conn: &mut Conn<'_>, record: &PurchaseRecord) -> StoreResult<Option<i64>> {
    conn.query_optional(
        &format!(
            "INSERT INTO purchases ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING RETURNING id",
            INSERT_COLUMNS.join(", ")
        ),
        &record.values(),
        |row| row.get(0),
    )
}

pub fn by_external_id(conn: &mut Conn<'_>, external_id: &str) -> StoreResult<Option<PurchaseRecord>> {
    conn.query_optional(
        &format!("SELECT {COLUMNS} FROM purchases WHERE external_id = $1 AND external_id IS NOT NULL"),
        params![external_id],
        from_row,
    )
}

/// Inserts many purchases, skipping those whose external id is already stored. Returns how
/// many were inserted.
pub fn insert_many(conn: &mut Conn<'_>, records: &[PurchaseRecord]) -> StoreResult<u64> {
    let rows: Vec<Vec<Value<'_>>> = records.iter().map(PurchaseRecord::values).collect();
    conn.insert_rows_skipping_duplicates(
        "purchases",
        &INSERT_COLUMNS,
        "(external_id) WHERE external_id IS NOT NULL",
        &rows,
    )
}

/// A customer's purchases, newest first, strictly before `(before_ms, before_id)`.
pub fn of_customer(
    conn: &mut Conn<'_>,
    customer_id: i64,
    before: Option<(i64, i64)>,
    limit: i64,
) -> StoreResult<Vec<PurchaseRecord>> {
    let (before_ms, before_id) = before.unwrap_or((i64::MAX, i64::MAX));
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM purchases WHERE customer_id = $1 \
             AND (occurred_at_ms < $2 OR (occurred_at_ms = $2 AND id < $3)) ORDER BY occurred_at_ms DESC, id DESC LIMIT $4"
        ),
        params![customer_id, before_ms, before_id, bounded(limit)],
        from_row,
    )
}

/// Count and total spend of a customer's purchases.
pub fn totals_of(conn: &mut Conn<'_>, customer_id: i64) -> StoreResult<(i64, i64, Option<i64>)> {
    conn.query_one(
        "SELECT count(*), CAST(coalesce(sum(amount_minor), 0) AS BIGINT), max(occurred_at_ms) FROM purchases \
         WHERE customer_id = $1",
        params![customer_id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
}

/// The secondary index a bulk load may defer (see [`Conn::defer_index`]).
pub const CUSTOMER_INDEX: &str = "purchases_customer";

/// About how many purchases are stored, without counting them: the highest id.
pub fn size_estimate(conn: &mut Conn<'_>) -> StoreResult<i64> {
    conn.query_one("SELECT coalesce(max(id), 0) FROM purchases", params![], |row| row.get(0))
}

pub fn count(conn: &mut Conn<'_>) -> StoreResult<i64> {
    conn.query_one("SELECT count(*) FROM purchases", params![], |row| row.get(0))
}

/// The purchases a checkout (operation) recorded, oldest first.
pub fn of_operation(conn: &mut Conn<'_>, operation_id: i64) -> StoreResult<Vec<PurchaseRecord>> {
    conn.query(
        &format!("SELECT {COLUMNS} FROM purchases WHERE operation_id = $1 AND operation_id IS NOT NULL ORDER BY id LIMIT 1000"),
        params![operation_id],
        from_row,
    )
}
