//! The loyalty engine (C3): points earned by purchases under a versioned programme, kept as
//! lots 积分批次 with their own expiry on the ledger (asset PTS), spent soonest-expiry first,
//! taken back by refunds, expired into breakage by a job; tiers 会员等级 that rise at once
//! and fall only after a review and a grace period; manual tier overrides; offline sales
//! that earn once; transfers between members and exchanges with partners; history and the
//! points liability.
//!
//! A member's points are one balance-tracking ledger account (`member:{id}:points`). The
//! lots say which points those are; every change to a lot happens in the same unit of work
//! as the transfer that changes the balance, so the two always agree (`ledger verify`
//! checks it). Points a refund could not take back under the `negative_balance` policy are
//! owed (`member:{id}:points_owed`) and paid off by the next earnings first.

use std::sync::{Arc, Mutex};

use cardcrm_domain::{
    FieldError, FieldErrors,
    loyalty::{
        EarnContext, EarnLine, Earning, FiredRule, LotBalance, POINTS_ASSET, POINTS_MAX, Programme,
        ProgrammeRules, ShortfallPolicy, TierDecision, TierStanding, TierState, plan_clawback,
        plan_consumption, proportional_share,
    },
};
use cardcrm_store::{
    Conn, StoreError,
    repo::{
        cards as card_repo, customers as customer_repo,
        ledger::{self as ledger_repo, AccountRef, NewAccount, NewTransfer, OperationRecord},
        loyalty::{self as repo, LotMove, LotRecord, MemberRecord, ProgrammeRecord, TierChangeRecord},
        organisation,
        purchases::{self as purchase_repo, PurchaseRecord},
        rewards as reward_repo,
    },
};
use jiff::{Timestamp, ToSpan, tz::TimeZone};
use serde::{Deserialize, Serialize};

use crate::{
    Services, audit,
    clock::format_ms,
    error::{ServiceError, ServiceResult},
    identity::{Access, perm},
    ledger::{
        Actor, Decision, IdempotencyKey, Outcome, Refusal, check_store, post, store_account, system_account,
    },
    view::Page,
};

/// Most lots a member's points are read from in one operation.
const LOTS_READ_MAX: i64 = 10_000;

/// Milliseconds since the epoch of a timestamp (saturating).
fn ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Calendar month number (year × 12 + month − 1) of a moment in `zone`.
pub(crate) fn month_index(at_ms: i64, zone: &TimeZone) -> i64 {
    let date = at(at_ms).to_zoned(zone.clone()).date();
    i64::from(date.year()) * 12 + i64::from(date.month()) - 1
}

/// The programme in force at `at_ms`. Parsed once per distinct rules text: every checkout
/// reads it, and the same text always parses to the same programme.
pub(crate) fn programme_at(conn: &mut Conn<'_>, at_ms: i64) -> ServiceResult<Arc<Programme>> {
    static PARSED: Mutex<Option<(String, Arc<Programme>)>> = Mutex::new(None);
    let record = repo::programme_at(conn, at_ms)?.ok_or_else(|| {
        ServiceError::Store(StoreError::Invariant("no loyalty programme is in force".into()))
    })?;
    let mut parsed = PARSED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((json, programme)) = parsed.as_ref()
        && *json == record.rules_json
    {
        return Ok(programme.clone());
    }
    let programme = Arc::new(parse_programme(&record.rules_json)?);
    *parsed = Some((record.rules_json, programme.clone()));
    Ok(programme)
}

fn parse_programme(json: &str) -> ServiceResult<Programme> {
    let rules: ProgrammeRules = serde_json::from_str(json).map_err(|error| {
        ServiceError::Store(StoreError::Invariant(format!("a stored programme does not read: {error}")))
    })?;
    Programme::parse(rules).map_err(ServiceError::Invalid)
}

/// The member's points account (balance-tracking, never negative).
pub(crate) fn points_account(
    conn: &mut Conn<'_>,
    customer_id: i64,
    now_ms: i64,
) -> ServiceResult<AccountRef> {
    member_account(conn, customer_id, "points", true, now_ms)
}

fn owed_account(conn: &mut Conn<'_>, customer_id: i64, now_ms: i64) -> ServiceResult<AccountRef> {
    member_account(conn, customer_id, "points_owed", false, now_ms)
}

fn member_account(
    conn: &mut Conn<'_>,
    customer_id: i64,
    name: &str,
    tracks: bool,
    now_ms: i64,
) -> ServiceResult<AccountRef> {
    let code = format!("member:{customer_id}:{name}");
    Ok(ledger_repo::ensure_account(
        conn,
        &NewAccount {
            code: &code,
            kind: &format!("member_{name}"),
            asset: POINTS_ASSET,
            card_id: None,
            store_id: None,
            customer_id: Some(customer_id),
            tracks_balance: tracks,
        },
        now_ms,
    )?)
}

/// Points a member owes (refunds of points already spent, under `negative_balance`).
fn owed_points(conn: &mut Conn<'_>, customer_id: i64) -> ServiceResult<i64> {
    match ledger_repo::account_ref(conn, &format!("member:{customer_id}:points_owed"))? {
        Some(account) => owed_on(conn, account),
        None => Ok(0),
    }
}

/// Points owed on the member's `points_owed` account (refunds of points already spent,
/// under `negative_balance`).
fn owed_on(conn: &mut Conn<'_>, account: AccountRef) -> ServiceResult<i64> {
    let balances = ledger_repo::balances_before(conn, &[account.id], i64::MAX)?;
    // Debit-normal: what was posted against the member less what they paid off.
    Ok(-balances.get(&account.id).copied().unwrap_or(0))
}

fn lot_balance(lot: &LotRecord) -> LotBalance {
    LotBalance {
        id: lot.id,
        remaining: lot.points_remaining,
        available_at_ms: lot.available_at_ms,
        expires_at_ms: lot.expires_at_ms,
    }
}

fn lost_race(conn: &mut Conn<'_>, what: &str) -> ServiceError {
    conn.retry_unit();
    ServiceError::Store(StoreError::Invariant(format!("{what} changed meanwhile; the operation runs again")))
}

/// The member row, made on first use on the programme's entry tier.
pub(crate) fn ensure_member(
    conn: &mut Conn<'_>,
    programme: &Programme,
    customer_id: i64,
    now_ms: i64,
    zone: &TimeZone,
) -> ServiceResult<MemberRecord> {
    if let Some(member) = repo::member(conn, customer_id)? {
        return Ok(member);
    }
    customer_repo::get(conn, customer_id)?.ok_or_else(|| ServiceError::not_found("customer", customer_id))?;
    let entry = programme
        .rules()
        .tiers
        .iter()
        .min_by_key(|tier| tier.rank)
        .map_or_else(|| "ordinary".to_owned(), |tier| tier.tier.clone());
    let review = at(now_ms)
        .to_zoned(zone.clone())
        .checked_add(programme.rules().tier_review_months.months())
        .map_or(now_ms, |zoned| ms(zoned.timestamp()));
    let member = MemberRecord {
        customer_id,
        tier: entry,
        tier_since_ms: now_ms,
        review_at_ms: review,
        grace_until_ms: None,
        override_tier: None,
        override_until_ms: None,
        override_by: None,
        override_reason: None,
        first_purchase_at_ms: None,
        referred_by: None,
        enrolled_at_ms: None,
        version: 1,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    repo::insert_member(conn, &member)?;
    Ok(member)
}

/// The tier a member holds now: an override in force, or the earned one.
fn effective_tier(member: &MemberRecord, now_ms: i64) -> &str {
    match (&member.override_tier, member.override_until_ms) {
        (Some(tier), Some(until)) if until > now_ms => tier,
        _ => &member.tier,
    }
}

/// Everything earning needs beside the basket.
#[derive(Clone)]
pub(crate) struct LoyaltyContext {
    pub(crate) zone: TimeZone,
}

impl Services {
    pub(crate) fn loyalty_context(&self) -> LoyaltyContext {
        LoyaltyContext { zone: self.default_zone().clone() }
    }
}

/// Where a purchase happens, as earning sees it: the store, and the time zone its local
/// date is read in (the store's, or the business's when there is no store).
pub(crate) struct Place {
    store_id: Option<i64>,
    zone: TimeZone,
}

impl Place {
    /// From the store the caller already read (and checked exists).
    pub(crate) fn of(store: Option<&organisation::StoreRecord>, business_zone: &TimeZone) -> Self {
        let zone = store.and_then(|store| TimeZone::get(&store.time_zone).ok());
        Self { store_id: store.map(|store| store.id), zone: zone.unwrap_or_else(|| business_zone.clone()) }
    }

    fn local_date(&self, now_ms: i64) -> jiff::civil::Date {
        at(now_ms).to_zoned(self.zone.clone()).date()
    }
}

fn start_of_local_day(date: jiff::civil::Date, conn_zone: &TimeZone) -> i64 {
    date.to_zoned(conn_zone.clone()).map_or(0, |zoned| ms(zoned.timestamp()))
}

/// What a purchase earned, as receipts and views show it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PointsEarned {
    pub points: i64,
    /// Of them, points that paid off what the member owed.
    pub owed_repaid: i64,
    /// Every rule that fired, with the points it added (negative for a cap).
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<FiredRule>,
    pub lot_id: Option<i64>,
    pub available_at: Option<String>,
    pub expires_at: Option<String>,
    /// The member's new tier when this purchase lifted them.
    pub upgraded_to: Option<String>,
    /// The referral bonus this purchase (the member's first) earned the member who referred them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<ReferralBonus>,
}

/// Points a referrer earned from a referred member's first purchase.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReferralBonus {
    pub customer_id: i64,
    pub points: i64,
    /// The referrer's own operation that credited them.
    pub operation_id: i64,
}

/// Credits the programme's referral bonus to `referrer` for the first purchase of `member`
/// (operation `purchase_operation_id`), as an operation of the referrer's own. Nothing when
/// the programme gives no referral bonus or the referrer is no longer an active customer.
#[allow(clippy::too_many_arguments)]
fn award_referral(
    conn: &mut Conn<'_>,
    programme: &Programme,
    context: &LoyaltyContext,
    referrer: i64,
    member: &MemberRecord,
    store_id: Option<i64>,
    actor_name: &str,
    purchase_operation_id: i64,
    now_ms: i64,
) -> ServiceResult<Option<ReferralBonus>> {
    let points = programme.rules().referral_bonus_points;
    if points <= 0 || !is_active_customer(conn, referrer)? {
        return Ok(None);
    }
    ensure_member(conn, programme, referrer, now_ms, &context.zone)?;
    let detail = serde_json::json!({
        "referred_customer_id": member.customer_id, "purchase_operation_id": purchase_operation_id,
    });
    let operation = OperationRecord {
        id: 0,
        kind: "referral_bonus".into(),
        card_id: None,
        customer_id: Some(referrer),
        store_id,
        reverses_operation_id: None,
        amount_minor: points,
        asset: POINTS_ASSET.into(),
        payment_method: None,
        detail_json: detail.to_string(),
        actor_kind: "system".into(),
        actor_id: None,
        actor_name: format!("referral of {} ({actor_name})", member.customer_id),
        source_ip: None,
        request_id: None,
        occurred_at_ms: now_ms,
    };
    let operation_id = ledger_repo::insert_operation(conn, &operation)?;
    let issued = store_account(conn, store_id, "points_issued", POINTS_ASSET, now_ms)?;
    credit_points(
        conn,
        programme,
        referrer,
        points,
        issued,
        operation_id,
        "referral",
        None,
        now_ms,
        &context.zone,
    )?;
    repo::add_activity(conn, referrer, month_index(now_ms, &context.zone), 0, 0, points)?;
    Ok(Some(ReferralBonus { customer_id: referrer, points, operation_id }))
}

/// Most referral bonuses read when looking for the one a purchase paid.
const REFERRAL_BONUSES_READ_MAX: i64 = 100;

/// Takes back the referral bonus that `purchase` (a referred member's first purchase) paid,
/// once that purchase is refunded whole: under an operation of the referrer's reversing the
/// bonus, from the referrer's lots (the bonus's own lot first), with the programme's refund
/// policy for points the referrer already spent. The bonus is not paid again: the member's
/// first purchase has happened. Returns the reversal when there was a bonus to take back.
pub(crate) fn take_back_referral(
    conn: &mut Conn<'_>,
    actor: &Actor,
    purchase: &OperationRecord,
    refund_id: i64,
    context: &LoyaltyContext,
    now_ms: i64,
) -> ServiceResult<Option<ReferralReversal>> {
    let Some(customer_id) = purchase.customer_id else { return Ok(None) };
    let holder = points_holder(conn, customer_id)?;
    let Some(referrer) = repo::member(conn, holder)?.and_then(|member| member.referred_by) else {
        return Ok(None);
    };
    // The bonus credited the referrer's accounts of the time (before any merge of theirs).
    let accounts: Vec<i64> = ledger_repo::accounts_of_customer(conn, referrer)?
        .into_iter()
        .map(|(_, account)| account.id)
        .collect();
    let bonus = ledger_repo::operations_crediting(
        conn,
        "referral_bonus",
        &accounts,
        purchase.id,
        REFERRAL_BONUSES_READ_MAX,
    )?
    .into_iter()
    .find(|operation| {
        serde_json::from_str::<serde_json::Value>(&operation.detail_json)
            .ok()
            .and_then(|detail| detail.get("purchase_operation_id").and_then(serde_json::Value::as_i64))
            == Some(purchase.id)
    });
    let Some(bonus) = bonus else { return Ok(None) };
    if !ledger_repo::reversals_of(conn, bonus.id)?.is_empty() {
        return Ok(None);
    }
    let Some(plan) = plan_points_reversal(conn, &bonus, bonus.amount_minor, bonus.amount_minor, now_ms)?
    else {
        return Ok(None);
    };
    let reversal = member_operation(
        actor,
        "referral_bonus_reversal",
        plan.customer_id,
        bonus.store_id,
        Some(bonus.id),
        bonus.amount_minor,
        POINTS_ASSET,
        serde_json::json!({"points": plan.reversal, "refund_operation_id": refund_id}),
        now_ms,
    );
    let operation_id = ledger_repo::insert_operation(conn, &reversal)?;
    apply_points_reversal(conn, &bonus, operation_id, &plan, context, now_ms)?;
    Ok(Some(ReferralReversal { customer_id: plan.customer_id, operation_id, points: plan.reversal }))
}

