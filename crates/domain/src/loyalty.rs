//! The loyalty programme (C3) with no IO: what a basket earns and which rules fired, when a
//! points lot 积分批次 expires, which lots a redemption consumes, how a refund takes points
//! back, and which tier 会员等级 a member holds. Time and the time zone are parameters.
//!
//! Rounding, stated once: a basket's base points are
//! `floor(Σ line_paid × base_points × category% × store% / (base_per_minor × 10 000))`
//! (or rounded half up when the programme says `half_up`); every multiplier's extra points
//! are floored; bonuses are whole points. Multipliers do not compound: the tier multiplier
//! and the single highest promotion (birthday or a double-points window) each add
//! `base × (multiplier − 100%)`.

use std::collections::HashSet;

use jiff::{Timestamp, ToSpan, civil::Date, tz::TimeZone};
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, FieldErrors};

/// The ledger asset points are counted in.
pub const POINTS_ASSET: &str = "PTS";
/// Most points one operation may move.
pub const POINTS_MAX: i64 = 1_000_000_000;
/// Most entries of each list of a programme (category and store multipliers, windows).
pub const PROGRAMME_LIST_MAX: usize = 200;

/// How base points are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    #[default]
    Floor,
    HalfUp,
}

/// When points of a lot expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Expiry {
    /// At the end of the year `years_after` years after the year earned (1: end of next
    /// year), in the business's time zone.
    EndOfYear {
        years_after: i64,
    },
    /// `months` months after the moment earned.
    RollingMonths {
        months: i64,
    },
    Never,
}

/// What a refund does when the points it takes back were already spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShortfallPolicy {
    /// The member owes the rest: later earnings pay it off before they become spendable.
    #[default]
    NegativeBalance,
    /// Take what is left and record the shortfall on the refund.
    DeductRemaining,
}

/// Birthday points 生日积分: on the member's birthday, or during their birthday month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BirthdayPeriod {
    Day,
    Month,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BirthdayRule {
    pub period: BirthdayPeriod,
    pub multiplier_pct: i64,
    /// Most extra points this rule adds to one basket.
    #[serde(default)]
    pub cap_points: Option<i64>,
}

/// A double-points window 积分翻倍 (holidays, member days): local dates, inclusive, and
/// optionally only some weekdays (1 = Monday … 7 = Sunday).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRule {
    pub name: String,
    pub from: Date,
    pub to: Date,
    #[serde(default)]
    pub weekdays: Option<Vec<i8>>,
    pub multiplier_pct: i64,
    #[serde(default)]
    pub cap_points: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryMultiplier {
    pub category: String,
    /// 0 excludes the category; 200 doubles it.
    pub multiplier_pct: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreMultiplier {
    pub store_id: i64,
    pub multiplier_pct: i64,
}

/// What a tier asks over the rolling window; a member qualifies by meeting any one of the
/// thresholds that are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierQualification {
    pub tier: String,
    pub rank: i64,
    #[serde(default)]
    pub spend_minor: Option<i64>,
    #[serde(default)]
    pub visits: Option<i64>,
    #[serde(default)]
    pub points: Option<i64>,
}

/// A loyalty programme as an admin writes it: earning rules, lot expiry, refunds,
/// redemption, tiers. Versions of it take effect at their dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgrammeRules {
    /// `base_points` points per `base_per_minor` minor units paid (1 per ¥1: 1 and 100).
    pub base_points: i64,
    pub base_per_minor: i64,
    pub rounding: Rounding,
    pub category_multipliers: Vec<CategoryMultiplier>,
    pub store_multipliers: Vec<StoreMultiplier>,
    /// Apply the tier's points multiplier.
    pub tier_multiplier: bool,
    pub birthday: Option<BirthdayRule>,
    pub windows: Vec<WindowRule>,
    pub first_purchase_bonus_points: i64,
    pub signup_bonus_points: i64,
    pub referral_bonus_points: i64,
    /// Most points one member earns from purchases in one local day.
    pub member_daily_cap_points: Option<i64>,
    pub expiry: Expiry,
    /// Days new points stay locked (the return window) before they can be spent.
    pub pending_days: i64,
    pub refund_shortfall: ShortfallPolicy,
    /// What 100 points are worth at checkout, in minor units (100: 100 points = ¥1).
    pub redeem_minor_per_100_points: i64,
    /// Most of a basket points may pay, in percent.
    pub redeem_max_basket_pct: i64,
    /// Days before expiry a reminder event is raised.
    pub reminder_days_before: i64,
    /// Most points a member may give to other members in one local day.
    pub transfer_daily_max_points: i64,
    pub tiers: Vec<TierQualification>,
    pub tier_window_months: i64,
    pub tier_review_months: i64,
    pub tier_grace_days: i64,
}

