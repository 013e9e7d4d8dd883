//! BG/NBD (Fader, Hardie & Lee 2005): how many purchases a customer will make, and the
//! probability they are still "alive", from three figures per customer in a time unit
//! (days or weeks): x, the repeat purchases (distinct purchase periods − 1); t_x, the time
//! from the first to the last purchase; T, the time from the first purchase to the end of
//! the calibration period. Parameters are fitted by maximum likelihood on the log scale, as
//! the Python `lifetimes` package does, by BFGS with the analytic gradient over customers
//! grouped by their figures.

use crate::{
    AnalyticsError, optimize, parallel,
    special::{digamma, hypergeometric_2f1, hypergeometric_2f1_many, ln_gamma},
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
        let mut found = [0.0];
        self.expected_purchases_at(&[t], customer, &mut found);
        found[0]
    }

    /// E[X(t)] for several horizons `times` at once, into `found` (same length): the
    /// series of ₂F₁ has the same coefficients at every horizon, so they are worked out once.
    pub fn expected_purchases_at(&self, times: &[f64], customer: &Calibration, found: &mut [f64]) {
        assert_eq!(times.len(), found.len(), "one result per horizon");
        let Self { r, alpha, a, b } = *self;
        let Calibration { frequency: x, recency: t_x, age: age_t } = *customer;
        let (big_a, big_b, big_c) = (r + x, b + x, a + b + x - 1.0);
        for (t, slot) in times.iter().zip(found.iter_mut()) {
            *slot = t / (alpha + age_t + t);
        }
        // `found` holds z per horizon; the series' sums replace them.
        hypergeometric_2f1_many(big_a, big_b, big_c, found);
        let first = (a + b + x - 1.0) / (a - 1.0);
        let repeat =
            if x > 0.0 { (a / (b + x - 1.0)) * ((alpha + age_t) / (alpha + t_x)).powf(r + x) } else { 0.0 };
        for (t, slot) in times.iter().zip(found.iter_mut()) {
            let mut ln_hypergeometric = slot.ln();
            if !ln_hypergeometric.is_finite() {
                let z = t / (alpha + age_t + t);
                ln_hypergeometric = hypergeometric_2f1(big_c - big_a, big_c - big_b, big_c, z).ln()
                    + (big_c - big_a - big_b) * (1.0 - z).ln();
            }
            let second =
                1.0 - (ln_hypergeometric + (r + x) * ((alpha + age_t) / (alpha + t + age_t)).ln()).exp();
            *slot = first * second / (1.0 + repeat);
        }
    }
}

/// Summed log-likelihood of all customers, one by one (the reference the fit's grouped
/// evaluation is checked against).
pub fn total_log_likelihood(parameters: &BgNbd, customers: &[Calibration]) -> f64 {
    customers.iter().map(|customer| parameters.log_likelihood(customer)).sum()
}

/// Customers with equal figures, counted once: the distinct figures in order of first
/// appearance and, per customer, the index of theirs. The models' work is per distinct
/// figures (weekly data of a million customers has a few hundred thousand).
pub fn distinct_figures(
    customers: impl ExactSizeIterator<Item = Calibration>,
) -> (Vec<Calibration>, Vec<u32>) {
    let mut seen: std::collections::HashMap<(u64, u64, u64), u32, foldhash::fast::FixedState> =
        std::collections::HashMap::with_capacity_and_hasher(
            customers.len() / 4,
            foldhash::fast::FixedState::default(),
        );
    let mut distinct = Vec::new();
    let indexes = customers
        .map(|customer| {
            // `+ 0.0` makes −0 into 0, so equal figures have equal bits (and one entry).
            let customer = Calibration {
                frequency: customer.frequency + 0.0,
                recency: customer.recency + 0.0,
                age: customer.age + 0.0,
            };
            let key = (customer.frequency.to_bits(), customer.recency.to_bits(), customer.age.to_bits());
            *seen.entry(key).or_insert_with(|| {
                distinct.push(customer);
                (distinct.len() - 1) as u32
            })
        })
        .collect();
    (distinct, indexes)
}

/// Customers with the same figures, counted once, and the distinct values of x and of the
/// times: an evaluation of the likelihood takes its logarithms and gamma functions per
/// distinct value and one exponential and one logarithm per distinct customer.
struct Grouped {
    frequencies: Vec<f64>,
    times: Vec<f64>,
    groups: Vec<Group>,
    customers: f64,
}

#[derive(Clone, Copy)]
struct Group {
    frequency: u32,
    recency: u32,
    age: u32,
    weight: f64,
}

fn index_of(values: &[f64], value: f64) -> u32 {
    let found = values.binary_search_by(|probe| probe.total_cmp(&value));
    // Every value was collected into `values` before it is looked up.
    u32::try_from(found.unwrap_or_default()).unwrap_or(u32::MAX)
}

