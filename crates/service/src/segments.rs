//! Analyses of the database's purchases kept as runs: each run's segments 分群 are lists of
//! customers that campaigns target and the console lists, with the rule that put each
//! customer there. A run is one of `rfm`, `kmeans`, `lifecycle`, `churn`, `clv`, as of a
//! day; runs are never changed (a later run of the same kind is simply newer).
//!
//! Segments per kind (codes are stable; names in English and 简体中文):
//! - `rfm`: the eight classic groups (`important_value` 重要价值客户 … `general_win_back`),
//!   high/low against the mean of each figure, and the ten score segments (`champions` …
//!   `hibernating`) over the quintile scores. Score: the RFM cell, R·100 + F·10 + M.
//! - `kmeans`: `cluster_0` … (cluster 0 the most valuable), labelled by their profile.
//!   Score: none.
//! - `lifecycle`: `new`, `growing`, `mature`, `declining`, `won_back`, `dormant`, `lost`
//!   by the rules in `cardcrm_analytics::lifecycle`. Score: days since the last purchase.
//! - `churn`: `churn_risk_high` (probability ≥ 0.6), `churn_risk_medium` (≥ 0.3),
//!   `churn_risk_low`. Score: the probability of no purchase in the window.
//! - `clv`: value tiers 价值分层 by predicted lifetime value: `value_high` 高价值 (the top
//!   share, 20% by default), `value_medium` 中价值 (the next 30%), `value_low` 低价值 (the
//!   rest). Score: the predicted CLV in major units.
//! - `loyalty`: `loyal` 忠诚客户 and `potentially_loyal` 潜在忠诚客户 by the score and rules
//!   of `cardcrm_analytics::loyalty` (RFM scores, tenure, lifecycle stage). Score: the
//!   loyalty score, 0 to 100.
//!
//! Purchases are read from the database as the file analyses read a file: a merged
//! customer's purchases count for the customer they were merged into; a refund lowers what
//! its customer paid (never below zero) and is not a visit.

use std::io::Write;

use cardcrm_analytics::{
    bgnbd::{self, Calibration},
    churn, clv,
    features::{PeriodUnit, period_summaries},
    gamma_gamma::{self, Spend},
    kmeans::{self, KmeansSettings},
    lifecycle::{self, LifecycleRules, Stage},
    loyalty::{self, Loyalty},
    rfm::{self, Cut, RfmGroup, RfmSettings, Segment},
};
use cardcrm_domain::{
    error::{FieldError, FieldErrors},
    limits::PageSize,
};
use cardcrm_store::{
    ForeignKeys,
    repo::analysis::{self as repo, MemberRecord, RunRecord, SegmentRecord},
};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::{
    Access, Services,
    analysis::{Collector, Keep, PurchaseFile, day_number},
    audit,
    clock::format_ms,
    error::{ServiceError, ServiceResult},
    perm,
    view::{Page, cursor_decode, cursor_encode},
};

/// The analyses a run can be.
pub const KINDS: [&str; 6] = ["rfm", "kmeans", "lifecycle", "churn", "clv", "loyalty"];
/// Most rows one export holds (a run of 20M customers in two RFM dimensions).
pub const EXPORT_ROWS_MAX: u64 = 40_000_000;
/// Churn probability from which a customer is at high risk, and at medium risk.
pub const CHURN_HIGH_FROM: f64 = 0.6;
pub const CHURN_MEDIUM_FROM: f64 = 0.3;

/// What to run: the kind, the analysis day, and the kind's settings (each optional, with
/// the defaults of `cardcrm analyze`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisRequest {
    /// rfm, kmeans, lifecycle, churn, clv or loyalty.
    pub kind: String,
    /// The analysis day, YYYY-MM-DD in the business's time zone; purchases up to and
    /// including it count. Default: today.
    pub as_of: Option<String>,
    /// kmeans: clusters, 1 to 64 (default 8).
    pub clusters: Option<usize>,
    /// kmeans: restarts from different seeds, 1 to 100 (default 4).
    pub restarts: Option<usize>,
    /// kmeans: seed of the k-means++ draws.
    pub seed: Option<u64>,
    /// lifecycle, loyalty: days without a purchase after which a customer is dormant (default 180).
    pub dormant_days: Option<i32>,
    /// lifecycle, loyalty: days without a purchase after which a customer is lost (default 365).
    pub lost_days: Option<i32>,
    /// churn: days without a purchase after a cutoff that count as churned (default 90).
    pub window_days: Option<i32>,
    /// clv: months of the value horizon, 1 to 600 (default 12).
    pub months: Option<u32>,
    /// clv: monthly discount rate, 0 ≤ rate < 1 (default 0.01).
    pub monthly_discount: Option<f64>,
    /// clv: the models' time unit, day or week (default week).
    pub unit: Option<String>,
    /// clv: share of customers in the high-value tier (default 0.2).
    pub high_value_share: Option<f64>,
    /// clv: share in the medium-value tier, after the high (default 0.3).
    pub medium_value_share: Option<f64>,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Rfm,
    Kmeans(KmeansSettings),
    Lifecycle(LifecycleRules),
    Churn { window_days: i32 },
    Clv { unit: PeriodUnit, months: u32, monthly_discount: f64, high_share: f64, medium_share: f64 },
    Loyalty(LifecycleRules),
}

