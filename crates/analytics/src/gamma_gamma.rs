//! Gamma–Gamma (Fader, Hardie & Lee 2005; Hardie's note 025): the spend per purchase of
//! repeat customers, from x (repeat purchases) and m (their average spend). Fitted by
//! maximum likelihood on the log scale, as lifetimes does (Newton's method with the
//! analytic Hessian here); customers without repeat purchases do not enter the fit.

use crate::{
    AnalyticsError, optimize, parallel,
    special::{digamma, ln_gamma, trigamma},
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

/// The fit's view of the repeat customers: per customer x and x·m; per distinct
/// x the count; and the sums that do not depend on the parameters.
struct Prepared {
    frequencies: Vec<f64>,
    counts: Vec<f64>,
    /// Per customer: x and x·m.
    customers: Vec<(f64, f64)>,
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
                (x, x * m)
            })
            .collect();
        Self { frequencies, counts, customers, sum_ln_average, sum_x_ln_average, sum_x_ln_x }
    }

    /// The summed log-likelihood alone.
    fn log_likelihood(&self, parameters: &GammaGamma) -> f64 {
        let GammaGamma { p, q, v } = *parameters;
        let count = self.customers.len() as f64;
        let by_frequency: f64 = self
            .frequencies
            .iter()
            .zip(&self.counts)
            .map(|(&x, &customers)| customers * (ln_gamma(p * x + q) - ln_gamma(p * x)))
            .sum();
        let weighted_logs = parallel::fold(
            &self.customers,
            || 0.0,
            |sum, &(x, total)| sum + (p * x + q) * (total + v).ln(),
            |left, right| left + right,
        );
        by_frequency - count * ln_gamma(q) + count * q * v.ln() + p * self.sum_x_ln_average
            - self.sum_ln_average
            + p * self.sum_x_ln_x
            - weighted_logs
    }

    /// The summed log-likelihood, its gradient and its Hessian in (p, q, v): one logarithm
    /// and one division per customer, the gamma functions per distinct x.
    fn log_likelihood_with_derivatives(&self, parameters: &GammaGamma) -> (f64, [f64; 3], [[f64; 3]; 3]) {
        let GammaGamma { p, q, v } = *parameters;
        let count = self.customers.len() as f64;
        let (mut value, mut gradient_p, mut gradient_q) = (0.0, 0.0, 0.0);
        let (mut pp, mut pq, mut qq) = (0.0, 0.0, 0.0);
        for (&x, &customers) in self.frequencies.iter().zip(&self.counts) {
            let (psi_pxq, trigamma_pxq) = (digamma(p * x + q), trigamma(p * x + q));
            value += customers * (ln_gamma(p * x + q) - ln_gamma(p * x));
            gradient_p += customers * x * (psi_pxq - digamma(p * x));
            gradient_q += customers * psi_pxq;
            pp += customers * x * x * (trigamma_pxq - trigamma(p * x));
            pq += customers * x * trigamma_pxq;
            qq += customers * trigamma_pxq;
        }
        // Per customer, with L = ln(x·m + v) and u = 1/(x·m + v): Σ (p·x + q)·L, Σ x·L, Σ L,
        // Σ (p·x + q)·u, Σ x·u, Σ u, Σ (p·x + q)·u².
        let sums = parallel::fold(
            &self.customers,
            || [0.0; 7],
            |mut sums, &(x, total)| {
                let ln = (total + v).ln();
                let inverse = 1.0 / (total + v);
                let weight = p * x + q;
                sums[0] += weight * ln;
                sums[1] += x * ln;
                sums[2] += ln;
                sums[3] += weight * inverse;
                sums[4] += x * inverse;
                sums[5] += inverse;
                sums[6] += weight * inverse * inverse;
                sums
            },
            |left, right| std::array::from_fn(|index| left[index] + right[index]),
        );
        value += -count * ln_gamma(q) + count * q * v.ln() + p * self.sum_x_ln_average - self.sum_ln_average
            + p * self.sum_x_ln_x
            - sums[0];
        gradient_p += self.sum_x_ln_average + self.sum_x_ln_x - sums[1];
        gradient_q += -count * digamma(q) + count * v.ln() - sums[2];
        let gradient_v = count * q / v - sums[3];
        qq -= count * trigamma(q);
        let pv = -sums[4];
        let qv = count / v - sums[5];
        let vv = -count * q / (v * v) + sums[6];
        (value, [gradient_p, gradient_q, gradient_v], [[pp, pq, pv], [pq, qq, qv], [pv, qv, vv]])
    }
}

