//! The double-entry ledger: accounts, operations and their transfers, idempotency keys,
//! alerts, and the set-based checks behind `cardcrm ledger verify`.
//!
//! A transfer moves a positive amount from a debit account to a credit account. An account
//! that tracks its balance (a customer's stored value or points) keeps `debits_posted` and
//! `credits_posted` on its row; the debit is applied only if the balance covers it, in one
//! statement, so no interleaving of transactions can overdraw it, and a CHECK constraint
//! refuses it again below us. Other accounts (stores, the system) are the sum of their
//! transfers: no row is shared by every sale of a store.

use std::collections::HashMap;

use crate::{Conn, Row, StoreError, StoreResult, Value, params, repo::bounded};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: i64,
    pub code: String,
    pub kind: String,
    pub asset: String,
    pub card_id: Option<i64>,
    pub store_id: Option<i64>,
    pub tracks_balance: bool,
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub created_at_ms: i64,
}

impl AccountRecord {
    /// Credits less debits: what a customer holds on a tracking account.
    pub fn balance(&self) -> i64 {
        self.credits_posted - self.debits_posted
    }
}

const ACCOUNT_COLUMNS: &str =
    "id, code, kind, asset, card_id, store_id, tracks_balance, debits_posted, credits_posted, created_at_ms";

fn account_from(row: &Row<'_>) -> StoreResult<AccountRecord> {
    Ok(AccountRecord {
        id: row.get(0)?,
        code: row.get(1)?,
        kind: row.get(2)?,
        asset: row.get(3)?,
        card_id: row.get(4)?,
        store_id: row.get(5)?,
        tracks_balance: row.get(6)?,
        debits_posted: row.get(7)?,
        credits_posted: row.get(8)?,
        created_at_ms: row.get(9)?,
    })
}

/// What a new account is.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    pub code: &'a str,
    pub kind: &'a str,
    pub asset: &'a str,
    pub card_id: Option<i64>,
    pub store_id: Option<i64>,
    /// The member whose points these are (points accounts belong to the customer).
    pub customer_id: Option<i64>,
    pub tracks_balance: bool,
}

/// An account as a transfer needs it: which row, and whether that row keeps a balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRef {
    pub id: i64,
    pub tracks_balance: bool,
}

impl From<&AccountRecord> for AccountRef {
    fn from(account: &AccountRecord) -> Self {
        Self { id: account.id, tracks_balance: account.tracks_balance }
    }
}

/// The account with this code, created when it does not exist yet.
pub fn ensure_account(conn: &mut Conn<'_>, account: &NewAccount<'_>, now_ms: i64) -> StoreResult<AccountRef> {
    if let Some(found) = account_ref(conn, account.code)? {
        return Ok(found);
    }
    conn.execute(
        "INSERT INTO ledger_accounts (code, kind, asset, card_id, store_id, customer_id, tracks_balance, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (code) DO NOTHING",
        params![
            account.code,
            account.kind,
            account.asset,
            account.card_id,
            account.store_id,
            account.customer_id,
            account.tracks_balance,
            now_ms
        ],
    )?;
    account_ref(conn, account.code)?.ok_or_else(|| {
        StoreError::Invariant(format!("ledger account {} vanished as it was made", account.code))
    })
}

pub fn account_ref(conn: &mut Conn<'_>, code: &str) -> StoreResult<Option<AccountRef>> {
    conn.query_optional(
        "SELECT id, tracks_balance FROM ledger_accounts WHERE code = $1",
        params![code],
        |row| Ok(AccountRef { id: row.get(0)?, tracks_balance: row.get(1)? }),
    )
}

/// The accounts that belong to a customer rather than to a card (their points, what they
/// owe), by code: one look-up where earning needs both.
pub fn accounts_of_customer(conn: &mut Conn<'_>, customer_id: i64) -> StoreResult<Vec<(String, AccountRef)>> {
    conn.query(
        "SELECT code, id, tracks_balance FROM ledger_accounts WHERE customer_id = $1 AND customer_id IS NOT NULL \
         ORDER BY id LIMIT 16",
        params![customer_id],
        |row| Ok((row.get(0)?, AccountRef { id: row.get(1)?, tracks_balance: row.get(2)? })),
    )
}

