//! Smooth minimisation with a gradient: BFGS (the inverse-Hessian update of Broyden,
//! Fletcher, Goldfarb and Shanno) with a backtracking (Armijo) line search. The models'
//! likelihoods have cheap analytic gradients, so a fit takes tens of evaluations where a
//! derivative-free search takes hundreds.

/// Where a minimisation ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minimum<const N: usize> {
    pub point: [f64; N],
    pub value: f64,
    pub evaluations: usize,
    /// Largest gradient component at `point`.
    pub gradient_max: f64,
}

/// Line-search halvings before a direction is given up.
const HALVINGS_MAX: usize = 60;

fn dot<const N: usize>(left: &[f64; N], right: &[f64; N]) -> f64 {
    left.iter().zip(right).map(|(left, right)| left * right).sum()
}

fn largest<const N: usize>(vector: &[f64; N]) -> f64 {
    vector.iter().fold(0.0, |most, value| most.max(value.abs()))
}

/// Minimises `objective` (value and gradient) from `start`. Stops when every gradient
/// component is at most `gradient_tolerance`, when no step along the search direction (or,
/// after a reset, along the gradient) lowers the value any more — the floating-point floor
/// —, or after `iterations_max` iterations. Non-finite values are treated as "too far" and
/// shorten the step.
pub fn bfgs<const N: usize>(
    mut objective: impl FnMut(&[f64; N]) -> (f64, [f64; N]),
    start: [f64; N],
    gradient_tolerance: f64,
    iterations_max: usize,
) -> Minimum<N> {
    let mut evaluations = 1;
    let mut point = start;
    let (mut value, mut gradient) = objective(&point);
    assert!(value.is_finite(), "the starting point must have a finite value");
    // The inverse Hessian, row-major; the identity until the first step scales it.
    let mut inverse = [[0.0; N]; N];
    let reset = |inverse: &mut [[f64; N]; N], scale: f64| {
        for (row, values) in inverse.iter_mut().enumerate() {
            for (column, value) in values.iter_mut().enumerate() {
                *value = if row == column { scale } else { 0.0 };
            }
        }
    };
    reset(&mut inverse, 1.0);
    let mut first = true;
    let mut just_reset = true;
    for _ in 0..iterations_max {
        if largest(&gradient) <= gradient_tolerance {
            break;
        }
        let mut direction = [0.0; N];
        for (row, component) in direction.iter_mut().enumerate() {
            *component = -dot(&inverse[row], &gradient);
        }
        let mut slope = dot(&direction, &gradient);
        if slope >= 0.0 {
            // Not a descent direction (rounding): start again from the gradient.
            reset(&mut inverse, 1.0);
            direction = gradient.map(|component| -component);
            slope = dot(&direction, &gradient);
            just_reset = true;
        }
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..HALVINGS_MAX {
            let mut trial = point;
            for (coordinate, along) in trial.iter_mut().zip(direction) {
                *coordinate += step * along;
            }
            let (trial_value, trial_gradient) = objective(&trial);
            evaluations += 1;
            if trial_value.is_finite() && trial_value <= value + 1e-4 * step * slope {
                accepted = Some((trial, trial_value, trial_gradient));
                break;
            }
            step *= 0.5;
        }
        let Some((next, next_value, next_gradient)) = accepted else {
            if just_reset {
                break;
            }
            reset(&mut inverse, 1.0);
            just_reset = true;
            continue;
        };
        let moved: [f64; N] = std::array::from_fn(|axis| next[axis] - point[axis]);
        let turned: [f64; N] = std::array::from_fn(|axis| next_gradient[axis] - gradient[axis]);
        let curvature = dot(&moved, &turned);
        let unchanged = next_value >= value && moved.iter().all(|moved| *moved == 0.0);
        (point, value, gradient) = (next, next_value, next_gradient);
        just_reset = false;
        if unchanged {
            break;
        }
        if curvature <= 1e-300 {
            continue;
        }
        if first {
            reset(&mut inverse, curvature / dot(&turned, &turned));
            first = false;
        }
        // H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ
        let rho = 1.0 / curvature;
        let h_turned: [f64; N] = std::array::from_fn(|row| dot(&inverse[row], &turned));
        let turned_h_turned = dot(&turned, &h_turned);
        for row in 0..N {
            for column in 0..N {
                inverse[row][column] += rho * (1.0 + rho * turned_h_turned) * moved[row] * moved[column]
                    - rho * (h_turned[row] * moved[column] + moved[row] * h_turned[column]);
            }
        }
    }
    Minimum { point, value, evaluations, gradient_max: largest(&gradient) }
}

