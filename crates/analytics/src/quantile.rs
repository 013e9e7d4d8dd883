//! Quantile scores with the tie rule analysts use in pandas:
//! `pd.qcut(values.rank(method="first"), bins, labels=False) + 1`. Values are ranked
//! ascending with ties broken by position (the first seen gets the lower rank), and the
//! ranks are cut at numpy's linear quantiles, right-closed, the lowest edge included. The
//! arithmetic follows numpy step by step (`linspace`, the virtual index (n − 1)·q of
//! `np.quantile`'s linear method, the two-sided lerp), so that scores agree with pandas 3 on
//! every boundary. (pandas 2 went through `np.percentile(q × 100)`, whose ×100 ÷100 moves
//! some edges by one ulp: where an edge falls exactly on a rank, pandas 2 and 3 can differ.)

use crate::AnalyticsError;

/// Most bins a score may have.
pub const BINS_MAX: usize = 100;

/// The 1-based bin of each value among `bins` equal-count bins of their ranks.
///
/// One value alone cannot be cut (pandas refuses: the bin edges are not distinct); it gets
/// the middle bin, rounded up. No values give no scores.
pub fn scores<T: PartialOrd + Copy>(values: &[T], bins: usize) -> Result<Vec<u8>, AnalyticsError> {
    if !(1..=BINS_MAX).contains(&bins) {
        return Err(AnalyticsError::OutOfRange {
            what: "bins",
            min: 1,
            max: BINS_MAX as i64,
            found: bins as i64,
        });
    }
    let count = values.len();
    match count {
        0 => return Ok(Vec::new()),
        1 => return Ok(vec![bins.div_ceil(2) as u8]),
        _ => {}
    }
    let edges = rank_edges(count, bins);
    let mut order: Vec<u32> = (0..count as u32).collect();
    // Stable: equal values keep their positions, as rank(method="first") does.
    order.sort_by(|left, right| {
        values[*left as usize].partial_cmp(&values[*right as usize]).unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut result = vec![0_u8; count];
    for (position, index) in order.iter().enumerate() {
        let rank = (position + 1) as f64;
        result[*index as usize] = bin_of(rank, &edges);
    }
    Ok(result)
}

/// numpy's linear quantiles of the ranks 1..=count at `linspace(0, 1, bins + 1)`, as pandas'
/// `Series.quantile` computes them (through `np.quantile`).
fn rank_edges(count: usize, bins: usize) -> Vec<f64> {
    let step = 1.0 / bins as f64;
    (0..=bins)
        .map(|k| {
            let quantile = if k == bins { 1.0 } else { k as f64 * step };
            let length = count as f64;
            // numpy's "linear" method: the virtual index is (n - 1) × q.
            let virtual_index = (length - 1.0) * quantile;
            let previous = virtual_index.floor().clamp(0.0, length - 1.0);
            let next = (previous + 1.0).clamp(0.0, length - 1.0);
            let gamma = virtual_index - virtual_index.floor();
            // Sorted ranks are 1..=count: the value at index i is i + 1.
            lerp(previous + 1.0, next + 1.0, gamma)
        })
        .collect()
}

/// numpy's `_lerp`: from the nearer end, so that t = 1 gives `b` exactly.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let difference = b - a;
    if t >= 0.5 { b - difference * (1.0 - t) } else { a + difference * t }
}

/// `pd.cut(…, right=True, include_lowest=True, labels=False) + 1`: the number of edges below
/// the value (`searchsorted` left), the lowest edge counting into the first bin.
fn bin_of(value: f64, edges: &[f64]) -> u8 {
    if value <= edges[0] {
        return 1;
    }
    let below = edges.partition_point(|edge| *edge < value);
    below.min(edges.len() - 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected scores below are pandas 2's answers to the same input.

    #[test]
    fn ten_distinct_values_make_two_per_quintile() {
        let values: Vec<i64> = (1..=10).rev().collect();
        assert_eq!(scores(&values, 5).unwrap(), [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
    }

    #[test]
    fn ties_are_broken_by_position_like_rank_first() {
        // pandas: pd.qcut(pd.Series([1, 1, 1, 1, 1, 2]).rank(method="first"), 5, labels=False) + 1
        //         → [1, 1, 2, 3, 4, 5]
        assert_eq!(scores(&[1, 1, 1, 1, 1, 2], 5).unwrap(), [1, 1, 2, 3, 4, 5]);
        // The same values in another order: equal values take ranks in the order they come.
        assert_eq!(scores(&[2, 1, 1, 1, 1, 1], 5).unwrap(), [5, 1, 1, 2, 3, 4]);
    }

    #[test]
    fn boundaries_follow_numpys_arithmetic() {
        // 7 values: edges 1, 2.2, 3.4, 4.6, 5.8, 7 — pandas gives [1, 1, 2, 3, 4, 5, 5].
        assert_eq!(scores(&[10, 20, 30, 40, 50, 60, 70], 5).unwrap(), [1, 1, 2, 3, 4, 5, 5]);
        // 11 values: edges 1, 3, 5, 7, 9, 11 exactly; a rank on an edge stays in the lower bin.
        let values: Vec<i64> = (0..11).collect();
        assert_eq!(scores(&values, 5).unwrap(), [1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn matches_pandas_on_every_count_up_to_40() {
        let fixture = include_str!("../testdata/qcut_pandas.txt");
        let mut checked = 0;
        for line in fixture.lines().filter(|line| !line.starts_with('#')) {
            let (bins, expected) = line.split_once(' ').expect("bins and scores");
            let bins: usize = bins.parse().unwrap();
            let expected: Vec<u8> = expected.bytes().map(|byte| byte - b'0').collect();
            let values: Vec<i64> = (0..expected.len() as i64).collect();
            assert_eq!(scores(&values, bins).unwrap(), expected, "{bins} bins of {}", expected.len());
            checked += 1;
        }
        assert_eq!(checked, 4 * 39);
    }

    #[test]
    fn empty_and_single_inputs_and_bad_bins() {
        assert_eq!(scores::<i64>(&[], 5).unwrap(), Vec::<u8>::new());
        assert_eq!(scores(&[42], 5).unwrap(), [3]);
        assert_eq!(scores(&[42, 43], 5).unwrap(), [1, 5]);
        assert!(matches!(scores(&[1, 2], 0), Err(AnalyticsError::OutOfRange { what: "bins", .. })));
    }

    proptest::proptest! {
        /// Every bin is used as evenly as the count allows, and order is respected.
        #[test]
        fn bins_are_balanced_and_monotone(values in proptest::collection::vec(-1000_i64..1000, 2..400), bins in 1_usize..12) {
            let scores = scores(&values, bins).unwrap();
            let mut counts = vec![0_usize; bins + 1];
            for score in &scores {
                proptest::prop_assert!((1..=bins as u8).contains(score));
                counts[*score as usize] += 1;
            }
            let even = values.len() / bins;
            for count in &counts[1..] {
                proptest::prop_assert!(*count + 1 >= even && *count <= even + 2, "{counts:?}");
            }
            for left in 0..values.len() {
                for right in 0..values.len() {
                    if values[left] < values[right] {
                        proptest::prop_assert!(scores[left] <= scores[right]);
                    }
                }
            }
        }
    }
}
