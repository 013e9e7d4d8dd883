//! Cards (C2): tiers, card products 卡种 and cards with their life cycle — issue, activate,
//! freeze, report lost 挂失, unfreeze — and PINs. Moving value (top-ups, payments, refunds,
//! replacement 补卡 and closing) is in [`crate::ledger`].
//!
//! A card number is sealed at rest like personal data and found through a blind index;
//! staff see `8860 **** **** 1234`, and the full number only once, when the card is made.
//! A PIN is stored as Argon2id over a keyed hash of it (the key lives outside the
//! database), and five wrong tries lock the card's PIN for a while.

use cardcrm_domain::{
    FieldError, FieldErrors,
    card::{CardEvent, CardForm, CardKind, CardNumber, CardStatus, Pin, mask_card_number},
    ledger::{BonusRule, BonusRules, DiscountRate, SpendOrder},
    money::Currency,
    text,
};
use cardcrm_store::{
    Conn,
    repo::{
        cards::{self as repo, CardRecord, ProductRecord, TierRecord},
        customers as customer_repo, organisation,
    },
};
use serde::{Deserialize, Serialize};

use crate::{
    Services, audit,
    clock::format_ms,
    crypto::{self, Seal, Vault},
    error::{ServiceError, ServiceResult},
    identity::{Access, Identity, perm},
    random::secure_bytes,
};

/// Wrong PIN tries before the card's PIN locks.
pub const PIN_FAILURES_MAX: i64 = 5;
/// How long a locked PIN stays locked.
pub const PIN_LOCK_MS: i64 = 30 * 60_000;

pub(crate) fn number_seal(card_id: i64) -> Seal {
    Seal { table: "cards", column: "number", row_id: card_id }
}

/// The blind index of a card number.
pub fn number_index(vault: &Vault, number: &CardNumber) -> [u8; crypto::BLIND_INDEX_LENGTH] {
    vault.blind_index("card_number", number.as_str())
}

/// How a PIN is stored: Argon2id over its keyed hash, so the database alone does not allow
/// trying the million possible PINs.
pub(crate) fn hash_pin(vault: &Vault, pin: &Pin) -> ServiceResult<String> {
    crypto::hash_password(&crypto::hex(&vault.blind_index("card_pin", pin.expose())))
}

