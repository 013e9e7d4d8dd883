//! Checkout 快速结账: one atomic call for a basket. The price goes through stages in a fixed
//! order — the member's tier discount, then (with the loyalty engine) a coupon and points —
//! and what is left is paid from the card's stored value and/or recorded as an outside
//! payment. The checkout, its transfers and one purchase record per basket line commit
//! together, and a refund of it reverses exactly what it did.

use cardcrm_domain::{
    FieldError, FieldErrors,
    card::CardStatus,
    ledger::{DiscountRate, SpendOrder, ValueParts, split_proportional, split_spend, spread_discount},
};
use cardcrm_store::{
    Conn,
    repo::{
        cards as card_repo, customers as customer_repo,
        ledger::{self as repo, NewTransfer, OperationRecord},
        purchases::{self as purchase_repo, PurchaseRecord},
        rewards as reward_repo,
    },
};
use serde::{Deserialize, Serialize};

use crate::{
    Services,
    cards::{VALUE_MINOR_MAX, load_card},
    clock::format_ms,
    error::{ServiceError, ServiceResult},
    identity::{Access, perm},
    ledger::{
        BalanceView, Decision, IdempotencyKey, Outcome, Refusal, check_store, insufficient,
        parse_payment_method, pay_from_card, post, raise_alerts, refuse_card_state, store_account,
        stored_value_product, value_accounts,
    },
};

/// Most lines in one basket.
pub const LINES_MAX: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutLine {
    /// What the line costs before any discount, in minor units (quantity included).
    pub amount_minor: i64,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub quantity: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutInput {
    /// The member's card: its tier sets the discount, and stored value is paid from it.
    #[serde(default)]
    pub card_id: Option<i64>,
    /// The customer, when buying without a card (no discount).
    #[serde(default)]
    pub customer_id: Option<i64>,
    #[serde(default)]
    pub store_id: Option<i64>,
    pub lines: Vec<CheckoutLine>,
    /// How much of the total to pay from the card's stored value (default 0).
    #[serde(default)]
    pub stored_value_minor: Option<i64>,
    /// How the rest is paid: `cash`, `bank_card`, `wechat_pay`, `alipay`, `transfer`, `other`.
    #[serde(default)]
    pub external_method: Option<String>,
    /// Needed when the stored-value part is above the product's PIN threshold. Never stored.
    #[serde(default, skip_serializing)]
    pub pin: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    /// The currency the till prices in (ISO 4217); refused when the card holds another.
    #[serde(default)]
    pub currency: Option<String>,
    /// Coupons to redeem (at most 5; more than one only when all are stackable).
    #[serde(default)]
    pub coupon_codes: Vec<String>,
    /// Points to pay with, at the programme's value per point.
    #[serde(default)]
    pub points_to_redeem: Option<i64>,
}

/// A line of the receipt.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReceiptLine {
    pub category: Option<String>,
    pub name: Option<String>,
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    pub amount_minor: i64,
    pub discount_minor: i64,
    pub net_minor: i64,
}

/// A change to the price made by a pricing stage.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Adjustment {
    /// `tier_discount` (later also `coupon` and `points`).
    pub stage: String,
    pub description: String,
    /// What it took off the price.
    pub amount_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckoutReceipt {
    pub operation_id: i64,
    pub card_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub store_id: Option<i64>,
    pub currency: String,
    pub lines: Vec<ReceiptLine>,
    pub subtotal_minor: i64,
    pub adjustments: Vec<Adjustment>,
    pub discount_minor: i64,
    pub total_minor: i64,
    /// Paid from the card: its paid and bonus parts.
    pub stored_value_paid_minor: i64,
    pub stored_value_bonus_minor: i64,
    pub external_minor: i64,
    pub external_method: Option<String>,
    pub balance_after: Option<BalanceView>,
    /// Points paid with.
    pub points_redeemed: i64,
    /// Points earned on what was paid (members only).
    pub points_earned: Option<crate::loyalty::PointsEarned>,
    pub occurred_at: String,
    pub receipt_path: String,
}

/// The basket as the stages see it.
struct Basket {
    lines: Vec<ReceiptLine>,
}

impl Basket {
    fn subtotal(&self) -> i64 {
        self.lines.iter().map(|line| line.amount_minor).sum()
    }

    fn total(&self) -> i64 {
        self.lines.iter().map(|line| line.net_minor).sum()
    }

    /// Takes `discount` off the basket, spread over the lines by what each still costs.
    fn discount(&mut self, discount: i64) {
        self.discount_where(discount, |_| true);
    }

