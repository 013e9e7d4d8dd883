//! The loyalty engine's tables: programme versions, members and their tier state, monthly
//! activity, points lots and their moves, offline sales, events, coupons, the points mall
//! and partners. Points balances themselves are ledger accounts (see [`super::ledger`]).

use crate::{Backend, Conn, Row, StoreResult, Value, params, repo::bounded};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgrammeRecord {
    pub version: i64,
    pub effective_from_ms: i64,
    pub rules_json: String,
    pub note: Option<String>,
    pub created_by: String,
    pub created_at_ms: i64,
}

fn programme_from(row: &Row<'_>) -> StoreResult<ProgrammeRecord> {
    Ok(ProgrammeRecord {
        version: row.get(0)?,
        effective_from_ms: row.get(1)?,
        rules_json: row.get(2)?,
        note: row.get(3)?,
        created_by: row.get(4)?,
        created_at_ms: row.get(5)?,
    })
}

const PROGRAMME_COLUMNS: &str = "version, effective_from_ms, rules_json, note, created_by, created_at_ms";

/// The version in force at `at_ms`: the newest whose effective date is not after it.
pub fn programme_at(conn: &mut Conn<'_>, at_ms: i64) -> StoreResult<Option<ProgrammeRecord>> {
    conn.query_optional(
        &format!(
            "SELECT {PROGRAMME_COLUMNS} FROM loyalty_programmes WHERE effective_from_ms <= $1 \
             ORDER BY effective_from_ms DESC, version DESC LIMIT 1"
        ),
        params![at_ms],
        programme_from,
    )
}

pub fn programmes(conn: &mut Conn<'_>, limit: i64) -> StoreResult<Vec<ProgrammeRecord>> {
    conn.query(
        &format!("SELECT {PROGRAMME_COLUMNS} FROM loyalty_programmes ORDER BY version DESC LIMIT $1"),
        params![bounded(limit)],
        programme_from,
    )
}

/// Adds a version (the next number) and returns it.
pub fn insert_programme(conn: &mut Conn<'_>, record: &ProgrammeRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO loyalty_programmes (version, effective_from_ms, rules_json, note, created_by, created_at_ms) \
         SELECT coalesce(max(version), 0) + 1, $1, $2, $3, $4, $5 FROM loyalty_programmes RETURNING version",
        params![record.effective_from_ms, &record.rules_json, &record.note, &record.created_by, record.created_at_ms],
        |row| row.get(0),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub customer_id: i64,
    pub tier: String,
    pub tier_since_ms: i64,
    pub review_at_ms: i64,
    pub grace_until_ms: Option<i64>,
    pub override_tier: Option<String>,
    pub override_until_ms: Option<i64>,
    pub override_by: Option<String>,
    pub override_reason: Option<String>,
    pub first_purchase_at_ms: Option<i64>,
    pub referred_by: Option<i64>,
    /// When the member joined the programme (the sign-up bonus, once); `None` for members
    /// made by their first purchase who never enrolled.
    pub enrolled_at_ms: Option<i64>,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const MEMBER_COLUMNS: &str = "m.customer_id, m.tier, m.tier_since_ms, m.review_at_ms, m.grace_until_ms, m.override_tier, \
     m.override_until_ms, m.override_by, m.override_reason, m.first_purchase_at_ms, m.referred_by, m.version, \
     m.created_at_ms, m.updated_at_ms, m.enrolled_at_ms";

fn member_from(row: &Row<'_>) -> StoreResult<MemberRecord> {
    Ok(MemberRecord {
        customer_id: row.get(0)?,
        tier: row.get(1)?,
        tier_since_ms: row.get(2)?,
        review_at_ms: row.get(3)?,
        grace_until_ms: row.get(4)?,
        override_tier: row.get(5)?,
        override_until_ms: row.get(6)?,
        override_by: row.get(7)?,
        override_reason: row.get(8)?,
        first_purchase_at_ms: row.get(9)?,
        referred_by: row.get(10)?,
        version: row.get(11)?,
        created_at_ms: row.get(12)?,
        updated_at_ms: row.get(13)?,
        enrolled_at_ms: row.get(14)?,
    })
}

pub fn member(conn: &mut Conn<'_>, customer_id: i64) -> StoreResult<Option<MemberRecord>> {
    conn.query_optional(
        &format!("SELECT {MEMBER_COLUMNS} FROM loyalty_members m WHERE m.customer_id = $1"),
        params![customer_id],
        member_from,
    )
}

pub fn insert_member(conn: &mut Conn<'_>, member: &MemberRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO loyalty_members (customer_id, tier, tier_since_ms, review_at_ms, grace_until_ms, override_tier, \
         override_until_ms, override_by, override_reason, first_purchase_at_ms, referred_by, version, created_at_ms, \
         updated_at_ms, enrolled_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        params![
            member.customer_id,
            &member.tier,
            member.tier_since_ms,
            member.review_at_ms,
            member.grace_until_ms,
            &member.override_tier,
            member.override_until_ms,
            &member.override_by,
            &member.override_reason,
            member.first_purchase_at_ms,
            member.referred_by,
            member.version,
            member.created_at_ms,
            member.updated_at_ms,
            member.enrolled_at_ms
        ],
    )?;
    Ok(())
}

