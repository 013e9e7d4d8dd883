//! Analysis runs, their segments and memberships (schema 4), and the purchases stream an
//! analysis of the database reads.

use crate::{Conn, Row, StoreResult, Value, params, repo::bounded};

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub kind: String,
    pub as_of: String,
    pub parameters_json: String,
    pub summary_json: String,
    pub purchases: i64,
    pub customers: i64,
    pub created_by: String,
    pub created_at_ms: i64,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub run_id: i64,
    pub code: String,
    pub name_en: String,
    pub name_zh: String,
    pub rule: String,
    pub customers: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub segment: String,
    pub customer_id: i64,
    pub score: Option<f64>,
}

const RUN_COLUMNS: &str = "id, kind, as_of, parameters_json, summary_json, purchases, customers, created_by, \
     created_at_ms, duration_ms";

fn run_from(row: &Row<'_>) -> StoreResult<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        as_of: row.get(2)?,
        parameters_json: row.get(3)?,
        summary_json: row.get(4)?,
        purchases: row.get(5)?,
        customers: row.get(6)?,
        created_by: row.get(7)?,
        created_at_ms: row.get(8)?,
        duration_ms: row.get(9)?,
    })
}

/// Stores a run with its segments and memberships; returns the run's id.
pub fn insert_run(
    conn: &mut Conn<'_>,
    run: &RunRecord,
    segments: &[SegmentRecord],
    members: &[MemberRecord],
) -> StoreResult<i64> {
    let id: i64 = conn.query_one(
        "INSERT INTO analysis_runs (kind, as_of, parameters_json, summary_json, purchases, customers, created_by, \
         created_at_ms, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        params![
            &run.kind,
            &run.as_of,
            &run.parameters_json,
            &run.summary_json,
            run.purchases,
            run.customers,
            &run.created_by,
            run.created_at_ms,
            run.duration_ms
        ],
        |row| row.get(0),
    )?;
    let segment_rows: Vec<Vec<Value<'_>>> = segments
        .iter()
        .map(|segment| {
            vec![
                id.into(),
                (&segment.code).into(),
                (&segment.name_en).into(),
                (&segment.name_zh).into(),
                (&segment.rule).into(),
                segment.customers.into(),
            ]
        })
        .collect();
    conn.insert_rows(
        "analysis_segments",
        &["run_id", "code", "name_en", "name_zh", "rule", "customers"],
        &segment_rows,
    )?;
    const CHUNK_ROWS: usize = 100_000;
    for chunk in members.chunks(CHUNK_ROWS) {
        let rows: Vec<Vec<Value<'_>>> = chunk
            .iter()
            .map(|member| {
                vec![id.into(), (&member.segment).into(), member.customer_id.into(), member.score.into()]
            })
            .collect();
        conn.insert_rows("analysis_members", &["run_id", "segment", "customer_id", "score"], &rows)?;
    }
    Ok(id)
}

