//! `cardcrm analyze`: customer analyses (`rfm`, `kmeans`, `lifecycle`, `churn`, `clv`,
//! `recommend`) on a purchases file with no database (`--input FILE`), or over the
//! database's purchases, where each run is stored with its segments (`database`).

mod database;
mod kmeans;
mod kpi;
mod lifecycle;
mod recommend;

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use cardcrm_analytics::{
    bgnbd::{self, Calibration},
    clv,
    features::{PeriodSummary, PeriodUnit, period_summaries},
    gamma_gamma::{self, Spend},
    rfm::{self, Cut, RfmGroup, RfmResult, RfmSettings},
};
use cardcrm_domain::money::Currency;
use cardcrm_service::{
    analysis::{Keep, PurchaseFile, read_purchases},
    segments::AnalysisRequest,
};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::{CommandResult, Failure, load_settings};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum AnalyzeCommand {
    /// RFM scores (quintiles, pandas' tie rule), the eight classic groups and the segments;
    /// recency is measured to --as-of.
    Rfm(RfmArgs),
    /// K-means segments on the RFM figures (log scale, standardised; k-means++, restarts,
    /// fixed seed), with each cluster's profile and a readable label.
    Kmeans(kmeans::KmeansArgs),
    /// Lifecycle stages (new, growing, mature, declining, won back, dormant, lost) by
    /// documented rules, and the transitions since an earlier day.
    Lifecycle(lifecycle::LifecycleArgs),
    /// Churn risk: a model trained at --as-of − 2·window and evaluated at --as-of − window on
    /// the file's own history (AUC, precision in the top k, calibration), then every customer
    /// scored at --as-of with their main risk factors.
    Churn(lifecycle::ChurnArgs),
    /// Category association rules (support, confidence, lift) and each customer's
    /// next-best categories, with a popularity fallback (needs a category column).
    Recommend(recommend::RecommendArgs),
    /// Lifetime value: BG/NBD (expected purchases, P(alive)) and Gamma–Gamma (spend), fitted
    /// by maximum likelihood on the purchases up to --as-of, as the lifetimes package does
    /// (with --unit week, the whole week — Monday to Sunday — that holds --as-of).
    Clv(ClvArgs),
    /// Loyal and potentially loyal customers 忠诚客户识别: a documented score from the RFM
    /// quintiles and tenure, read with the lifecycle stage.
    Loyalty(lifecycle::LifecycleArgs),
    /// Programme KPIs month by month: buyers, new and returning, repeat rate, active, churn,
    /// revenue and basket, retention cohorts, per store; over the database also the
    /// stored-value liability at each month's end, tiers, points and the latest CLV.
    Kpi(kpi::KpiArgs),
    /// The stored runs of analyses over the database, newest first.
    Runs(database::RunsArgs),
    /// One stored run: its figures and its segments with their rules and sizes.
    Show(database::ShowArgs),
    /// A run's segment members (run_id, segment, customer_id, score) as CSV or Parquet.
    Export(database::ExportArgs),
}

#[derive(Debug, Args)]
pub struct ClvArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The models' time unit: purchases on the same day (or week, Monday to Sunday) count once.
    #[arg(long, value_enum, default_value_t = Unit::Week)]
    pub unit: Unit,
    /// Months of the value horizon.
    #[arg(long, default_value_t = 12)]
    pub months: u32,
    /// Monthly discount rate (0.01: 1% a month).
    #[arg(long, default_value_t = 0.01)]
    pub discount: f64,
}

/// How long each step of an analysis took, printed with `--timings`.
struct Timings {
    wanted: bool,
    started: Instant,
    steps: Vec<(&'static str, f64)>,
}

impl Timings {
    fn new(wanted: bool) -> Self {
        Self { wanted, started: Instant::now(), steps: Vec::new() }
    }

    /// Ends the step running since the last one.
    fn step(&mut self, name: &'static str) {
        let now = Instant::now();
        self.steps.push((name, now.duration_since(self.started).as_secs_f64() * 1_000.0));
        self.started = now;
    }

