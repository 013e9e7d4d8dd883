//! Customer lifetime value 客户终身价值 over a horizon: BG/NBD's expected purchases in each
//! month times Gamma–Gamma's expected spend per purchase, discounted monthly — the method
//! of lifetimes' `customer_lifetime_value`.

use crate::{
    bgnbd::{BgNbd, Calibration},
    gamma_gamma::{GammaGamma, Spend},
};

/// Most months a horizon may have.
pub const MONTHS_MAX: u32 = 600;

/// The model's time unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Day,
    Week,
}

impl Unit {
    /// Units in a month, as lifetimes counts them (30 days, 4.345 weeks).
    pub fn per_month(self) -> f64 {
        match self {
            Self::Day => 30.0,
            Self::Week => 4.345,
        }
    }
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
    let per_purchase = spend.expected_average(average);
    let factor = unit.per_month();
    let mut value = 0.0;
    let mut before = 0.0;
    for month in 1..=months.min(MONTHS_MAX) {
        let until = purchases.expected_purchases(f64::from(month) * factor, calibration);
        value += per_purchase * (until - before) / (1.0 + monthly_discount).powf(f64::from(month));
        before = until;
    }
    value
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
}
