//! Coupons 优惠券 (templates and issued codes), the points mall 积分商城 (rewards and
//! redemption orders) and co-branded partners 联名.

use crate::{Conn, Row, StoreResult, Value, params, repo::bounded};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub kind: String,
    pub amount_off_minor: i64,
    pub percent_off_bp: i64,
    pub cap_minor: Option<i64>,
    pub threshold_minor: i64,
    pub category: Option<String>,
    pub gift_name: Option<String>,
    pub valid_from_ms: Option<i64>,
    pub valid_to_ms: Option<i64>,
    pub valid_days: Option<i64>,
    pub stackable: bool,
    pub per_member_max: Option<i64>,
    pub issue_max: Option<i64>,
    pub issued_count: i64,
    pub status: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const TEMPLATE_COLUMNS: &str = "id, code, name, kind, amount_off_minor, percent_off_bp, cap_minor, threshold_minor, category, \
     gift_name, valid_from_ms, valid_to_ms, valid_days, stackable, per_member_max, issue_max, issued_count, status, \
     created_at_ms, updated_at_ms";

fn template_from(row: &Row<'_>) -> StoreResult<TemplateRecord> {
    Ok(TemplateRecord {
        id: row.get(0)?,
        code: row.get(1)?,
        name: row.get(2)?,
        kind: row.get(3)?,
        amount_off_minor: row.get(4)?,
        percent_off_bp: row.get(5)?,
        cap_minor: row.get(6)?,
        threshold_minor: row.get(7)?,
        category: row.get(8)?,
        gift_name: row.get(9)?,
        valid_from_ms: row.get(10)?,
        valid_to_ms: row.get(11)?,
        valid_days: row.get(12)?,
        stackable: row.get(13)?,
        per_member_max: row.get(14)?,
        issue_max: row.get(15)?,
        issued_count: row.get(16)?,
        status: row.get(17)?,
        created_at_ms: row.get(18)?,
        updated_at_ms: row.get(19)?,
    })
}

pub fn insert_template(conn: &mut Conn<'_>, t: &TemplateRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO coupon_templates (code, name, kind, amount_off_minor, percent_off_bp, cap_minor, threshold_minor, \
         category, gift_name, valid_from_ms, valid_to_ms, valid_days, stackable, per_member_max, issue_max, issued_count, \
         status, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0, \
         $16, $17, $18) RETURNING id",
        params![
            &t.code,
            &t.name,
            &t.kind,
            t.amount_off_minor,
            t.percent_off_bp,
            t.cap_minor,
            t.threshold_minor,
            &t.category,
            &t.gift_name,
            t.valid_from_ms,
            t.valid_to_ms,
            t.valid_days,
            t.stackable,
            t.per_member_max,
            t.issue_max,
            &t.status,
            t.created_at_ms,
            t.updated_at_ms
        ],
        |row| row.get(0),
    )
}

pub fn template(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<TemplateRecord>> {
    conn.query_optional(
        &format!("SELECT {TEMPLATE_COLUMNS} FROM coupon_templates WHERE id = $1"),
        params![id],
        template_from,
    )
}

pub fn templates(conn: &mut Conn<'_>, after_id: i64, limit: i64) -> StoreResult<Vec<TemplateRecord>> {
    conn.query(
        &format!("SELECT {TEMPLATE_COLUMNS} FROM coupon_templates WHERE id > $1 ORDER BY id LIMIT $2"),
        params![after_id, bounded(limit)],
        template_from,
    )
}

pub fn set_template_status(conn: &mut Conn<'_>, id: i64, status: &str, now_ms: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE coupon_templates SET status = $2, updated_at_ms = $3 WHERE id = $1",
        params![id, status, now_ms],
    )? == 1)
}

/// Counts `count` more coupons as issued from a template, if its issue limit allows.
pub fn count_issued(conn: &mut Conn<'_>, id: i64, count: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE coupon_templates SET issued_count = issued_count + $2 \
         WHERE id = $1 AND (issue_max IS NULL OR issued_count + $2 <= issue_max)",
        params![id, count],
    )? == 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponRecord {
    pub id: i64,
    pub template_id: i64,
    pub code: String,
    pub customer_id: i64,
    pub status: String,
    pub source: String,
    pub valid_from_ms: i64,
    pub valid_to_ms: i64,
    pub redeemed_operation_id: Option<i64>,
    pub redeemed_at_ms: Option<i64>,
    pub cancelled_at_ms: Option<i64>,
    pub issued_at_ms: i64,
}