const WINDOW_DAYS_MAX: i32 = 1_000;

impl Plan {
    /// Checks a request, naming every field that is wrong.
    pub fn parse(request: &AnalysisRequest) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut check = |ok: bool, field: &str, message: String| {
            if !ok {
                errors.push(FieldError::new(field, "value.out_of_range", message));
            }
        };
        let plan = match request.kind.as_str() {
            "rfm" => Plan::Rfm,
            "kmeans" => {
                let defaults = KmeansSettings::default();
                let settings = KmeansSettings {
                    clusters: request.clusters.unwrap_or(8),
                    restarts: request.restarts.unwrap_or(4),
                    seed: request.seed.unwrap_or(defaults.seed),
                    ..defaults
                };
                check(
                    (1..=kmeans::CLUSTERS_MAX).contains(&settings.clusters),
                    "clusters",
                    format!("between 1 and {}", kmeans::CLUSTERS_MAX),
                );
                check(
                    (1..=kmeans::RESTARTS_MAX).contains(&settings.restarts),
                    "restarts",
                    format!("between 1 and {}", kmeans::RESTARTS_MAX),
                );
                Plan::Kmeans(settings)
            }
            "lifecycle" | "loyalty" => {
                let rules = LifecycleRules {
                    dormant_days: request.dormant_days.unwrap_or(180),
                    lost_days: request.lost_days.unwrap_or(365),
                };
                check(
                    (1..=WINDOW_DAYS_MAX).contains(&rules.dormant_days),
                    "dormant_days",
                    format!("between 1 and {WINDOW_DAYS_MAX}"),
                );
                check(
                    rules.lost_days > rules.dormant_days && rules.lost_days <= 10 * WINDOW_DAYS_MAX,
                    "lost_days",
                    "longer than dormant_days and at most 10000".into(),
                );
                if request.kind == "loyalty" { Plan::Loyalty(rules) } else { Plan::Lifecycle(rules) }
            }
            "churn" => {
                let window_days = request.window_days.unwrap_or(90);
                check(
                    (1..=WINDOW_DAYS_MAX).contains(&window_days),
                    "window_days",
                    format!("between 1 and {WINDOW_DAYS_MAX}"),
                );
                Plan::Churn { window_days }
            }
            "clv" => {
                let unit = match request.unit.as_deref().unwrap_or("week") {
                    "day" => PeriodUnit::Day,
                    "week" => PeriodUnit::Week,
                    other => {
                        check(false, "unit", format!("`{other}` is not a unit: day or week"));
                        PeriodUnit::Week
                    }
                };
                let months = request.months.unwrap_or(12);
                let monthly_discount = request.monthly_discount.unwrap_or(0.01);
                let high_share = request.high_value_share.unwrap_or(0.2);
                let medium_share = request.medium_value_share.unwrap_or(0.3);
                check(
                    (1..=clv::MONTHS_MAX).contains(&months),
                    "months",
                    format!("between 1 and {}", clv::MONTHS_MAX),
                );
                check(
                    (0.0..1.0).contains(&monthly_discount),
                    "monthly_discount",
                    "at least 0 and below 1 (0.01 is 1% a month)".into(),
                );
                check(high_share > 0.0 && high_share < 1.0, "high_value_share", "above 0 and below 1".into());
                check(
                    medium_share >= 0.0 && high_share + medium_share <= 1.0,
                    "medium_value_share",
                    "at least 0, and with high_value_share at most 1".into(),
                );
                Plan::Clv { unit, months, monthly_discount, high_share, medium_share }
            }
            other => {
                errors.push(FieldError::new(
                    "kind",
                    "kind.unknown",
                    format!("`{other}` is not an analysis: {}", KINDS.join(", ")),
                ));
                Plan::Rfm
            }
        };
        if errors.is_empty() { Ok(plan) } else { Err(errors) }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Plan::Rfm => "rfm",
            Plan::Kmeans(_) => "kmeans",
            Plan::Lifecycle(_) => "lifecycle",
            Plan::Churn { .. } => "churn",
            Plan::Clv { .. } => "clv",
            Plan::Loyalty(_) => "loyalty",
        }
    }

    /// What the reader must keep for this analysis.
    pub fn keep(&self) -> Keep {
        match self {
            Plan::Rfm | Plan::Kmeans(_) => Keep::Totals,
            Plan::Lifecycle(_) | Plan::Loyalty(_) => Keep::History([0, 0, 0]),
            Plan::Churn { window_days } => Keep::History([0, *window_days, 2 * window_days]),
            Plan::Clv { unit, .. } => Keep::Periods(*unit),
        }
    }

    fn parameters(&self) -> serde_json::Value {
        match self {
            Plan::Rfm => serde_json::json!({ "bins": 5, "cut": "mean" }),
            Plan::Kmeans(settings) => serde_json::json!({
                "clusters": settings.clusters, "restarts": settings.restarts, "seed": settings.seed,
            }),
            Plan::Lifecycle(rules) | Plan::Loyalty(rules) => {
                serde_json::json!({ "dormant_days": rules.dormant_days, "lost_days": rules.lost_days })
            }
            Plan::Churn { window_days } => serde_json::json!({ "window_days": window_days }),
            Plan::Clv { unit, months, monthly_discount, high_share, medium_share } => serde_json::json!({
                "unit": unit, "months": months, "monthly_discount": monthly_discount,
                "high_value_share": high_share, "medium_value_share": medium_share,
            }),
        }
    }
}

