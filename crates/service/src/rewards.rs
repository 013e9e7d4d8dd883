//! Coupons 优惠券 and the points mall 积分商城. A coupon template says what a coupon takes off
//! (amount, percent with a cap, 满减 over a threshold, a gift), where (a category) and when
//! (a window, or days from issue); coupons are unique codes issued to members, one by one
//! or in bulk, redeemed once at checkout, cancelled or left to expire. Mall rewards are
//! priced in points (and optionally cash), with stock and per-member limits; an order
//! spends points like a checkout does, and cancelling it gives points and stock back.

use cardcrm_domain::{
    FieldError, FieldErrors,
    loyalty::{POINTS_ASSET, POINTS_MAX},
};
use cardcrm_store::{
    Conn, StoreError,
    repo::{
        customers as customer_repo,
        ledger::{self as ledger_repo, NewTransfer},
        rewards::{self as repo, CouponRecord, OrderRecord, RewardRecord, TemplateRecord},
    },
};
use serde::{Deserialize, Serialize};

use crate::{
    Services, audit,
    clock::format_ms,
    error::{ServiceError, ServiceResult},
    identity::{Access, perm},
    ledger::{Decision, IdempotencyKey, Outcome, Refusal, post, store_account, system_account},
    loyalty::{refuse_unless_spendable, required_text, return_points, spend_points},
    random::secure_bytes,
    view::Page,
};