    /// What the lines `eligible` picks still cost.
    fn total_where(&self, eligible: impl Fn(&ReceiptLine) -> bool) -> i64 {
        self.lines.iter().filter(|line| eligible(line)).map(|line| line.net_minor).sum()
    }

    /// Takes `discount` off the lines `eligible` picks, spread by what each still costs.
    fn discount_where(&mut self, discount: i64, eligible: impl Fn(&ReceiptLine) -> bool) {
        let nets: Vec<i64> =
            self.lines.iter().map(|line| if eligible(line) { line.net_minor } else { 0 }).collect();
        for (line, share) in
            self.lines.iter_mut().zip(spread_discount(discount.min(nets.iter().sum()), &nets))
        {
            line.discount_minor += share;
            line.net_minor -= share;
        }
    }
}

/// Stage 1: the member's tier discount on every line.
fn tier_discount(basket: &mut Basket, tier: Option<&card_repo::TierRecord>) -> Option<Adjustment> {
    let tier = tier?;
    let rate = DiscountRate::try_from(tier.discount_bp).ok()?;
    let discount = rate.of(basket.total());
    if discount == 0 {
        return None;
    }
    basket.discount(discount);
    Some(Adjustment {
        stage: "tier_discount".into(),
        description: format!("{} {}% off", tier.name, tier.discount_bp as f64 / 100.0),
        amount_minor: discount,
    })
}

fn bounded_text(errors: &mut FieldErrors, field: &str, raw: &Option<String>, max: usize) -> Option<String> {
    raw.as_deref()
        .and_then(|raw| errors.take(field, cardcrm_domain::customer::parse_bounded_text(field, raw, max)))
        .flatten()
}

