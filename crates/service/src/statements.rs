//! What the ledger tells afterwards: a card's history, its statement 账单 for a period, the
//! daily reconciliation of stored-value liability, unusual-activity alerts, and the
//! whole-database verification behind `cardcrm ledger verify`.
//!
//! Statements and reconciliations are computed twice — from balances before and after the
//! period, and from the movements inside it — and refuse to answer when the two disagree.

use std::collections::BTreeMap;

use cardcrm_store::{
    Conn, StoreError,
    repo::ledger::{self as repo, LedgerProblems, LedgerTotals, Posting},
};
use jiff::{ToSpan, civil::Date, tz::TimeZone};
use serde::Serialize;

use crate::{
    Services,
    cards::load_card,
    clock::format_ms,
    error::{ServiceError, ServiceResult},
    identity::{Access, perm},
    ledger::value_accounts,
    view::{Page, cursor_decode_id, cursor_encode_id, page_limit},
};

/// Longest period one statement covers.
pub const STATEMENT_DAYS_MAX: i64 = 366;
/// Most lines one statement holds; a busier period is asked for in parts.
pub const STATEMENT_LINES_MAX: usize = 10_000;

/// One operation as it changed a card's balances.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryLine {
    pub operation_id: i64,
    /// `top_up`, `spend`, `refund`, `transfer`, `replace`, `close`, `checkout`.
    pub kind: String,
    pub store_id: Option<i64>,
    pub occurred_at: String,
    /// Change of the paid balance (negative when money left the card).
    pub paid_change_minor: i64,
    pub bonus_change_minor: i64,
    pub change_minor: i64,
    pub payment_method: Option<String>,
    pub reverses_operation_id: Option<i64>,
}

/// A balance split into its parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Balance {
    pub paid_minor: i64,
    pub bonus_minor: i64,
    pub total_minor: i64,
}

impl Balance {
    fn of(paid_minor: i64, bonus_minor: i64) -> Self {
        Self { paid_minor, bonus_minor, total_minor: paid_minor + bonus_minor }
    }
}

/// A line of a statement: one operation, with the balance after it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatementLine {
    #[serde(flatten)]
    pub line: HistoryLine,
    pub balance_after: Balance,
}

/// A card's statement 账单 for a period of whole days in the business's time zone.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Statement {
    pub card_id: i64,
    /// Masked card number.
    pub card_number: String,
    pub customer_id: i64,
    pub currency: String,
    /// First day, inclusive (`YYYY-MM-DD`).
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    pub time_zone: String,
    pub opening: Balance,
    pub lines: Vec<StatementLine>,
    /// Sum of what came in during the period.
    pub credits_minor: i64,
    /// Sum of what went out (a positive number).
    pub debits_minor: i64,
    pub closing: Balance,
    pub generated_at: String,
}

/// Customer balances of the cards one store issued, at the start and end of the day.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoreLiability {
    /// The store that issued the cards (absent: cards issued centrally).
    pub store_id: Option<i64>,
    pub opening: Balance,
    /// What moved the balances, by transfer purpose (`top_up_paid`, `spend_bonus`…);
    /// positive amounts raised the liability.
    pub movements: Vec<MovementLine>,
    pub closing: Balance,
    /// Whether opening + movements = closing for both parts.
    pub balanced: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MovementLine {
    pub purpose: String,
    /// `paid` or `bonus`.
    pub part: String,
    pub count: i64,
    pub amount_minor: i64,
}

/// What a store did in the day, by transfer purpose (where the operation happened).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoreActivity {
    pub store_id: Option<i64>,
    pub top_up_paid_minor: i64,
    pub top_up_bonus_minor: i64,
    pub spend_paid_minor: i64,
    pub spend_bonus_minor: i64,
    pub refund_paid_minor: i64,
    pub refund_bonus_minor: i64,
    /// Paid outside the card at checkout (cash, bank card…) and refunds of it.
    pub external_minor: i64,
    pub refund_external_minor: i64,
    /// Value forfeited when cards were closed (breakage).
    pub breakage_minor: i64,
    /// Paid value given back in cash when cards were closed.
    pub close_refund_minor: i64,
    pub operations: i64,
}

