//! The arithmetic of the ledger, with no IO: how a top-up earns its bonus, how a payment is
//! split between a card's paid and bonus balances, how a refund is split back, and how a
//! tier discount is spread over a basket. Every amount is an integer count of minor units;
//! every split adds up exactly to what it splits.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Splits `total` in proportion to `weights` so that the parts add up to `total` exactly
/// (largest remainder; ties go to the earlier part). All-zero weights give everything to the
/// first part. Panics on negative inputs, which callers have already refused.
pub fn split_proportional(total: i64, weights: &[i64]) -> Vec<i64> {
    assert!(total >= 0 && weights.iter().all(|weight| *weight >= 0), "split of negative amounts");
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: i128 = weights.iter().map(|weight| i128::from(*weight)).sum();
    if sum == 0 {
        let mut parts = vec![0; weights.len()];
        parts[0] = total;
        return parts;
    }
    let mut parts: Vec<i64> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(weights.len());
    for (index, weight) in weights.iter().enumerate() {
        let exact = i128::from(total) * i128::from(*weight);
        parts.push((exact / sum) as i64);
        remainders.push((exact % sum, index));
    }
    let mut left = total - parts.iter().sum::<i64>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, index) in remainders {
        if left == 0 {
            break;
        }
        parts[index] += 1;
        left -= 1;
    }
    debug_assert_eq!(parts.iter().sum::<i64>(), total);
    parts
}

/// A top-up bonus tier: top up at least `min_top_up_minor`, get `bonus_minor` (充1000送100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BonusRule {
    pub min_top_up_minor: i64,
    pub bonus_minor: i64,
}

/// A product's bonus tiers, checked: thresholds positive and distinct, bonuses not negative
/// and not above the threshold, at most 20 tiers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BonusRules(Vec<BonusRule>);

impl BonusRules {
    pub fn parse(rules: Vec<BonusRule>) -> Result<Self, FieldError> {
        let invalid = |why: String| FieldError::new("bonus_rules", "bonus_rules.invalid", why);
        if rules.len() > 20 {
            return Err(invalid("at most 20 bonus tiers".into()));
        }
        let mut rules = rules;
        rules.sort_by_key(|rule| rule.min_top_up_minor);
        for (index, rule) in rules.iter().enumerate() {
            if rule.min_top_up_minor <= 0 {
                return Err(invalid(format!("tier {}: min_top_up_minor must be positive", index + 1)));
            }
            if rule.bonus_minor < 0 || rule.bonus_minor > rule.min_top_up_minor {
                return Err(invalid(format!(
                    "tier {}: bonus_minor must be between 0 and min_top_up_minor",
                    index + 1
                )));
            }
            if index > 0 && rules[index - 1].min_top_up_minor == rule.min_top_up_minor {
                return Err(invalid(format!("two tiers start at {}", rule.min_top_up_minor)));
            }
        }
        Ok(Self(rules))
    }

    /// The bonus of the highest tier the top-up reaches (0 below the lowest).
    pub fn bonus_for(&self, top_up_minor: i64) -> i64 {
        self.0
            .iter()
            .rev()
            .find(|rule| top_up_minor >= rule.min_top_up_minor)
            .map_or(0, |rule| rule.bonus_minor)
    }

    pub fn tiers(&self) -> &[BonusRule] {
        &self.0
    }
}

/// Which balance a payment from a card draws on first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendOrder {
    /// In proportion to the two balances, so paid and gifted money run out together.
    Proportional,
    PaidFirst,
    BonusFirst,
}

impl SpendOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proportional => "proportional",
            Self::PaidFirst => "paid_first",
            Self::BonusFirst => "bonus_first",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        [Self::Proportional, Self::PaidFirst, Self::BonusFirst]
            .into_iter()
            .find(|order| order.as_str() == raw.trim())
            .ok_or_else(|| {
                FieldError::new(
                    "spend_order",
                    "spend_order.invalid",
                    format!("`{raw}` is proportional, paid_first or bonus_first"),
                )
            })
    }
}

/// The paid and bonus parts of an amount of stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValueParts {
    pub paid_minor: i64,
    pub bonus_minor: i64,
}

impl ValueParts {
    pub fn total(self) -> i64 {
        self.paid_minor + self.bonus_minor
    }
}

/// A payment larger than what the card holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insufficient {
    pub available_minor: i64,
    pub asked_minor: i64,
}