impl Services {
    /// Checks out a basket: prices it, pays it, records it, in one transaction.
    pub async fn checkout(
        &self,
        access: Access<'_, perm::ValueSpend>,
        key: IdempotencyKey,
        input: CheckoutInput,
    ) -> ServiceResult<Outcome<CheckoutReceipt>> {
        let mut errors = FieldErrors::new();
        if input.lines.is_empty() || input.lines.len() > LINES_MAX {
            errors.push(FieldError::new(
                "lines",
                "lines.count",
                format!("a basket has 1 to {LINES_MAX} lines"),
            ));
        }
        let mut lines = Vec::with_capacity(input.lines.len());
        for (index, line) in input.lines.iter().enumerate() {
            let field = |name: &str| format!("lines[{index}].{name}");
            if line.amount_minor <= 0 || line.amount_minor > VALUE_MINOR_MAX {
                errors.push(FieldError::new(
                    field("amount_minor"),
                    "amount.out_of_range",
                    format!("a line costs 1 to {VALUE_MINOR_MAX}"),
                ));
            }
            if line.quantity.is_some_and(|quantity| !(1..=100_000).contains(&quantity)) {
                errors.push(FieldError::new(
                    field("quantity"),
                    "quantity.invalid",
                    "quantity is 1 to 100000",
                ));
            }
            let category = bounded_text(&mut errors, &field("category"), &line.category, 64);
            let name = bounded_text(&mut errors, &field("name"), &line.name, 100);
            let sku = bounded_text(&mut errors, &field("sku"), &line.sku, 64);
            lines.push(ReceiptLine {
                category,
                name,
                sku,
                quantity: line.quantity,
                amount_minor: line.amount_minor,
                discount_minor: 0,
                net_minor: line.amount_minor,
            });
        }
        let stored_value = input.stored_value_minor.unwrap_or(0);
        if !(0..=VALUE_MINOR_MAX).contains(&stored_value) {
            errors.push(FieldError::new(
                "stored_value_minor",
                "amount.out_of_range",
                format!("0 to {VALUE_MINOR_MAX}"),
            ));
        }
        if stored_value > 0 && input.card_id.is_none() {
            errors.push(FieldError::new("card_id", "required", "paying from stored value needs the card"));
        }
        let method = input
            .external_method
            .as_deref()
            .and_then(|raw| errors.take("external_method", parse_payment_method("external_method", raw)));
        let reference = bounded_text(&mut errors, "reference", &input.reference, 64);
        if input.coupon_codes.len() > crate::rewards::COUPONS_PER_CHECKOUT_MAX {
            errors.push(FieldError::new(
                "coupon_codes",
                "coupons.too_many",
                format!("at most {} coupons", crate::rewards::COUPONS_PER_CHECKOUT_MAX),
            ));
        }
        let coupon_codes: Vec<String> =
            input.coupon_codes.iter().map(|code| code.trim().to_uppercase()).collect();
        let points_to_redeem = input.points_to_redeem.unwrap_or(0);
        if !(0..=cardcrm_domain::loyalty::POINTS_MAX).contains(&points_to_redeem) {
            errors.push(FieldError::new("points_to_redeem", "points.out_of_range", "0 to 1000000000"));
        }
        if lines.iter().map(|line| line.amount_minor).sum::<i64>() > VALUE_MINOR_MAX {
            errors.push(FieldError::new(
                "lines",
                "amount.over_maximum",
                format!("a basket may cost at most {VALUE_MINOR_MAX}"),
            ));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let store_id = input.store_id.or(access.scope.store_id());
        access.require_store(store_id)?;
        let pin_hash = match input.card_id {
            Some(card_id) if stored_value > 0 => {
                self.check_pin(card_id, stored_value, input.pin.as_deref()).await?
            }
            _ => None,
        };
        let request = (&input, store_id);
        let wanted_currency = input.currency.clone();
        let alerts = self.settings().ledger.clone();
        let currency = self.currency().as_str().to_owned();
        let input_card = input.card_id;
        let input_customer = input.customer_id;
        let context = self.loyalty_context();
        self.keyed(access.identity(), key, "checkout", &request, move |conn, actor, now_ms| {
            let store = check_store(conn, store_id)?;
            let mut basket = Basket { lines: lines.clone() };
            let (card, product, tier) = match input_card {
                Some(card_id) => {
                    let (card, product) = load_card(conn, card_id)?;
                    let tier = card_repo::tier(conn, &card.tier)?;
                    (Some(card), Some(product), tier)
                }
                None => (None, None, None),
            };
            let customer_id = card.as_ref().map(|card| card.customer_id).or(input_customer);
            if let Some(customer) = input_customer
                && customer_repo::get(conn, customer)?.is_none()
            {
                return Err(ServiceError::invalid("customer_id", "customer.unknown", format!("customer {customer} does not exist")));
            }
            if let Some(card) = &card {
                // A card that cannot pay still identifies the member for the discount only
                // when it is active; any other status is refused outright.
                if let Some(refusal) = refuse_card_state(card, CardStatus::can_pay, now_ms) {
                    return Ok(Decision::Refused(refusal));
                }
                crate::ledger::require_pin_unchanged(card, &pin_hash)?;
            }
            let asset = product.as_ref().map_or(currency.clone(), |product| product.currency.clone());
            crate::ledger::check_currency(&wanted_currency, &asset)?;
            // The pricing stages, in order: tier discount, coupons, points.
            let subtotal = basket.subtotal();
            let mut adjustments = Vec::new();
            if let Some(adjustment) = tier_discount(&mut basket, tier.as_ref()) {
                adjustments.push(adjustment);
            }
            let mut coupons = Vec::new();
            for code in &coupon_codes {
                let coupon = match reward_repo::coupon_by_code(conn, code)? {
                    Some(coupon) if Some(coupon.customer_id) == customer_id && crate::rewards::coupon_status(&coupon, now_ms) == "issued" && coupon.valid_from_ms <= now_ms => coupon,
                    _ => return Ok(Decision::Refused(Refusal::new("coupon.invalid", format!("coupon {code} is not a usable coupon of this member")))),
                };
                let template = reward_repo::template(conn, coupon.template_id)?.ok_or_else(|| missing("coupon template"))?;
                coupons.push((coupon, template));
            }
            if coupons.len() > 1 && coupons.iter().any(|(_, template)| !template.stackable) {
                return Ok(Decision::Refused(Refusal::new("coupon.not_stackable", "these coupons cannot be used together")));
            }
            for (coupon, template) in &coupons {
                let category = template.category.clone();
                let eligible = move |line: &ReceiptLine| category.is_none() || line.category == category;
                let off = cardcrm_domain::loyalty::coupon_discount(&template.kind, template.amount_off_minor, template.percent_off_bp, template.cap_minor, template.threshold_minor, basket.total_where(&eligible));
                if off == 0 && template.kind != "gift" {
                    return Ok(Decision::Refused(Refusal::new("coupon.not_applicable", format!("coupon {} does not apply to this basket (threshold {}, category {})", coupon.code, template.threshold_minor, template.category.as_deref().unwrap_or("any")))));
                }
                basket.discount_where(off, &eligible);
                let description = match template.kind.as_str() {
                    "gift" => format!("{}: {}", template.name, template.gift_name.as_deref().unwrap_or("gift")),
                    _ => template.name.clone(),
                };
                adjustments.push(Adjustment { stage: "coupon".into(), description, amount_minor: off });
            }
            let mut points_value = 0;
            if points_to_redeem > 0 {
                let Some(member) = customer_id else {
                    return Err(ServiceError::invalid("points_to_redeem", "points.not_member", "paying with points needs the member (card_id or customer_id)"));
                };
                let programme = crate::loyalty::programme_at(conn, now_ms)?;
                points_value = programme.points_value_minor(points_to_redeem);
                let allowed = basket.total() * programme.rules().redeem_max_basket_pct / 100;
                if points_value > allowed || points_value == 0 {
                    return Ok(Decision::Refused(Refusal::new("points.over_basket_share", format!("{points_to_redeem} points are worth {points_value}; points may pay 1 to {allowed} of this basket"))));
                }
                if let Some(refusal) = crate::loyalty::refuse_unless_spendable(conn, member, points_to_redeem, now_ms)? {
                    return Ok(Decision::Refused(refusal));
                }
                basket.discount(points_value);
                adjustments.push(Adjustment { stage: "points".into(), description: format!("{points_to_redeem} points"), amount_minor: points_value });
            }
            let total = basket.total();
            if stored_value > total {
                return Err(ServiceError::invalid("stored_value_minor", "amount.over_total", format!("the basket comes to {total}; stored value cannot pay {stored_value}")));
            }
            let external = total - stored_value;
            if external > 0 && method.is_none() {
                return Err(ServiceError::invalid("external_method", "required", format!("{external} is left to pay: say how (external_method)")));
            }
            let mut parts = ValueParts::default();
            let mut accounts = None;
            if stored_value > 0 {
                let (card, product) = (card.as_ref().ok_or_else(|| missing("card"))?, product.as_ref().ok_or_else(|| missing("product"))?);
                if let Err(refusal) = stored_value_product(product, card) {
                    return Ok(Decision::Refused(refusal));
                }
                if stored_value > product.spend_max_minor {
                    return Err(ServiceError::invalid("stored_value_minor", "amount.over_maximum", format!("a payment from this card may be at most {}", product.spend_max_minor)));
                }
                let found = value_accounts(conn, card.id)?.ok_or_else(|| missing("value accounts"))?;
                let order = SpendOrder::parse(&product.spend_order).unwrap_or(SpendOrder::Proportional);
                parts = match split_spend(stored_value, found.balance(), order) {
                    Ok(parts) => parts,
                    Err(short) => return Ok(Decision::Refused(insufficient(card.id, short.available_minor, stored_value))),
                };
                accounts = Some(found);
            }
            let earn_lines: Vec<cardcrm_domain::loyalty::EarnLine> = basket.lines.iter().map(|line| cardcrm_domain::loyalty::EarnLine { category: line.category.clone(), paid_minor: line.net_minor }).collect();
            let prepared = match customer_id {
                Some(member) => {
                    let place = crate::loyalty::Place::of(store.as_ref(), &context.zone);
                    Some(crate::loyalty::prepare_earning(conn, &context, member, &place, tier.as_ref(), &earn_lines, now_ms)?)
                }
                None => None,
            };
            let detail = serde_json::json!({
                "points_redeemed": points_to_redeem, "points_value_minor": points_value,
                "points_earned": prepared.as_ref().map(|prepared| prepared.earning.points),
                "coupons": coupons.iter().map(|(coupon, _)| coupon.code.clone()).collect::<Vec<_>>(),
                "lines": basket.lines, "subtotal_minor": subtotal, "adjustments": adjustments,
                "discount_minor": subtotal - total, "paid_minor": parts.paid_minor, "bonus_minor": parts.bonus_minor,
                "external_minor": external, "external_method": method, "reference": reference,
            });
            let operation = OperationRecord {
                customer_id,
                ..actor.operation("checkout", card.as_ref(), store_id, None, total, &asset, method.clone(), detail, now_ms)
            };
            let operation_id = repo::insert_operation(conn, &operation)?;
            if let Some(accounts) = &accounts {
                pay_from_card(conn, operation_id, accounts, parts, store_id, &asset, now_ms)?;
            }
            for (coupon, _) in &coupons {
                if !reward_repo::redeem_coupon(conn, coupon.id, operation_id, now_ms)? {
                    conn.retry_unit();
                    return Err(ServiceError::conflict("coupon.invalid", "the coupon was used meanwhile"));
                }
            }
            if points_to_redeem > 0 {
                let member = customer_id.ok_or_else(|| missing("member"))?;
                let redeemed = store_account(conn, store_id, "points_redeemed", cardcrm_domain::loyalty::POINTS_ASSET, now_ms)?;
                crate::loyalty::spend_points(conn, member, points_to_redeem, redeemed, operation_id, "redeem", now_ms)?;
            }
            let points_earned = match prepared {
                Some(prepared) => Some(crate::loyalty::apply_earning(conn, &context, prepared, actor.name(), total, operation_id, now_ms)?),
                None => None,
            };
            if external > 0 {
                let method = method.clone().unwrap_or_default();
                let payments = store_account(conn, store_id, &format!("payments:{method}"), &asset, now_ms)?;
                let sales = store_account(conn, store_id, "sales", &asset, now_ms)?;
                post(conn, &NewTransfer { operation_id, debit: payments, credit: sales, amount_minor: external, asset: &asset, purpose: "checkout_external", reverses_transfer_id: None, created_at_ms: now_ms })?;
            }
            if let Some(customer_id) = customer_id {
                let records: Vec<PurchaseRecord> = basket
                    .lines
                    .iter()
                    .filter(|line| line.net_minor > 0)
                    .map(|line| PurchaseRecord {
                        id: 0,
                        customer_id,
                        store_id,
                        occurred_at_ms: now_ms,
                        amount_minor: line.net_minor,
                        currency: asset.clone(),
                        category: line.category.clone(),
                        channel: "store".into(),
                        external_id: None,
                        import_id: None,
                        operation_id: Some(operation_id),
                        created_at_ms: now_ms,
                    })
                    .collect();
                purchase_repo::insert_many(conn, &records)?;
            }
            if let Some(card) = &card
                && stored_value > 0
            {
                raise_alerts(conn, &alerts, card, store_id, operation_id, "spend", stored_value, now_ms)?;
            }
            let balance_after = match &card {
                Some(card) => value_accounts(conn, card.id)?.map(|accounts| accounts.view(card.id)),
                None => None,
            };
            let receipt = CheckoutReceipt {
                operation_id,
                card_id: card.as_ref().map(|card| card.id),
                customer_id,
                store_id,
                currency: asset,
                lines: basket.lines,
                subtotal_minor: subtotal,
                discount_minor: subtotal - total,
                adjustments,
                total_minor: total,
                stored_value_paid_minor: parts.paid_minor,
                stored_value_bonus_minor: parts.bonus_minor,
                external_minor: external,
                external_method: method.clone(),
                balance_after,
                points_redeemed: points_to_redeem,
                points_earned,
                occurred_at: format_ms(now_ms),
                receipt_path: format!("/api/v1/operations/{operation_id}/receipt"),
            };
            Ok(Decision::Done { value: receipt, operation_id: Some(operation_id) })
        })
        .await
    }
}

fn missing(what: &str) -> ServiceError {
    ServiceError::Store(cardcrm_store::StoreError::Invariant(format!("checkout lost its {what}")))
}

/// Records the purchases a checkout refund takes back: negative amounts on the lines the
/// checkout recorded, in proportion to them.
pub(crate) fn record_refund_purchases(
    conn: &mut Conn<'_>,
    original: &OperationRecord,
    refund_id: i64,
    refund_minor: i64,
    now_ms: i64,
) -> ServiceResult<()> {
    let bought = purchase_repo::of_operation(conn, original.id)?;
    if bought.is_empty() || refund_minor == 0 {
        return Ok(());
    }
    let total: i64 = bought.iter().map(|purchase| purchase.amount_minor).sum();
    let amounts: Vec<i64> = bought.iter().map(|purchase| purchase.amount_minor).collect();
    let shares = split_proportional(refund_minor.min(total), &amounts);
    let records: Vec<PurchaseRecord> = bought
        .iter()
        .zip(shares)
        .filter(|(_, share)| *share > 0)
        .map(|(purchase, share)| PurchaseRecord {
            id: 0,
            amount_minor: -share,
            occurred_at_ms: now_ms,
            external_id: None,
            import_id: None,
            operation_id: Some(refund_id),
            created_at_ms: now_ms,
            ..purchase.clone()
        })
        .collect();
    purchase_repo::insert_many(conn, &records)?;
    Ok(())
}
