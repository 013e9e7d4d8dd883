//! Stored value (C2) on the double-entry ledger: top-ups with bonus, payments, refunds back
//! to the balance they came from, transfers between a customer's cards, replacement 补卡
//! and closing; balances, history, statements, alerts and the daily reconciliation.
//!
//! Every request that moves value carries an idempotency key. Its answer is stored with the
//! key in the same transaction as the operation: the same key and request give the stored
//! answer, even after a restart; the same key with another request is refused. Business
//! refusals (not enough balance, a frozen card) are answers too and are stored; input that
//! does not validate, and a wrong PIN, are not (the caller fixes them and may retry).
//!
//! Every movement is an operation made of transfers. A customer's paid and bonus balances
//! are two accounts per card that keep their balance on their row; the store layer refuses a
//! debit they do not cover in the statement that applies it. Checks against the current
//! balance happen first, so a refusal writes nothing but its key; if a concurrent
//! transaction took the balance in between (PostgreSQL), the unit runs again.

use std::collections::HashMap;

use cardcrm_domain::{
    FieldError, FieldErrors,
    card::{CardEvent, CardForm, CardKind, CardNumber, CardStatus, Pin},
    ledger::{BonusRule, BonusRules, SpendOrder, ValueParts, split_refund, split_spend},
};
use cardcrm_store::{
    Conn, StoreError,
    repo::{
        cards::{self as card_repo, CardRecord, ProductRecord},
        ledger::{
            self as repo, AccountRecord, AccountRef, AlertRecord, KeyRecord, NewAccount, NewTransfer,
            OperationRecord, PostRefusal, TransferRecord,
        },
        organisation,
    },
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::{
    Services, audit,
    cards::{CardView, card_state_code, card_view, load_card, number_index, status_after},
    clock::format_ms,
    error::{ServiceError, ServiceResult},
    identity::{Access, Identity, perm},
    random::secure_bytes,
};

/// A client-chosen key that makes a request safe to send again: 8 to 128 characters of
/// letters, digits and `-_.:` (a UUID is a good choice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let key = raw.trim();
        if (8..=128).contains(&key.len())
            && key
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
        {
            Ok(Self(key.to_owned()))
        } else {
            Err(FieldError::new(
                "Idempotency-Key",
                "idempotency_key.invalid",
                "the Idempotency-Key header holds 8 to 128 characters of letters, digits and - _ . :",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The answer to a keyed request, and whether it is the stored answer of an earlier one.
#[derive(Debug, Clone)]
pub struct Outcome<T> {
    pub value: T,
    pub replayed: bool,
}

/// A business refusal: stored with the key and answered again to a repeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Refusal {
    code: String,
    message: String,
}

impl Refusal {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        // A code missing from the list would reach clients as `operation.refused`.
        debug_assert!(REFUSAL_CODES.contains(&code), "refusal code {code} is not in REFUSAL_CODES");
        Self { code: code.to_owned(), message: message.into() }
    }

    fn into_error(self) -> ServiceError {
        ServiceError::Conflict { code: refusal_code(&self.code), message: self.message }
    }
}

/// Stable codes of stored refusals (the error type wants static codes).
fn refusal_code(code: &str) -> &'static str {
    REFUSAL_CODES.into_iter().find(|known| *known == code).unwrap_or("operation.refused")
}

const REFUSAL_CODES: [&str; 33] = [
    "points.insufficient",
    "customer.not_active",
    "points.transfer_limit",
    "partner.closed",
    "coupon.template_inactive",
    "coupon.template_ended",
    "coupon.issue_limit",
    "coupon.member_limit",
    "coupon.invalid",
    "coupon.not_stackable",
    "reward.inactive",
    "reward.member_limit",
    "reward.out_of_stock",
    "order.closed",
    "order.coupon_used",
    "points.not_member",
    "points.over_basket_share",
    "points.not_enough",
    "coupon.not_applicable",
    "balance.insufficient",
    "balance.over_limit",
    "card.not_active",
    "card.frozen",
    "card.replaced",
    "card.closed",
    "card.active",
    "card.expired",
    "card.not_stored_value",
    "refund.exceeds_remaining",
    "refund.not_refundable",
    "transfer.not_allowed",
    "member.already_enrolled",
    "referral.too_late",
];

/// What the unit of work of a keyed request ended with.
enum Stored<T> {
    Fresh(T),
    Refused(Refusal),
    Replay(KeyRecord),
}

/// What a unit of work of a keyed request decided.
pub(crate) enum Decision<T> {
    Done { value: T, operation_id: Option<i64> },
    Refused(Refusal),
}

/// A stored-value balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BalanceView {
    pub card_id: i64,
    /// Money the customer paid in, still on the card.
    pub paid_minor: i64,
    /// Money the business gave (top-up bonus), still on the card.
    pub bonus_minor: i64,
    pub total_minor: i64,
}

/// One operation on the ledger as the API answers it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationView {
    pub id: i64,
    /// `top_up`, `spend`, `refund`, `transfer`, `replace`, `close`, `checkout`.
    pub kind: String,
    pub card_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub store_id: Option<i64>,
    pub currency: String,
    pub amount_minor: i64,
    /// How much of the amount was (or went back to) paid money, and how much bonus.
    pub paid_minor: i64,
    pub bonus_minor: i64,
    pub payment_method: Option<String>,
    pub reverses_operation_id: Option<i64>,
    pub occurred_at: String,
    /// The card's balance right after the operation.
    pub balance_after: Option<BalanceView>,
    /// A printable receipt.
    pub receipt_path: String,
    pub detail: serde_json::Value,
}

/// How a top-up was paid for.
pub const PAYMENT_METHODS: [&str; 6] = ["cash", "bank_card", "wechat_pay", "alipay", "transfer", "other"];