/// Writes `member` if its row is still at `expected_version`.
pub fn update_member(conn: &mut Conn<'_>, member: &MemberRecord, expected_version: i64) -> StoreResult<bool> {
    let changed = conn.execute(
        "UPDATE loyalty_members SET tier = $2, tier_since_ms = $3, review_at_ms = $4, grace_until_ms = $5, \
         override_tier = $6, override_until_ms = $7, override_by = $8, override_reason = $9, first_purchase_at_ms = $10, \
         referred_by = $11, version = $12, updated_at_ms = $13, enrolled_at_ms = $15 \
         WHERE customer_id = $1 AND version = $14",
        params![
            member.customer_id,
            &member.tier,
            member.tier_since_ms,
            member.review_at_ms,
            member.grace_until_ms,
            &member.override_tier,
            member.override_until_ms,
            &member.override_by,
            &member.override_reason,
            member.first_purchase_at_ms,
            member.referred_by,
            member.version,
            member.updated_at_ms,
            expected_version,
            member.enrolled_at_ms
        ],
    )?;
    Ok(changed == 1)
}

/// A member's tier review as decided by the services: the row as it becomes, the version
/// it replaces, and what the change records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReview {
    pub member: MemberRecord,
    pub expected_version: i64,
    /// Only the review dates move (a renewal, the start of a grace period).
    pub dates_only: bool,
    pub tier_changed: bool,
    pub history: Option<TierChangeRecord>,
    /// The tier the member's open cards now show, when it changed.
    pub card_tier: Option<String>,
    pub event: Option<EventRecord>,
}

impl MemberReview {
    /// The new tier when the review changed it.
    pub fn changed_tier(&self) -> Option<String> {
        self.tier_changed.then(|| self.member.tier.clone())
    }
}

/// Reviews written in one statement per table on PostgreSQL from this many up; fewer, and
/// on SQLite (where a prepared statement per row is the fast path), row by row.
const REVIEWS_STAGED_MIN: usize = 64;

/// Writes decided reviews: each member row if it still holds the expected version, then its
/// history, card tiers and event. Returns the members whose row had changed meanwhile;
/// nothing was written for them.
pub fn write_member_reviews(conn: &mut Conn<'_>, reviews: &[MemberReview]) -> StoreResult<Vec<i64>> {
    if conn.backend() == Backend::Postgres && reviews.len() >= REVIEWS_STAGED_MIN {
        return write_member_reviews_staged(conn, reviews);
    }
    let mut stale = Vec::new();
    for review in reviews {
        let written = if review.dates_only {
            update_member_review(conn, &review.member, review.expected_version)?
        } else {
            update_member(conn, &review.member, review.expected_version)?
        };
        if !written {
            stale.push(review.member.customer_id);
            continue;
        }
        if let Some(history) = &review.history {
            insert_tier_change(conn, history)?;
        }
        if let Some(tier) = &review.card_tier {
            set_card_tiers(conn, review.member.customer_id, tier, review.member.updated_at_ms)?;
        }
        if let Some(event) = &review.event {
            insert_event(conn, event)?;
        }
    }
    Ok(stale)
}

const REVIEW_STAGING_COLUMNS: [&str; 23] = [
    "customer_id",
    "expected_version",
    "tier",
    "tier_since_ms",
    "review_at_ms",
    "grace_until_ms",
    "override_tier",
    "override_until_ms",
    "override_by",
    "override_reason",
    "version",
    "updated_at_ms",
    "history_from",
    "history_to",
    "history_reason",
    "history_detail",
    "history_actor",
    "history_at_ms",
    "card_tier",
    "event_kind",
    "event_due_ms",
    "event_detail",
    "event_at_ms",
];

