//! Repositories: the SQL for each table group, as plain functions over a [`crate::Conn`].

pub mod analysis;
pub mod audit;
pub mod cards;
pub mod customers;
pub mod imports;
pub mod ledger;
pub mod loyalty;
pub mod organisation;
pub mod purchases;
pub mod rewards;
pub mod staff;

/// Highest page size any repository returns, whatever the caller asks.
pub const PAGE_SIZE_MAX: i64 = 1_000;

pub(crate) fn bounded(limit: i64) -> i64 {
    limit.clamp(1, PAGE_SIZE_MAX)
}

/// How many of `ids` (sorted, distinct) are ids of rows of `table`. Probing in id order reads
/// the table front to back; bulk loads use it to check the references they wrote.
pub fn count_present(
    conn: &mut crate::Conn<'_>,
    table: &'static str,
    ids: &[i64],
) -> crate::StoreResult<u64> {
    debug_assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids must be sorted and distinct");
    let mut present = 0_u64;
    for chunk in ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|index| format!("${index}")).collect();
        let values: Vec<crate::Value<'_>> = chunk.iter().map(|id| crate::Value::I64(*id)).collect();
        let found: i64 = conn.query_one(
            &format!("SELECT count(*) FROM {table} WHERE id IN ({})", placeholders.join(", ")),
            &values,
            |row| row.get(0),
        )?;
        present += found as u64;
    }
    Ok(present)
}