pub(crate) fn parse_payment_method(field: &str, raw: &str) -> Result<String, FieldError> {
    let method = raw.trim().to_lowercase();
    PAYMENT_METHODS.into_iter().find(|known| *known == method).map(str::to_owned).ok_or_else(|| {
        FieldError::new(
            field,
            "payment_method.invalid",
            format!("`{raw}` is one of {}", PAYMENT_METHODS.join(", ")),
        )
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpInput {
    /// Paid money to load, in minor units; the product's bonus tier adds to it.
    pub amount_minor: i64,
    /// `cash`, `bank_card`, `wechat_pay`, `alipay`, `transfer` or `other`.
    pub payment_method: String,
    #[serde(default)]
    pub store_id: Option<i64>,
    /// The till's own reference (shown on the receipt).
    #[serde(default)]
    pub reference: Option<String>,
    /// The currency the till expects (ISO 4217, such as `CNY`); refused when the card holds
    /// another. Left out: the card's own.
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendInput {
    pub amount_minor: i64,
    #[serde(default)]
    pub store_id: Option<i64>,
    /// Needed above the product's PIN threshold. Never stored, never part of the request
    /// compared for idempotency.
    #[serde(default, skip_serializing)]
    pub pin: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    /// The currency the till expects (ISO 4217, such as `CNY`); refused when the card holds
    /// another. Left out: the card's own.
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundInput {
    /// How much to give back; everything that is left of the operation when left out.
    #[serde(default)]
    pub amount_minor: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferInput {
    /// The card that receives; it must belong to the same customer and currency.
    pub to_card_id: i64,
    pub amount_minor: i64,
    #[serde(default, skip_serializing)]
    pub pin: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceInput {
    /// `physical` (default) or `virtual`.
    #[serde(default)]
    pub form: Option<String>,
    /// The number of a pre-printed card; generated when left out.
    #[serde(default)]
    pub number: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseInput {
    /// Where a refund of the paid balance is handed out.
    #[serde(default)]
    pub store_id: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A replacement 补卡: the old card, now `replaced`, and the new one holding its balance.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Replacement {
    pub old_card: CardView,
    pub new_card: CardView,
    /// The new card's whole number; in the first answer only (a repeat of the request gets
    /// `null`: numbers are not kept with idempotency keys).
    pub full_number: Option<String>,
    pub operation: OperationView,
}

/// Operation kinds and transfer purposes, as stored.
mod kind {
    pub const TOP_UP: &str = "top_up";
    pub const SPEND: &str = "spend";
    pub const REFUND: &str = "refund";
    pub const TRANSFER: &str = "transfer";
    pub const REPLACE: &str = "replace";
    pub const CLOSE: &str = "close";
    pub const CHECKOUT: &str = "checkout";
}

/// Opens the ledger accounts a new card needs: a paid and a bonus balance for stored value.
pub(crate) fn open_card_accounts(
    conn: &mut Conn<'_>,
    card: &CardRecord,
    product: &ProductRecord,
    now_ms: i64,
) -> ServiceResult<()> {
    if CardKind::parse(&product.kind).is_ok_and(CardKind::holds_value) {
        for part in ["paid", "bonus"] {
            let code = format!("card:{}:{part}", card.id);
            repo::ensure_account(
                conn,
                &NewAccount {
                    code: &code,
                    kind: &format!("card_{part}"),
                    asset: &product.currency,
                    card_id: Some(card.id),
                    store_id: None,
                    customer_id: None,
                    tracks_balance: true,
                },
                now_ms,
            )?;
        }
    }
    Ok(())
}

/// A store's account (stores named `none` when an operation has no store).
pub(crate) fn store_account(
    conn: &mut Conn<'_>,
    store_id: Option<i64>,
    name: &str,
    asset: &str,
    now_ms: i64,
) -> ServiceResult<AccountRef> {
    let code =
        format!("store:{}:{asset}:{name}", store_id.map_or_else(|| "none".to_owned(), |id| id.to_string()));
    Ok(repo::ensure_account(
        conn,
        &NewAccount {
            code: &code,
            kind: &format!("store_{name}"),
            asset,
            card_id: None,
            store_id,
            customer_id: None,
            tracks_balance: false,
        },
        now_ms,
    )?)
}

pub(crate) fn system_account(
    conn: &mut Conn<'_>,
    name: &str,
    asset: &str,
    now_ms: i64,
) -> ServiceResult<AccountRef> {
    let code = format!("system:{asset}:{name}");
    Ok(repo::ensure_account(
        conn,
        &NewAccount {
            code: &code,
            kind: &format!("system_{name}"),
            asset,
            card_id: None,
            store_id: None,
            customer_id: None,
            tracks_balance: false,
        },
        now_ms,
    )?)
}

/// A card's paid and bonus accounts.
pub(crate) struct ValueAccounts {
    pub(crate) paid: AccountRecord,
    pub(crate) bonus: AccountRecord,
}

impl ValueAccounts {
    pub(crate) fn balance(&self) -> ValueParts {
        ValueParts { paid_minor: self.paid.balance(), bonus_minor: self.bonus.balance() }
    }

    pub(crate) fn view(&self, card_id: i64) -> BalanceView {
        let parts = self.balance();
        BalanceView {
            card_id,
            paid_minor: parts.paid_minor,
            bonus_minor: parts.bonus_minor,
            total_minor: parts.total(),
        }
    }
}

pub(crate) fn value_accounts(conn: &mut Conn<'_>, card_id: i64) -> ServiceResult<Option<ValueAccounts>> {
    let accounts = repo::accounts_of_card(conn, card_id)?;
    let find = |kind: &str| accounts.iter().find(|account| account.kind == kind).cloned();
    Ok(match (find("card_paid"), find("card_bonus")) {
        (Some(paid), Some(bonus)) => Some(ValueAccounts { paid, bonus }),
        _ => None,
    })
}

/// Who did it, from where: recorded on every operation.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    kind: String,
    id: Option<i64>,
    name: String,
    source_ip: Option<String>,
    request_id: Option<String>,
}

impl Actor {
    pub(crate) fn of(identity: &Identity) -> Self {
        Self {
            kind: identity.kind.as_str().to_owned(),
            id: identity.id,
            name: identity.name.clone(),
            source_ip: identity.source_ip.clone(),
            request_id: identity.request_id.clone(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Who may reuse an idempotency key: the same token, staff member or operator.
    fn key_owner(&self) -> String {
        format!("{}:{}", self.kind, self.id.map_or_else(|| self.name.clone(), |id| id.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn operation(
        &self,
        kind: &str,
        card: Option<&CardRecord>,
        store_id: Option<i64>,
        reverses: Option<i64>,
        amount_minor: i64,
        asset: &str,
        payment_method: Option<String>,
        detail: serde_json::Value,
        now_ms: i64,
    ) -> OperationRecord {
        OperationRecord {
            id: 0,
            kind: kind.to_owned(),
            card_id: card.map(|card| card.id),
            customer_id: card.map(|card| card.customer_id),
            store_id,
            reverses_operation_id: reverses,
            amount_minor,
            asset: asset.to_owned(),
            payment_method,
            detail_json: detail.to_string(),
            actor_kind: self.kind.clone(),
            actor_id: self.id,
            actor_name: self.name.clone(),
            source_ip: self.source_ip.clone(),
            request_id: self.request_id.clone(),
            occurred_at_ms: now_ms,
        }
    }
}

/// Posts a transfer; a balance that no longer covers it (taken by a concurrent transaction
/// since it was read) makes the whole unit run again, where the check refuses properly.
pub(crate) fn post(conn: &mut Conn<'_>, transfer: &NewTransfer<'_>) -> ServiceResult<i64> {
    match repo::post(conn, transfer)? {
        Ok(id) => Ok(id),
        Err(PostRefusal::Insufficient { account_id }) => {
            conn.retry_unit();
            Err(ServiceError::Store(StoreError::Invariant(format!(
                "account {account_id} no longer covers {}; the operation runs again",
                transfer.amount_minor
            ))))
        }
    }
}

fn digest(kind: &str, request: &impl Serialize) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(request).unwrap_or_default());
    hasher.finalize().to_vec()
}

pub(crate) fn refuse_card_state(
    card: &CardRecord,
    wanted: fn(CardStatus) -> bool,
    now_ms: i64,
) -> Option<Refusal> {
    let status = CardStatus::parse(&card.status)?;
    if !wanted(status) {
        return Some(Refusal::new(
            card_state_code(status),
            format!("card {} is {}", card.id, status.as_str()),
        ));
    }
    if card.expires_at_ms.is_some_and(|expires| expires <= now_ms) {
        return Some(Refusal::new(
            "card.expired",
            format!("card {} expired on {}", card.id, format_ms(card.expires_at_ms.unwrap_or(0))),
        ));
    }
    None
}

pub(crate) fn stored_value_product(product: &ProductRecord, card: &CardRecord) -> Result<(), Refusal> {
    if CardKind::parse(&product.kind).is_ok_and(CardKind::holds_value) {
        Ok(())
    } else {
        Err(Refusal::new(
            "card.not_stored_value",
            format!("card {} is a {} card and holds no value", card.id, product.kind),
        ))
    }
}

fn positive_amount(field: &str, amount: i64, max: i64) -> Result<i64, FieldError> {
    if amount <= 0 {
        return Err(FieldError::new(field, "amount.not_positive", format!("{field} must be positive")));
    }
    if amount > max {
        return Err(FieldError::new(field, "amount.over_maximum", format!("{field} may be at most {max}")));
    }
    Ok(amount)
}

fn reference(field: &str, raw: &Option<String>) -> Result<Option<String>, FieldError> {
    match raw {
        None => Ok(None),
        Some(raw) => cardcrm_domain::customer::parse_bounded_text(field, raw, 64),
    }
}

impl Services {
    /// Runs a keyed request: answers a repeat from the stored answer, refuses a key reused
    /// for another request, and otherwise runs `work` and stores its answer with the key in
    /// the same transaction.
    pub(crate) async fn keyed<T, F>(
        &self,
        identity: &Identity,
        key: IdempotencyKey,
        kind: &'static str,
        request: &impl Serialize,
        mut work: F,
    ) -> ServiceResult<Outcome<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnMut(&mut Conn<'_>, &Actor, i64) -> ServiceResult<Decision<T>> + Send + 'static,
    {
        let request_hash = digest(kind, request);
        let actor = Actor::of(identity);
        let now_ms = self.now_ms();
        let stored = self
            .database()
            .write(move |conn| {
                if let Some(found) = repo::key(conn, key.as_str())? {
                    return Ok(Stored::Replay(found));
                }
                let (status, response, operation_id, stored) = match work(conn, &actor, now_ms)? {
                    Decision::Done { value, operation_id } => {
                        let json = serde_json::to_value(&value)
                            .map_err(|error| ServiceError::Config(error.to_string()))?;
                        (201, json, operation_id, Stored::Fresh(value))
                    }
                    Decision::Refused(refusal) => (
                        409,
                        serde_json::to_value(&refusal).unwrap_or_default(),
                        None,
                        Stored::Refused(refusal),
                    ),
                };
                let record = KeyRecord {
                    idempotency_key: key.as_str().to_owned(),
                    actor: actor.key_owner(),
                    request_hash: request_hash.clone(),
                    status,
                    response_json: strip_secrets(response).to_string(),
                    operation_id,
                    created_at_ms: now_ms,
                };
                match repo::insert_key(conn, &record) {
                    Ok(()) => Ok(stored),
                    // The same key committed by a concurrent request (PostgreSQL): run the
                    // unit again, which then answers from it.
                    Err(StoreError::UniqueViolation { .. }) => {
                        conn.retry_unit();
                        Err(ServiceError::conflict(
                            "idempotency_key.in_flight",
                            "a request with this Idempotency-Key is running; retry",
                        ))
                    }
                    Err(other) => Err(other.into()),
                }
            })
            .await?;
        match stored {
            Stored::Fresh(value) => Ok(Outcome { value, replayed: false }),
            Stored::Refused(refusal) => Err(refusal.into_error()),
            Stored::Replay(record) => {
                if record.actor != Actor::of(identity).key_owner()
                    || record.request_hash != digest(kind, request)
                {
                    return Err(ServiceError::conflict(
                        "idempotency_key.reused",
                        "this Idempotency-Key was used for a different request; use a new key for a new request",
                    ));
                }
                if record.status != 201 {
                    let refusal: Refusal = serde_json::from_str(&record.response_json)
                        .unwrap_or_else(|_| Refusal::new("operation.refused", "the operation was refused"));
                    return Err(refusal.into_error());
                }
                let value = serde_json::from_str(&record.response_json).map_err(|error| {
                    ServiceError::Store(StoreError::Invariant(format!(
                        "a stored answer does not read back: {error}"
                    )))
                })?;
                Ok(Outcome { value, replayed: true })
            }
        }
    }

    /// Checks a PIN before a payment needs it: outside the writer (Argon2 takes tens of
    /// milliseconds), counting a wrong one. Returns the PIN hash the check was made against,
    /// which the unit of work then requires to be unchanged.
    pub(crate) async fn check_pin(
        &self,
        card_id: i64,
        amount: i64,
        pin: Option<&str>,
    ) -> ServiceResult<Option<String>> {
        let (card, product) = self.database().read(move |conn| load_card(conn, card_id)).await?;
        let needed = product.pin_required_above_minor.is_some_and(|threshold| amount > threshold);
        if !needed && pin.is_none() {
            return Ok(None);
        }
        let Some(stored) = card.pin_hash.clone() else {
            return if needed {
                Err(ServiceError::conflict(
                    "pin.not_set",
                    "this payment needs a PIN and the card has none; set one first",
                ))
            } else {
                Ok(None)
            };
        };
        let Some(raw) = pin else {
            return Err(ServiceError::invalid(
                "pin",
                "pin.required",
                "a payment of this size needs the card's PIN",
            ));
        };
        let pin = Pin::parse(raw).map_err(|error| error.at("pin"))?;
        if card.pin_locked_until_ms.is_some_and(|until| until > self.now_ms()) {
            return Err(ServiceError::conflict(
                "pin.locked",
                "the card's PIN is locked after too many wrong tries",
            ));
        }
        if !self.pin_matches_blocking(pin, stored.clone()).await? {
            self.record_pin_failure(card_id).await?;
            return Err(ServiceError::conflict("pin.wrong", "the PIN is wrong"));
        }
        Ok(Some(stored))
    }

    /// Loads paid money onto a card, with the product's bonus.
    pub async fn top_up(
        &self,
        access: Access<'_, perm::ValueLoad>,
        key: IdempotencyKey,
        card_id: i64,
        input: TopUpInput,
    ) -> ServiceResult<Outcome<OperationView>> {
        let mut errors = FieldErrors::new();
        let amount = errors.take(
            "amount_minor",
            positive_amount("amount_minor", input.amount_minor, crate::cards::VALUE_MINOR_MAX),
        );
        let method =
            errors.take("payment_method", parse_payment_method("payment_method", &input.payment_method));
        let reference = errors.take("reference", reference("reference", &input.reference)).flatten();
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let (amount, method) = (amount.unwrap_or_default(), method.unwrap_or_default());
        let store_id = input.store_id.or(access.scope.store_id());
        access.require_store(store_id)?;
        let request = (card_id, &input, store_id);
        let wanted_currency = input.currency.clone();
        let alerts = self.settings().ledger.clone();
        let services = self.clone();
        self.keyed(access.identity(), key, kind::TOP_UP, &request, move |conn, actor, now_ms| {
            let (mut card, product) = load_card(conn, card_id)?;
            check_store(conn, store_id)?;
            check_currency(&wanted_currency, &product.currency)?;
            if let Err(refusal) = stored_value_product(&product, &card) {
                return Ok(Decision::Refused(refusal));
            }
            if let Some(refusal) = refuse_card_state(&card, CardStatus::can_load, now_ms) {
                return Ok(Decision::Refused(refusal));
            }
            if amount > product.top_up_max_minor {
                return Err(ServiceError::invalid(
                    "amount_minor",
                    "amount.over_maximum",
                    format!("a top-up of this card may be at most {}", product.top_up_max_minor),
                ));
            }
            let accounts = value_accounts(conn, card.id)?.ok_or_else(|| missing_accounts(card.id))?;
            let rules: Vec<BonusRule> = serde_json::from_str(&product.bonus_rules_json).unwrap_or_default();
            let bonus = BonusRules::parse(rules).map(|rules| rules.bonus_for(amount)).unwrap_or(0);
            if accounts.balance().total() + amount + bonus > product.balance_max_minor {
                return Ok(Decision::Refused(Refusal::new(
                    "balance.over_limit",
                    format!(
                        "the card may hold at most {}; it holds {}",
                        product.balance_max_minor,
                        accounts.balance().total()
                    ),
                )));
            }
            if card.status == CardStatus::Issued.as_str() {
                activate_in_place(conn, &mut card, now_ms)?;
            }
            let asset = product.currency.clone();
            let detail =
                serde_json::json!({"paid_minor": amount, "bonus_minor": bonus, "reference": reference});
            let operation = actor.operation(
                kind::TOP_UP,
                Some(&card),
                store_id,
                None,
                amount + bonus,
                &asset,
                Some(method.clone()),
                detail,
                now_ms,
            );
            let operation_id = repo::insert_operation(conn, &operation)?;
            let payments = store_account(conn, store_id, &format!("payments:{method}"), &asset, now_ms)?;
            post(
                conn,
                &NewTransfer {
                    operation_id,
                    debit: payments,
                    credit: AccountRef::from(&accounts.paid),
                    amount_minor: amount,
                    asset: &asset,
                    purpose: "top_up_paid",
                    reverses_transfer_id: None,
                    created_at_ms: now_ms,
                },
            )?;
            if bonus > 0 {
                let issued = store_account(conn, store_id, "bonus_issued", &asset, now_ms)?;
                post(
                    conn,
                    &NewTransfer {
                        operation_id,
                        debit: issued,
                        credit: AccountRef::from(&accounts.bonus),
                        amount_minor: bonus,
                        asset: &asset,
                        purpose: "top_up_bonus",
                        reverses_transfer_id: None,
                        created_at_ms: now_ms,
                    },
                )?;
            }
            raise_alerts(conn, &alerts, &card, store_id, operation_id, "top_up", amount, now_ms)?;
            let balance =
                value_accounts(conn, card.id)?.ok_or_else(|| missing_accounts(card.id))?.view(card.id);
            let value = services.operation_view(conn, operation_id, Some(balance))?;
            Ok(Decision::Done { value, operation_id: Some(operation_id) })
        })
        .await
    }

    /// Pays from a card's stored value (PIN above the product's threshold).
    pub async fn spend(
        &self,
        access: Access<'_, perm::ValueSpend>,
        key: IdempotencyKey,
        card_id: i64,
        input: SpendInput,
    ) -> ServiceResult<Outcome<OperationView>> {
        let mut errors = FieldErrors::new();
        let amount = errors.take(
            "amount_minor",
            positive_amount("amount_minor", input.amount_minor, crate::cards::VALUE_MINOR_MAX),
        );
        let reference = errors.take("reference", reference("reference", &input.reference)).flatten();
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let amount = amount.unwrap_or_default();
        let store_id = input.store_id.or(access.scope.store_id());
        access.require_store(store_id)?;
        let pin_hash = self.check_pin(card_id, amount, input.pin.as_deref()).await?;
        let request = (card_id, &input, store_id);
        let wanted_currency = input.currency.clone();
        let alerts = self.settings().ledger.clone();
        let services = self.clone();
        self.keyed(access.identity(), key, kind::SPEND, &request, move |conn, actor, now_ms| {
            let (card, product) = load_card(conn, card_id)?;
            check_store(conn, store_id)?;
            check_currency(&wanted_currency, &product.currency)?;
            require_pin_unchanged(&card, &pin_hash)?;
            if let Err(refusal) = stored_value_product(&product, &card) {
                return Ok(Decision::Refused(refusal));
            }
            if let Some(refusal) = refuse_card_state(&card, CardStatus::can_pay, now_ms) {
                return Ok(Decision::Refused(refusal));
            }
            if amount > product.spend_max_minor {
                return Err(ServiceError::invalid("amount_minor", "amount.over_maximum", format!("a payment from this card may be at most {}", product.spend_max_minor)));
            }
            let accounts = value_accounts(conn, card.id)?.ok_or_else(|| missing_accounts(card.id))?;
            let order = SpendOrder::parse(&product.spend_order).unwrap_or(SpendOrder::Proportional);
            let parts = match split_spend(amount, accounts.balance(), order) {
                Ok(parts) => parts,
                Err(short) => return Ok(Decision::Refused(insufficient(card.id, short.available_minor, amount))),
            };
            let asset = product.currency.clone();
            let detail = serde_json::json!({"paid_minor": parts.paid_minor, "bonus_minor": parts.bonus_minor, "reference": reference});
            let operation = actor.operation(kind::SPEND, Some(&card), store_id, None, amount, &asset, Some("stored_value".into()), detail, now_ms);
            let operation_id = repo::insert_operation(conn, &operation)?;
            pay_from_card(conn, operation_id, &accounts, parts, store_id, &asset, now_ms)?;
            raise_alerts(conn, &alerts, &card, store_id, operation_id, "spend", amount, now_ms)?;
            let balance = value_accounts(conn, card.id)?.ok_or_else(|| missing_accounts(card.id))?.view(card.id);
            let value = services.operation_view(conn, operation_id, Some(balance))?;
            Ok(Decision::Done { value, operation_id: Some(operation_id) })
        })
        .await
    }

    /// Gives back (part of) a payment or checkout: to the balances it came from in
    /// proportion, and to the till for what was paid outside the card.
    pub async fn refund(
        &self,
        access: Access<'_, perm::ValueRefund>,
        key: IdempotencyKey,
        operation_id: i64,
        input: RefundInput,
    ) -> ServiceResult<Outcome<OperationView>> {
        if let Some(amount) = input.amount_minor {
            positive_amount("amount_minor", amount, crate::cards::VALUE_MINOR_MAX)?;
        }
        let reason = reference("reason", &input.reason).map_err(|error| error.at("reason"))?;
        let request = (operation_id, &input);
        let scope = access.scope;
        let services = self.clone();
        let context = self.loyalty_context();
        self.keyed(access.identity(), key, kind::REFUND, &request, move |conn, actor, now_ms| {
            let original = repo::operation(conn, operation_id)?
                .ok_or_else(|| ServiceError::not_found("operation", operation_id))?;
            if !scope.covers(original.store_id) {
                return Err(ServiceError::forbidden(format!(
                    "operation {operation_id} belongs to another store"
                )));
            }
            if ![kind::SPEND, kind::CHECKOUT].contains(&original.kind.as_str()) {
                return Ok(Decision::Refused(Refusal::new(
                    "refund.not_refundable",
                    format!("a {} cannot be refunded; only payments and checkouts", original.kind),
                )));
            }
            let plan = match refund_plan(conn, &original, input.amount_minor)? {
                Ok(plan) => plan,
                Err(refusal) => return Ok(Decision::Refused(refusal)),
            };
            // The value goes back to the card that paid, or to the card that replaced it.
            let mut destination = None;
            if let Some(card_id) = original.card_id {
                let card = current_card(conn, card_id)?;
                if card.status == CardStatus::Closed.as_str() && plan.card_parts.total() > 0 {
                    return Ok(Decision::Refused(Refusal::new(
                        "card.closed",
                        format!("card {} is closed; refund at the till instead", card.id),
                    )));
                }
                destination = Some(card);
            }
            let total = plan.card_parts.total() + plan.external_minor;
            let refunded_before: i64 =
                repo::reversals_of(conn, original.id)?.iter().map(|reversal| reversal.amount_minor).sum();
            let refunded_after = refunded_before + total;
            let points_plan = crate::loyalty::plan_points_reversal(
                conn,
                &original,
                original.amount_minor,
                refunded_after,
                now_ms,
            )?;
            let detail = serde_json::json!({
                "paid_minor": plan.card_parts.paid_minor, "bonus_minor": plan.card_parts.bonus_minor,
                "external_minor": plan.external_minor, "reason": reason,
                "points": points_plan.as_ref().map(|plan| plan.reversal),
            });
            let operation = actor.operation(
                kind::REFUND,
                destination.as_ref(),
                original.store_id,
                Some(original.id),
                total,
                &original.asset,
                original.payment_method.clone(),
                detail,
                now_ms,
            );
            let refund_id = repo::insert_operation(conn, &operation)?;
            let accounts = match &destination {
                Some(card) => value_accounts(conn, card.id)?,
                None => None,
            };
            for (original_transfer, amount) in &plan.transfers {
                let back_to = match original_transfer.purpose.as_str() {
                    "spend_paid" => accounts.as_ref().map(|accounts| AccountRef::from(&accounts.paid)),
                    "spend_bonus" => accounts.as_ref().map(|accounts| AccountRef::from(&accounts.bonus)),
                    _ => Some(AccountRef { id: original_transfer.debit_account_id, tracks_balance: false }),
                }
                .ok_or_else(|| missing_accounts(original.card_id.unwrap_or_default()))?;
                let from = AccountRef { id: original_transfer.credit_account_id, tracks_balance: false };
                let purpose = format!(
                    "refund_{}",
                    original_transfer.purpose.trim_start_matches("spend_").trim_start_matches("checkout_")
                );
                post(
                    conn,
                    &NewTransfer {
                        operation_id: refund_id,
                        debit: from,
                        credit: back_to,
                        amount_minor: *amount,
                        asset: &original.asset,
                        purpose: &purpose,
                        reverses_transfer_id: Some(original_transfer.id),
                        created_at_ms: now_ms,
                    },
                )?;
            }
            if original.kind == kind::CHECKOUT {
                crate::checkout::record_refund_purchases(conn, &original, refund_id, total, now_ms)?;
                if let Some(points_plan) = &points_plan {
                    crate::loyalty::apply_points_reversal(
                        conn,
                        &original,
                        refund_id,
                        points_plan,
                        &context,
                        now_ms,
                    )?;
                }
                if let Some(customer_id) = original.customer_id {
                    let whole = refunded_after >= original.amount_minor;
                    crate::loyalty::take_back_activity(
                        conn,
                        customer_id,
                        total,
                        whole,
                        now_ms,
                        &context.zone,
                    )?;
                }
                // A checkout refunded in full gives its coupons back, and takes back the
                // referral bonus it paid if it was a referred member's first purchase.
                if refunded_after >= original.amount_minor {
                    for coupon in cardcrm_store::repo::rewards::coupons_redeemed_by(conn, original.id)? {
                        cardcrm_store::repo::rewards::unredeem_coupon(conn, coupon.id)?;
                    }
                    crate::loyalty::take_back_referral(conn, actor, &original, refund_id, &context, now_ms)?;
                }
            }
            let balance = match &destination {
                Some(card) => value_accounts(conn, card.id)?.map(|accounts| accounts.view(card.id)),
                None => None,
            };
            let value = services.operation_view(conn, refund_id, balance)?;
            Ok(Decision::Done { value, operation_id: Some(refund_id) })
        })
        .await
    }

    /// Moves stored value between two cards of the same customer, paid to paid and bonus to
    /// bonus in the paying card's spend order.
    pub async fn transfer_value(
        &self,
        access: Access<'_, perm::ValueSpend>,
        key: IdempotencyKey,
        from_card_id: i64,
        input: TransferInput,
    ) -> ServiceResult<Outcome<OperationView>> {
        let amount = positive_amount("amount_minor", input.amount_minor, crate::cards::VALUE_MINOR_MAX)?;
        if input.to_card_id == from_card_id {
            return Err(ServiceError::invalid(
                "to_card_id",
                "transfer.same_card",
                "a card cannot pay itself",
            ));
        }
        let pin_hash = self.check_pin(from_card_id, amount, input.pin.as_deref()).await?;
        let request = (from_card_id, &input);
        let services = self.clone();
        self.keyed(access.identity(), key, kind::TRANSFER, &request, move |conn, actor, now_ms| {
            let (from, from_product) = load_card(conn, from_card_id)?;
            let (to, to_product) = load_card(conn, input.to_card_id)?;
            require_pin_unchanged(&from, &pin_hash)?;
            for (card, product) in [(&from, &from_product), (&to, &to_product)] {
                if let Err(refusal) = stored_value_product(product, card) {
                    return Ok(Decision::Refused(refusal));
                }
            }
            if from.customer_id != to.customer_id || from_product.currency != to_product.currency {
                return Ok(Decision::Refused(Refusal::new("transfer.not_allowed", "value moves only between cards of one customer in one currency")));
            }
            if let Some(refusal) = refuse_card_state(&from, CardStatus::can_pay, now_ms).or_else(|| refuse_card_state(&to, CardStatus::can_load, now_ms)) {
                return Ok(Decision::Refused(refusal));
            }
            let source = value_accounts(conn, from.id)?.ok_or_else(|| missing_accounts(from.id))?;
            let target = value_accounts(conn, to.id)?.ok_or_else(|| missing_accounts(to.id))?;
            let order = SpendOrder::parse(&from_product.spend_order).unwrap_or(SpendOrder::Proportional);
            let parts = match split_spend(amount, source.balance(), order) {
                Ok(parts) => parts,
                Err(short) => return Ok(Decision::Refused(insufficient(from.id, short.available_minor, amount))),
            };
            if target.balance().total() + amount > to_product.balance_max_minor {
                return Ok(Decision::Refused(Refusal::new("balance.over_limit", format!("card {} may hold at most {}", to.id, to_product.balance_max_minor))));
            }
            let asset = from_product.currency.clone();
            let detail = serde_json::json!({"to_card_id": to.id, "paid_minor": parts.paid_minor, "bonus_minor": parts.bonus_minor});
            let operation = actor.operation(kind::TRANSFER, Some(&from), None, None, amount, &asset, None, detail, now_ms);
            let operation_id = repo::insert_operation(conn, &operation)?;
            move_parts(conn, operation_id, &source, &target, parts, "transfer", &asset, now_ms)?;
            let balance = value_accounts(conn, from.id)?.map(|accounts| accounts.view(from.id));
            let value = services.operation_view(conn, operation_id, balance)?;
            Ok(Decision::Done { value, operation_id: Some(operation_id) })
        })
        .await
    }

    /// Replaces a card 补卡 (typically one reported lost): a new card of the same product,
    /// customer and tier takes over its whole balance in one step; the old one can no longer
    /// pay.
    pub async fn replace_card(
        &self,
        access: Access<'_, perm::CardWrite>,
        key: IdempotencyKey,
        card_id: i64,
        input: ReplaceInput,
    ) -> ServiceResult<Outcome<Replacement>> {
        let mut errors = FieldErrors::new();
        let form = input.form.as_deref().and_then(|raw| errors.take("form", CardForm::parse(raw)));
        let given = input.number.as_deref().and_then(|raw| errors.take("number", CardNumber::parse(raw)));
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let request = (card_id, &input);
        let services = self.clone();
        let random: Vec<[u8; 16]> = (0..8).map(|_| secure_bytes::<16>()).collect();
        let identity = access.identity().clone();
        self.keyed(access.identity(), key, kind::REPLACE, &request, move |conn, actor, now_ms| {
            let (old, product) = load_card(conn, card_id)?;
            let replaced_status = match status_after(&old, CardEvent::Replace) {
                Ok(status) => status,
                Err(ServiceError::Conflict { code, message }) => return Ok(Decision::Refused(Refusal::new(code, message))),
                Err(other) => return Err(other),
            };
            let vault = services.vault();
            let number = match &given {
                Some(number) => {
                    if card_repo::card_by_index(conn, &number_index(vault, number))?.is_some() {
                        return Err(ServiceError::conflict("card.number_taken", "a card with this number exists"));
                    }
                    number.clone()
                }
                None => random
                    .iter()
                    .map(|bytes| CardNumber::issue(&product.number_prefix, bytes))
                    .find(|number| card_repo::card_by_index(conn, &number_index(vault, number)).is_ok_and(|found| found.is_none()))
                    .ok_or_else(|| ServiceError::conflict("card.number_space", "no free card number was found; try again"))?,
            };
            let new_id = conn.allocate_ids("cards", 1)?[0];
            let new_card = CardRecord {
                id: new_id,
                number_cipher: vault.seal(crate::cards::number_seal(new_id), number.as_str()),
                number_index: number_index(vault, &number).to_vec(),
                number_last4: number.last4().to_owned(),
                product_id: product.id,
                customer_id: old.customer_id,
                store_id: old.store_id,
                form: form.unwrap_or(CardForm::Physical).as_str().to_owned(),
                status: CardStatus::Active.as_str().to_owned(),
                freeze_reason: None,
                tier: old.tier.clone(),
                pin_hash: old.pin_hash.clone(),
                pin_failures: 0,
                pin_locked_until_ms: None,
                replaces_card_id: Some(old.id),
                replaced_by_card_id: None,
                expires_at_ms: old.expires_at_ms,
                version: 1,
                issued_at_ms: now_ms,
                activated_at_ms: Some(now_ms),
                closed_at_ms: None,
                updated_at_ms: now_ms,
            };
            card_repo::insert_card(conn, &new_card)?;
            open_card_accounts(conn, &new_card, &product, now_ms)?;
            let mut old_after = old.clone();
            old_after.status = replaced_status;
            old_after.replaced_by_card_id = Some(new_id);
            old_after.version += 1;
            old_after.updated_at_ms = now_ms;
            if !card_repo::update_card(conn, &old_after, old.version)? {
                return Err(ServiceError::StaleVersion { entity: "card", id: old.id.to_string(), current_version: old.version });
            }
            let moved = match (value_accounts(conn, old.id)?, value_accounts(conn, new_id)?) {
                (Some(source), Some(target)) => Some((source.balance(), source, target)),
                _ => None,
            };
            let parts = moved.as_ref().map(|(parts, _, _)| *parts).unwrap_or_default();
            let detail = serde_json::json!({"new_card_id": new_id, "paid_minor": parts.paid_minor, "bonus_minor": parts.bonus_minor});
            let operation = actor.operation(kind::REPLACE, Some(&old), old.store_id, None, parts.total(), &product.currency, None, detail, now_ms);
            let operation_id = repo::insert_operation(conn, &operation)?;
            if let Some((parts, source, target)) = &moved {
                move_parts(conn, operation_id, source, target, *parts, "replace", &product.currency, now_ms)?;
            }
            let old_view = services.view_card(&old_after, &product)?;
            let new_view = card_view(&new_card, &product, number.as_str());
            audit::append(conn, &identity, now_ms, "card.replace", "card", old.id, audit::snapshot(&services.view_card(&old, &product)?), audit::snapshot(&old_view))?;
            audit::append(conn, &identity, now_ms, "card.issue", "card", new_id, None, audit::snapshot(&new_view))?;
            let balance = value_accounts(conn, new_id)?.map(|accounts| accounts.view(new_id));
            let operation = services.operation_view(conn, operation_id, balance)?;
            let value = Replacement { old_card: old_view, new_card: new_view, full_number: Some(number.as_str().to_owned()), operation };
            Ok(Decision::Done { value, operation_id: Some(operation_id) })
        })
        .await
    }

    /// Closes a card: the paid balance is refunded at the till or forfeited by the product's
    /// rule, the bonus is forfeited, and the card can do nothing more.
    pub async fn close_card(
        &self,
        access: Access<'_, perm::CardClose>,
        key: IdempotencyKey,
        card_id: i64,
        input: CloseInput,
    ) -> ServiceResult<Outcome<OperationView>> {
        let reason = reference("reason", &input.reason).map_err(|error| error.at("reason"))?;
        let store_id = input.store_id.or(access.scope.store_id());
        access.require_store(store_id)?;
        let request = (card_id, &input, store_id);
        let services = self.clone();
        let identity = access.identity().clone();
        self.keyed(access.identity(), key, kind::CLOSE, &request, move |conn, actor, now_ms| {
            let (card, product) = load_card(conn, card_id)?;
            check_store(conn, store_id)?;
            let closed_status = match status_after(&card, CardEvent::Close) {
                Ok(status) => status,
                Err(ServiceError::Conflict { code, message }) => {
                    return Ok(Decision::Refused(Refusal::new(code, message)));
                }
                Err(other) => return Err(other),
            };
            let accounts = value_accounts(conn, card.id)?;
            let parts = accounts.as_ref().map(ValueAccounts::balance).unwrap_or_default();
            let refund_paid = product.close_policy == "refund_paid";
            let asset = product.currency.clone();
            let detail = serde_json::json!({
                "paid_minor": parts.paid_minor, "bonus_minor": parts.bonus_minor,
                "paid_refunded": refund_paid && parts.paid_minor > 0, "reason": reason,
            });
            let operation = actor.operation(
                kind::CLOSE,
                Some(&card),
                store_id,
                None,
                parts.total(),
                &asset,
                refund_paid.then(|| "cash".to_owned()),
                detail,
                now_ms,
            );
            let operation_id = repo::insert_operation(conn, &operation)?;
            if let Some(accounts) = &accounts {
                if parts.paid_minor > 0 {
                    let (to, purpose) = if refund_paid {
                        (store_account(conn, store_id, "cash_out", &asset, now_ms)?, "close_refund_paid")
                    } else {
                        (system_account(conn, "breakage", &asset, now_ms)?, "close_forfeit_paid")
                    };
                    post(
                        conn,
                        &NewTransfer {
                            operation_id,
                            debit: AccountRef::from(&accounts.paid),
                            credit: to,
                            amount_minor: parts.paid_minor,
                            asset: &asset,
                            purpose,
                            reverses_transfer_id: None,
                            created_at_ms: now_ms,
                        },
                    )?;
                }
                if parts.bonus_minor > 0 {
                    let breakage = system_account(conn, "breakage", &asset, now_ms)?;
                    post(
                        conn,
                        &NewTransfer {
                            operation_id,
                            debit: AccountRef::from(&accounts.bonus),
                            credit: breakage,
                            amount_minor: parts.bonus_minor,
                            asset: &asset,
                            purpose: "close_forfeit_bonus",
                            reverses_transfer_id: None,
                            created_at_ms: now_ms,
                        },
                    )?;
                }
            }
            let mut after = card.clone();
            after.status = closed_status;
            after.closed_at_ms = Some(now_ms);
            after.version += 1;
            after.updated_at_ms = now_ms;
            if !card_repo::update_card(conn, &after, card.version)? {
                return Err(ServiceError::StaleVersion {
                    entity: "card",
                    id: card.id.to_string(),
                    current_version: card.version,
                });
            }
            audit::append(
                conn,
                &identity,
                now_ms,
                "card.close",
                "card",
                card.id,
                audit::snapshot(&services.view_card(&card, &product)?),
                audit::snapshot(&services.view_card(&after, &product)?),
            )?;
            let balance = value_accounts(conn, card.id)?.map(|accounts| accounts.view(card.id));
            let value = services.operation_view(conn, operation_id, balance)?;
            Ok(Decision::Done { value, operation_id: Some(operation_id) })
        })
        .await
    }

    /// A card's stored-value balance, read in one consistent snapshot.
    pub async fn balance(
        &self,
        _access: Access<'_, perm::CardRead>,
        card_id: i64,
    ) -> ServiceResult<BalanceView> {
        self.database()
            .read(move |conn| {
                card_repo::card(conn, card_id)?.ok_or_else(|| ServiceError::not_found("card", card_id))?;
                let accounts = value_accounts(conn, card_id)?.ok_or_else(|| {
                    ServiceError::conflict("card.not_stored_value", format!("card {card_id} holds no value"))
                })?;
                Ok(accounts.view(card_id))
            })
            .await
    }

    pub async fn get_operation(
        &self,
        access: Access<'_, perm::CardRead>,
        id: i64,
    ) -> ServiceResult<OperationView> {
        let services = self.clone();
        let scope = access.scope;
        self.database()
            .read(move |conn| {
                let view = services.operation_view(conn, id, None)?;
                if !scope.covers(view.store_id) && scope.store_id().is_some() {
                    return Err(ServiceError::forbidden(format!("operation {id} belongs to another store")));
                }
                Ok(view)
            })
            .await
    }

    /// The view of a stored operation, with its paid and bonus parts read from its transfers.
    fn operation_view(
        &self,
        conn: &mut Conn<'_>,
        id: i64,
        balance_after: Option<BalanceView>,
    ) -> ServiceResult<OperationView> {
        let operation = repo::operation(conn, id)?.ok_or_else(|| ServiceError::not_found("operation", id))?;
        let detail: serde_json::Value = serde_json::from_str(&operation.detail_json).unwrap_or_default();
        let part = |name: &str| detail.get(name).and_then(serde_json::Value::as_i64).unwrap_or(0);
        Ok(OperationView {
            id: operation.id,
            kind: operation.kind.clone(),
            card_id: operation.card_id,
            customer_id: operation.customer_id,
            store_id: operation.store_id,
            currency: operation.asset.clone(),
            amount_minor: operation.amount_minor,
            paid_minor: part("paid_minor"),
            bonus_minor: part("bonus_minor"),
            payment_method: operation.payment_method.clone(),
            reverses_operation_id: operation.reverses_operation_id,
            occurred_at: format_ms(operation.occurred_at_ms),
            balance_after,
            receipt_path: format!("/api/v1/operations/{}/receipt", operation.id),
            detail,
        })
    }
}

fn missing_accounts(card_id: i64) -> ServiceError {
    ServiceError::Store(StoreError::Invariant(format!("card {card_id} has no value accounts")))
}

/// Refuses a payment whose PIN was checked (before the unit of work) against a PIN that has
/// changed since.
pub(crate) fn require_pin_unchanged(card: &CardRecord, checked_hash: &Option<String>) -> ServiceResult<()> {
    if checked_hash.is_some() && card.pin_hash != *checked_hash {
        return Err(ServiceError::conflict("pin.changed", "the card's PIN changed meanwhile; try again"));
    }
    Ok(())
}

/// Refuses a request that names a currency other than the card's.
pub(crate) fn check_currency(expected: &Option<String>, card_currency: &str) -> ServiceResult<()> {
    match expected {
        Some(currency) if !currency.trim().eq_ignore_ascii_case(card_currency) => {
            Err(ServiceError::conflict(
                "currency.mismatch",
                format!("the card holds {card_currency}, not {}", currency.trim()),
            ))
        }
        _ => Ok(()),
    }
}

pub(crate) fn insufficient(card_id: i64, available: i64, asked: i64) -> Refusal {
    Refusal::new("balance.insufficient", format!("card {card_id} holds {available}, less than {asked}"))
}

/// The store an operation names, which must exist (`None` when it names none).
pub(crate) fn check_store(
    conn: &mut Conn<'_>,
    store_id: Option<i64>,
) -> ServiceResult<Option<organisation::StoreRecord>> {
    let Some(store) = store_id else { return Ok(None) };
    organisation::get(conn, store)?.map(Some).ok_or_else(|| {
        ServiceError::invalid("store_id", "store.unknown", format!("store {store} does not exist"))
    })
}

/// An issued card becomes active on its first top-up.
fn activate_in_place(conn: &mut Conn<'_>, card: &mut CardRecord, now_ms: i64) -> ServiceResult<()> {
    let version = card.version;
    card.status = status_after(card, CardEvent::Activate)?;
    card.activated_at_ms = Some(now_ms);
    card.version += 1;
    card.updated_at_ms = now_ms;
    if !card_repo::update_card(conn, card, version)? {
        return Err(ServiceError::StaleVersion {
            entity: "card",
            id: card.id.to_string(),
            current_version: version,
        });
    }
    Ok(())
}

/// The card a card was replaced by, following replacements to the one in use.
fn current_card(conn: &mut Conn<'_>, card_id: i64) -> ServiceResult<CardRecord> {
    let mut card = card_repo::card(conn, card_id)?.ok_or_else(|| ServiceError::not_found("card", card_id))?;
    for _ in 0..32 {
        match card.replaced_by_card_id {
            Some(next) => {
                card = card_repo::card(conn, next)?.ok_or_else(|| ServiceError::not_found("card", next))?
            }
            None => return Ok(card),
        }
    }
    Err(ServiceError::Store(StoreError::Invariant(format!("card {card_id} was replaced more than 32 times"))))
}

/// Pays `parts` from a card's balances to the store: paid money is a sale, bonus money is
/// the bonus the store redeems.
pub(crate) fn pay_from_card(
    conn: &mut Conn<'_>,
    operation_id: i64,
    accounts: &ValueAccounts,
    parts: ValueParts,
    store_id: Option<i64>,
    asset: &str,
    now_ms: i64,
) -> ServiceResult<()> {
    if parts.paid_minor > 0 {
        let sales = store_account(conn, store_id, "sales", asset, now_ms)?;
        post(
            conn,
            &NewTransfer {
                operation_id,
                debit: AccountRef::from(&accounts.paid),
                credit: sales,
                amount_minor: parts.paid_minor,
                asset,
                purpose: "spend_paid",
                reverses_transfer_id: None,
                created_at_ms: now_ms,
            },
        )?;
    }
    if parts.bonus_minor > 0 {
        let redeemed = store_account(conn, store_id, "bonus_redeemed", asset, now_ms)?;
        post(
            conn,
            &NewTransfer {
                operation_id,
                debit: AccountRef::from(&accounts.bonus),
                credit: redeemed,
                amount_minor: parts.bonus_minor,
                asset,
                purpose: "spend_bonus",
                reverses_transfer_id: None,
                created_at_ms: now_ms,
            },
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn move_parts(
    conn: &mut Conn<'_>,
    operation_id: i64,
    source: &ValueAccounts,
    target: &ValueAccounts,
    parts: ValueParts,
    purpose: &str,
    asset: &str,
    now_ms: i64,
) -> ServiceResult<()> {
    for (from, to, amount, part) in [
        (&source.paid, &target.paid, parts.paid_minor, "paid"),
        (&source.bonus, &target.bonus, parts.bonus_minor, "bonus"),
    ] {
        if amount > 0 {
            let purpose = format!("{purpose}_{part}");
            post(
                conn,
                &NewTransfer {
                    operation_id,
                    debit: AccountRef::from(from),
                    credit: AccountRef::from(to),
                    amount_minor: amount,
                    asset,
                    purpose: &purpose,
                    reverses_transfer_id: None,
                    created_at_ms: now_ms,
                },
            )?;
        }
    }
    Ok(())
}

/// What a refund moves: the card's parts, what goes back outside the card, and for each
/// transfer of the original operation how much of it is reversed.
struct RefundPlan {
    card_parts: ValueParts,
    external_minor: i64,
    transfers: Vec<(TransferRecord, i64)>,
}

/// Plans a refund of `asked` (or of everything left) of `original`.
fn refund_plan(
    conn: &mut Conn<'_>,
    original: &OperationRecord,
    asked: Option<i64>,
) -> ServiceResult<Result<RefundPlan, Refusal>> {
    let transfers: Vec<TransferRecord> = repo::transfers_of_operation(conn, original.id)?
        .into_iter()
        .filter(|transfer| {
            matches!(transfer.purpose.as_str(), "spend_paid" | "spend_bonus" | "checkout_external")
        })
        .collect();
    let mut reversed: HashMap<i64, i64> = HashMap::new();
    for reversal in repo::reversals_of(conn, original.id)? {
        for transfer in repo::transfers_of_operation(conn, reversal.id)? {
            if let Some(of) = transfer.reverses_transfer_id {
                *reversed.entry(of).or_default() += transfer.amount_minor;
            }
        }
    }
    let remaining: Vec<i64> = transfers
        .iter()
        .map(|transfer| transfer.amount_minor - reversed.get(&transfer.id).copied().unwrap_or(0))
        .collect();
    let left: i64 = remaining.iter().sum();
    let amount = asked.unwrap_or(left);
    // A checkout that moved no money (paid with points and coupons) is refunded once, in full.
    if transfers.is_empty()
        && original.amount_minor == 0
        && reversed.is_empty()
        && asked.unwrap_or(0) == 0
        && repo::reversals_of(conn, original.id)?.is_empty()
    {
        return Ok(Ok(RefundPlan {
            card_parts: ValueParts::default(),
            external_minor: 0,
            transfers: Vec::new(),
        }));
    }
    if left == 0 {
        return Ok(Err(Refusal::new(
            "refund.exceeds_remaining",
            format!("operation {} was refunded in full", original.id),
        )));
    }
    if amount > left {
        return Ok(Err(Refusal::new(
            "refund.exceeds_remaining",
            format!("operation {} has {left} left to refund, less than {amount}", original.id),
        )));
    }
    // Paid and bonus go back in proportion to what the payment drew from each (exactly
    // what is left when the refund takes the rest); the outside payment gets its share.
    let sum_purpose = |purpose: &str, of: &dyn Fn(&TransferRecord) -> i64| -> i64 {
        transfers.iter().filter(|transfer| transfer.purpose == purpose).map(of).sum()
    };
    let card_original = ValueParts {
        paid_minor: sum_purpose("spend_paid", &|t| t.amount_minor),
        bonus_minor: sum_purpose("spend_bonus", &|t| t.amount_minor),
    };
    let card_refunded = ValueParts {
        paid_minor: sum_purpose("spend_paid", &|t| reversed.get(&t.id).copied().unwrap_or(0)),
        bonus_minor: sum_purpose("spend_bonus", &|t| reversed.get(&t.id).copied().unwrap_or(0)),
    };
    let external_left = left - (card_original.total() - card_refunded.total());
    let shares = cardcrm_domain::ledger::split_proportional(
        amount,
        &[card_original.total() - card_refunded.total(), external_left],
    );
    let card_parts = split_refund(shares[0], card_original, card_refunded);
    let external_minor = shares[1];
    let mut plan = Vec::new();
    for (transfer, remaining) in transfers.iter().zip(&remaining) {
        let take = match transfer.purpose.as_str() {
            "spend_paid" => card_parts.paid_minor,
            "spend_bonus" => card_parts.bonus_minor,
            _ => external_minor,
        }
        .min(*remaining);
        if take > 0 {
            plan.push((transfer.clone(), take));
        }
    }
    debug_assert_eq!(plan.iter().map(|(_, amount)| amount).sum::<i64>(), amount);
    Ok(Ok(RefundPlan { card_parts, external_minor, transfers: plan }))
}

/// Flags unusual activity for managers: a top-up or payment above the configured size, and
/// more operations on one card in a short window than the configured number.
#[allow(clippy::too_many_arguments)]
pub(crate) fn raise_alerts(
    conn: &mut Conn<'_>,
    settings: &crate::config::LedgerSettings,
    card: &CardRecord,
    store_id: Option<i64>,
    operation_id: i64,
    what: &str,
    amount: i64,
    now_ms: i64,
) -> ServiceResult<()> {
    let large = match what {
        "top_up" => settings.alert_top_up_minor,
        _ => settings.alert_spend_minor,
    };
    let mut alerts = Vec::new();
    if large > 0 && amount >= large {
        alerts.push((
            format!("large_{what}"),
            serde_json::json!({"amount_minor": amount, "threshold_minor": large}),
        ));
    }
    let window_ms = settings.velocity_window_minutes * 60_000;
    if settings.velocity_operations_max > 0 && window_ms > 0 {
        let recent = repo::operations_since(conn, card.id, now_ms - window_ms)?;
        // Alert when the count first passes the limit, not on every operation after it.
        if recent == settings.velocity_operations_max + 1 {
            alerts.push((
                "velocity".to_owned(),
                serde_json::json!({"operations": recent, "window_minutes": settings.velocity_window_minutes}),
            ));
        }
    }
    for (kind, detail) in alerts {
        repo::insert_alert(
            conn,
            &AlertRecord {
                id: 0,
                kind,
                card_id: Some(card.id),
                store_id,
                operation_id: Some(operation_id),
                detail_json: detail.to_string(),
                created_at_ms: now_ms,
                acknowledged_by: None,
                acknowledged_at_ms: None,
            },
        )?;
    }
    Ok(())
}

/// Removes what must not be kept with an idempotency key (a new card's full number).
fn strip_secrets(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(object) = value.as_object_mut()
        && object.contains_key("full_number")
    {
        object.insert("full_number".into(), serde_json::Value::Null);
    }
    value
}