/// The daily reconciliation report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub date: String,
    pub time_zone: String,
    pub currency: String,
    pub liability: Vec<StoreLiability>,
    pub activity: Vec<StoreActivity>,
    pub total_opening: Balance,
    pub total_closing: Balance,
    /// Whether every store's liability reconciles.
    pub balanced: bool,
    pub generated_at: String,
}

/// An unusual-activity flag.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: i64,
    /// `velocity`, `large_top_up`, `large_spend`.
    pub kind: String,
    pub card_id: Option<i64>,
    pub store_id: Option<i64>,
    pub operation_id: Option<i64>,
    pub detail: serde_json::Value,
    pub created_at: String,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
}

impl From<repo::AlertRecord> for AlertView {
    fn from(record: repo::AlertRecord) -> Self {
        Self {
            id: record.id,
            kind: record.kind,
            card_id: record.card_id,
            store_id: record.store_id,
            operation_id: record.operation_id,
            detail: serde_json::from_str(&record.detail_json).unwrap_or_default(),
            created_at: format_ms(record.created_at_ms),
            acknowledged_by: record.acknowledged_by,
            acknowledged_at: record.acknowledged_at_ms.map(format_ms),
        }
    }
}

/// What `cardcrm ledger verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub ok: bool,
    pub transfers: i64,
    pub accounts: i64,
    pub liability_posted_minor: i64,
    pub liability_from_transfers_minor: i64,
    pub bad_transfers: Vec<i64>,
    pub drifted_accounts: Vec<i64>,
    pub negative_accounts: Vec<i64>,
    pub over_reversed_operations: Vec<i64>,
    pub stray_reversals: Vec<i64>,
    pub points_lot_mismatches: Vec<i64>,
}

impl Verification {
    fn of(problems: LedgerProblems, totals: LedgerTotals) -> Self {
        let ok = problems == LedgerProblems::default()
            && totals.liability_posted == totals.liability_from_transfers;
        Self {
            ok,
            transfers: totals.transfers,
            accounts: totals.accounts,
            liability_posted_minor: totals.liability_posted,
            liability_from_transfers_minor: totals.liability_from_transfers,
            bad_transfers: problems.bad_transfers,
            drifted_accounts: problems.drifted_accounts,
            negative_accounts: problems.negative_accounts,
            over_reversed_operations: problems.over_reversed_operations,
            stray_reversals: problems.stray_reversals,
            points_lot_mismatches: problems.points_lot_mismatches,
        }
    }
}

/// Groups postings of one card's paid and bonus accounts by operation, in order.
fn lines_of(
    postings: &[Posting],
    paid_account: i64,
    operations: &BTreeMap<i64, repo::OperationRecord>,
) -> Vec<HistoryLine> {
    let mut lines: Vec<HistoryLine> = Vec::new();
    for posting in postings {
        let operation_id = posting.transfer.operation_id;
        if lines.last().is_none_or(|line| line.operation_id != operation_id) {
            let operation = operations.get(&operation_id);
            lines.push(HistoryLine {
                operation_id,
                kind: posting.operation_kind.clone(),
                store_id: posting.store_id,
                occurred_at: format_ms(posting.transfer.created_at_ms),
                paid_change_minor: 0,
                bonus_change_minor: 0,
                change_minor: 0,
                payment_method: operation.and_then(|operation| operation.payment_method.clone()),
                reverses_operation_id: operation.and_then(|operation| operation.reverses_operation_id),
            });
        }
        let line = lines.last_mut().expect("a line was just pushed");
        if posting.account_id == paid_account {
            line.paid_change_minor += posting.signed_minor;
        } else {
            line.bonus_change_minor += posting.signed_minor;
        }
        line.change_minor += posting.signed_minor;
    }
    lines
}

