//! K-means segmentation 聚类: Lloyd's algorithm from k-means++ seeds (the greedy variant
//! scikit-learn uses: 2 + ⌊ln k⌋ candidates per seed, the one that lowers the potential
//! most kept), several restarts with the lowest inertia kept, a fixed seed for
//! reproducibility, and the stopping rule of scikit-learn (labels unchanged, or the squared
//! centre shift at most `tolerance` × the features' mean variance). Clusters come back in
//! a canonical order (largest "value" first, see [`Clustering`]) so that their ids do not
//! depend on the seeds. Points are rows of `dimensions` numbers, row-major; callers
//! standardise them ([`standardise`]).

use crate::{AnalyticsError, parallel, rfm::RfmFigures};

/// Most clusters a run may ask for.
pub const CLUSTERS_MAX: usize = 64;
/// Most restarts a run may ask for.
pub const RESTARTS_MAX: usize = 100;
/// Most points one run takes.
pub const POINTS_MAX: usize = 50_000_000;
/// Most dimensions a point may have.
pub const DIMENSIONS_MAX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KmeansSettings {
    pub clusters: usize,
    pub restarts: usize,
    pub seed: u64,
    pub iterations_max: usize,
    /// scikit-learn's `tol` (1e-4 there).
    pub tolerance: f64,
}

impl Default for KmeansSettings {
    fn default() -> Self {
        Self { clusters: 8, restarts: 4, seed: 20_261_123, iterations_max: 300, tolerance: 1e-4 }
    }
}

/// A finished clustering: centres (row-major, `clusters × dimensions`), each point's
/// cluster, the inertia (sum of squared distances to the own centre) and the work done.
/// Clusters are numbered by the sum of their centre's coordinates, largest first: with
/// features where "more is better" (the caller flips those where less is), cluster 0 is
/// the most valuable.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    pub dimensions: usize,
    pub centres: Vec<f64>,
    pub labels: Vec<u16>,
    pub sizes: Vec<u64>,
    pub inertia: f64,
    pub iterations: usize,
    /// The inertia each restart ended with, in order.
    pub restart_inertias: Vec<f64>,
}

/// Column means and (population) standard deviations, as scikit-learn's StandardScaler.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub means: Vec<f64>,
    pub deviations: Vec<f64>,
}

/// Standardises `points` in place (each column to mean 0, deviation 1; a constant column
/// to 0) and returns the scaling used.
pub fn standardise(points: &mut [f64], dimensions: usize) -> Scaling {
    let rows = points.len() / dimensions.max(1);
    let mut means = vec![0.0; dimensions];
    let mut deviations = vec![0.0; dimensions];
    if rows == 0 {
        return Scaling { means, deviations };
    }
    for row in points.chunks_exact(dimensions) {
        for (mean, value) in means.iter_mut().zip(row) {
            *mean += value;
        }
    }
    for mean in &mut means {
        *mean /= rows as f64;
    }
    for row in points.chunks_exact(dimensions) {
        for ((deviation, value), mean) in deviations.iter_mut().zip(row).zip(&means) {
            *deviation += (value - mean) * (value - mean);
        }
    }
    for deviation in &mut deviations {
        *deviation = (*deviation / rows as f64).sqrt();
    }
    for row in points.chunks_exact_mut(dimensions) {
        for ((value, mean), deviation) in row.iter_mut().zip(&means).zip(&deviations) {
            *value = if *deviation > 0.0 { (*value - mean) / deviation } else { 0.0 };
        }
    }
    Scaling { means, deviations }
}

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same clustering
/// on every machine.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Uniform in 0..bound (bound > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        ((self.next_f64() * bound as f64) as usize).min(bound - 1)
    }
}

fn squared_distance(left: &[f64], right: &[f64]) -> f64 {
    left.iter().zip(right).map(|(left, right)| (left - right) * (left - right)).sum()
}

/// The nearest centre of a point and its squared distance.
fn nearest(point: &[f64], centres: &[f64], dimensions: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (index, centre) in centres.chunks_exact(dimensions).enumerate() {
        let distance = squared_distance(point, centre);
        if distance < best.1 {
            best = (index, distance);
        }
    }
    best
}

