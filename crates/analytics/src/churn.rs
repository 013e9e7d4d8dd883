//! Churn risk 流失预警: a customer has churned at a cutoff when they buy nothing in the
//! `window` days after it. A logistic model on seven features of their history is trained
//! at an earlier cutoff (as_of − 2·window, labels known by as_of − window), evaluated at a
//! later one (as_of − window, labels known by as_of: AUC, precision in the top k,
//! calibration by decile) and scores every customer as of the analysis day, with the
//! features that raise each one's risk most.

use serde::Serialize;

use crate::{AnalyticsError, history::Standing, optimize, parallel};

/// The model's features, in order.
pub const FEATURES: [&str; 7] = [
    "recency",
    "tenure",
    "frequency",
    "monetary",
    "last_quarter_purchases",
    "previous_quarter_purchases",
    "average_gap",
];
const WEIGHTS: usize = FEATURES.len() + 1;
/// L2 penalty on the weights (not the intercept), per customer.
const PENALTY: f64 = 1e-4;

/// A customer's features as of `cutoff` (all log-scaled: the tails are long).
pub fn features(standing: &Standing, cutoff: i32, minor_per_major: f64) -> [f64; 7] {
    let recency = f64::from(cutoff - standing.last_day).max(0.0);
    let tenure = f64::from(cutoff - standing.first_day).max(0.0);
    let purchases = f64::from(standing.purchases);
    [
        recency.ln_1p(),
        tenure.ln_1p(),
        purchases.ln_1p(),
        (standing.monetary_minor.max(0) as f64 / minor_per_major).ln_1p(),
        f64::from(standing.recent_purchases).ln_1p(),
        f64::from(standing.earlier_purchases).ln_1p(),
        (tenure / purchases.max(1.0)).ln_1p(),
    ]
}

/// Whether a customer standing at `cutoff` churned: no purchase in the `window` days after.
pub fn churned(standing: &Standing, cutoff: i32, window: i32) -> bool {
    i64::from(standing.next_day) > i64::from(cutoff) + i64::from(window)
}

/// A fitted model: standardisation of the training features, then weights.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChurnModel {
    pub means: [f64; 7],
    pub deviations: [f64; 7],
    pub intercept: f64,
    pub weights: [f64; 7],
    pub training_customers: usize,
    pub training_churn_rate: f64,
    pub iterations: usize,
}

fn standardised(model_means: &[f64; 7], deviations: &[f64; 7], row: &[f64; 7]) -> [f64; 7] {
    std::array::from_fn(|index| {
        if deviations[index] > 0.0 { (row[index] - model_means[index]) / deviations[index] } else { 0.0 }
    })
}

fn sigmoid(value: f64) -> f64 {
    if value >= 0.0 { 1.0 / (1.0 + (-value).exp()) } else { value.exp() / (1.0 + value.exp()) }
}

impl ChurnModel {
    /// The probability of churning.
    pub fn probability(&self, row: &[f64; 7]) -> f64 {
        sigmoid(self.logit(&standardised(&self.means, &self.deviations, row)))
    }

    fn logit(&self, standard: &[f64; 7]) -> f64 {
        self.intercept + self.weights.iter().zip(standard).map(|(weight, value)| weight * value).sum::<f64>()
    }

    /// The features that raise this customer's risk most (weight × standardised value > 0),
    /// largest first, at most `count`.
    pub fn top_factors(&self, row: &[f64; 7], count: usize) -> Vec<&'static str> {
        let standard = standardised(&self.means, &self.deviations, row);
        let mut parts: Vec<(f64, &'static str)> = self
            .weights
            .iter()
            .zip(standard)
            .zip(FEATURES)
            .map(|((weight, value), name)| (weight * value, name))
            .filter(|(part, _)| *part > 0.0)
            .collect();
        parts.sort_by(|left, right| right.0.total_cmp(&left.0));
        parts.into_iter().take(count).map(|(_, name)| name).collect()
    }
}