pub fn account(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<AccountRecord>> {
    conn.query_optional(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = $1"),
        params![id],
        account_from,
    )
}

/// Every account of a card (its paid and bonus value, later its points).
pub fn accounts_of_card(conn: &mut Conn<'_>, card_id: i64) -> StoreResult<Vec<AccountRecord>> {
    conn.query(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE card_id = $1 AND card_id IS NOT NULL ORDER BY id"),
        params![card_id],
        account_from,
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRecord {
    pub id: i64,
    pub kind: String,
    pub card_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub store_id: Option<i64>,
    pub reverses_operation_id: Option<i64>,
    pub amount_minor: i64,
    pub asset: String,
    pub payment_method: Option<String>,
    pub detail_json: String,
    pub actor_kind: String,
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub occurred_at_ms: i64,
}

const OPERATION_COLUMNS: &str = "id, kind, card_id, customer_id, store_id, reverses_operation_id, amount_minor, \
     asset, payment_method, detail_json, actor_kind, actor_id, actor_name, source_ip, request_id, occurred_at_ms";

fn operation_from(row: &Row<'_>) -> StoreResult<OperationRecord> {
    Ok(OperationRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        card_id: row.get(2)?,
        customer_id: row.get(3)?,
        store_id: row.get(4)?,
        reverses_operation_id: row.get(5)?,
        amount_minor: row.get(6)?,
        asset: row.get(7)?,
        payment_method: row.get(8)?,
        detail_json: row.get(9)?,
        actor_kind: row.get(10)?,
        actor_id: row.get(11)?,
        actor_name: row.get(12)?,
        source_ip: row.get(13)?,
        request_id: row.get(14)?,
        occurred_at_ms: row.get(15)?,
    })
}

/// Records an operation; `operation.id` is ignored and the new id returned.
pub fn insert_operation(conn: &mut Conn<'_>, operation: &OperationRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO ledger_operations (kind, card_id, customer_id, store_id, reverses_operation_id, amount_minor, \
         asset, payment_method, detail_json, actor_kind, actor_id, actor_name, source_ip, request_id, occurred_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        params![
            &operation.kind,
            operation.card_id,
            operation.customer_id,
            operation.store_id,
            operation.reverses_operation_id,
            operation.amount_minor,
            &operation.asset,
            &operation.payment_method,
            &operation.detail_json,
            &operation.actor_kind,
            operation.actor_id,
            &operation.actor_name,
            &operation.source_ip,
            &operation.request_id,
            operation.occurred_at_ms
        ],
        |row| row.get(0),
    )
}