/// [`nearest`] for points of a fixed dimension (the compiler unrolls the distance).
fn nearest_fixed<const D: usize>(point: &[f64], centres: &[[f64; D]]) -> (usize, f64) {
    let point: [f64; D] = std::array::from_fn(|axis| point[axis]);
    let mut best = (0, f64::INFINITY);
    for (index, centre) in centres.iter().enumerate() {
        let mut distance = 0.0;
        for axis in 0..D {
            let difference = point[axis] - centre[axis];
            distance += difference * difference;
        }
        if distance < best.1 {
            best = (index, distance);
        }
    }
    best
}

fn check(points: &[f64], dimensions: usize, settings: &KmeansSettings) -> Result<usize, AnalyticsError> {
    if dimensions == 0 || dimensions > DIMENSIONS_MAX {
        return Err(AnalyticsError::OutOfRange {
            what: "dimensions",
            min: 1,
            max: DIMENSIONS_MAX as i64,
            found: dimensions as i64,
        });
    }
    if !points.len().is_multiple_of(dimensions) {
        return Err(AnalyticsError::LengthMismatch {
            what: "points",
            length: points.len(),
            expected: points.len() / dimensions * dimensions,
        });
    }
    let rows = points.len() / dimensions;
    if rows > POINTS_MAX {
        return Err(AnalyticsError::OutOfRange {
            what: "points",
            min: 1,
            max: POINTS_MAX as i64,
            found: rows as i64,
        });
    }
    if settings.clusters < 1 || settings.clusters > CLUSTERS_MAX.min(rows) {
        return Err(AnalyticsError::OutOfRange {
            what: "clusters",
            min: 1,
            max: CLUSTERS_MAX.min(rows) as i64,
            found: settings.clusters as i64,
        });
    }
    if settings.restarts < 1 || settings.restarts > RESTARTS_MAX {
        return Err(AnalyticsError::OutOfRange {
            what: "restarts",
            min: 1,
            max: RESTARTS_MAX as i64,
            found: settings.restarts as i64,
        });
    }
    if let Some(index) = points.iter().position(|value| !value.is_finite()) {
        return Err(AnalyticsError::InvalidFigure {
            what: "a feature is not a finite number",
            index: index / dimensions,
        });
    }
    Ok(rows)
}

/// k-means++ seeds (greedy: several candidates per seed, the best kept).
fn seeds(points: &[f64], dimensions: usize, clusters: usize, random: &mut SplitMix64) -> Vec<f64> {
    let rows = points.len() / dimensions;
    let trials = 2 + (clusters as f64).ln() as usize;
    let mut centres = Vec::with_capacity(clusters * dimensions);
    let first = random.below(rows);
    centres.extend_from_slice(&points[first * dimensions..(first + 1) * dimensions]);
    let rows_index: Vec<usize> = (0..rows).collect();
    let distance_to =
        |row: usize, at: &[f64]| squared_distance(&points[row * dimensions..(row + 1) * dimensions], at);
    let mut closest: Vec<f64> = parallel::map(&rows_index, |&row| distance_to(row, &centres[..dimensions]));
    while centres.len() < clusters * dimensions {
        let mut cumulative = Vec::with_capacity(rows);
        let mut total = 0.0;
        for distance in &closest {
            total += distance;
            cumulative.push(total);
        }
        let mut best: Option<(f64, usize)> = None;
        for _ in 0..trials {
            let target = random.next_f64() * total;
            let candidate = cumulative.partition_point(|sum| *sum <= target).min(rows - 1);
            let at = &points[candidate * dimensions..(candidate + 1) * dimensions];
            let potential = parallel::fold(
                &rows_index,
                || 0.0,
                |sum, &row| sum + closest[row].min(distance_to(row, at)),
                |left, right| left + right,
            );
            if best.is_none_or(|(lowest, _)| potential < lowest) {
                best = Some((potential, candidate));
            }
        }
        let Some((_, candidate)) = best else { break };
        let at = points[candidate * dimensions..(candidate + 1) * dimensions].to_vec();
        closest = parallel::map(&rows_index, |&row| closest[row].min(distance_to(row, &at)));
        centres.extend_from_slice(&at);
    }
    centres
}