/// PostgreSQL: the reviews are copied into a session table, then each table is written by
/// one statement; a round trip per row would cost more than the work.
fn write_member_reviews_staged(conn: &mut Conn<'_>, reviews: &[MemberReview]) -> StoreResult<Vec<i64>> {
    conn.batch(
        "CREATE TEMP TABLE IF NOT EXISTS staging_member_reviews (customer_id BIGINT PRIMARY KEY, \
         expected_version BIGINT NOT NULL, tier TEXT NOT NULL, tier_since_ms BIGINT NOT NULL, review_at_ms BIGINT NOT NULL, \
         grace_until_ms BIGINT, override_tier TEXT, override_until_ms BIGINT, override_by TEXT, override_reason TEXT, \
         version BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL, history_from TEXT, history_to TEXT, history_reason TEXT, \
         history_detail TEXT, history_actor TEXT, history_at_ms BIGINT, card_tier TEXT, event_kind TEXT, event_due_ms BIGINT, \
         event_detail TEXT, event_at_ms BIGINT) ON COMMIT DELETE ROWS",
    )?;
    conn.batch("TRUNCATE staging_member_reviews")?;
    let rows: Vec<Vec<Value<'_>>> = reviews
        .iter()
        .map(|review| {
            let member = &review.member;
            let history = review.history.as_ref();
            let event = review.event.as_ref();
            vec![
                member.customer_id.into(),
                review.expected_version.into(),
                member.tier.as_str().into(),
                member.tier_since_ms.into(),
                member.review_at_ms.into(),
                member.grace_until_ms.into(),
                (&member.override_tier).into(),
                member.override_until_ms.into(),
                (&member.override_by).into(),
                (&member.override_reason).into(),
                member.version.into(),
                member.updated_at_ms.into(),
                history.and_then(|history| history.from_tier.as_deref()).into(),
                history.map(|history| history.to_tier.as_str()).into(),
                history.map(|history| history.reason.as_str()).into(),
                history.map(|history| history.detail_json.as_str()).into(),
                history.map(|history| history.actor.as_str()).into(),
                history.map(|history| history.created_at_ms).into(),
                review.card_tier.as_deref().into(),
                event.map(|event| event.kind.as_str()).into(),
                event.map(|event| event.due_at_ms).into(),
                event.map(|event| event.detail_json.as_str()).into(),
                event.map(|event| event.created_at_ms).into(),
            ]
        })
        .collect();
    conn.insert_rows("staging_member_reviews", &REVIEW_STAGING_COLUMNS, &rows)?;
    // The page's key range: the session table has no statistics, and without a range the
    // planner joins it to whole tables.
    let ids = reviews.iter().map(|review| review.member.customer_id);
    let (first, last) = (ids.clone().min().unwrap_or(0), ids.max().unwrap_or(0));
    // The ids written come back; the rest changed meanwhile and leave the staging table, so
    // that the statements after this one see only what was applied.
    let applied: std::collections::HashSet<i64> = conn
        .query(
            "UPDATE loyalty_members m SET tier = s.tier, tier_since_ms = s.tier_since_ms, \
             review_at_ms = s.review_at_ms, grace_until_ms = s.grace_until_ms, override_tier = s.override_tier, \
             override_until_ms = s.override_until_ms, override_by = s.override_by, override_reason = s.override_reason, \
             version = s.version, updated_at_ms = s.updated_at_ms FROM staging_member_reviews s \
             WHERE m.customer_id = s.customer_id AND m.version = s.expected_version \
             AND m.customer_id >= $1 AND m.customer_id <= $2 RETURNING m.customer_id",
            params![first, last],
            |row| row.get(0),
        )?
        .into_iter()
        .collect();
    let mut stale: Vec<i64> = reviews
        .iter()
        .map(|review| review.member.customer_id)
        .filter(|customer_id| !applied.contains(customer_id))
        .collect();
    stale.sort_unstable();
    for customer_id in &stale {
        conn.execute("DELETE FROM staging_member_reviews WHERE customer_id = $1", params![*customer_id])?;
    }
    conn.execute(
        "INSERT INTO loyalty_tier_history (customer_id, from_tier, to_tier, reason, detail_json, actor, created_at_ms) \
         SELECT customer_id, history_from, history_to, history_reason, history_detail, history_actor, history_at_ms \
         FROM staging_member_reviews WHERE history_reason IS NOT NULL ORDER BY customer_id",
        params![],
    )?;
    conn.execute(
        "UPDATE cards SET tier = s.card_tier, version = cards.version + 1, updated_at_ms = s.updated_at_ms \
         FROM staging_member_reviews s WHERE s.card_tier IS NOT NULL AND cards.customer_id = s.customer_id \
         AND cards.tier <> s.card_tier AND cards.status NOT IN ('closed', 'replaced') \
         AND cards.customer_id >= $1 AND cards.customer_id <= $2",
        params![first, last],
    )?;
    conn.execute(
        "INSERT INTO loyalty_events (kind, customer_id, due_at_ms, detail_json, created_at_ms) \
         SELECT event_kind, customer_id, event_due_ms, event_detail, event_at_ms FROM staging_member_reviews \
         WHERE event_kind IS NOT NULL ORDER BY customer_id ON CONFLICT (kind, customer_id, due_at_ms) DO NOTHING",
        params![],
    )?;
    conn.batch("TRUNCATE staging_member_reviews")?;
    Ok(stale)
}