fn day_start_ms(date: Date, zone: &TimeZone) -> ServiceResult<i64> {
    date.to_zoned(zone.clone())
        .map(|zoned| zoned.timestamp().as_millisecond())
        .map_err(|error| ServiceError::invalid("date", "date.invalid", error.to_string()))
}

fn parse_day(field: &str, raw: &str) -> ServiceResult<Date> {
    cardcrm_domain::date::parse_date(raw).map_err(|error| ServiceError::from(error.at(field)))
}

fn invariant(message: String) -> ServiceError {
    ServiceError::Store(StoreError::Invariant(message))
}

impl Services {
    /// A card's operations, newest first; each with how it changed the card's balances.
    pub async fn card_history(
        &self,
        access: Access<'_, perm::CardRead>,
        card_id: i64,
        cursor: Option<String>,
        limit: u32,
    ) -> ServiceResult<Page<HistoryLine>> {
        let limit = page_limit(limit);
        let before_id = match cursor {
            Some(cursor) => cursor_decode_id(&cursor)?,
            None => i64::MAX,
        };
        let scope = access.scope;
        self.database()
            .read(move |conn| {
                let (card, _) = load_card(conn, card_id)?;
                if !scope.covers(card.store_id) {
                    return Err(ServiceError::forbidden(format!("card {card_id} belongs to another store")));
                }
                let accounts = value_accounts(conn, card_id)?;
                let ids: Vec<i64> =
                    accounts.iter().flat_map(|accounts| [accounts.paid.id, accounts.bonus.id]).collect();
                let operations = repo::operations_touching(conn, card_id, &ids, before_id, limit + 1)?;
                let mut items = Vec::with_capacity(operations.len());
                for operation in operations {
                    let transfers = repo::transfers_of_operation(conn, operation.id)?;
                    let (mut paid, mut bonus) = (0, 0);
                    for transfer in &transfers {
                        let mut apply = |account: i64, signed: i64| {
                            if let Some(accounts) = &accounts {
                                if account == accounts.paid.id {
                                    paid += signed;
                                } else if account == accounts.bonus.id {
                                    bonus += signed;
                                }
                            }
                        };
                        apply(transfer.credit_account_id, transfer.amount_minor);
                        apply(transfer.debit_account_id, -transfer.amount_minor);
                    }
                    items.push(HistoryLine {
                        operation_id: operation.id,
                        kind: operation.kind,
                        store_id: operation.store_id,
                        occurred_at: format_ms(operation.occurred_at_ms),
                        paid_change_minor: paid,
                        bonus_change_minor: bonus,
                        change_minor: paid + bonus,
                        payment_method: operation.payment_method,
                        reverses_operation_id: operation.reverses_operation_id,
                    });
                }
                Ok(Page::from_overfetch(items, limit, |line| cursor_encode_id(line.operation_id)))
            })
            .await
    }