/// How a payment of `amount` is drawn from `balance` under `order`.
pub fn split_spend(amount: i64, balance: ValueParts, order: SpendOrder) -> Result<ValueParts, Insufficient> {
    assert!(amount >= 0 && balance.paid_minor >= 0 && balance.bonus_minor >= 0, "negative spend or balance");
    if amount > balance.total() {
        return Err(Insufficient { available_minor: balance.total(), asked_minor: amount });
    }
    let parts = match order {
        SpendOrder::PaidFirst => {
            let paid = amount.min(balance.paid_minor);
            ValueParts { paid_minor: paid, bonus_minor: amount - paid }
        }
        SpendOrder::BonusFirst => {
            let bonus = amount.min(balance.bonus_minor);
            ValueParts { paid_minor: amount - bonus, bonus_minor: bonus }
        }
        SpendOrder::Proportional => {
            let split = split_proportional(amount, &[balance.paid_minor, balance.bonus_minor]);
            ValueParts { paid_minor: split[0], bonus_minor: split[1] }
        }
    };
    debug_assert!(parts.paid_minor <= balance.paid_minor && parts.bonus_minor <= balance.bonus_minor);
    Ok(parts)
}

/// How much of a refund goes back to the paid and to the bonus balance: in proportion to
/// what the original payment drew from each, and exactly what is left of it when the
/// refund takes the rest (so partial refunds never drift from the original by rounding).
pub fn split_refund(refund_minor: i64, original: ValueParts, refunded_before: ValueParts) -> ValueParts {
    let remaining = ValueParts {
        paid_minor: original.paid_minor - refunded_before.paid_minor,
        bonus_minor: original.bonus_minor - refunded_before.bonus_minor,
    };
    assert!(
        refund_minor >= 0
            && remaining.paid_minor >= 0
            && remaining.bonus_minor >= 0
            && refund_minor <= remaining.total(),
        "refund beyond what remains"
    );
    if refund_minor == remaining.total() {
        return remaining;
    }
    let split = split_proportional(refund_minor, &[remaining.paid_minor, remaining.bonus_minor]);
    ValueParts { paid_minor: split[0], bonus_minor: split[1] }
}

/// A discount rate in basis points (1/100 of a percent): 950 is 9.5% off, a 9.05 折 price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct DiscountRate(i64);

impl DiscountRate {
    pub const NONE: DiscountRate = DiscountRate(0);

    pub fn basis_points(self) -> i64 {
        self.0
    }

    /// The discount on `amount`, rounded down to the minor unit (the customer never pays
    /// less than the rate says).
    pub fn of(self, amount_minor: i64) -> i64 {
        (i128::from(amount_minor) * i128::from(self.0) / 10_000) as i64
    }
}

impl TryFrom<i64> for DiscountRate {
    type Error = FieldError;
    fn try_from(basis_points: i64) -> Result<Self, FieldError> {
        if (0..=10_000).contains(&basis_points) {
            Ok(Self(basis_points))
        } else {
            Err(FieldError::new(
                "discount_bp",
                "discount.invalid",
                format!("a discount is 0 to 10000 basis points, not {basis_points}"),
            ))
        }
    }
}

impl From<DiscountRate> for i64 {
    fn from(rate: DiscountRate) -> Self {
        rate.0
    }
}