/// What one assignment pass over a share of the points adds up.
struct Pass {
    sums: Vec<f64>,
    counts: Vec<u64>,
    inertia: f64,
    changed: u64,
    /// The point farthest from its centre (to reseed an empty cluster) and its distance.
    farthest: (usize, f64),
}

impl Pass {
    fn empty(clusters: usize, dimensions: usize) -> Self {
        Self {
            sums: vec![0.0; clusters * dimensions],
            counts: vec![0; clusters],
            inertia: 0.0,
            changed: 0,
            farthest: (0, -1.0),
        }
    }
}

/// Assigns every point to its nearest centre (labels updated in place) on all cores.
fn assign(points: &[f64], dimensions: usize, centres: &[f64], labels: &mut [u16]) -> Pass {
    let clusters = centres.len() / dimensions;
    let rows = labels.len();
    let threads = parallel::threads().min(rows / 16_384).max(1);
    let share = rows.div_ceil(threads);
    // The RFM features have three dimensions: that case gets an unrolled distance.
    let fixed: Option<Vec<[f64; 3]>> = (dimensions == 3)
        .then(|| centres.chunks_exact(3).map(|centre| [centre[0], centre[1], centre[2]]).collect());
    let one = |offset: usize, points: &[f64], labels: &mut [u16]| {
        let mut pass = Pass::empty(clusters, dimensions);
        for (index, (point, label)) in points.chunks_exact(dimensions).zip(labels.iter_mut()).enumerate() {
            let (cluster, distance) = match &fixed {
                Some(centres) => nearest_fixed(point, centres),
                None => nearest(point, centres, dimensions),
            };
            if usize::from(*label) != cluster {
                pass.changed += 1;
                *label = cluster as u16;
            }
            pass.counts[cluster] += 1;
            for (sum, value) in
                pass.sums[cluster * dimensions..(cluster + 1) * dimensions].iter_mut().zip(point)
            {
                *sum += value;
            }
            pass.inertia += distance;
            if distance > pass.farthest.1 {
                pass.farthest = (offset + index, distance);
            }
        }
        pass
    };
    let passes: Vec<Pass> = if threads == 1 {
        vec![one(0, points, labels)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = points
                .chunks(share * dimensions)
                .zip(labels.chunks_mut(share))
                .enumerate()
                .map(|(part, (points, labels))| scope.spawn(move || one(part * share, points, labels)))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        })
    };
    let mut passes = passes.into_iter();
    let mut total = passes.next().unwrap_or_else(|| Pass::empty(clusters, dimensions));
    for pass in passes {
        for (sum, part) in total.sums.iter_mut().zip(pass.sums) {
            *sum += part;
        }
        for (count, part) in total.counts.iter_mut().zip(pass.counts) {
            *count += part;
        }
        total.inertia += pass.inertia;
        total.changed += pass.changed;
        if pass.farthest.1 > total.farthest.1 {
            total.farthest = pass.farthest;
        }
    }
    total
}

/// Where one run of Lloyd's algorithm ended.
struct Run {
    centres: Vec<f64>,
    labels: Vec<u16>,
    sizes: Vec<u64>,
    inertia: f64,
    iterations: usize,
}

/// One run of Lloyd's algorithm from `centres`.
fn lloyd(
    points: &[f64],
    dimensions: usize,
    mut centres: Vec<f64>,
    settings: &KmeansSettings,
    tolerance: f64,
) -> Run {
    let rows = points.len() / dimensions;
    let clusters = centres.len() / dimensions;
    // A label no cluster has, so that the first pass counts every point as changed.
    let mut labels = vec![u16::MAX; rows];
    let mut iterations = 0;
    loop {
        let pass = assign(points, dimensions, &centres, &mut labels);
        iterations += 1;
        let mut next = pass.sums;
        for cluster in 0..clusters {
            let row = &mut next[cluster * dimensions..(cluster + 1) * dimensions];
            if pass.counts[cluster] == 0 {
                // An empty cluster restarts at the point farthest from its centre.
                let far = pass.farthest.0;
                row.copy_from_slice(&points[far * dimensions..(far + 1) * dimensions]);
            } else {
                for value in row.iter_mut() {
                    *value /= pass.counts[cluster] as f64;
                }
            }
        }
        let shift = squared_distance(&next, &centres);
        centres = next;
        if pass.changed == 0 || shift <= tolerance || iterations >= settings.iterations_max {
            break;
        }
    }
    // The labels and inertia of the final centres.
    let last = assign(points, dimensions, &centres, &mut labels);
    Run { centres, labels, sizes: last.counts, inertia: last.inertia, iterations }
}

