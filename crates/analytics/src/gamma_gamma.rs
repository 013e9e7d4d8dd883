//! Gamma–Gamma (Fader, Hardie & Lee 2005; Hardie's note 025): the spend per purchase of
//! repeat customers, from x (repeat purchases) and m (their average spend). Fitted by
//! maximum likelihood on the log scale with Nelder–Mead, as lifetimes does; customers
//! without repeat purchases do not enter the fit.

use crate::{AnalyticsError, optimize, special::ln_gamma};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GammaGammaFit {
    pub parameters: GammaGamma,
    pub log_likelihood: f64,
    pub customers: usize,
    pub evaluations: usize,
}

/// One repeat customer: x repeat purchases with an average spend of m.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    pub frequency: f64,
    pub average: f64,
}

impl GammaGamma {
    pub fn log_likelihood(&self, customer: &Spend) -> f64 {
        let Self { p, q, v } = *self;
        let Spend { frequency: x, average: m } = *customer;
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * v.ln()
            + (p * x - 1.0) * m.ln()
            + (p * x) * x.ln()
            - (p * x + q) * (x * m + v).ln()
    }

    /// E[M | x, m]: the customer's expected spend per purchase, between the population's
    /// mean and their own average (lifetimes' `conditional_expected_average_profit`).
    pub fn expected_average(&self, customer: &Spend) -> f64 {
        let Self { p, q, v } = *self;
        let population = v * p / (q - 1.0);
        let weight = p * customer.frequency / (p * customer.frequency + q - 1.0);
        (1.0 - weight) * population + weight * customer.average
    }
}

/// Fits the model to the customers with at least one repeat purchase and a positive average.
pub fn fit(customers: &[Spend]) -> Result<GammaGammaFit, AnalyticsError> {
    let repeat: Vec<Spend> = customers
        .iter()
        .copied()
        .filter(|customer| customer.frequency > 0.0 && customer.average > 0.0)
        .collect();
    if repeat.is_empty() {
        return Err(AnalyticsError::OutOfRange { what: "repeat customers", min: 1, max: i64::MAX, found: 0 });
    }
    let count = repeat.len() as f64;
    let objective = |log_parameters: &[f64; 3]| {
        let [p, q, v] = log_parameters.map(f64::exp);
        let model = GammaGamma { p, q, v };
        let value = -repeat.iter().map(|customer| model.log_likelihood(customer)).sum::<f64>() / count;
        if value.is_finite() { value } else { f64::INFINITY }
    };
    let found = optimize::nelder_mead(objective, [0.0; 3], 0.1, 1e-12, 20_000);
    let [p, q, v] = found.point.map(f64::exp);
    let parameters = GammaGamma { p, q, v };
    Ok(GammaGammaFit {
        parameters,
        log_likelihood: repeat.iter().map(|customer| parameters.log_likelihood(customer)).sum(),
        customers: repeat.len(),
        evaluations: found.evaluations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdnow() -> Vec<Spend> {
        include_str!("../testdata/cdnow_spend.csv")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.starts_with("ID"))
            .map(|line| {
                let fields: Vec<f64> = line.split(',').skip(1).map(|field| field.parse().unwrap()).collect();
                Spend { frequency: fields[0], average: fields[3] }
            })
            .collect()
    }

    #[test]
    fn fits_the_cdnow_sample_as_lifetimes_does() {
        let fit = fit(&cdnow()).unwrap();
        assert_eq!(fit.customers, 946);
        let found = fit.parameters;
        for (name, found, expected) in [
            ("p", found.p, 6.248802496079201),
            ("q", found.q, 3.74458846092242),
            ("v", found.v, 15.447748064915702),
        ] {
            assert!(((found - expected) / expected).abs() < 1e-3, "{name}: {found} against {expected}");
        }
        assert!(fit.log_likelihood >= -4055.9232435028625 - 1e-6, "{}", fit.log_likelihood);
    }

    #[test]
    fn expected_average_matches_lifetimes() {
        let model = GammaGamma { p: 6.248802496079201, q: 3.74458846092242, v: 15.447748064915702 };
        // lifetimes' conditional_expected_average_profit for the first three repeat customers.
        for (spend, expected) in [
            (Spend { frequency: 2.0, average: 22.35 }, 24.65861619),
            (Spend { frequency: 1.0, average: 11.77 }, 18.91147987),
            (Spend { frequency: 7.0, average: 73.74 }, 71.4628508),
        ] {
            assert!((model.expected_average(&spend) - expected).abs() < 1e-6, "{spend:?}");
        }
    }

    #[test]
    fn without_repeat_customers_there_is_nothing_to_fit() {
        assert!(fit(&[Spend { frequency: 0.0, average: 0.0 }]).is_err());
    }
}