pub(crate) fn pin_matches(vault: &Vault, pin: &Pin, stored: &str) -> bool {
    crypto::verify_password(&crypto::hex(&vault.blind_index("card_pin", pin.expose())), stored)
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierView {
    pub code: String,
    pub name: String,
    pub rank: i64,
    /// Discount at checkout in basis points (500 = 5% off).
    pub discount_bp: i64,
    /// Points per unit spent in percent of the base rate (150 = 1.5 times).
    pub points_multiplier_pct: i64,
    pub benefits: Vec<String>,
    pub updated_at: String,
}

impl From<&TierRecord> for TierView {
    fn from(tier: &TierRecord) -> Self {
        Self {
            code: tier.code.clone(),
            name: tier.name.clone(),
            rank: tier.rank,
            discount_bp: tier.discount_bp,
            points_multiplier_pct: tier.points_multiplier_pct,
            benefits: serde_json::from_str(&tier.benefits_json).unwrap_or_default(),
            updated_at: format_ms(tier.updated_at_ms),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub discount_bp: Option<i64>,
    #[serde(default)]
    pub points_multiplier_pct: Option<i64>,
    #[serde(default)]
    pub benefits: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductView {
    pub id: i64,
    pub code: String,
    pub name: String,
    /// `membership`, `stored_value` or `credit`.
    pub kind: String,
    pub currency: String,
    pub number_prefix: String,
    #[schema(value_type = Vec<Object>)]
    pub bonus_rules: Vec<BonusRule>,
    /// `proportional`, `paid_first` or `bonus_first`.
    pub spend_order: String,
    pub pin_required_above_minor: Option<i64>,
    pub top_up_max_minor: i64,
    pub spend_max_minor: i64,
    pub balance_max_minor: i64,
    /// `refund_paid` or `forfeit`.
    pub close_policy: String,
    pub validity_months: Option<i64>,
    pub default_tier: String,
    /// `active` or `retired` (no new cards).
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&ProductRecord> for ProductView {
    fn from(product: &ProductRecord) -> Self {
        Self {
            id: product.id,
            code: product.code.clone(),
            name: product.name.clone(),
            kind: product.kind.clone(),
            currency: product.currency.clone(),
            number_prefix: product.number_prefix.clone(),
            bonus_rules: serde_json::from_str(&product.bonus_rules_json).unwrap_or_default(),
            spend_order: product.spend_order.clone(),
            pin_required_above_minor: product.pin_required_above_minor,
            top_up_max_minor: product.top_up_max_minor,
            spend_max_minor: product.spend_max_minor,
            balance_max_minor: product.balance_max_minor,
            close_policy: product.close_policy.clone(),
            validity_months: product.validity_months,
            default_tier: product.default_tier.clone(),
            status: product.status.clone(),
            created_at: format_ms(product.created_at_ms),
            updated_at: format_ms(product.updated_at_ms),
        }
    }
}

/// A card product as the API takes it. On a change, fields left out stay as they are;
/// `code`, `kind` and `currency` are fixed once created.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    /// Digits every number of this product starts with (default 8860).
    #[serde(default)]
    pub number_prefix: Option<String>,
    /// Top-up bonus tiers: `[{"min_top_up_minor": 100000, "bonus_minor": 10000}]` is 充1000送100.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub bonus_rules: Option<Vec<BonusRule>>,
    #[serde(default)]
    pub spend_order: Option<String>,
    /// Balance payments above this need the PIN; null: never.
    #[serde(default, deserialize_with = "crate::customers::double_option")]
    #[schema(value_type = Option<i64>)]
    pub pin_required_above_minor: Option<Option<i64>>,
    #[serde(default)]
    pub top_up_max_minor: Option<i64>,
    #[serde(default)]
    pub spend_max_minor: Option<i64>,
    #[serde(default)]
    pub balance_max_minor: Option<i64>,
    #[serde(default)]
    pub close_policy: Option<String>,
    #[serde(default, deserialize_with = "crate::customers::double_option")]
    #[schema(value_type = Option<i64>)]
    pub validity_months: Option<Option<i64>>,
    #[serde(default)]
    pub default_tier: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// A card as staff see it: the number masked.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CardView {
    pub id: i64,
    /// `8860 **** **** 1234`.
    pub number: String,
    pub product_id: i64,
    pub product_code: String,
    /// `membership`, `stored_value` or `credit`.
    pub kind: String,
    pub customer_id: i64,
    pub store_id: Option<i64>,
    /// `physical` or `virtual`.
    pub form: String,
    /// `issued`, `active`, `frozen`, `replaced` or `closed`.
    pub status: String,
    /// `lost`, `staff` or `suspicious` when frozen.
    pub freeze_reason: Option<String>,
    pub tier: String,
    pub has_pin: bool,
    pub pin_locked_until: Option<String>,
    pub replaces_card_id: Option<i64>,
    pub replaced_by_card_id: Option<i64>,
    pub expires_at: Option<String>,
    pub version: i64,
    pub issued_at: String,
    pub activated_at: Option<String>,
    pub closed_at: Option<String>,
}

pub(crate) fn card_view(card: &CardRecord, product: &ProductRecord, number: &str) -> CardView {
    CardView {
        id: card.id,
        number: mask_card_number(number),
        product_id: card.product_id,
        product_code: product.code.clone(),
        kind: product.kind.clone(),
        customer_id: card.customer_id,
        store_id: card.store_id,
        form: card.form.clone(),
        status: card.status.clone(),
        freeze_reason: card.freeze_reason.clone(),
        tier: card.tier.clone(),
        has_pin: card.pin_hash.is_some(),
        pin_locked_until: card.pin_locked_until_ms.map(format_ms),
        replaces_card_id: card.replaces_card_id,
        replaced_by_card_id: card.replaced_by_card_id,
        expires_at: card.expires_at_ms.map(format_ms),
        version: card.version,
        issued_at: format_ms(card.issued_at_ms),
        activated_at: card.activated_at_ms.map(format_ms),
        closed_at: card.closed_at_ms.map(format_ms),
    }
}

/// A newly made card: the full number is in this answer only.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CardIssued {
    pub card: CardView,
    /// The whole number, to print or hand over; later answers show it masked.
    pub full_number: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueCardInput {
    pub customer_id: i64,
    /// The product's id or code.
    pub product: String,
    /// `physical` (default) or `virtual`.
    #[serde(default)]
    pub form: Option<String>,
    /// Issuing store; a store-bound caller's own store by default.
    #[serde(default)]
    pub store_id: Option<i64>,
    /// The number of a pre-printed card; generated when left out.
    #[serde(default)]
    pub number: Option<String>,
    /// Six digits; can be set later.
    #[serde(default)]
    pub pin: Option<String>,
    /// Activate at once (default true for virtual cards, false for physical ones).
    #[serde(default)]
    pub activate: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeInput {
    /// `lost` (挂失), `staff` (default) or `suspicious`.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinInput {
    /// The new six-digit PIN.
    pub pin: String,
    /// The PIN in force, when one is set (staff with `card.write` may leave it out to reset
    /// a forgotten PIN; that is audited).
    #[serde(default)]
    pub current_pin: Option<String>,
}

/// Reads a card and its product, or 404.
pub(crate) fn load_card(conn: &mut Conn<'_>, id: i64) -> ServiceResult<(CardRecord, ProductRecord)> {
    let card = repo::card(conn, id)?.ok_or_else(|| ServiceError::not_found("card", id))?;
    let product = repo::product(conn, card.product_id)?.ok_or_else(|| {
        ServiceError::Store(cardcrm_store::StoreError::Invariant("a card without its product".into()))
    })?;
    Ok((card, product))
}

fn parse_positive(errors: &mut FieldErrors, field: &str, value: i64, max: i64) -> Option<i64> {
    if value <= 0 || value > max {
        errors.push(FieldError::new(
            field,
            "amount.out_of_range",
            format!("{field} must be between 1 and {max}"),
        ));
        None
    } else {
        Some(value)
    }
}

fn parse_product_code(raw: &str) -> Result<String, FieldError> {
    text::parse_code(raw, "product_code.invalid", "product")
}

fn parse_prefix(raw: &str) -> Result<String, FieldError> {
    let prefix = raw.trim();
    if (2..=8).contains(&prefix.len())
        && prefix.bytes().all(|byte| byte.is_ascii_digit())
        && !prefix.starts_with('0')
    {
        Ok(prefix.to_owned())
    } else {
        Err(FieldError::new(
            "number_prefix",
            "number_prefix.invalid",
            format!("`{raw}` is not a prefix: 2 to 8 digits, not starting with 0"),
        ))
    }
}

/// Largest amount any product may allow for one top-up, payment or balance (10 million yuan).
pub const VALUE_MINOR_MAX: i64 = 1_000_000_000;

impl Services {
    pub async fn list_tiers(&self, _access: Access<'_, perm::CardRead>) -> ServiceResult<Vec<TierView>> {
        let tiers = self.database().read(repo::tiers).await?;
        Ok(tiers.iter().map(TierView::from).collect())
    }

    pub async fn update_tier(
        &self,
        access: Access<'_, perm::ProductManage>,
        code: String,
        input: TierInput,
    ) -> ServiceResult<TierView> {
        let mut errors = FieldErrors::new();
        let discount =
            input.discount_bp.and_then(|bp| errors.take("discount_bp", DiscountRate::try_from(bp)));
        if input.points_multiplier_pct.is_some_and(|pct| !(0..=1_000).contains(&pct)) {
            errors.push(FieldError::new("points_multiplier_pct", "multiplier.invalid", "0 to 1000 percent"));
        }
        let name = match input
            .name
            .as_deref()
            .map(|raw| errors.take("name", cardcrm_domain::customer::parse_bounded_text("name", raw, 32)))
        {
            Some(Some(None)) => {
                errors.push(FieldError::new("name", "required", "name cannot be empty"));
                None
            }
            other => other.flatten().flatten(),
        };
        if input
            .benefits
            .as_ref()
            .is_some_and(|benefits| benefits.len() > 20 || benefits.iter().any(|b| b.len() > 64))
        {
            errors.push(FieldError::new("benefits", "benefits.invalid", "at most 20 benefits of 64 bytes"));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let identity = access.identity().clone();
        let now_ms = self.now_ms();
        self.database()
            .write(move |conn| {
                let before =
                    repo::tier(conn, &code)?.ok_or_else(|| ServiceError::not_found("tier", &code))?;
                let mut after = before.clone();
                if let Some(name) = &name {
                    after.name = name.clone();
                }
                if let Some(discount) = discount {
                    after.discount_bp = discount.basis_points();
                }
                if let Some(pct) = input.points_multiplier_pct {
                    after.points_multiplier_pct = pct;
                }
                if let Some(benefits) = &input.benefits {
                    after.benefits_json = serde_json::to_string(benefits).unwrap_or_else(|_| "[]".into());
                }
                after.updated_at_ms = now_ms;
                repo::update_tier(conn, &after)?;
                let (before_view, after_view) = (TierView::from(&before), TierView::from(&after));
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "tier.update",
                    "tier",
                    &code,
                    audit::snapshot(&before_view),
                    audit::snapshot(&after_view),
                )?;
                Ok(after_view)
            })
            .await
    }

    pub async fn list_products(
        &self,
        _access: Access<'_, perm::CardRead>,
    ) -> ServiceResult<Vec<ProductView>> {
        let products = self.database().read(repo::products).await?;
        Ok(products.iter().map(ProductView::from).collect())
    }

    pub async fn get_product(
        &self,
        _access: Access<'_, perm::CardRead>,
        id: i64,
    ) -> ServiceResult<ProductView> {
        let product = self.database().read(move |conn| repo::product(conn, id)).await?;
        product.as_ref().map(ProductView::from).ok_or_else(|| ServiceError::not_found("card product", id))
    }

    /// Creates a card product. Needs `product.manage` (admins).
    pub async fn create_product(
        &self,
        access: Access<'_, perm::ProductManage>,
        input: ProductInput,
    ) -> ServiceResult<ProductView> {
        let now_ms = self.now_ms();
        let mut errors = FieldErrors::new();
        let code = match &input.code {
            Some(raw) => errors.take("code", parse_product_code(raw)),
            None => {
                errors.push(FieldError::new("code", "required", "code is required"));
                None
            }
        };
        let kind = match &input.kind {
            Some(raw) => errors.take("kind", CardKind::parse(raw)),
            None => {
                errors.push(FieldError::new("kind", "required", "kind is required"));
                None
            }
        };
        let currency = match &input.currency {
            Some(raw) => errors.take("currency", Currency::parse(raw)),
            None => Some(self.currency()),
        };
        let template = ProductRecord {
            id: 0,
            code: code.unwrap_or_default(),
            name: String::new(),
            kind: kind.map(CardKind::as_str).unwrap_or_default().to_owned(),
            currency: currency.map(|currency| currency.as_str().to_owned()).unwrap_or_default(),
            number_prefix: "8860".into(),
            bonus_rules_json: "[]".into(),
            spend_order: SpendOrder::Proportional.as_str().into(),
            pin_required_above_minor: None,
            top_up_max_minor: 5_000_000,
            spend_max_minor: 5_000_000,
            balance_max_minor: 20_000_000,
            close_policy: "refund_paid".into(),
            validity_months: None,
            default_tier: "ordinary".into(),
            status: "active".into(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        if input.name.is_none() {
            errors.push(FieldError::new("name", "required", "name is required"));
        }
        let product = apply_product_input(&mut errors, template, &input, now_ms);
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let identity = access.identity().clone();
        self.database()
            .write(move |conn| {
                if repo::product_by_code(conn, &product.code)?.is_some() {
                    return Err(ServiceError::conflict(
                        "product.code_taken",
                        format!("product code {} is taken", product.code),
                    ));
                }
                if repo::tier(conn, &product.default_tier)?.is_none() {
                    return Err(ServiceError::invalid(
                        "default_tier",
                        "tier.unknown",
                        format!("there is no tier {}", product.default_tier),
                    ));
                }
                let mut stored = product.clone();
                stored.id = repo::insert_product(conn, &product)?;
                let view = ProductView::from(&stored);
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "product.create",
                    "card_product",
                    stored.id,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok(view)
            })
            .await
    }

    pub async fn update_product(
        &self,
        access: Access<'_, perm::ProductManage>,
        id: i64,
        input: ProductInput,
    ) -> ServiceResult<ProductView> {
        let mut errors = FieldErrors::new();
        for (field, given) in [
            ("code", input.code.is_some()),
            ("kind", input.kind.is_some()),
            ("currency", input.currency.is_some()),
        ] {
            if given {
                errors.push(FieldError::new(
                    field,
                    "product.fixed",
                    format!("{field} cannot change once a product exists"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let identity = access.identity().clone();
        let now_ms = self.now_ms();
        self.database()
            .write(move |conn| {
                let before =
                    repo::product(conn, id)?.ok_or_else(|| ServiceError::not_found("card product", id))?;
                let mut errors = FieldErrors::new();
                let after = apply_product_input(&mut errors, before.clone(), &input, now_ms);
                if !errors.is_empty() {
                    return Err(errors.into());
                }
                if repo::tier(conn, &after.default_tier)?.is_none() {
                    return Err(ServiceError::invalid(
                        "default_tier",
                        "tier.unknown",
                        format!("there is no tier {}", after.default_tier),
                    ));
                }
                repo::update_product(conn, &after)?;
                let (before_view, after_view) = (ProductView::from(&before), ProductView::from(&after));
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "product.update",
                    "card_product",
                    id,
                    audit::snapshot(&before_view),
                    audit::snapshot(&after_view),
                )?;
                Ok(after_view)
            })
            .await
    }

    /// Makes a card for a customer (a generated number unless a pre-printed one is given)
    /// with its ledger accounts.
    pub async fn issue_card(
        &self,
        access: Access<'_, perm::CardWrite>,
        input: IssueCardInput,
    ) -> ServiceResult<CardIssued> {
        let mut errors = FieldErrors::new();
        let form = match &input.form {
            Some(raw) => errors.take("form", CardForm::parse(raw)),
            None => Some(CardForm::Physical),
        };
        let given_number =
            input.number.as_deref().and_then(|raw| errors.take("number", CardNumber::parse(raw)));
        let pin = input.pin.as_deref().and_then(|raw| errors.take("pin", Pin::parse(raw)));
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let form = form.unwrap_or(CardForm::Physical);
        let store_id = input.store_id.or(access.scope.store_id());
        access.require_store(store_id)?;
        let pin_hash = match &pin {
            Some(pin) => Some(self.hash_pin_blocking(pin.clone()).await?),
            None => None,
        };
        let activate = input.activate.unwrap_or(form == CardForm::Virtual);
        let identity = access.identity().clone();
        let services = self.clone();
        let now_ms = self.now_ms();
        let random: Vec<[u8; 16]> = (0..8).map(|_| secure_bytes::<16>()).collect();
        self.database()
            .write(move |conn| {
                let product = match input.product.trim().parse::<i64>() {
                    Ok(id) => repo::product(conn, id)?,
                    Err(_) => repo::product_by_code(conn, &input.product.trim().to_uppercase())?,
                }
                .ok_or_else(|| ServiceError::not_found("card product", input.product.trim()))?;
                if product.status != "active" {
                    return Err(ServiceError::conflict(
                        "product.retired",
                        format!("product {} issues no new cards", product.code),
                    ));
                }
                if customer_repo::get(conn, input.customer_id)?
                    .is_none_or(|customer| customer.status == "merged")
                {
                    return Err(ServiceError::invalid(
                        "customer_id",
                        "customer.unknown",
                        format!("customer {} does not exist", input.customer_id),
                    ));
                }
                if let Some(store) = store_id
                    && organisation::get(conn, store)?.is_none()
                {
                    return Err(ServiceError::invalid(
                        "store_id",
                        "store.unknown",
                        format!("store {store} does not exist"),
                    ));
                }
                let id = conn.allocate_ids("cards", 1)?[0];
                let vault = services.vault();
                let number = match &given_number {
                    Some(number) => {
                        if repo::card_by_index(conn, &number_index(vault, number))?.is_some() {
                            return Err(ServiceError::conflict(
                                "card.number_taken",
                                "a card with this number exists",
                            ));
                        }
                        number.clone()
                    }
                    None => {
                        let free = random
                            .iter()
                            .map(|bytes| CardNumber::issue(&product.number_prefix, bytes))
                            .find(|number| {
                                repo::card_by_index(conn, &number_index(vault, number))
                                    .map(|found| found.is_none())
                                    .unwrap_or(false)
                            });
                        free.ok_or_else(|| {
                            ServiceError::conflict(
                                "card.number_space",
                                "no free card number was found; try again",
                            )
                        })?
                    }
                };
                let expires_at_ms = product.validity_months.and_then(|months| {
                    jiff::Timestamp::from_millisecond(now_ms)
                        .ok()
                        .and_then(|at| {
                            at.to_zoned(services.default_zone().clone())
                                .checked_add(jiff::Span::new().months(months))
                                .ok()
                        })
                        .map(|zoned| zoned.timestamp().as_millisecond())
                });
                let card = CardRecord {
                    id,
                    number_cipher: vault.seal(number_seal(id), number.as_str()),
                    number_index: number_index(vault, &number).to_vec(),
                    number_last4: number.last4().to_owned(),
                    product_id: product.id,
                    customer_id: input.customer_id,
                    store_id,
                    form: form.as_str().to_owned(),
                    status: if activate { CardStatus::Active } else { CardStatus::Issued }
                        .as_str()
                        .to_owned(),
                    freeze_reason: None,
                    tier: product.default_tier.clone(),
                    pin_hash: pin_hash.clone(),
                    pin_failures: 0,
                    pin_locked_until_ms: None,
                    replaces_card_id: None,
                    replaced_by_card_id: None,
                    expires_at_ms,
                    version: 1,
                    issued_at_ms: now_ms,
                    activated_at_ms: activate.then_some(now_ms),
                    closed_at_ms: None,
                    updated_at_ms: now_ms,
                };
                repo::insert_card(conn, &card)?;
                crate::ledger::open_card_accounts(conn, &card, &product, now_ms)?;
                let view = card_view(&card, &product, number.as_str());
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "card.issue",
                    "card",
                    id,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok(CardIssued { card: view, full_number: number.as_str().to_owned() })
            })
            .await
    }

    pub async fn get_card(&self, _access: Access<'_, perm::CardRead>, id: i64) -> ServiceResult<CardView> {
        let (card, product) = self.database().read(move |conn| load_card(conn, id)).await?;
        self.view_card(&card, &product)
    }

    pub(crate) fn view_card(&self, card: &CardRecord, product: &ProductRecord) -> ServiceResult<CardView> {
        let number = self.vault().open(number_seal(card.id), &card.number_cipher)?;
        Ok(card_view(card, product, &number))
    }

    /// The card with this number (as typed or scanned), in any store.
    pub async fn find_card(
        &self,
        _access: Access<'_, perm::CardRead>,
        raw_number: &str,
    ) -> ServiceResult<CardView> {
        let number = CardNumber::parse(raw_number).map_err(|error| error.at("number"))?;
        let index = number_index(self.vault(), &number).to_vec();
        let found = self
            .database()
            .read(move |conn| match repo::card_by_index(conn, &index)? {
                Some(card) => load_card(conn, card.id).map(Some),
                None => Ok::<_, ServiceError>(None),
            })
            .await?;
        let (card, product) = found.ok_or_else(|| ServiceError::not_found("card", number.masked()))?;
        self.view_card(&card, &product)
    }

    pub async fn cards_of_customer(
        &self,
        _access: Access<'_, perm::CardRead>,
        customer_id: i64,
    ) -> ServiceResult<Vec<CardView>> {
        let found = self
            .database()
            .read(move |conn| {
                let cards = repo::cards_of(conn, customer_id)?;
                let mut out = Vec::with_capacity(cards.len());
                for card in cards {
                    let product = repo::product(conn, card.product_id)?;
                    out.push((card, product));
                }
                Ok::<_, ServiceError>(out)
            })
            .await?;
        found
            .iter()
            .filter_map(|(card, product)| product.as_ref().map(|product| self.view_card(card, product)))
            .collect()
    }

    /// Activates an issued card.
    pub async fn activate_card(
        &self,
        access: Access<'_, perm::CardWrite>,
        id: i64,
    ) -> ServiceResult<CardView> {
        self.change_card(access.identity(), id, "card.activate", move |card, now_ms| {
            card.status = status_after(card, CardEvent::Activate)?;
            card.activated_at_ms = Some(now_ms);
            Ok(())
        })
        .await
    }

    /// Freezes a card: nothing can be paid from it or loaded onto it until it is unfrozen.
    /// `lost` is 挂失: the card can then be replaced.
    pub async fn freeze_card(
        &self,
        access: Access<'_, perm::CardWrite>,
        id: i64,
        input: FreezeInput,
    ) -> ServiceResult<CardView> {
        let reason = match input.reason.as_deref().map(str::trim).unwrap_or("staff") {
            reason @ ("lost" | "staff" | "suspicious") => reason.to_owned(),
            other => {
                return Err(ServiceError::invalid(
                    "reason",
                    "freeze_reason.invalid",
                    format!("`{other}` is lost, staff or suspicious"),
                ));
            }
        };
        let action = if reason == "lost" { "card.report_lost" } else { "card.freeze" };
        self.change_card(access.identity(), id, action, move |card, _| {
            card.status = status_after(card, CardEvent::Freeze)?;
            card.freeze_reason = Some(reason.clone());
            Ok(())
        })
        .await
    }

    pub async fn unfreeze_card(
        &self,
        access: Access<'_, perm::CardWrite>,
        id: i64,
    ) -> ServiceResult<CardView> {
        self.change_card(access.identity(), id, "card.unfreeze", move |card, _| {
            card.status = status_after(card, CardEvent::Unfreeze)?;
            card.freeze_reason = None;
            Ok(())
        })
        .await
    }

    /// Sets or changes a card's PIN. With a PIN in force the current one is needed, unless
    /// the caller resets it (audited as such).
    pub async fn set_pin(
        &self,
        access: Access<'_, perm::CardWrite>,
        id: i64,
        input: PinInput,
    ) -> ServiceResult<CardView> {
        let pin = Pin::parse(&input.pin).map_err(|error| error.at("pin"))?;
        let current = input
            .current_pin
            .as_deref()
            .map(|raw| Pin::parse(raw).map_err(|error| error.at("current_pin")))
            .transpose()?;
        let (card, _) = self.database().read(move |conn| load_card(conn, id)).await?;
        let now_ms = self.now_ms();
        if let (Some(stored), Some(current)) = (&card.pin_hash, &current) {
            if card.pin_locked_until_ms.is_some_and(|until| until > now_ms) {
                return Err(ServiceError::conflict(
                    "pin.locked",
                    "the card's PIN is locked after too many wrong tries",
                ));
            }
            if !self.pin_matches_blocking(current.clone(), stored.clone()).await? {
                self.record_pin_failure(id).await?;
                return Err(ServiceError::conflict("pin.wrong", "the current PIN is wrong"));
            }
        }
        let reset = card.pin_hash.is_some() && current.is_none();
        let hash = self.hash_pin_blocking(pin).await?;
        let expected_hash = card.pin_hash.clone();
        let action = if reset { "card.pin_reset" } else { "card.pin_set" };
        self.change_card(access.identity(), id, action, move |card, _| {
            if card.pin_hash != expected_hash {
                return Err(ServiceError::conflict("pin.changed", "the PIN changed meanwhile; try again"));
            }
            card.pin_hash = Some(hash.clone());
            card.pin_failures = 0;
            card.pin_locked_until_ms = None;
            Ok(())
        })
        .await
    }

    /// Counts a wrong PIN; the fifth in a row locks the PIN.
    pub(crate) async fn record_pin_failure(&self, id: i64) -> ServiceResult<()> {
        let now_ms = self.now_ms();
        self.database()
            .write(move |conn| {
                let Some(mut card) = repo::card(conn, id)? else { return Ok(()) };
                let version = card.version;
                card.pin_failures += 1;
                if card.pin_failures >= PIN_FAILURES_MAX {
                    card.pin_locked_until_ms = Some(now_ms + PIN_LOCK_MS);
                    card.pin_failures = 0;
                }
                card.version += 1;
                card.updated_at_ms = now_ms;
                repo::update_card(conn, &card, version)?;
                Ok::<_, ServiceError>(())
            })
            .await
    }

    pub(crate) async fn hash_pin_blocking(&self, pin: Pin) -> ServiceResult<String> {
        let services = self.clone();
        tokio::task::spawn_blocking(move || hash_pin(services.vault(), &pin))
            .await
            .map_err(|_| ServiceError::Crypto("hashing a PIN panicked".into()))?
    }

    pub(crate) async fn pin_matches_blocking(&self, pin: Pin, stored: String) -> ServiceResult<bool> {
        let services = self.clone();
        tokio::task::spawn_blocking(move || pin_matches(services.vault(), &pin, &stored))
            .await
            .map_err(|_| ServiceError::Crypto("checking a PIN panicked".into()))
    }

    /// Reads, changes with `change`, versions and audits one card in a unit of work.
    async fn change_card<F>(
        &self,
        identity: &Identity,
        id: i64,
        action: &'static str,
        change: F,
    ) -> ServiceResult<CardView>
    where
        F: Fn(&mut CardRecord, i64) -> ServiceResult<()> + Send + 'static,
    {
        let identity = identity.clone();
        let now_ms = self.now_ms();
        let services = self.clone();
        self.database()
            .write(move |conn| {
                // Not store-bound: members use their cards, and report them lost, in every store.
                let (before, product) = load_card(conn, id)?;
                let mut after = before.clone();
                change(&mut after, now_ms)?;
                after.version = before.version + 1;
                after.updated_at_ms = now_ms;
                if !repo::update_card(conn, &after, before.version)? {
                    return Err(ServiceError::StaleVersion {
                        entity: "card",
                        id: id.to_string(),
                        current_version: before.version,
                    });
                }
                let before_view = services.view_card(&before, &product)?;
                let after_view = services.view_card(&after, &product)?;
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    action,
                    "card",
                    id,
                    audit::snapshot(&before_view),
                    audit::snapshot(&after_view),
                )?;
                Ok(after_view)
            })
            .await
    }
}

/// The status a card moves to on `event`, or a conflict saying why it cannot.
pub(crate) fn status_after(card: &CardRecord, event: CardEvent) -> ServiceResult<String> {
    let status = CardStatus::parse(&card.status).ok_or_else(|| {
        ServiceError::Store(cardcrm_store::StoreError::Invariant(format!(
            "card {} has status {}",
            card.id, card.status
        )))
    })?;
    status
        .after(event)
        .map(|next| next.as_str().to_owned())
        .map_err(|refusal| ServiceError::conflict(card_state_code(refusal.status), refusal.to_string()))
}

/// The stable code of a refusal due to a card's status.
pub(crate) fn card_state_code(status: CardStatus) -> &'static str {
    match status {
        CardStatus::Issued => "card.not_active",
        CardStatus::Active => "card.active",
        CardStatus::Frozen => "card.frozen",
        CardStatus::Replaced => "card.replaced",
        CardStatus::Closed => "card.closed",
    }
}

/// Applies the given fields of `input` to `product`, collecting problems in `errors`.
fn apply_product_input(
    errors: &mut FieldErrors,
    mut product: ProductRecord,
    input: &ProductInput,
    now_ms: i64,
) -> ProductRecord {
    if let Some(raw) = &input.name {
        match cardcrm_domain::customer::parse_bounded_text("name", raw, 64) {
            Ok(Some(name)) => product.name = name,
            Ok(None) => errors.push(FieldError::new("name", "required", "name cannot be empty")),
            Err(error) => errors.push(error),
        }
    }
    if let Some(raw) = &input.number_prefix
        && let Some(prefix) = errors.take("number_prefix", parse_prefix(raw))
    {
        product.number_prefix = prefix;
    }
    if let Some(rules) = &input.bonus_rules
        && let Some(rules) = errors.take("bonus_rules", BonusRules::parse(rules.clone()))
    {
        product.bonus_rules_json = serde_json::to_string(rules.tiers()).unwrap_or_else(|_| "[]".into());
    }
    if let Some(raw) = &input.spend_order
        && let Some(order) = errors.take("spend_order", SpendOrder::parse(raw))
    {
        product.spend_order = order.as_str().to_owned();
    }
    if let Some(threshold) = input.pin_required_above_minor {
        if threshold.is_some_and(|value| !(0..=VALUE_MINOR_MAX).contains(&value)) {
            errors.push(FieldError::new(
                "pin_required_above_minor",
                "amount.out_of_range",
                format!("0 to {VALUE_MINOR_MAX}"),
            ));
        }
        product.pin_required_above_minor = threshold;
    }
    for (field, given, slot) in [
        ("top_up_max_minor", input.top_up_max_minor, &mut product.top_up_max_minor),
        ("spend_max_minor", input.spend_max_minor, &mut product.spend_max_minor),
        ("balance_max_minor", input.balance_max_minor, &mut product.balance_max_minor),
    ] {
        if let Some(value) = given
            && let Some(value) = parse_positive(errors, field, value, VALUE_MINOR_MAX)
        {
            *slot = value;
        }
    }
    if let Some(raw) = &input.close_policy {
        match raw.trim() {
            policy @ ("refund_paid" | "forfeit") => product.close_policy = policy.to_owned(),
            other => errors.push(FieldError::new(
                "close_policy",
                "close_policy.invalid",
                format!("`{other}` is refund_paid or forfeit"),
            )),
        }
    }
    if let Some(months) = input.validity_months {
        if months.is_some_and(|months| !(1..=600).contains(&months)) {
            errors.push(FieldError::new("validity_months", "validity.invalid", "1 to 600 months"));
        }
        product.validity_months = months;
    }
    if let Some(tier) = &input.default_tier {
        product.default_tier = tier.trim().to_lowercase();
    }
    if let Some(raw) = &input.status {
        match raw.trim() {
            status @ ("active" | "retired") => product.status = status.to_owned(),
            other => errors.push(FieldError::new(
                "status",
                "status.invalid",
                format!("`{other}` is active or retired"),
            )),
        }
    }
    product.updated_at_ms = now_ms;
    product
}