/// Clusters `points` (rows of `dimensions`, already standardised).
pub fn cluster(
    points: &[f64],
    dimensions: usize,
    settings: &KmeansSettings,
) -> Result<Clustering, AnalyticsError> {
    let rows = check(points, dimensions, settings)?;
    let variance_mean = {
        let mut means = vec![0.0; dimensions];
        for row in points.chunks_exact(dimensions) {
            for (mean, value) in means.iter_mut().zip(row) {
                *mean += value / rows as f64;
            }
        }
        points.chunks_exact(dimensions).map(|row| squared_distance(row, &means)).sum::<f64>()
            / rows as f64
            / dimensions as f64
    };
    let tolerance = settings.tolerance * variance_mean;
    let mut random = SplitMix64::new(settings.seed);
    let mut best: Option<Run> = None;
    let mut restart_inertias = Vec::with_capacity(settings.restarts);
    for _ in 0..settings.restarts {
        let start = seeds(points, dimensions, settings.clusters, &mut random);
        let run = lloyd(points, dimensions, start, settings, tolerance);
        restart_inertias.push(run.inertia);
        if best.as_ref().is_none_or(|kept| run.inertia < kept.inertia) {
            best = Some(run);
        }
    }
    let Some(Run { centres, labels, sizes, inertia, iterations }) = best else {
        return Err(AnalyticsError::OutOfRange {
            what: "restarts",
            min: 1,
            max: RESTARTS_MAX as i64,
            found: 0,
        });
    };
    Ok(canonical(Clustering { dimensions, centres, labels, sizes, inertia, iterations, restart_inertias }))
}

/// Renumbers clusters by the sum of their centre's coordinates, largest first (ties by the
/// centre's coordinates in order).
fn canonical(mut clustering: Clustering) -> Clustering {
    let dimensions = clustering.dimensions;
    let clusters = clustering.sizes.len();
    let centre = |index: usize| &clustering.centres[index * dimensions..(index + 1) * dimensions];
    let mut order: Vec<usize> = (0..clusters).collect();
    order.sort_by(|&left, &right| {
        let (left_sum, right_sum) = (centre(left).iter().sum::<f64>(), centre(right).iter().sum::<f64>());
        right_sum.total_cmp(&left_sum).then_with(|| {
            centre(left)
                .iter()
                .zip(centre(right))
                .fold(std::cmp::Ordering::Equal, |ordering, (left, right)| {
                    ordering.then_with(|| right.total_cmp(left))
                })
        })
    });
    let mut renumber = vec![0_u16; clusters];
    for (new, old) in order.iter().enumerate() {
        renumber[*old] = new as u16;
    }
    let centres: Vec<f64> = order.iter().flat_map(|old| centre(*old).to_vec()).collect();
    let sizes = order.iter().map(|old| clustering.sizes[*old]).collect();
    for label in &mut clustering.labels {
        *label = renumber[usize::from(*label)];
    }
    clustering.centres = centres;
    clustering.sizes = sizes;
    clustering
}