/// Most members one bulk issue reaches.
pub const BULK_ISSUE_MAX: usize = 10_000;
/// Most coupons one checkout may use.
pub const COUPONS_PER_CHECKOUT_MAX: usize = 5;
const TEMPLATE_KINDS: [&str; 4] = ["amount_off", "percent_off", "threshold_off", "gift"];
const REWARD_KINDS: [&str; 3] = ["goods", "service", "coupon"];

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    pub code: String,
    pub name: String,
    /// `amount_off`, `percent_off`, `threshold_off` (满减) or `gift`.
    pub kind: String,
    #[serde(default)]
    pub amount_off_minor: i64,
    /// Percent off in basis points (1500 = 15% off).
    #[serde(default)]
    pub percent_off_bp: i64,
    #[serde(default)]
    pub cap_minor: Option<i64>,
    /// What the eligible lines must come to (满 in 满减).
    #[serde(default)]
    pub threshold_minor: i64,
    /// Only lines of this category count and are discounted.
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub gift_name: Option<String>,
    /// RFC 3339 window; coupons are valid inside it.
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_to: Option<String>,
    /// Days from issue a coupon is valid (within the window, if any).
    #[serde(default)]
    pub valid_days: Option<i64>,
    /// May be used together with other stackable coupons in one checkout.
    #[serde(default)]
    pub stackable: bool,
    #[serde(default)]
    pub per_member_max: Option<i64>,
    #[serde(default)]
    pub issue_max: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateView {
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
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
    pub valid_days: Option<i64>,
    pub stackable: bool,
    pub per_member_max: Option<i64>,
    pub issue_max: Option<i64>,
    pub issued_count: i64,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueInput {
    /// The members to issue to (1 to 10,000).
    #[serde(default)]
    pub customer_ids: Vec<i64>,
    /// Or every member currently on this tier (a segment; at most 10,000 are reached).
    #[serde(default)]
    pub tier: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssueReport {
    pub template_id: i64,
    pub issued: i64,
    /// Members skipped because they reached the template's per-member limit.
    pub skipped_at_limit: i64,
    pub coupons: Vec<CouponView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CouponView {
    pub id: i64,
    pub code: String,
    pub template_id: i64,
    pub customer_id: i64,
    /// `issued`, `redeemed`, `cancelled` or `expired`.
    pub status: String,
    pub valid_from: String,
    pub valid_to: String,
    pub redeemed_operation_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewardInput {
    pub code: String,
    pub name: String,
    /// `goods`, `service` or `coupon`.
    pub kind: String,
    pub points_price: i64,
    #[serde(default)]
    pub cash_price_minor: i64,
    /// For `coupon` rewards: the template issued.
    #[serde(default)]
    pub coupon_template_id: Option<i64>,
    /// Left out: unlimited.
    #[serde(default)]
    pub stock: Option<i64>,
    #[serde(default)]
    pub per_member_max: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RewardView {
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
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    pub customer_id: i64,
    pub reward_id: i64,
    #[serde(default)]
    pub quantity: Option<i64>,
    /// How the cash part is paid (`cash`, `bank_card`, `wechat_pay`, `alipay`, ...).
    #[serde(default)]
    pub cash_method: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: i64,
    pub reward_id: i64,
    pub customer_id: i64,
    pub quantity: i64,
    pub points: i64,
    pub cash_minor: i64,
    /// `placed`, `fulfilled` or `cancelled`.
    pub status: String,
    pub operation_id: i64,
    pub cancel_operation_id: Option<i64>,
    pub coupon_ids: Vec<i64>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderStatusInput {
    /// `fulfilled` (handed over) or `cancelled` (points, cash and stock go back).
    pub status: String,
}

fn template_view(t: &TemplateRecord) -> TemplateView {
    TemplateView {
        id: t.id,
        code: t.code.clone(),
        name: t.name.clone(),
        kind: t.kind.clone(),
        amount_off_minor: t.amount_off_minor,
        percent_off_bp: t.percent_off_bp,
        cap_minor: t.cap_minor,
        threshold_minor: t.threshold_minor,
        category: t.category.clone(),
        gift_name: t.gift_name.clone(),
        valid_from: t.valid_from_ms.map(format_ms),
        valid_to: t.valid_to_ms.map(format_ms),
        valid_days: t.valid_days,
        stackable: t.stackable,
        per_member_max: t.per_member_max,
        issue_max: t.issue_max,
        issued_count: t.issued_count,
        status: t.status.clone(),
    }
}

pub(crate) fn coupon_status(coupon: &CouponRecord, now_ms: i64) -> String {
    if coupon.status == "issued" && coupon.valid_to_ms <= now_ms {
        "expired".into()
    } else {
        coupon.status.clone()
    }
}

fn coupon_view(coupon: &CouponRecord, now_ms: i64) -> CouponView {
    CouponView {
        id: coupon.id,
        code: coupon.code.clone(),
        template_id: coupon.template_id,
        customer_id: coupon.customer_id,
        status: coupon_status(coupon, now_ms),
        valid_from: format_ms(coupon.valid_from_ms),
        valid_to: format_ms(coupon.valid_to_ms),
        redeemed_operation_id: coupon.redeemed_operation_id,
    }
}

fn reward_view(r: &RewardRecord) -> RewardView {
    RewardView {
        id: r.id,
        code: r.code.clone(),
        name: r.name.clone(),
        kind: r.kind.clone(),
        points_price: r.points_price,
        cash_price_minor: r.cash_price_minor,
        coupon_template_id: r.coupon_template_id,
        stock: r.stock,
        per_member_max: r.per_member_max,
        status: r.status.clone(),
    }
}

fn order_view(o: &OrderRecord) -> OrderView {
    OrderView {
        id: o.id,
        reward_id: o.reward_id,
        customer_id: o.customer_id,
        quantity: o.quantity,
        points: o.points,
        cash_minor: o.cash_minor,
        status: o.status.clone(),
        operation_id: o.operation_id,
        cancel_operation_id: o.cancel_operation_id,
        coupon_ids: serde_json::from_str(&o.coupon_ids).unwrap_or_default(),
        created_at: format_ms(o.created_at_ms),
    }
}

/// A coupon code people can read out: 12 of an alphabet without 0/O, 1/I/L.
fn coupon_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    secure_bytes::<12>().iter().map(|byte| ALPHABET[*byte as usize % ALPHABET.len()] as char).collect()
}

fn moment(errors: &mut FieldErrors, field: &str, raw: &Option<String>) -> Option<i64> {
    raw.as_deref()
        .and_then(|raw| errors.take(field, cardcrm_domain::date::parse_instant(raw)))
        .map(|at| at.as_millisecond())
}

fn in_range(errors: &mut FieldErrors, field: &str, value: i64, min: i64, max: i64) {
    if !(min..=max).contains(&value) {
        errors.push(FieldError::new(field, "out_of_range", format!("{field} is {min} to {max}")));
    }
}

/// Issues coupons of `template` to `customers` inside a unit of work; members at the
/// template's per-member limit are skipped.
pub(crate) fn issue_coupons(
    conn: &mut Conn<'_>,
    template: &TemplateRecord,
    customers: &[i64],
    source: &str,
    now_ms: i64,
) -> ServiceResult<Result<(Vec<CouponRecord>, i64), Refusal>> {
    if template.status != "active" {
        return Ok(Err(Refusal::new(
            "coupon.template_inactive",
            format!("template {} is {}", template.code, template.status),
        )));
    }
    if template.valid_to_ms.is_some_and(|to| to <= now_ms) {
        return Ok(Err(Refusal::new("coupon.template_ended", format!("template {} ended", template.code))));
    }
    let mut records = Vec::new();
    let mut skipped = 0;
    for customer_id in customers {
        let held = match template.per_member_max {
            Some(_) => repo::member_coupon_count(conn, template.id, *customer_id)?,
            None => 0,
        };
        let issuing_now =
            records.iter().filter(|record: &&CouponRecord| record.customer_id == *customer_id).count() as i64;
        if template.per_member_max.is_some_and(|max| held + issuing_now >= max) {
            skipped += 1;
            continue;
        }
        let from = template.valid_from_ms.unwrap_or(now_ms).max(now_ms);
        let mut to = template.valid_to_ms.unwrap_or(i64::MAX);
        if let Some(days) = template.valid_days {
            to = to.min(from + days * 86_400_000);
        }
        records.push(CouponRecord {
            id: 0,
            template_id: template.id,
            code: coupon_code(),
            customer_id: *customer_id,
            status: "issued".into(),
            source: source.to_owned(),
            valid_from_ms: template.valid_from_ms.unwrap_or(now_ms),
            valid_to_ms: to.min(now_ms + 10 * 366 * 86_400_000),
            redeemed_operation_id: None,
            redeemed_at_ms: None,
            cancelled_at_ms: None,
            issued_at_ms: now_ms,
        });
    }
    if !records.is_empty() && !repo::count_issued(conn, template.id, records.len() as i64)? {
        return Ok(Err(Refusal::new(
            "coupon.issue_limit",
            format!(
                "template {} may issue at most {} coupons",
                template.code,
                template.issue_max.unwrap_or(0)
            ),
        )));
    }
    let ids = repo::insert_coupons(conn, &records)?;
    for (record, id) in records.iter_mut().zip(ids) {
        record.id = id;
    }
    Ok(Ok((records, skipped)))
}

impl Services {
    pub async fn coupon_templates(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        cursor: Option<i64>,
        limit: i64,
    ) -> ServiceResult<Page<TemplateView>> {
        self.database()
            .read(move |conn| {
                let rows = repo::templates(conn, cursor.unwrap_or(0), limit + 1)?;
                Ok(Page::from_overfetch(
                    rows.iter().map(template_view).collect(),
                    limit,
                    |t: &TemplateView| t.id.to_string(),
                ))
            })
            .await
    }

    pub async fn create_coupon_template(
        &self,
        access: Access<'_, perm::LoyaltyManage>,
        input: TemplateInput,
    ) -> ServiceResult<TemplateView> {
        let mut errors = FieldErrors::new();
        let code = errors.take(
            "code",
            cardcrm_domain::text::parse_code(&input.code, "coupon.code_invalid", "coupon template"),
        );
        let title = required_text(&mut errors, "name", &input.name, 100).unwrap_or_default();
        if !TEMPLATE_KINDS.contains(&input.kind.as_str()) {
            errors.push(FieldError::new(
                "kind",
                "coupon.kind",
                format!("kind is one of {}", TEMPLATE_KINDS.join(", ")),
            ));
        }
        let max = crate::cards::VALUE_MINOR_MAX;
        in_range(&mut errors, "amount_off_minor", input.amount_off_minor, 0, max);
        in_range(&mut errors, "percent_off_bp", input.percent_off_bp, 0, 10_000);
        in_range(&mut errors, "cap_minor", input.cap_minor.unwrap_or(0), 0, max);
        in_range(&mut errors, "threshold_minor", input.threshold_minor, 0, max);
        in_range(&mut errors, "valid_days", input.valid_days.unwrap_or(1), 1, 3_660);
        in_range(&mut errors, "per_member_max", input.per_member_max.unwrap_or(1), 1, 1_000);
        in_range(&mut errors, "issue_max", input.issue_max.unwrap_or(1), 1, 100_000_000);
        match input.kind.as_str() {
            "amount_off" | "threshold_off" if input.amount_off_minor == 0 => errors.push(FieldError::new(
                "amount_off_minor",
                "required",
                "an amount-off coupon says how much",
            )),
            "percent_off" if input.percent_off_bp == 0 => errors.push(FieldError::new(
                "percent_off_bp",
                "required",
                "a percent-off coupon says how much",
            )),
            "threshold_off" if input.threshold_minor == 0 => {
                errors.push(FieldError::new("threshold_minor", "required", "满减 needs a threshold"))
            }
            "gift" if input.gift_name.as_deref().is_none_or(|gift| gift.trim().is_empty()) => {
                errors.push(FieldError::new("gift_name", "required", "a gift coupon names the gift"))
            }
            _ => {}
        }
        let category = input
            .category
            .as_deref()
            .and_then(|raw| {
                errors.take("category", cardcrm_domain::customer::parse_bounded_text("category", raw, 64))
            })
            .flatten();
        let gift = input
            .gift_name
            .as_deref()
            .and_then(|raw| {
                errors.take("gift_name", cardcrm_domain::customer::parse_bounded_text("gift_name", raw, 100))
            })
            .flatten();
        let from = moment(&mut errors, "valid_from", &input.valid_from);
        let to = moment(&mut errors, "valid_to", &input.valid_to);
        if let (Some(from), Some(to)) = (from, to)
            && to <= from
        {
            errors.push(FieldError::new("valid_to", "window.invalid", "valid_to is after valid_from"));
        }
        if from.is_none() && to.is_none() && input.valid_days.is_none() {
            errors.push(FieldError::new(
                "valid_days",
                "required",
                "a coupon needs an end: valid_to or valid_days",
            ));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let now_ms = self.now_ms();
        let record = TemplateRecord {
            id: 0,
            code: code.unwrap_or_default(),
            name: title,
            kind: input.kind.clone(),
            amount_off_minor: input.amount_off_minor,
            percent_off_bp: input.percent_off_bp,
            cap_minor: input.cap_minor,
            threshold_minor: input.threshold_minor,
            category,
            gift_name: gift,
            valid_from_ms: from,
            valid_to_ms: to,
            valid_days: input.valid_days,
            stackable: input.stackable,
            per_member_max: input.per_member_max,
            issue_max: input.issue_max,
            issued_count: 0,
            status: "active".into(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        let identity = access.identity().clone();
        self.database()
            .write(move |conn| {
                let id = match repo::insert_template(conn, &record) {
                    Ok(id) => id,
                    Err(StoreError::UniqueViolation { .. }) => {
                        return Err(ServiceError::conflict(
                            "coupon.code_taken",
                            "a coupon template with this code exists",
                        ));
                    }
                    Err(other) => return Err(other.into()),
                };
                let view = template_view(&TemplateRecord { id, ..record.clone() });
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "coupon_template.create",
                    "coupon_template",
                    id,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok(view)
            })
            .await
    }

    /// Stops a template: no more coupons are issued from it (issued ones stay valid).
    pub async fn retire_coupon_template(
        &self,
        access: Access<'_, perm::LoyaltyManage>,
        id: i64,
    ) -> ServiceResult<TemplateView> {
        let now_ms = self.now_ms();
        let identity = access.identity().clone();
        self.database()
            .write(move |conn| {
                let before = repo::template(conn, id)?
                    .ok_or_else(|| ServiceError::not_found("coupon template", id))?;
                repo::set_template_status(conn, id, "retired", now_ms)?;
                let after = repo::template(conn, id)?
                    .ok_or_else(|| ServiceError::not_found("coupon template", id))?;
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "coupon_template.retire",
                    "coupon_template",
                    id,
                    audit::snapshot(&template_view(&before)),
                    audit::snapshot(&template_view(&after)),
                )?;
                Ok(template_view(&after))
            })
            .await
    }

    /// Issues coupons of a template to a list of members or to a tier.
    pub async fn issue_coupons(
        &self,
        access: Access<'_, perm::LoyaltyWrite>,
        key: IdempotencyKey,
        template_id: i64,
        input: IssueInput,
    ) -> ServiceResult<Outcome<IssueReport>> {
        if input.customer_ids.is_empty() == input.tier.is_none() {
            return Err(ServiceError::invalid(
                "customer_ids",
                "issue.target",
                "name the members (customer_ids) or a tier, one of the two",
            ));
        }
        if input.customer_ids.len() > BULK_ISSUE_MAX {
            return Err(ServiceError::invalid(
                "customer_ids",
                "issue.too_many",
                format!("at most {BULK_ISSUE_MAX} members per request"),
            ));
        }
        let request = (template_id, &input);
        let mut customers = input.customer_ids.clone();
        customers.sort_unstable();
        customers.dedup();
        let tier = input.tier.clone();
        self.keyed(access.identity(), key, "coupon_issue", &request, move |conn, _actor, now_ms| {
            let template = repo::template(conn, template_id)?
                .ok_or_else(|| ServiceError::not_found("coupon template", template_id))?;
            let targets = match &tier {
                Some(tier) => conn.query(
                    "SELECT customer_id FROM loyalty_members WHERE tier = $1 ORDER BY customer_id LIMIT $2",
                    &[tier.as_str().into(), (BULK_ISSUE_MAX as i64).into()],
                    |row| row.get(0),
                )?,
                None => customers.clone(),
            };
            for customer_id in &targets {
                customer_repo::get(conn, *customer_id)?
                    .ok_or_else(|| ServiceError::not_found("customer", customer_id))?;
            }
            let (coupons, skipped) = match issue_coupons(conn, &template, &targets, "issue", now_ms)? {
                Ok(done) => done,
                Err(refusal) => return Ok(Decision::Refused(refusal)),
            };
            let report = IssueReport {
                template_id,
                issued: coupons.len() as i64,
                skipped_at_limit: skipped,
                coupons: coupons.iter().take(1_000).map(|c| coupon_view(c, now_ms)).collect(),
            };
            Ok(Decision::Done { value: report, operation_id: None })
        })
        .await
    }

    pub async fn member_coupons(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        customer_id: i64,
        cursor: Option<i64>,
        limit: i64,
    ) -> ServiceResult<Page<CouponView>> {
        let now_ms = self.now_ms();
        self.database()
            .read(move |conn| {
                customer_repo::get(conn, customer_id)?
                    .ok_or_else(|| ServiceError::not_found("customer", customer_id))?;
                let rows = repo::coupons_of(conn, customer_id, cursor.unwrap_or(0), limit + 1)?;
                Ok(Page::from_overfetch(
                    rows.iter().map(|c| coupon_view(c, now_ms)).collect(),
                    limit,
                    |c: &CouponView| c.id.to_string(),
                ))
            })
            .await
    }

    /// Cancels an unused coupon.
    pub async fn cancel_coupon(
        &self,
        access: Access<'_, perm::LoyaltyWrite>,
        id: i64,
    ) -> ServiceResult<CouponView> {
        let now_ms = self.now_ms();
        let identity = access.identity().clone();
        self.database()
            .write(move |conn| {
                let coupon = repo::coupon(conn, id)?.ok_or_else(|| ServiceError::not_found("coupon", id))?;
                if !repo::cancel_coupon(conn, id, now_ms)? {
                    return Err(ServiceError::conflict(
                        "coupon.not_issued",
                        format!("coupon {id} is {}; only unused coupons are cancelled", coupon.status),
                    ));
                }
                let after = repo::coupon(conn, id)?.ok_or_else(|| ServiceError::not_found("coupon", id))?;
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "coupon.cancel",
                    "coupon",
                    id,
                    audit::snapshot(&coupon_view(&coupon, now_ms)),
                    audit::snapshot(&coupon_view(&after, now_ms)),
                )?;
                Ok(coupon_view(&after, now_ms))
            })
            .await
    }

    pub async fn rewards(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        cursor: Option<i64>,
        limit: i64,
    ) -> ServiceResult<Page<RewardView>> {
        self.database()
            .read(move |conn| {
                let rows = repo::rewards(conn, cursor.unwrap_or(0), limit + 1)?;
                Ok(Page::from_overfetch(rows.iter().map(reward_view).collect(), limit, |r: &RewardView| {
                    r.id.to_string()
                }))
            })
            .await
    }

    pub async fn create_reward(
        &self,
        access: Access<'_, perm::LoyaltyManage>,
        input: RewardInput,
    ) -> ServiceResult<RewardView> {
        let mut errors = FieldErrors::new();
        let code = errors
            .take("code", cardcrm_domain::text::parse_code(&input.code, "reward.code_invalid", "reward"));
        let title = required_text(&mut errors, "name", &input.name, 100).unwrap_or_default();
        if !REWARD_KINDS.contains(&input.kind.as_str()) {
            errors.push(FieldError::new(
                "kind",
                "reward.kind",
                format!("kind is one of {}", REWARD_KINDS.join(", ")),
            ));
        }
        in_range(&mut errors, "points_price", input.points_price, 1, POINTS_MAX);
        in_range(&mut errors, "cash_price_minor", input.cash_price_minor, 0, crate::cards::VALUE_MINOR_MAX);
        in_range(&mut errors, "stock", input.stock.unwrap_or(0), 0, 100_000_000);
        in_range(&mut errors, "per_member_max", input.per_member_max.unwrap_or(1), 1, 1_000);
        if (input.kind == "coupon") != input.coupon_template_id.is_some() {
            errors.push(FieldError::new(
                "coupon_template_id",
                "reward.coupon",
                "a coupon reward names its template, and only a coupon reward does",
            ));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let now_ms = self.now_ms();
        let record = RewardRecord {
            id: 0,
            code: code.unwrap_or_default(),
            name: title,
            kind: input.kind.clone(),
            points_price: input.points_price,
            cash_price_minor: input.cash_price_minor,
            coupon_template_id: input.coupon_template_id,
            stock: input.stock,
            per_member_max: input.per_member_max,
            status: "active".into(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        let identity = access.identity().clone();
        self.database()
            .write(move |conn| {
                if let Some(template) = record.coupon_template_id
                    && repo::template(conn, template)?.is_none()
                {
                    return Err(ServiceError::invalid(
                        "coupon_template_id",
                        "coupon.template_unknown",
                        format!("coupon template {template} does not exist"),
                    ));
                }
                let id = match repo::insert_reward(conn, &record) {
                    Ok(id) => id,
                    Err(StoreError::UniqueViolation { .. }) => {
                        return Err(ServiceError::conflict(
                            "reward.code_taken",
                            "a reward with this code exists",
                        ));
                    }
                    Err(other) => return Err(other.into()),
                };
                let view = reward_view(&RewardRecord { id, ..record.clone() });
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "reward.create",
                    "reward",
                    id,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok(view)
            })
            .await
    }

    /// Redeems a mall reward for a member: points (and cash) paid, stock taken, a coupon
    /// issued for coupon rewards — all or nothing.
    pub async fn place_order(
        &self,
        access: Access<'_, perm::LoyaltyWrite>,
        key: IdempotencyKey,
        input: OrderInput,
    ) -> ServiceResult<Outcome<OrderView>> {
        let quantity = input.quantity.unwrap_or(1);
        if !(1..=100).contains(&quantity) {
            return Err(ServiceError::invalid("quantity", "quantity.invalid", "quantity is 1 to 100"));
        }
        let method = input
            .cash_method
            .as_deref()
            .map(|raw| crate::ledger::parse_payment_method("cash_method", raw))
            .transpose()?;
        let currency = self.currency().as_str().to_owned();
        let request = input.clone();
        self.keyed(access.identity(), key, "mall_order", &request, move |conn, actor, now_ms| {
            let reward = repo::reward(conn, input.reward_id)?.ok_or_else(|| ServiceError::not_found("reward", input.reward_id))?;
            customer_repo::get(conn, input.customer_id)?.ok_or_else(|| ServiceError::not_found("customer", input.customer_id))?;
            if reward.status != "active" {
                return Ok(Decision::Refused(Refusal::new("reward.inactive", format!("reward {} is {}", reward.code, reward.status))));
            }
            let cash = reward.cash_price_minor * quantity;
            if cash > 0 && method.is_none() {
                return Err(ServiceError::invalid("cash_method", "required", format!("this reward also costs {cash} in cash: say how it is paid")));
            }
            if let Some(max) = reward.per_member_max {
                let ordered = repo::ordered_quantity(conn, reward.id, input.customer_id)?;
                if ordered + quantity > max {
                    return Ok(Decision::Refused(Refusal::new("reward.member_limit", format!("a member may order {max} of {}; {ordered} ordered", reward.code))));
                }
            }
            if reward.stock.is_some_and(|stock| stock < quantity) {
                return Ok(Decision::Refused(Refusal::new("reward.out_of_stock", format!("{} has {} left", reward.code, reward.stock.unwrap_or(0)))));
            }
            let points = reward.points_price * quantity;
            if let Some(refusal) = refuse_unless_spendable(conn, input.customer_id, points, now_ms)? {
                return Ok(Decision::Refused(refusal));
            }
            let template = match reward.coupon_template_id {
                Some(template_id) => {
                    let template = repo::template(conn, template_id)?.ok_or_else(|| ServiceError::not_found("coupon template", template_id))?;
                    let held = repo::member_coupon_count(conn, template_id, input.customer_id)?;
                    if template.status != "active" || template.per_member_max.is_some_and(|max| held + quantity > max) {
                        return Ok(Decision::Refused(Refusal::new("coupon.member_limit", "the member cannot receive more of this reward's coupon")));
                    }
                    Some(template)
                }
                None => None,
            };
            // Checks done: from here on, a refusal can only come from a concurrent change,
            // and the unit runs again to refuse properly.
            if !repo::take_stock(conn, reward.id, quantity)? {
                conn.retry_unit();
                return Err(ServiceError::conflict("reward.out_of_stock", "the stock changed meanwhile"));
            }
            let detail = serde_json::json!({"reward_id": reward.id, "quantity": quantity, "points": points, "cash_minor": cash});
            let operation = ledger_repo::OperationRecord { customer_id: Some(input.customer_id), ..actor.operation("mall_order", None, None, None, points, POINTS_ASSET, method.clone(), detail, now_ms) };
            let operation_id = ledger_repo::insert_operation(conn, &operation)?;
            let mall = system_account(conn, "mall", POINTS_ASSET, now_ms)?;
            spend_points(conn, input.customer_id, points, mall, operation_id, "mall", now_ms)?;
            if cash > 0 {
                let method = method.clone().unwrap_or_default();
                let payments = store_account(conn, None, &format!("payments:{method}"), &currency, now_ms)?;
                let sales = store_account(conn, None, "mall_sales", &currency, now_ms)?;
                post(conn, &NewTransfer { operation_id, debit: payments, credit: sales, amount_minor: cash, asset: &currency, purpose: "mall_cash", reverses_transfer_id: None, created_at_ms: now_ms })?;
            }
            let mut coupon_ids = Vec::new();
            if let Some(template) = &template {
                let customers = vec![input.customer_id; quantity as usize];
                match issue_coupons(conn, template, &customers, "mall", now_ms)? {
                    Ok((coupons, 0)) => coupon_ids = coupons.iter().map(|c| c.id).collect(),
                    _ => {
                        conn.retry_unit();
                        return Err(ServiceError::conflict("coupon.member_limit", "the coupon's limits changed meanwhile"));
                    }
                }
            }
            let order = OrderRecord {
                id: 0, reward_id: reward.id, customer_id: input.customer_id, quantity, points, cash_minor: cash, status: "placed".into(),
                operation_id, cancel_operation_id: None, coupon_ids: serde_json::to_string(&coupon_ids).unwrap_or_default(), created_at_ms: now_ms, updated_at_ms: now_ms,
            };
            let id = repo::insert_order(conn, &order)?;
            Ok(Decision::Done { value: order_view(&OrderRecord { id, ..order }), operation_id: Some(operation_id) })
        })
        .await
    }

    pub async fn orders(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        customer_id: Option<i64>,
        cursor: Option<i64>,
        limit: i64,
    ) -> ServiceResult<Page<OrderView>> {
        self.database()
            .read(move |conn| {
                let rows = repo::orders(conn, customer_id, cursor.unwrap_or(0), limit + 1)?;
                Ok(Page::from_overfetch(rows.iter().map(order_view).collect(), limit, |o: &OrderView| {
                    o.id.to_string()
                }))
            })
            .await
    }

    /// Moves an order on: `fulfilled`, or `cancelled` (points back to their lots, cash back,
    /// stock back, coupons it issued cancelled; refused when such a coupon was used).
    pub async fn set_order_status(
        &self,
        access: Access<'_, perm::LoyaltyWrite>,
        key: IdempotencyKey,
        id: i64,
        input: OrderStatusInput,
    ) -> ServiceResult<Outcome<OrderView>> {
        if !matches!(input.status.as_str(), "fulfilled" | "cancelled") {
            return Err(ServiceError::invalid(
                "status",
                "order.status",
                "status is `fulfilled` or `cancelled`",
            ));
        }
        let request = (id, input.clone());
        let identity = access.identity().clone();
        self.keyed(access.identity(), key, "mall_order_status", &request, move |conn, actor, now_ms| {
            let order = repo::order(conn, id)?.ok_or_else(|| ServiceError::not_found("order", id))?;
            if order.status != "placed" {
                return Ok(Decision::Refused(Refusal::new("order.closed", format!("order {id} is {}", order.status))));
            }
            let mut cancel_id = None;
            if input.status == "cancelled" {
                let coupon_ids: Vec<i64> = serde_json::from_str(&order.coupon_ids).unwrap_or_default();
                for coupon_id in &coupon_ids {
                    let coupon = repo::coupon(conn, *coupon_id)?.ok_or_else(|| ServiceError::not_found("coupon", coupon_id))?;
                    if coupon.status != "issued" {
                        return Ok(Decision::Refused(Refusal::new("order.coupon_used", format!("coupon {coupon_id} of order {id} is {}; the order cannot be cancelled", coupon.status))));
                    }
                }
                for coupon_id in &coupon_ids {
                    if !repo::cancel_coupon(conn, *coupon_id, now_ms)? {
                        conn.retry_unit();
                        return Err(ServiceError::conflict("order.changed", "a coupon of the order changed meanwhile"));
                    }
                }
                let detail = serde_json::json!({"order_id": id, "points": order.points, "cash_minor": order.cash_minor});
                let operation = ledger_repo::OperationRecord { customer_id: Some(order.customer_id), ..actor.operation("mall_cancel", None, None, Some(order.operation_id), order.points, POINTS_ASSET, None, detail, now_ms) };
                let operation_id = ledger_repo::insert_operation(conn, &operation)?;
                let given = return_points(conn, order.operation_id, operation_id, order.points, now_ms)?;
                if given != order.points {
                    return Err(ServiceError::Store(StoreError::Invariant(format!("order {id} gave back {given} of {} points", order.points))));
                }
                for transfer in ledger_repo::transfers_of_operation(conn, order.operation_id)?.iter().filter(|t| t.purpose == "mall_cash") {
                    post(conn, &NewTransfer { operation_id, debit: ledger_repo::AccountRef { id: transfer.credit_account_id, tracks_balance: false }, credit: ledger_repo::AccountRef { id: transfer.debit_account_id, tracks_balance: false }, amount_minor: transfer.amount_minor, asset: &transfer.asset, purpose: "mall_cash_refund", reverses_transfer_id: Some(transfer.id), created_at_ms: now_ms })?;
                }
                repo::return_stock(conn, order.reward_id, order.quantity)?;
                cancel_id = Some(operation_id);
            }
            if !repo::set_order_status(conn, id, "placed", &input.status, cancel_id, now_ms)? {
                conn.retry_unit();
                return Err(ServiceError::conflict("order.changed", "the order changed meanwhile"));
            }
            let after = repo::order(conn, id)?.ok_or_else(|| ServiceError::not_found("order", id))?;
            audit::append(conn, &identity, now_ms, &format!("mall_order.{}", input.status), "mall_order", id, audit::snapshot(&order_view(&order)), audit::snapshot(&order_view(&after)))?;
            Ok(Decision::Done { value: order_view(&after), operation_id: cancel_id })
        })
        .await
    }
}