/// Spreads a total discount over basket lines in proportion to their amounts, exactly.
pub fn spread_discount(discount_minor: i64, line_amounts: &[i64]) -> Vec<i64> {
    split_proportional(discount_minor, line_amounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proportional_splits_add_up_exactly() {
        assert_eq!(split_proportional(100, &[1, 1, 1]), vec![34, 33, 33]);
        assert_eq!(split_proportional(10, &[0, 0]), vec![10, 0]);
        assert_eq!(split_proportional(0, &[5, 7]), vec![0, 0]);
        assert_eq!(split_proportional(7, &[1000, 100]), vec![6, 1]);
    }

    #[test]
    fn bonus_tiers_pay_the_highest_reached() {
        let rules = BonusRules::parse(vec![
            BonusRule { min_top_up_minor: 200_000, bonus_minor: 30_000 },
            BonusRule { min_top_up_minor: 100_000, bonus_minor: 10_000 },
        ])
        .unwrap();
        assert_eq!(rules.bonus_for(99_999), 0);
        assert_eq!(rules.bonus_for(100_000), 10_000);
        assert_eq!(rules.bonus_for(199_999), 10_000);
        assert_eq!(rules.bonus_for(500_000), 30_000);
        assert!(BonusRules::parse(vec![BonusRule { min_top_up_minor: 100, bonus_minor: 101 }]).is_err());
        assert!(BonusRules::parse(vec![BonusRule { min_top_up_minor: 0, bonus_minor: 0 }]).is_err());
    }

    #[test]
    fn spends_follow_the_order_and_refuse_overdraw() {
        let balance = ValueParts { paid_minor: 1_000, bonus_minor: 100 };
        assert_eq!(
            split_spend(550, balance, SpendOrder::Proportional).unwrap(),
            ValueParts { paid_minor: 500, bonus_minor: 50 }
        );
        assert_eq!(
            split_spend(1_050, balance, SpendOrder::PaidFirst).unwrap(),
            ValueParts { paid_minor: 1_000, bonus_minor: 50 }
        );
        assert_eq!(
            split_spend(150, balance, SpendOrder::BonusFirst).unwrap(),
            ValueParts { paid_minor: 50, bonus_minor: 100 }
        );
        assert_eq!(
            split_spend(1_101, balance, SpendOrder::Proportional),
            Err(Insufficient { available_minor: 1_100, asked_minor: 1_101 })
        );
    }

    #[test]
    fn refunds_go_back_in_proportion_and_the_last_one_closes_exactly() {
        let original = ValueParts { paid_minor: 667, bonus_minor: 333 };
        let first = split_refund(500, original, ValueParts::default());
        assert_eq!(first, ValueParts { paid_minor: 334, bonus_minor: 166 });
        let rest = split_refund(500, original, first);
        assert_eq!(rest, ValueParts { paid_minor: 333, bonus_minor: 167 });
        assert_eq!(first.total() + rest.total(), original.total());
    }

    #[test]
    fn discounts_round_down_and_spread_exactly() {
        let rate = DiscountRate::try_from(950).unwrap();
        assert_eq!(rate.of(10_000), 950);
        assert_eq!(rate.of(999), 94);
        assert!(DiscountRate::try_from(10_001).is_err());
        assert_eq!(spread_discount(100, &[300, 100]), vec![75, 25]);
    }

    proptest! {
        #[test]
        fn every_split_is_exact_and_bounded(
            total in 0_i64..10_000_000_000,
            weights in proptest::collection::vec(0_i64..1_000_000_000, 1..8),
        ) {
            let parts = split_proportional(total, &weights);
            prop_assert_eq!(parts.iter().sum::<i64>(), total);
            prop_assert!(parts.iter().all(|part| *part >= 0));
        }

        #[test]
        fn spends_never_take_more_than_a_balance_holds(
            paid in 0_i64..1_000_000, bonus in 0_i64..1_000_000, amount in 0_i64..2_000_000, order in 0_u8..3,
        ) {
            let order = [SpendOrder::Proportional, SpendOrder::PaidFirst, SpendOrder::BonusFirst][order as usize];
            let balance = ValueParts { paid_minor: paid, bonus_minor: bonus };
            match split_spend(amount, balance, order) {
                Ok(parts) => {
                    prop_assert_eq!(parts.total(), amount);
                    prop_assert!(parts.paid_minor >= 0 && parts.paid_minor <= paid);
                    prop_assert!(parts.bonus_minor >= 0 && parts.bonus_minor <= bonus);
                }
                Err(refusal) => prop_assert!(amount > paid + bonus && refusal.available_minor == paid + bonus),
            }
        }

        #[test]
        fn refunds_in_pieces_return_exactly_the_original(
            paid in 0_i64..1_000_000, bonus in 0_i64..1_000_000, cuts in proptest::collection::vec(1_i64..100, 1..6),
        ) {
            let original = ValueParts { paid_minor: paid, bonus_minor: bonus };
            let mut refunded = ValueParts::default();
            let weights: i64 = cuts.iter().sum();
            let pieces = split_proportional(original.total(), &cuts);
            prop_assert_eq!(weights > 0, true);
            for piece in pieces {
                let part = split_refund(piece, original, refunded);
                refunded.paid_minor += part.paid_minor;
                refunded.bonus_minor += part.bonus_minor;
                prop_assert!(refunded.paid_minor <= paid && refunded.bonus_minor <= bonus);
            }
            prop_assert_eq!(refunded, original);
        }
    }
}