/// A segment as an analysis defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    pub code: String,
    pub name_en: String,
    pub name_zh: String,
    pub rule: String,
}

/// What an analysis made: its figures and, per customer number, the segments they are in.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub summary: serde_json::Value,
    pub segments: Vec<SegmentSpec>,
    /// (customer number, segment index, score).
    pub members: Vec<(u32, u16, Option<f64>)>,
}

fn spec(
    code: impl Into<String>,
    name_en: impl Into<String>,
    name_zh: impl Into<String>,
    rule: String,
) -> SegmentSpec {
    SegmentSpec { code: code.into(), name_en: name_en.into(), name_zh: name_zh.into(), rule }
}

/// The snake_case code of a value (`important_value`).
fn code_of(value: impl Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|value| value.as_str().map(str::to_owned)).unwrap_or_default()
}

/// `important_value` → `Important value`.
fn english(code: &str) -> String {
    let text = code.replace('_', " ");
    let mut letters = text.chars();
    letters.next().map(|first| first.to_uppercase().chain(letters).collect()).unwrap_or_default()
}

const RFM_SEGMENTS: [(Segment, &str, &str, &str); 10] = [
    (Segment::Champions, "Champions", "冠军客户", "R 5 and F 4–5"),
    (Segment::LoyalCustomers, "Loyal customers", "忠诚客户", "R 3–4 and F 4–5"),
    (Segment::PotentialLoyalists, "Potential loyalists", "潜在忠诚客户", "R 4–5 and F 2–3"),
    (Segment::NewCustomers, "New customers", "新客户", "R 5 and F 1"),
    (Segment::Promising, "Promising", "有潜力客户", "R 4 and F 1"),
    (Segment::NeedAttention, "Need attention", "需关注客户", "R 3 and F 3"),
    (Segment::AboutToSleep, "About to sleep", "将沉睡客户", "R 3 and F 1–2"),
    (Segment::AtRisk, "At risk", "有流失风险客户", "R 1–2 and F 3–4"),
    (Segment::CantLose, "Can't lose them", "不能失去的客户", "R 1–2 and F 5"),
    (Segment::Hibernating, "Hibernating", "沉睡客户", "R 1–2 and F 1–2"),
];