pub fn operation(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<OperationRecord>> {
    conn.query_optional(
        &format!("SELECT {OPERATION_COLUMNS} FROM ledger_operations WHERE id = $1"),
        params![id],
        operation_from,
    )
}

/// The operations that reverse `id` (refunds of it), oldest first.
pub fn reversals_of(conn: &mut Conn<'_>, id: i64) -> StoreResult<Vec<OperationRecord>> {
    conn.query(
        &format!(
            "SELECT {OPERATION_COLUMNS} FROM ledger_operations WHERE reverses_operation_id = $1 \
             AND reverses_operation_id IS NOT NULL ORDER BY id LIMIT 10000"
        ),
        params![id],
        operation_from,
    )
}

/// Operations of `kind` after operation `after_id` that credited one of `accounts`, oldest
/// first (at most `limit`): found through the transfers into those accounts.
pub fn operations_crediting(
    conn: &mut Conn<'_>,
    kind: &str,
    accounts: &[i64],
    after_id: i64,
    limit: i64,
) -> StoreResult<Vec<OperationRecord>> {
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = (0..accounts.len()).map(|index| format!("${}", index + 4)).collect();
    let mut values: Vec<Value<'_>> = vec![kind.into(), after_id.into(), bounded(limit).into()];
    values.extend(accounts.iter().map(|id| Value::I64(*id)));
    conn.query(
        &format!(
            "SELECT {OPERATION_COLUMNS} FROM ledger_operations WHERE kind = $1 AND id > $2 AND id IN \
             (SELECT operation_id FROM ledger_transfers WHERE credit_account_id IN ({}) AND operation_id > $2) \
             ORDER BY id LIMIT $3",
            list.join(", ")
        ),
        &values,
        operation_from,
    )
}

/// How many operations touched a card at or after `since_ms` (for velocity alerts).
pub fn operations_since(conn: &mut Conn<'_>, card_id: i64, since_ms: i64) -> StoreResult<i64> {
    conn.query_one(
        "SELECT count(*) FROM ledger_operations WHERE card_id = $1 AND card_id IS NOT NULL AND occurred_at_ms >= $2",
        params![card_id, since_ms],
        |row| row.get(0),
    )
}

/// The operations that moved value in or out of `accounts` or name `card_id`, newest first,
/// before operation `before_id`.
pub fn operations_touching(
    conn: &mut Conn<'_>,
    card_id: i64,
    accounts: &[i64],
    before_id: i64,
    limit: i64,
) -> StoreResult<Vec<OperationRecord>> {
    let columns =
        OPERATION_COLUMNS.split(", ").map(|column| format!("o.{column}")).collect::<Vec<_>>().join(", ");
    let list: Vec<String> = (0..accounts.len()).map(|index| format!("${}", index + 4)).collect();
    let touching = if list.is_empty() {
        String::new()
    } else {
        let list = list.join(", ");
        format!(
            " OR o.id IN (SELECT t.operation_id FROM ledger_transfers t WHERE t.debit_account_id IN ({list}) \
             OR t.credit_account_id IN ({list}))"
        )
    };
    let mut values: Vec<Value<'_>> = vec![card_id.into(), before_id.into(), bounded(limit).into()];
    values.extend(accounts.iter().map(|id| Value::I64(*id)));
    conn.query(
        &format!(
            "SELECT {columns} FROM ledger_operations o WHERE o.id < $2 AND (o.card_id = $1{touching}) \
             ORDER BY o.id DESC LIMIT $3"
        ),
        &values,
        operation_from,
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    pub id: i64,
    pub operation_id: i64,
    pub debit_account_id: i64,
    pub credit_account_id: i64,
    pub amount_minor: i64,
    pub asset: String,
    pub purpose: String,
    pub reverses_transfer_id: Option<i64>,
    pub created_at_ms: i64,
}

const TRANSFER_COLUMNS: &str = "id, operation_id, debit_account_id, credit_account_id, amount_minor, asset, purpose, \
     reverses_transfer_id, created_at_ms";

fn transfer_from(row: &Row<'_>) -> StoreResult<TransferRecord> {
    Ok(TransferRecord {
        id: row.get(0)?,
        operation_id: row.get(1)?,
        debit_account_id: row.get(2)?,
        credit_account_id: row.get(3)?,
        amount_minor: row.get(4)?,
        asset: row.get(5)?,
        purpose: row.get(6)?,
        reverses_transfer_id: row.get(7)?,
        created_at_ms: row.get(8)?,
    })
}

/// Why a transfer could not be posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostRefusal {
    /// The debit account tracks its balance and holds less than the amount.
    Insufficient { account_id: i64 },
}

/// A transfer to post.
#[derive(Debug, Clone)]
pub struct NewTransfer<'a> {
    pub operation_id: i64,
    pub debit: AccountRef,
    pub credit: AccountRef,
    pub amount_minor: i64,
    pub asset: &'a str,
    pub purpose: &'a str,
    pub reverses_transfer_id: Option<i64>,
    pub created_at_ms: i64,
}