impl Default for ProgrammeRules {
    fn default() -> Self {
        Self {
            base_points: 1,
            base_per_minor: 100,
            rounding: Rounding::Floor,
            category_multipliers: Vec::new(),
            store_multipliers: Vec::new(),
            tier_multiplier: true,
            birthday: Some(BirthdayRule {
                period: BirthdayPeriod::Day,
                multiplier_pct: 200,
                cap_points: None,
            }),
            windows: Vec::new(),
            first_purchase_bonus_points: 0,
            signup_bonus_points: 0,
            referral_bonus_points: 0,
            member_daily_cap_points: None,
            expiry: Expiry::EndOfYear { years_after: 1 },
            pending_days: 0,
            refund_shortfall: ShortfallPolicy::NegativeBalance,
            redeem_minor_per_100_points: 100,
            redeem_max_basket_pct: 100,
            reminder_days_before: 30,
            transfer_daily_max_points: 10_000,
            tiers: vec![
                TierQualification {
                    tier: "ordinary".into(),
                    rank: 0,
                    spend_minor: None,
                    visits: None,
                    points: None,
                },
                TierQualification {
                    tier: "silver".into(),
                    rank: 1,
                    spend_minor: Some(200_000),
                    visits: Some(12),
                    points: None,
                },
                TierQualification {
                    tier: "gold".into(),
                    rank: 2,
                    spend_minor: Some(1_000_000),
                    visits: Some(36),
                    points: None,
                },
                TierQualification {
                    tier: "platinum".into(),
                    rank: 3,
                    spend_minor: Some(5_000_000),
                    visits: None,
                    points: None,
                },
            ],
            tier_window_months: 12,
            tier_review_months: 12,
            tier_grace_days: 30,
        }
    }
}

/// A programme whose rules were checked: multipliers in range, lists bounded, tiers ranked
/// without gaps in what they ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programme {
    rules: ProgrammeRules,
}

fn check_range(errors: &mut FieldErrors, field: &str, value: i64, min: i64, max: i64) {
    if !(min..=max).contains(&value) {
        errors.push(FieldError::new(
            format!("rules.{field}"),
            "rules.out_of_range",
            format!("{field} is {min} to {max}, not {value}"),
        ));
    }
}

