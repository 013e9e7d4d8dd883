//! Tiers, card products and cards. A card number arrives sealed with its blind index
//! already computed; this module stores and finds bytes.

use crate::{Conn, Row, StoreResult, params, repo::bounded};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRecord {
    pub code: String,
    pub name: String,
    pub rank: i64,
    pub discount_bp: i64,
    pub points_multiplier_pct: i64,
    pub benefits_json: String,
    pub updated_at_ms: i64,
}

pub fn tiers(conn: &mut Conn<'_>) -> StoreResult<Vec<TierRecord>> {
    conn.query(
        "SELECT code, name, rank, discount_bp, points_multiplier_pct, benefits_json, updated_at_ms \
         FROM card_tiers ORDER BY rank LIMIT 100",
        params![],
        |row| {
            Ok(TierRecord {
                code: row.get(0)?,
                name: row.get(1)?,
                rank: row.get(2)?,
                discount_bp: row.get(3)?,
                points_multiplier_pct: row.get(4)?,
                benefits_json: row.get(5)?,
                updated_at_ms: row.get(6)?,
            })
        },
    )
}

pub fn tier(conn: &mut Conn<'_>, code: &str) -> StoreResult<Option<TierRecord>> {
    Ok(tiers(conn)?.into_iter().find(|tier| tier.code == code))
}

