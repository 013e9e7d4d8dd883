//! The analyses over the database (`cardcrm analyze rfm --as-of DATE` without `--input`):
//! each run is stored with its segments, which `analyze runs`, `analyze show` and
//! `analyze export` list and write out (CSV or Parquet).

use std::{io::Write, path::PathBuf};

use cardcrm_analytics::lifecycle::LifecycleRules;
use cardcrm_service::{
    Services,
    segments::{self, AnalysisRequest, ExportFormat, Plan, RunView},
};
use clap::{Args, ValueEnum};

use super::{Format, read_file, spinner, write_csv, write_json_with_rows};
use crate::{
    GlobalArgs,
    commands::{CommandResult, Failure, load_settings, open, operator},
};

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this kind (rfm, kmeans, lifecycle, churn, clv).
    #[arg(long)]
    pub kind: Option<String>,
    /// Most runs to list (newest first).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run's id (from `analyze runs`).
    pub run: i64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportKind {
    Csv,
    Parquet,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run's id (from `analyze runs`).
    pub run: i64,
    /// Only this segment's members (its code, e.g. champions, value_high, cluster_0).
    #[arg(long)]
    pub segment: Option<String>,
    #[arg(long, value_enum, default_value_t = ExportKind::Csv)]
    pub format: ExportKind,
    /// Where to write; standard output when absent (CSV only).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs an analysis of the database, stores it, and prints the run and its segments.
pub async fn run_on_database(global: &GlobalArgs, request: AnalysisRequest, format: Format) -> CommandResult {
    let services = open(load_settings(global, None)?).await?;
    let identity = operator();
    let bar = spinner(format == Format::Table);
    bar.set_message(format!(
        "{} of the database's purchases as of {}",
        request.kind,
        request.as_of.clone().unwrap_or_default()
    ));
    let run = services.run_analysis(identity.grant().map_err(Failure::from)?, request).await;
    bar.finish_and_clear();
    let run = run?;
    print_run(&run, format)
}

/// `analyze loyalty --input FILE`: the loyalty classes of a file's customers, printed as the
/// database run would store them.
pub fn loyalty_on_file(
    settings: &cardcrm_service::config::Settings,
    args: &super::lifecycle::LifecycleArgs,
) -> CommandResult {
    let rules = LifecycleRules { dormant_days: args.dormant_days, lost_days: args.lost_days };
    if rules.dormant_days < 1 || rules.lost_days <= rules.dormant_days {
        return Err(Failure::input("--lost-days must be longer than --dormant-days, both positive"));
    }
    let plan = Plan::Loyalty(rules);
    let (file, currency) = read_file(settings, &args.file, plan.keep())?;
    let outcome = segments::analyse(&plan, &file, 10_f64.powi(currency.exponent() as i32))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let rows = outcome.members.iter().map(|(number, segment, score)| {
        (
            &file.customer_ids[*number as usize],
            &outcome.segments[*segment as usize].code,
            score.unwrap_or_default(),
        )
    });
    match args.file.format {
        Format::Table => {
            writeln!(
                out,
                "Loyalty as of {}: {} purchases, {} customers",
                args.file.as_of,
                file.rows,
                file.customer_ids.len()
            )
            .map_err(io)?;
            for (index, segment) in outcome.segments.iter().enumerate() {
                let count = outcome.members.iter().filter(|member| usize::from(member.1) == index).count();
                writeln!(
                    out,
                    "{:<18} {:>10}  {} {}: {}",
                    segment.code, count, segment.name_zh, segment.name_en, segment.rule
                )
                .map_err(io)?;
            }
        }
        Format::Json => {
            let head = serde_json::json!({ "as_of": args.file.as_of, "summary": outcome.summary });
            let customers = rows.map(|(id, segment, score)| {
                serde_json::json!({ "customer_id": id, "segment": segment, "score": score })
            });
            write_json_with_rows(&mut out, head, "customers", customers)?;
        }
        Format::Csv => {
            write_csv(
                &mut out,
                ["customer_id", "segment", "score"],
                rows.map(|(id, segment, score)| [id.clone(), segment.clone(), format!("{score:.2}")]),
            )?;
        }
    }
    out.flush().map_err(io)
}

fn io(error: std::io::Error) -> Failure {
    Failure::other(format!("writing the result: {error}"))
}

fn print_run(run: &RunView, format: Format) -> CommandResult {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Format::Json => {
            serde_json::to_writer(&mut out, run).map_err(|error| Failure::other(error.to_string()))?;
            writeln!(out).map_err(io)?;
        }
        Format::Csv => {
            write_csv(
                &mut out,
                ["run_id", "segment", "name_en", "name_zh", "customers", "rule"],
                run.segments.iter().map(|segment| {
                    [
                        run.id.to_string(),
                        segment.code.clone(),
                        segment.name_en.clone(),
                        segment.name_zh.clone(),
                        segment.customers.to_string(),
                        segment.rule.clone(),
                    ]
                }),
            )?;
        }
        Format::Table => {
            writeln!(
                out,
                "run {} · {} as of {} · {} purchases, {} customers · {} ms · by {} at {}",
                run.id,
                run.kind,
                run.as_of,
                run.purchases,
                run.customers,
                run.duration_ms,
                run.created_by,
                run.created_at
            )
            .map_err(io)?;
            let width = run.segments.iter().map(|segment| segment.code.len()).max().unwrap_or(7).max(7);
            writeln!(out, "{:<width$} {:>10}  {:<28} rule", "segment", "customers", "name").map_err(io)?;
            for segment in &run.segments {
                let name = format!("{} {}", segment.name_zh, segment.name_en);
                writeln!(
                    out,
                    "{:<width$} {:>10}  {}{} {}",
                    segment.code,
                    segment.customers,
                    name,
                    " ".repeat(28_usize.saturating_sub(display_width(&name))),
                    segment.rule
                )
                .map_err(io)?;
            }
            writeln!(
                out,
                "members: cardcrm analyze export {} [--segment CODE] --format csv|parquet --out FILE",
                run.id
            )
            .map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// Columns a text takes in a terminal: CJK characters take two.
pub fn display_width(text: &str) -> usize {
    text.chars()
        .map(|character| match character as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

pub async fn runs(global: &GlobalArgs, args: &RunsArgs) -> CommandResult {
    let services: Services = open(load_settings(global, None)?).await?;
    let identity = operator();
    let limit = i64::from(args.limit.clamp(1, 1_000));
    let page = services
        .analysis_runs(identity.grant().map_err(Failure::from)?, args.kind.clone(), None, limit)
        .await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        serde_json::to_writer(&mut out, &page.items).map_err(|error| Failure::other(error.to_string()))?;
        writeln!(out).map_err(io)?;
    } else if page.items.is_empty() {
        writeln!(out, "no analysis runs yet: cardcrm analyze rfm --as-of YYYY-MM-DD makes one")
            .map_err(io)?;
    } else {
        writeln!(
            out,
            "{:>6}  {:<10} {:<10} {:>12} {:>10} {:>9}  created",
            "run", "kind", "as of", "purchases", "customers", "ms"
        )
        .map_err(io)?;
        for run in &page.items {
            writeln!(
                out,
                "{:>6}  {:<10} {:<10} {:>12} {:>10} {:>9}  {} by {}",
                run.id,
                run.kind,
                run.as_of,
                run.purchases,
                run.customers,
                run.duration_ms,
                run.created_at,
                run.created_by
            )
            .map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

pub async fn show(global: &GlobalArgs, args: &ShowArgs) -> CommandResult {
    let services = open(load_settings(global, None)?).await?;
    let identity = operator();
    let run = services.analysis_run(identity.grant().map_err(Failure::from)?, args.run).await?;
    print_run(&run, if args.json { Format::Json } else { Format::Table })
}

pub async fn export(global: &GlobalArgs, args: &ExportArgs) -> CommandResult {
    let format = match args.format {
        ExportKind::Csv => ExportFormat::Csv,
        ExportKind::Parquet => ExportFormat::Parquet,
    };
    if format == ExportFormat::Parquet && args.out.is_none() {
        return Err(Failure::input("--format parquet writes a file: give --out FILE"));
    }
    let services = open(load_settings(global, None)?).await?;
    let identity = operator();
    let bytes = services
        .export_analysis_members(
            identity.grant().map_err(Failure::from)?,
            args.run,
            args.segment.clone(),
            format,
        )
        .await?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &bytes)
                .map_err(|error| Failure::other(format!("{}: {error}", path.display())))?;
            eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
            Ok(())
        }
        None => std::io::stdout().write_all(&bytes).map_err(io),
    }
}