    /// A card's statement for the days `from` to `to` (inclusive) in the business's zone:
    /// opening balance, every operation with the balance after it, closing balance. The
    /// closing balance is read independently and must equal opening plus lines.
    pub async fn statement(
        &self,
        access: Access<'_, perm::CardRead>,
        card_id: i64,
        from: &str,
        to: &str,
    ) -> ServiceResult<Statement> {
        let (first, last) = (parse_day("from", from)?, parse_day("to", to)?);
        if last < first {
            return Err(ServiceError::invalid("to", "period.reversed", "`to` is before `from`"));
        }
        let days = (last - first).get_days() as i64 + 1;
        if days > STATEMENT_DAYS_MAX {
            return Err(ServiceError::invalid(
                "to",
                "period.too_long",
                format!("a statement covers at most {STATEMENT_DAYS_MAX} days; this asks for {days}"),
            ));
        }
        let zone = self.default_zone().clone();
        let from_ms = day_start_ms(first, &zone)?;
        let to_ms =
            day_start_ms(last.checked_add(1.day()).map_err(|error| invariant(error.to_string()))?, &zone)?;
        let scope = access.scope;
        let generated_at = format_ms(self.now_ms());
        let zone_name = self.settings().default_time_zone.clone();
        let services = self.clone();
        self.database()
            .read_consistent(move |conn| {
                let (card, product) = load_card(conn, card_id)?;
                if !scope.covers(card.store_id) {
                    return Err(ServiceError::forbidden(format!("card {card_id} belongs to another store")));
                }
                let accounts = value_accounts(conn, card_id)?.ok_or_else(|| {
                    ServiceError::conflict("card.not_stored_value", format!("card {card_id} holds no value"))
                })?;
                let (paid_id, bonus_id) = (accounts.paid.id, accounts.bonus.id);
                let opening = repo::balances_before(conn, &[paid_id, bonus_id], from_ms)?;
                let closing = repo::balances_before(conn, &[paid_id, bonus_id], to_ms)?;
                let postings = all_postings(conn, &[paid_id, bonus_id], from_ms, to_ms)?;
                let operations = operations_of(conn, &postings)?;
                let lines = lines_of(&postings, paid_id, &operations);
                let opening = Balance::of(opening[&paid_id], opening[&bonus_id]);
                let mut running = opening;
                let mut statement_lines = Vec::with_capacity(lines.len());
                let (mut credits, mut debits) = (0, 0);
                for line in lines {
                    running = Balance::of(running.paid_minor + line.paid_change_minor, running.bonus_minor + line.bonus_change_minor);
                    if line.change_minor >= 0 {
                        credits += line.change_minor;
                    } else {
                        debits -= line.change_minor;
                    }
                    statement_lines.push(StatementLine { line, balance_after: running });
                }
                let closing = Balance::of(closing[&paid_id], closing[&bonus_id]);
                if running != closing {
                    return Err(invariant(format!(
                        "card {card_id}: opening {opening:?} plus the period's lines gives {running:?}, but the closing balance is {closing:?}"
                    )));
                }
                let card_number = services.view_card(&card, &product)?.number;
                Ok(Statement {
                    card_id,
                    card_number,
                    customer_id: card.customer_id,
                    currency: product.currency,
                    from: first.to_string(),
                    to: last.to_string(),
                    time_zone: zone_name,
                    opening,
                    lines: statement_lines,
                    credits_minor: credits,
                    debits_minor: debits,
                    closing,
                    generated_at,
                })
            })
            .await
    }