/// Changes a tier's name, discount, multiplier and benefits; false when there is no such tier.
pub fn update_tier(conn: &mut Conn<'_>, tier: &TierRecord) -> StoreResult<bool> {
    let changed = conn.execute(
        "UPDATE card_tiers SET name = $2, discount_bp = $3, points_multiplier_pct = $4, benefits_json = $5, \
         updated_at_ms = $6 WHERE code = $1",
        params![
            &tier.code,
            &tier.name,
            tier.discount_bp,
            tier.points_multiplier_pct,
            &tier.benefits_json,
            tier.updated_at_ms
        ],
    )?;
    Ok(changed == 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub kind: String,
    pub currency: String,
    pub number_prefix: String,
    pub bonus_rules_json: String,
    pub spend_order: String,
    pub pin_required_above_minor: Option<i64>,
    pub top_up_max_minor: i64,
    pub spend_max_minor: i64,
    pub balance_max_minor: i64,
    pub close_policy: String,
    pub validity_months: Option<i64>,
    pub default_tier: String,
    pub status: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const PRODUCT_COLUMNS: &str = "id, code, name, kind, currency, number_prefix, bonus_rules_json, spend_order, \
     pin_required_above_minor, top_up_max_minor, spend_max_minor, balance_max_minor, close_policy, \
     validity_months, default_tier, status, created_at_ms, updated_at_ms";

fn product_from(row: &Row<'_>) -> StoreResult<ProductRecord> {
    Ok(ProductRecord {
        id: row.get(0)?,
        code: row.get(1)?,
        name: row.get(2)?,
        kind: row.get(3)?,
        currency: row.get(4)?,
        number_prefix: row.get(5)?,
        bonus_rules_json: row.get(6)?,
        spend_order: row.get(7)?,
        pin_required_above_minor: row.get(8)?,
        top_up_max_minor: row.get(9)?,
        spend_max_minor: row.get(10)?,
        balance_max_minor: row.get(11)?,
        close_policy: row.get(12)?,
        validity_months: row.get(13)?,
        default_tier: row.get(14)?,
        status: row.get(15)?,
        created_at_ms: row.get(16)?,
        updated_at_ms: row.get(17)?,
    })
}

pub fn insert_product(conn: &mut Conn<'_>, product: &ProductRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO card_products (code, name, kind, currency, number_prefix, bonus_rules_json, spend_order, \
         pin_required_above_minor, top_up_max_minor, spend_max_minor, balance_max_minor, close_policy, \
         validity_months, default_tier, status, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id",
        params![
            &product.code,
            &product.name,
            &product.kind,
            &product.currency,
            &product.number_prefix,
            &product.bonus_rules_json,
            &product.spend_order,
            product.pin_required_above_minor,
            product.top_up_max_minor,
            product.spend_max_minor,
            product.balance_max_minor,
            &product.close_policy,
            product.validity_months,
            &product.default_tier,
            &product.status,
            product.created_at_ms,
            product.updated_at_ms
        ],
        |row| row.get(0),
    )
}

/// Writes every changeable column of a product (kind, currency and code stay).
pub fn update_product(conn: &mut Conn<'_>, product: &ProductRecord) -> StoreResult<()> {
    conn.execute(
        "UPDATE card_products SET name = $2, number_prefix = $3, bonus_rules_json = $4, spend_order = $5, \
         pin_required_above_minor = $6, top_up_max_minor = $7, spend_max_minor = $8, balance_max_minor = $9, \
         close_policy = $10, validity_months = $11, default_tier = $12, status = $13, updated_at_ms = $14 \
         WHERE id = $1",
        params![
            product.id,
            &product.name,
            &product.number_prefix,
            &product.bonus_rules_json,
            &product.spend_order,
            product.pin_required_above_minor,
            product.top_up_max_minor,
            product.spend_max_minor,
            product.balance_max_minor,
            &product.close_policy,
            product.validity_months,
            &product.default_tier,
            &product.status,
            product.updated_at_ms
        ],
    )?;
    Ok(())
}

pub fn product(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<ProductRecord>> {
    conn.query_optional(
        &format!("SELECT {PRODUCT_COLUMNS} FROM card_products WHERE id = $1"),
        params![id],
        product_from,
    )
}

pub fn product_by_code(conn: &mut Conn<'_>, code: &str) -> StoreResult<Option<ProductRecord>> {
    conn.query_optional(
        &format!("SELECT {PRODUCT_COLUMNS} FROM card_products WHERE code = $1"),
        params![code],
        product_from,
    )
}

pub fn products(conn: &mut Conn<'_>) -> StoreResult<Vec<ProductRecord>> {
    conn.query(
        &format!("SELECT {PRODUCT_COLUMNS} FROM card_products ORDER BY id LIMIT 1000"),
        params![],
        product_from,
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CardRecord {
    pub id: i64,
    pub number_cipher: Vec<u8>,
    pub number_index: Vec<u8>,
    pub number_last4: String,
    pub product_id: i64,
    pub customer_id: i64,
    pub store_id: Option<i64>,
    pub form: String,
    pub status: String,
    pub freeze_reason: Option<String>,
    pub tier: String,
    pub pin_hash: Option<String>,
    pub pin_failures: i64,
    pub pin_locked_until_ms: Option<i64>,
    pub replaces_card_id: Option<i64>,
    pub replaced_by_card_id: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub version: i64,
    pub issued_at_ms: i64,
    pub activated_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

const CARD_COLUMNS: &str = "id, number_cipher, number_index, number_last4, product_id, customer_id, store_id, form, \
     status, freeze_reason, tier, pin_hash, pin_failures, pin_locked_until_ms, replaces_card_id, replaced_by_card_id, \
     expires_at_ms, version, issued_at_ms, activated_at_ms, closed_at_ms, updated_at_ms";

fn card_from(row: &Row<'_>) -> StoreResult<CardRecord> {
    Ok(CardRecord {
        id: row.get(0)?,
        number_cipher: row.get(1)?,
        number_index: row.get(2)?,
        number_last4: row.get(3)?,
        product_id: row.get(4)?,
        customer_id: row.get(5)?,
        store_id: row.get(6)?,
        form: row.get(7)?,
        status: row.get(8)?,
        freeze_reason: row.get(9)?,
        tier: row.get(10)?,
        pin_hash: row.get(11)?,
        pin_failures: row.get(12)?,
        pin_locked_until_ms: row.get(13)?,
        replaces_card_id: row.get(14)?,
        replaced_by_card_id: row.get(15)?,
        expires_at_ms: row.get(16)?,
        version: row.get(17)?,
        issued_at_ms: row.get(18)?,
        activated_at_ms: row.get(19)?,
        closed_at_ms: row.get(20)?,
        updated_at_ms: row.get(21)?,
    })
}

/// Inserts a card whose id was allocated with [`Conn::allocate_ids`] (its number is sealed
/// with the id as associated data).
pub fn insert_card(conn: &mut Conn<'_>, card: &CardRecord) -> StoreResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO cards ({CARD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20, $21, $22)"
        ),
        params![
            card.id,
            &card.number_cipher,
            &card.number_index,
            &card.number_last4,
            card.product_id,
            card.customer_id,
            card.store_id,
            &card.form,
            &card.status,
            &card.freeze_reason,
            &card.tier,
            &card.pin_hash,
            card.pin_failures,
            card.pin_locked_until_ms,
            card.replaces_card_id,
            card.replaced_by_card_id,
            card.expires_at_ms,
            card.version,
            card.issued_at_ms,
            card.activated_at_ms,
            card.closed_at_ms,
            card.updated_at_ms
        ],
    )?;
    Ok(())
}

/// Writes the changeable columns if the stored version is `expected_version`.
pub fn update_card(conn: &mut Conn<'_>, card: &CardRecord, expected_version: i64) -> StoreResult<bool> {
    let changed = conn.execute(
        "UPDATE cards SET status = $2, freeze_reason = $3, tier = $4, pin_hash = $5, pin_failures = $6, \
         pin_locked_until_ms = $7, replaced_by_card_id = $8, expires_at_ms = $9, version = $10, \
         activated_at_ms = $11, closed_at_ms = $12, updated_at_ms = $13, customer_id = $14 \
         WHERE id = $1 AND version = $15",
        params![
            card.id,
            &card.status,
            &card.freeze_reason,
            &card.tier,
            &card.pin_hash,
            card.pin_failures,
            card.pin_locked_until_ms,
            card.replaced_by_card_id,
            card.expires_at_ms,
            card.version,
            card.activated_at_ms,
            card.closed_at_ms,
            card.updated_at_ms,
            card.customer_id,
            expected_version
        ],
    )?;
    Ok(changed == 1)
}

pub fn card(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<CardRecord>> {
    conn.query_optional(&format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = $1"), params![id], card_from)
}

pub fn card_by_index(conn: &mut Conn<'_>, number_index: &[u8]) -> StoreResult<Option<CardRecord>> {
    conn.query_optional(
        &format!("SELECT {CARD_COLUMNS} FROM cards WHERE number_index = $1"),
        params![number_index],
        card_from,
    )
}

/// A customer's cards, newest first.
pub fn cards_of(conn: &mut Conn<'_>, customer_id: i64) -> StoreResult<Vec<CardRecord>> {
    conn.query(
        &format!("SELECT {CARD_COLUMNS} FROM cards WHERE customer_id = $1 ORDER BY id DESC LIMIT $2"),
        params![customer_id, bounded(200)],
        card_from,
    )
}

/// Moves a merged customer's cards to the survivor.
pub fn reassign(conn: &mut Conn<'_>, from_customer: i64, to_customer: i64) -> StoreResult<u64> {
    conn.execute(
        "UPDATE cards SET customer_id = $2 WHERE customer_id = $1",
        params![from_customer, to_customer],
    )?;
    conn.execute(
        "UPDATE credit_accounts SET customer_id = $2 WHERE customer_id = $1",
        params![from_customer, to_customer],
    )
}