/// Posts a transfer: applies it to the balances of the accounts that keep one (refusing a
/// debit their balance does not cover, in the same statement that applies it) and records
/// it. Nothing is written when it is refused.
pub fn post(conn: &mut Conn<'_>, transfer: &NewTransfer<'_>) -> StoreResult<Result<i64, PostRefusal>> {
    if transfer.amount_minor <= 0 || transfer.debit.id == transfer.credit.id {
        return Err(StoreError::Invariant(format!(
            "a transfer of {} from account {} to account {} cannot be posted",
            transfer.amount_minor, transfer.debit.id, transfer.credit.id
        )));
    }
    if transfer.debit.tracks_balance {
        let debited = conn.execute(
            "UPDATE ledger_accounts SET debits_posted = debits_posted + $2 \
             WHERE id = $1 AND tracks_balance = 1 AND credits_posted - debits_posted >= $2",
            params![transfer.debit.id, transfer.amount_minor],
        )?;
        if debited == 0 {
            return Ok(Err(PostRefusal::Insufficient { account_id: transfer.debit.id }));
        }
    }
    if transfer.credit.tracks_balance {
        let credited = conn.execute(
            "UPDATE ledger_accounts SET credits_posted = credits_posted + $2 WHERE id = $1 AND tracks_balance = 1",
            params![transfer.credit.id, transfer.amount_minor],
        )?;
        if credited != 1 {
            return Err(StoreError::Invariant(format!(
                "ledger account {} keeps no balance",
                transfer.credit.id
            )));
        }
    }
    let id = conn.query_one(
        "INSERT INTO ledger_transfers (operation_id, debit_account_id, credit_account_id, amount_minor, asset, purpose, \
         reverses_transfer_id, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        params![
            transfer.operation_id,
            transfer.debit.id,
            transfer.credit.id,
            transfer.amount_minor,
            transfer.asset,
            transfer.purpose,
            transfer.reverses_transfer_id,
            transfer.created_at_ms
        ],
        |row| row.get(0),
    )?;
    Ok(Ok(id))
}

pub fn transfers_of_operation(conn: &mut Conn<'_>, operation_id: i64) -> StoreResult<Vec<TransferRecord>> {
    conn.query(
        &format!("SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE operation_id = $1 ORDER BY id"),
        params![operation_id],
        transfer_from,
    )
}

/// One line of an account's history: a transfer in (credit) or out (debit) of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub transfer: TransferRecord,
    pub account_id: i64,
    /// Positive when the account was credited, negative when debited.
    pub signed_minor: i64,
    pub operation_kind: String,
    pub store_id: Option<i64>,
}

/// The postings of `accounts` in `[from_ms, to_ms)`, oldest first, after transfer `after_id`.
pub fn postings(
    conn: &mut Conn<'_>,
    accounts: &[i64],
    from_ms: i64,
    to_ms: i64,
    after_id: i64,
    limit: i64,
) -> StoreResult<Vec<Posting>> {
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = (0..accounts.len()).map(|index| format!("${}", index + 5)).collect();
    let list = list.join(", ");
    let mut values: Vec<Value<'_>> =
        vec![from_ms.into(), to_ms.into(), after_id.into(), bounded(limit).into()];
    values.extend(accounts.iter().map(|id| Value::I64(*id)));
    let columns =
        TRANSFER_COLUMNS.split(", ").map(|column| format!("t.{column}")).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    conn.for_each(
        &format!(
            "SELECT {columns}, o.kind, o.store_id FROM ledger_transfers t JOIN ledger_operations o ON o.id = t.operation_id \
             WHERE (t.debit_account_id IN ({list}) OR t.credit_account_id IN ({list})) \
             AND t.created_at_ms >= $1 AND t.created_at_ms < $2 AND t.id > $3 ORDER BY t.id LIMIT $4"
        ),
        &values,
        |row| {
            let transfer = transfer_from(row)?;
            let credited = accounts.contains(&transfer.credit_account_id);
            let (account_id, signed_minor) = if credited {
                (transfer.credit_account_id, transfer.amount_minor)
            } else {
                (transfer.debit_account_id, -transfer.amount_minor)
            };
            out.push(Posting { account_id, signed_minor, operation_kind: row.get(9)?, store_id: row.get(10)?, transfer });
            Ok(())
        },
    )?;
    Ok(out)
}