/// Moves only a member's review dates (a renewal, the start of a grace period): the tier
/// and override columns keep their values.
pub fn update_member_review(
    conn: &mut Conn<'_>,
    member: &MemberRecord,
    expected_version: i64,
) -> StoreResult<bool> {
    let changed = conn.execute(
        "UPDATE loyalty_members SET review_at_ms = $2, grace_until_ms = $3, version = $4, updated_at_ms = $5 \
         WHERE customer_id = $1 AND version = $6",
        params![
            member.customer_id,
            member.review_at_ms,
            member.grace_until_ms,
            member.version,
            member.updated_at_ms,
            expected_version
        ],
    )?;
    Ok(changed == 1)
}

/// What counts toward a tier: spend, visits and points earned since `from_month`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub spend_minor: i64,
    pub visits: i64,
    pub points: i64,
}

pub fn standing(conn: &mut Conn<'_>, customer_id: i64, from_month: i64) -> StoreResult<Standing> {
    conn.query_one(
        "SELECT CAST(coalesce(sum(spend_minor), 0) AS BIGINT), CAST(coalesce(sum(visits), 0) AS BIGINT), \
         CAST(coalesce(sum(points_earned), 0) AS BIGINT) FROM loyalty_activity WHERE customer_id = $1 AND month_index >= $2",
        params![customer_id, from_month],
        |row| Ok(Standing { spend_minor: row.get(0)?, visits: row.get(1)?, points: row.get(2)? }),
    )
}

/// Members with ids in `(after, ..]`, in id order, each with their standing since
/// `from_month`: one page of a tier recompute.
pub fn members_with_standing(
    conn: &mut Conn<'_>,
    after_customer_id: i64,
    limit: i64,
    from_month: i64,
) -> StoreResult<Vec<(MemberRecord, Standing)>> {
    conn.query(
        &format!(
            // One pass in key order, each member's months found through the activity key
            // (`a.customer_id > $1` starts PostgreSQL's merge join at the page, not at the
            // first member): no work over the rest of the tables per page.
            "SELECT {MEMBER_COLUMNS}, CAST(coalesce(sum(a.spend_minor), 0) AS BIGINT), \
             CAST(coalesce(sum(a.visits), 0) AS BIGINT), CAST(coalesce(sum(a.points_earned), 0) AS BIGINT) \
             FROM loyalty_members m LEFT JOIN loyalty_activity a ON a.customer_id = m.customer_id AND a.customer_id > $1 \
             AND a.month_index >= $3 \
             WHERE m.customer_id > $1 GROUP BY m.customer_id ORDER BY m.customer_id LIMIT $2"
        ),
        params![after_customer_id, limit.clamp(1, 100_000), from_month],
        |row| {
            Ok((
                member_from(row)?,
                Standing { spend_minor: row.get(15)?, visits: row.get(16)?, points: row.get(17)? },
            ))
        },
    )
}

/// Moves a merged customer's monthly activity onto the survivor (months both have are added
/// up). Returns the months moved.
pub fn move_activity(conn: &mut Conn<'_>, from_customer: i64, to_customer: i64) -> StoreResult<u64> {
    let months = conn.execute(
        "INSERT INTO loyalty_activity (customer_id, month_index, spend_minor, visits, points_earned) \
         SELECT CAST($2 AS BIGINT), month_index, spend_minor, visits, points_earned FROM loyalty_activity \
         WHERE customer_id = $1 ON CONFLICT (customer_id, month_index) DO UPDATE SET \
         spend_minor = loyalty_activity.spend_minor + excluded.spend_minor, \
         visits = loyalty_activity.visits + excluded.visits, \
         points_earned = loyalty_activity.points_earned + excluded.points_earned",
        params![from_customer, to_customer],
    )?;
    conn.execute("DELETE FROM loyalty_activity WHERE customer_id = $1", params![from_customer])?;
    Ok(months)
}

/// What a merge moved of a customer's loyalty records besides points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoyaltyReassigned {
    pub coupons: u64,
    pub mall_orders: u64,
    pub events: u64,
    /// Members who named the merged customer as their referrer.
    pub referrals: u64,
}

