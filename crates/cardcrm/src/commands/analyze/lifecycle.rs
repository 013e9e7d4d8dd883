//! `cardcrm analyze lifecycle` and `cardcrm analyze churn`: stages and churn risk from each
//! customer's history at several cutoffs, read from a purchases file in one pass.

use std::io::Write;

use cardcrm_analytics::{
    churn,
    history::HistoryAccumulator,
    lifecycle::{self, LifecycleRules, Stage},
};
use cardcrm_service::analysis::Keep;
use clap::Args;

use super::{FileArgs, Format, Timings, code, read_file, write_csv, write_json_with_rows};
use crate::commands::{CommandResult, Failure};

/// Longest churn window or comparison span, in days.
const WINDOW_DAYS_MAX: i32 = 1_000;

#[derive(Debug, Args)]
pub struct LifecycleArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Days without a purchase after which a customer is dormant.
    #[arg(long, default_value_t = 180)]
    pub dormant_days: i32,
    /// Days without a purchase after which a customer is lost.
    #[arg(long, default_value_t = 365)]
    pub lost_days: i32,
    /// The transitions are counted from this many days before the analysis day.
    #[arg(long, default_value_t = 90)]
    pub compare_days: i32,
}

#[derive(Debug, Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Days without a purchase after a cutoff that count as churned.
    #[arg(long, default_value_t = 90)]
    pub window_days: i32,
    /// Share of the evaluated customers that make the "top k" of the report.
    #[arg(long, default_value_t = 0.1)]
    pub top_share: f64,
}

fn check_days(name: &str, days: i32) -> Result<(), Failure> {
    if (1..=WINDOW_DAYS_MAX).contains(&days) {
        Ok(())
    } else {
        Err(Failure::input(format!("{name} must be between 1 and {WINDOW_DAYS_MAX} days, not {days}")))
    }
}

fn io(error: std::io::Error) -> Failure {
    Failure::other(format!("writing the result: {error}"))
}

pub fn run_lifecycle(settings: &cardcrm_service::config::Settings, args: &LifecycleArgs) -> CommandResult {
    check_days("--compare-days", args.compare_days)?;
    check_days("--dormant-days", args.dormant_days)?;
    if args.lost_days <= args.dormant_days || args.lost_days > 10 * WINDOW_DAYS_MAX {
        return Err(Failure::input("--lost-days must be longer than --dormant-days (and at most 10,000)"));
    }
    let rules = LifecycleRules { dormant_days: args.dormant_days, lost_days: args.lost_days };
    let mut timings = Timings::new(args.file.timings);
    let keep = Keep::History([0, args.compare_days, args.compare_days]);
    let (file, _) = read_file(settings, &args.file, keep)?;
    timings.step("read");
    let history = file.history.as_ref().ok_or_else(|| Failure::other("the reader kept no history"))?;
    let (now, before) = (history.cutoffs()[0], history.cutoffs()[1]);
    let stages: Vec<(Option<Stage>, Option<Stage>)> = (0..file.customer_ids.len())
        .map(|customer| {
            (
                lifecycle::stage(&history.standing(customer, 1), before, &rules),
                lifecycle::stage(&history.standing(customer, 0), now, &rules),
            )
        })
        .collect();
    let transitions = lifecycle::transitions(stages.iter().copied());
    timings.step("lifecycle");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // (stage before, stage now) per customer number.
    type Pair = (Option<Stage>, Option<Stage>);
    let count = |at: fn(&Pair) -> Option<Stage>, stage: Stage| {
        stages.iter().filter(|pair| at(pair) == Some(stage)).count()
    };
    match args.file.format {
        Format::Table => {
            writeln!(
                out,
                "Lifecycle as of {} (dormant after {} days, lost after {}), against {} days before",
                args.file.as_of, rules.dormant_days, rules.lost_days, args.compare_days
            )
            .map_err(io)?;
            writeln!(out, "{:<10} {:<5} {:>10} {:>10}", "stage", "", "now", "before").map_err(io)?;
            for stage in Stage::ALL {
                writeln!(
                    out,
                    "{:<10} {:<5} {:>10} {:>10}",
                    code(stage),
                    stage.name_zh(),
                    count(|pair| pair.1, stage),
                    count(|pair| pair.0, stage)
                )
                .map_err(io)?;
            }
            writeln!(out, "transitions (rows: before, columns: now; 'entered': no purchase before):")
                .map_err(io)?;
            write!(out, "{:<10}", "").map_err(io)?;
            for stage in Stage::ALL {
                write!(out, " {:>9}", code(stage)).map_err(io)?;
            }
            writeln!(out).map_err(io)?;
            for (row, stage) in Stage::ALL.iter().enumerate() {
                write!(out, "{:<10}", code(*stage)).map_err(io)?;
                for value in transitions.counts[row] {
                    write!(out, " {value:>9}").map_err(io)?;
                }
                writeln!(out).map_err(io)?;
            }
            write!(out, "{:<10}", "entered").map_err(io)?;
            for value in transitions.entered {
                write!(out, " {value:>9}").map_err(io)?;
            }
            writeln!(out).map_err(io)?;
        }
        Format::Json => {
            let customers = stages.iter().zip(&file.customer_ids).filter(|(pair, _)| pair.1.is_some()).map(
                |((before, now), id)| serde_json::json!({ "customer_id": id, "stage": now, "stage_before": before }),
            );
            let head = serde_json::json!({
                "as_of": args.file.as_of, "compare_days": args.compare_days, "dormant_days": rules.dormant_days,
                "lost_days": rules.lost_days, "transitions": transitions,
            });
            write_json_with_rows(&mut out, head, "customers", customers)?;
        }
        Format::Csv => {
            write_csv(
                &mut out,
                ["customer_id", "stage", "stage_before"],
                stages.iter().zip(&file.customer_ids).filter(|(pair, _)| pair.1.is_some()).map(
                    |((before, now), id)| {
                        [id.clone(), now.map(code).unwrap_or_default(), before.map(code).unwrap_or_default()]
                    },
                ),
            )?;
        }
    }
    out.flush().map_err(io)?;
    timings.step("write");
    timings.print();
    Ok(())
}