const COUPON_COLUMNS: &str = "id, template_id, code, customer_id, status, source, valid_from_ms, valid_to_ms, \
     redeemed_operation_id, redeemed_at_ms, cancelled_at_ms, issued_at_ms";

fn coupon_from(row: &Row<'_>) -> StoreResult<CouponRecord> {
    Ok(CouponRecord {
        id: row.get(0)?,
        template_id: row.get(1)?,
        code: row.get(2)?,
        customer_id: row.get(3)?,
        status: row.get(4)?,
        source: row.get(5)?,
        valid_from_ms: row.get(6)?,
        valid_to_ms: row.get(7)?,
        redeemed_operation_id: row.get(8)?,
        redeemed_at_ms: row.get(9)?,
        cancelled_at_ms: row.get(10)?,
        issued_at_ms: row.get(11)?,
    })
}

/// Inserts coupons in one statement per 100; returns their ids in order.
pub fn insert_coupons(conn: &mut Conn<'_>, coupons: &[CouponRecord]) -> StoreResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(coupons.len());
    for coupon in coupons {
        ids.push(conn.query_one(
            "INSERT INTO coupons (template_id, code, customer_id, status, source, valid_from_ms, valid_to_ms, issued_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            params![
                coupon.template_id,
                &coupon.code,
                coupon.customer_id,
                &coupon.status,
                &coupon.source,
                coupon.valid_from_ms,
                coupon.valid_to_ms,
                coupon.issued_at_ms
            ],
            |row| row.get(0),
        )?);
    }
    Ok(ids)
}

pub fn coupon(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<CouponRecord>> {
    conn.query_optional(
        &format!("SELECT {COUPON_COLUMNS} FROM coupons WHERE id = $1"),
        params![id],
        coupon_from,
    )
}

pub fn coupon_by_code(conn: &mut Conn<'_>, code: &str) -> StoreResult<Option<CouponRecord>> {
    conn.query_optional(
        &format!("SELECT {COUPON_COLUMNS} FROM coupons WHERE code = $1"),
        params![code],
        coupon_from,
    )
}

pub fn coupons_of(
    conn: &mut Conn<'_>,
    customer_id: i64,
    after_id: i64,
    limit: i64,
) -> StoreResult<Vec<CouponRecord>> {
    conn.query(
        &format!(
            "SELECT {COUPON_COLUMNS} FROM coupons WHERE customer_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ),
        params![customer_id, after_id, bounded(limit)],
        coupon_from,
    )
}

pub fn coupons_redeemed_by(conn: &mut Conn<'_>, operation_id: i64) -> StoreResult<Vec<CouponRecord>> {
    conn.query(
        &format!("SELECT {COUPON_COLUMNS} FROM coupons WHERE redeemed_operation_id = $1 ORDER BY id"),
        params![operation_id],
        coupon_from,
    )
}

/// How many coupons of a template a member holds (any status but cancelled).
pub fn member_coupon_count(conn: &mut Conn<'_>, template_id: i64, customer_id: i64) -> StoreResult<i64> {
    conn.query_one(
        "SELECT count(*) FROM coupons WHERE template_id = $1 AND customer_id = $2 AND status <> 'cancelled'",
        params![template_id, customer_id],
        |row| row.get(0),
    )
}

/// Marks an issued coupon redeemed by `operation_id`; false when it is no longer issued.
pub fn redeem_coupon(conn: &mut Conn<'_>, id: i64, operation_id: i64, now_ms: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE coupons SET status = 'redeemed', redeemed_operation_id = $2, redeemed_at_ms = $3 \
         WHERE id = $1 AND status = 'issued'",
        params![id, operation_id, now_ms],
    )? == 1)
}

/// Gives a redeemed coupon back (its checkout was refunded in full).
pub fn unredeem_coupon(conn: &mut Conn<'_>, id: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE coupons SET status = 'issued', redeemed_operation_id = NULL, redeemed_at_ms = NULL \
         WHERE id = $1 AND status = 'redeemed'",
        params![id],
    )? == 1)
}