/// A referral bonus taken back because the purchase that paid it was refunded whole.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReferralReversal {
    /// The referrer (or whoever holds their points after a merge).
    pub customer_id: i64,
    /// The referrer's operation reversing the bonus.
    pub operation_id: i64,
    pub points: PointsReversal,
}

/// A points adjustment by hand, or an opening balance imported from another system.
pub(crate) struct Adjustment<'a> {
    pub(crate) customer_id: i64,
    /// Whose issued-points account pays or takes the points (none: the business's).
    pub(crate) store_id: Option<i64>,
    /// Positive: a credit (a new lot); negative: a debit of the soonest-expiring points
    /// (the caller has checked they are there).
    pub(crate) points: i64,
    /// A credit's expiry; the programme's when none.
    pub(crate) expires_at_ms: Option<i64>,
    pub(crate) reason: &'a str,
}

/// Writes an adjustment under an operation of its own (kind `points_adjustment`), the member
/// made first if need be. Not counted toward tiers. Returns the operation.
pub(crate) fn adjust(
    conn: &mut Conn<'_>,
    actor: &Actor,
    programme: &Programme,
    adjustment: &Adjustment<'_>,
    now_ms: i64,
    zone: &TimeZone,
) -> ServiceResult<i64> {
    let Adjustment { customer_id, store_id, points, expires_at_ms, reason } = *adjustment;
    assert!(points != 0, "an adjustment moves points");
    ensure_member(conn, programme, customer_id, now_ms, zone)?;
    let detail = serde_json::json!({"points": points, "reason": reason});
    let operation = member_operation(
        actor,
        "points_adjustment",
        customer_id,
        store_id,
        None,
        points.abs(),
        POINTS_ASSET,
        detail,
        now_ms,
    );
    let operation_id = ledger_repo::insert_operation(conn, &operation)?;
    let issued = store_account(conn, store_id, "points_issued", POINTS_ASSET, now_ms)?;
    if points > 0 {
        credit_points(
            conn,
            programme,
            customer_id,
            points,
            issued,
            operation_id,
            "adjustment",
            expires_at_ms.map(Some),
            now_ms,
            zone,
        )?;
    } else {
        spend_points(conn, customer_id, -points, issued, operation_id, "adjustment", now_ms)?;
    }
    Ok(operation_id)
}

/// What earning needs to know about the member and the moment; only what the programme's
/// rules use is read (every checkout of a member comes through here). `tier_read` is a tier
/// the caller has already read (a checkout reads the card's): used when it is the member's.
fn earn_context(
    conn: &mut Conn<'_>,
    programme: &Programme,
    member: &MemberRecord,
    place: &Place,
    tier_read: Option<&card_repo::TierRecord>,
    now_ms: i64,
    zone: &TimeZone,
) -> ServiceResult<EarnContext> {
    let rules = programme.rules();
    let tier_multiplier_pct = if rules.tier_multiplier {
        let code = effective_tier(member, now_ms);
        match tier_read {
            Some(tier) if tier.code == code => tier.points_multiplier_pct,
            _ => card_repo::tier(conn, code)?.map_or(100, |tier| tier.points_multiplier_pct),
        }
    } else {
        100
    };
    let birthday = match rules.birthday {
        Some(_) => customer_repo::birthday(conn, member.customer_id)?
            .and_then(|raw| raw.parse::<jiff::civil::Date>().ok())
            .map(|date| (date.month(), date.day())),
        None => None,
    };
    let date = place.local_date(now_ms);
    let first_purchase = rules.first_purchase_bonus_points > 0
        && member.first_purchase_at_ms.is_none()
        && !repo::has_purchase_lot(conn, member.customer_id)?;
    let earned_today_points = match rules.member_daily_cap_points {
        Some(_) => repo::purchase_points_since(conn, member.customer_id, start_of_local_day(date, zone))?,
        None => 0,
    };
    Ok(EarnContext {
        tier_multiplier_pct,
        store_id: place.store_id,
        local_date: date,
        birthday,
        first_purchase,
        earned_today_points,
    })
}

/// Credits `points` to a member as a new lot (after paying off what they owe), under
/// `operation_id`, funded by `from` (a store's or partner's account). Returns (lot id, owed
/// repaid).
#[allow(clippy::too_many_arguments)]
pub(crate) fn credit_points(
    conn: &mut Conn<'_>,
    programme: &Programme,
    customer_id: i64,
    points: i64,
    from: AccountRef,
    operation_id: i64,
    source: &str,
    expires_at_ms: Option<Option<i64>>,
    now_ms: i64,
    zone: &TimeZone,
) -> ServiceResult<(Option<LotRecord>, i64)> {
    // The member's accounts in one look-up: the points account, and the owed one if any.
    let accounts = ledger_repo::accounts_of_customer(conn, customer_id)?;
    let find = |name: &str| {
        let code = format!("member:{customer_id}:{name}");
        accounts.iter().find(|(found, _)| *found == code).map(|(_, account)| *account)
    };
    let owed_account = find("points_owed");
    let owed = match owed_account {
        Some(account) => owed_on(conn, account)?,
        None => 0,
    };
    let repaid = owed.min(points).max(0);
    if let Some(owed_account) = owed_account
        && repaid > 0
    {
        post(
            conn,
            &NewTransfer {
                operation_id,
                debit: from,
                credit: owed_account,
                amount_minor: repaid,
                asset: POINTS_ASSET,
                purpose: "points_owed_repaid",
                reverses_transfer_id: None,
                created_at_ms: now_ms,
            },
        )?;
    }
    let rest = points - repaid;
    if rest <= 0 {
        return Ok((None, repaid));
    }
    let account = match find("points") {
        Some(account) => account,
        None => points_account(conn, customer_id, now_ms)?,
    };
    post(
        conn,
        &NewTransfer {
            operation_id,
            debit: from,
            credit: account,
            amount_minor: rest,
            asset: POINTS_ASSET,
            purpose: &format!("points_{source}"),
            reverses_transfer_id: None,
            created_at_ms: now_ms,
        },
    )?;
    // Points that a return could undo wait out the return window: a purchase's, and the
    // referral bonus a referred member's first purchase brings.
    let pending_ms = if matches!(source, "purchase" | "referral") {
        programme.rules().pending_days * 86_400_000
    } else {
        0
    };
    let mut lot = LotRecord {
        id: 0,
        customer_id,
        account_id: account.id,
        operation_id,
        source: source.to_owned(),
        points_earned: rest,
        points_remaining: rest,
        points_expired: 0,
        earned_at_ms: now_ms,
        available_at_ms: now_ms + pending_ms,
        expires_at_ms: expires_at_ms.unwrap_or_else(|| programme.expires_at(at(now_ms), zone).map(ms)),
    };
    lot.id = repo::insert_lot(conn, &lot)?;
    Ok((Some(lot), repaid))
}

/// The customer who holds a customer's points now: the customer, or the one they were
/// merged into (followed through successive merges).
pub(crate) fn points_holder(conn: &mut Conn<'_>, customer_id: i64) -> ServiceResult<i64> {
    let mut current = customer_id;
    // A merge chain is as long as the merges made one after another; bounded regardless.
    for _ in 0..16 {
        match customer_repo::get(conn, current)?.and_then(|customer| customer.merged_into_id) {
            Some(next) if next != current => current = next,
            _ => return Ok(current),
        }
    }
    Ok(current)
}

/// Takes a refund out of the tier activity of whoever holds the customer's points now: the
/// amount from this month's spend, and the visit too when the purchase is refunded whole.
pub(crate) fn take_back_activity(
    conn: &mut Conn<'_>,
    customer_id: i64,
    refunded_minor: i64,
    whole: bool,
    now_ms: i64,
    zone: &TimeZone,
) -> ServiceResult<()> {
    let holder = points_holder(conn, customer_id)?;
    let visits = if whole { -1 } else { 0 };
    repo::add_activity(conn, holder, month_index(now_ms, zone), -refunded_minor, visits, 0)?;
    Ok(())
}

/// What a customer merge did to the loyalty programme.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MergedLoyalty {
    /// The operation that moved points (and points owed) to the survivor.
    pub operation_id: Option<i64>,
    pub points: i64,
    pub lots: i64,
    pub points_owed: i64,
    pub activity_months: i64,
    pub coupons: i64,
    pub mall_orders: i64,
    /// The survivor's tier when the merge changed it (the higher of the two, or what the
    /// combined activity qualifies for).
    pub tier: Option<String>,
}

/// Moves everything the loyalty programme holds for `merged_id` onto `survivor_id`, inside
/// the merge's unit of work: each lot with its points, expiry, source and the operation that
/// made it (so a later refund of that purchase finds it); points owed; monthly activity; the
/// higher of the two tiers; enrolment and first-purchase dates; coupons, mall orders,
/// events and referrals. Then the survivor's tier is reviewed on the combined activity.
pub(crate) fn merge_loyalty(
    conn: &mut Conn<'_>,
    actor: &Actor,
    merged_id: i64,
    survivor_id: i64,
    now_ms: i64,
    zone: &TimeZone,
) -> ServiceResult<MergedLoyalty> {
    let programme = programme_at(conn, now_ms)?;
    let mut outcome = MergedLoyalty::default();
    let accounts = ledger_repo::accounts_of_customer(conn, merged_id)?;
    let find = |name: &str| {
        let code = format!("member:{merged_id}:{name}");
        accounts.iter().find(|(found, _)| *found == code).map(|(_, account)| *account)
    };
    let owed = match find("points_owed") {
        Some(account) => owed_on(conn, account)?,
        None => 0,
    };
    let mut lots = repo::lots_of(conn, merged_id, false, LOTS_READ_MAX)?;
    let merged_member = repo::member(conn, merged_id)?;
    if merged_member.is_some() || !lots.is_empty() || owed > 0 {
        ensure_member(conn, &programme, survivor_id, now_ms, zone)?;
    }
    let points_total = repo::points_remaining_of(conn, merged_id)?;
    let mut operation_id = None;
    let mut operation = |conn: &mut Conn<'_>| -> ServiceResult<i64> {
        if let Some(id) = operation_id {
            return Ok(id);
        }
        let detail =
            serde_json::json!({"merged_customer_id": merged_id, "points": points_total, "points_owed": owed});
        let record = member_operation(
            actor,
            "points_merge",
            survivor_id,
            None,
            None,
            points_total,
            POINTS_ASSET,
            detail,
            now_ms,
        );
        let id = ledger_repo::insert_operation(conn, &record)?;
        operation_id = Some(id);
        Ok(id)
    };
    // Lots, a read's worth at a time (each read finds the next, since the moved ones are empty).
    while !lots.is_empty() {
        let from = find("points").ok_or_else(|| {
            ServiceError::Store(StoreError::Invariant(format!(
                "customer {merged_id} has lots and no points account"
            )))
        })?;
        let to = points_account(conn, survivor_id, now_ms)?;
        let id = operation(conn)?;
        let points: i64 = lots.iter().map(|lot| lot.points_remaining).sum();
        post(
            conn,
            &NewTransfer {
                operation_id: id,
                debit: from,
                credit: to,
                amount_minor: points,
                asset: POINTS_ASSET,
                purpose: "points_merge",
                reverses_transfer_id: None,
                created_at_ms: now_ms,
            },
        )?;
        for lot in &lots {
            let moved = lot.points_remaining;
            if !repo::take_from_lot(conn, lot.id, moved)? {
                return Err(lost_race(conn, "a points lot"));
            }
            repo::insert_lot_move(
                conn,
                &LotMove { lot_id: lot.id, operation_id: id, points: -moved, kind: "merge_out".into() },
                now_ms,
            )?;
            repo::insert_lot(
                conn,
                &LotRecord {
                    id: 0,
                    customer_id: survivor_id,
                    account_id: to.id,
                    points_earned: moved,
                    points_remaining: moved,
                    points_expired: 0,
                    ..lot.clone()
                },
            )?;
        }
        outcome.points += points;
        outcome.lots += lots.len() as i64;
        lots = repo::lots_of(conn, merged_id, false, LOTS_READ_MAX)?;
    }
    if owed > 0 {
        let from_debt = find("points_owed").ok_or_else(|| missing_account(merged_id))?;
        let to_debt = owed_account(conn, survivor_id, now_ms)?;
        let id = operation(conn)?;
        // The debt moves: the survivor's owed account is charged, the merged one cleared.
        post(
            conn,
            &NewTransfer {
                operation_id: id,
                debit: to_debt,
                credit: from_debt,
                amount_minor: owed,
                asset: POINTS_ASSET,
                purpose: "points_owed_merge",
                reverses_transfer_id: None,
                created_at_ms: now_ms,
            },
        )?;
        outcome.points_owed = owed;
    }
    if outcome.points != points_total {
        return Err(ServiceError::Store(StoreError::Invariant(format!(
            "the merge moved {} points of {points_total}",
            outcome.points
        ))));
    }
    outcome.operation_id = operation_id;
    outcome.activity_months = repo::move_activity(conn, merged_id, survivor_id)? as i64;
    if let Some(old) = &merged_member
        && let Some(mut survivor) = repo::member(conn, survivor_id)?
    {
        let expected = survivor.version;
        let earliest = |a: Option<i64>, b: Option<i64>| a.into_iter().chain(b).min();
        survivor.first_purchase_at_ms = earliest(survivor.first_purchase_at_ms, old.first_purchase_at_ms);
        survivor.enrolled_at_ms = earliest(survivor.enrolled_at_ms, old.enrolled_at_ms);
        if survivor.referred_by.is_none() {
            survivor.referred_by = old.referred_by.filter(|referrer| *referrer != survivor_id);
        }
        let rank = |tier: &str| programme.tier(tier).map_or(0, |tier| tier.rank);
        let before = survivor.tier.clone();
        if rank(&old.tier) > rank(&survivor.tier) {
            survivor.tier.clone_from(&old.tier);
            survivor.tier_since_ms = old.tier_since_ms;
            survivor.review_at_ms = old.review_at_ms;
            survivor.grace_until_ms = old.grace_until_ms;
        }
        survivor.version += 1;
        survivor.updated_at_ms = now_ms;
        let tier_changed = survivor.tier != before;
        let card_tier = tier_changed.then(|| effective_tier(&survivor, now_ms).to_owned());
        let review = repo::MemberReview {
            expected_version: expected,
            dates_only: false,
            tier_changed,
            history: tier_changed.then(|| TierChangeRecord {
                id: 0,
                customer_id: survivor_id,
                from_tier: Some(before.clone()),
                to_tier: survivor.tier.clone(),
                reason: "merge".into(),
                detail_json: serde_json::json!({"merged_customer_id": merged_id}).to_string(),
                actor: actor.name().to_owned(),
                created_at_ms: now_ms,
            }),
            event: card_tier.as_ref().map(|tier| repo::EventRecord {
                id: 0,
                kind: "tier_changed".into(),
                customer_id: survivor_id,
                due_at_ms: now_ms,
                detail_json: serde_json::json!({"from": before, "to": tier, "reason": "merge"}).to_string(),
                created_at_ms: now_ms,
            }),
            card_tier,
            member: survivor,
        };
        if !repo::write_member_reviews(conn, std::slice::from_ref(&review))?.is_empty() {
            return Err(lost_race(conn, "the member"));
        }
        if tier_changed {
            outcome.tier = Some(review.member.tier.clone());
        }
    }
    let moved = repo::reassign_loyalty(conn, merged_id, survivor_id)?;
    outcome.coupons = moved.coupons as i64;
    outcome.mall_orders = moved.mall_orders as i64;
    if let Some(member) = repo::member(conn, survivor_id)?
        && let Some(tier) = review_member(conn, &programme, member, now_ms, zone, actor.name(), true)?
    {
        outcome.tier = Some(tier);
    }
    Ok(outcome)
}