    /// The reconciliation of one business day: customer liability per issuing store at the
    /// day's start and end with what moved it, and each store's activity.
    pub async fn reconciliation(
        &self,
        access: Access<'_, perm::LedgerRead>,
        date: &str,
    ) -> ServiceResult<Reconciliation> {
        let day = parse_day("date", date)?;
        let zone = self.default_zone().clone();
        let from_ms = day_start_ms(day, &zone)?;
        let to_ms =
            day_start_ms(day.checked_add(1.day()).map_err(|error| invariant(error.to_string()))?, &zone)?;
        let scope = access.scope;
        let generated_at = format_ms(self.now_ms());
        let zone_name = self.settings().default_time_zone.clone();
        let currency = self.currency().as_str().to_owned();
        self.database()
            .read_consistent(move |conn| {
                let opening = repo::liability_at(conn, from_ms)?;
                let closing = repo::liability_at(conn, to_ms)?;
                let movements = repo::card_movements(conn, from_ms, to_ms)?;
                let mut stores: BTreeMap<Option<i64>, StoreLiability> = BTreeMap::new();
                let entry = |stores: &mut BTreeMap<Option<i64>, StoreLiability>, store_id: Option<i64>| {
                    stores.entry(store_id).or_insert_with(|| StoreLiability {
                        store_id,
                        opening: Balance::default(),
                        movements: Vec::new(),
                        closing: Balance::default(),
                        balanced: true,
                    });
                };
                let add = |balance: &mut Balance, kind: &str, amount: i64| {
                    match kind {
                        "card_paid" => balance.paid_minor += amount,
                        _ => balance.bonus_minor += amount,
                    }
                    balance.total_minor += amount;
                };
                for (store_id, kind, amount) in &opening {
                    entry(&mut stores, *store_id);
                    add(&mut stores.get_mut(store_id).expect("entered").opening, kind, *amount);
                }
                for (store_id, kind, amount) in &closing {
                    entry(&mut stores, *store_id);
                    add(&mut stores.get_mut(store_id).expect("entered").closing, kind, *amount);
                }
                for movement in movements {
                    entry(&mut stores, movement.store_id);
                    let part = if movement.account_kind == "card_paid" { "paid" } else { "bonus" };
                    stores.get_mut(&movement.store_id).expect("entered").movements.push(MovementLine {
                        purpose: movement.purpose,
                        part: part.into(),
                        count: movement.count,
                        amount_minor: movement.signed_minor,
                    });
                }
                let mut liability: Vec<StoreLiability> =
                    stores.into_values().filter(|store| scope.covers(store.store_id)).collect();
                let (mut total_opening, mut total_closing) = (Balance::default(), Balance::default());
                for store in &mut liability {
                    let moved = |part: &str| {
                        store
                            .movements
                            .iter()
                            .filter(|line| line.part == part)
                            .map(|line| line.amount_minor)
                            .sum::<i64>()
                    };
                    store.balanced = store.opening.paid_minor + moved("paid") == store.closing.paid_minor
                        && store.opening.bonus_minor + moved("bonus") == store.closing.bonus_minor;
                    total_opening = Balance::of(
                        total_opening.paid_minor + store.opening.paid_minor,
                        total_opening.bonus_minor + store.opening.bonus_minor,
                    );
                    total_closing = Balance::of(
                        total_closing.paid_minor + store.closing.paid_minor,
                        total_closing.bonus_minor + store.closing.bonus_minor,
                    );
                }
                let balanced = liability.iter().all(|store| store.balanced);
                let activity = store_activity(conn, from_ms, to_ms)?
                    .into_iter()
                    .filter(|store| scope.covers(store.store_id))
                    .collect();
                Ok(Reconciliation {
                    date: day.to_string(),
                    time_zone: zone_name,
                    currency,
                    liability,
                    activity,
                    total_opening,
                    total_closing,
                    balanced,
                    generated_at,
                })
            })
            .await
    }

    /// Unusual-activity alerts, newest first; only open ones unless `all`.
    pub async fn alerts(
        &self,
        access: Access<'_, perm::LedgerRead>,
        all: bool,
        cursor: Option<String>,
        limit: u32,
    ) -> ServiceResult<Page<AlertView>> {
        let limit = page_limit(limit);
        let before_id = cursor.map(|cursor| cursor_decode_id(&cursor)).transpose()?;
        let store_id = access.scope.store_id();
        self.database()
            .read(move |conn| {
                let rows = repo::alerts(conn, store_id, all, before_id, limit + 1)?;
                let items: Vec<AlertView> = rows.into_iter().map(AlertView::from).collect();
                Ok(Page::from_overfetch(items, limit, |alert| cursor_encode_id(alert.id)))
            })
            .await
    }