pub fn cancel_coupon(conn: &mut Conn<'_>, id: i64, now_ms: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE coupons SET status = 'cancelled', cancelled_at_ms = $2 WHERE id = $1 AND status = 'issued'",
        params![id, now_ms],
    )? == 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardRecord {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub kind: String,
    pub points_price: i64,
    pub cash_price_minor: i64,
    pub coupon_template_id: Option<i64>,
    pub stock: Option<i64>,
    pub per_member_max: Option<i64>,
    pub status: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const REWARD_COLUMNS: &str = "id, code, name, kind, points_price, cash_price_minor, coupon_template_id, stock, \
     per_member_max, status, created_at_ms, updated_at_ms";

fn reward_from(row: &Row<'_>) -> StoreResult<RewardRecord> {
    Ok(RewardRecord {
        id: row.get(0)?,
        code: row.get(1)?,
        name: row.get(2)?,
        kind: row.get(3)?,
        points_price: row.get(4)?,
        cash_price_minor: row.get(5)?,
        coupon_template_id: row.get(6)?,
        stock: row.get(7)?,
        per_member_max: row.get(8)?,
        status: row.get(9)?,
        created_at_ms: row.get(10)?,
        updated_at_ms: row.get(11)?,
    })
}

pub fn insert_reward(conn: &mut Conn<'_>, r: &RewardRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO mall_rewards (code, name, kind, points_price, cash_price_minor, coupon_template_id, stock, \
         per_member_max, status, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        params![
            &r.code,
            &r.name,
            &r.kind,
            r.points_price,
            r.cash_price_minor,
            r.coupon_template_id,
            r.stock,
            r.per_member_max,
            &r.status,
            r.created_at_ms,
            r.updated_at_ms
        ],
        |row| row.get(0),
    )
}

pub fn reward(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<RewardRecord>> {
    conn.query_optional(
        &format!("SELECT {REWARD_COLUMNS} FROM mall_rewards WHERE id = $1"),
        params![id],
        reward_from,
    )
}

pub fn rewards(conn: &mut Conn<'_>, after_id: i64, limit: i64) -> StoreResult<Vec<RewardRecord>> {
    conn.query(
        &format!("SELECT {REWARD_COLUMNS} FROM mall_rewards WHERE id > $1 ORDER BY id LIMIT $2"),
        params![after_id, bounded(limit)],
        reward_from,
    )
}

/// Takes `quantity` from a reward's stock (unlimited stock always has it).
pub fn take_stock(conn: &mut Conn<'_>, id: i64, quantity: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE mall_rewards SET stock = CASE WHEN stock IS NULL THEN NULL ELSE stock - $2 END \
         WHERE id = $1 AND (stock IS NULL OR stock >= $2)",
        params![id, quantity],
    )? == 1)
}

pub fn return_stock(conn: &mut Conn<'_>, id: i64, quantity: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE mall_rewards SET stock = CASE WHEN stock IS NULL THEN NULL ELSE stock + $2 END WHERE id = $1",
        params![id, quantity],
    )?;
    Ok(())
}

pub fn update_reward(conn: &mut Conn<'_>, r: &RewardRecord) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE mall_rewards SET name = $2, points_price = $3, cash_price_minor = $4, stock = $5, per_member_max = $6, \
         status = $7, updated_at_ms = $8 WHERE id = $1",
        params![r.id, &r.name, r.points_price, r.cash_price_minor, r.stock, r.per_member_max, &r.status, r.updated_at_ms],
    )? == 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: i64,
    pub reward_id: i64,
    pub customer_id: i64,
    pub quantity: i64,
    pub points: i64,
    pub cash_minor: i64,
    pub status: String,
    pub operation_id: i64,
    pub cancel_operation_id: Option<i64>,
    pub coupon_ids: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const ORDER_COLUMNS: &str = "id, reward_id, customer_id, quantity, points, cash_minor, status, operation_id, \
     cancel_operation_id, coupon_ids, created_at_ms, updated_at_ms";

fn order_from(row: &Row<'_>) -> StoreResult<OrderRecord> {
    Ok(OrderRecord {
        id: row.get(0)?,
        reward_id: row.get(1)?,
        customer_id: row.get(2)?,
        quantity: row.get(3)?,
        points: row.get(4)?,
        cash_minor: row.get(5)?,
        status: row.get(6)?,
        operation_id: row.get(7)?,
        cancel_operation_id: row.get(8)?,
        coupon_ids: row.get(9)?,
        created_at_ms: row.get(10)?,
        updated_at_ms: row.get(11)?,
    })
}

