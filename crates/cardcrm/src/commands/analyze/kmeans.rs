//! `cardcrm analyze kmeans`: K-means segments of the customers with purchases on their RFM
//! figures (log scale, standardised), with profiles in the customers' own units.

use std::io::Write;

use cardcrm_analytics::{
    kmeans::{self, KmeansSettings},
    rfm::RfmFigures,
};
use cardcrm_service::analysis::{Keep, PurchaseFile};
use clap::Args;

use super::{FileArgs, Format, Timings, read_file, write_csv, write_json_with_rows};
use crate::commands::{CommandResult, Failure};

/// Candidates `--clusters auto` tries: 2 to this many.
const SUGGEST_CLUSTERS_MAX: usize = 10;
/// Points `--clusters auto` scores the silhouette on.
const SUGGEST_SAMPLE_MAX: usize = 4_000;

#[derive(Debug, Args)]
pub struct KmeansArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Clusters (1 to 64), or `auto`: the k of 2 to 10 with the best silhouette on a sample
    /// (the elbow curve is printed beside it).
    #[arg(long, default_value = "8")]
    pub clusters: String,
    /// Runs from different k-means++ seeds; the lowest inertia is kept.
    #[arg(long, default_value_t = 4)]
    pub restarts: usize,
    /// Seed of the k-means++ draws: the same seed and data give the same segments.
    #[arg(long, default_value_t = KmeansSettings::default().seed)]
    pub seed: u64,
}

pub fn run(settings: &cardcrm_service::config::Settings, args: &KmeansArgs) -> CommandResult {
    let mut timings = Timings::new(args.file.timings);
    let (file, currency) = read_file(settings, &args.file, Keep::Totals)?;
    timings.step("read");
    let figures = file.accumulator.rfm_figures();
    let (members, mut points) = kmeans::rfm_features(&figures, 10_f64.powi(currency.exponent() as i32));
    if members.is_empty() {
        return Err(Failure::input(format!(
            "no customer bought anything up to {}: nothing to cluster",
            args.file.as_of
        )));
    }
    let scaling = kmeans::standardise(&mut points, kmeans::RFM_FEATURES.len());
    timings.step("features");
    let mut settings =
        KmeansSettings { restarts: args.restarts, seed: args.seed, ..KmeansSettings::default() };
    let dimensions = kmeans::RFM_FEATURES.len();
    let mut candidates = Vec::new();
    settings.clusters = if args.clusters.trim().eq_ignore_ascii_case("auto") {
        let (best, tried) =
            kmeans::suggest(&points, dimensions, SUGGEST_CLUSTERS_MAX, SUGGEST_SAMPLE_MAX, &settings)
                .map_err(|error| Failure::input(error.to_string()))?;
        candidates = tried;
        timings.step("suggest");
        best
    } else {
        args.clusters.trim().parse().map_err(|_| {
            Failure::input(format!("--clusters: {:?} is neither a number nor auto", args.clusters))
        })?
    };
    let clustering =
        kmeans::cluster(&points, dimensions, &settings).map_err(|error| Failure::input(error.to_string()))?;
    timings.step("kmeans");
    let profiles = kmeans::rfm_profiles(&clustering, &figures, &members);
    print(&file, &figures, &members, &clustering, &profiles, &candidates, &scaling, &settings, args)?;
    timings.step("write");
    timings.print();
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn print(
    file: &PurchaseFile,
    figures: &[RfmFigures],
    members: &[usize],
    clustering: &kmeans::Clustering,
    profiles: &[kmeans::Profile],
    candidates: &[kmeans::Candidate],
    scaling: &kmeans::Scaling,
    settings: &KmeansSettings,
    args: &KmeansArgs,
) -> CommandResult {
    let io = |error: std::io::Error| Failure::other(format!("writing the result: {error}"));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.file.format {
        Format::Table => {
            writeln!(
                out,
                "K-means as of {}: {} customers with purchases, k = {}, {} restarts (seed {}), inertia {:.2} after {} iterations",
                args.file.as_of,
                members.len(),
                settings.clusters,
                settings.restarts,
                settings.seed,
                clustering.inertia,
                clustering.iterations
            )
            .map_err(io)?;
            if !candidates.is_empty() {
                writeln!(out, "k chosen by silhouette on a sample of at most {SUGGEST_SAMPLE_MAX}:")
                    .map_err(io)?;
                for candidate in candidates {
                    writeln!(
                        out,
                        "  k {:>2}  inertia {:>14.1}  silhouette {:.4}",
                        candidate.clusters, candidate.inertia, candidate.silhouette
                    )
                    .map_err(io)?;
                }
            }
            writeln!(
                out,
                "{:>7} {:>10} {:>7} {:>13} {:>10} {:>13}  label",
                "cluster", "customers", "share", "recency days", "purchases", "spend"
            )
            .map_err(io)?;
            for profile in profiles {
                writeln!(
                    out,
                    "{:>7} {:>10} {:>6.1}% {:>13.1} {:>10.2} {:>13.2}  {} / {}",
                    profile.cluster,
                    profile.customers,
                    profile.share * 100.0,
                    profile.recency_days_mean,
                    profile.frequency_mean,
                    profile.monetary_minor_mean / 100.0,
                    profile.label,
                    profile.label_zh
                )
                .map_err(io)?;
            }
        }
        Format::Json => {
            let customers = members.iter().zip(&clustering.labels).map(|(member, label)| {
                serde_json::json!({ "customer_id": file.customer_ids[*member], "cluster": label })
            });
            let head = serde_json::json!({
                "as_of": args.file.as_of, "features": kmeans::RFM_FEATURES, "clusters": settings.clusters,
                "restarts": settings.restarts, "seed": settings.seed, "inertia": clustering.inertia,
                "restart_inertias": clustering.restart_inertias, "iterations": clustering.iterations,
                "scaling": { "means": scaling.means, "deviations": scaling.deviations },
                "candidates": candidates, "profiles": profiles,
            });
            write_json_with_rows(&mut out, head, "customers", customers)?;
        }
        Format::Csv => {
            write_csv(
                &mut out,
                ["customer_id", "cluster", "recency_days", "frequency", "monetary_minor"],
                members.iter().zip(&clustering.labels).map(|(member, label)| {
                    let figures = &figures[*member];
                    [
                        file.customer_ids[*member].clone(),
                        label.to_string(),
                        figures.recency_days.to_string(),
                        figures.frequency.to_string(),
                        figures.monetary_minor.to_string(),
                    ]
                }),
            )?;
        }
    }
    out.flush().map_err(io)
}