/// Runs `plan` on what was read. `minor_per_major`: 100 for yuan.
pub fn analyse(plan: &Plan, file: &PurchaseFile, minor_per_major: f64) -> ServiceResult<Outcome> {
    let refused = |error: cardcrm_analytics::AnalyticsError| ServiceError::Conflict {
        code: "analysis.not_possible",
        message: error.to_string(),
    };
    match plan {
        Plan::Rfm => {
            let figures = file.accumulator.rfm_figures();
            let (results, cuts) =
                rfm::analyse(&figures, &RfmSettings { bins: 5, cut: Cut::Mean }).map_err(refused)?;
            let money = |minor: f64| minor / minor_per_major;
            let mut segments: Vec<SegmentSpec> = RfmGroup::SCORED
                .iter()
                .map(|group| {
                    let code = code_of(group);
                    let high = |name: &str, index: usize| {
                        format!("{name} {}", if group.highs()[index] { "high" } else { "low" })
                    };
                    let rule = format!(
                        "{}, {}, {} (high: recency ≤ {:.1} days, frequency ≥ {:.2}, monetary ≥ {:.2}: the means)",
                        high("R", 0),
                        high("F", 1),
                        high("M", 2),
                        cuts.recency_days,
                        cuts.frequency,
                        money(cuts.monetary_minor)
                    );
                    spec(code.clone(), english(&code), group.name_zh(), rule)
                })
                .collect();
            segments.extend(RFM_SEGMENTS.iter().map(|(segment, name_en, name_zh, rule)| {
                spec(code_of(segment), *name_en, *name_zh, format!("quintile scores {rule}"))
            }));
            let mut members = Vec::with_capacity(results.len() * 2);
            for (number, result) in results.iter().enumerate() {
                let (Some(r), Some(f), Some(m)) =
                    (result.recency_score, result.frequency_score, result.monetary_score)
                else {
                    continue;
                };
                let cell = Some(f64::from(r) * 100.0 + f64::from(f) * 10.0 + f64::from(m));
                if let Some(group) = RfmGroup::SCORED.iter().position(|group| *group == result.group) {
                    members.push((number as u32, group as u16, cell));
                }
                if let Some(segment) = result
                    .segment
                    .and_then(|segment| RFM_SEGMENTS.iter().position(|(each, _, _, _)| *each == segment))
                {
                    members.push((number as u32, (RfmGroup::SCORED.len() + segment) as u16, cell));
                }
            }
            Ok(Outcome { summary: serde_json::json!({ "cuts": cuts }), segments, members })
        }
        Plan::Kmeans(settings) => {
            let figures = file.accumulator.rfm_figures();
            let (numbers, mut points) = kmeans::rfm_features(&figures, minor_per_major);
            if numbers.is_empty() {
                return Err(ServiceError::Conflict {
                    code: "analysis.no_purchases",
                    message: "no customer bought anything up to the analysis day: nothing to cluster".into(),
                });
            }
            let scaling = kmeans::standardise(&mut points, kmeans::RFM_FEATURES.len());
            let clustering =
                kmeans::cluster(&points, kmeans::RFM_FEATURES.len(), settings).map_err(refused)?;
            let profiles = kmeans::rfm_profiles(&clustering, &figures, &numbers);
            let segments = profiles
                .iter()
                .map(|profile| {
                    let rule = format!(
                        "nearest to centre {} of the standardised (−ln(1+recency), ln(1+frequency), ln(1+monetary)): \
                         on average {:.1} days since the last purchase, {:.2} purchases, {:.2} paid",
                        profile.cluster,
                        profile.recency_days_mean,
                        profile.frequency_mean,
                        profile.monetary_minor_mean / minor_per_major
                    );
                    spec(format!("cluster_{}", profile.cluster), profile.label.clone(), profile.label_zh.clone(), rule)
                })
                .collect();
            let members = numbers
                .iter()
                .zip(&clustering.labels)
                .map(|(number, label)| (*number as u32, *label, None))
                .collect();
            let summary = serde_json::json!({
                "inertia": clustering.inertia, "iterations": clustering.iterations,
                "restart_inertias": clustering.restart_inertias, "profiles": profiles,
                "scaling": { "means": scaling.means, "deviations": scaling.deviations },
            });
            Ok(Outcome { summary, segments, members })
        }
        Plan::Lifecycle(rules) => {
            let history = file
                .history
                .as_ref()
                .ok_or_else(|| ServiceError::Config("the reader kept no history".into()))?;
            let now = history.cutoffs()[0];
            let segments = Stage::ALL
                .iter()
                .map(|stage| {
                    let code = code_of(stage);
                    let rule = match stage {
                        Stage::Lost => format!("no purchase for more than {} days", rules.lost_days),
                        Stage::Dormant => format!("no purchase for more than {} days", rules.dormant_days),
                        Stage::New => "first purchase less than 90 days ago".into(),
                        Stage::WonBack => format!(
                            "bought in the last 90 days after a gap of more than {} days",
                            rules.dormant_days
                        ),
                        Stage::Declining => {
                            "purchases in the last 90 days at most half of the 90 before".into()
                        }
                        Stage::Growing => {
                            "purchases in the last 90 days at least 1.5 times the 90 before".into()
                        }
                        Stage::Mature => "active, steady: none of the above".into(),
                    };
                    spec(code.clone(), english(&code), stage.name_zh(), rule)
                })
                .collect();
            let mut counts = [0_u64; 7];
            let members = (0..file.customer_ids.len())
                .filter_map(|number| {
                    let standing = history.standing(number, 0);
                    let stage = lifecycle::stage(&standing, now, rules)?;
                    let index = Stage::ALL.iter().position(|each| *each == stage)?;
                    counts[index] += 1;
                    Some((number as u32, index as u16, Some(f64::from(now - standing.last_day))))
                })
                .collect();
            Ok(Outcome { summary: serde_json::json!({ "stages": counts }), segments, members })
        }
        Plan::Churn { window_days } => {
            let window = *window_days;
            let history = file
                .history
                .as_ref()
                .ok_or_else(|| ServiceError::Config("the reader kept no history".into()))?;
            let (training_rows, training_labels) = churn_rows(history, 2, window, minor_per_major);
            let model = churn::train(&training_rows, &training_labels).map_err(refused)?;
            let (evaluation_rows, evaluation_labels) = churn_rows(history, 1, window, minor_per_major);
            let probabilities: Vec<f64> = evaluation_rows.iter().map(|row| model.probability(row)).collect();
            let evaluation = churn::evaluate(&probabilities, &evaluation_labels, 0.1);
            let now = history.cutoffs()[0];
            let bands = [
                (
                    "churn_risk_high",
                    "High churn risk",
                    "高流失风险",
                    format!("probability ≥ {CHURN_HIGH_FROM}"),
                ),
                (
                    "churn_risk_medium",
                    "Medium churn risk",
                    "中流失风险",
                    format!("{CHURN_MEDIUM_FROM} ≤ probability < {CHURN_HIGH_FROM}"),
                ),
                (
                    "churn_risk_low",
                    "Low churn risk",
                    "低流失风险",
                    format!("probability < {CHURN_MEDIUM_FROM}"),
                ),
            ];
            let segments = bands
                .iter()
                .map(|(code, en, zh, rule)| {
                    spec(
                        *code,
                        *en,
                        *zh,
                        format!("{rule} of no purchase in the {window} days after the analysis day"),
                    )
                })
                .collect();
            let members = (0..file.customer_ids.len())
                .filter_map(|number| {
                    let standing = history.standing(number, 0);
                    standing.has_purchases().then(|| {
                        let probability =
                            model.probability(&churn::features(&standing, now, minor_per_major));
                        let band = if probability >= CHURN_HIGH_FROM {
                            0
                        } else if probability >= CHURN_MEDIUM_FROM {
                            1
                        } else {
                            2
                        };
                        (number as u32, band, Some(probability))
                    })
                })
                .collect();
            let summary = serde_json::json!({
                "model": { "features": churn::FEATURES, "weights": model.weights, "intercept": model.intercept },
                "evaluation": evaluation, "trained_on": training_rows.len(), "evaluated_on": evaluation_rows.len(),
            });
            Ok(Outcome { summary, segments, members })
        }
        Plan::Loyalty(rules) => analyse_loyalty(file, rules),
        Plan::Clv { unit, months, monthly_discount, high_share, medium_share } => {
            let end_period = unit.period_of_day(file.as_of_day());
            let summaries = match &file.periods {
                Some(periods) if periods.in_order() => periods.summaries(file.customer_ids.len()),
                _ => {
                    let mut purchases = file.purchases.clone();
                    period_summaries(&mut purchases, file.customer_ids.len(), end_period)
                }
            };
            let bought: Vec<(usize, Calibration, Spend)> = summaries
                .iter()
                .enumerate()
                .filter_map(|(number, summary)| {
                    summary.map(|summary| {
                        (
                            number,
                            Calibration {
                                frequency: summary.frequency,
                                recency: summary.recency,
                                age: summary.age,
                            },
                            Spend {
                                frequency: summary.frequency,
                                average: summary.average_minor / minor_per_major,
                            },
                        )
                    })
                })
                .collect();
            let calibration: Vec<Calibration> =
                bought.iter().map(|(_, calibration, _)| *calibration).collect();
            let purchases = bgnbd::fit(&calibration).map_err(refused)?;
            let spends: Vec<Spend> = bought.iter().map(|(_, _, spend)| *spend).collect();
            let spend = gamma_gamma::fit(&spends).map_err(refused)?;
            let customers: Vec<(Calibration, Spend)> =
                bought.iter().map(|(_, calibration, spend)| (*calibration, *spend)).collect();
            let horizon = clv::Horizon { months: *months, monthly_discount: *monthly_discount, unit: *unit };
            let predictions = clv::predict(&purchases.parameters, &spend.parameters, &customers, &horizon);
            // Tiers by rank of predicted value: ties keep the customers' order.
            let mut order: Vec<usize> = (0..predictions.len()).collect();
            order.sort_by(|left, right| predictions[*right].value.total_cmp(&predictions[*left].value));
            let count = order.len();
            let high_count = (count as f64 * high_share).round() as usize;
            let medium_count =
                ((count as f64 * (high_share + medium_share)).round() as usize).saturating_sub(high_count);
            let mut members = vec![(0_u32, 0_u16, None); count];
            for (rank, index) in order.iter().enumerate() {
                let tier = if rank < high_count {
                    0
                } else if rank < high_count + medium_count {
                    1
                } else {
                    2
                };
                members[*index] = (bought[*index].0 as u32, tier, Some(predictions[*index].value));
            }
            let threshold = |rank: usize| order.get(rank).map(|index| predictions[*index].value);
            let (high_from, medium_from) = (
                threshold(high_count.saturating_sub(1)).unwrap_or(0.0),
                threshold((high_count + medium_count).saturating_sub(1)).unwrap_or(0.0),
            );
            let horizon_text = format!("{months} months at {}% a month", monthly_discount * 100.0);
            let segments = vec![
                spec(
                    "value_high",
                    "High value",
                    "高价值客户",
                    format!(
                        "predicted CLV ({horizon_text}) in the top {:.0}% (≥ {high_from:.2})",
                        high_share * 100.0
                    ),
                ),
                spec(
                    "value_medium",
                    "Medium value",
                    "中价值客户",
                    format!("predicted CLV in the next {:.0}% (≥ {medium_from:.2})", medium_share * 100.0),
                ),
                spec("value_low", "Low value", "低价值客户", "predicted CLV below the medium tier".into()),
            ];
            let total: f64 = predictions.iter().map(|prediction| prediction.value).sum();
            let summary = serde_json::json!({
                "bgnbd": purchases, "gamma_gamma": spend, "customers": count,
                "clv_total": total, "clv_mean": if count > 0 { total / count as f64 } else { 0.0 },
            });
            Ok(Outcome { summary, segments, members })
        }
    }
}