/// Fits the model to rows of features and their churn labels (logistic regression by
/// Newton's method, a small L2 penalty on the weights).
pub fn train(rows: &[[f64; 7]], labels: &[bool]) -> Result<ChurnModel, AnalyticsError> {
    if rows.len() != labels.len() {
        return Err(AnalyticsError::LengthMismatch {
            what: "labels",
            length: labels.len(),
            expected: rows.len(),
        });
    }
    let churners = labels.iter().filter(|label| **label).count();
    if churners == 0 || churners == rows.len() {
        return Err(AnalyticsError::OutOfRange {
            what: "churners among the training customers (both outcomes are needed)",
            min: 1,
            max: rows.len().saturating_sub(1) as i64,
            found: churners as i64,
        });
    }
    if let Some(index) = rows.iter().position(|row| row.iter().any(|value| !value.is_finite())) {
        return Err(AnalyticsError::InvalidFigure { what: "a feature is not a finite number", index });
    }
    let count = rows.len() as f64;
    let mut means = [0.0; 7];
    for row in rows {
        for (mean, value) in means.iter_mut().zip(row) {
            *mean += value / count;
        }
    }
    let mut deviations = [0.0; 7];
    for row in rows {
        for ((deviation, value), mean) in deviations.iter_mut().zip(row).zip(&means) {
            *deviation += (value - mean) * (value - mean) / count;
        }
    }
    let deviations = deviations.map(f64::sqrt);
    let standard: Vec<([f64; 7], bool)> = rows
        .iter()
        .zip(labels)
        .map(|(row, label)| (standardised(&means, &deviations, row), *label))
        .collect();
    let objective = |theta: &[f64; WEIGHTS]| {
        let sums = parallel::fold(
            &standard,
            || (0.0, [0.0; WEIGHTS], [[0.0; WEIGHTS]; WEIGHTS]),
            |(mut loss, mut gradient, mut hessian), (row, label)| {
                let inputs: [f64; WEIGHTS] =
                    std::array::from_fn(|index| if index == 0 { 1.0 } else { row[index - 1] });
                let logit: f64 = inputs.iter().zip(theta).map(|(input, weight)| input * weight).sum();
                let probability = sigmoid(logit);
                // −log p for churners, −log(1 − p) otherwise, without overflow.
                loss += if *label {
                    (-logit).max(0.0) + (-logit.abs()).exp().ln_1p()
                } else {
                    logit.max(0.0) + (-logit.abs()).exp().ln_1p()
                };
                let residual = probability - if *label { 1.0 } else { 0.0 };
                let curvature = probability * (1.0 - probability);
                for row_index in 0..WEIGHTS {
                    gradient[row_index] += residual * inputs[row_index];
                    for column in 0..=row_index {
                        hessian[row_index][column] += curvature * inputs[row_index] * inputs[column];
                    }
                }
                (loss, gradient, hessian)
            },
            |left, right| {
                (
                    left.0 + right.0,
                    std::array::from_fn(|index| left.1[index] + right.1[index]),
                    std::array::from_fn(|row| {
                        std::array::from_fn(|column| left.2[row][column] + right.2[row][column])
                    }),
                )
            },
        );
        let (loss, gradient, hessian) = sums;
        let penalty: f64 = theta[1..].iter().map(|weight| weight * weight).sum::<f64>() * PENALTY / 2.0;
        let gradient: [f64; WEIGHTS] = std::array::from_fn(|index| {
            gradient[index] / count + if index > 0 { PENALTY * theta[index] } else { 0.0 }
        });
        let hessian: [[f64; WEIGHTS]; WEIGHTS] = std::array::from_fn(|row| {
            std::array::from_fn(|column| {
                let (high, low) = if row >= column { (row, column) } else { (column, row) };
                hessian[high][low] / count + if row == column && row > 0 { PENALTY } else { 0.0 }
            })
        });
        (loss / count + penalty, gradient, hessian)
    };
    let found = optimize::newton(objective, [0.0; WEIGHTS], 5.0, 1e-9, 200);
    Ok(ChurnModel {
        means,
        deviations,
        intercept: found.point[0],
        weights: std::array::from_fn(|index| found.point[index + 1]),
        training_customers: rows.len(),
        training_churn_rate: churners as f64 / count,
        iterations: found.evaluations,
    })
}

/// How well scores separate churners from the rest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub customers: usize,
    pub churn_rate: f64,
    /// Area under the ROC curve (ties count half).
    pub auc: f64,
    /// The share of churners among the `top_k` highest scores.
    pub top_k: usize,
    pub precision_at_top_k: f64,
    /// Per decile of the scores (lowest first): mean predicted probability, observed churn
    /// rate, customers.
    pub calibration: Vec<(f64, f64, usize)>,
}

