//! Customer lifetime value 客户终身价值 over a horizon: BG/NBD's expected purchases in each
//! month times Gamma–Gamma's expected spend per purchase, discounted monthly — the method
//! of lifetimes' `customer_lifetime_value`.

use crate::{
    bgnbd::{BgNbd, Calibration, distinct_figures},
    features::PeriodUnit as Unit,
    gamma_gamma::{GammaGamma, Spend},
    parallel,
};

/// Most months a horizon may have.
pub const MONTHS_MAX: u32 = 600;

/// The horizon of a valuation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Horizon {
    pub months: u32,
    /// 0.01 is 1% a month.
    pub monthly_discount: f64,
    pub unit: Unit,
}

/// What the models say of one customer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub probability_alive: f64,
    /// Purchases expected over the whole horizon.
    pub expected_purchases: f64,
    /// Expected spend per purchase (Gamma–Gamma).
    pub expected_average: f64,
    /// Discounted value over the horizon.
    pub value: f64,
}

/// The value of one customer over `months`, at `monthly_discount` (0.01: 1% a month).
pub fn lifetime_value(
    purchases: &BgNbd,
    spend: &GammaGamma,
    calibration: &Calibration,
    average: &Spend,
    months: u32,
    monthly_discount: f64,
    unit: Unit,
) -> f64 {
    let horizon = Horizon { months, monthly_discount, unit };
    let mut scratch = Scratch::new(&horizon);
    spend.expected_average(average)
        * outlook(purchases, calibration, &horizon, &mut scratch).discounted_purchases
}

/// Month ends of the horizon in model units, and room for the expected purchases at each.
struct Scratch {
    times: Vec<f64>,
    expected: Vec<f64>,
    discounts: Vec<f64>,
}

impl Scratch {
    fn new(horizon: &Horizon) -> Self {
        let months = horizon.months.clamp(1, MONTHS_MAX);
        let factor = horizon.unit.per_month();
        Self {
            times: (1..=months).map(|month| f64::from(month) * factor).collect(),
            expected: vec![0.0; months as usize],
            discounts: (1..=months)
                .map(|month| (1.0 + horizon.monthly_discount).powf(f64::from(month)))
                .collect(),
        }
    }
}

/// What BG/NBD says of one customer's figures over the horizon: P(alive), the purchases
/// expected over it, and the discounted sum of each month's expected purchases (the value
/// of one unit of spend per purchase).
struct Outlook {
    probability_alive: f64,
    expected_purchases: f64,
    discounted_purchases: f64,
}

fn outlook(
    purchases: &BgNbd,
    calibration: &Calibration,
    horizon: &Horizon,
    scratch: &mut Scratch,
) -> Outlook {
    purchases.expected_purchases_at(&scratch.times, calibration, &mut scratch.expected);
    let mut discounted = 0.0;
    let mut before = 0.0;
    for (until, discount) in scratch.expected.iter().zip(&scratch.discounts) {
        discounted += (until - before) / discount;
        before = *until;
    }
    Outlook {
        probability_alive: purchases.probability_alive(calibration),
        expected_purchases: before,
        discounted_purchases: if horizon.months == 0 { 0.0 } else { discounted },
    }
}

/// Every customer's prediction, in order, on all cores. The purchase model's part (the
/// expensive one: a ₂F₁ series per month) is worked out once per distinct (x, t_x, T).
pub fn predict(
    purchases: &BgNbd,
    spend: &GammaGamma,
    customers: &[(Calibration, Spend)],
    horizon: &Horizon,
) -> Vec<Prediction> {
    let (distinct, indexes) = distinct_figures(customers.iter().map(|(calibration, _)| *calibration));
    let outlooks: Vec<Outlook> = parallel::fold(
        &distinct,
        || (Vec::new(), Scratch::new(horizon)),
        |(mut found, mut scratch), calibration| {
            found.push(outlook(purchases, calibration, horizon, &mut scratch));
            (found, scratch)
        },
        |(mut left, scratch), (right, _)| {
            left.extend(right);
            (left, scratch)
        },
    )
    .0;
    customers
        .iter()
        .zip(indexes)
        .map(|((_, average), index)| {
            let outlook = &outlooks[index as usize];
            let expected_average = spend.expected_average(average);
            Prediction {
                probability_alive: outlook.probability_alive,
                expected_purchases: outlook.expected_purchases,
                expected_average,
                value: expected_average * outlook.discounted_purchases,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_lifetimes_on_cdnow_customers() {
        let purchases = BgNbd {
            r: 0.2425929282798216,
            alpha: 4.4135322652718125,
            a: 0.7928859664406493,
            b: 2.42575238262571,
        };
        let spend = GammaGamma { p: 6.248802496079201, q: 3.74458846092242, v: 15.447748064915702 };
        // lifetimes: customer_lifetime_value(bgf, …, time=12, discount_rate=0.01, freq="W").
        for ((x, t_x, average), expected) in [
            ((2.0, 30.43, 22.35), 36.27849576),
            ((1.0, 1.71, 11.77), 4.63746633),
            ((7.0, 29.43, 73.74), 283.52359259),
        ] {
            let found = lifetime_value(
                &purchases,
                &spend,
                &Calibration { frequency: x, recency: t_x, age: 38.86 },
                &Spend { frequency: x, average },
                12,
                0.01,
                Unit::Week,
            );
            assert!((found - expected).abs() < 1e-6, "{x}: {found} against {expected}");
        }
    }

    #[test]
    fn predicting_all_at_once_agrees_with_one_by_one() {
        let purchases = BgNbd { r: 0.24, alpha: 4.4, a: 0.79, b: 2.4 };
        let spend = GammaGamma { p: 6.2, q: 3.7, v: 15.4 };
        let horizon = Horizon { months: 12, monthly_discount: 0.01, unit: Unit::Week };
        // Repeated figures with different spends, and distinct ones.
        let customers: Vec<(Calibration, Spend)> = (0..200)
            .map(|index| {
                let x = f64::from(index % 7);
                let recency = if x > 0.0 { f64::from(index % 5) + x } else { 0.0 };
                let calibration = Calibration { frequency: x, recency, age: 30.0 };
                (calibration, Spend { frequency: x, average: 10.0 + f64::from(index) })
            })
            .collect();
        let all = predict(&purchases, &spend, &customers, &horizon);
        for ((calibration, average), found) in customers.iter().zip(&all) {
            let value = lifetime_value(&purchases, &spend, calibration, average, 12, 0.01, Unit::Week);
            assert!((found.value - value).abs() <= 1e-12 * value.abs().max(1.0), "{found:?} against {value}");
            assert_eq!(found.probability_alive, purchases.probability_alive(calibration));
            assert_eq!(found.expected_average, spend.expected_average(average));
        }
    }
}
