//! Loyal and potentially loyal customers 忠诚客户识别: a score from 0 to 100 built from the
//! RFM quintile scores and how long the customer has been buying, read together with the
//! lifecycle stage.
//!
//! The score (weights sum to 100; each part runs from 0 to its weight):
//! - frequency 35 · (F − 1)/4 — coming back is the core of loyalty;
//! - recency 25 · (R − 1)/4 — a loyal customer is still buying;
//! - monetary 15 · (M − 1)/4 — what they spend, weighted below the habit;
//! - tenure 25 · min(days since the first purchase / 730, 1) — two years of history earns
//!   the full part.
//!
//! The classes:
//! - loyal 忠诚客户: score ≥ 70 and stage mature or growing;
//! - potentially loyal 潜在忠诚客户: not loyal, stage new, growing, mature or won back, and
//!   score ≥ 45 — or a new customer (under 90 days) with R 5 and F ≥ 2, who has already
//!   come back soon after the first purchase;
//! - everyone else with purchases: no class.
//!
//! Declining, dormant and lost customers are never called loyal, whatever they did before:
//! that is what at-risk and win-back campaigns are for.

use serde::Serialize;

use crate::lifecycle::Stage;

/// Days of buying that earn the full tenure part.
pub const TENURE_FULL_DAYS: i32 = 730;
/// Score from which a mature or growing customer is loyal.
pub const LOYAL_FROM: f64 = 70.0;
/// Score from which an active customer is potentially loyal.
pub const POTENTIAL_FROM: f64 = 45.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Loyalty {
    Loyal,
    PotentiallyLoyal,
}

impl Loyalty {
    pub fn name_zh(self) -> &'static str {
        match self {
            Self::Loyal => "忠诚客户",
            Self::PotentiallyLoyal => "潜在忠诚客户",
        }
    }
}

/// The score of a customer with RFM quintile scores 1..=5 and `tenure_days` since their first
/// purchase.
pub fn score(recency_score: u8, frequency_score: u8, monetary_score: u8, tenure_days: i32) -> f64 {
    let part = |score: u8| f64::from(score.clamp(1, 5) - 1) / 4.0;
    let tenure = f64::from(tenure_days.clamp(0, TENURE_FULL_DAYS)) / f64::from(TENURE_FULL_DAYS);
    35.0 * part(frequency_score) + 25.0 * part(recency_score) + 15.0 * part(monetary_score) + 25.0 * tenure
}

/// The class of a customer with this score, stage and R and F scores (see the module doc).
pub fn classify(score: f64, stage: Stage, recency_score: u8, frequency_score: u8) -> Option<Loyalty> {
    match stage {
        Stage::Mature | Stage::Growing if score >= LOYAL_FROM => Some(Loyalty::Loyal),
        Stage::Mature | Stage::Growing | Stage::WonBack | Stage::New if score >= POTENTIAL_FROM => {
            Some(Loyalty::PotentiallyLoyal)
        }
        Stage::New if recency_score == 5 && frequency_score >= 2 => Some(Loyalty::PotentiallyLoyal),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_runs_from_0_to_100_by_its_documented_weights() {
        assert_eq!(score(1, 1, 1, 0), 0.0);
        assert_eq!(score(5, 5, 5, 730), 100.0);
        assert_eq!(score(5, 5, 5, 5_000), 100.0, "tenure is capped at two years");
        assert_eq!(score(1, 5, 1, 0), 35.0);
        assert_eq!(score(5, 1, 1, 0), 25.0);
        assert_eq!(score(1, 1, 5, 0), 15.0);
        assert_eq!(score(1, 1, 1, 365), 12.5);
        assert_eq!(score(3, 3, 3, 0), 37.5);
    }

    #[test]
    fn loyalty_needs_an_active_stage() {
        let high = score(5, 5, 5, 730);
        assert_eq!(classify(high, Stage::Mature, 5, 5), Some(Loyalty::Loyal));
        assert_eq!(classify(high, Stage::Growing, 5, 5), Some(Loyalty::Loyal));
        // A customer who was loyal but is fading is not called loyal.
        for stage in [Stage::Declining, Stage::Dormant, Stage::Lost] {
            assert_eq!(classify(high, stage, 5, 5), None, "{stage:?}");
        }
        // Won back with a high score: potentially loyal until they settle.
        assert_eq!(classify(high, Stage::WonBack, 5, 5), Some(Loyalty::PotentiallyLoyal));
        // At the boundaries.
        assert_eq!(classify(LOYAL_FROM, Stage::Mature, 4, 4), Some(Loyalty::Loyal));
        assert_eq!(classify(LOYAL_FROM - 0.01, Stage::Mature, 4, 4), Some(Loyalty::PotentiallyLoyal));
        assert_eq!(classify(POTENTIAL_FROM - 0.01, Stage::Mature, 3, 3), None);
    }

    #[test]
    fn a_new_customer_who_came_back_soon_is_potentially_loyal() {
        // New: tenure under 90 days keeps the score low.
        let quick_return = score(5, 2, 2, 30);
        assert!(quick_return < POTENTIAL_FROM, "{quick_return}");
        assert_eq!(classify(quick_return, Stage::New, 5, 2), Some(Loyalty::PotentiallyLoyal));
        assert_eq!(classify(score(5, 1, 2, 30), Stage::New, 5, 1), None, "one purchase only");
        assert_eq!(classify(score(4, 2, 2, 30), Stage::New, 4, 2), None, "not the most recent fifth");
    }
}