/// Gives a merged customer's coupons, mall orders and pending events to the survivor, points
/// referrals at them to the survivor, and drops the merged member row (its tier state was
/// carried over by the caller).
pub fn reassign_loyalty(
    conn: &mut Conn<'_>,
    from_customer: i64,
    to_customer: i64,
) -> StoreResult<LoyaltyReassigned> {
    let coupons = conn.execute(
        "UPDATE coupons SET customer_id = $2 WHERE customer_id = $1",
        params![from_customer, to_customer],
    )?;
    let mall_orders = conn.execute(
        "UPDATE mall_orders SET customer_id = $2 WHERE customer_id = $1",
        params![from_customer, to_customer],
    )?;
    let events = conn.execute(
        "UPDATE loyalty_events SET customer_id = $2 WHERE customer_id = $1 AND NOT EXISTS (SELECT 1 FROM loyalty_events e \
         WHERE e.kind = loyalty_events.kind AND e.customer_id = $2 AND e.due_at_ms = loyalty_events.due_at_ms)",
        params![from_customer, to_customer],
    )?;
    conn.execute(
        "UPDATE loyalty_members SET referred_by = NULL WHERE customer_id = $2 AND referred_by = $1",
        params![from_customer, to_customer],
    )?;
    let referrals = conn.execute(
        "UPDATE loyalty_members SET referred_by = $2 WHERE referred_by = $1",
        params![from_customer, to_customer],
    )?;
    conn.execute("DELETE FROM loyalty_members WHERE customer_id = $1", params![from_customer])?;
    Ok(LoyaltyReassigned { coupons, mall_orders, events, referrals })
}

/// Adds to a member's month of activity.
pub fn add_activity(
    conn: &mut Conn<'_>,
    customer_id: i64,
    month_index: i64,
    spend_minor: i64,
    visits: i64,
    points: i64,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO loyalty_activity (customer_id, month_index, spend_minor, visits, points_earned) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, month_index) DO UPDATE SET \
         spend_minor = loyalty_activity.spend_minor + excluded.spend_minor, \
         visits = loyalty_activity.visits + excluded.visits, \
         points_earned = loyalty_activity.points_earned + excluded.points_earned",
        params![customer_id, month_index, spend_minor, visits, points],
    )?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierChangeRecord {
    pub id: i64,
    pub customer_id: i64,
    pub from_tier: Option<String>,
    pub to_tier: String,
    pub reason: String,
    pub detail_json: String,
    pub actor: String,
    pub created_at_ms: i64,
}

pub fn insert_tier_change(conn: &mut Conn<'_>, change: &TierChangeRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO loyalty_tier_history (customer_id, from_tier, to_tier, reason, detail_json, actor, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params![
            change.customer_id,
            &change.from_tier,
            &change.to_tier,
            &change.reason,
            &change.detail_json,
            &change.actor,
            change.created_at_ms
        ],
    )?;
    Ok(())
}

pub fn tier_history(conn: &mut Conn<'_>, customer_id: i64, limit: i64) -> StoreResult<Vec<TierChangeRecord>> {
    conn.query(
        "SELECT id, customer_id, from_tier, to_tier, reason, detail_json, actor, created_at_ms FROM loyalty_tier_history \
         WHERE customer_id = $1 ORDER BY id DESC LIMIT $2",
        params![customer_id, bounded(limit)],
        |row| {
            Ok(TierChangeRecord {
                id: row.get(0)?,
                customer_id: row.get(1)?,
                from_tier: row.get(2)?,
                to_tier: row.get(3)?,
                reason: row.get(4)?,
                detail_json: row.get(5)?,
                actor: row.get(6)?,
                created_at_ms: row.get(7)?,
            })
        },
    )
}