/// The mean silhouette coefficient of a labelled sample (O(n²): keep it to a few thousand
/// points). Points alone in their cluster count 0, as scikit-learn does.
pub fn silhouette(points: &[f64], dimensions: usize, labels: &[u16], clusters: usize) -> f64 {
    let rows = labels.len();
    if rows < 2 || clusters < 2 {
        return 0.0;
    }
    let mut sizes = vec![0_usize; clusters];
    for label in labels {
        sizes[usize::from(*label)] += 1;
    }
    let scores = parallel::map(&(0..rows).collect::<Vec<_>>(), |&row| {
        let point = &points[row * dimensions..(row + 1) * dimensions];
        let mut sums = vec![0.0; clusters];
        for (other, label) in labels.iter().enumerate() {
            sums[usize::from(*label)] +=
                squared_distance(point, &points[other * dimensions..(other + 1) * dimensions]).sqrt();
        }
        let own = usize::from(labels[row]);
        if sizes[own] <= 1 {
            return 0.0;
        }
        let inside = sums[own] / (sizes[own] - 1) as f64;
        let outside = (0..clusters)
            .filter(|cluster| *cluster != own && sizes[*cluster] > 0)
            .map(|cluster| sums[cluster] / sizes[cluster] as f64)
            .fold(f64::INFINITY, f64::min);
        if !outside.is_finite() { 0.0 } else { (outside - inside) / inside.max(outside) }
    });
    scores.iter().sum::<f64>() / rows as f64
}

/// One candidate k of [`suggest`]: the inertia on the whole data and the silhouette on the
/// sample.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub clusters: usize,
    pub inertia: f64,
    pub silhouette: f64,
}

/// Tries k = 2..=`clusters_max` on a sample of at most `sample_max` points (drawn with the
/// seed) and suggests the k with the highest silhouette; the inertias are the elbow curve.
pub fn suggest(
    points: &[f64],
    dimensions: usize,
    clusters_max: usize,
    sample_max: usize,
    settings: &KmeansSettings,
) -> Result<(usize, Vec<Candidate>), AnalyticsError> {
    let rows = check(points, dimensions, &KmeansSettings { clusters: 1, ..*settings })?;
    let mut random = SplitMix64::new(settings.seed ^ 0x5A5A_5A5A);
    let sample: Vec<f64> = if rows <= sample_max {
        points.to_vec()
    } else {
        // Floyd's sampling of distinct rows, in row order.
        let mut chosen = std::collections::BTreeSet::new();
        for upper in rows - sample_max..rows {
            let pick = random.below(upper + 1);
            if !chosen.insert(pick) {
                chosen.insert(upper);
            }
        }
        chosen.iter().flat_map(|row| points[row * dimensions..(row + 1) * dimensions].to_vec()).collect()
    };
    let sample_rows = sample.len() / dimensions;
    let mut candidates = Vec::new();
    for clusters in 2..=clusters_max.min(sample_rows.saturating_sub(1)).min(CLUSTERS_MAX) {
        let fitted = cluster(&sample, dimensions, &KmeansSettings { clusters, ..*settings })?;
        candidates.push(Candidate {
            clusters,
            inertia: fitted.inertia * rows as f64 / sample_rows as f64,
            silhouette: silhouette(&sample, dimensions, &fitted.labels, clusters),
        });
    }
    let best = candidates
        .iter()
        .max_by(|left, right| left.silhouette.total_cmp(&right.silhouette))
        .map_or(2, |candidate| candidate.clusters);
    Ok((best, candidates))
}

/// The names of [`rfm_features`]' columns.
pub const RFM_FEATURES: [&str; 3] = ["recency", "frequency", "monetary"];

/// K-means features of the customers with purchases (their numbers, and rows of
/// [−ln(1 + recency days), ln(1 + purchases), ln(1 + spend in major units)]): logarithms
/// tame the long tails of frequency and spend, and recency is negated so that larger is
/// better in every column (the canonical cluster order relies on it).
pub fn rfm_features(figures: &[RfmFigures], minor_per_major: f64) -> (Vec<usize>, Vec<f64>) {
    let mut members = Vec::new();
    let mut points = Vec::new();
    for (index, figures) in figures.iter().enumerate() {
        if figures.frequency <= 0 {
            continue;
        }
        members.push(index);
        points.push(-(figures.recency_days.max(0) as f64).ln_1p());
        points.push((figures.frequency as f64).ln_1p());
        points.push((figures.monetary_minor.max(0) as f64 / minor_per_major).ln_1p());
    }
    (members, points)
}

/// A cluster in the customers' own units, with a readable label.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Profile {
    pub cluster: u16,
    pub customers: u64,
    pub share: f64,
    pub recency_days_mean: f64,
    pub frequency_mean: f64,
    pub monetary_minor_mean: f64,
    /// The centre in standardised units (0: the average customer; ±1: one deviation).
    pub centre: Vec<f64>,
    pub label: String,
    pub label_zh: String,
}

