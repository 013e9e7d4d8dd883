//! Gamma–Gamma (Fader, Hardie & Lee 2005; Hardie's note 025): the spend per purchase of
//! repeat customers, from x (repeat purchases) and m (their average spend). Fitted by
//! maximum likelihood on the log scale, as lifetimes does (BFGS with the analytic gradient
//! here); customers without repeat purchases do not enter the fit.

use crate::{
    AnalyticsError, optimize, parallel,
    special::{digamma, ln_gamma},
};

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

/// The fit's view of the repeat customers: per customer x, x·m and x's index; per distinct
/// x the count; and the sums that do not depend on the parameters.
struct Prepared {
    frequencies: Vec<f64>,
    counts: Vec<f64>,
    customers: Vec<(u32, f64, f64)>,
    sum_ln_average: f64,
    sum_x_ln_average: f64,
    sum_x_ln_x: f64,
}

impl Prepared {
    fn new(repeat: &[Spend]) -> Self {
        let mut frequencies: Vec<f64> = repeat.iter().map(|customer| customer.frequency).collect();
        frequencies.sort_unstable_by(f64::total_cmp);
        frequencies.dedup();
        let mut counts = vec![0.0; frequencies.len()];
        let (mut sum_ln_average, mut sum_x_ln_average, mut sum_x_ln_x) = (0.0, 0.0, 0.0);
        let customers = repeat
            .iter()
            .map(|customer| {
                let Spend { frequency: x, average: m } = *customer;
                let index = frequencies.binary_search_by(|probe| probe.total_cmp(&x)).unwrap_or_default();
                counts[index] += 1.0;
                sum_ln_average += m.ln();
                sum_x_ln_average += x * m.ln();
                sum_x_ln_x += x * x.ln();
                (u32::try_from(index).unwrap_or(u32::MAX), x, x * m)
            })
            .collect();
        Self { frequencies, counts, customers, sum_ln_average, sum_x_ln_average, sum_x_ln_x }
    }

    /// The summed log-likelihood and its gradient in (p, q, v).
    fn log_likelihood_with_gradient(&self, parameters: &GammaGamma) -> (f64, [f64; 3]) {
        let GammaGamma { p, q, v } = *parameters;
        let count = self.customers.len() as f64;
        let (mut value, mut gradient_p, mut gradient_q) = (0.0, 0.0, 0.0);
        for (&x, &customers) in self.frequencies.iter().zip(&self.counts) {
            let psi_pxq = digamma(p * x + q);
            value += customers * (ln_gamma(p * x + q) - ln_gamma(p * x));
            gradient_p += customers * x * (psi_pxq - digamma(p * x));
            gradient_q += customers * psi_pxq;
        }
        // Per customer: ln(x·m + v) and (p·x + q)/(x·m + v).
        let [sum_ln, sum_x_ln, sum_ratio] = parallel::fold(
            &self.customers,
            || [0.0; 3],
            |mut sums, &(_, x, total)| {
                let ln = (total + v).ln();
                sums[0] += (p * x + q) * ln;
                sums[1] += x * ln;
                sums[2] += (p * x + q) / (total + v);
                sums
            },
            |left, right| std::array::from_fn(|index| left[index] + right[index]),
        );
        let sum_ln_only = self.customers.iter().map(|&(_, _, total)| (total + v).ln()).sum::<f64>();
        value += -count * ln_gamma(q) + count * q * v.ln() + p * self.sum_x_ln_average - self.sum_ln_average
            + p * self.sum_x_ln_x
            - sum_ln;
        gradient_p += self.sum_x_ln_average + self.sum_x_ln_x - sum_x_ln;
        gradient_q += -count * digamma(q) + count * v.ln() - sum_ln_only;
        let gradient_v = count * q / v - sum_ratio;
        (value, [gradient_p, gradient_q, gradient_v])
    }
}

/// Fits the model to the customers with at least one repeat purchase and a positive average:
/// maximum likelihood over the log parameters from all at 1 (as lifetimes), by BFGS with
/// the analytic gradient.
pub fn fit(customers: &[Spend]) -> Result<GammaGammaFit, AnalyticsError> {
    let repeat: Vec<Spend> = customers
        .iter()
        .copied()
        .filter(|customer| customer.frequency > 0.0 && customer.average > 0.0)
        .collect();
    if repeat.is_empty() {
        return Err(AnalyticsError::OutOfRange { what: "repeat customers", min: 1, max: i64::MAX, found: 0 });
    }
    if let Some(index) = customers
        .iter()
        .position(|customer| !(customer.frequency.is_finite() && customer.average.is_finite()))
    {
        return Err(AnalyticsError::InvalidFigure { what: "a figure is not a finite number", index });
    }
    let prepared = Prepared::new(&repeat);
    let count = repeat.len() as f64;
    let objective = |log_parameters: &[f64; 3]| {
        let [p, q, v] = log_parameters.map(f64::exp);
        let (value, gradient) = prepared.log_likelihood_with_gradient(&GammaGamma { p, q, v });
        let value = -value / count;
        if value.is_finite() {
            (value, [-gradient[0] * p / count, -gradient[1] * q / count, -gradient[2] * v / count])
        } else {
            (f64::INFINITY, [0.0; 3])
        }
    };
    let found = optimize::bfgs(objective, [0.0; 3], 1e-10, 1_000);
    let [p, q, v] = found.point.map(f64::exp);
    Ok(GammaGammaFit {
        parameters: GammaGamma { p, q, v },
        log_likelihood: -found.value * count,
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
    fn the_prepared_likelihood_and_gradient_agree_with_the_direct_sum() {
        let repeat: Vec<Spend> = cdnow().into_iter().filter(|customer| customer.frequency > 0.0).collect();
        let prepared = Prepared::new(&repeat);
        let at = GammaGamma { p: 5.0, q: 3.0, v: 12.0 };
        let direct =
            |model: &GammaGamma| repeat.iter().map(|customer| model.log_likelihood(customer)).sum::<f64>();
        let (value, gradient) = prepared.log_likelihood_with_gradient(&at);
        assert!(((value - direct(&at)) / value).abs() < 1e-12, "{value} against {}", direct(&at));
        for (axis, analytic) in gradient.iter().enumerate() {
            let step = 1e-6;
            let moved = |delta: f64| {
                let mut values = [at.p, at.q, at.v];
                values[axis] += delta;
                direct(&GammaGamma { p: values[0], q: values[1], v: values[2] })
            };
            let numeric = (moved(step) - moved(-step)) / (2.0 * step);
            assert!(
                (analytic - numeric).abs() < 1e-4 * numeric.abs().max(1.0),
                "axis {axis}: {analytic} against {numeric}"
            );
        }
    }

    #[test]
    fn without_repeat_customers_there_is_nothing_to_fit() {
        assert!(fit(&[Spend { frequency: 0.0, average: 0.0 }]).is_err());
    }
}