/// Features and labels of the customers who had bought by cutoff number `cutoff`.
fn labelled(
    history: &HistoryAccumulator,
    cutoff: usize,
    window: i32,
    scale: f64,
) -> (Vec<[f64; 7]>, Vec<bool>) {
    let day = history.cutoffs()[cutoff];
    (0..history.customers())
        .map(|customer| history.standing(customer, cutoff))
        .filter(|standing| standing.has_purchases())
        .map(|standing| (churn::features(&standing, day, scale), churn::churned(&standing, day, window)))
        .unzip()
}

pub fn run_churn(settings: &cardcrm_service::config::Settings, args: &ChurnArgs) -> CommandResult {
    check_days("--window-days", args.window_days)?;
    if !(args.top_share > 0.0 && args.top_share <= 1.0) {
        return Err(Failure::input("--top-share must be above 0 and at most 1"));
    }
    let mut timings = Timings::new(args.file.timings);
    let window = args.window_days;
    let keep = Keep::History([0, window, 2 * window]);
    let (file, currency) = read_file(settings, &args.file, keep)?;
    timings.step("read");
    let history = file.history.as_ref().ok_or_else(|| Failure::other("the reader kept no history"))?;
    let scale = 10_f64.powi(currency.exponent() as i32);
    let (training_rows, training_labels) = labelled(history, 2, window, scale);
    let model = churn::train(&training_rows, &training_labels).map_err(|error| {
        Failure::input(format!("training at {} days before {}: {error}", 2 * window, args.file.as_of))
    })?;
    timings.step("train");
    let (evaluation_rows, evaluation_labels) = labelled(history, 1, window, scale);
    let probabilities: Vec<f64> = evaluation_rows.iter().map(|row| model.probability(row)).collect();
    let evaluation = churn::evaluate(&probabilities, &evaluation_labels, args.top_share);
    timings.step("evaluate");
    let now = history.cutoffs()[0];
    let scored: Vec<(usize, f64, Vec<&str>)> = (0..file.customer_ids.len())
        .map(|customer| (customer, history.standing(customer, 0)))
        .filter(|(_, standing)| standing.has_purchases())
        .map(|(customer, standing)| {
            let row = churn::features(&standing, now, scale);
            (customer, model.probability(&row), model.top_factors(&row, 3))
        })
        .collect();
    timings.step("score");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.file.format {
        Format::Table => {
            writeln!(
                out,
                "Churn (no purchase within {window} days) as of {}: trained on {} customers at −{} days (churn rate {:.1}%)",
                args.file.as_of,
                model.training_customers,
                2 * window,
                model.training_churn_rate * 100.0
            )
            .map_err(io)?;
            writeln!(
                out,
                "evaluated on {} customers at −{window} days (churn rate {:.1}%): AUC {:.4}, precision in the top {} ({:.0}%) {:.1}%",
                evaluation.customers,
                evaluation.churn_rate * 100.0,
                evaluation.auc,
                evaluation.top_k,
                args.top_share * 100.0,
                evaluation.precision_at_top_k * 100.0
            )
            .map_err(io)?;
            writeln!(out, "calibration by decile of the score: predicted / observed churn rate")
                .map_err(io)?;
            for (decile, (predicted, observed, customers)) in evaluation.calibration.iter().enumerate() {
                writeln!(
                    out,
                    "  {:>2}  {:>6.1}% / {:>6.1}%  ({customers} customers)",
                    decile + 1,
                    predicted * 100.0,
                    observed * 100.0
                )
                .map_err(io)?;
            }
            writeln!(out, "weights on standardised features (positive: more risk):").map_err(io)?;
            for (name, weight) in churn::FEATURES.iter().zip(model.weights) {
                writeln!(out, "  {name:<28} {weight:>+8.3}").map_err(io)?;
            }
            let high = scored.iter().filter(|(_, probability, _)| *probability >= 0.5).count();
            writeln!(
                out,
                "scored {} customers as of {}: {high} at 50% risk or more",
                scored.len(),
                args.file.as_of
            )
            .map_err(io)?;
        }
        Format::Json => {
            let customers = scored.iter().map(|(customer, probability, factors)| {
                serde_json::json!({ "customer_id": file.customer_ids[*customer], "probability": probability, "factors": factors })
            });
            let head = serde_json::json!({
                "as_of": args.file.as_of, "window_days": window, "features": churn::FEATURES, "model": model,
                "evaluation": evaluation,
            });
            write_json_with_rows(&mut out, head, "customers", customers)?;
        }
        Format::Csv => {
            write_csv(
                &mut out,
                ["customer_id", "probability", "factors"],
                scored.iter().map(|(customer, probability, factors)| {
                    [file.customer_ids[*customer].clone(), probability.to_string(), factors.join(" ")]
                }),
            )?;
        }
    }
    out.flush().map_err(io)?;
    timings.step("write");
    timings.print();
    Ok(())
}