/// Puts the member's cards in use on `tier` (checkout reads the discount from the card).
pub fn set_card_tiers(conn: &mut Conn<'_>, customer_id: i64, tier: &str, now_ms: i64) -> StoreResult<u64> {
    conn.execute(
        "UPDATE cards SET tier = $2, version = version + 1, updated_at_ms = $3 \
         WHERE customer_id = $1 AND tier <> $2 AND status NOT IN ('closed', 'replaced')",
        params![customer_id, tier, now_ms],
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotRecord {
    pub id: i64,
    pub customer_id: i64,
    pub account_id: i64,
    pub operation_id: i64,
    pub source: String,
    pub points_earned: i64,
    pub points_remaining: i64,
    pub points_expired: i64,
    pub earned_at_ms: i64,
    pub available_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

const LOT_COLUMNS: &str = "id, customer_id, account_id, operation_id, source, points_earned, points_remaining, \
     points_expired, earned_at_ms, available_at_ms, expires_at_ms";

fn lot_from(row: &Row<'_>) -> StoreResult<LotRecord> {
    Ok(LotRecord {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        account_id: row.get(2)?,
        operation_id: row.get(3)?,
        source: row.get(4)?,
        points_earned: row.get(5)?,
        points_remaining: row.get(6)?,
        points_expired: row.get(7)?,
        earned_at_ms: row.get(8)?,
        available_at_ms: row.get(9)?,
        expires_at_ms: row.get(10)?,
    })
}

pub fn insert_lot(conn: &mut Conn<'_>, lot: &LotRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO points_lots (customer_id, account_id, operation_id, source, points_earned, points_remaining, \
         points_expired, earned_at_ms, available_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         RETURNING id",
        params![
            lot.customer_id,
            lot.account_id,
            lot.operation_id,
            &lot.source,
            lot.points_earned,
            lot.points_remaining,
            lot.points_expired,
            lot.earned_at_ms,
            lot.available_at_ms,
            lot.expires_at_ms
        ],
        |row| row.get(0),
    )
}

/// A member's lots that still hold points (or, with `all`, every lot), soonest expiry first.
pub fn lots_of(conn: &mut Conn<'_>, customer_id: i64, all: bool, limit: i64) -> StoreResult<Vec<LotRecord>> {
    conn.query(
        &format!(
            "SELECT {LOT_COLUMNS} FROM points_lots WHERE customer_id = $1 AND ($2 = 1 OR points_remaining > 0) \
             ORDER BY expires_at_ms, id LIMIT $3"
        ),
        params![customer_id, i64::from(all), limit.clamp(1, 100_000)],
        lot_from,
    )
}

/// The lots `operation_id` made for a member. Found through the member's lots (there is no
/// index on the operation: every earning would write one more index page for the sake of
/// refunds, which are rare and know their member).
pub fn lots_of_operation(
    conn: &mut Conn<'_>,
    customer_id: i64,
    operation_id: i64,
) -> StoreResult<Vec<LotRecord>> {
    conn.query(
        &format!(
            "SELECT {LOT_COLUMNS} FROM points_lots WHERE customer_id = $1 AND operation_id = $2 ORDER BY id"
        ),
        params![customer_id, operation_id],
        lot_from,
    )
}

pub fn lot(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<LotRecord>> {
    conn.query_optional(
        &format!("SELECT {LOT_COLUMNS} FROM points_lots WHERE id = $1"),
        params![id],
        lot_from,
    )
}

/// Takes `points` from a lot if it still holds them; false when it does not (a concurrent
/// transaction took them).
pub fn take_from_lot(conn: &mut Conn<'_>, lot_id: i64, points: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE points_lots SET points_remaining = points_remaining - $2 WHERE id = $1 AND points_remaining >= $2",
        params![lot_id, points],
    )? == 1)
}

/// Gives `points` back to a lot they were taken from.
pub fn return_to_lot(conn: &mut Conn<'_>, lot_id: i64, points: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE points_lots SET points_remaining = points_remaining + $2 \
         WHERE id = $1 AND points_remaining + points_expired + $2 <= points_earned",
        params![lot_id, points],
    )? == 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotMove {
    pub lot_id: i64,
    pub operation_id: i64,
    pub points: i64,
    pub kind: String,
}

pub fn insert_lot_move(conn: &mut Conn<'_>, lot_move: &LotMove, now_ms: i64) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO points_lot_moves (lot_id, operation_id, points, kind, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
        params![lot_move.lot_id, lot_move.operation_id, lot_move.points, &lot_move.kind, now_ms],
    )?;
    Ok(())
}

pub fn lot_moves_of_operation(conn: &mut Conn<'_>, operation_id: i64) -> StoreResult<Vec<LotMove>> {
    conn.query(
        "SELECT lot_id, operation_id, points, kind FROM points_lot_moves WHERE operation_id = $1 ORDER BY id",
        params![operation_id],
        |row| {
            Ok(LotMove {
                lot_id: row.get(0)?,
                operation_id: row.get(1)?,
                points: row.get(2)?,
                kind: row.get(3)?,
            })
        },
    )
}

/// Points a member earned from purchases since `since_ms` (the daily cap counts them).
pub fn purchase_points_since(conn: &mut Conn<'_>, customer_id: i64, since_ms: i64) -> StoreResult<i64> {
    conn.query_one(
        "SELECT CAST(coalesce(sum(points_earned), 0) AS BIGINT) FROM points_lots \
         WHERE customer_id = $1 AND source = 'purchase' AND earned_at_ms >= $2",
        params![customer_id, since_ms],
        |row| row.get(0),
    )
}