/// Fits the model to the customers with at least one repeat purchase and a positive average:
/// maximum likelihood over the log parameters from all at 1, by damped Newton steps with the
/// analytic gradient and Hessian (a few passes over the customers).
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
    // On the log scale θ = ln(p, q, v) and for the mean negative log-likelihood f:
    // ∂f/∂θᵢ = −gᵢ·Pᵢ/N and ∂²f/∂θᵢ∂θⱼ = −(Hᵢⱼ·Pᵢ·Pⱼ + [i = j]·gᵢ·Pᵢ)/N.
    let objective = |log_parameters: &[f64; 3]| {
        let scale = log_parameters.map(f64::exp);
        let [p, q, v] = scale;
        let (value, gradient, hessian) = prepared.log_likelihood_with_derivatives(&GammaGamma { p, q, v });
        let value = -value / count;
        if !value.is_finite() {
            return (f64::INFINITY, [0.0; 3], [[0.0; 3]; 3]);
        }
        let by_log: [f64; 3] = std::array::from_fn(|axis| -gradient[axis] * scale[axis] / count);
        let curvature: [[f64; 3]; 3] = std::array::from_fn(|row| {
            std::array::from_fn(|column| {
                -(hessian[row][column] * scale[row] * scale[column]
                    + if row == column { gradient[row] * scale[row] } else { 0.0 })
                    / count
            })
        });
        (value, by_log, curvature)
    };
    // Steps of at most a factor e per parameter, from the method-of-moments estimate where
    // the sample gives one (far from the optimum the Hessian is not positive definite and
    // Newton's steps are short: from all at 1 the CDNOW fit took 169 passes).
    let start =
        moments_start(&repeat, &prepared).map_or([0.0; 3], |model| [model.p, model.q, model.v].map(f64::ln));
    let found = optimize::newton(objective, start, 1.0, 1e-10, 1_000);
    let [p, q, v] = found.point.map(f64::exp);
    Ok(GammaGammaFit {
        parameters: GammaGamma { p, q, v },
        log_likelihood: -found.value * count,
        customers: repeat.len(),
        evaluations: found.evaluations,
    })
}

