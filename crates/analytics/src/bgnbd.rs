//! BG/NBD (Fader, Hardie & Lee 2005): how many purchases a customer will make, and the
//! probability they are still "alive", from three figures per customer in a time unit
//! (days or weeks): x, the repeat purchases (distinct purchase periods − 1); t_x, the time
//! from the first to the last purchase; T, the time from the first purchase to the end of
//! the calibration period. Parameters are fitted by maximum likelihood on the log scale with
//! Nelder–Mead, as the Python `lifetimes` package does, to a tighter tolerance.

use crate::{
    AnalyticsError, optimize,
    special::{hypergeometric_2f1, ln_gamma},
};

/// One customer's calibration figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub frequency: f64,
    pub recency: f64,
    pub age: f64,
}

/// Fitted parameters: r and α of the gamma purchase rates, a and b of the beta dropout.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// A fit: the parameters, the log-likelihood (summed over customers) and the work it took.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BgNbdFit {
    pub parameters: BgNbd,
    pub log_likelihood: f64,
    pub evaluations: usize,
}

/// Most customers one fit takes.
pub const CUSTOMERS_MAX: usize = 50_000_000;

impl BgNbd {
    /// One customer's log-likelihood.
    pub fn log_likelihood(&self, customer: &Calibration) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let Calibration { frequency: x, recency: t_x, age: t } = *customer;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
            let (high, low) = if a3 >= a4 { (a3, a4) } else { (a4, a3) };
            a1 + a2 + high + (low - high).exp().ln_1p()
        } else {
            a1 + a2 + a3
        }
    }

    /// P(alive) at the end of the calibration period.
    pub fn probability_alive(&self, customer: &Calibration) -> f64 {
        let Calibration { frequency: x, recency: t_x, age: t } = *customer;
        if x <= 0.0 {
            return 1.0;
        }
        let ratio = ((self.alpha + t) / (self.alpha + t_x)).ln() * (self.r + x);
        1.0 / (1.0 + (self.a / (self.b + x - 1.0)) * ratio.exp())
    }
}

impl BgNbd {
    /// E[X(t) | x, t_x, T]: purchases expected in the next `t` units (lifetimes'
    /// `conditional_expected_number_of_purchases_up_to_time`, with its fallback through
    /// Euler's transformation when the series does not converge).
    pub fn expected_purchases(&self, t: f64, customer: &Calibration) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let Calibration { frequency: x, recency: t_x, age: age_t } = *customer;
        let (big_a, big_b, big_c) = (r + x, b + x, a + b + x - 1.0);
        let z = t / (alpha + age_t + t);
        let mut ln_hypergeometric = hypergeometric_2f1(big_a, big_b, big_c, z).ln();
        if !ln_hypergeometric.is_finite() {
            ln_hypergeometric = hypergeometric_2f1(big_c - big_a, big_c - big_b, big_c, z).ln()
                + (big_c - big_a - big_b) * (1.0 - z).ln();
        }
        let first = (a + b + x - 1.0) / (a - 1.0);
        let second = 1.0 - (ln_hypergeometric + (r + x) * ((alpha + age_t) / (alpha + t + age_t)).ln()).exp();
        let repeat =
            if x > 0.0 { (a / (b + x - 1.0)) * ((alpha + age_t) / (alpha + t_x)).powf(r + x) } else { 0.0 };
        first * second / (1.0 + repeat)
    }
}

/// Summed log-likelihood of all customers.
pub fn total_log_likelihood(parameters: &BgNbd, customers: &[Calibration]) -> f64 {
    customers.iter().map(|customer| parameters.log_likelihood(customer)).sum()
}