pub fn insert_order(conn: &mut Conn<'_>, o: &OrderRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO mall_orders (reward_id, customer_id, quantity, points, cash_minor, status, operation_id, coupon_ids, \
         created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        params![
            o.reward_id,
            o.customer_id,
            o.quantity,
            o.points,
            o.cash_minor,
            &o.status,
            o.operation_id,
            &o.coupon_ids,
            o.created_at_ms,
            o.updated_at_ms
        ],
        |row| row.get(0),
    )
}

pub fn order(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<OrderRecord>> {
    conn.query_optional(
        &format!("SELECT {ORDER_COLUMNS} FROM mall_orders WHERE id = $1"),
        params![id],
        order_from,
    )
}

pub fn order_of_operation(conn: &mut Conn<'_>, operation_id: i64) -> StoreResult<Option<OrderRecord>> {
    conn.query_optional(
        &format!("SELECT {ORDER_COLUMNS} FROM mall_orders WHERE operation_id = $1"),
        params![operation_id],
        order_from,
    )
}

pub fn orders(
    conn: &mut Conn<'_>,
    customer_id: Option<i64>,
    after_id: i64,
    limit: i64,
) -> StoreResult<Vec<OrderRecord>> {
    let customer: Value<'_> = customer_id.into();
    conn.query(
        &format!(
            "SELECT {ORDER_COLUMNS} FROM mall_orders WHERE (CAST($1 AS BIGINT) IS NULL OR customer_id = $1) AND id > $2 ORDER BY id LIMIT $3"
        ),
        &[customer, after_id.into(), bounded(limit).into()],
        order_from,
    )
}

/// How many of a reward a member ordered (cancelled orders do not count).
pub fn ordered_quantity(conn: &mut Conn<'_>, reward_id: i64, customer_id: i64) -> StoreResult<i64> {
    conn.query_one(
        "SELECT CAST(coalesce(sum(quantity), 0) AS BIGINT) FROM mall_orders \
         WHERE reward_id = $1 AND customer_id = $2 AND status <> 'cancelled'",
        params![reward_id, customer_id],
        |row| row.get(0),
    )
}

/// Moves an order from `from` to `to`; false when it is no longer in `from`.
pub fn set_order_status(
    conn: &mut Conn<'_>,
    id: i64,
    from: &str,
    to: &str,
    cancel_operation_id: Option<i64>,
    now_ms: i64,
) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE mall_orders SET status = $3, cancel_operation_id = coalesce($4, cancel_operation_id), updated_at_ms = $5 \
         WHERE id = $1 AND status = $2",
        params![id, from, to, cancel_operation_id, now_ms],
    )? == 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerRecord {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub points_in_per_100: i64,
    pub points_out_per_100: i64,
    pub status: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

fn partner_from(row: &Row<'_>) -> StoreResult<PartnerRecord> {
    Ok(PartnerRecord {
        id: row.get(0)?,
        code: row.get(1)?,
        name: row.get(2)?,
        points_in_per_100: row.get(3)?,
        points_out_per_100: row.get(4)?,
        status: row.get(5)?,
        created_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
    })
}

const PARTNER_COLUMNS: &str =
    "id, code, name, points_in_per_100, points_out_per_100, status, created_at_ms, updated_at_ms";

pub fn insert_partner(conn: &mut Conn<'_>, p: &PartnerRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO loyalty_partners (code, name, points_in_per_100, points_out_per_100, status, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        params![&p.code, &p.name, p.points_in_per_100, p.points_out_per_100, &p.status, p.created_at_ms, p.updated_at_ms],
        |row| row.get(0),
    )
}

pub fn partner(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<PartnerRecord>> {
    conn.query_optional(
        &format!("SELECT {PARTNER_COLUMNS} FROM loyalty_partners WHERE id = $1"),
        params![id],
        partner_from,
    )
}

pub fn partners(conn: &mut Conn<'_>) -> StoreResult<Vec<PartnerRecord>> {
    conn.query(
        &format!("SELECT {PARTNER_COLUMNS} FROM loyalty_partners ORDER BY id LIMIT 1000"),
        params![],
        partner_from,
    )
}