fn missing_account(customer_id: i64) -> ServiceError {
    ServiceError::Store(StoreError::Invariant(format!("customer {customer_id} lost a points account")))
}

/// What a purchase will earn, worked out before its operation is written (the operation
/// records it).
pub(crate) struct PreparedEarning {
    programme: Arc<Programme>,
    member: MemberRecord,
    customer_id: i64,
    store_id: Option<i64>,
    pub(crate) earning: Earning,
}

/// Works out what `lines` earn the member at `place`; `tier_read` as for [`earn_context`].
pub(crate) fn prepare_earning(
    conn: &mut Conn<'_>,
    context: &LoyaltyContext,
    customer_id: i64,
    place: &Place,
    tier_read: Option<&card_repo::TierRecord>,
    lines: &[EarnLine],
    now_ms: i64,
) -> ServiceResult<PreparedEarning> {
    let programme = programme_at(conn, now_ms)?;
    let member = ensure_member(conn, &programme, customer_id, now_ms, &context.zone)?;
    let member_context = earn_context(conn, &programme, &member, place, tier_read, now_ms, &context.zone)?;
    let earning = programme.earn(lines, &member_context);
    Ok(PreparedEarning { programme, member, customer_id, store_id: place.store_id, earning })
}

/// Earns the prepared points for a purchase the member paid `paid_minor` for, inside the
/// caller's unit of work: the lot, the transfers, the month's activity, and an upgrade when
/// the member now qualifies for a higher tier.
pub(crate) fn apply_earning(
    conn: &mut Conn<'_>,
    context: &LoyaltyContext,
    prepared: PreparedEarning,
    actor_name: &str,
    paid_minor: i64,
    operation_id: i64,
    now_ms: i64,
) -> ServiceResult<PointsEarned> {
    let PreparedEarning { programme, mut member, customer_id, store_id, earning } = prepared;
    let points = earning.points;
    let mut earned = PointsEarned { points, rules: earning.fired, ..PointsEarned::default() };
    if points > 0 {
        let issued = store_account(conn, store_id, "points_issued", POINTS_ASSET, now_ms)?;
        let (lot, repaid) = credit_points(
            conn,
            &programme,
            customer_id,
            points,
            issued,
            operation_id,
            "purchase",
            None,
            now_ms,
            &context.zone,
        )?;
        earned.owed_repaid = repaid;
        if let Some(lot) = lot {
            earned.lot_id = Some(lot.id);
            earned.available_at = Some(format_ms(lot.available_at_ms));
            earned.expires_at = lot.expires_at_ms.map(format_ms);
        }
    }
    repo::add_activity(conn, customer_id, month_index(now_ms, &context.zone), paid_minor, 1, points)?;
    if member.first_purchase_at_ms.is_none() {
        if let Some(referrer) = member.referred_by {
            earned.referral = award_referral(
                conn,
                &programme,
                context,
                referrer,
                &member,
                store_id,
                actor_name,
                operation_id,
                now_ms,
            )?;
        }
        let version = member.version;
        member.first_purchase_at_ms = Some(now_ms);
        member.version += 1;
        member.updated_at_ms = now_ms;
        if !repo::update_member(conn, &member, version)? {
            return Err(lost_race(conn, "the member"));
        }
    }
    earned.upgraded_to = review_member(conn, &programme, member, now_ms, &context.zone, actor_name, true)?;
    Ok(earned)
}

/// Applies the tier rules to one member; with `upgrade_only` (after a purchase) only a
/// rise is applied. Returns the new tier when it changed.
fn review_member(
    conn: &mut Conn<'_>,
    programme: &Programme,
    member: MemberRecord,
    now_ms: i64,
    zone: &TimeZone,
    actor: &str,
    upgrade_only: bool,
) -> ServiceResult<Option<String>> {
    let from_month = month_index(now_ms, zone) - programme.rules().tier_window_months + 1;
    let standing = repo::standing(conn, member.customer_id, from_month)?;
    apply_review(conn, programme, member, standing, now_ms, zone, actor, upgrade_only)
}

#[allow(clippy::too_many_arguments)]
fn apply_review(
    conn: &mut Conn<'_>,
    programme: &Programme,
    member: MemberRecord,
    standing: repo::Standing,
    now_ms: i64,
    zone: &TimeZone,
    actor: &str,
    upgrade_only: bool,
) -> ServiceResult<Option<String>> {
    let Some(review) = decide_review(programme, member, standing, now_ms, zone, actor, upgrade_only) else {
        return Ok(None);
    };
    let changed = review.changed_tier();
    if !repo::write_member_reviews(conn, std::slice::from_ref(&review))?.is_empty() {
        return Err(lost_race(conn, "the member"));
    }
    Ok(changed)
}

/// What the tier rules make of a member read earlier: the rows to write, or nothing when
/// the review changes nothing. No IO: the job decides a page at once and writes it in bulk.
#[allow(clippy::too_many_arguments)]
fn decide_review(
    programme: &Programme,
    mut member: MemberRecord,
    standing: repo::Standing,
    now_ms: i64,
    zone: &TimeZone,
    actor: &str,
    upgrade_only: bool,
) -> Option<repo::MemberReview> {
    let standing =
        TierStanding { spend_minor: standing.spend_minor, visits: standing.visits, points: standing.points };
    let qualified = programme.qualified_tier(standing)?;
    let override_active = member.override_until_ms.is_some_and(|until| until > now_ms);
    let override_ended = member.override_tier.is_some() && !override_active;
    let expected_version = member.version;
    let before = member.tier.clone();
    let mut changed_tier = None;
    let mut reason = "";
    if override_ended && !upgrade_only {
        member.override_tier = None;
        member.override_until_ms = None;
        member.override_by = None;
        member.override_reason = None;
        reason = "override_end";
    }
    let rank = programme.tier(&member.tier).map_or(0, |tier| tier.rank);
    let state =
        TierState { rank, review_at: at(member.review_at_ms), grace_until: member.grace_until_ms.map(at) };
    match programme.review_tier(&state, qualified, at(now_ms), zone) {
        TierDecision::Upgrade { tier, review_at } => {
            member.tier = tier.clone();
            member.tier_since_ms = now_ms;
            member.review_at_ms = ms(review_at);
            member.grace_until_ms = None;
            changed_tier = Some(tier);
            reason = "upgrade";
        }
        _ if upgrade_only => return None,
        TierDecision::Keep => {}
        TierDecision::Renew { review_at } => {
            member.review_at_ms = ms(review_at);
            member.grace_until_ms = None;
            if reason.is_empty() {
                reason = "renew";
            }
        }
        TierDecision::StartGrace { until } => {
            member.grace_until_ms = Some(ms(until));
            reason = "grace";
        }
        TierDecision::Downgrade { tier, review_at } => {
            member.tier = tier.clone();
            member.tier_since_ms = now_ms;
            member.review_at_ms = ms(review_at);
            member.grace_until_ms = None;
            changed_tier = Some(tier);
            reason = "downgrade";
        }
    }
    if reason.is_empty() {
        return None;
    }
    member.version += 1;
    member.updated_at_ms = now_ms;
    let history = (reason != "renew").then(|| TierChangeRecord {
        id: 0,
        customer_id: member.customer_id,
        from_tier: Some(before.clone()),
        to_tier: member.tier.clone(),
        reason: reason.to_owned(),
        detail_json: serde_json::json!({
            "spend_minor": standing.spend_minor, "visits": standing.visits, "points": standing.points,
            "review_at": format_ms(member.review_at_ms), "grace_until": member.grace_until_ms.map(format_ms),
        })
        .to_string(),
        actor: actor.to_owned(),
        created_at_ms: now_ms,
    });
    let announced = changed_tier.is_some() || reason == "override_end";
    let card_tier = announced.then(|| effective_tier(&member, now_ms).to_owned());
    let event = card_tier.as_ref().map(|tier| repo::EventRecord {
        id: 0,
        kind: "tier_changed".into(),
        customer_id: member.customer_id,
        due_at_ms: now_ms,
        detail_json: serde_json::json!({"from": before, "to": tier, "reason": reason}).to_string(),
        created_at_ms: now_ms,
    });
    Some(repo::MemberReview {
        // A renewal or the start of a grace period moves only the review dates: the narrow
        // update skips the tier columns' reference checks (most rows of an annual review).
        dates_only: changed_tier.is_none() && !override_ended,
        tier_changed: changed_tier.is_some(),
        member,
        expected_version,
        history,
        card_tier,
        event,
    })
}

/// Spends `points` of a member, soonest-expiring lots first, to `to` under `operation_id`.
/// Callers check [`refuse_unless_spendable`] before their first write, so too few points
/// here means a concurrent change: the unit runs again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spend_points(
    conn: &mut Conn<'_>,
    customer_id: i64,
    points: i64,
    to: AccountRef,
    operation_id: i64,
    purpose: &str,
    now_ms: i64,
) -> ServiceResult<Vec<(i64, i64)>> {
    let lots: Vec<LotBalance> =
        repo::lots_of(conn, customer_id, false, LOTS_READ_MAX)?.iter().map(lot_balance).collect();
    let Ok(plan) = plan_consumption(&lots, points, now_ms) else {
        return Err(lost_race(conn, "the member's points"));
    };
    for (lot_id, take) in &plan {
        if !repo::take_from_lot(conn, *lot_id, *take)? {
            return Err(lost_race(conn, "a points lot"));
        }
        repo::insert_lot_move(
            conn,
            &LotMove { lot_id: *lot_id, operation_id, points: -take, kind: purpose.to_owned() },
            now_ms,
        )?;
    }
    let account = points_account(conn, customer_id, now_ms)?;
    post(
        conn,
        &NewTransfer {
            operation_id,
            debit: account,
            credit: to,
            amount_minor: points,
            asset: POINTS_ASSET,
            purpose: &format!("points_{purpose}"),
            reverses_transfer_id: None,
            created_at_ms: now_ms,
        },
    )?;
    Ok(plan)
}

/// Points a member can spend now (available, unexpired lots).
fn spendable_points(conn: &mut Conn<'_>, customer_id: i64, now_ms: i64) -> ServiceResult<i64> {
    Ok(repo::lots_of(conn, customer_id, false, LOTS_READ_MAX)?
        .iter()
        .filter(|lot| lot_balance(lot).spendable(now_ms))
        .map(|lot| lot.points_remaining)
        .sum())
}

/// The refusal for a member who cannot spend `points` now; checked before a unit's first
/// write so that a refusal writes nothing but its key.
pub(crate) fn refuse_unless_spendable(
    conn: &mut Conn<'_>,
    customer_id: i64,
    points: i64,
    now_ms: i64,
) -> ServiceResult<Option<Refusal>> {
    let spendable = spendable_points(conn, customer_id, now_ms)?;
    Ok((spendable < points).then(|| {
        Refusal::new(
            "points.insufficient",
            format!("member {customer_id} has {spendable} spendable points, fewer than {points}"),
        )
    }))
}