/// Runs newest first, of one kind or all, before a run id (for paging).
pub fn list_runs(
    conn: &mut Conn<'_>,
    kind: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<RunRecord>> {
    conn.query(
        &format!(
            "SELECT {RUN_COLUMNS} FROM analysis_runs WHERE (CAST($1 AS TEXT) IS NULL OR kind = $1) \
             AND (CAST($2 AS BIGINT) IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ),
        params![kind, before_id, bounded(limit)],
        run_from,
    )
}

pub fn get_run(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<RunRecord>> {
    conn.query_optional(
        &format!("SELECT {RUN_COLUMNS} FROM analysis_runs WHERE id = $1"),
        params![id],
        run_from,
    )
}

pub fn segments_of(conn: &mut Conn<'_>, run_id: i64) -> StoreResult<Vec<SegmentRecord>> {
    conn.query(
        "SELECT run_id, code, name_en, name_zh, rule, customers FROM analysis_segments WHERE run_id = $1 \
         ORDER BY code",
        params![run_id],
        |row| {
            Ok(SegmentRecord {
                run_id: row.get(0)?,
                code: row.get(1)?,
                name_en: row.get(2)?,
                name_zh: row.get(3)?,
                rule: row.get(4)?,
                customers: row.get(5)?,
            })
        },
    )
}

fn member_from(row: &Row<'_>) -> StoreResult<MemberRecord> {
    Ok(MemberRecord { segment: row.get(0)?, customer_id: row.get(1)?, score: row.get(2)? })
}

/// One page of a run's members, in (segment, customer id) order after the given position.
pub fn members(
    conn: &mut Conn<'_>,
    run_id: i64,
    segment: Option<&str>,
    after: Option<(&str, i64)>,
    limit: i64,
) -> StoreResult<Vec<MemberRecord>> {
    let (after_segment, after_customer) =
        after.map_or((None, None), |(segment, id)| (Some(segment), Some(id)));
    conn.query(
        "SELECT segment, customer_id, score FROM analysis_members WHERE run_id = $1 \
         AND (CAST($2 AS TEXT) IS NULL OR segment = $2) \
         AND (CAST($3 AS TEXT) IS NULL OR segment > $3 OR (segment = $3 AND customer_id > $4)) \
         ORDER BY segment, customer_id LIMIT $5",
        params![run_id, segment, after_segment, after_customer, bounded(limit)],
        member_from,
    )
}

/// Every member of a run (or of one of its segments), streamed in (segment, customer id)
/// order: exports read this.
pub fn for_each_member(
    conn: &mut Conn<'_>,
    run_id: i64,
    segment: Option<&str>,
    mut each: impl FnMut(MemberRecord) -> StoreResult<()>,
) -> StoreResult<()> {
    conn.for_each(
        "SELECT segment, customer_id, score FROM analysis_members WHERE run_id = $1 \
         AND (CAST($2 AS TEXT) IS NULL OR segment = $2) ORDER BY segment, customer_id",
        params![run_id, segment],
        |row| each(member_from(row)?),
    )
}

/// One purchase as an analysis reads it: the customer it counts for (a merged customer's
/// purchases count for the customer they were merged into), when, how much (a refund is
/// negative) and the category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisPurchase {
    pub customer_id: i64,
    pub occurred_at_ms: i64,
    pub amount_minor: i64,
    pub category: Option<String>,
    /// The store's code.
    pub store: Option<String>,
}

/// Every purchase that happened before `until_ms`, streamed in (recorded customer, time)
/// order: the index order, so each customer's purchases come in time order unless a merge
/// brought two customers' purchases together.
pub fn for_each_purchase(
    conn: &mut Conn<'_>,
    until_ms: i64,
    mut each: impl FnMut(AnalysisPurchase) -> StoreResult<()>,
) -> StoreResult<()> {
    conn.for_each(
        "SELECT COALESCE(c.merged_into_id, p.customer_id), p.occurred_at_ms, p.amount_minor, p.category, s.code \
         FROM purchases p JOIN customers c ON c.id = p.customer_id LEFT JOIN stores s ON s.id = p.store_id \
         WHERE p.occurred_at_ms < $1 ORDER BY p.customer_id, p.occurred_at_ms",
        params![until_ms],
        |row| {
            each(AnalysisPurchase {
                customer_id: row.get(0)?,
                occurred_at_ms: row.get(1)?,
                amount_minor: row.get(2)?,
                category: row.get(3)?,
                store: row.get(4)?,
            })
        },
    )
}

/// Every member's tier (the override while it lasts at `at_ms`), by customer id.
pub fn member_tiers(conn: &mut Conn<'_>, at_ms: i64) -> StoreResult<Vec<(i64, String)>> {
    conn.query(
        "SELECT customer_id, CASE WHEN override_tier IS NOT NULL AND override_until_ms > $1 THEN override_tier \
         ELSE tier END FROM loyalty_members ORDER BY customer_id",
        params![at_ms],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// The newest run of `kind` whose analysis day is not after `as_of` (YYYY-MM-DD).
pub fn latest_run(conn: &mut Conn<'_>, kind: &str, as_of: &str) -> StoreResult<Option<RunRecord>> {
    conn.query_optional(
        &format!(
            "SELECT {RUN_COLUMNS} FROM analysis_runs WHERE kind = $1 AND as_of <= $2 \
             ORDER BY as_of DESC, id DESC LIMIT 1"
        ),
        params![kind, as_of],
        run_from,
    )
}