/// Points a member's lots still hold.
pub fn points_remaining_of(conn: &mut Conn<'_>, customer_id: i64) -> StoreResult<i64> {
    conn.query_one(
        "SELECT CAST(coalesce(sum(points_remaining), 0) AS BIGINT) FROM points_lots WHERE customer_id = $1",
        params![customer_id],
        |row| row.get(0),
    )
}

/// Whether the member has earned from a purchase before.
pub fn has_purchase_lot(conn: &mut Conn<'_>, customer_id: i64) -> StoreResult<bool> {
    Ok(conn
        .query_optional(
            "SELECT 1 FROM points_lots WHERE customer_id = $1 AND source = 'purchase' LIMIT 1",
            params![customer_id],
            |row| row.get::<i64>(0),
        )?
        .is_some())
}

/// The lowest and highest member id with points that expired by `now_ms`.
pub fn expiring_range(conn: &mut Conn<'_>, now_ms: i64) -> StoreResult<Option<(i64, i64)>> {
    conn.query_optional(
        "SELECT min(customer_id), max(customer_id) FROM points_lots WHERE expires_at_ms <= $1 AND points_remaining > 0 \
         HAVING count(*) > 0",
        params![now_ms],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// Points expired by `now_ms` of members with ids in `[from, to)`.
pub fn expiring_points(
    conn: &mut Conn<'_>,
    from_customer: i64,
    to_customer: i64,
    now_ms: i64,
) -> StoreResult<i64> {
    conn.query_one(
        "SELECT CAST(coalesce(sum(points_remaining), 0) AS BIGINT) FROM points_lots \
         WHERE customer_id >= $1 AND customer_id < $2 AND expires_at_ms <= $3 AND points_remaining > 0",
        params![from_customer, to_customer, now_ms],
        |row| row.get(0),
    )
}

/// Expires, set-based, every lot of members with ids in `[from, to)` that expired by
/// `now_ms`: one transfer per member account to `breakage_account_id` under `operation_id`,
/// the accounts' posted debits, and the lots emptied. Returns (accounts, points).
pub fn expire_lots(
    conn: &mut Conn<'_>,
    from_customer: i64,
    to_customer: i64,
    now_ms: i64,
    operation_id: i64,
    breakage_account_id: i64,
    asset: &str,
) -> StoreResult<(u64, i64)> {
    let scope = "customer_id >= $1 AND customer_id < $2 AND expires_at_ms <= $3 AND points_remaining > 0";
    let accounts = conn.execute(
        &format!(
            "INSERT INTO ledger_transfers (operation_id, debit_account_id, credit_account_id, amount_minor, asset, purpose, \
             reverses_transfer_id, created_at_ms) SELECT $4, account_id, $5, sum(points_remaining), $6, 'points_expire', NULL, $3 \
             FROM points_lots WHERE {scope} GROUP BY account_id ORDER BY account_id"
        ),
        params![from_customer, to_customer, now_ms, operation_id, breakage_account_id, asset],
    )?;
    // From the lots, not from the transfers just written, and the accounts of this block's
    // members only: both indexes bound the work to the block whatever the planner thinks.
    conn.execute(
        &format!(
            "UPDATE ledger_accounts SET debits_posted = debits_posted + e.points FROM \
             (SELECT account_id, sum(points_remaining) AS points FROM points_lots WHERE {scope} GROUP BY account_id) e \
             WHERE ledger_accounts.id = e.account_id AND ledger_accounts.tracks_balance = 1 \
             AND ledger_accounts.customer_id >= $1 AND ledger_accounts.customer_id < $2"
        ),
        params![from_customer, to_customer, now_ms],
    )?;
    conn.execute(
        &format!(
            "UPDATE points_lots SET points_expired = points_expired + points_remaining, points_remaining = 0 WHERE {scope}"
        ),
        params![from_customer, to_customer, now_ms],
    )?;
    let points = conn.query_one(
        "SELECT CAST(coalesce(sum(amount_minor), 0) AS BIGINT) FROM ledger_transfers WHERE operation_id = $1",
        params![operation_id],
        |row| row.get(0),
    )?;
    Ok((accounts, points))
}

/// Raises one `points_expiring` event per member and expiry moment for points expiring in
/// `(now, now + horizon]`, once. Returns how many were new.
pub fn raise_expiry_reminders(conn: &mut Conn<'_>, now_ms: i64, horizon_ms: i64) -> StoreResult<u64> {
    conn.execute(
        "INSERT INTO loyalty_events (kind, customer_id, due_at_ms, detail_json, created_at_ms) \
         SELECT 'points_expiring', customer_id, expires_at_ms, \
         '{\"points\":' || CAST(sum(points_remaining) AS TEXT) || '}', $1 FROM points_lots \
         WHERE expires_at_ms > $1 AND expires_at_ms <= $2 AND points_remaining > 0 \
         GROUP BY customer_id, expires_at_ms ON CONFLICT (kind, customer_id, due_at_ms) DO NOTHING",
        params![now_ms, now_ms + horizon_ms],
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    pub kind: String,
    pub customer_id: i64,
    pub due_at_ms: i64,
    pub detail_json: String,
    pub created_at_ms: i64,
}

pub fn insert_event(conn: &mut Conn<'_>, event: &EventRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO loyalty_events (kind, customer_id, due_at_ms, detail_json, created_at_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (kind, customer_id, due_at_ms) DO NOTHING",
        params![&event.kind, event.customer_id, event.due_at_ms, &event.detail_json, event.created_at_ms],
    )?;
    Ok(())
}

pub fn events(
    conn: &mut Conn<'_>,
    after_id: i64,
    customer_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<EventRecord>> {
    conn.query(
        "SELECT id, kind, customer_id, due_at_ms, detail_json, created_at_ms FROM loyalty_events \
         WHERE id > $1 AND (CAST($2 AS BIGINT) IS NULL OR customer_id = $2) ORDER BY id LIMIT $3",
        params![after_id, customer_id, bounded(limit)],
        |row| {
            Ok(EventRecord {
                id: row.get(0)?,
                kind: row.get(1)?,
                customer_id: row.get(2)?,
                due_at_ms: row.get(3)?,
                detail_json: row.get(4)?,
                created_at_ms: row.get(5)?,
            })
        },
    )
}

pub fn sale_operation(conn: &mut Conn<'_>, store_key: &str, external_id: &str) -> StoreResult<Option<i64>> {
    conn.query_optional(
        "SELECT operation_id FROM loyalty_sales WHERE store_key = $1 AND external_id = $2",
        params![store_key, external_id],
        |row| row.get(0),
    )
}

pub fn insert_sale(
    conn: &mut Conn<'_>,
    store_key: &str,
    external_id: &str,
    operation_id: i64,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO loyalty_sales (store_key, external_id, operation_id) VALUES ($1, $2, $3)",
        params![store_key, external_id, operation_id],
    )?;
    Ok(())
}

/// Outstanding points by state at `now_ms`: (spendable, pending, expiring within
/// `horizon_ms`, members holding points).
pub fn points_outstanding(
    conn: &mut Conn<'_>,
    now_ms: i64,
    horizon_ms: i64,
) -> StoreResult<(i64, i64, i64, i64)> {
    conn.query_one(
        "SELECT CAST(coalesce(sum(CASE WHEN available_at_ms <= $1 THEN points_remaining ELSE 0 END), 0) AS BIGINT), \
         CAST(coalesce(sum(CASE WHEN available_at_ms > $1 THEN points_remaining ELSE 0 END), 0) AS BIGINT), \
         CAST(coalesce(sum(CASE WHEN expires_at_ms <= $2 THEN points_remaining ELSE 0 END), 0) AS BIGINT), \
         count(DISTINCT customer_id) FROM points_lots WHERE points_remaining > 0",
        params![now_ms, now_ms + horizon_ms],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )
}

/// Points earned and points expired on lots earned in `[from_ms, to_ms)`.
pub fn lot_outcomes(conn: &mut Conn<'_>, from_ms: i64, to_ms: i64) -> StoreResult<(i64, i64)> {
    conn.query_one(
        "SELECT CAST(coalesce(sum(points_earned), 0) AS BIGINT), CAST(coalesce(sum(points_expired), 0) AS BIGINT) \
         FROM points_lots WHERE earned_at_ms >= $1 AND earned_at_ms < $2",
        params![from_ms, to_ms],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// Points accounts whose balance differs from what their lots hold (at most 1,000).
pub fn lot_mismatches(conn: &mut Conn<'_>) -> StoreResult<Vec<i64>> {
    conn.query(
        "SELECT a.id FROM ledger_accounts a LEFT JOIN (SELECT account_id, sum(points_remaining) AS held FROM points_lots \
         GROUP BY account_id) l ON l.account_id = a.id WHERE a.kind = 'member_points' \
         AND a.credits_posted - a.debits_posted <> coalesce(l.held, 0) ORDER BY a.id LIMIT 1000",
        params![],
        |row| row.get(0),
    )
}