/// The balance of each account just before `at_ms`: credits less debits of earlier transfers.
pub fn balances_before(conn: &mut Conn<'_>, accounts: &[i64], at_ms: i64) -> StoreResult<HashMap<i64, i64>> {
    let mut out: HashMap<i64, i64> = accounts.iter().map(|id| (*id, 0)).collect();
    for id in accounts {
        let (credits, debits): (i64, i64) = conn.query_one(
            "SELECT CAST(coalesce(sum(CASE WHEN credit_account_id = $1 THEN amount_minor ELSE 0 END), 0) AS BIGINT), \
             CAST(coalesce(sum(CASE WHEN debit_account_id = $1 THEN amount_minor ELSE 0 END), 0) AS BIGINT) \
             FROM ledger_transfers WHERE (credit_account_id = $1 OR debit_account_id = $1) AND created_at_ms < $2",
            params![*id, at_ms],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        out.insert(*id, credits - debits);
    }
    Ok(out)
}

/// What an idempotency key answered before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub idempotency_key: String,
    pub actor: String,
    pub request_hash: Vec<u8>,
    pub status: i64,
    pub response_json: String,
    pub operation_id: Option<i64>,
    pub created_at_ms: i64,
}

pub fn key(conn: &mut Conn<'_>, idempotency_key: &str) -> StoreResult<Option<KeyRecord>> {
    conn.query_optional(
        "SELECT idempotency_key, actor, request_hash, status, response_json, operation_id, created_at_ms \
         FROM idempotency_keys WHERE idempotency_key = $1",
        params![idempotency_key],
        |row| {
            Ok(KeyRecord {
                idempotency_key: row.get(0)?,
                actor: row.get(1)?,
                request_hash: row.get(2)?,
                status: row.get(3)?,
                response_json: row.get(4)?,
                operation_id: row.get(5)?,
                created_at_ms: row.get(6)?,
            })
        },
    )
}

/// Stores a key's answer. A concurrent request that stored the same key first makes this
/// fail with a unique violation; the unit of work then runs again and finds it.
pub fn insert_key(conn: &mut Conn<'_>, record: &KeyRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO idempotency_keys (idempotency_key, actor, request_hash, status, response_json, operation_id, \
         created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params![
            &record.idempotency_key,
            &record.actor,
            &record.request_hash,
            record.status,
            &record.response_json,
            record.operation_id,
            record.created_at_ms
        ],
    )?;
    Ok(())
}

/// Forgets keys stored before `before_ms`; returns how many.
/// Deletes up to `limit` keys stored before `before_ms`; returns how many.
pub fn purge_keys(conn: &mut Conn<'_>, before_ms: i64, limit: i64) -> StoreResult<u64> {
    conn.execute(
        "DELETE FROM idempotency_keys WHERE idempotency_key IN (SELECT idempotency_key FROM idempotency_keys \
         WHERE created_at_ms < $1 ORDER BY created_at_ms LIMIT $2)",
        params![before_ms, limit.clamp(1, 100_000)],
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub id: i64,
    pub kind: String,
    pub card_id: Option<i64>,
    pub store_id: Option<i64>,
    pub operation_id: Option<i64>,
    pub detail_json: String,
    pub created_at_ms: i64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at_ms: Option<i64>,
}

pub fn insert_alert(conn: &mut Conn<'_>, alert: &AlertRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO ledger_alerts (kind, card_id, store_id, operation_id, detail_json, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        params![
            &alert.kind,
            alert.card_id,
            alert.store_id,
            alert.operation_id,
            &alert.detail_json,
            alert.created_at_ms
        ],
        |row| row.get(0),
    )
}