fn distinct(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_unstable_by(f64::total_cmp);
    values.dedup();
    values
}

impl Grouped {
    fn new(customers: &[Calibration]) -> Result<Self, AnalyticsError> {
        for (index, customer) in customers.iter().enumerate() {
            let Calibration { frequency, recency, age } = *customer;
            if !(frequency.is_finite() && recency.is_finite() && age.is_finite()) {
                return Err(AnalyticsError::InvalidFigure { what: "a figure is not a finite number", index });
            }
            if frequency < 0.0 || frequency.fract() != 0.0 || frequency > f64::from(u32::MAX) {
                return Err(AnalyticsError::InvalidFigure {
                    what: "frequency is not a whole number ≥ 0",
                    index,
                });
            }
            if recency < 0.0 || age < recency || (frequency == 0.0 && recency != 0.0) {
                return Err(AnalyticsError::InvalidFigure {
                    what: "recency must be in 0..=age (and 0 without repeat purchases)",
                    index,
                });
            }
        }
        let (figures, indexes) = distinct_figures(customers.iter().copied());
        let mut weights = vec![0_u32; figures.len()];
        for index in indexes {
            weights[index as usize] += 1;
        }
        let frequencies = distinct(figures.iter().map(|figures| figures.frequency).collect());
        let times = distinct(figures.iter().flat_map(|figures| [figures.recency, figures.age]).collect());
        let groups = figures
            .iter()
            .zip(weights)
            .map(|(figures, count)| Group {
                frequency: index_of(&frequencies, figures.frequency),
                recency: index_of(&times, figures.recency),
                age: index_of(&times, figures.age),
                weight: f64::from(count),
            })
            .collect();
        Ok(Self { frequencies, times, groups, customers: customers.len() as f64 })
    }

    /// The summed log-likelihood and its gradient in (r, α, a, b).
    fn log_likelihood_with_gradient(&self, parameters: &BgNbd) -> (f64, [f64; 4]) {
        let BgNbd { r, alpha, a, b } = *parameters;
        struct PerFrequency {
            x: f64,
            base: f64,
            base_r: f64,
            base_a: f64,
            base_b: f64,
            repeat: f64,
            repeat_b: f64,
        }
        let (ln_alpha, psi_r, psi_ab, psi_b) = (alpha.ln(), digamma(r), digamma(a + b), digamma(b));
        let constant = -ln_gamma(r) + r * ln_alpha + ln_gamma(a + b) - ln_gamma(b);
        let per_frequency: Vec<PerFrequency> = self
            .frequencies
            .iter()
            .map(|&x| {
                let psi_abx = digamma(a + b + x);
                PerFrequency {
                    x,
                    base: constant + ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x),
                    base_r: digamma(r + x) - psi_r + ln_alpha,
                    base_a: psi_ab - psi_abx,
                    base_b: psi_ab + digamma(b + x) - psi_b - psi_abx,
                    repeat: if x > 0.0 { a.ln() - (b + x - 1.0).ln() } else { 0.0 },
                    repeat_b: if x > 0.0 { -1.0 / (b + x - 1.0) } else { 0.0 },
                }
            })
            .collect();
        let ln_times: Vec<(f64, f64)> =
            self.times.iter().map(|&t| ((alpha + t).ln(), 1.0 / (alpha + t))).collect();
        let alpha_base = r / alpha;
        let sums = parallel::fold(
            &self.groups,
            || [0.0; 5],
            |mut sums, group| {
                let figures = &per_frequency[group.frequency as usize];
                let (ln_age, inverse_age) = ln_times[group.age as usize];
                let rx = r + figures.x;
                let a3 = -rx * ln_age;
                let (value, gradient) = if figures.x > 0.0 {
                    let (ln_recency, inverse_recency) = ln_times[group.recency as usize];
                    let a4 = figures.repeat - rx * ln_recency;
                    let (high, low, high_is_a3) = if a3 >= a4 { (a3, a4, true) } else { (a4, a3, false) };
                    let ratio = (low - high).exp();
                    let share_high = 1.0 / (1.0 + ratio);
                    let (share3, share4) = if high_is_a3 {
                        (share_high, 1.0 - share_high)
                    } else {
                        (1.0 - share_high, share_high)
                    };
                    (
                        figures.base + high + ratio.ln_1p(),
                        [
                            figures.base_r - share3 * ln_age - share4 * ln_recency,
                            alpha_base - rx * (share3 * inverse_age + share4 * inverse_recency),
                            figures.base_a + share4 / a,
                            figures.base_b + share4 * figures.repeat_b,
                        ],
                    )
                } else {
                    (
                        figures.base + a3,
                        [
                            figures.base_r - ln_age,
                            alpha_base - rx * inverse_age,
                            figures.base_a,
                            figures.base_b,
                        ],
                    )
                };
                sums[0] += group.weight * value;
                for (sum, part) in sums[1..].iter_mut().zip(gradient) {
                    *sum += group.weight * part;
                }
                sums
            },
            |left, right| std::array::from_fn(|index| left[index] + right[index]),
        );
        (sums[0], [sums[1], sums[2], sums[3], sums[4]])
    }
}