    fn print(&self) {
        if self.wanted {
            let steps: serde_json::Map<String, serde_json::Value> = self
                .steps
                .iter()
                .map(|(name, ms)| ((*name).to_owned(), serde_json::json!((ms * 10.0).round() / 10.0)))
                .collect();
            eprintln!("{}", serde_json::json!({ "timings_ms": steps }));
        }
    }
}

/// What every analysis of a file takes: the file, the analysis day, the output format.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// A purchases file: CSV with columns customer_id,timestamp,amount (category and store
    /// optional; `analyze recommend` needs category). Without it the database's purchases
    /// are analysed and the run is stored with its segments (`analyze runs`, `analyze export`).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// The analysis day, YYYY-MM-DD, in the business's time zone: purchases up to and
    /// including it count.
    #[arg(long, value_name = "DATE")]
    pub as_of: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print how long each step took (milliseconds, one JSON line) on standard error.
    #[arg(long)]
    pub timings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Unit {
    Day,
    Week,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A summary per group.
    Table,
    /// The summary and every customer's result.
    Json,
    /// One row per customer.
    Csv,
}

#[derive(Debug, Args)]
pub struct RfmArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Bins per score (5: quintiles; the named segments need 5).
    #[arg(long, default_value_t = 5)]
    pub bins: usize,
}

/// The request of an analysis over the database: a subcommand given no `--input`.
fn database_request(command: &AnalyzeCommand) -> Result<Option<(AnalysisRequest, Format)>, Failure> {
    let file = match command {
        AnalyzeCommand::Rfm(args) => &args.file,
        AnalyzeCommand::Kmeans(args) => &args.file,
        AnalyzeCommand::Lifecycle(args) => &args.file,
        AnalyzeCommand::Churn(args) => &args.file,
        AnalyzeCommand::Recommend(args) => &args.file,
        AnalyzeCommand::Clv(args) => &args.file,
        AnalyzeCommand::Loyalty(args) => &args.file,
        AnalyzeCommand::Runs(_)
        | AnalyzeCommand::Show(_)
        | AnalyzeCommand::Export(_)
        | AnalyzeCommand::Kpi(_) => {
            return Ok(None);
        }
    };
    if file.input.is_some() {
        return Ok(None);
    }
    let mut request = AnalysisRequest { as_of: Some(file.as_of.clone()), ..AnalysisRequest::default() };
    match command {
        AnalyzeCommand::Rfm(args) => {
            if args.bins != 5 {
                return Err(Failure::input("the analysis over the database scores quintiles: --bins 5"));
            }
            request.kind = "rfm".into();
        }
        AnalyzeCommand::Kmeans(args) => {
            request.kind = "kmeans".into();
            request.clusters = Some(args.clusters.trim().parse().map_err(|_| {
                Failure::input(
                    "--clusters: the analysis over the database takes a number (auto needs --input)",
                )
            })?);
            request.restarts = Some(args.restarts);
            request.seed = Some(args.seed);
        }
        AnalyzeCommand::Lifecycle(args) | AnalyzeCommand::Loyalty(args) => {
            request.kind =
                if matches!(command, AnalyzeCommand::Loyalty(_)) { "loyalty" } else { "lifecycle" }.into();
            request.dormant_days = Some(args.dormant_days);
            request.lost_days = Some(args.lost_days);
        }
        AnalyzeCommand::Churn(args) => {
            request.kind = "churn".into();
            request.window_days = Some(args.window_days);
        }
        AnalyzeCommand::Clv(args) => {
            request.kind = "clv".into();
            request.unit = Some(match args.unit {
                Unit::Day => "day".into(),
                Unit::Week => "week".into(),
            });
            request.months = Some(args.months);
            request.monthly_discount = Some(args.discount);
        }
        _ => {
            return Err(Failure::input(
                "analyze recommend reads a purchases file for now: give --input FILE",
            ));
        }
    }
    Ok(Some((request, file.format)))
}