/// Fits the model to the customers' calibration figures.
pub fn fit(customers: &[Calibration]) -> Result<BgNbdFit, AnalyticsError> {
    if customers.is_empty() || customers.len() > CUSTOMERS_MAX {
        return Err(AnalyticsError::OutOfRange {
            what: "customers",
            min: 1,
            max: CUSTOMERS_MAX as i64,
            found: customers.len() as i64,
        });
    }
    let count = customers.len() as f64;
    let objective = |log_parameters: &[f64; 4]| {
        let [r, alpha, a, b] = log_parameters.map(f64::exp);
        let value = -total_log_likelihood(&BgNbd { r, alpha, a, b }, customers) / count;
        if value.is_finite() { value } else { f64::INFINITY }
    };
    // lifetimes starts from all parameters at 1 (log 0).
    let found = optimize::nelder_mead(objective, [0.0; 4], 0.1, 1e-12, 20_000);
    let [r, alpha, a, b] = found.point.map(f64::exp);
    let parameters = BgNbd { r, alpha, a, b };
    Ok(BgNbdFit {
        parameters,
        log_likelihood: total_log_likelihood(&parameters, customers),
        evaluations: found.evaluations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdnow() -> Vec<Calibration> {
        include_str!("../testdata/cdnow_summary.csv")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.starts_with("ID"))
            .map(|line| {
                let fields: Vec<f64> = line.split(',').skip(1).map(|field| field.parse().unwrap()).collect();
                Calibration { frequency: fields[0], recency: fields[1], age: fields[2] }
            })
            .collect()
    }

    fn relative(found: f64, expected: f64) -> f64 {
        ((found - expected) / expected).abs()
    }

    #[test]
    fn fits_the_cdnow_sample_as_lifetimes_does() {
        let customers = cdnow();
        assert_eq!(customers.len(), 2_357);
        let fit = fit(&customers).unwrap();
        let found = fit.parameters;
        // lifetimes 0.11: r 0.2425929282798216, α 4.4135322652718125, a 0.7928859664406493,
        // b 2.42575238262571, LL −9582.425560567366 (the paper: 0.243, 4.414, 0.793, 2.426).
        for (name, found, expected) in [
            ("r", found.r, 0.2425929282798216),
            ("alpha", found.alpha, 4.4135322652718125),
            ("a", found.a, 0.7928859664406493),
            ("b", found.b, 2.42575238262571),
        ] {
            assert!(relative(found, expected) < 1e-3, "{name}: {found} against {expected}");
        }
        assert!(fit.log_likelihood >= -9582.425560567366 - 1e-6, "{}", fit.log_likelihood);
        assert!(fit.log_likelihood < -9582.0);
    }

    #[test]
    fn probability_alive_is_one_without_repeats_and_falls_with_silence() {
        let model = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
        assert_eq!(model.probability_alive(&Calibration { frequency: 0.0, recency: 0.0, age: 38.0 }), 1.0);
        // lifetimes' conditional_probability_alive with the same parameters: 0.83781395, 0.04061338.
        let recent = model.probability_alive(&Calibration { frequency: 3.0, recency: 37.0, age: 38.0 });
        let silent = model.probability_alive(&Calibration { frequency: 3.0, recency: 5.0, age: 38.0 });
        assert!((recent - 0.83781395).abs() < 1e-8, "{recent}");
        assert!((silent - 0.04061338).abs() < 1e-8, "{silent}");
    }

    #[test]
    fn expected_purchases_match_lifetimes() {
        let model = BgNbd {
            r: 0.2425929282798216,
            alpha: 4.4135322652718125,
            a: 0.7928859664406493,
            b: 2.42575238262571,
        };
        // lifetimes' conditional_expected_number_of_purchases_up_to_time(39, x, t_x, T).
        for ((x, t_x, age), expected) in [
            ((2.0, 30.43, 38.86), 1.2259104241744159),
            ((1.0, 1.71, 38.86), 0.2032506242561891),
            ((0.0, 0.0, 38.86), 0.1947808579394768),
            ((7.0, 29.43, 38.86), 3.337239646526959),
            ((40.0, 38.0, 38.86), 26.7795568576079),
        ] {
            let found = model.expected_purchases(39.0, &Calibration { frequency: x, recency: t_x, age });
            assert!(relative(found, expected) < 1e-9, "{x} {t_x}: {found} against {expected}");
        }
    }

    #[test]
    fn no_customers_is_refused() {
        assert!(fit(&[]).is_err());
    }
}
