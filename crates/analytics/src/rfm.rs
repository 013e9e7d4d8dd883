//! RFM 模型: recency, frequency and monetary scores by quantile, the eight classic groups
//! (重要价值 … 一般挽留) and the score-based segments (champions, loyal, at risk …).
//!
//! Rules, ties and edge cases:
//! - Only customers who bought (frequency ≥ 1) are scored; the others get no scores and the
//!   group [`RfmGroup::NoPurchase`], and do not move the quantiles or the means.
//! - Scores are 1..=bins (5 by default) from [`crate::quantile::scores`]: the pandas rule
//!   `qcut(rank(method="first"))`, ties broken by input order. Recency is scored reversed:
//!   the most recent fifth gets 5.
//! - A classic group compares each of R, F and M with a cut: the mean over scored customers
//!   (the usual practice) or fixed thresholds. "High" is at or better than the cut: recency
//!   at or below it, frequency and monetary at or above it.
//! - The segment reads the R and F scores with the ten-segment map used in practice
//!   (see [`Segment::of`]); it needs 5 bins and is absent otherwise.

use serde::{Deserialize, Serialize};

use crate::{AnalyticsError, quantile};

/// One customer's figures as of the analysis date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RfmFigures {
    /// Whole days from the last purchase to the analysis date (0: bought that day).
    pub recency_days: i64,
    /// Purchases in the analysed period.
    pub frequency: i64,
    /// What they paid in the period, in minor units.
    pub monetary_minor: i64,
}

/// Where the classic groups cut high from low.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Cut {
    /// The mean of each figure over the scored customers.
    Mean,
    /// Fixed thresholds.
    Thresholds { recency_days: f64, frequency: f64, monetary_minor: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RfmSettings {
    pub bins: usize,
    pub cut: Cut,
}

impl Default for RfmSettings {
    fn default() -> Self {
        Self { bins: 5, cut: Cut::Mean }
    }
}

/// The eight classic groups, named by whether R, F and M are high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RfmGroup {
    /// 重要价值客户: R, F, M high.
    ImportantValue,
    /// 重要发展客户: R high, F low, M high.
    ImportantDevelop,
    /// 重要保持客户: R low, F high, M high.
    ImportantRetain,
    /// 重要挽留客户: R low, F low, M high.
    ImportantWinBack,
    /// 一般价值客户: R, F high, M low.
    GeneralValue,
    /// 一般发展客户: R high, F low, M low.
    GeneralDevelop,
    /// 一般保持客户: R low, F high, M low.
    GeneralRetain,
    /// 一般挽留客户: R, F, M low.
    GeneralWinBack,
    /// No purchase in the period: not scored.
    NoPurchase,
}

impl RfmGroup {
    /// The eight groups of customers with purchases, in the usual order.
    pub const SCORED: [RfmGroup; 8] = [
        Self::ImportantValue,
        Self::ImportantDevelop,
        Self::ImportantRetain,
        Self::ImportantWinBack,
        Self::GeneralValue,
        Self::GeneralDevelop,
        Self::GeneralRetain,
        Self::GeneralWinBack,
    ];

    /// Whether R, F and M are high in this group (all low without a purchase): the inverse
    /// of [`RfmGroup::of`].
    pub fn highs(self) -> [bool; 3] {
        match self {
            Self::ImportantValue => [true, true, true],
            Self::ImportantDevelop => [true, false, true],
            Self::ImportantRetain => [false, true, true],
            Self::ImportantWinBack => [false, false, true],
            Self::GeneralValue => [true, true, false],
            Self::GeneralDevelop => [true, false, false],
            Self::GeneralRetain => [false, true, false],
            Self::GeneralWinBack | Self::NoPurchase => [false, false, false],
        }
    }

    pub fn of(recency_high: bool, frequency_high: bool, monetary_high: bool) -> Self {
        match (recency_high, frequency_high, monetary_high) {
            (true, true, true) => Self::ImportantValue,
            (true, false, true) => Self::ImportantDevelop,
            (false, true, true) => Self::ImportantRetain,
            (false, false, true) => Self::ImportantWinBack,
            (true, true, false) => Self::GeneralValue,
            (true, false, false) => Self::GeneralDevelop,
            (false, true, false) => Self::GeneralRetain,
            (false, false, false) => Self::GeneralWinBack,
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Self::ImportantValue => "重要价值客户",
            Self::ImportantDevelop => "重要发展客户",
            Self::ImportantRetain => "重要保持客户",
            Self::ImportantWinBack => "重要挽留客户",
            Self::GeneralValue => "一般价值客户",
            Self::GeneralDevelop => "一般发展客户",
            Self::GeneralRetain => "一般保持客户",
            Self::GeneralWinBack => "一般挽留客户",
            Self::NoPurchase => "无消费客户",
        }
    }
}