/// Profiles of an RFM clustering: `members[i]` is the customer number of point i.
pub fn rfm_profiles(clustering: &Clustering, figures: &[RfmFigures], members: &[usize]) -> Vec<Profile> {
    let clusters = clustering.sizes.len();
    let mut sums = vec![[0.0_f64; 3]; clusters];
    for (label, member) in clustering.labels.iter().zip(members) {
        let figures = &figures[*member];
        let sum = &mut sums[usize::from(*label)];
        sum[0] += figures.recency_days as f64;
        sum[1] += figures.frequency as f64;
        sum[2] += figures.monetary_minor as f64;
    }
    let total = members.len().max(1) as f64;
    (0..clusters)
        .map(|cluster| {
            let size = clustering.sizes[cluster];
            let centre = clustering.centres
                [cluster * clustering.dimensions..(cluster + 1) * clustering.dimensions]
                .to_vec();
            fn words(
                value: f64,
                high: (&'static str, &'static str),
                low: (&'static str, &'static str),
            ) -> Option<(&'static str, &'static str)> {
                if value >= 0.5 {
                    Some(high)
                } else if value <= -0.5 {
                    Some(low)
                } else {
                    None
                }
            }
            let parts: Vec<(&str, &str)> = [
                words(centre[0], ("recent", "近期活跃"), ("lapsed", "久未购买")),
                words(centre[1], ("frequent", "高频"), ("rare", "低频")),
                words(centre[2], ("high spend", "高消费"), ("low spend", "低消费")),
            ]
            .into_iter()
            .flatten()
            .collect();
            let (label, label_zh) = if parts.is_empty() {
                ("average".to_owned(), "一般".to_owned())
            } else {
                (
                    parts.iter().map(|(english, _)| *english).collect::<Vec<_>>().join(", "),
                    parts.iter().map(|(_, chinese)| *chinese).collect::<Vec<_>>().join("、"),
                )
            };
            let mean = |column: usize| if size == 0 { 0.0 } else { sums[cluster][column] / size as f64 };
            Profile {
                cluster: cluster as u16,
                customers: size,
                share: size as f64 / total,
                recency_days_mean: mean(0),
                frequency_mean: mean(1),
                monetary_minor_mean: mean(2),
                centre,
                label,
                label_zh,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tight, well-separated blobs in 2-D, in a shuffled order.
    fn blobs() -> Vec<f64> {
        let mut random = SplitMix64::new(1);
        let mut points = Vec::new();
        for index in 0..3_000 {
            let (x, y) = [(0.0, 0.0), (10.0, 0.0), (0.0, 20.0)][index % 3];
            points.push(x + random.next_f64() - 0.5);
            points.push(y + random.next_f64() - 0.5);
        }
        points
    }

    #[test]
    fn finds_separated_blobs_and_numbers_them_canonically() {
        let points = blobs();
        let settings = KmeansSettings { clusters: 3, restarts: 2, ..KmeansSettings::default() };
        let found = cluster(&points, 2, &settings).unwrap();
        assert_eq!(found.sizes, vec![1_000, 1_000, 1_000]);
        // Uniform noise of width 1 in each axis: variance 1/12 per axis per point.
        let expected = 3_000.0 * 2.0 / 12.0;
        assert!((found.inertia - expected).abs() / expected < 0.1, "{}", found.inertia);
        // Numbered by the sum of the centre's coordinates, largest first.
        let centre = |index: usize| (found.centres[index * 2].round(), found.centres[index * 2 + 1].round());
        assert_eq!([centre(0), centre(1), centre(2)], [(0.0, 20.0), (10.0, 0.0), (0.0, 0.0)]);
        assert_eq!(found.labels[0], 2, "point 0 is in the blob at the origin");
        // Another seed finds the same clusters under the same numbers.
        let again = cluster(&points, 2, &KmeansSettings { seed: 99, ..settings }).unwrap();
        assert_eq!(again.labels, found.labels);
    }

    #[test]
    fn the_same_seed_gives_the_same_result_and_inertia_is_the_sum_of_squares() {
        let mut random = SplitMix64::new(5);
        let points: Vec<f64> = (0..4_000).map(|_| random.next_f64()).collect();
        let settings = KmeansSettings { clusters: 5, restarts: 3, ..KmeansSettings::default() };
        let first = cluster(&points, 2, &settings).unwrap();
        assert_eq!(first, cluster(&points, 2, &settings).unwrap());
        let recomputed: f64 = points
            .chunks_exact(2)
            .zip(&first.labels)
            .map(|(point, label)| {
                squared_distance(point, &first.centres[usize::from(*label) * 2..usize::from(*label) * 2 + 2])
            })
            .sum();
        assert!((recomputed - first.inertia).abs() < 1e-9 * recomputed);
        assert_eq!(first.inertia, first.restart_inertias.iter().copied().fold(f64::INFINITY, f64::min));
        // Every point is at its nearest centre.
        for (point, label) in points.chunks_exact(2).zip(&first.labels) {
            assert_eq!(nearest(point, &first.centres, 2).0, usize::from(*label));
        }
    }

    #[test]
    fn standardising_gives_mean_zero_and_deviation_one() {
        let mut points = vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0];
        let scaling = standardise(&mut points, 2);
        assert_eq!(scaling.means, vec![2.0, 5.0]);
        assert!((scaling.deviations[0] - (2.0_f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(points[1], 0.0, "a constant column becomes 0");
        assert!((points[0] + points[2] + points[4]).abs() < 1e-15);
    }

    #[test]
    fn silhouette_prefers_the_true_number_of_blobs() {
        let points = blobs();
        let (best, candidates) = suggest(&points, 2, 6, 600, &KmeansSettings::default()).unwrap();
        assert_eq!(best, 3, "{candidates:?}");
        assert!(candidates[1].silhouette > 0.9, "{candidates:?}");
        // The elbow: inertia falls steeply to 3 clusters and little after.
        assert!(candidates[0].inertia > 10.0 * candidates[1].inertia, "{candidates:?}");
    }

    #[test]
    fn rfm_profiles_speak_in_the_customers_units() {
        let figures: Vec<RfmFigures> = (0..400)
            .map(|index| {
                if index % 2 == 0 {
                    RfmFigures { recency_days: 3, frequency: 20, monetary_minor: 500_000 }
                } else if index % 5 == 1 {
                    RfmFigures { recency_days: 0, frequency: 0, monetary_minor: 0 }
                } else {
                    RfmFigures { recency_days: 300, frequency: 1, monetary_minor: 2_000 }
                }
            })
            .collect();
        let (members, mut points) = rfm_features(&figures, 100.0);
        assert!(!members.contains(&1), "customers without purchases are left out");
        standardise(&mut points, 3);
        let found =
            cluster(&points, 3, &KmeansSettings { clusters: 2, ..KmeansSettings::default() }).unwrap();
        let profiles = rfm_profiles(&found, &figures, &members);
        assert_eq!(profiles[0].customers, 200);
        assert_eq!(
            (profiles[0].recency_days_mean, profiles[0].frequency_mean, profiles[0].monetary_minor_mean),
            (3.0, 20.0, 500_000.0)
        );
        assert_eq!(profiles[0].label, "recent, frequent, high spend");
        assert_eq!(profiles[1].label_zh, "久未购买、低频、低消费");
    }

    #[test]
    fn bad_settings_are_refused() {
        let points = vec![0.0; 20];
        for settings in [
            KmeansSettings { clusters: 0, ..KmeansSettings::default() },
            KmeansSettings { clusters: 11, ..KmeansSettings::default() },
            KmeansSettings { restarts: 0, ..KmeansSettings::default() },
        ] {
            assert!(cluster(&points, 2, &settings).is_err(), "{settings:?}");
        }
        assert!(
            cluster(&[0.0, f64::NAN], 2, &KmeansSettings { clusters: 1, ..KmeansSettings::default() })
                .is_err()
        );
        assert!(cluster(&[0.0; 5], 2, &KmeansSettings { clusters: 1, ..KmeansSettings::default() }).is_err());
    }
}
