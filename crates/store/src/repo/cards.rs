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
        tier_from,
    )
}

fn tier_from(row: &Row<'_>) -> StoreResult<TierRecord> {
    Ok(TierRecord {
        code: row.get(0)?,
        name: row.get(1)?,
        rank: row.get(2)?,
        discount_bp: row.get(3)?,
        points_multiplier_pct: row.get(4)?,
        benefits_json: row.get(5)?,
        updated_at_ms: row.get(6)?,
    })
}

pub fn tier(conn: &mut Conn<'_>, code: &str) -> StoreResult<Option<TierRecord>> {
    conn.query_optional(
        "SELECT code, name, rank, discount_bp, points_multiplier_pct, benefits_json, updated_at_ms \
         FROM card_tiers WHERE code = $1",
        params![code],
        tier_from,
    )
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

/// A credit-card account as the issuer's core system reports it (imported, never computed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditAccountRecord {
    pub id: i64,
    pub customer_id: i64,
    pub account_number_cipher: Vec<u8>,
    pub account_number_index: Vec<u8>,
    pub account_last4: String,
    pub credit_limit_minor: i64,
    pub currency: String,
    pub statement_day: Option<i64>,
    pub status: String,
    pub opened_on: Option<String>,
    pub import_id: Option<i64>,
    pub updated_at_ms: i64,
}

const CREDIT_ACCOUNT_COLUMNS: &str = "id, customer_id, account_number_cipher, account_number_index, account_last4, \
     credit_limit_minor, currency, statement_day, status, opened_on, import_id, updated_at_ms";

fn credit_account_from(row: &Row<'_>) -> StoreResult<CreditAccountRecord> {
    Ok(CreditAccountRecord {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        account_number_cipher: row.get(2)?,
        account_number_index: row.get(3)?,
        account_last4: row.get(4)?,
        credit_limit_minor: row.get(5)?,
        currency: row.get(6)?,
        statement_day: row.get(7)?,
        status: row.get(8)?,
        opened_on: row.get(9)?,
        import_id: row.get(10)?,
        updated_at_ms: row.get(11)?,
    })
}

pub fn credit_account_by_index(
    conn: &mut Conn<'_>,
    index: &[u8],
) -> StoreResult<Option<CreditAccountRecord>> {
    conn.query_optional(
        &format!("SELECT {CREDIT_ACCOUNT_COLUMNS} FROM credit_accounts WHERE account_number_index = $1"),
        params![index],
        credit_account_from,
    )
}

/// Inserts the account with its `id` (allocated by the caller, who sealed the number for it).
pub fn insert_credit_account(conn: &mut Conn<'_>, account: &CreditAccountRecord) -> StoreResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO credit_accounts ({CREDIT_ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        params![
            account.id,
            account.customer_id,
            &account.account_number_cipher,
            &account.account_number_index,
            &account.account_last4,
            account.credit_limit_minor,
            &account.currency,
            account.statement_day,
            &account.status,
            &account.opened_on,
            account.import_id,
            account.updated_at_ms
        ],
    )?;
    Ok(())
}

pub fn update_credit_account(conn: &mut Conn<'_>, account: &CreditAccountRecord) -> StoreResult<()> {
    conn.execute(
        "UPDATE credit_accounts SET customer_id = $2, credit_limit_minor = $3, currency = $4, statement_day = $5, \
         status = $6, opened_on = $7, import_id = $8, updated_at_ms = $9 WHERE id = $1",
        params![
            account.id,
            account.customer_id,
            account.credit_limit_minor,
            &account.currency,
            account.statement_day,
            &account.status,
            &account.opened_on,
            account.import_id,
            account.updated_at_ms
        ],
    )?;
    Ok(())
}

pub fn credit_accounts_of(conn: &mut Conn<'_>, customer_id: i64) -> StoreResult<Vec<CreditAccountRecord>> {
    conn.query(
        &format!("SELECT {CREDIT_ACCOUNT_COLUMNS} FROM credit_accounts WHERE customer_id = $1 ORDER BY id LIMIT 100"),
        params![customer_id],
        credit_account_from,
    )
}

/// One statement of a credit account, as the issuer reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditStatementRecord {
    pub account_id: i64,
    pub statement_date: String,
    pub due_date: String,
    pub balance_minor: i64,
    pub minimum_due_minor: i64,
    pub paid_minor: i64,
    pub paid_on: Option<String>,
    pub overdue_days: i64,
    pub import_id: Option<i64>,
    pub created_at_ms: i64,
}

/// Stores a statement, replacing the one of the same account and date (a corrected export).
pub fn upsert_credit_statement(conn: &mut Conn<'_>, statement: &CreditStatementRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO credit_statements (account_id, statement_date, due_date, balance_minor, minimum_due_minor, \
         paid_minor, paid_on, overdue_days, import_id, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (account_id, statement_date) DO UPDATE SET due_date = excluded.due_date, \
         balance_minor = excluded.balance_minor, minimum_due_minor = excluded.minimum_due_minor, \
         paid_minor = excluded.paid_minor, paid_on = excluded.paid_on, overdue_days = excluded.overdue_days, \
         import_id = excluded.import_id",
        params![
            statement.account_id,
            &statement.statement_date,
            &statement.due_date,
            statement.balance_minor,
            statement.minimum_due_minor,
            statement.paid_minor,
            &statement.paid_on,
            statement.overdue_days,
            statement.import_id,
            statement.created_at_ms
        ],
    )?;
    Ok(())
}

/// An account's statements, newest first.
pub fn credit_statements_of(
    conn: &mut Conn<'_>,
    account_id: i64,
    limit: i64,
) -> StoreResult<Vec<CreditStatementRecord>> {
    conn.query(
        "SELECT account_id, statement_date, due_date, balance_minor, minimum_due_minor, paid_minor, paid_on, \
         overdue_days, import_id, created_at_ms FROM credit_statements WHERE account_id = $1 \
         ORDER BY statement_date DESC LIMIT $2",
        params![account_id, limit.clamp(1, 120)],
        |row| {
            Ok(CreditStatementRecord {
                account_id: row.get(0)?,
                statement_date: row.get(1)?,
                due_date: row.get(2)?,
                balance_minor: row.get(3)?,
                minimum_due_minor: row.get(4)?,
                paid_minor: row.get(5)?,
                paid_on: row.get(6)?,
                overdue_days: row.get(7)?,
                import_id: row.get(8)?,
                created_at_ms: row.get(9)?,
            })
        },
    )
}