impl Programme {
    pub fn parse(rules: ProgrammeRules) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        check_range(&mut errors, "base_points", rules.base_points, 0, 10_000);
        check_range(&mut errors, "base_per_minor", rules.base_per_minor, 1, 100_000_000);
        for (index, multiplier) in rules.category_multipliers.iter().enumerate() {
            check_range(
                &mut errors,
                &format!("category_multipliers[{index}].multiplier_pct"),
                multiplier.multiplier_pct,
                0,
                10_000,
            );
            if multiplier.category.trim().is_empty() || multiplier.category.len() > 64 {
                errors.push(FieldError::new(
                    format!("rules.category_multipliers[{index}].category"),
                    "rules.invalid",
                    "a category is 1 to 64 characters",
                ));
            }
        }
        for (index, multiplier) in rules.store_multipliers.iter().enumerate() {
            check_range(
                &mut errors,
                &format!("store_multipliers[{index}].multiplier_pct"),
                multiplier.multiplier_pct,
                0,
                10_000,
            );
        }
        if let Some(birthday) = &rules.birthday {
            check_range(&mut errors, "birthday.multiplier_pct", birthday.multiplier_pct, 100, 10_000);
            check_range(&mut errors, "birthday.cap_points", birthday.cap_points.unwrap_or(0), 0, POINTS_MAX);
        }
        for (index, window) in rules.windows.iter().enumerate() {
            check_range(
                &mut errors,
                &format!("windows[{index}].multiplier_pct"),
                window.multiplier_pct,
                100,
                10_000,
            );
            check_range(
                &mut errors,
                &format!("windows[{index}].cap_points"),
                window.cap_points.unwrap_or(0),
                0,
                POINTS_MAX,
            );
            if window.to < window.from {
                errors.push(FieldError::new(
                    format!("rules.windows[{index}].to"),
                    "rules.invalid",
                    "a window ends on or after its start",
                ));
            }
            if window.name.trim().is_empty() || window.name.len() > 64 {
                errors.push(FieldError::new(
                    format!("rules.windows[{index}].name"),
                    "rules.invalid",
                    "a window's name is 1 to 64 characters",
                ));
            }
            if window
                .weekdays
                .as_ref()
                .is_some_and(|days| days.is_empty() || days.iter().any(|day| !(1..=7).contains(day)))
            {
                errors.push(FieldError::new(
                    format!("rules.windows[{index}].weekdays"),
                    "rules.invalid",
                    "weekdays are 1 (Monday) to 7 (Sunday)",
                ));
            }
        }
        for (name, list) in [
            ("category_multipliers", rules.category_multipliers.len()),
            ("store_multipliers", rules.store_multipliers.len()),
            ("windows", rules.windows.len()),
        ] {
            if list > PROGRAMME_LIST_MAX {
                errors.push(FieldError::new(
                    format!("rules.{name}"),
                    "rules.too_many",
                    format!("at most {PROGRAMME_LIST_MAX} entries"),
                ));
            }
        }
        for (field, value) in [
            ("first_purchase_bonus_points", rules.first_purchase_bonus_points),
            ("signup_bonus_points", rules.signup_bonus_points),
            ("referral_bonus_points", rules.referral_bonus_points),
            ("member_daily_cap_points", rules.member_daily_cap_points.unwrap_or(0)),
            ("transfer_daily_max_points", rules.transfer_daily_max_points),
        ] {
            check_range(&mut errors, field, value, 0, POINTS_MAX);
        }
        match rules.expiry {
            Expiry::EndOfYear { years_after } => {
                check_range(&mut errors, "expiry.years_after", years_after, 0, 50)
            }
            Expiry::RollingMonths { months } => check_range(&mut errors, "expiry.months", months, 1, 600),
            Expiry::Never => {}
        }
        check_range(&mut errors, "pending_days", rules.pending_days, 0, 365);
        check_range(
            &mut errors,
            "redeem_minor_per_100_points",
            rules.redeem_minor_per_100_points,
            1,
            1_000_000,
        );
        check_range(&mut errors, "redeem_max_basket_pct", rules.redeem_max_basket_pct, 0, 100);
        check_range(&mut errors, "reminder_days_before", rules.reminder_days_before, 0, 365);
        check_range(&mut errors, "tier_window_months", rules.tier_window_months, 1, 60);
        check_range(&mut errors, "tier_review_months", rules.tier_review_months, 1, 60);
        check_range(&mut errors, "tier_grace_days", rules.tier_grace_days, 0, 365);
        let mut ranks = HashSet::new();
        let mut codes = HashSet::new();
        for (index, tier) in rules.tiers.iter().enumerate() {
            if !ranks.insert(tier.rank) || !codes.insert(tier.tier.clone()) {
                errors.push(FieldError::new(
                    format!("rules.tiers[{index}]"),
                    "rules.invalid",
                    "each tier and rank appears once",
                ));
            }
            for (name, value) in
                [("spend_minor", tier.spend_minor), ("visits", tier.visits), ("points", tier.points)]
            {
                check_range(
                    &mut errors,
                    &format!("tiers[{index}].{name}"),
                    value.unwrap_or(0),
                    0,
                    i64::MAX / 4,
                );
            }
        }
        if !rules
            .tiers
            .iter()
            .any(|tier| tier.spend_minor.is_none() && tier.visits.is_none() && tier.points.is_none())
        {
            errors.push(FieldError::new(
                "rules.tiers",
                "rules.invalid",
                "one tier (the entry tier) asks nothing",
            ));
        }
        if errors.is_empty() { Ok(Self { rules }) } else { Err(errors) }
    }

    pub fn rules(&self) -> &ProgrammeRules {
        &self.rules
    }

    /// The value of `points` at checkout in minor units (floored).
    pub fn points_value_minor(&self, points: i64) -> i64 {
        (i128::from(points) * i128::from(self.rules.redeem_minor_per_100_points) / 100) as i64
    }

    /// The fewest points worth at least `minor` (ceiling): what paying `minor` costs.
    pub fn points_for_minor(&self, minor: i64) -> i64 {
        let per_100 = i128::from(self.rules.redeem_minor_per_100_points);
        ((i128::from(minor) * 100 + per_100 - 1) / per_100) as i64
    }

    /// When a lot earned at `earned` expires (`None`: never).
    pub fn expires_at(&self, earned: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        match self.rules.expiry {
            Expiry::Never => None,
            Expiry::EndOfYear { years_after } => {
                let year = earned.to_zoned(zone.clone()).year() as i64 + years_after + 1;
                let first = Date::new(i16::try_from(year).ok()?, 1, 1).ok()?;
                first.to_zoned(zone.clone()).ok().map(|zoned| zoned.timestamp())
            }
            Expiry::RollingMonths { months } => {
                earned.to_zoned(zone.clone()).checked_add(months.months()).ok().map(|zoned| zoned.timestamp())
            }
        }
    }

    /// What a basket earns for a member: points and every rule that fired.
    pub fn earn(&self, basket: &[EarnLine], member: &EarnContext) -> Earning {
        let rules = &self.rules;
        let mut fired = Vec::new();
        let store_pct = member
            .store_id
            .and_then(|store| rules.store_multipliers.iter().find(|entry| entry.store_id == store))
            .map_or(100, |entry| entry.multiplier_pct);
        let mut scaled: i128 = 0;
        let mut excluded = 0;
        for line in basket {
            let category_pct = line
                .category
                .as_deref()
                .and_then(|category| {
                    rules.category_multipliers.iter().find(|entry| entry.category == category)
                })
                .map_or(100, |entry| entry.multiplier_pct);
            if category_pct == 0 {
                excluded += line.paid_minor;
            }
            scaled += i128::from(line.paid_minor.max(0)) * i128::from(category_pct) * i128::from(store_pct);
        }
        let numerator = scaled * i128::from(rules.base_points);
        let denominator = i128::from(rules.base_per_minor) * 10_000;
        let base = match rules.rounding {
            Rounding::Floor => numerator / denominator,
            Rounding::HalfUp => (numerator * 2 + denominator) / (denominator * 2),
        } as i64;
        fired.push(FiredRule::new(
            "base",
            format!(
                "{} per {} paid{}",
                rules.base_points,
                rules.base_per_minor,
                if store_pct == 100 { String::new() } else { format!(", store {store_pct}%") }
            ),
            base,
        ));
        if excluded > 0 {
            fired.push(FiredRule::new("category", format!("{excluded} paid in excluded categories"), 0));
        }
        let mut points = base;
        if rules.tier_multiplier && member.tier_multiplier_pct != 100 {
            let extra = base * (member.tier_multiplier_pct - 100) / 100;
            points += extra;
            fired.push(FiredRule::new(
                "tier",
                format!("tier multiplier {}%", member.tier_multiplier_pct),
                extra,
            ));
        }
        // The single highest promotion applies.
        let mut promotion: Option<(String, String, i64, Option<i64>)> = None;
        if let (Some(rule), Some((month, day))) = (&rules.birthday, member.birthday) {
            let today = member.local_date;
            let matches =
                today.month() == month && (rule.period == BirthdayPeriod::Month || today.day() == day);
            if matches {
                promotion = Some((
                    "birthday".into(),
                    format!("birthday {:?} {}%", rule.period, rule.multiplier_pct).to_lowercase(),
                    rule.multiplier_pct,
                    rule.cap_points,
                ));
            }
        }
        for window in &rules.windows {
            let weekday = member.local_date.weekday().to_monday_one_offset();
            let in_window = member.local_date >= window.from
                && member.local_date <= window.to
                && window.weekdays.as_ref().is_none_or(|days| days.contains(&weekday));
            if in_window && promotion.as_ref().is_none_or(|(_, _, best, _)| window.multiplier_pct > *best) {
                promotion = Some((
                    "window".into(),
                    format!("{} {}%", window.name, window.multiplier_pct),
                    window.multiplier_pct,
                    window.cap_points,
                ));
            }
        }
        if let Some((rule, detail, multiplier, cap)) = promotion {
            let mut extra = base * (multiplier - 100) / 100;
            if let Some(cap) = cap {
                extra = extra.min(cap);
            }
            points += extra;
            fired.push(FiredRule::new(&rule, detail, extra));
        }
        if member.first_purchase && rules.first_purchase_bonus_points > 0 && base > 0 {
            points += rules.first_purchase_bonus_points;
            fired.push(FiredRule::new(
                "first_purchase",
                "first purchase bonus".into(),
                rules.first_purchase_bonus_points,
            ));
        }
        if let Some(cap) = rules.member_daily_cap_points {
            let room = (cap - member.earned_today_points).max(0);
            if points > room {
                fired.push(FiredRule::new(
                    "member_daily_cap",
                    format!("at most {cap} a day; {} earned today", member.earned_today_points),
                    room - points,
                ));
                points = room;
            }
        }
        debug_assert_eq!(points, fired.iter().map(|rule| rule.points).sum::<i64>());
        Earning { points: points.clamp(0, POINTS_MAX), fired }
    }

    /// The highest tier `standing` qualifies for.
    pub fn qualified_tier(&self, standing: TierStanding) -> Option<&TierQualification> {
        self.rules
            .tiers
            .iter()
            .filter(|tier| {
                let asks = [tier.spend_minor, tier.visits, tier.points];
                asks.iter().all(Option::is_none)
                    || tier.spend_minor.is_some_and(|need| standing.spend_minor >= need)
                    || tier.visits.is_some_and(|need| standing.visits >= need)
                    || tier.points.is_some_and(|need| standing.points >= need)
            })
            .max_by_key(|tier| tier.rank)
    }

    pub fn tier(&self, code: &str) -> Option<&TierQualification> {
        self.rules.tiers.iter().find(|tier| tier.tier == code)
    }

    /// The next tier above `rank`, and what is still missing for it.
    pub fn next_tier(&self, rank: i64, standing: TierStanding) -> Option<(&TierQualification, TierStanding)> {
        let next = self.rules.tiers.iter().filter(|tier| tier.rank > rank).min_by_key(|tier| tier.rank)?;
        let missing = |need: Option<i64>, have: i64| need.map_or(-1, |need| (need - have).max(0));
        Some((
            next,
            TierStanding {
                spend_minor: missing(next.spend_minor, standing.spend_minor),
                visits: missing(next.visits, standing.visits),
                points: missing(next.points, standing.points),
            },
        ))
    }

    /// What a member's tier becomes. Upgrades happen at once; a member below their tier
    /// keeps it until the review date, then for the grace period, then drops to what they
    /// qualify for.
    pub fn review_tier(
        &self,
        member: &TierState,
        qualified: &TierQualification,
        now: Timestamp,
        zone: &TimeZone,
    ) -> TierDecision {
        let review_after = |from: Timestamp| {
            from.to_zoned(zone.clone())
                .checked_add(self.rules.tier_review_months.months())
                .map(|zoned| zoned.timestamp())
                .unwrap_or(from)
        };
        if qualified.rank > member.rank {
            return TierDecision::Upgrade { tier: qualified.tier.clone(), review_at: review_after(now) };
        }
        if now < member.review_at {
            return TierDecision::Keep;
        }
        if qualified.rank >= member.rank {
            let mut next = member.review_at;
            while next <= now {
                let after = review_after(next);
                if after <= next {
                    break;
                }
                next = after;
            }
            return TierDecision::Renew { review_at: next };
        }
        let grace_end = member.grace_until.unwrap_or_else(|| {
            member
                .review_at
                .checked_add(jiff::SignedDuration::from_hours(24 * self.rules.tier_grace_days))
                .unwrap_or(member.review_at)
        });
        if now >= grace_end {
            TierDecision::Downgrade { tier: qualified.tier.clone(), review_at: review_after(now) }
        } else if member.grace_until.is_none() {
            TierDecision::StartGrace { until: grace_end }
        } else {
            TierDecision::Keep
        }
    }
}