/// Gives back `points` of what `original` took from a member's lots (a refund of a
/// checkout that used points, a cancelled mall order): to the lots they came from, latest
/// expiry first, keeping each lot's expiry, with transfers reversing the original's.
pub(crate) fn return_points(
    conn: &mut Conn<'_>,
    original_id: i64,
    reversal_id: i64,
    points: i64,
    now_ms: i64,
) -> ServiceResult<i64> {
    if points <= 0 {
        return Ok(0);
    }
    let taken = repo::lot_moves_of_operation(conn, original_id)?;
    let mut returned_before: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    for reversal in ledger_repo::reversals_of(conn, original_id)? {
        for lot_move in repo::lot_moves_of_operation(conn, reversal.id)? {
            if matches!(lot_move.kind.as_str(), "return" | "return_to_survivor") {
                *returned_before.entry(lot_move.lot_id).or_default() += lot_move.points;
            }
        }
    }
    let mut lots: Vec<(LotRecord, i64)> = Vec::new();
    for lot_move in taken.iter().filter(|lot_move| lot_move.points < 0) {
        let open = -lot_move.points - returned_before.get(&lot_move.lot_id).copied().unwrap_or(0);
        if open > 0 {
            let lot = repo::lot(conn, lot_move.lot_id)?
                .ok_or_else(|| ServiceError::not_found("points lot", lot_move.lot_id))?;
            lots.push((lot, open));
        }
    }
    lots.sort_by_key(|(lot, _)| std::cmp::Reverse((lot.expires_at_ms.unwrap_or(i64::MAX), lot.id)));
    // Points taken before the member was merged into another go to the survivor, as lots like
    // the ones they came from (same expiry and origin): the merged member's lots are closed.
    let taken_from = lots.first().map(|(lot, _)| lot.customer_id);
    let survivor = match taken_from {
        Some(customer) => Some(points_holder(conn, customer)?).filter(|holder| *holder != customer),
        None => None,
    };
    let survivor_account = match survivor {
        Some(holder) => Some(points_account(conn, holder, now_ms)?),
        None => None,
    };
    let mut left = points;
    for (lot, open) in &lots {
        let give = left.min(*open);
        if give == 0 {
            break;
        }
        let kind = match (survivor, survivor_account) {
            (Some(holder), Some(account)) => {
                repo::insert_lot(
                    conn,
                    &LotRecord {
                        id: 0,
                        customer_id: holder,
                        account_id: account.id,
                        points_earned: give,
                        points_remaining: give,
                        points_expired: 0,
                        ..lot.clone()
                    },
                )?;
                "return_to_survivor"
            }
            _ => {
                if !repo::return_to_lot(conn, lot.id, give)? {
                    return Err(ServiceError::Store(StoreError::Invariant(format!(
                        "points lot {} cannot take {give} back",
                        lot.id
                    ))));
                }
                "return"
            }
        };
        // Recorded against the lot the points came from, so later reversals count them.
        repo::insert_lot_move(
            conn,
            &LotMove { lot_id: lot.id, operation_id: reversal_id, points: give, kind: kind.into() },
            now_ms,
        )?;
        left -= give;
    }
    let given = points - left;
    // The ledger side: reverse the original's points-out transfers by the same amount.
    let mut to_reverse = given;
    for transfer in ledger_repo::transfers_of_operation(conn, original_id)? {
        if to_reverse == 0 {
            break;
        }
        if transfer.asset != POINTS_ASSET
            || !matches!(
                transfer.purpose.as_str(),
                "points_redeem" | "points_mall" | "points_transfer_out" | "points_partner_out"
            )
        {
            continue;
        }
        let amount = to_reverse.min(transfer.amount_minor);
        post(
            conn,
            &NewTransfer {
                operation_id: reversal_id,
                debit: AccountRef { id: transfer.credit_account_id, tracks_balance: false },
                credit: survivor_account
                    .unwrap_or(AccountRef { id: transfer.debit_account_id, tracks_balance: true }),
                amount_minor: amount,
                asset: POINTS_ASSET,
                purpose: "points_return",
                reverses_transfer_id: Some(transfer.id),
                created_at_ms: now_ms,
            },
        )?;
        to_reverse -= amount;
    }
    debug_assert_eq!(to_reverse, 0);
    Ok(given)
}

/// What a refund did to points.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PointsReversal {
    /// Earned points taken back from the member's lots.
    pub clawed_back: i64,
    /// Earned points the member had already spent: owed (negative_balance) or written off
    /// (deduct_remaining).
    pub shortfall: i64,
    pub shortfall_owed: bool,
    /// Points the purchase paid with, given back to their lots.
    pub returned: i64,
}

/// What a refund will do to points, worked out before the refund's operation is written
/// (the operation records it, and later refunds read it).
pub(crate) struct PointsPlan {
    customer_id: i64,
    clawback: Vec<(i64, i64)>,
    origin_earn_transfer: Option<(i64, i64, i64)>,
    pub(crate) reversal: PointsReversal,
}

/// Plans taking back the points `original` earned and giving back the points it used, in
/// proportion to how much of it is refunded (`refunded_total_minor` of `paid_minor`, this
/// refund included).
pub(crate) fn plan_points_reversal(
    conn: &mut Conn<'_>,
    original: &OperationRecord,
    paid_minor: i64,
    refunded_total_minor: i64,
    now_ms: i64,
) -> ServiceResult<Option<PointsPlan>> {
    let Some(customer_id) = original.customer_id else { return Ok(None) };
    // A purchase made before a merge is taken back from whoever holds the points now.
    let customer_id = points_holder(conn, customer_id)?;
    let transfers = ledger_repo::transfers_of_operation(conn, original.id)?;
    let sum = |purposes: &[&str]| -> i64 {
        transfers
            .iter()
            .filter(|t| t.asset == POINTS_ASSET && purposes.contains(&t.purpose.as_str()))
            .map(|t| t.amount_minor)
            .sum()
    };
    // A purchase's earning, or a referral bonus (its own operation, reversed when the
    // purchase that paid it is refunded whole).
    let earned = sum(&["points_purchase", "points_referral", "points_owed_repaid"]);
    let used = sum(&["points_redeem"]);
    if earned == 0 && used == 0 {
        return Ok(None);
    }
    let mut clawed_before = 0;
    let mut returned_before = 0;
    for reversal in ledger_repo::reversals_of(conn, original.id)? {
        let detail: serde_json::Value = serde_json::from_str(&reversal.detail_json).unwrap_or_default();
        let points = detail.get("points").cloned().unwrap_or_default();
        let get = |name: &str| points.get(name).and_then(serde_json::Value::as_i64).unwrap_or(0);
        clawed_before += get("clawed_back") + get("shortfall");
        returned_before += get("returned");
    }
    let claw = proportional_share(earned, paid_minor, refunded_total_minor, clawed_before);
    let give = proportional_share(used, paid_minor, refunded_total_minor, returned_before);
    let mut plan = PointsPlan {
        customer_id,
        clawback: Vec::new(),
        origin_earn_transfer: None,
        reversal: PointsReversal { returned: give, ..PointsReversal::default() },
    };
    if claw > 0 {
        let programme = programme_at(conn, now_ms)?;
        let lots: Vec<LotBalance> =
            repo::lots_of(conn, customer_id, false, LOTS_READ_MAX)?.iter().map(lot_balance).collect();
        let origin = repo::lots_of_operation(conn, customer_id, original.id)?.first().map(|lot| lot.id);
        let (clawback, short) = plan_clawback(&lots, origin, claw, now_ms);
        plan.reversal.clawed_back = claw - short;
        plan.reversal.shortfall = short;
        plan.reversal.shortfall_owed =
            short > 0 && programme.rules().refund_shortfall == ShortfallPolicy::NegativeBalance;
        plan.clawback = clawback;
        plan.origin_earn_transfer = transfers
            .iter()
            .find(|t| matches!(t.purpose.as_str(), "points_purchase" | "points_referral"))
            .map(|t| (t.id, t.credit_account_id, t.amount_minor));
    }
    Ok(Some(plan))
}

