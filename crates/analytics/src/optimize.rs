//! Minimisation without derivatives: Nelder–Mead with the standard coefficients
//! (reflection 1, expansion 2, contraction ½, shrink ½).

/// Where a minimisation ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minimum<const N: usize> {
    pub point: [f64; N],
    pub value: f64,
    pub evaluations: usize,
}

/// Minimises `objective` from `start`, the first simplex spanning `step` along each axis.
/// Stops when the simplex's values differ by at most `tolerance` and its points by at most
/// `tolerance` on every axis, or after `evaluations_max` evaluations.
pub fn nelder_mead<const N: usize>(
    mut objective: impl FnMut(&[f64; N]) -> f64,
    start: [f64; N],
    step: f64,
    tolerance: f64,
    evaluations_max: usize,
) -> Minimum<N> {
    let evaluations = std::cell::Cell::new(0_usize);
    let mut evaluate = |point: &[f64; N]| {
        evaluations.set(evaluations.get() + 1);
        objective(point)
    };
    let mut simplex: Vec<([f64; N], f64)> = Vec::with_capacity(N + 1);
    simplex.push((start, evaluate(&start)));
    for axis in 0..N {
        let mut point = start;
        point[axis] += step;
        let value = evaluate(&point);
        simplex.push((point, value));
    }
    loop {
        simplex.sort_by(|left, right| left.1.total_cmp(&right.1));
        let (best, worst) = (simplex[0].1, simplex[N].1);
        let spread = (0..N)
            .map(|axis| {
                simplex.iter().map(|vertex| (vertex.0[axis] - simplex[0].0[axis]).abs()).fold(0.0, f64::max)
            })
            .fold(0.0, f64::max);
        if ((worst - best).abs() <= tolerance && spread <= tolerance.sqrt())
            || evaluations.get() >= evaluations_max
        {
            break;
        }
        let mut centroid = [0.0; N];
        for vertex in &simplex[..N] {
            for (sum, coordinate) in centroid.iter_mut().zip(vertex.0) {
                *sum += coordinate / N as f64;
            }
        }
        let along = |coefficient: f64| {
            let mut point = [0.0; N];
            for axis in 0..N {
                point[axis] = centroid[axis] + coefficient * (simplex[N].0[axis] - centroid[axis]);
            }
            point
        };
        let reflected = along(-1.0);
        let reflected_value = evaluate(&reflected);
        if reflected_value < simplex[0].1 {
            let expanded = along(-2.0);
            let expanded_value = evaluate(&expanded);
            simplex[N] = if expanded_value < reflected_value {
                (expanded, expanded_value)
            } else {
                (reflected, reflected_value)
            };
        } else if reflected_value < simplex[N - 1].1 {
            simplex[N] = (reflected, reflected_value);
        } else {
            let outside = reflected_value < simplex[N].1;
            let contracted = along(if outside { -0.5 } else { 0.5 });
            let contracted_value = evaluate(&contracted);
            if contracted_value < reflected_value.min(simplex[N].1) {
                simplex[N] = (contracted, contracted_value);
            } else {
                let best_point = simplex[0].0;
                for vertex in simplex.iter_mut().skip(1) {
                    for (coordinate, best) in vertex.0.iter_mut().zip(best_point) {
                        *coordinate = best + 0.5 * (*coordinate - best);
                    }
                    vertex.1 = evaluate(&vertex.0);
                }
            }
        }
    }
    simplex.sort_by(|left, right| left.1.total_cmp(&right.1));
    Minimum { point: simplex[0].0, value: simplex[0].1, evaluations: evaluations.get() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let found = nelder_mead(
            |point: &[f64; 2]| (1.0 - point[0]).powi(2) + 100.0 * (point[1] - point[0] * point[0]).powi(2),
            [-1.2, 1.0],
            0.5,
            1e-14,
            10_000,
        );
        assert!((found.point[0] - 1.0).abs() < 1e-5 && (found.point[1] - 1.0).abs() < 1e-5, "{found:?}");
    }
}
