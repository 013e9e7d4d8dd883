//! `cardcrm analyze recommend`: category association rules over the customers' category
//! sets, and each customer's next-best categories.

use std::io::Write;

use cardcrm_analytics::recommend;
use cardcrm_service::analysis::Keep;
use clap::Args;

use super::{FileArgs, Format, Timings, read_file, write_csv, write_json_with_rows};
use crate::commands::{CommandResult, Failure};

/// Most suggestions per customer.
const SUGGESTIONS_MAX: usize = 10;
/// Most rules the table prints (JSON has them all).
const TABLE_RULES_MAX: usize = 20;

#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Least share of all customers who bought both categories of a rule.
    #[arg(long, default_value_t = 0.01)]
    pub min_support: f64,
    /// Least share of the first category's buyers who also bought the second.
    #[arg(long, default_value_t = 0.1)]
    pub min_confidence: f64,
    /// Suggestions per customer.
    #[arg(long, default_value_t = 3)]
    pub count: usize,
}

fn io(error: std::io::Error) -> Failure {
    Failure::other(format!("writing the result: {error}"))
}

pub fn run(settings: &cardcrm_service::config::Settings, args: &RecommendArgs) -> CommandResult {
    if !(0.0..=1.0).contains(&args.min_support) || !(0.0..=1.0).contains(&args.min_confidence) {
        return Err(Failure::input("--min-support and --min-confidence are shares between 0 and 1"));
    }
    if !(1..=SUGGESTIONS_MAX).contains(&args.count) {
        return Err(Failure::input(format!("--count must be between 1 and {SUGGESTIONS_MAX}")));
    }
    let mut timings = Timings::new(args.file.timings);
    let (file, _) = read_file(settings, &args.file, Keep::Categories)?;
    timings.step("read");
    // Customers who bought something up to the day (their category set may be empty when
    // their rows carried no category).
    let buyers: Vec<usize> = file
        .accumulator
        .totals()
        .iter()
        .enumerate()
        .filter(|(_, totals)| totals.is_some())
        .map(|(customer, _)| customer)
        .collect();
    let baskets: Vec<u64> =
        buyers.iter().map(|customer| file.customer_categories.get(*customer).copied().unwrap_or(0)).collect();
    let names = &file.category_names;
    let counts = recommend::count(&baskets, names.len());
    let rules = recommend::rules(&counts, args.min_support, args.min_confidence);
    timings.step("rules");
    let suggestions: Vec<Vec<recommend::Suggestion>> =
        baskets.iter().map(|basket| recommend::suggest(*basket, &rules, &counts, args.count)).collect();
    timings.step("suggest");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let rule_json = |rule: &recommend::Rule| {
        serde_json::json!({
            "if_bought": names[rule.antecedent], "also_bought": names[rule.consequent], "customers": rule.customers,
            "support": rule.support, "confidence": rule.confidence, "lift": rule.lift,
        })
    };
    match args.file.format {
        Format::Table => {
            writeln!(
                out,
                "Category rules as of {}: {} customers with purchases, {} categories, {} rules (support ≥ {}, confidence ≥ {})",
                args.file.as_of,
                buyers.len(),
                names.len(),
                rules.len(),
                args.min_support,
                args.min_confidence
            )
            .map_err(io)?;
            writeln!(
                out,
                "{:<16} {:<16} {:>10} {:>9} {:>11} {:>7}",
                "if bought", "also bought", "customers", "support", "confidence", "lift"
            )
            .map_err(io)?;
            for rule in rules.iter().take(TABLE_RULES_MAX) {
                writeln!(
                    out,
                    "{:<16} {:<16} {:>10} {:>8.2}% {:>10.1}% {:>7.2}",
                    names[rule.antecedent],
                    names[rule.consequent],
                    rule.customers,
                    rule.support * 100.0,
                    rule.confidence * 100.0,
                    rule.lift
                )
                .map_err(io)?;
            }
            if rules.len() > TABLE_RULES_MAX {
                writeln!(out, "… and {} more (--format json lists them all)", rules.len() - TABLE_RULES_MAX)
                    .map_err(io)?;
            }
            let by_rule =
                suggestions.iter().flatten().filter(|suggestion| suggestion.because_of.is_some()).count();
            let all = suggestions.iter().map(Vec::len).sum::<usize>();
            writeln!(
                out,
                "suggestions: {all} for {} customers, {by_rule} by a rule and the rest by popularity",
                buyers.len()
            )
            .map_err(io)?;
        }
        Format::Json => {
            let customers = buyers.iter().zip(&suggestions).map(|(customer, found)| {
                serde_json::json!({
                    "customer_id": file.customer_ids[*customer],
                    "suggestions": found.iter().map(|suggestion| serde_json::json!({
                        "category": names[suggestion.category], "score": suggestion.score,
                        "because_of": suggestion.because_of.map(|category| names[category].clone()),
                    })).collect::<Vec<_>>(),
                })
            });
            let head = serde_json::json!({
                "as_of": args.file.as_of, "customers_with_purchases": buyers.len(), "categories": names,
                "rules": rules.iter().map(rule_json).collect::<Vec<_>>(),
            });
            write_json_with_rows(&mut out, head, "customers", customers)?;
        }
        Format::Csv => {
            write_csv(
                &mut out,
                ["customer_id", "rank", "category", "score", "because_of"],
                buyers.iter().zip(&suggestions).flat_map(|(customer, found)| {
                    found.iter().enumerate().map(|(rank, suggestion)| {
                        [
                            file.customer_ids[*customer].clone(),
                            (rank + 1).to_string(),
                            names[suggestion.category].clone(),
                            suggestion.score.to_string(),
                            suggestion.because_of.map(|category| names[category].clone()).unwrap_or_default(),
                        ]
                    })
                }),
            )?;
        }
    }
    out.flush().map_err(io)?;
    timings.step("write");
    timings.print();
    Ok(())
}