/// Loyal and potentially loyal customers: the score of `cardcrm_analytics::loyalty` from
/// the RFM quintile scores and tenure, read with the lifecycle stage.
fn analyse_loyalty(file: &PurchaseFile, rules: &LifecycleRules) -> ServiceResult<Outcome> {
    let figures = file.accumulator.rfm_figures();
    let (results, _) = rfm::analyse(&figures, &RfmSettings::default()).map_err(|error| {
        ServiceError::Conflict { code: "analysis.not_possible", message: error.to_string() }
    })?;
    let history =
        file.history.as_ref().ok_or_else(|| ServiceError::Config("the reader kept no history".into()))?;
    let now = history.cutoffs()[0];
    let classes = [Loyalty::Loyal, Loyalty::PotentiallyLoyal];
    let mut sums = [0.0_f64; 2];
    let mut counts = [0_u64; 2];
    let mut members = Vec::new();
    for (number, result) in results.iter().enumerate() {
        let (Some(r), Some(f), Some(m)) =
            (result.recency_score, result.frequency_score, result.monetary_score)
        else {
            continue;
        };
        let standing = history.standing(number, 0);
        let Some(stage) = lifecycle::stage(&standing, now, rules) else {
            continue;
        };
        let score = loyalty::score(r, f, m, now - standing.first_day);
        if let Some(class) = loyalty::classify(score, stage, r, f) {
            let index = classes.iter().position(|each| *each == class).unwrap_or(0);
            sums[index] += score;
            counts[index] += 1;
            members.push((number as u32, index as u16, Some(score)));
        }
    }
    let segments = vec![
        spec(
            "loyal",
            "Loyal",
            Loyalty::Loyal.name_zh(),
            format!(
                "loyalty score ≥ {} (35·F + 25·R + 15·M quintile parts, 25·tenure up to {} days) and stage mature or growing",
                loyalty::LOYAL_FROM,
                loyalty::TENURE_FULL_DAYS
            ),
        ),
        spec(
            "potentially_loyal",
            "Potentially loyal",
            Loyalty::PotentiallyLoyal.name_zh(),
            format!(
                "not loyal; stage new, growing, mature or won back with score ≥ {}, or new with R 5 and F ≥ 2",
                loyalty::POTENTIAL_FROM
            ),
        ),
    ];
    let mean = |index: usize| if counts[index] > 0 { sums[index] / counts[index] as f64 } else { 0.0 };
    let summary = serde_json::json!({
        "scored": results.iter().filter(|result| result.frequency_score.is_some()).count(),
        "loyal": counts[0], "potentially_loyal": counts[1],
        "score_mean": { "loyal": mean(0), "potentially_loyal": mean(1) },
    });
    Ok(Outcome { summary, segments, members })
}