/// Evaluates probabilities against outcomes; `top_share` of the customers make the top k.
pub fn evaluate(probabilities: &[f64], labels: &[bool], top_share: f64) -> Evaluation {
    let count = probabilities.len().min(labels.len());
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|left, right| probabilities[*left].total_cmp(&probabilities[*right]));
    // Mann–Whitney: the mean rank of the churners, ties given their average rank.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < count {
        let mut end = start;
        while end + 1 < count && probabilities[order[end + 1]] == probabilities[order[start]] {
            end += 1;
        }
        let rank = (start + end) as f64 / 2.0 + 1.0;
        rank_sum += rank * order[start..=end].iter().filter(|index| labels[**index]).count() as f64;
        start = end + 1;
    }
    let positives = labels[..count].iter().filter(|label| **label).count() as f64;
    let negatives = count as f64 - positives;
    let auc = if positives > 0.0 && negatives > 0.0 {
        (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
    } else {
        f64::NAN
    };
    let top_k = ((count as f64 * top_share).round() as usize).clamp(1.min(count), count);
    let hits = order.iter().rev().take(top_k).filter(|index| labels[**index]).count();
    let calibration = (0..10)
        .map(|decile| {
            let (from, to) = (count * decile / 10, count * (decile + 1) / 10);
            let members = &order[from..to];
            let size = members.len().max(1) as f64;
            (
                members.iter().map(|index| probabilities[*index]).sum::<f64>() / size,
                members.iter().filter(|index| labels[**index]).count() as f64 / size,
                members.len(),
            )
        })
        .collect();
    Evaluation {
        customers: count,
        churn_rate: if count > 0 { positives / count as f64 } else { 0.0 },
        auc,
        top_k,
        precision_at_top_k: if top_k > 0 { hits as f64 / top_k as f64 } else { 0.0 },
        calibration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmeans::SplitMix64;

    #[test]
    fn auc_and_precision_on_hand_checked_scores() {
        // Churners at 0.9, 0.8 and 0.35; stayers at 0.7, 0.3, 0.2 and 0.1: of the 12 pairs,
        // 11 are in the right order (0.35 is below 0.7) → AUC 11/12.
        let probabilities = [0.9, 0.8, 0.35, 0.7, 0.3, 0.2, 0.1];
        let labels = [true, true, true, false, false, false, false];
        let found = evaluate(&probabilities, &labels, 2.0 / 7.0);
        assert!((found.auc - 11.0 / 12.0).abs() < 1e-12, "{found:?}");
        assert_eq!((found.top_k, found.precision_at_top_k), (2, 1.0));
        // Ties count half: all equal scores give 0.5.
        assert_eq!(evaluate(&[0.5; 4], &[true, false, true, false], 0.5).auc, 0.5);
    }

    #[test]
    fn a_known_signal_is_learned_and_ranked() {
        // Churn probability rises with recency (feature 0) and nothing else matters.
        let mut random = SplitMix64::new(3);
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..20_000 {
            let row: [f64; 7] = std::array::from_fn(|_| random.next_f64() * 4.0);
            let truth = sigmoid(2.5 * (row[0] - 2.0));
            labels.push(random.next_f64() < truth);
            rows.push(row);
        }
        let model = train(&rows, &labels).unwrap();
        // The true weight on standardised recency is 2.5 × its deviation (4/√12).
        let expected = 2.5 * 4.0 / 12_f64.sqrt();
        assert!((model.weights[0] - expected).abs() < 0.15, "{model:?}");
        assert!(model.weights[1..].iter().all(|weight| weight.abs() < 0.1), "{model:?}");
        let probabilities: Vec<f64> = rows.iter().map(|row| model.probability(row)).collect();
        let found = evaluate(&probabilities, &labels, 0.1);
        assert!(found.auc > 0.85 && found.precision_at_top_k > 0.9, "{found:?}");
        // Calibrated: each decile's observed rate is near its mean prediction.
        for (predicted, observed, _) in &found.calibration {
            assert!((predicted - observed).abs() < 0.05, "{found:?}");
        }
        let late = [4.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0];
        assert_eq!(model.top_factors(&late, 3).first(), Some(&"recency"));
    }

    #[test]
    fn one_outcome_only_cannot_be_trained() {
        assert!(train(&[[0.0; 7], [1.0; 7]], &[true, true]).is_err());
        assert!(train(&[[0.0; 7]], &[true, false]).is_err());
    }
}