const ALERT_COLUMNS: &str = "id, kind, card_id, store_id, operation_id, detail_json, created_at_ms, acknowledged_by, acknowledged_at_ms";

fn alert_from(row: &Row<'_>) -> StoreResult<AlertRecord> {
    Ok(AlertRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        card_id: row.get(2)?,
        store_id: row.get(3)?,
        operation_id: row.get(4)?,
        detail_json: row.get(5)?,
        created_at_ms: row.get(6)?,
        acknowledged_by: row.get(7)?,
        acknowledged_at_ms: row.get(8)?,
    })
}

/// Alerts newest first, before `before_id`; only unacknowledged ones unless `all`.
pub fn alerts(
    conn: &mut Conn<'_>,
    store_id: Option<i64>,
    all: bool,
    before_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<AlertRecord>> {
    conn.query(
        &format!(
            "SELECT {ALERT_COLUMNS} FROM ledger_alerts WHERE (CAST($1 AS BIGINT) IS NULL OR store_id = $1) \
             AND ($2 = 1 OR acknowledged_at_ms IS NULL) AND id < $3 ORDER BY id DESC LIMIT $4"
        ),
        params![store_id, i64::from(all), before_id.unwrap_or(i64::MAX), bounded(limit)],
        alert_from,
    )
}

pub fn alert(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<AlertRecord>> {
    conn.query_optional(
        &format!("SELECT {ALERT_COLUMNS} FROM ledger_alerts WHERE id = $1"),
        params![id],
        alert_from,
    )
}

pub fn acknowledge_alert(conn: &mut Conn<'_>, id: i64, by: &str, at_ms: i64) -> StoreResult<bool> {
    let changed = conn.execute(
        "UPDATE ledger_alerts SET acknowledged_by = $2, acknowledged_at_ms = $3 WHERE id = $1 AND acknowledged_at_ms IS NULL",
        params![id, by, at_ms],
    )?;
    Ok(changed == 1)
}

/// Sums by transfer purpose for the operations of one store (or every store) in a window.
pub fn purpose_totals(
    conn: &mut Conn<'_>,
    store_id: Option<i64>,
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<Vec<(String, i64, i64)>> {
    conn.query(
        "SELECT t.purpose, count(*), CAST(coalesce(sum(t.amount_minor), 0) AS BIGINT) FROM ledger_transfers t \
         JOIN ledger_operations o ON o.id = t.operation_id \
         WHERE (CAST($1 AS BIGINT) IS NULL OR o.store_id = $1) AND t.created_at_ms >= $2 AND t.created_at_ms < $3 \
         GROUP BY t.purpose ORDER BY t.purpose",
        params![store_id, from_ms, to_ms],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
}

/// The stored value customers hold at `at_ms`, by the store that issued their card and by
/// account kind (`card_paid`, `card_bonus`): what the business owes.
pub fn liability_at(conn: &mut Conn<'_>, at_ms: i64) -> StoreResult<Vec<(Option<i64>, String, i64)>> {
    conn.query(
        "SELECT c.store_id, a.kind, CAST(coalesce(sum(CASE WHEN t.credit_account_id = a.id THEN t.amount_minor \
         ELSE -t.amount_minor END), 0) AS BIGINT) \
         FROM ledger_accounts a JOIN cards c ON c.id = a.card_id \
         JOIN ledger_transfers t ON (t.credit_account_id = a.id OR t.debit_account_id = a.id) \
         WHERE a.tracks_balance = 1 AND t.created_at_ms < $1 GROUP BY c.store_id, a.kind ORDER BY c.store_id, a.kind",
        params![at_ms],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
}

/// One group of movements of customer balances in a window: by the store that issued the
/// card, the account kind (`card_paid`, `card_bonus`) and the transfer purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub store_id: Option<i64>,
    pub account_kind: String,
    pub purpose: String,
    pub count: i64,
    /// Credits less debits of the customer accounts.
    pub signed_minor: i64,
}

/// How customer balances moved in `[from_ms, to_ms)`, grouped as [`Movement`].
pub fn card_movements(conn: &mut Conn<'_>, from_ms: i64, to_ms: i64) -> StoreResult<Vec<Movement>> {
    conn.query(
        "SELECT c.store_id, a.kind, t.purpose, count(*), CAST(coalesce(sum(CASE WHEN t.credit_account_id = a.id \
         THEN t.amount_minor ELSE -t.amount_minor END), 0) AS BIGINT) \
         FROM ledger_transfers t JOIN ledger_accounts a ON (a.id = t.credit_account_id OR a.id = t.debit_account_id) \
         JOIN cards c ON c.id = a.card_id \
         WHERE a.tracks_balance = 1 AND t.created_at_ms >= $1 AND t.created_at_ms < $2 \
         GROUP BY c.store_id, a.kind, t.purpose ORDER BY c.store_id, a.kind, t.purpose",
        params![from_ms, to_ms],
        |row| {
            Ok(Movement {
                store_id: row.get(0)?,
                account_kind: row.get(1)?,
                purpose: row.get(2)?,
                count: row.get(3)?,
                signed_minor: row.get(4)?,
            })
        },
    )
}

/// The stores where operations happened in `[from_ms, to_ms)`, with how many each.
pub fn operation_stores(
    conn: &mut Conn<'_>,
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<Vec<(Option<i64>, i64)>> {
    conn.query(
        "SELECT store_id, count(*) FROM ledger_operations WHERE occurred_at_ms >= $1 AND occurred_at_ms < $2 \
         GROUP BY store_id ORDER BY store_id",
        params![from_ms, to_ms],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// What is wrong with the ledger, found by set-based checks over the whole database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerProblems {
    /// Transfers with a non-positive amount, one account on both sides, or an asset that
    /// differs from an account's.
    pub bad_transfers: Vec<i64>,
    /// Tracking accounts whose posted totals differ from the sum of their transfers.
    pub drifted_accounts: Vec<i64>,
    /// Tracking accounts whose balance is negative.
    pub negative_accounts: Vec<i64>,
    /// Operations whose reversals returned more than they moved.
    pub over_reversed_operations: Vec<i64>,
    /// Reversing transfers that do not point back to a transfer of the operation reversed,
    /// or send the value elsewhere than where it came from (a card's balance may come back
    /// to the same balance of the card that replaced it, and a merged member's points to the
    /// member they were merged into).
    pub stray_reversals: Vec<i64>,
    /// Points accounts whose balance differs from the points their lots hold.
    pub points_lot_mismatches: Vec<i64>,
}

/// The figures `cardcrm ledger verify` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub transfers: i64,
    pub accounts: i64,
    /// Sum of customer balances from the account rows.
    pub liability_posted: i64,
    /// The same, from the transfers alone.
    pub liability_from_transfers: i64,
}

const PROBLEM_LIST_MAX: i64 = 1_000;

/// Checks every invariant of the ledger and totals it.
pub fn verify(conn: &mut Conn<'_>) -> StoreResult<(LedgerProblems, LedgerTotals)> {
    let ids = |conn: &mut Conn<'_>, sql: &str| -> StoreResult<Vec<i64>> {
        conn.query(&format!("{sql} LIMIT {PROBLEM_LIST_MAX}"), params![], |row| row.get(0))
    };
    let problems = LedgerProblems {
        bad_transfers: ids(
            conn,
            "SELECT t.id FROM ledger_transfers t JOIN ledger_accounts d ON d.id = t.debit_account_id \
             JOIN ledger_accounts c ON c.id = t.credit_account_id \
             WHERE t.amount_minor <= 0 OR t.debit_account_id = t.credit_account_id OR d.asset <> t.asset \
             OR c.asset <> t.asset ORDER BY t.id",
        )?,
        drifted_accounts: ids(
            conn,
            "SELECT a.id FROM ledger_accounts a \
             LEFT JOIN (SELECT debit_account_id AS id, sum(amount_minor) AS total FROM ledger_transfers \
                        GROUP BY debit_account_id) d ON d.id = a.id \
             LEFT JOIN (SELECT credit_account_id AS id, sum(amount_minor) AS total FROM ledger_transfers \
                        GROUP BY credit_account_id) c ON c.id = a.id \
             WHERE a.tracks_balance = 1 AND (a.debits_posted <> coalesce(d.total, 0) \
             OR a.credits_posted <> coalesce(c.total, 0)) ORDER BY a.id",
        )?,
        negative_accounts: ids(
            conn,
            "SELECT id FROM ledger_accounts WHERE tracks_balance = 1 AND credits_posted < debits_posted ORDER BY id",
        )?,
        over_reversed_operations: ids(
            conn,
            "SELECT o.id FROM ledger_operations o \
             JOIN (SELECT operation_id, sum(amount_minor) AS moved FROM ledger_transfers GROUP BY operation_id) m \
               ON m.operation_id = o.id \
             JOIN (SELECT r.reverses_operation_id AS id, sum(t.amount_minor) AS back FROM ledger_operations r \
                   JOIN ledger_transfers t ON t.operation_id = r.id \
                   WHERE r.reverses_operation_id IS NOT NULL GROUP BY r.reverses_operation_id) b ON b.id = o.id \
             WHERE b.back > m.moved ORDER BY o.id",
        )?,
        stray_reversals: ids(
            conn,
            "SELECT t.id FROM ledger_transfers t JOIN ledger_operations r ON r.id = t.operation_id \
             JOIN ledger_accounts back_to ON back_to.id = t.credit_account_id \
             LEFT JOIN ledger_transfers original ON original.id = t.reverses_transfer_id \
             LEFT JOIN ledger_accounts paid_from ON paid_from.id = original.debit_account_id \
             WHERE t.reverses_transfer_id IS NOT NULL AND (original.id IS NULL \
             OR r.reverses_operation_id IS NULL OR original.operation_id <> r.reverses_operation_id \
             OR original.credit_account_id <> t.debit_account_id \
             OR (original.debit_account_id <> t.credit_account_id AND paid_from.kind <> back_to.kind) \
             OR (original.debit_account_id <> t.credit_account_id AND NOT ( \
                 (paid_from.card_id IS NOT NULL AND back_to.card_id IS NOT NULL) \
                 OR (paid_from.customer_id IS NOT NULL AND back_to.customer_id IS NOT NULL AND EXISTS ( \
                     SELECT 1 FROM customers merged WHERE merged.id = paid_from.customer_id AND merged.status = 'merged'))))) \
             ORDER BY t.id",
        )?,
        points_lot_mismatches: crate::repo::loyalty::lot_mismatches(conn)?,
    };
    let totals = LedgerTotals {
        transfers: conn.query_one("SELECT count(*) FROM ledger_transfers", params![], |row| row.get(0))?,
        accounts: conn.query_one("SELECT count(*) FROM ledger_accounts", params![], |row| row.get(0))?,
        liability_posted: conn.query_one(
            "SELECT CAST(coalesce(sum(credits_posted - debits_posted), 0) AS BIGINT) FROM ledger_accounts \
             WHERE tracks_balance = 1",
            params![],
            |row| row.get(0),
        )?,
        liability_from_transfers: conn.query_one(
            "SELECT CAST(coalesce(sum(CASE WHEN c.tracks_balance = 1 THEN t.amount_minor ELSE 0 END) \
             - sum(CASE WHEN d.tracks_balance = 1 THEN t.amount_minor ELSE 0 END), 0) AS BIGINT) \
             FROM ledger_transfers t JOIN ledger_accounts d ON d.id = t.debit_account_id \
             JOIN ledger_accounts c ON c.id = t.credit_account_id",
            params![],
            |row| row.get(0),
        )?,
    };
    Ok((problems, totals))
}