/// Churn features and labels of the customers who had bought by cutoff number `cutoff`.
pub fn churn_rows(
    history: &cardcrm_analytics::history::HistoryAccumulator,
    cutoff: usize,
    window: i32,
    minor_per_major: f64,
) -> (Vec<[f64; 7]>, Vec<bool>) {
    let day = history.cutoffs()[cutoff];
    (0..history.customers())
        .map(|customer| history.standing(customer, cutoff))
        .filter(|standing| standing.has_purchases())
        .map(|standing| {
            (churn::features(&standing, day, minor_per_major), churn::churned(&standing, day, window))
        })
        .unzip()
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: i64,
    pub kind: String,
    pub as_of: String,
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// Fitted parameters, cuts, profiles or the model report, by kind.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    pub purchases: i64,
    pub customers: i64,
    pub created_by: String,
    pub created_at: String,
    pub duration_ms: i64,
    /// Empty in lists; filled when one run is asked for.
    pub segments: Vec<SegmentView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentView {
    pub code: String,
    pub name_en: String,
    pub name_zh: String,
    /// The rule that puts a customer in this segment.
    pub rule: String,
    pub customers: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentMemberView {
    pub segment: String,
    pub customer_id: i64,
    pub score: Option<f64>,
}

fn run_view(record: RunRecord, segments: Vec<SegmentRecord>) -> RunView {
    RunView {
        id: record.id,
        kind: record.kind,
        as_of: record.as_of,
        parameters: serde_json::from_str(&record.parameters_json).unwrap_or_default(),
        summary: serde_json::from_str(&record.summary_json).unwrap_or_default(),
        purchases: record.purchases,
        customers: record.customers,
        created_by: record.created_by,
        created_at: format_ms(record.created_at_ms),
        duration_ms: record.duration_ms,
        segments: segments
            .into_iter()
            .map(|segment| SegmentView {
                code: segment.code,
                name_en: segment.name_en,
                name_zh: segment.name_zh,
                rule: segment.rule,
                customers: segment.customers,
            })
            .collect(),
    }
}

/// The formats a segment export comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Parquet,
}

impl ExportFormat {
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        match raw {
            "csv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            other => Err(ServiceError::invalid(
                "format",
                "format.unknown",
                format!("`{other}` is not an export format: csv or parquet"),
            )),
        }
    }
}

impl Services {
    /// Reads every purchase up to the end of `as_of` (in the business's time zone) as an
    /// analysis sees it. Returns what was read and, per customer number, the customer id.
    pub(crate) async fn read_purchases_for_analysis(
        &self,
        as_of: Date,
        keep: Keep,
    ) -> ServiceResult<(PurchaseFile, Vec<i64>)> {
        let zone = self.default_zone().clone();
        let until_ms = as_of
            .tomorrow()
            .and_then(|day| day.to_zoned(zone.clone()))
            .map(|zoned| zoned.timestamp().as_millisecond())
            .map_err(|error| ServiceError::invalid("as_of", "as_of.invalid", error.to_string()))?;
        self.database()
            .read_consistent(move |conn| {
                let mut collector = Collector::new(as_of, keep);
                let mut numbers: std::collections::HashMap<i64, u32, foldhash::fast::RandomState> =
                    std::collections::HashMap::default();
                let mut ids: Vec<i64> = Vec::new();
                let mut failure = None;
                repo::for_each_purchase(conn, until_ms, |purchase| {
                    let number = match numbers.get(&purchase.customer_id) {
                        Some(number) => *number,
                        None => match collector.new_customer(purchase.customer_id.to_string(), None) {
                            Ok(number) => {
                                numbers.insert(purchase.customer_id, number);
                                ids.push(purchase.customer_id);
                                number
                            }
                            Err(error) => {
                                failure = Some(error);
                                return Err(cardcrm_store::StoreError::Invariant("stopped".into()));
                            }
                        },
                    };
                    let day = match jiff::Timestamp::from_millisecond(purchase.occurred_at_ms) {
                        Ok(at) => day_number(at.to_zoned(zone.clone()).date()),
                        Err(_) => return Ok(()),
                    };
                    let store = purchase.store.as_deref();
                    let added = if purchase.amount_minor < 0 {
                        collector.refund(number, day, purchase.amount_minor, store)
                    } else {
                        collector.add(
                            number,
                            day,
                            purchase.amount_minor,
                            purchase.category.as_deref(),
                            store,
                            None,
                        )
                    };
                    if let Err(error) = added {
                        failure = Some(error);
                        return Err(cardcrm_store::StoreError::Invariant("stopped".into()));
                    }
                    Ok(())
                })
                .map_err(|error| failure.take().unwrap_or_else(|| ServiceError::from(error)))?;
                Ok((collector.finish(), ids))
            })
            .await
    }