pub async fn run(global: &GlobalArgs, command: AnalyzeCommand) -> CommandResult {
    if let Some((request, format)) = database_request(&command)? {
        return database::run_on_database(global, request, format).await;
    }
    match &command {
        AnalyzeCommand::Runs(args) => return database::runs(global, args).await,
        AnalyzeCommand::Show(args) => return database::show(global, args).await,
        AnalyzeCommand::Export(args) => return database::export(global, args).await,
        AnalyzeCommand::Kpi(args) => return kpi::run(global, args).await,
        _ => {}
    }
    let settings = load_settings(global, None)?;
    match command {
        AnalyzeCommand::Rfm(args) => {
            let mut timings = Timings::new(args.file.timings);
            let (file, _) = read_file(&settings, &args.file, Keep::Totals)?;
            timings.step("read");
            let figures = file.accumulator.rfm_figures();
            let settings = RfmSettings { bins: args.bins, cut: Cut::Mean };
            let (results, cuts) =
                rfm::analyse(&figures, &settings).map_err(|error| Failure::input(error.to_string()))?;
            timings.step("rfm");
            print_rfm(&file, &figures, &results, &cuts, args.file.format, &args.file.as_of)?;
            timings.step("write");
            timings.print();
            Ok(())
        }
        AnalyzeCommand::Kmeans(args) => kmeans::run(&settings, &args),
        AnalyzeCommand::Lifecycle(args) => lifecycle::run_lifecycle(&settings, &args),
        AnalyzeCommand::Churn(args) => lifecycle::run_churn(&settings, &args),
        AnalyzeCommand::Recommend(args) => recommend::run(&settings, &args),
        AnalyzeCommand::Loyalty(args) => database::loyalty_on_file(&settings, &args),
        AnalyzeCommand::Runs(_)
        | AnalyzeCommand::Show(_)
        | AnalyzeCommand::Export(_)
        | AnalyzeCommand::Kpi(_) => Ok(()),
        AnalyzeCommand::Clv(args) => {
            let mut timings = Timings::new(args.file.timings);
            let unit = match args.unit {
                Unit::Day => PeriodUnit::Day,
                Unit::Week => PeriodUnit::Week,
            };
            let (mut file, currency) = read_file(&settings, &args.file, Keep::Periods(unit))?;
            let end_period = unit.period_of_day(file.as_of_day());
            let summaries = match file.periods.take() {
                Some(periods) if periods.in_order() => periods.summaries(file.customer_ids.len()),
                _ => {
                    // Not in time order per customer: read again keeping every purchase, and sort.
                    (file, _) = read_file(&settings, &args.file, Keep::Purchases(unit))?;
                    let mut purchases = std::mem::take(&mut file.purchases);
                    period_summaries(&mut purchases, file.customer_ids.len(), end_period)
                }
            };
            timings.step("read");
            print_clv(&file, &summaries, &args, unit, currency, &mut timings)?;
            timings.print();
            Ok(())
        }
    }
}

/// Opens and reads `--input`, with a spinner on a table run.
pub(crate) fn read_file(
    settings: &cardcrm_service::config::Settings,
    args: &FileArgs,
    keep: Keep,
) -> Result<(PurchaseFile, Currency), Failure> {
    let (input, as_of, show_progress) =
        (args.input.as_ref(), args.as_of.as_str(), args.format == Format::Table);
    let Some(input) = input else {
        return Err(Failure::other("read_file needs --input: the database path is taken before"));
    };
    let as_of = cardcrm_domain::date::parse_date(as_of)
        .map_err(|error| Failure::input(format!("--as-of: {}", error.message)))?;
    let zone = jiff::tz::TimeZone::get(&settings.default_time_zone)
        .map_err(|error| Failure::input(format!("time zone: {error}")))?;
    let currency = Currency::parse(&settings.currency).map_err(|error| Failure::input(error.message))?;
    let file = std::fs::File::open(input)
        .map_err(|error| Failure::input(format!("{}: {error}", input.display())))?;
    let bar = spinner(show_progress);
    let read = read_purchases(
        std::io::BufReader::with_capacity(1 << 20, file),
        &zone,
        as_of,
        currency,
        keep,
        |rows| {
            bar.set_message(format!("{rows} purchases read"));
        },
    );
    bar.finish_and_clear();
    let file = read.map_err(|error| match error {
        cardcrm_service::ServiceError::BadFile { line: Some(line), message, .. } => {
            Failure::input(format!("{}: line {line}: {message}", input.display()))
        }
        other => Failure::from(other),
    })?;
    Ok((file, currency))
}