/// Solves (H + λI) x = b by Cholesky factorisation; `None` when the matrix is not positive
/// definite.
fn solve_positive<const N: usize>(matrix: &[[f64; N]; N], shift: f64, right: &[f64; N]) -> Option<[f64; N]> {
    let mut lower = [[0.0; N]; N];
    for row in 0..N {
        for column in 0..=row {
            let diagonal_shift = if row == column { shift } else { 0.0 };
            let products: f64 = lower[row][..column]
                .iter()
                .zip(&lower[column][..column])
                .map(|(left, right)| left * right)
                .sum();
            let sum = matrix[row][column] + diagonal_shift - products;
            if row == column {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                lower[row][row] = sum.sqrt();
            } else {
                lower[row][column] = sum / lower[column][column];
            }
        }
    }
    let mut middle = [0.0; N];
    for row in 0..N {
        let sum: f64 = (0..row).map(|inner| lower[row][inner] * middle[inner]).sum();
        middle[row] = (right[row] - sum) / lower[row][row];
    }
    let mut solution = [0.0; N];
    for row in (0..N).rev() {
        let sum: f64 = (row + 1..N).map(|inner| lower[inner][row] * solution[inner]).sum();
        solution[row] = (middle[row] - sum) / lower[row][row];
    }
    Some(solution)
}

/// Minimises `objective` (value, gradient and Hessian) from `start` by Newton steps: where
/// the Hessian is not positive definite a multiple of the identity is added (the smallest
/// power of ten from 1e-8 that makes it so), a step moves no coordinate by more than
/// `step_max`, and each step is halved until the value falls (Armijo). Stops as [`bfgs`]
/// does. Near the optimum it converges quadratically: a fit takes a handful of passes over
/// the data.
pub fn newton<const N: usize>(
    mut objective: impl FnMut(&[f64; N]) -> (f64, [f64; N], [[f64; N]; N]),
    start: [f64; N],
    step_max: f64,
    gradient_tolerance: f64,
    iterations_max: usize,
) -> Minimum<N> {
    let mut evaluations = 1;
    let mut point = start;
    let (mut value, mut gradient, mut hessian) = objective(&point);
    assert!(value.is_finite(), "the starting point must have a finite value");
    for _ in 0..iterations_max {
        if largest(&gradient) <= gradient_tolerance {
            break;
        }
        let negative = gradient.map(|component| -component);
        let mut shift = 0.0;
        let direction = loop {
            if let Some(direction) = solve_positive(&hessian, shift, &negative) {
                break direction;
            }
            shift = if shift == 0.0 { 1e-8 } else { shift * 10.0 };
            if shift > 1e12 {
                break negative;
            }
        };
        // No coordinate moves more than `step_max` at once: far from the optimum the
        // quadratic model is poor (and a likelihood may flatten along a ridge).
        let reach = largest(&direction);
        let direction = if reach > step_max {
            direction.map(|component| component * step_max / reach)
        } else {
            direction
        };
        let slope = dot(&direction, &gradient);
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..HALVINGS_MAX {
            let trial: [f64; N] = std::array::from_fn(|axis| point[axis] + step * direction[axis]);
            let (trial_value, trial_gradient, trial_hessian) = objective(&trial);
            evaluations += 1;
            if trial_value.is_finite() && trial_value <= value + 1e-4 * step * slope {
                accepted = Some((trial, trial_value, trial_gradient, trial_hessian));
                break;
            }
            step *= 0.5;
        }
        let Some((next, next_value, next_gradient, next_hessian)) = accepted else {
            break;
        };
        let unchanged = next == point;
        (point, value, gradient, hessian) = (next, next_value, next_gradient, next_hessian);
        if unchanged {
            break;
        }
    }
    Minimum { point, value, evaluations, gradient_max: largest(&gradient) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let found = bfgs(
            |point: &[f64; 2]| {
                let (x, y) = (point[0], point[1]);
                let value = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
                (value, [-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])
            },
            [-1.2, 1.0],
            1e-10,
            1_000,
        );
        assert!((found.point[0] - 1.0).abs() < 1e-8 && (found.point[1] - 1.0).abs() < 1e-8, "{found:?}");
        assert!(found.evaluations < 200, "{found:?}");
    }

    #[test]
    fn newton_finds_the_rosenbrock_minimum_in_few_steps() {
        let found = newton(
            |point: &[f64; 2]| {
                let (x, y) = (point[0], point[1]);
                let value = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
                let gradient = [-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)];
                let hessian = [[2.0 - 400.0 * y + 1_200.0 * x * x, -400.0 * x], [-400.0 * x, 200.0]];
                (value, gradient, hessian)
            },
            [-1.2, 1.0],
            10.0,
            1e-10,
            1_000,
        );
        assert!((found.point[0] - 1.0).abs() < 1e-8 && (found.point[1] - 1.0).abs() < 1e-8, "{found:?}");
        assert!(found.evaluations < 100, "{found:?}");
    }

    #[test]
    fn a_value_that_is_infinite_past_a_wall_shortens_the_step() {
        // Minimum at 3 with a wall at 4: the first full step lands past it.
        let found = bfgs(
            |point: &[f64; 1]| {
                let x = point[0];
                if x >= 4.0 {
                    (f64::INFINITY, [0.0])
                } else {
                    ((x - 3.0).powi(2) - (4.0 - x).ln(), [2.0 * (x - 3.0) + 1.0 / (4.0 - x)])
                }
            },
            [0.0],
            1e-12,
            100,
        );
        // 2(x − 3) + 1/(4 − x) = 0 ⇔ 2x² − 14x + 23 = 0: the root below 4 is 3.5 − √3/2.
        let expected = 3.5 - 3.0_f64.sqrt() / 2.0;
        assert!((found.point[0] - expected).abs() < 1e-9, "{found:?} {expected}");
    }
}