    /// Runs an analysis of the whole business's purchases and stores it with its segments.
    pub async fn run_analysis(
        &self,
        access: Access<'_, perm::AnalysisRun>,
        request: AnalysisRequest,
    ) -> ServiceResult<RunView> {
        let identity = access.identity().clone();
        if identity.scope.store_id().is_some() {
            return Err(ServiceError::forbidden(format!(
                "{} acts for one store; an analysis covers the whole business",
                identity.name
            )));
        }
        let mut errors = FieldErrors::new();
        let plan = Plan::parse(&request).map_err(|found| {
            errors.0.extend(found.0);
        });
        let as_of = match request.as_of.as_deref() {
            Some(raw) => errors.take("as_of", cardcrm_domain::date::parse_date(raw)),
            None => Some(self.today()),
        };
        if as_of.is_some_and(|day| day > self.today()) {
            errors.push(FieldError::new("as_of", "as_of.future", "the analysis day is today or earlier"));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let (Ok(plan), Some(as_of)) = (plan, as_of) else {
            return Err(ServiceError::Config("a checked request vanished".into()));
        };
        let started = std::time::Instant::now();
        let (mut file, mut ids) = self.read_purchases_for_analysis(as_of, plan.keep()).await?;
        if let (Keep::Periods(unit), Some(periods)) = (plan.keep(), &file.periods)
            && !periods.in_order()
        {
            // A merge brought two customers' purchases together out of time order.
            (file, ids) = self.read_purchases_for_analysis(as_of, Keep::Purchases(unit)).await?;
        }
        let minor_per_major = 10_f64.powi(self.currency().exponent() as i32);
        let worked = {
            let plan = plan.clone();
            tokio::task::spawn_blocking(move || {
                analyse(&plan, &file, minor_per_major).map(|outcome| (outcome, file.rows))
            })
            .await
            .map_err(|error| ServiceError::Config(format!("the analysis stopped: {error}")))??
        };
        let (outcome, purchases) = worked;
        let mut counts = vec![0_i64; outcome.segments.len()];
        let members: Vec<MemberRecord> = outcome
            .members
            .iter()
            .map(|(number, segment, score)| {
                counts[*segment as usize] += 1;
                MemberRecord {
                    segment: outcome.segments[*segment as usize].code.clone(),
                    customer_id: ids[*number as usize],
                    score: *score,
                }
            })
            .collect();
        let now_ms = self.now_ms();
        let run = RunRecord {
            id: 0,
            kind: plan.kind().to_owned(),
            as_of: as_of.to_string(),
            parameters_json: plan.parameters().to_string(),
            summary_json: outcome.summary.to_string(),
            purchases: purchases as i64,
            customers: ids.len() as i64,
            created_by: identity.name.clone(),
            created_at_ms: now_ms,
            duration_ms: started.elapsed().as_millis() as i64,
        };
        let segments: Vec<SegmentRecord> = outcome
            .segments
            .iter()
            .zip(&counts)
            .map(|(segment, customers)| SegmentRecord {
                run_id: 0,
                code: segment.code.clone(),
                name_en: segment.name_en.clone(),
                name_zh: segment.name_zh.clone(),
                rule: segment.rule.clone(),
                customers: *customers,
            })
            .collect();
        self.database()
            .write_bulk(ForeignKeys::Enforced, move |conn| {
                let id = repo::insert_run(conn, &run, &segments, &members)?;
                let view = run_view(
                    RunRecord { id, ..run.clone() },
                    segments.iter().map(|segment| SegmentRecord { run_id: id, ..segment.clone() }).collect(),
                );
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "analysis.run",
                    "analysis_run",
                    id,
                    None,
                    Some(serde_json::json!({
                        "kind": view.kind, "as_of": view.as_of, "parameters": view.parameters,
                        "customers": view.customers, "segments": view.segments.len(),
                    })),
                )?;
                Ok(view)
            })
            .await
    }

    /// Runs newest first, of one kind or all.
    pub async fn analysis_runs(
        &self,
        _access: Access<'_, perm::AnalysisRead>,
        kind: Option<String>,
        cursor: Option<String>,
        limit: i64,
    ) -> ServiceResult<Page<RunView>> {
        if let Some(kind) = kind.as_deref()
            && !KINDS.contains(&kind)
        {
            return Err(ServiceError::invalid(
                "kind",
                "kind.unknown",
                format!("`{kind}` is not an analysis: {}", KINDS.join(", ")),
            ));
        }
        let before = cursor.as_deref().map(crate::view::cursor_decode_id).transpose()?;
        self.database()
            .read(move |conn| {
                let runs = repo::list_runs(conn, kind.as_deref(), before, limit + 1)?;
                let views = runs.into_iter().map(|run| run_view(run, Vec::new())).collect();
                Ok(Page::from_overfetch(views, limit, |run: &RunView| crate::view::cursor_encode_id(run.id)))
            })
            .await
    }