fn spinner(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Writes a JSON object: the fields of `head`, then `key` holding the array of `rows`, each
/// serialised as it comes (memory per row, not per document: a million customers' results
/// would otherwise be built in memory first). One line, ending with a newline.
fn write_json_with_rows<T: serde::Serialize>(
    out: &mut impl Write,
    head: serde_json::Value,
    key: &str,
    rows: impl Iterator<Item = T>,
) -> CommandResult {
    let io = |error: std::io::Error| Failure::other(format!("writing the result: {error}"));
    let json = |error: serde_json::Error| Failure::other(format!("writing the result: {error}"));
    let head = serde_json::to_string(&head).map_err(json)?;
    let open = head.strip_suffix('}').unwrap_or("{");
    write!(out, "{open}{}{}:[", if open.len() > 1 { "," } else { "" }, serde_json::Value::from(key))
        .map_err(io)?;
    for (index, row) in rows.enumerate() {
        if index > 0 {
            out.write_all(b",").map_err(io)?;
        }
        serde_json::to_writer(&mut *out, &row).map_err(json)?;
    }
    writeln!(out, "]}}").map_err(io)
}

/// Writes a header and rows as CSV (quoted by the csv crate where a field needs it).
fn write_csv<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: impl Iterator<Item = [String; N]>,
) -> CommandResult {
    let failed = |error: csv::Error| Failure::other(format!("writing the result: {error}"));
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(header).map_err(failed)?;
    for row in rows {
        writer.write_record(row).map_err(failed)?;
    }
    writer.flush().map_err(|error| Failure::other(format!("writing the result: {error}")))
}

/// The snake_case code a value serialises to (`important_value`, `champions`).
fn code(value: impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|value| value.as_str().map(str::to_owned)).unwrap_or_default()
}