/// A starting point for the fit by the method of moments. In the model a customer's average
/// m over x purchases has, with ν ~ Gamma(q, v) the customer's spend scale and x independent
/// of ν: E[m] = p·v/(q − 1) and E[m²] = K·(p·E[1/x] + p²) with K = v²/((q − 1)(q − 2)).
/// The first two moments fix q and v for a given p (K·p²/E[m]² = (q − 1)/(q − 2)); p itself
/// is poorly identified by moments (the third equation, from E[x·m²], gives negative p on
/// CDNOW), so the candidates p = 2⁻², 2⁻¹, …, 2⁶ are tried and the one with the highest
/// likelihood is kept. `None` when no candidate gives valid parameters (q > 2).
fn moments_start(repeat: &[Spend], prepared: &Prepared) -> Option<GammaGamma> {
    let count = repeat.len() as f64;
    let [mean, second, inverse_frequency] = repeat.iter().fold([0.0; 3], |sums, customer| {
        let Spend { frequency: x, average: m } = *customer;
        [sums[0] + m, sums[1] + m * m, sums[2] + 1.0 / x]
    });
    let (mean, second, inverse_frequency) = (mean / count, second / count, inverse_frequency / count);
    let valid = |value: f64| value.is_finite() && value > 0.0;
    (-2..=6)
        .filter_map(|exponent| {
            let p = 2.0_f64.powi(exponent);
            let ratio = second * p / ((inverse_frequency + p) * mean * mean);
            let q = (2.0 * ratio - 1.0) / (ratio - 1.0);
            let v = mean * (q - 1.0) / p;
            let model = GammaGamma { p, q, v };
            (ratio > 1.0 && valid(q) && q > 2.0 && valid(v)).then(|| (prepared.log_likelihood(&model), model))
        })
        .filter(|(value, _)| value.is_finite())
        .max_by(|left, right| left.0.total_cmp(&right.0))
        .map(|(_, model)| model)
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
        // From the moments start Newton takes 6 passes here (169 from all at 1, where the
        // Hessian is not positive definite and the shifted steps are short).
        assert!(fit.evaluations <= 12, "{}", fit.evaluations);
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
    fn the_prepared_likelihood_gradient_and_hessian_agree_with_differences() {
        let repeat: Vec<Spend> = cdnow().into_iter().filter(|customer| customer.frequency > 0.0).collect();
        let prepared = Prepared::new(&repeat);
        let at = GammaGamma { p: 5.0, q: 3.0, v: 12.0 };
        let direct =
            |model: &GammaGamma| repeat.iter().map(|customer| model.log_likelihood(customer)).sum::<f64>();
        let (value, gradient, hessian) = prepared.log_likelihood_with_derivatives(&at);
        assert!(((value - direct(&at)) / value).abs() < 1e-12, "{value} against {}", direct(&at));
        assert!(((prepared.log_likelihood(&at) - value) / value).abs() < 1e-12);
        let moved = |axis: usize, delta: f64| {
            let mut values = [at.p, at.q, at.v];
            values[axis] += delta;
            GammaGamma { p: values[0], q: values[1], v: values[2] }
        };
        let step = 1e-5;
        for (axis, analytic) in gradient.iter().enumerate() {
            let numeric = (direct(&moved(axis, step)) - direct(&moved(axis, -step))) / (2.0 * step);
            assert!(
                (analytic - numeric).abs() < 1e-4 * numeric.abs().max(1.0),
                "axis {axis}: {analytic} against {numeric}"
            );
            // Each Hessian row: central differences of the analytic gradient.
            let ahead = prepared.log_likelihood_with_derivatives(&moved(axis, step)).1;
            let behind = prepared.log_likelihood_with_derivatives(&moved(axis, -step)).1;
            for column in 0..3 {
                let numeric = (ahead[column] - behind[column]) / (2.0 * step);
                let analytic = hessian[axis][column];
                assert!(
                    (analytic - numeric).abs() < 1e-4 * numeric.abs().max(1.0),
                    "({axis}, {column}): {analytic} against {numeric}"
                );
            }
        }
    }

    #[test]
    fn the_moments_start_is_near_the_maximum() {
        let repeat: Vec<Spend> = cdnow().into_iter().filter(|customer| customer.frequency > 0.0).collect();
        let start = moments_start(&repeat, &Prepared::new(&repeat)).unwrap();
        // The fitted (p, q, v) = (6.25, 3.74, 15.4): the candidate p = 8 with its q and v.
        assert_eq!(start.p, 8.0);
        assert!(start.q > 2.0 && start.v > 0.0, "{start:?}");
        // A sample whose averages barely vary between customers has no valid moments (q ≤ 2
        // for every candidate): the fit then starts from all at 1.
        let flat = [Spend { frequency: 1.0, average: 10.0 }, Spend { frequency: 2.0, average: 10.0 }];
        assert!(moments_start(&flat, &Prepared::new(&flat)).is_none());
    }

    #[test]
    fn without_repeat_customers_there_is_nothing_to_fit() {
        assert!(fit(&[Spend { frequency: 0.0, average: 0.0 }]).is_err());
    }
}