/// Fits the model to the customers' calibration figures: maximum likelihood over the log
/// parameters from all parameters at 1, by BFGS (as lifetimes, which starts at e^0.1) with the analytic
/// gradient, to a gradient of at most 1e-10 per customer.
pub fn fit(customers: &[Calibration]) -> Result<BgNbdFit, AnalyticsError> {
    if customers.is_empty() || customers.len() > CUSTOMERS_MAX {
        return Err(AnalyticsError::OutOfRange {
            what: "customers",
            min: 1,
            max: CUSTOMERS_MAX as i64,
            found: customers.len() as i64,
        });
    }
    let grouped = Grouped::new(customers)?;
    let count = grouped.customers;
    let objective = |log_parameters: &[f64; 4]| {
        let [r, alpha, a, b] = log_parameters.map(f64::exp);
        let (value, gradient) = grouped.log_likelihood_with_gradient(&BgNbd { r, alpha, a, b });
        let by_log = [gradient[0] * r, gradient[1] * alpha, gradient[2] * a, gradient[3] * b];
        let value = -value / count;
        if value.is_finite() { (value, by_log.map(|part| -part / count)) } else { (f64::INFINITY, [0.0; 4]) }
    };
    // Newton steps with the Hessian from differences of the analytic gradient (four more
    // gradient passes per step): BFGS from the start took thousands of passes on a million
    // customers, where its line search kept hitting the flat valley of a and b.
    let with_hessian = |point: &[f64; 4]| {
        let (value, gradient) = objective(point);
        if !value.is_finite() {
            return (value, gradient, [[0.0; 4]; 4]);
        }
        let step = 1e-6;
        let mut hessian = [[0.0; 4]; 4];
        for axis in 0..4 {
            let mut ahead = *point;
            ahead[axis] += step;
            let (_, moved) = objective(&ahead);
            for row in 0..4 {
                hessian[row][axis] = (moved[row] - gradient[row]) / step;
            }
        }
        let symmetric: [[f64; 4]; 4] = std::array::from_fn(|row| {
            std::array::from_fn(|column| (hessian[row][column] + hessian[column][row]) / 2.0)
        });
        (value, gradient, symmetric)
    };
    let found = optimize::newton(with_hessian, [0.0; 4], 1.0, 1e-10, 1_000);
    let [r, alpha, a, b] = found.point.map(f64::exp);
    Ok(BgNbdFit {
        parameters: BgNbd { r, alpha, a, b },
        log_likelihood: -found.value * count,
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
        assert!(fit.evaluations <= 60, "Newton takes few passes: {}", fit.evaluations);
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

    #[test]
    fn impossible_figures_are_refused_with_the_customer() {
        for (customer, index) in [
            (Calibration { frequency: 1.5, recency: 2.0, age: 3.0 }, 1),
            (Calibration { frequency: 1.0, recency: 4.0, age: 3.0 }, 1),
            (Calibration { frequency: 0.0, recency: 1.0, age: 3.0 }, 1),
            (Calibration { frequency: f64::NAN, recency: 1.0, age: 3.0 }, 1),
        ] {
            let customers = [Calibration { frequency: 1.0, recency: 1.0, age: 2.0 }, customer];
            assert!(
                matches!(fit(&customers), Err(AnalyticsError::InvalidFigure { index: found, .. }) if found == index)
            );
        }
    }

    #[test]
    fn the_grouped_likelihood_and_gradient_agree_with_the_direct_sum() {
        let customers = cdnow();
        let grouped = Grouped::new(&customers).unwrap();
        assert!(grouped.groups.len() < customers.len());
        let at = BgNbd { r: 0.3, alpha: 5.0, a: 0.9, b: 2.1 };
        let (value, gradient) = grouped.log_likelihood_with_gradient(&at);
        let direct = total_log_likelihood(&at, &customers);
        assert!(relative(value, direct) < 1e-12, "{value} against {direct}");
        // Central differences of the direct sum, parameter by parameter.
        for (axis, analytic) in gradient.iter().enumerate() {
            let step = 1e-6;
            let moved = |delta: f64| {
                let mut values = [at.r, at.alpha, at.a, at.b];
                values[axis] += delta;
                total_log_likelihood(
                    &BgNbd { r: values[0], alpha: values[1], a: values[2], b: values[3] },
                    &customers,
                )
            };
            let numeric = (moved(step) - moved(-step)) / (2.0 * step);
            assert!(
                (analytic - numeric).abs() < 1e-4 * numeric.abs().max(1.0),
                "axis {axis}: {analytic} against {numeric}"
            );
        }
    }
}