/// A basket line as earning sees it: what the customer paid for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarnLine {
    pub category: Option<String>,
    pub paid_minor: i64,
}

/// The member and moment a basket earns for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarnContext {
    pub tier_multiplier_pct: i64,
    pub store_id: Option<i64>,
    /// The date where the purchase happened (the store's time zone).
    pub local_date: Date,
    /// Month and day of birth.
    pub birthday: Option<(i8, i8)>,
    pub first_purchase: bool,
    pub earned_today_points: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiredRule {
    pub rule: String,
    pub detail: String,
    pub points: i64,
}

impl FiredRule {
    fn new(rule: &str, detail: String, points: i64) -> Self {
        Self { rule: rule.to_owned(), detail, points }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Earning {
    pub points: i64,
    pub fired: Vec<FiredRule>,
}

/// What counts toward a tier over the window (never the spendable balance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierStanding {
    pub spend_minor: i64,
    pub visits: i64,
    pub points: i64,
}

/// A member's tier as the review sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierState {
    pub rank: i64,
    pub review_at: Timestamp,
    pub grace_until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierDecision {
    Keep,
    Upgrade {
        tier: String,
        review_at: Timestamp,
    },
    /// Still qualified at the review date: the next review is a period later.
    Renew {
        review_at: Timestamp,
    },
    StartGrace {
        until: Timestamp,
    },
    Downgrade {
        tier: String,
        review_at: Timestamp,
    },
}

/// A lot as consumption sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotBalance {
    pub id: i64,
    pub remaining: i64,
    pub available_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

impl LotBalance {
    pub fn spendable(&self, now_ms: i64) -> bool {
        self.remaining > 0
            && self.available_at_ms <= now_ms
            && self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

/// Fewer spendable points than asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotEnoughPoints {
    pub spendable: i64,
}

/// Which lots pay `points`: spendable lots, soonest expiry first (lots that never expire
/// last), then oldest. Returns (lot id, points taken) pairs adding up to `points`.
pub fn plan_consumption(
    lots: &[LotBalance],
    points: i64,
    now_ms: i64,
) -> Result<Vec<(i64, i64)>, NotEnoughPoints> {
    let mut usable: Vec<&LotBalance> = lots.iter().filter(|lot| lot.spendable(now_ms)).collect();
    let spendable: i64 = usable.iter().map(|lot| lot.remaining).sum();
    if spendable < points {
        return Err(NotEnoughPoints { spendable });
    }
    usable.sort_by_key(|lot| (lot.expires_at_ms.unwrap_or(i64::MAX), lot.id));
    let mut left = points;
    let mut plan = Vec::new();
    for lot in usable {
        if left == 0 {
            break;
        }
        let take = lot.remaining.min(left);
        plan.push((lot.id, take));
        left -= take;
    }
    debug_assert_eq!(left, 0);
    Ok(plan)
}

/// Which lots a take-back of `points` (a refund of the purchase that earned them) uses: the
/// lot the purchase made first (spendable or still pending), then the others as
/// [`plan_consumption`] orders them, pending ones included. What no lot covers is the
/// shortfall.
pub fn plan_clawback(
    lots: &[LotBalance],
    origin_lot: Option<i64>,
    points: i64,
    now_ms: i64,
) -> (Vec<(i64, i64)>, i64) {
    let live = |lot: &&LotBalance| lot.remaining > 0 && lot.expires_at_ms.is_none_or(|at| at > now_ms);
    let mut ordered: Vec<&LotBalance> = lots.iter().filter(live).collect();
    ordered.sort_by_key(|lot| (Some(lot.id) != origin_lot, lot.expires_at_ms.unwrap_or(i64::MAX), lot.id));
    let mut left = points;
    let mut plan = Vec::new();
    for lot in ordered {
        if left == 0 {
            break;
        }
        let take = lot.remaining.min(left);
        plan.push((lot.id, take));
        left -= take;
    }
    (plan, left)
}

/// The share of `total` that `refunded_minor` of `paid_minor` stands for, such that shares of
/// successive partial refunds add up to `total` exactly when everything is refunded:
/// `floor(total × refunded_so_far / paid) − taken_before`.
pub fn proportional_share(total: i64, paid_minor: i64, refunded_so_far_minor: i64, taken_before: i64) -> i64 {
    if paid_minor <= 0 {
        return total - taken_before;
    }
    let so_far = refunded_so_far_minor.clamp(0, paid_minor);
    let due = (i128::from(total) * i128::from(so_far) / i128::from(paid_minor)) as i64;
    (due - taken_before).max(0)
}

/// What a coupon 优惠券 takes off: `eligible_minor` is what the lines it applies to still
/// cost. Amount off is at most that; percent off is floored and capped; 满减 needs the
/// threshold met; a gift takes nothing off the price.
pub fn coupon_discount(
    kind: &str,
    amount_off_minor: i64,
    percent_off_bp: i64,
    cap_minor: Option<i64>,
    threshold_minor: i64,
    eligible_minor: i64,
) -> i64 {
    if eligible_minor <= 0 || eligible_minor < threshold_minor {
        return 0;
    }
    let discount = match kind {
        "amount_off" | "threshold_off" => amount_off_minor,
        "percent_off" => {
            let off = (i128::from(eligible_minor) * i128::from(percent_off_bp) / 10_000) as i64;
            cap_minor.map_or(off, |cap| off.min(cap))
        }
        _ => 0,
    };
    discount.clamp(0, eligible_minor)
}

#[cfg(test)]
mod coupon_tests {
    use super::coupon_discount;