/// Carries out a planned reversal under `refund_id`.
pub(crate) fn apply_points_reversal(
    conn: &mut Conn<'_>,
    original: &OperationRecord,
    refund_id: i64,
    plan: &PointsPlan,
    context: &LoyaltyContext,
    now_ms: i64,
) -> ServiceResult<()> {
    let customer_id = plan.customer_id;
    let issued = store_account(conn, original.store_id, "points_issued", POINTS_ASSET, now_ms)?;
    for (lot_id, take) in &plan.clawback {
        if !repo::take_from_lot(conn, *lot_id, *take)? {
            return Err(lost_race(conn, "a points lot"));
        }
        repo::insert_lot_move(
            conn,
            &LotMove { lot_id: *lot_id, operation_id: refund_id, points: -take, kind: "clawback".into() },
            now_ms,
        )?;
    }
    let taken = plan.reversal.clawed_back;
    if taken > 0 {
        let account = points_account(conn, customer_id, now_ms)?;
        // It reverses the earning transfer while the amounts allow; otherwise a plain take-back.
        let reverses = plan
            .origin_earn_transfer
            .filter(|(_, credit, amount)| *credit == account.id && *amount >= taken)
            .map(|(id, _, _)| id);
        post(
            conn,
            &NewTransfer {
                operation_id: refund_id,
                debit: account,
                credit: issued,
                amount_minor: taken,
                asset: POINTS_ASSET,
                purpose: "points_clawback",
                reverses_transfer_id: reverses,
                created_at_ms: now_ms,
            },
        )?;
    }
    if plan.reversal.shortfall_owed {
        let owed = owed_account(conn, customer_id, now_ms)?;
        post(
            conn,
            &NewTransfer {
                operation_id: refund_id,
                debit: owed,
                credit: issued,
                amount_minor: plan.reversal.shortfall,
                asset: POINTS_ASSET,
                purpose: "points_owed",
                reverses_transfer_id: None,
                created_at_ms: now_ms,
            },
        )?;
    }
    let claw = plan.reversal.clawed_back + plan.reversal.shortfall;
    if claw > 0 {
        repo::add_activity(conn, customer_id, month_index(now_ms, &context.zone), 0, 0, -claw)?;
    }
    let given = return_points(conn, original.id, refund_id, plan.reversal.returned, now_ms)?;
    if given != plan.reversal.returned {
        return Err(ServiceError::Store(StoreError::Invariant(format!(
            "operation {} gave back {given} points of {}",
            original.id, plan.reversal.returned
        ))));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Views and requests
// ---------------------------------------------------------------------------------------

/// A member's points and tier at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    pub customer_id: i64,
    /// Points on the account: spendable + pending.
    pub points_balance: i64,
    pub points_spendable: i64,
    /// Locked until the return window passes.
    pub points_pending: i64,
    /// Owed after refunds of points already spent; paid off by the next earnings.
    pub points_owed: i64,
    pub points_expiring_soon: i64,
    pub next_expiry: Option<String>,
    pub tier: String,
    /// The earned tier (differs from `tier` while an override is in force).
    pub earned_tier: String,
    pub tier_since: String,
    pub review_at: String,
    pub grace_until: Option<String>,
    pub override_until: Option<String>,
    /// Over the qualification window.
    pub window_spend_minor: i64,
    pub window_visits: i64,
    pub window_points: i64,
    pub next_tier: Option<String>,
    /// What is still missing for the next tier (any one suffices; -1: not asked).
    pub next_tier_spend_minor: Option<i64>,
    pub next_tier_visits: Option<i64>,
    pub next_tier_points: Option<i64>,
    /// When the member enrolled (none: made by a purchase, never enrolled).
    pub enrolled_at: Option<String>,
    pub referred_by: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LotView {
    pub id: i64,
    pub source: String,
    pub operation_id: i64,
    pub points_earned: i64,
    pub points_remaining: i64,
    pub points_expired: i64,
    pub earned_at: String,
    pub available_at: String,
    pub expires_at: Option<String>,
}

fn lot_view(lot: &LotRecord) -> LotView {
    LotView {
        id: lot.id,
        source: lot.source.clone(),
        operation_id: lot.operation_id,
        points_earned: lot.points_earned,
        points_remaining: lot.points_remaining,
        points_expired: lot.points_expired,
        earned_at: format_ms(lot.earned_at_ms),
        available_at: format_ms(lot.available_at_ms),
        expires_at: lot.expires_at_ms.map(format_ms),
    }
}

/// One line of a member's points history 积分明细.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PointsLine {
    pub transfer_id: i64,
    pub operation_id: i64,
    /// The operation: `checkout`, `sale`, `refund`, `points_expiry`, `mall_order`, ...
    pub source: String,
    /// What happened: `points_purchase`, `points_redeem`, `points_clawback`, `points_expire`, ...
    pub purpose: String,
    pub points: i64,
    pub balance_after: i64,
    pub store_id: Option<i64>,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierChangeView {
    pub from_tier: Option<String>,
    pub to_tier: String,
    /// `upgrade`, `grace`, `downgrade`, `override`, `override_end`.
    pub reason: String,
    pub detail: serde_json::Value,
    pub actor: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleLine {
    pub amount_minor: i64,
    #[serde(default)]
    pub category: Option<String>,
}

/// A sale made at a till that was offline, sent when it is back: it earns once, however
/// often it is sent (its `external_id` is remembered per store).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleInput {
    pub customer_id: i64,
    #[serde(default)]
    pub store_id: Option<i64>,
    /// The till's own receipt number.
    pub external_id: String,
    /// What the customer paid per line.
    pub lines: Vec<SaleLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SaleView {
    pub operation_id: i64,
    pub customer_id: i64,
    pub store_id: Option<i64>,
    pub external_id: String,
    pub paid_minor: i64,
    pub points: PointsEarned,
    /// True when this sale had been recorded before (nothing was earned again).
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleRefundInput {
    /// How much of the sale the till gave back; the rest of it when left out.
    #[serde(default)]
    pub amount_minor: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PointsReversalView {
    pub operation_id: i64,
    pub reverses_operation_id: i64,
    pub amount_minor: i64,
    pub points: PointsReversal,
    /// The referral bonus taken back when the sale was a referred member's first purchase,
    /// refunded whole.
    pub referral: Option<ReferralReversal>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateInput {
    pub customer_id: i64,
    #[serde(default)]
    pub store_id: Option<i64>,
    pub lines: Vec<SaleLine>,
    /// RFC 3339 moment to price at (default: now); selects the programme version too.
    #[serde(default)]
    pub at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SimulateView {
    pub points: i64,
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<FiredRule>,
    pub programme_version: i64,
    pub tier: String,
    pub local_date: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProgrammeView {
    pub version: i64,
    pub effective_from: String,
    #[schema(value_type = Object)]
    pub rules: ProgrammeRules,
    pub note: Option<String>,
    pub created_by: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgrammeInput {
    /// RFC 3339; not in the past.
    pub effective_from: String,
    /// The rules (fields left out take the documented defaults).
    #[schema(value_type = Object)]
    pub rules: serde_json::Value,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierOverrideInput {
    pub tier: String,
    /// RFC 3339 end of the override (at most two years ahead).
    pub until: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointsTransferInput {
    pub to_customer_id: i64,
    pub points: i64,
}

/// Joining the programme 入会: the sign-up bonus, once, and who referred the member.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentInput {
    /// The member who brought this one in; they earn the referral bonus on this member's
    /// first purchase.
    pub referred_by: Option<i64>,
    /// Where the member joined (the store that issues the sign-up points); the caller's store
    /// when omitted.
    pub store_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrolmentView {
    pub customer_id: i64,
    pub enrolled_at: String,
    pub tier: String,
    pub referred_by: Option<i64>,
    /// The operation that credited the sign-up bonus (none when the programme gives none).
    pub operation_id: Option<i64>,
    pub signup_points: i64,
    pub lot_id: Option<i64>,
    pub expires_at: Option<String>,
    pub balance_after: i64,
}

/// A points adjustment 积分调整 made by hand.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointsAdjustmentInput {
    /// Points to credit (positive) or debit (negative); never zero.
    pub points: i64,
    /// Why: shown in the member's history and the audit log (1 to 200 characters).
    pub reason: String,
    /// For a credit: when its lot expires (RFC 3339, in the future); the programme's expiry
    /// when left out. Not for a debit (the soonest-expiring points are taken).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The store whose issued points account pays or takes the points; the caller's store
    /// when left out (none for a business-wide account).
    #[serde(default)]
    pub store_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PointsMoveView {
    pub operation_id: i64,
    pub kind: String,
    pub customer_id: i64,
    pub points: i64,
    pub counterpart: String,
    pub balance_after: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerInput {
    pub code: String,
    pub name: String,
    /// Our points for 100 of the partner's.
    pub points_in_per_100: i64,
    /// The partner's points for 100 of ours.
    pub points_out_per_100: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartnerView {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub points_in_per_100: i64,
    pub points_out_per_100: i64,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerExchangeInput {
    pub customer_id: i64,
    /// `in`: the partner's points become ours; `out`: ours become the partner's.
    pub direction: String,
    /// Points given up: the partner's for `in`, ours for `out`.
    pub points: i64,
    /// The partner's reference for the exchange.
    #[serde(default)]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartnerExchangeView {
    pub operation_id: i64,
    pub partner_id: i64,
    pub direction: String,
    pub points_given: i64,
    pub points_received: i64,
    pub balance_after: i64,
}

/// What a loyalty job did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobReport {
    pub job: String,
    pub members: i64,
    pub points: i64,
    pub changed: i64,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    /// `points_expiring`, `tier_changed`.
    pub kind: String,
    pub customer_id: i64,
    pub due_at: String,
    pub detail: serde_json::Value,
    pub created_at: String,
}

/// The points liability 积分负债.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiabilityView {
    pub points_outstanding: i64,
    pub points_spendable: i64,
    pub points_pending: i64,
    pub points_expiring_90_days: i64,
    pub members_with_points: i64,
    /// Of the points earned over the last 24 months, the share that expired unused.
    pub breakage_rate_pct: f64,
    pub expected_breakage_points: i64,
    /// What one point is worth at checkout, in minor units.
    pub value_per_point_minor: f64,
    /// Outstanding points, less expected breakage, at that value.
    pub liability_minor: i64,
    pub currency: String,
}

/// Text a field must have: trimmed, 1 to `max` characters; a problem is recorded otherwise.
pub(crate) fn required_text(errors: &mut FieldErrors, field: &str, raw: &str, max: usize) -> Option<String> {
    errors.take(field, cardcrm_domain::customer::parse_bounded_text(field, raw, max)).flatten().or_else(
        || {
            if raw.trim().is_empty() {
                errors.push(FieldError::new(field, "required", format!("{field} is required")));
            }
            None
        },
    )
}

fn parse_lines(errors: &mut FieldErrors, lines: &[SaleLine]) -> Vec<EarnLine> {
    if lines.is_empty() || lines.len() > crate::checkout::LINES_MAX {
        errors.push(FieldError::new(
            "lines",
            "lines.count",
            format!("a basket has 1 to {} lines", crate::checkout::LINES_MAX),
        ));
    }
    lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            if !(0..=crate::cards::VALUE_MINOR_MAX).contains(&line.amount_minor) {
                errors.push(FieldError::new(
                    format!("lines[{index}].amount_minor"),
                    "amount.out_of_range",
                    format!("0 to {}", crate::cards::VALUE_MINOR_MAX),
                ));
            }
            let category = line.category.as_deref().and_then(|raw| {
                errors
                    .take(
                        &format!("lines[{index}].category"),
                        cardcrm_domain::customer::parse_bounded_text("category", raw, 64),
                    )
                    .flatten()
            });
            EarnLine { category, paid_minor: line.amount_minor }
        })
        .collect()
}

fn positive_points(field: &str, points: i64) -> Result<i64, FieldError> {
    if (1..=POINTS_MAX).contains(&points) {
        Ok(points)
    } else {
        Err(FieldError::new(field, "points.out_of_range", format!("{field} is 1 to {POINTS_MAX}")))
    }
}

fn parse_moment(field: &str, raw: &str) -> Result<i64, FieldError> {
    cardcrm_domain::date::parse_instant(raw).map(ms).map_err(|error| error.at(field))
}

#[allow(clippy::too_many_arguments)]
fn member_operation(
    actor: &Actor,
    kind: &str,
    customer_id: i64,
    store_id: Option<i64>,
    reverses: Option<i64>,
    amount: i64,
    asset: &str,
    detail: serde_json::Value,
    now_ms: i64,
) -> OperationRecord {
    OperationRecord {
        customer_id: Some(customer_id),
        ..actor.operation(kind, None, store_id, reverses, amount, asset, None, detail, now_ms)
    }
}

fn points_balance(conn: &mut Conn<'_>, customer_id: i64) -> ServiceResult<i64> {
    Ok(match ledger_repo::account_ref(conn, &format!("member:{customer_id}:points"))? {
        Some(account) => ledger_repo::account(conn, account.id)?.map_or(0, |account| account.balance()),
        None => 0,
    })
}

/// Whether `customer_id` names a customer who is active (not merged into another).
fn is_active_customer(conn: &mut Conn<'_>, customer_id: i64) -> ServiceResult<bool> {
    Ok(customer_repo::get(conn, customer_id)?.is_some_and(|customer| customer.status == "active"))
}

fn require_customer(conn: &mut Conn<'_>, customer_id: i64) -> ServiceResult<()> {
    customer_repo::get(conn, customer_id)?.ok_or_else(|| ServiceError::not_found("customer", customer_id))?;
    Ok(())
}

impl Services {
    /// A member's points and tier, and how far the next tier is.
    pub async fn member(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        customer_id: i64,
    ) -> ServiceResult<MemberView> {
        let now_ms = self.now_ms();
        let zone = self.default_zone().clone();
        self.database().read(move |conn| member_view(conn, customer_id, now_ms, &zone)).await
    }

    /// A member's lots, soonest expiry first; with `all`, spent and expired ones too.
    pub async fn member_lots(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        customer_id: i64,
        all: bool,
    ) -> ServiceResult<Vec<LotView>> {
        self.database()
            .read(move |conn| {
                require_customer(conn, customer_id)?;
                Ok(repo::lots_of(conn, customer_id, all, 1_000)?.iter().map(lot_view).collect())
            })
            .await
    }

    /// A member's points history with the running balance, oldest first, after `cursor`.
    pub async fn points_history(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        customer_id: i64,
        cursor: Option<i64>,
        limit: i64,
    ) -> ServiceResult<Page<PointsLine>> {
        self.database()
            .read(move |conn| {
                require_customer(conn, customer_id)?;
                let Some(account) = ledger_repo::account_ref(conn, &format!("member:{customer_id}:points"))?
                else {
                    return Ok(Page { items: Vec::new(), next_cursor: None });
                };
                let after = cursor.unwrap_or(0);
                let postings =
                    ledger_repo::postings(conn, &[account.id], i64::MIN, i64::MAX, after, limit + 1)?;
                let mut balance = balance_through(conn, account.id, after)?;
                let lines: Vec<PointsLine> = postings
                    .into_iter()
                    .map(|posting| {
                        balance += posting.signed_minor;
                        PointsLine {
                            transfer_id: posting.transfer.id,
                            operation_id: posting.transfer.operation_id,
                            source: posting.operation_kind.clone(),
                            purpose: posting.transfer.purpose.clone(),
                            points: posting.signed_minor,
                            balance_after: balance,
                            store_id: posting.store_id,
                            at: format_ms(posting.transfer.created_at_ms),
                        }
                    })
                    .collect();
                Ok(Page::from_overfetch(lines, limit, |line| line.transfer_id.to_string()))
            })
            .await
    }

    pub async fn tier_history(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        customer_id: i64,
    ) -> ServiceResult<Vec<TierChangeView>> {
        self.database()
            .read(move |conn| {
                require_customer(conn, customer_id)?;
                Ok(repo::tier_history(conn, customer_id, 200)?
                    .into_iter()
                    .map(|change| TierChangeView {
                        from_tier: change.from_tier,
                        to_tier: change.to_tier,
                        reason: change.reason,
                        detail: serde_json::from_str(&change.detail_json).unwrap_or_default(),
                        actor: change.actor,
                        at: format_ms(change.created_at_ms),
                    })
                    .collect())
            })
            .await
    }

    /// Puts a member on a tier until a date (a manager's decision, audited); the earned tier
    /// takes over again after it.
    pub async fn override_tier(
        &self,
        access: Access<'_, perm::TierOverride>,
        customer_id: i64,
        input: TierOverrideInput,
    ) -> ServiceResult<MemberView> {
        let mut errors = FieldErrors::new();
        let until = errors.take("until", parse_moment("until", &input.until));
        let reason = required_text(&mut errors, "reason", &input.reason, 200);
        let now_ms = self.now_ms();
        if until.is_some_and(|until| until <= now_ms || until > now_ms + 2 * 366 * 86_400_000) {
            errors.push(FieldError::new(
                "until",
                "until.out_of_range",
                "an override ends in the future, within two years",
            ));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let (until, reason) = (until.unwrap_or_default(), reason.unwrap_or_default());
        let identity = access.identity().clone();
        let write_zone = self.default_zone().clone();
        let tier_code = input.tier.trim().to_owned();
        self.database()
            .write(move |conn| {
                let programme = programme_at(conn, now_ms)?;
                if card_repo::tier(conn, &tier_code)?.is_none() || programme.tier(&tier_code).is_none() {
                    return Err(ServiceError::invalid(
                        "tier",
                        "tier.unknown",
                        format!("`{tier_code}` is not a tier of the programme"),
                    ));
                }
                let mut member = ensure_member(conn, &programme, customer_id, now_ms, &write_zone)?;
                let before = member.clone();
                let version = member.version;
                member.override_tier = Some(tier_code.clone());
                member.override_until_ms = Some(until);
                member.override_by = Some(identity.name.clone());
                member.override_reason = Some(reason.clone());
                member.version += 1;
                member.updated_at_ms = now_ms;
                if !repo::update_member(conn, &member, version)? {
                    return Err(lost_race(conn, "the member"));
                }
                repo::set_card_tiers(conn, customer_id, &tier_code, now_ms)?;
                repo::insert_tier_change(
                    conn,
                    &TierChangeRecord {
                        id: 0,
                        customer_id,
                        from_tier: Some(effective_tier(&before, now_ms).to_owned()),
                        to_tier: tier_code.clone(),
                        reason: "override".into(),
                        detail_json: serde_json::json!({"until": format_ms(until), "reason": reason})
                            .to_string(),
                        actor: identity.name.clone(),
                        created_at_ms: now_ms,
                    },
                )?;
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "tier.override",
                    "customer",
                    customer_id,
                    Some(serde_json::json!({"tier": effective_tier(&before, now_ms)})),
                    Some(serde_json::json!({"tier": tier_code, "until": format_ms(until), "reason": reason})),
                )?;
                Ok(())
            })
            .await?;
        let zone = self.default_zone().clone();
        self.database().read(move |conn| member_view(conn, customer_id, now_ms, &zone)).await
    }

    /// Records a sale from an offline till for points: earns once per store and receipt.
    pub async fn record_sale(
        &self,
        access: Access<'_, perm::LoyaltyWrite>,
        key: IdempotencyKey,
        input: SaleInput,
    ) -> ServiceResult<Outcome<SaleView>> {
        let mut errors = FieldErrors::new();
        let lines = parse_lines(&mut errors, &input.lines);
        let external = required_text(&mut errors, "external_id", &input.external_id, 64);
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let external = external.unwrap_or_default();
        let store_id = input.store_id.or(access.scope.store_id());
        access.require_store(store_id)?;
        let request = (&input, store_id);
        let context = self.loyalty_context();
        let currency = self.currency().as_str().to_owned();
        let customer_id = input.customer_id;
        self.keyed(access.identity(), key, "sale", &request, move |conn, actor, now_ms| {
            let store = check_store(conn, store_id)?;
            require_customer(conn, customer_id)?;
            let store_key = store_id.map_or_else(|| "none".to_owned(), |id| id.to_string());
            let paid: i64 = lines.iter().map(|line| line.paid_minor).sum();
            if let Some(operation_id) = repo::sale_operation(conn, &store_key, &external)? {
                let operation = ledger_repo::operation(conn, operation_id)?.ok_or_else(|| ServiceError::not_found("operation", operation_id))?;
                let detail: serde_json::Value = serde_json::from_str(&operation.detail_json).unwrap_or_default();
                let mut points: PointsEarned = serde_json::from_value(detail.get("points").cloned().unwrap_or_default()).unwrap_or_default();
                let member = operation.customer_id.unwrap_or(customer_id);
                points.lot_id = repo::lots_of_operation(conn, member, operation_id)?.first().map(|lot| lot.id);
                let value = SaleView { operation_id, customer_id: operation.customer_id.unwrap_or(customer_id), store_id: operation.store_id, external_id: external.clone(), paid_minor: operation.amount_minor, points, duplicate: true };
                return Ok(Decision::Done { value, operation_id: None });
            }
            let place = Place::of(store.as_ref(), &context.zone);
            let prepared = prepare_earning(conn, &context, customer_id, &place, None, &lines, now_ms)?;
            let detail = serde_json::json!({"external_id": external, "points": {"points": prepared.earning.points, "rules": prepared.earning.fired}});
            let operation = member_operation(actor, "sale", customer_id, store_id, None, paid, &currency, detail, now_ms);
            let operation_id = ledger_repo::insert_operation(conn, &operation)?;
            repo::insert_sale(conn, &store_key, &external, operation_id)?;
            let earned = apply_earning(conn, &context, prepared, actor.name(), paid, operation_id, now_ms)?;
            let records: Vec<PurchaseRecord> = lines.iter().filter(|line| line.paid_minor > 0).map(|line| PurchaseRecord {
                id: 0, customer_id, store_id, occurred_at_ms: now_ms, amount_minor: line.paid_minor, currency: currency.clone(),
                category: line.category.clone(), channel: "offline".into(), external_id: None, import_id: None,
                operation_id: Some(operation_id), created_at_ms: now_ms,
            }).collect();
            purchase_repo::insert_many(conn, &records)?;
            let value = SaleView { operation_id, customer_id, store_id, external_id: external.clone(), paid_minor: paid, points: earned, duplicate: false };
            Ok(Decision::Done { value, operation_id: Some(operation_id) })
        })
        .await
    }

    /// Takes back the points of (part of) an offline sale the till refunded.
    pub async fn refund_sale(
        &self,
        access: Access<'_, perm::LoyaltyWrite>,
        key: IdempotencyKey,
        operation_id: i64,
        input: SaleRefundInput,
    ) -> ServiceResult<Outcome<PointsReversalView>> {
        if let Some(amount) = input.amount_minor
            && !(1..=crate::cards::VALUE_MINOR_MAX).contains(&amount)
        {
            return Err(ServiceError::invalid(
                "amount_minor",
                "amount.out_of_range",
                format!("1 to {}", crate::cards::VALUE_MINOR_MAX),
            ));
        }
        let scope = access.scope;
        let request = (operation_id, &input);
        let context = self.loyalty_context();
        self.keyed(access.identity(), key, "sale_refund", &request, move |conn, actor, now_ms| {
            let original = ledger_repo::operation(conn, operation_id)?.ok_or_else(|| ServiceError::not_found("operation", operation_id))?;
            if !scope.covers(original.store_id) {
                return Err(ServiceError::forbidden(format!("operation {operation_id} belongs to another store")));
            }
            if original.kind != "sale" {
                return Ok(Decision::Refused(Refusal::new("refund.not_refundable", format!("operation {operation_id} is a {}, not an offline sale; refund it through /operations/{{id}}/refunds", original.kind))));
            }
            let refunded_before: i64 = ledger_repo::reversals_of(conn, operation_id)?.iter().map(|op| op.amount_minor).sum();
            let left = original.amount_minor - refunded_before;
            let amount = input.amount_minor.unwrap_or(left);
            if left <= 0 || amount > left {
                return Ok(Decision::Refused(Refusal::new("refund.exceeds_remaining", format!("sale {operation_id} has {left} left to refund"))));
            }
            let customer_id = original.customer_id.unwrap_or_default();
            let plan = plan_points_reversal(conn, &original, original.amount_minor, refunded_before + amount, now_ms)?;
            let points = plan.as_ref().map(|plan| plan.reversal).unwrap_or_default();
            let refund = member_operation(actor, "refund", customer_id, original.store_id, Some(operation_id), amount, &original.asset, serde_json::json!({"points": points}), now_ms);
            let refund_id = ledger_repo::insert_operation(conn, &refund)?;
            if let Some(plan) = &plan {
                apply_points_reversal(conn, &original, refund_id, plan, &context, now_ms)?;
            }
            let whole = refunded_before + amount >= original.amount_minor;
            take_back_activity(conn, customer_id, amount, whole, now_ms, &context.zone)?;
            crate::checkout::record_refund_purchases(conn, &original, refund_id, amount, now_ms)?;
            let referral = if whole { take_back_referral(conn, actor, &original, refund_id, &context, now_ms)? } else { None };
            Ok(Decision::Done { value: PointsReversalView { operation_id: refund_id, reverses_operation_id: operation_id, amount_minor: amount, points, referral }, operation_id: Some(refund_id) })
        })
        .await
    }

    /// What a basket would earn for a member at a moment, and which rules fired. Writes nothing.
    pub async fn simulate_earning(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        input: SimulateInput,
    ) -> ServiceResult<SimulateView> {
        let mut errors = FieldErrors::new();
        let lines = parse_lines(&mut errors, &input.lines);
        let moment = input.at.as_deref().and_then(|raw| errors.take("at", parse_moment("at", raw)));
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let now_ms = moment.unwrap_or_else(|| self.now_ms());
        let zone = self.default_zone().clone();
        let (customer_id, store_id) = (input.customer_id, input.store_id);
        self.database()
            .read(move |conn| {
                require_customer(conn, customer_id)?;
                let store = check_store(conn, store_id)?;
                let record = repo::programme_at(conn, now_ms)?
                    .ok_or_else(|| ServiceError::Store(StoreError::Invariant("no programme".into())))?;
                let programme = parse_programme(&record.rules_json)?;
                let member = repo::member(conn, customer_id)?.unwrap_or(MemberRecord {
                    customer_id,
                    tier: programme
                        .rules()
                        .tiers
                        .iter()
                        .min_by_key(|tier| tier.rank)
                        .map_or("ordinary".into(), |tier| tier.tier.clone()),
                    tier_since_ms: now_ms,
                    review_at_ms: now_ms,
                    grace_until_ms: None,
                    override_tier: None,
                    override_until_ms: None,
                    override_by: None,
                    override_reason: None,
                    first_purchase_at_ms: None,
                    referred_by: None,
                    enrolled_at_ms: None,
                    version: 0,
                    created_at_ms: now_ms,
                    updated_at_ms: now_ms,
                });
                let place = Place::of(store.as_ref(), &zone);
                let context = earn_context(conn, &programme, &member, &place, None, now_ms, &zone)?;
                let earning = programme.earn(&lines, &context);
                Ok(SimulateView {
                    points: earning.points,
                    rules: earning.fired,
                    programme_version: record.version,
                    tier: effective_tier(&member, now_ms).to_owned(),
                    local_date: context.local_date.to_string(),
                })
            })
            .await
    }

    pub async fn programmes(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
    ) -> ServiceResult<Vec<ProgrammeView>> {
        self.database()
            .read(move |conn| repo::programmes(conn, 100)?.iter().map(programme_view).collect())
            .await
    }

    /// Adds a version of the programme, in force from its date.
    pub async fn create_programme(
        &self,
        access: Access<'_, perm::LoyaltyManage>,
        input: ProgrammeInput,
    ) -> ServiceResult<ProgrammeView> {
        let mut errors = FieldErrors::new();
        let now_ms = self.now_ms();
        let from = errors.take("effective_from", parse_moment("effective_from", &input.effective_from));
        if from.is_some_and(|from| from < now_ms - 60_000) {
            errors.push(FieldError::new(
                "effective_from",
                "effective_from.past",
                "a new version takes effect now or later; history is not rewritten",
            ));
        }
        let note = input
            .note
            .as_deref()
            .and_then(|raw| {
                errors.take("note", cardcrm_domain::customer::parse_bounded_text("note", raw, 200))
            })
            .flatten();
        let rules = match serde_json::from_value::<ProgrammeRules>(input.rules.clone()) {
            Ok(rules) => match Programme::parse(rules) {
                Ok(programme) => Some(programme),
                Err(found) => {
                    errors.0.extend(found.0);
                    None
                }
            },
            Err(error) => {
                errors.push(FieldError::new("rules", "rules.invalid", error.to_string()));
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let (from, programme) =
            (from.unwrap_or(now_ms), rules.ok_or_else(|| ServiceError::Config("rules vanished".into()))?);
        let identity = access.identity().clone();
        self.database()
            .write(move |conn| {
                let json = serde_json::to_string(programme.rules())
                    .map_err(|error| ServiceError::Config(error.to_string()))?;
                for tier in &programme.rules().tiers {
                    if card_repo::tier(conn, &tier.tier)?.is_none() {
                        return Err(ServiceError::invalid(
                            "rules.tiers",
                            "tier.unknown",
                            format!("`{}` is not a tier; tiers are configured under /tiers", tier.tier),
                        ));
                    }
                }
                let record = ProgrammeRecord {
                    version: 0,
                    effective_from_ms: from,
                    rules_json: json,
                    note: note.clone(),
                    created_by: identity.name.clone(),
                    created_at_ms: now_ms,
                };
                let version = repo::insert_programme(conn, &record)?;
                let view = programme_view(&ProgrammeRecord { version, ..record })?;
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "loyalty.programme",
                    "loyalty_programme",
                    version,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok(view)
            })
            .await
    }

    /// Moves points to another member (family), within the programme's daily limit; the
    /// receiver's lots keep the expiry of the points given.
    /// Enrols a customer in the programme 入会: records when (and who referred them), and
    /// credits the programme's sign-up bonus once. A member made earlier by a purchase can
    /// still enrol once; a second enrolment is refused.
    pub async fn enrol_member(
        &self,
        access: Access<'_, perm::LoyaltyWrite>,
        key: IdempotencyKey,
        customer_id: i64,
        input: EnrolmentInput,
    ) -> ServiceResult<Outcome<EnrolmentView>> {
        if input.referred_by == Some(customer_id) {
            return Err(ServiceError::invalid(
                "referred_by",
                "referral.self",
                "a member cannot refer themselves",
            ));
        }
        let store_id = input.store_id.or(access.scope.store_id());
        access.require_store(store_id)?;
        let zone = self.default_zone().clone();
        let identity = access.identity().clone();
        let request = (customer_id, &input, store_id);
        self.keyed(access.identity(), key, "enrolment", &request, move |conn, actor, now_ms| {
            check_store(conn, store_id)?;
            let customer = customer_repo::get(conn, customer_id)?.ok_or_else(|| ServiceError::not_found("customer", customer_id))?;
            if customer.status != "active" {
                return Err(ServiceError::conflict("customer.not_active", format!("customer {customer_id} is {}", customer.status)));
            }
            if let Some(referrer) = input.referred_by
                && !is_active_customer(conn, referrer)?
            {
                return Err(ServiceError::invalid("referred_by", "referral.unknown", format!("customer {referrer} is not an active customer")));
            }
            let programme = programme_at(conn, now_ms)?;
            let mut member = ensure_member(conn, &programme, customer_id, now_ms, &zone)?;
            if let Some(at_ms) = member.enrolled_at_ms {
                return Ok(Decision::Refused(Refusal::new("member.already_enrolled", format!("customer {customer_id} enrolled at {}", format_ms(at_ms)))));
            }
            if input.referred_by.is_some() && member.first_purchase_at_ms.is_some() {
                return Ok(Decision::Refused(Refusal::new("referral.too_late", format!("customer {customer_id} has bought already; a referral counts only before the first purchase"))));
            }
            let version = member.version;
            member.enrolled_at_ms = Some(now_ms);
            member.referred_by = input.referred_by;
            member.version += 1;
            member.updated_at_ms = now_ms;
            if !repo::update_member(conn, &member, version)? {
                return Err(lost_race(conn, "the member"));
            }
            let bonus = programme.rules().signup_bonus_points;
            let (mut operation_id, mut lot) = (None, None);
            if bonus > 0 {
                let detail = serde_json::json!({"referred_by": input.referred_by});
                let operation = member_operation(actor, "signup_bonus", customer_id, store_id, None, bonus, POINTS_ASSET, detail, now_ms);
                let id = ledger_repo::insert_operation(conn, &operation)?;
                let issued = store_account(conn, store_id, "points_issued", POINTS_ASSET, now_ms)?;
                lot = credit_points(conn, &programme, customer_id, bonus, issued, id, "signup", None, now_ms, &zone)?.0;
                repo::add_activity(conn, customer_id, month_index(now_ms, &zone), 0, 0, bonus)?;
                operation_id = Some(id);
            }
            audit::append(
                conn,
                &identity,
                now_ms,
                "member.enrol",
                "customer",
                customer_id,
                None,
                Some(serde_json::json!({"referred_by": input.referred_by, "signup_points": bonus, "store_id": store_id})),
            )?;
            let value = EnrolmentView {
                customer_id,
                enrolled_at: format_ms(now_ms),
                tier: effective_tier(&member, now_ms).to_owned(),
                referred_by: member.referred_by,
                operation_id,
                signup_points: bonus,
                lot_id: lot.as_ref().map(|lot| lot.id),
                expires_at: lot.as_ref().and_then(|lot| lot.expires_at_ms).map(format_ms),
                balance_after: points_balance(conn, customer_id)?,
            };
            Ok(Decision::Done { value, operation_id })
        })
        .await
    }

    pub async fn transfer_points(
        &self,
        access: Access<'_, perm::LoyaltyWrite>,
        key: IdempotencyKey,
        customer_id: i64,
        input: PointsTransferInput,
    ) -> ServiceResult<Outcome<PointsMoveView>> {
        let points = positive_points("points", input.points)?;
        if input.to_customer_id == customer_id {
            return Err(ServiceError::invalid(
                "to_customer_id",
                "transfer.same_member",
                "a member cannot give points to themselves",
            ));
        }
        let zone = self.default_zone().clone();
        let request = (customer_id, &input);
        self.keyed(access.identity(), key, "points_transfer", &request, move |conn, actor, now_ms| {
            require_customer(conn, customer_id)?;
            require_customer(conn, input.to_customer_id)?;
            let programme = programme_at(conn, now_ms)?;
            let day_start = start_of_local_day(at(now_ms).to_zoned(zone.clone()).date(), &zone);
            let given_today = transferred_since(conn, customer_id, day_start)?;
            let limit = programme.rules().transfer_daily_max_points;
            if given_today + points > limit {
                return Ok(Decision::Refused(Refusal::new(
                    "points.transfer_limit",
                    format!("a member may give {limit} points a day; {given_today} given today"),
                )));
            }
            if let Some(refusal) = refuse_unless_spendable(conn, customer_id, points, now_ms)? {
                return Ok(Decision::Refused(refusal));
            }
            ensure_member(conn, &programme, input.to_customer_id, now_ms, &zone)?;
            let detail = serde_json::json!({"to_customer_id": input.to_customer_id, "points": points});
            let operation = member_operation(
                actor,
                "points_transfer",
                customer_id,
                None,
                None,
                points,
                POINTS_ASSET,
                detail,
                now_ms,
            );
            let operation_id = ledger_repo::insert_operation(conn, &operation)?;
            let receiver = points_account(conn, input.to_customer_id, now_ms)?;
            let taken_lots =
                spend_points(conn, customer_id, points, receiver, operation_id, "transfer_out", now_ms)?;
            // One lot per lot given, with its expiry: giving points never extends them.
            for (lot_id, take) in taken_lots {
                let source_lot =
                    repo::lot(conn, lot_id)?.ok_or_else(|| ServiceError::not_found("points lot", lot_id))?;
                repo::insert_lot(
                    conn,
                    &LotRecord {
                        id: 0,
                        customer_id: input.to_customer_id,
                        account_id: receiver.id,
                        operation_id,
                        source: "transfer_in".into(),
                        points_earned: take,
                        points_remaining: take,
                        points_expired: 0,
                        earned_at_ms: now_ms,
                        available_at_ms: now_ms,
                        expires_at_ms: source_lot.expires_at_ms,
                    },
                )?;
            }
            let value = PointsMoveView {
                operation_id,
                kind: "points_transfer".into(),
                customer_id,
                points,
                counterpart: format!("customer:{}", input.to_customer_id),
                balance_after: points_balance(conn, customer_id)?,
            };
            Ok(Decision::Done { value, operation_id: Some(operation_id) })
        })
        .await
    }

    /// Credits or debits a member's points by hand with a reason (a goodwill gesture, a
    /// correction, an opening balance from another system): a credit is a new lot (after
    /// what the member owes is paid off), a debit takes the soonest-expiring points. Neither
    /// counts toward tiers. Audited.
    pub async fn adjust_points(
        &self,
        access: Access<'_, perm::PointsAdjust>,
        key: IdempotencyKey,
        customer_id: i64,
        input: PointsAdjustmentInput,
    ) -> ServiceResult<Outcome<PointsMoveView>> {
        let mut errors = FieldErrors::new();
        let points = errors.take("points", positive_points("points", input.points.saturating_abs()));
        let reason = required_text(&mut errors, "reason", &input.reason, 200);
        let expires_at = input
            .expires_at
            .as_deref()
            .and_then(|raw| errors.take("expires_at", parse_moment("expires_at", raw)));
        let now_ms = self.now_ms();
        if input.points < 0 && input.expires_at.is_some() {
            errors.push(FieldError::new(
                "expires_at",
                "expires_at.not_for_debit",
                "a debit takes the soonest-expiring points; expires_at is for credits",
            ));
        } else if expires_at.is_some_and(|at| at <= now_ms) {
            errors.push(FieldError::new("expires_at", "expires_at.past", "a credit expires in the future"));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let (points, reason) = (points.unwrap_or_default(), reason.unwrap_or_default());
        let credit = input.points > 0;
        let identity = access.identity().clone();
        let store_id = input.store_id.or(identity.scope.store_id());
        identity.require_store(store_id)?;
        let zone = self.default_zone().clone();
        let request = (customer_id, &input);
        self.keyed(access.identity(), key, "points_adjustment", &request, move |conn, actor, now_ms| {
            require_customer(conn, customer_id)?;
            if !is_active_customer(conn, customer_id)? {
                return Ok(Decision::Refused(Refusal::new(
                    "customer.not_active",
                    format!("customer {customer_id} is not active (merged or erased); adjust whoever holds their points"),
                )));
            }
            check_store(conn, store_id)?;
            if !credit && let Some(refusal) = refuse_unless_spendable(conn, customer_id, points, now_ms)? {
                return Ok(Decision::Refused(refusal));
            }
            let programme = programme_at(conn, now_ms)?;
            let before = points_balance(conn, customer_id)?;
            let signed = if credit { points } else { -points };
            let adjustment = Adjustment { customer_id, store_id, points: signed, expires_at_ms: expires_at, reason: &reason };
            let operation_id = adjust(conn, actor, &programme, &adjustment, now_ms, &zone)?;
            let after = points_balance(conn, customer_id)?;
            audit::append(
                conn,
                &identity,
                now_ms,
                "points.adjust",
                "customer",
                customer_id,
                Some(serde_json::json!({"points_balance": before})),
                Some(serde_json::json!({"points_balance": after, "points": signed, "reason": reason, "operation_id": operation_id})),
            )?;
            let value = PointsMoveView {
                operation_id,
                kind: "points_adjustment".into(),
                customer_id,
                points: signed,
                counterpart: store_id.map_or_else(|| "business".to_owned(), |store| format!("store:{store}")),
                balance_after: after,
            };
            Ok(Decision::Done { value, operation_id: Some(operation_id) })
        })
        .await
    }

    pub async fn partners(&self, _access: Access<'_, perm::LoyaltyRead>) -> ServiceResult<Vec<PartnerView>> {
        self.database()
            .read(move |conn| Ok(reward_repo::partners(conn)?.iter().map(partner_view).collect()))
            .await
    }

    pub async fn create_partner(
        &self,
        access: Access<'_, perm::LoyaltyManage>,
        input: PartnerInput,
    ) -> ServiceResult<PartnerView> {
        let mut errors = FieldErrors::new();
        let code = errors
            .take("code", cardcrm_domain::text::parse_code(&input.code, "partner.code_invalid", "partner"));
        let name = required_text(&mut errors, "name", &input.name, 100);
        for (field, value) in
            [("points_in_per_100", input.points_in_per_100), ("points_out_per_100", input.points_out_per_100)]
        {
            if !(0..=1_000_000).contains(&value) {
                errors.push(FieldError::new(field, "rate.out_of_range", "0 (closed) to 1000000"));
            }
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let now_ms = self.now_ms();
        let identity = access.identity().clone();
        let record = reward_repo::PartnerRecord {
            id: 0,
            code: code.unwrap_or_default(),
            name: name.unwrap_or_default(),
            points_in_per_100: input.points_in_per_100,
            points_out_per_100: input.points_out_per_100,
            status: "active".into(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        self.database()
            .write(move |conn| {
                let id = match reward_repo::insert_partner(conn, &record) {
                    Ok(id) => id,
                    Err(StoreError::UniqueViolation { .. }) => {
                        return Err(ServiceError::conflict(
                            "partner.code_taken",
                            "a partner with this code exists",
                        ));
                    }
                    Err(other) => return Err(other.into()),
                };
                let view = partner_view(&reward_repo::PartnerRecord { id, ..record.clone() });
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "partner.create",
                    "partner",
                    id,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok(view)
            })
            .await
    }

    /// Exchanges points with a co-branded partner 联名 at its rate, through the partner's
    /// ledger account.
    pub async fn partner_exchange(
        &self,
        access: Access<'_, perm::LoyaltyWrite>,
        key: IdempotencyKey,
        partner_id: i64,
        input: PartnerExchangeInput,
    ) -> ServiceResult<Outcome<PartnerExchangeView>> {
        let points = positive_points("points", input.points)?;
        let inbound = match input.direction.as_str() {
            "in" => true,
            "out" => false,
            _ => {
                return Err(ServiceError::invalid(
                    "direction",
                    "direction.invalid",
                    "direction is `in` or `out`",
                ));
            }
        };
        let reference = input
            .reference
            .as_deref()
            .map(|raw| cardcrm_domain::customer::parse_bounded_text("reference", raw, 64))
            .transpose()
            .map_err(ServiceError::from)?
            .flatten();
        let zone = self.default_zone().clone();
        let request = (partner_id, input.clone());
        self.keyed(access.identity(), key, "partner_exchange", &request, move |conn, actor, now_ms| {
            let partner = reward_repo::partner(conn, partner_id)?.ok_or_else(|| ServiceError::not_found("partner", partner_id))?;
            require_customer(conn, input.customer_id)?;
            let rate = if inbound { partner.points_in_per_100 } else { partner.points_out_per_100 };
            if partner.status != "active" || rate == 0 {
                return Ok(Decision::Refused(Refusal::new("partner.closed", format!("partner {} does not exchange {}", partner.code, input.direction))));
            }
            let received = (i128::from(points) * i128::from(rate) / 100) as i64;
            if received <= 0 {
                return Err(ServiceError::invalid("points", "points.too_few", "at this rate the exchange gives nothing"));
            }
            let programme = programme_at(conn, now_ms)?;
            if !inbound && let Some(refusal) = refuse_unless_spendable(conn, input.customer_id, points, now_ms)? {
                return Ok(Decision::Refused(refusal));
            }
            ensure_member(conn, &programme, input.customer_id, now_ms, &zone)?;
            let account = ledger_repo::ensure_account(conn, &NewAccount { code: &format!("partner:{partner_id}:points"), kind: "partner_points", asset: POINTS_ASSET, card_id: None, store_id: None, customer_id: None, tracks_balance: false }, now_ms)?;
            let detail = serde_json::json!({"partner_id": partner_id, "direction": input.direction, "points_given": points, "points_received": received, "reference": reference});
            let operation = member_operation(actor, "partner_exchange", input.customer_id, None, None, if inbound { received } else { points }, POINTS_ASSET, detail, now_ms);
            let operation_id = ledger_repo::insert_operation(conn, &operation)?;
            if inbound {
                credit_points(conn, &programme, input.customer_id, received, account, operation_id, "partner_in", None, now_ms, &zone)?;
            } else {
                spend_points(conn, input.customer_id, points, account, operation_id, "partner_out", now_ms)?;
            }
            let value = PartnerExchangeView { operation_id, partner_id, direction: input.direction.clone(), points_given: points, points_received: received, balance_after: points_balance(conn, input.customer_id)? };
            Ok(Decision::Done { value, operation_id: Some(operation_id) })
        })
        .await
    }

    /// Events for the engagement features, oldest first.
    pub async fn loyalty_events(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
        customer_id: Option<i64>,
        cursor: Option<i64>,
        limit: i64,
    ) -> ServiceResult<Page<EventView>> {
        self.database()
            .read(move |conn| {
                let events = repo::events(conn, cursor.unwrap_or(0), customer_id, limit + 1)?;
                let views = events
                    .into_iter()
                    .map(|event| EventView {
                        id: event.id,
                        kind: event.kind,
                        customer_id: event.customer_id,
                        due_at: format_ms(event.due_at_ms),
                        detail: serde_json::from_str(&event.detail_json).unwrap_or_default(),
                        created_at: format_ms(event.created_at_ms),
                    })
                    .collect();
                Ok(Page::from_overfetch(views, limit, |event: &EventView| event.id.to_string()))
            })
            .await
    }

    /// The points liability: what is outstanding, what will likely expire unused, and what
    /// the rest is worth.
    pub async fn points_liability(
        &self,
        _access: Access<'_, perm::LoyaltyRead>,
    ) -> ServiceResult<LiabilityView> {
        let now_ms = self.now_ms();
        let currency = self.currency().as_str().to_owned();
        self.database()
            .read(move |conn| {
                let programme = programme_at(conn, now_ms)?;
                let (spendable, pending, expiring, members) =
                    repo::points_outstanding(conn, now_ms, 90 * 86_400_000)?;
                let (earned, expired) = repo::lot_outcomes(conn, now_ms - 730 * 86_400_000, now_ms)?;
                let rate = if earned > 0 { expired as f64 / earned as f64 } else { 0.0 };
                let outstanding = spendable + pending;
                let breakage = (outstanding as f64 * rate).round() as i64;
                let value_per_point = programme.rules().redeem_minor_per_100_points as f64 / 100.0;
                Ok(LiabilityView {
                    points_outstanding: outstanding,
                    points_spendable: spendable,
                    points_pending: pending,
                    points_expiring_90_days: expiring,
                    members_with_points: members,
                    breakage_rate_pct: (rate * 10_000.0).round() / 100.0,
                    expected_breakage_points: breakage,
                    value_per_point_minor: value_per_point,
                    liability_minor: programme.points_value_minor(outstanding - breakage),
                    currency,
                })
            })
            .await
    }

    /// Runs a loyalty job now: `expire` (points past their date to breakage), `remind`
    /// (events for points expiring soon) or `tiers` (review every member's tier).
    pub async fn run_loyalty_job(
        &self,
        _access: Access<'_, perm::LoyaltyManage>,
        job: &str,
    ) -> ServiceResult<JobReport> {
        let started = std::time::Instant::now();
        let mut report = match job {
            "expire" => self.expire_points().await?,
            "remind" => self.remind_expiring_points().await?,
            "tiers" => self.recompute_tiers().await?,
            other => {
                return Err(ServiceError::invalid(
                    "job",
                    "job.unknown",
                    format!("`{other}` is not a job: expire, remind or tiers"),
                ));
            }
        };
        report.duration_ms = started.elapsed().as_millis() as i64;
        Ok(report)
    }

    /// How many blocks of a loyalty job run at once: one on SQLite (one writer), up to
    /// `database.postgres_job_parallelism` on PostgreSQL, each block on its own connection.
    fn job_parallelism(&self) -> usize {
        match self.database().backend() {
            cardcrm_store::Backend::Sqlite => 1,
            cardcrm_store::Backend::Postgres => self
                .settings()
                .database
                .postgres_job_parallelism
                .clamp(1, self.settings().database.postgres_connections.max(1)),
        }
    }

    /// Members per unit of work of the loyalty jobs (a block of ids for the expiry, a page
    /// for the tier review).
    fn job_block_members(&self) -> i64 {
        self.settings().database.job_block_members.clamp(1, cardcrm_domain::limits::JOB_BLOCK_MEMBERS_MAX)
    }

    /// Moves every point past its expiry to breakage, one unit of work per block of members
    /// (several blocks at once on PostgreSQL).
    pub async fn expire_points(&self) -> ServiceResult<JobReport> {
        let now_ms = self.now_ms();
        let mut report = JobReport { job: "expire".into(), ..JobReport::default() };
        let Some((low, high)) =
            self.database().read(move |conn| ServiceResult::Ok(repo::expiring_range(conn, now_ms)?)).await?
        else {
            return Ok(report);
        };
        let parallel = self.job_parallelism();
        let block = self.job_block_members();
        let mut running = std::collections::VecDeque::new();
        let mut from = low;
        while from <= high || !running.is_empty() {
            if from <= high && running.len() < parallel {
                let to = from + block;
                running.push_back(tokio::spawn(expire_block(self.database().clone(), from, to, now_ms)));
                from = to;
                continue;
            }
            let Some(oldest) = running.pop_front() else { break };
            let (accounts, points) = oldest.await.map_err(|error| {
                ServiceError::Store(StoreError::Invariant(format!("an expiry block stopped: {error}")))
            })??;
            report.members += accounts;
            report.points += points;
        }
        Ok(report)
    }

    /// Raises a `points_expiring` event per member and expiry date within the programme's
    /// reminder window (once each).
    pub async fn remind_expiring_points(&self) -> ServiceResult<JobReport> {
        let now_ms = self.now_ms();
        let raised = self
            .database()
            .write(move |conn| {
                let programme = programme_at(conn, now_ms)?;
                ServiceResult::Ok(repo::raise_expiry_reminders(
                    conn,
                    now_ms,
                    programme.rules().reminder_days_before * 86_400_000,
                )?)
            })
            .await?;
        Ok(JobReport { job: "remind".into(), members: raised as i64, ..JobReport::default() })
    }

    /// Reviews every member's tier: renewals, grace periods, downgrades after grace, ends of
    /// overrides, and upgrades the purchases path did not see (a changed programme).
    ///
    /// Pages of members are read on the reader pool while the writer applies the previous
    /// page, so the two cores share the work; a member that changed between the read and the
    /// write (a purchase, an override) is read again inside the write and reviewed as it is.
    pub async fn recompute_tiers(&self) -> ServiceResult<JobReport> {
        let now_ms = self.now_ms();
        let zone = self.default_zone().clone();
        let mut report = JobReport { job: "tiers".into(), ..JobReport::default() };
        let window_zone = zone.clone();
        let from_month = self
            .database()
            .read(move |conn| {
                let programme = programme_at(conn, now_ms)?;
                ServiceResult::Ok(
                    month_index(now_ms, &window_zone) - programme.rules().tier_window_months + 1,
                )
            })
            .await?;
        let block = self.job_block_members();
        let read_page = |after: i64| {
            self.database().read(move |conn| {
                ServiceResult::Ok(repo::members_with_standing(conn, after, block, from_month)?)
            })
        };
        // Pages are written while the next is read; on PostgreSQL several pages are written
        // at once, each on its own connection.
        let parallel = self.job_parallelism();
        let mut running = std::collections::VecDeque::new();
        let mut page = read_page(0).await?;
        while !page.is_empty() {
            let seen = page.len() as i64;
            let last = page.last().map_or(i64::MAX, |(member, _)| member.customer_id);
            let more = seen == block;
            let zone = zone.clone();
            let database = self.database().clone();
            let write = async move {
                database
                    .write(move |conn| {
                        let programme = programme_at(conn, now_ms)?;
                        let due = |member: &MemberRecord, standing: &repo::Standing| {
                            member.review_at_ms <= now_ms
                                || member.override_until_ms.is_some_and(|until| until <= now_ms)
                                || programme.tier(&member.tier).is_none_or(|tier| {
                                    programme
                                        .qualified_tier(TierStanding {
                                            spend_minor: standing.spend_minor,
                                            visits: standing.visits,
                                            points: standing.points,
                                        })
                                        .is_some_and(|qualified| qualified.rank > tier.rank)
                                })
                        };
                        let reviews: Vec<repo::MemberReview> = page
                            .iter()
                            .filter(|(member, standing)| due(member, standing))
                            .filter_map(|(member, standing)| {
                                decide_review(
                                    &programme,
                                    member.clone(),
                                    *standing,
                                    now_ms,
                                    &zone,
                                    "tier review",
                                    false,
                                )
                            })
                            .collect();
                        let stale = repo::write_member_reviews(conn, &reviews)?;
                        let mut changed = reviews
                            .iter()
                            .filter(|review| {
                                review.tier_changed && !stale.contains(&review.member.customer_id)
                            })
                            .count() as i64;
                        // Changed since the page was read (a purchase, an override): reviewed as it is now.
                        for customer_id in stale {
                            if let Some(fresh) = repo::member(conn, customer_id)? {
                                let standing = repo::standing(conn, customer_id, from_month)?;
                                if due(&fresh, &standing)
                                    && apply_review(
                                        conn,
                                        &programme,
                                        fresh,
                                        standing,
                                        now_ms,
                                        &zone,
                                        "tier review",
                                        false,
                                    )?
                                    .is_some()
                                {
                                    changed += 1;
                                }
                            }
                        }
                        ServiceResult::Ok(changed)
                    })
                    .await
            };
            running.push_back(tokio::spawn(write));
            report.members += seen;
            let next = if more { read_page(last).await? } else { Vec::new() };
            while running.len() >= parallel || (next.is_empty() && !running.is_empty()) {
                let Some(oldest) = running.pop_front() else { break };
                report.changed += oldest.await.map_err(|error| {
                    ServiceError::Store(StoreError::Invariant(format!("a tier review page stopped: {error}")))
                })??;
            }
            page = next;
        }
        Ok(report)
    }
}

/// Expires the points of members with ids in `[from, to)` that are past their date: one
/// operation, one transfer per member account to breakage, the lots emptied. Returns
/// (accounts, points).
async fn expire_block(
    database: cardcrm_store::Database,
    from: i64,
    to: i64,
    now_ms: i64,
) -> ServiceResult<(i64, i64)> {
    database
        .write(move |conn| {
            let due = repo::expiring_points(conn, from, to, now_ms)?;
            if due == 0 {
                return Ok((0, 0));
            }
            let operation = OperationRecord {
                id: 0,
                kind: "points_expiry".into(),
                card_id: None,
                customer_id: None,
                store_id: None,
                reverses_operation_id: None,
                amount_minor: due,
                asset: POINTS_ASSET.into(),
                payment_method: None,
                detail_json: serde_json::json!({"customers_from": from, "customers_to": to}).to_string(),
                actor_kind: "system".into(),
                actor_id: None,
                actor_name: "points expiry".into(),
                source_ip: None,
                request_id: None,
                occurred_at_ms: now_ms,
            };
            let operation_id = ledger_repo::insert_operation(conn, &operation)?;
            let breakage = system_account(conn, "breakage", POINTS_ASSET, now_ms)?;
            let (accounts, points) =
                repo::expire_lots(conn, from, to, now_ms, operation_id, breakage.id, POINTS_ASSET)?;
            if points != due {
                return Err(ServiceError::Store(StoreError::Invariant(format!(
                    "expiry moved {points} points of {due}"
                ))));
            }
            Ok((accounts as i64, points))
        })
        .await
}

fn member_view(
    conn: &mut Conn<'_>,
    customer_id: i64,
    now_ms: i64,
    zone: &TimeZone,
) -> ServiceResult<MemberView> {
    require_customer(conn, customer_id)?;
    let programme = programme_at(conn, now_ms)?;
    let member = repo::member(conn, customer_id)?;
    let lots = repo::lots_of(conn, customer_id, false, LOTS_READ_MAX)?;
    let balance = points_balance(conn, customer_id)?;
    let spendable: i64 =
        lots.iter().filter(|lot| lot_balance(lot).spendable(now_ms)).map(|lot| lot.points_remaining).sum();
    let pending: i64 =
        lots.iter().filter(|lot| lot.available_at_ms > now_ms).map(|lot| lot.points_remaining).sum();
    let soon = now_ms + programme.rules().reminder_days_before.max(30) * 86_400_000;
    let expiring: i64 = lots
        .iter()
        .filter(|lot| lot.expires_at_ms.is_some_and(|at| at <= soon))
        .map(|lot| lot.points_remaining)
        .sum();
    let from_month = month_index(now_ms, zone) - programme.rules().tier_window_months + 1;
    let standing = repo::standing(conn, customer_id, from_month)?;
    let entry = programme
        .rules()
        .tiers
        .iter()
        .min_by_key(|tier| tier.rank)
        .map_or("ordinary".to_owned(), |tier| tier.tier.clone());
    let (tier, earned_tier, since, review, grace, until) = match &member {
        Some(member) => (
            effective_tier(member, now_ms).to_owned(),
            member.tier.clone(),
            member.tier_since_ms,
            member.review_at_ms,
            member.grace_until_ms,
            member.override_until_ms.filter(|until| *until > now_ms),
        ),
        None => (entry.clone(), entry, now_ms, now_ms, None, None),
    };
    let rank = programme.tier(&tier).map_or(0, |tier| tier.rank);
    let next = programme.next_tier(
        rank,
        TierStanding { spend_minor: standing.spend_minor, visits: standing.visits, points: standing.points },
    );
    Ok(MemberView {
        customer_id,
        points_balance: balance,
        points_spendable: spendable,
        points_pending: pending,
        points_owed: owed_points(conn, customer_id)?,
        points_expiring_soon: expiring,
        next_expiry: lots
            .iter()
            .filter(|lot| lot.points_remaining > 0)
            .filter_map(|lot| lot.expires_at_ms)
            .min()
            .map(format_ms),
        tier,
        earned_tier,
        tier_since: format_ms(since),
        review_at: format_ms(review),
        grace_until: grace.map(format_ms),
        override_until: until.map(format_ms),
        window_spend_minor: standing.spend_minor,
        window_visits: standing.visits,
        window_points: standing.points,
        next_tier: next.as_ref().map(|(tier, _)| tier.tier.clone()),
        next_tier_spend_minor: next.as_ref().map(|(_, missing)| missing.spend_minor),
        next_tier_visits: next.as_ref().map(|(_, missing)| missing.visits),
        next_tier_points: next.as_ref().map(|(_, missing)| missing.points),
        enrolled_at: member.as_ref().and_then(|member| member.enrolled_at_ms).map(format_ms),
        referred_by: member.as_ref().and_then(|member| member.referred_by),
    })
}

/// Points a member gave to other members since `since_ms`.
fn transferred_since(conn: &mut Conn<'_>, customer_id: i64, since_ms: i64) -> ServiceResult<i64> {
    let Some(account) = ledger_repo::account_ref(conn, &format!("member:{customer_id}:points"))? else {
        return Ok(0);
    };
    let postings = ledger_repo::postings(conn, &[account.id], since_ms, i64::MAX, 0, 1_000)?;
    Ok(postings
        .iter()
        .filter(|posting| posting.transfer.purpose == "points_transfer_out")
        .map(|posting| posting.transfer.amount_minor)
        .sum())
}

/// The balance of an account through transfer `through_id` (0: nothing yet).
fn balance_through(conn: &mut Conn<'_>, account_id: i64, through_id: i64) -> ServiceResult<i64> {
    if through_id == 0 {
        return Ok(0);
    }
    let mut balance = 0;
    let mut after = 0;
    loop {
        let page = ledger_repo::postings(conn, &[account_id], i64::MIN, i64::MAX, after, 1_000)?;
        let Some(last) = page.last().map(|posting| posting.transfer.id) else { break };
        for posting in page.iter().filter(|posting| posting.transfer.id <= through_id) {
            balance += posting.signed_minor;
        }
        if last >= through_id {
            break;
        }
        after = last;
    }
    Ok(balance)
}

fn programme_view(record: &ProgrammeRecord) -> ServiceResult<ProgrammeView> {
    let rules: ProgrammeRules = serde_json::from_str(&record.rules_json)
        .map_err(|error| ServiceError::Store(StoreError::Invariant(error.to_string())))?;
    Ok(ProgrammeView {
        version: record.version,
        effective_from: format_ms(record.effective_from_ms),
        rules,
        note: record.note.clone(),
        created_by: record.created_by.clone(),
        created_at: format_ms(record.created_at_ms),
    })
}

fn partner_view(partner: &reward_repo::PartnerRecord) -> PartnerView {
    PartnerView {
        id: partner.id,
        code: partner.code.clone(),
        name: partner.name.clone(),
        points_in_per_100: partner.points_in_per_100,
        points_out_per_100: partner.points_out_per_100,
        status: partner.status.clone(),
    }
}