/// Score-based segments over (R, F) scores of 1..=5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    Champions,
    LoyalCustomers,
    PotentialLoyalists,
    NewCustomers,
    Promising,
    NeedAttention,
    AboutToSleep,
    AtRisk,
    CantLose,
    Hibernating,
}

impl Segment {
    /// The ten-segment map over R and F scores:
    /// R 5 and F 4–5 champions; R 3–4 and F 4–5 loyal; R 4–5 and F 2–3 potential loyalists;
    /// R 5 F 1 new; R 4 F 1 promising; R 3 F 3 need attention; R 3 F 1–2 about to sleep;
    /// R 1–2 and F 3–4 at risk; R 1–2 F 5 can't lose; R 1–2 F 1–2 hibernating.
    pub fn of(recency_score: u8, frequency_score: u8) -> Option<Self> {
        Some(match (recency_score, frequency_score) {
            (5, 4..=5) => Self::Champions,
            (3..=4, 4..=5) => Self::LoyalCustomers,
            (4..=5, 2..=3) => Self::PotentialLoyalists,
            (5, 1) => Self::NewCustomers,
            (4, 1) => Self::Promising,
            (3, 3) => Self::NeedAttention,
            (3, 1..=2) => Self::AboutToSleep,
            (1..=2, 3..=4) => Self::AtRisk,
            (1..=2, 5) => Self::CantLose,
            (1..=2, 1..=2) => Self::Hibernating,
            _ => return None,
        })
    }
}

/// One customer's RFM result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RfmResult {
    /// Scores 1..=bins, `None` without a purchase.
    pub recency_score: Option<u8>,
    pub frequency_score: Option<u8>,
    pub monetary_score: Option<u8>,
    pub group: RfmGroup,
    pub segment: Option<Segment>,
}

/// The cuts a run used, to show beside its groups.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RfmCuts {
    pub recency_days: f64,
    pub frequency: f64,
    pub monetary_minor: f64,
    pub scored: usize,
}