    #[test]
    fn coupon_kinds() {
        assert_eq!(coupon_discount("threshold_off", 3_000, 0, None, 20_000, 19_999), 0);
        assert_eq!(coupon_discount("threshold_off", 3_000, 0, None, 20_000, 20_000), 3_000);
        assert_eq!(coupon_discount("percent_off", 0, 1_500, Some(1_000), 0, 10_000), 1_000);
        assert_eq!(coupon_discount("percent_off", 0, 1_500, None, 0, 10_001), 1_500);
        assert_eq!(coupon_discount("amount_off", 5_000, 0, None, 0, 2_000), 2_000);
        assert_eq!(coupon_discount("gift", 5_000, 0, None, 0, 2_000), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn programme() -> Programme {
        Programme::parse(ProgrammeRules::default()).unwrap()
    }

    fn context(date: &str) -> EarnContext {
        EarnContext {
            tier_multiplier_pct: 100,
            store_id: None,
            local_date: date.parse().unwrap(),
            birthday: Some((3, 15)),
            first_purchase: false,
            earned_today_points: 0,
        }
    }

    fn line(paid: i64) -> EarnLine {
        EarnLine { category: None, paid_minor: paid }
    }

    #[test]
    fn one_point_per_yuan_floored() {
        let earning = programme().earn(&[line(12_399)], &context("2026-06-01"));
        assert_eq!(earning.points, 123);
        assert_eq!(earning.fired[0].rule, "base");
    }

    #[test]
    fn birthday_doubles_only_on_the_day_and_tier_adds() {
        let mut at = context("2026-03-15");
        at.tier_multiplier_pct = 150;
        let earning = programme().earn(&[line(10_000)], &at);
        assert_eq!(earning.points, 100 + 50 + 100);
        assert!(earning.fired.iter().any(|rule| rule.rule == "birthday"));
        let earning = programme().earn(&[line(10_000)], &context("2026-03-16"));
        assert_eq!(earning.points, 100);
    }

    #[test]
    fn exclusions_windows_caps() {
        let mut rules = ProgrammeRules::default();
        rules.category_multipliers.push(CategoryMultiplier { category: "tobacco".into(), multiplier_pct: 0 });
        rules.windows.push(WindowRule {
            name: "双11".into(),
            from: "2026-11-11".parse().unwrap(),
            to: "2026-11-11".parse().unwrap(),
            weekdays: None,
            multiplier_pct: 300,
            cap_points: Some(150),
        });
        rules.member_daily_cap_points = Some(300);
        let programme = Programme::parse(rules).unwrap();
        let basket = [EarnLine { category: Some("tobacco".into()), paid_minor: 50_000 }, line(10_000)];
        assert_eq!(programme.earn(&basket, &context("2026-11-10")).points, 100);
        // The window would add 200; its cap keeps it at 150.
        assert_eq!(programme.earn(&basket, &context("2026-11-11")).points, 250);
        let mut late = context("2026-11-11");
        late.earned_today_points = 200;
        assert_eq!(programme.earn(&basket, &late).points, 100);
    }

    #[test]
    fn refuses_bad_programmes() {
        let rules = ProgrammeRules { base_per_minor: 0, tiers: Vec::new(), ..ProgrammeRules::default() };
        let errors = Programme::parse(rules).unwrap_err();
        assert!(errors.0.iter().any(|error| error.field == "rules.base_per_minor"));
        assert!(errors.0.iter().any(|error| error.field == "rules.tiers"));
    }

    #[test]
    fn end_of_next_year_in_the_zone() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let earned: Timestamp = "2026-12-31T17:00:00Z".parse().unwrap(); // 2027-01-01 01:00 local
        let expires = programme().expires_at(earned, &zone).unwrap();
        assert_eq!(expires.to_string(), "2028-12-31T16:00:00Z");
    }

    #[test]
    fn tiers_upgrade_at_once_downgrade_after_review_and_grace() {
        let programme = programme();
        let zone = TimeZone::UTC;
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let gold =
            programme.qualified_tier(TierStanding { spend_minor: 1_000_000, visits: 0, points: 0 }).unwrap();
        assert_eq!(gold.tier, "gold");
        let member = TierState { rank: 1, review_at: now, grace_until: None };
        assert!(matches!(programme.review_tier(&member, gold, now, &zone), TierDecision::Upgrade { .. }));
        let ordinary = programme.qualified_tier(TierStanding::default()).unwrap();
        let member =
            TierState { rank: 2, review_at: "2026-07-01T00:00:00Z".parse().unwrap(), grace_until: None };
        assert_eq!(programme.review_tier(&member, ordinary, now, &zone), TierDecision::Keep);
        let review: Timestamp = "2026-07-01T00:00:00Z".parse().unwrap();
        let decision = programme.review_tier(&member, ordinary, review, &zone);
        assert_eq!(decision, TierDecision::StartGrace { until: "2026-07-31T00:00:00Z".parse().unwrap() });
        let in_grace = TierState { grace_until: Some("2026-07-31T00:00:00Z".parse().unwrap()), ..member };
        assert_eq!(
            programme.review_tier(&in_grace, ordinary, "2026-07-30T00:00:00Z".parse().unwrap(), &zone),
            TierDecision::Keep
        );
        assert!(matches!(
            programme.review_tier(&in_grace, ordinary, "2026-07-31T00:00:00Z".parse().unwrap(), &zone),
            TierDecision::Downgrade { ref tier, .. } if tier == "ordinary"
        ));
    }

    #[test]
    fn consumption_takes_soonest_expiry_first() {
        let lots = [
            LotBalance { id: 1, remaining: 50, available_at_ms: 0, expires_at_ms: Some(300) },
            LotBalance { id: 2, remaining: 50, available_at_ms: 0, expires_at_ms: Some(200) },
            LotBalance { id: 3, remaining: 50, available_at_ms: 500, expires_at_ms: Some(100_000) },
            LotBalance { id: 4, remaining: 50, available_at_ms: 0, expires_at_ms: None },
        ];
        assert_eq!(plan_consumption(&lots, 120, 10).unwrap(), vec![(2, 50), (1, 50), (4, 20)]);
        assert_eq!(plan_consumption(&lots, 200, 10), Err(NotEnoughPoints { spendable: 150 }));
        let (plan, short) = plan_clawback(&lots, Some(3), 80, 10);
        assert_eq!((plan, short), (vec![(3, 50), (2, 30)], 0));
    }

    proptest! {
        #[test]
        fn shares_of_partial_refunds_add_up(total in 0i64..100_000, paid in 1i64..1_000_000, cuts in proptest::collection::vec(1i64..1_000, 1..8)) {
            let mut refunded = 0;
            let mut taken = 0;
            for cut in cuts {
                refunded = (refunded + cut).min(paid);
                taken += proportional_share(total, paid, refunded, taken);
                prop_assert!(taken <= total);
            }
            taken += proportional_share(total, paid, paid, taken);
            prop_assert_eq!(taken, total);
        }

        #[test]
        fn consumption_is_exact(remaining in proptest::collection::vec(0i64..1_000, 0..12), points in 0i64..5_000) {
            let lots: Vec<LotBalance> = remaining.iter().enumerate().map(|(index, remaining)| LotBalance {
                id: index as i64, remaining: *remaining, available_at_ms: 0, expires_at_ms: Some(1_000 - index as i64),
            }).collect();
            match plan_consumption(&lots, points, 1) {
                Ok(plan) => {
                    prop_assert_eq!(plan.iter().map(|(_, take)| take).sum::<i64>(), points);
                    for (id, take) in plan {
                        prop_assert!(take <= lots[id as usize].remaining && take > 0);
                    }
                }
                Err(short) => prop_assert!(short.spendable < points),
            }
        }
    }
}