    /// One run with its segments and their sizes.
    pub async fn analysis_run(
        &self,
        _access: Access<'_, perm::AnalysisRead>,
        id: i64,
    ) -> ServiceResult<RunView> {
        self.database()
            .read(move |conn| {
                let run =
                    repo::get_run(conn, id)?.ok_or_else(|| ServiceError::not_found("analysis run", id))?;
                let segments = repo::segments_of(conn, id)?;
                Ok(run_view(run, segments))
            })
            .await
    }

    /// One page of a run's members, optionally of one segment, in (segment, customer) order.
    pub async fn analysis_members(
        &self,
        _access: Access<'_, perm::AnalysisRead>,
        run_id: i64,
        segment: Option<String>,
        cursor: Option<String>,
        limit: i64,
    ) -> ServiceResult<Page<SegmentMemberView>> {
        let after = match cursor.as_deref() {
            Some(raw) => {
                let text = cursor_decode(raw)?;
                let parsed = text
                    .strip_prefix("m:")
                    .and_then(|rest| rest.rsplit_once(':'))
                    .and_then(|(segment, id)| Some((segment.to_owned(), id.parse::<i64>().ok()?)));
                Some(parsed.ok_or_else(|| {
                    ServiceError::invalid(
                        "cursor",
                        "cursor.invalid",
                        "the cursor is not one this server gave out",
                    )
                })?)
            }
            None => None,
        };
        self.database()
            .read(move |conn| {
                let run = repo::get_run(conn, run_id)?
                    .ok_or_else(|| ServiceError::not_found("analysis run", run_id))?;
                if let Some(segment) = segment.as_deref()
                    && !repo::segments_of(conn, run.id)?.iter().any(|each| each.code == segment)
                {
                    return Err(ServiceError::not_found("segment", format!("{run_id}/{segment}")));
                }
                let rows = repo::members(
                    conn,
                    run_id,
                    segment.as_deref(),
                    after.as_ref().map(|(segment, id)| (segment.as_str(), *id)),
                    limit + 1,
                )?;
                let views = rows
                    .into_iter()
                    .map(|row| SegmentMemberView {
                        segment: row.segment,
                        customer_id: row.customer_id,
                        score: row.score,
                    })
                    .collect();
                Ok(Page::from_overfetch(views, limit, |member: &SegmentMemberView| {
                    cursor_encode(&format!("m:{}:{}", member.segment, member.customer_id))
                }))
            })
            .await
    }

    /// Every member of a run (or of one of its segments) as CSV or Parquet: columns
    /// run_id, segment, customer_id, score. Audited: an export leaves the system.
    pub async fn export_analysis_members(
        &self,
        access: Access<'_, perm::AnalysisRead>,
        run_id: i64,
        segment: Option<String>,
        format: ExportFormat,
    ) -> ServiceResult<Vec<u8>> {
        let identity = access.identity().clone();
        let now_ms = self.now_ms();
        let (bytes, rows) = self
            .database()
            .read_consistent(move |conn| {
                repo::get_run(conn, run_id)?
                    .ok_or_else(|| ServiceError::not_found("analysis run", run_id))?;
                if let Some(segment) = segment.as_deref()
                    && !repo::segments_of(conn, run_id)?.iter().any(|each| each.code == segment)
                {
                    return Err(ServiceError::not_found("segment", format!("{run_id}/{segment}")));
                }
                let mut members = Vec::new();
                repo::for_each_member(conn, run_id, segment.as_deref(), |member| {
                    if members.len() as u64 >= EXPORT_ROWS_MAX {
                        return Err(cardcrm_store::StoreError::Invariant(format!(
                            "an export holds at most {EXPORT_ROWS_MAX} rows"
                        )));
                    }
                    members.push(member);
                    Ok(())
                })?;
                let rows = members.len();
                let bytes = match format {
                    ExportFormat::Csv => members_csv(run_id, &members)?,
                    ExportFormat::Parquet => crate::parquet_export::members(run_id, &members)?,
                };
                Ok((bytes, rows))
            })
            .await?;
        self.database()
            .write(move |conn| {
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "analysis.export",
                    "analysis_run",
                    run_id,
                    None,
                    Some(serde_json::json!({ "rows": rows, "format": format!("{format:?}").to_lowercase() })),
                )?;
                Ok::<_, ServiceError>(())
            })
            .await?;
        Ok(bytes)
    }
}

fn members_csv(run_id: i64, members: &[MemberRecord]) -> ServiceResult<Vec<u8>> {
    let failed = |error: std::io::Error| ServiceError::Config(format!("writing the export: {error}"));
    let mut out = Vec::with_capacity(members.len() * 24 + 64);
    writeln!(out, "run_id,segment,customer_id,score").map_err(failed)?;
    for member in members {
        // Segment codes are [a-z0-9_]: nothing to quote.
        match member.score {
            Some(score) => writeln!(out, "{run_id},{},{},{score}", member.segment, member.customer_id),
            None => writeln!(out, "{run_id},{},{},", member.segment, member.customer_id),
        }
        .map_err(failed)?;
    }
    Ok(out)
}

/// The page size of a members page: at most the store's page maximum.
pub fn members_limit(requested: Option<PageSize>) -> i64 {
    i64::from(requested.map_or(100, PageSize::get))
}