/// Scores every customer; results are in the input's order.
pub fn analyse(
    figures: &[RfmFigures],
    settings: &RfmSettings,
) -> Result<(Vec<RfmResult>, RfmCuts), AnalyticsError> {
    let scored: Vec<usize> = (0..figures.len()).filter(|index| figures[*index].frequency > 0).collect();
    let column = |pick: fn(&RfmFigures) -> i64| -> Vec<i64> {
        scored.iter().map(|index| pick(&figures[*index])).collect()
    };
    let recency = column(|figures| figures.recency_days);
    let frequency = column(|figures| figures.frequency);
    let monetary = column(|figures| figures.monetary_minor);
    let recency_scores = quantile::scores(&recency, settings.bins)?;
    let frequency_scores = quantile::scores(&frequency, settings.bins)?;
    let monetary_scores = quantile::scores(&monetary, settings.bins)?;
    let mean = |values: &[i64]| {
        if values.is_empty() {
            0.0
        } else {
            values.iter().map(|value| *value as f64).sum::<f64>() / values.len() as f64
        }
    };
    let cuts = match settings.cut {
        Cut::Mean => RfmCuts {
            recency_days: mean(&recency),
            frequency: mean(&frequency),
            monetary_minor: mean(&monetary),
            scored: scored.len(),
        },
        Cut::Thresholds { recency_days, frequency, monetary_minor } => {
            RfmCuts { recency_days, frequency, monetary_minor, scored: scored.len() }
        }
    };
    let mut results = vec![
        RfmResult {
            recency_score: None,
            frequency_score: None,
            monetary_score: None,
            group: RfmGroup::NoPurchase,
            segment: None,
        };
        figures.len()
    ];
    for (position, index) in scored.iter().enumerate() {
        let customer = &figures[*index];
        let recency_score = (settings.bins + 1 - recency_scores[position] as usize) as u8;
        let frequency_score = frequency_scores[position];
        results[*index] = RfmResult {
            recency_score: Some(recency_score),
            frequency_score: Some(frequency_score),
            monetary_score: Some(monetary_scores[position]),
            group: RfmGroup::of(
                customer.recency_days as f64 <= cuts.recency_days,
                customer.frequency as f64 >= cuts.frequency,
                customer.monetary_minor as f64 >= cuts.monetary_minor,
            ),
            segment: if settings.bins == 5 { Segment::of(recency_score, frequency_score) } else { None },
        };
    }
    Ok((results, cuts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(recency_days: i64, frequency: i64, monetary_minor: i64) -> RfmFigures {
        RfmFigures { recency_days, frequency, monetary_minor }
    }

    #[test]
    fn classic_groups_cut_at_the_mean_and_skip_customers_without_purchases() {
        let input = [
            figures(2, 10, 90_000),  // recent, frequent, big: 重要价值
            figures(300, 9, 80_000), // long ago, frequent, big: 重要保持
            figures(5, 1, 70_000),   // recent, once, big: 重要发展
            figures(200, 1, 100),    // long ago, once, small: 一般挽留
            figures(0, 0, 0),        // never bought
        ];
        let (results, cuts) = analyse(&input, &RfmSettings::default()).unwrap();
        // Means over the four buyers only: recency 126.75, frequency 5.25, monetary 60,025.
        assert_eq!(
            (cuts.recency_days, cuts.frequency, cuts.monetary_minor, cuts.scored),
            (126.75, 5.25, 60_025.0, 4)
        );
        let groups: Vec<RfmGroup> = results.iter().map(|result| result.group).collect();
        assert_eq!(
            groups,
            [
                RfmGroup::ImportantValue,
                RfmGroup::ImportantRetain,
                RfmGroup::ImportantDevelop,
                RfmGroup::GeneralWinBack,
                RfmGroup::NoPurchase
            ]
        );
        assert_eq!(results[4].recency_score, None);
        assert_eq!(results[0].group.name_zh(), "重要价值客户");
    }

    #[test]
    fn a_figure_equal_to_the_cut_counts_as_high() {
        let input = [figures(10, 2, 200), figures(10, 2, 200)];
        let (results, _) = analyse(&input, &RfmSettings::default()).unwrap();
        assert!(results.iter().all(|result| result.group == RfmGroup::ImportantValue));
    }

    #[test]
    fn recency_is_scored_reversed_and_ties_follow_input_order() {
        // One purchase each: frequency ties everywhere; the first in input order ranks lowest.
        let input: Vec<RfmFigures> = (0..10).map(|day| figures(day, 1, 1_000 * (day + 1))).collect();
        let (results, _) = analyse(&input, &RfmSettings::default()).unwrap();
        let recency: Vec<u8> = results.iter().map(|result| result.recency_score.unwrap()).collect();
        let frequency: Vec<u8> = results.iter().map(|result| result.frequency_score.unwrap()).collect();
        assert_eq!(recency, [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
        assert_eq!(frequency, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(results[0].segment, Some(Segment::NewCustomers));
        assert_eq!(results[9].segment, Some(Segment::CantLose));
    }

    #[test]
    fn thresholds_replace_the_mean_and_other_bin_counts_have_no_segment() {
        let settings = RfmSettings {
            bins: 4,
            cut: Cut::Thresholds { recency_days: 30.0, frequency: 3.0, monetary_minor: 50_000.0 },
        };
        let (results, cuts) = analyse(&[figures(31, 3, 50_000), figures(1, 1, 10)], &settings).unwrap();
        assert_eq!(cuts.frequency, 3.0);
        assert_eq!(results[0].group, RfmGroup::ImportantRetain);
        assert_eq!(results[1].group, RfmGroup::GeneralDevelop);
        assert_eq!(results[0].segment, None);
        assert_eq!(results[0].monetary_score, Some(4));
    }

    #[test]
    fn every_score_pair_has_a_segment() {
        for recency in 1..=5 {
            for frequency in 1..=5 {
                assert!(Segment::of(recency, frequency).is_some(), "{recency}{frequency}");
            }
        }
        assert_eq!(Segment::of(5, 5), Some(Segment::Champions));
        assert_eq!(Segment::of(4, 4), Some(Segment::LoyalCustomers));
    }

    #[test]
    fn highs_undo_of() {
        for group in RfmGroup::SCORED {
            let [recency, frequency, monetary] = group.highs();
            assert_eq!(RfmGroup::of(recency, frequency, monetary), group);
        }
    }

    #[test]
    fn nobody_bought() {
        let (results, cuts) = analyse(&[figures(0, 0, 0)], &RfmSettings::default()).unwrap();
        assert_eq!(results[0].group, RfmGroup::NoPurchase);
        assert_eq!(cuts.scored, 0);
        assert!(analyse(&[], &RfmSettings::default()).unwrap().0.is_empty());
    }
}