fn print_rfm(
    file: &PurchaseFile,
    figures: &[rfm::RfmFigures],
    results: &[RfmResult],
    cuts: &rfm::RfmCuts,
    format: Format,
    as_of: &str,
) -> CommandResult {
    let io = |error: std::io::Error| Failure::other(format!("writing the result: {error}"));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary: Vec<serde_json::Value> = RfmGroup::SCORED
        .iter()
        .chain([&RfmGroup::NoPurchase])
        .map(|group| {
            let members: Vec<usize> =
                (0..results.len()).filter(|index| results[*index].group == *group).collect();
            let mean = |pick: fn(&rfm::RfmFigures) -> i64| {
                if members.is_empty() {
                    0.0
                } else {
                    members.iter().map(|index| pick(&figures[*index]) as f64).sum::<f64>()
                        / members.len() as f64
                }
            };
            serde_json::json!({
                "group": code(*group), "name": group.name_zh(), "customers": members.len(),
                "share": if results.is_empty() { 0.0 } else { members.len() as f64 / results.len() as f64 },
                "recency_days_mean": mean(|figures| figures.recency_days),
                "frequency_mean": mean(|figures| figures.frequency),
                "monetary_minor_mean": mean(|figures| figures.monetary_minor),
            })
        })
        .collect();
    match format {
        Format::Table => {
            writeln!(
                out,
                "RFM as of {as_of}: {} purchases, {} customers, {} with purchases (later purchases left out: {})",
                file.rows,
                results.len(),
                cuts.scored,
                file.accumulator.after_as_of()
            )
            .map_err(io)?;
            writeln!(
                out,
                "cuts (means): recency {:.1} days · frequency {:.2} · monetary {:.2}",
                cuts.recency_days,
                cuts.frequency,
                cuts.monetary_minor / 100.0
            )
            .map_err(io)?;
            writeln!(
                out,
                "{:<18} {:>10} {:>7} {:>12} {:>10} {:>14}",
                "group", "customers", "share", "recency d", "frequency", "monetary"
            )
            .map_err(io)?;
            for row in &summary {
                writeln!(
                    out,
                    "{:<18} {:>10} {:>6.1}% {:>12.1} {:>10.2} {:>14.2}",
                    row["group"].as_str().unwrap_or_default(),
                    row["customers"].as_u64().unwrap_or(0),
                    row["share"].as_f64().unwrap_or(0.0) * 100.0,
                    row["recency_days_mean"].as_f64().unwrap_or(0.0),
                    row["frequency_mean"].as_f64().unwrap_or(0.0),
                    row["monetary_minor_mean"].as_f64().unwrap_or(0.0) / 100.0
                )
                .map_err(io)?;
            }
        }
        Format::Json => {
            let customers = results.iter().zip(figures).zip(&file.customer_ids).map(|((result, figures), id)| {
                serde_json::json!({
                    "customer_id": id, "recency_days": figures.recency_days, "frequency": figures.frequency,
                    "monetary_minor": figures.monetary_minor, "r": result.recency_score, "f": result.frequency_score,
                    "m": result.monetary_score, "group": result.group, "segment": result.segment,
                })
            });
            let head = serde_json::json!({
                "as_of": as_of, "purchases": file.rows, "purchases_after_as_of": file.accumulator.after_as_of(),
                "cuts": cuts, "groups": summary,
            });
            write_json_with_rows(&mut out, head, "customers", customers)?;
        }
        Format::Csv => {
            let score = |score: Option<u8>| score.map(|score| score.to_string()).unwrap_or_default();
            write_csv(
                &mut out,
                [
                    "customer_id",
                    "recency_days",
                    "frequency",
                    "monetary_minor",
                    "r",
                    "f",
                    "m",
                    "group",
                    "segment",
                ],
                results.iter().zip(figures).zip(&file.customer_ids).map(|((result, figures), id)| {
                    [
                        id.clone(),
                        figures.recency_days.to_string(),
                        figures.frequency.to_string(),
                        figures.monetary_minor.to_string(),
                        score(result.recency_score),
                        score(result.frequency_score),
                        score(result.monetary_score),
                        code(result.group),
                        result.segment.map(code).unwrap_or_default(),
                    ]
                }),
            )?;
        }
    }
    out.flush().map_err(io)
}