    /// Marks an alert as looked into.
    pub async fn acknowledge_alert(
        &self,
        access: Access<'_, perm::LedgerReview>,
        id: i64,
    ) -> ServiceResult<AlertView> {
        let identity = access.identity().clone();
        let scope = access.scope;
        let now_ms = self.now_ms();
        self.database()
            .write(move |conn| {
                let found = repo::alert(conn, id)?.ok_or_else(|| ServiceError::not_found("alert", id))?;
                if !scope.covers(found.store_id) {
                    return Err(ServiceError::forbidden(format!("alert {id} belongs to another store")));
                }
                if found.acknowledged_at_ms.is_some() {
                    return Err(ServiceError::conflict(
                        "alert.acknowledged",
                        format!("alert {id} was already acknowledged"),
                    ));
                }
                repo::acknowledge_alert(conn, id, &identity.name, now_ms)?;
                crate::audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "alert.acknowledge",
                    "ledger_alert",
                    id,
                    None,
                    None,
                )?;
                let after = repo::alert(conn, id)?.ok_or_else(|| ServiceError::not_found("alert", id))?;
                Ok(AlertView::from(after))
            })
            .await
    }

    /// Forgets idempotency keys older than `ledger.idempotency_days`; returns how many.
    pub async fn purge_idempotency_keys(&self) -> ServiceResult<u64> {
        let days = self.settings().ledger.idempotency_days.max(1);
        let before_ms = self.now_ms() - days * 86_400_000;
        // In bounded transactions, so payments queued behind a purge wait a moment at most.
        const BATCH: i64 = 10_000;
        let mut purged = 0;
        loop {
            let deleted = self
                .database()
                .write(move |conn| Ok::<_, ServiceError>(repo::purge_keys(conn, before_ms, BATCH)?))
                .await?;
            purged += deleted;
            if deleted < BATCH as u64 {
                return Ok(purged);
            }
        }
    }

    /// Checks every invariant of the ledger over the whole database.
    pub async fn verify_ledger(&self, _access: Access<'_, perm::LedgerRead>) -> ServiceResult<Verification> {
        self.database()
            .read_consistent(|conn| {
                let (problems, totals) = repo::verify(conn)?;
                Ok(Verification::of(problems, totals))
            })
            .await
    }
}

/// Every posting of `accounts` in the window, bounded by [`STATEMENT_LINES_MAX`] transfers.
fn all_postings(
    conn: &mut Conn<'_>,
    accounts: &[i64],
    from_ms: i64,
    to_ms: i64,
) -> ServiceResult<Vec<Posting>> {
    let mut out: Vec<Posting> = Vec::new();
    let mut after_id = 0;
    loop {
        let page = repo::postings(
            conn,
            accounts,
            from_ms,
            to_ms,
            after_id,
            cardcrm_domain::limits::PAGE_SIZE_MAX.into(),
        )?;
        let Some(last) = page.last() else { break };
        after_id = last.transfer.id;
        let full = page.len() as i64 >= i64::from(cardcrm_domain::limits::PAGE_SIZE_MAX);
        out.extend(page);
        if out.len() > STATEMENT_LINES_MAX {
            return Err(ServiceError::TooLarge {
                what: "the statement period",
                limit: STATEMENT_LINES_MAX as u64,
            });
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

fn operations_of(
    conn: &mut Conn<'_>,
    postings: &[Posting],
) -> ServiceResult<BTreeMap<i64, repo::OperationRecord>> {
    let mut out = BTreeMap::new();
    for posting in postings {
        let id = posting.transfer.operation_id;
        if !out.contains_key(&id)
            && let Some(operation) = repo::operation(conn, id)?
        {
            out.insert(id, operation);
        }
    }
    Ok(out)
}

fn store_activity(conn: &mut Conn<'_>, from_ms: i64, to_ms: i64) -> ServiceResult<Vec<StoreActivity>> {
    let stores = repo::operation_stores(conn, from_ms, to_ms)?;
    let mut out = Vec::with_capacity(stores.len());
    for (store_id, operations) in stores {
        let totals = repo::purpose_totals(conn, store_id, from_ms, to_ms)?;
        let sum = |names: &[&str]| -> i64 {
            totals
                .iter()
                .filter(|(purpose, _, _)| names.contains(&purpose.as_str()))
                .map(|(_, _, amount)| amount)
                .sum()
        };
        out.push(StoreActivity {
            store_id,
            top_up_paid_minor: sum(&["top_up_paid"]),
            top_up_bonus_minor: sum(&["top_up_bonus"]),
            spend_paid_minor: sum(&["spend_paid"]),
            spend_bonus_minor: sum(&["spend_bonus"]),
            refund_paid_minor: sum(&["refund_paid"]),
            refund_bonus_minor: sum(&["refund_bonus"]),
            external_minor: sum(&["checkout_external"]),
            refund_external_minor: sum(&["refund_external"]),
            breakage_minor: sum(&["close_forfeit_bonus", "close_forfeit_paid"]),
            close_refund_minor: sum(&["close_refund_paid"]),
            operations,
        });
    }
    Ok(out)
}