fn print_clv(
    file: &PurchaseFile,
    summaries: &[Option<PeriodSummary>],
    args: &ClvArgs,
    unit: PeriodUnit,
    currency: Currency,
    timings: &mut Timings,
) -> CommandResult {
    if !(0.0..1.0).contains(&args.discount) {
        return Err(Failure::input("--discount must be at least 0 and below 1 (0.01 is 1% a month)"));
    }
    if args.months == 0 || args.months > clv::MONTHS_MAX {
        return Err(Failure::input(format!("--months must be between 1 and {}", clv::MONTHS_MAX)));
    }
    let scale = 10_f64.powi(currency.exponent() as i32);
    let bought: Vec<(usize, PeriodSummary)> = summaries
        .iter()
        .enumerate()
        .filter_map(|(index, summary)| summary.map(|summary| (index, summary)))
        .collect();
    let customers: Vec<(Calibration, Spend)> = bought
        .iter()
        .map(|(_, summary)| {
            (
                Calibration { frequency: summary.frequency, recency: summary.recency, age: summary.age },
                Spend { frequency: summary.frequency, average: summary.average_minor / scale },
            )
        })
        .collect();
    let calibration: Vec<Calibration> = customers.iter().map(|(calibration, _)| *calibration).collect();
    timings.step("summaries");
    let purchases = bgnbd::fit(&calibration).map_err(|error| Failure::input(format!("BG/NBD: {error}")))?;
    timings.step("bgnbd_fit");
    let spends: Vec<Spend> = customers.iter().map(|(_, spend)| *spend).collect();
    let spend = gamma_gamma::fit(&spends).map_err(|error| Failure::input(format!("Gamma–Gamma: {error}")))?;
    timings.step("gamma_gamma_fit");
    let horizon = clv::Horizon { months: args.months, monthly_discount: args.discount, unit };
    let predictions = clv::predict(&purchases.parameters, &spend.parameters, &customers, &horizon);
    timings.step("clv");
    let io = |error: std::io::Error| Failure::other(format!("writing the result: {error}"));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let rows = bought.iter().zip(&predictions).map(|((index, summary), prediction)| {
        (
            &file.customer_ids[*index],
            summary,
            summary.average_minor / scale,
            prediction.probability_alive,
            prediction.expected_purchases,
            prediction.value,
        )
    });
    let header = serde_json::json!({
        "as_of": args.file.as_of, "unit": unit, "customers": bought.len(), "months": args.months,
        "monthly_discount": args.discount,
        "bgnbd": purchases, "gamma_gamma": spend,
    });
    match args.file.format {
        Format::Json => {
            let customers = rows.map(|(id, summary, average, alive, expected, value)| {
                serde_json::json!({
                    "customer_id": id, "frequency": summary.frequency, "recency": summary.recency, "T": summary.age,
                    "monetary_value": average, "probability_alive": alive,
                    "expected_purchases": expected, "clv": value,
                })
            });
            write_json_with_rows(&mut out, header, "customers_results", customers)?;
        }
        Format::Csv => {
            write_csv(
                &mut out,
                [
                    "customer_id",
                    "frequency",
                    "recency",
                    "T",
                    "monetary_value",
                    "probability_alive",
                    "expected_purchases",
                    "clv",
                ],
                rows.map(|(id, summary, average, alive, expected, value)| {
                    [
                        id.clone(),
                        summary.frequency.to_string(),
                        summary.recency.to_string(),
                        summary.age.to_string(),
                        average.to_string(),
                        alive.to_string(),
                        expected.to_string(),
                        value.to_string(),
                    ]
                }),
            )?;
        }
        Format::Table => {
            let p = purchases.parameters;
            let g = spend.parameters;
            writeln!(
                out,
                "CLV as of {} ({} customers with purchases, unit {:?}, {} months, {}% a month)",
                args.file.as_of,
                bought.len(),
                args.unit,
                args.months,
                args.discount * 100.0
            )
            .map_err(io)?;
            writeln!(
                out,
                "BG/NBD       r {:.6}  alpha {:.6}  a {:.6}  b {:.6}  log-likelihood {:.4}",
                p.r, p.alpha, p.a, p.b, purchases.log_likelihood
            )
            .map_err(io)?;
            writeln!(
                out,
                "Gamma-Gamma  p {:.6}  q {:.6}  v {:.6}  log-likelihood {:.4} ({} repeat customers)",
                g.p, g.q, g.v, spend.log_likelihood, spend.customers
            )
            .map_err(io)?;
            let mut values: Vec<f64> = rows.map(|(_, _, _, _, _, value)| value).collect();
            values.sort_by(f64::total_cmp);
            let total: f64 = values.iter().sum();
            let at = |share: f64| {
                values.get(((values.len() as f64 - 1.0) * share) as usize).copied().unwrap_or(0.0)
            };
            writeln!(
                out,
                "CLV          total {total:.2}  mean {:.2}  median {:.2}  p90 {:.2}  max {:.2}",
                total / values.len().max(1) as f64,
                at(0.5),
                at(0.9),
                at(1.0)
            )
            .map_err(io)?;
        }
    }
    out.flush().map_err(io)
}
