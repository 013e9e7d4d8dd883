//! `cardcrm import customers|transactions|stores FILE`.

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use cardcrm_service::{
    ServiceError,
    import::{
        DuplicatePolicy, FileFormat, ImportOptions, ImportPhase, ImportProgress, ImportReport, ImportSource,
        RejectSink, TextEncoding,
    },
};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::{CommandResult, Failure, init_logging, load_settings, open, operator};
use crate::GlobalArgs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Customers,
    Transactions,
    Stores,
    /// Credit-card account records from the issuer (one row per statement).
    Credit,
    /// Opening points balances from another system (one lot per row, with its expiry).
    Points,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnDuplicate {
    /// A row matching a stored customer is an error.
    Error,
    /// Leave the stored customer alone.
    Skip,
    /// Write the row's non-empty fields over the stored customer.
    Update,
    /// Create another customer anyway.
    Create,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Auto,
    Csv,
    Xlsx,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the file holds.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The CSV or XLSX file.
    pub file: PathBuf,
    /// Check everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the good rows and put the bad ones in the reject file, instead of writing nothing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Where skipped rows go (default: FILE.rejects.csv).
    #[arg(long, value_name = "PATH")]
    pub reject_file: Option<PathBuf>,
    /// What to do with a row matching a stored customer or store.
    #[arg(long, value_enum, default_value = "error")]
    pub on_duplicate: OnDuplicate,
    /// Text encoding of a CSV file: auto, utf-8 or gbk.
    #[arg(long, default_value = "auto")]
    pub encoding: String,
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// Store code for rows that name none.
    #[arg(long, value_name = "CODE")]
    pub store: Option<String>,
    /// Print the whole report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// How many row errors the terminal summary lists (the JSON report has more).
const ERRORS_SHOWN: usize = 20;

pub async fn run(global: &GlobalArgs, args: ImportArgs) -> CommandResult {
    let settings = load_settings(global, None)?;
    init_logging(&settings);
    if !args.file.is_file() {
        return Err(Failure::input(format!("{} is not a file", args.file.display())));
    }
    let services = open(settings).await?;
    let options = ImportOptions {
        file_name: args.file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
        format: match args.format {
            Format::Auto => FileFormat::Auto,
            Format::Csv => FileFormat::Csv,
            Format::Xlsx => FileFormat::Xlsx,
        },
        encoding: TextEncoding::parse(&args.encoding)?,
        dry_run: args.dry_run,
        skip_invalid: args.skip_invalid,
        on_duplicate: match args.on_duplicate {
            OnDuplicate::Error => DuplicatePolicy::Error,
            OnDuplicate::Skip => DuplicatePolicy::Skip,
            OnDuplicate::Update => DuplicatePolicy::Update,
            OnDuplicate::Create => DuplicatePolicy::Create,
        },
        default_store: args.store.clone(),
    };
    let reject_path = args.reject_file.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".rejects.csv");
        PathBuf::from(name)
    });
    let progress = Arc::new(ImportProgress::default());
    let bar = progress_bar(progress.clone());
    let identity = operator();
    let source = ImportSource::Path(args.file.clone());
    let rejects = RejectSink::file(reject_path);
    let outcome = match args.kind {
        Kind::Customers => {
            services.import_customers(identity.grant()?, options, source, progress.clone(), rejects).await
        }
        Kind::Transactions => {
            services.import_transactions(identity.grant()?, options, source, progress.clone(), rejects).await
        }
        Kind::Stores => {
            services.import_stores(identity.grant()?, options, source, progress.clone(), rejects).await
        }
        Kind::Credit => {
            services.import_credit(identity.grant()?, options, source, progress.clone(), rejects).await
        }
        Kind::Points => {
            services.import_points(identity.grant()?, options, source, progress.clone(), rejects).await
        }
    };
    bar.finish_and_clear();
    match outcome {
        Ok(report) => {
            print_report(&report, args.json);
            Ok(())
        }
        Err(ServiceError::ImportRejected { report, .. }) => {
            print_report(&report, args.json);
            Err(Failure::input(format!(
                "{} of {} rows are invalid; nothing was written (fix them, or rerun with --skip-invalid to write the rest)",
                report.rows_rejected, report.rows_total
            )))
        }
        Err(error) => Err(error.into()),
    }
}

/// A bar over the bytes of the file, with rows read and written, redrawn a few times a second.
fn progress_bar(progress: Arc<ImportProgress>) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:32} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticker = bar.clone();
    std::thread::spawn(move || {
        while !ticker.is_finished() {
            ticker.set_length(progress.bytes_total.load(Ordering::Relaxed));
            ticker.set_position(progress.bytes_read.load(Ordering::Relaxed));
            ticker.set_message(match progress.phase() {
                ImportPhase::Reading => format!(
                    "{} rows read, {} written",
                    progress.rows_read.load(Ordering::Relaxed),
                    progress.rows_written.load(Ordering::Relaxed)
                ),
                ImportPhase::Finishing => format!(
                    "{} rows written; rebuilding indexes and checking references",
                    progress.rows_written.load(Ordering::Relaxed)
                ),
                ImportPhase::Committing => "committing".to_owned(),
            });
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    bar
}

fn print_report(report: &ImportReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
        return;
    }
    let rate = match (report.rows_total * 1000).checked_div(report.elapsed_ms) {
        Some(rate) => format!("{rate} rows/s"),
        None => "under a millisecond".to_owned(),
    };
    println!(
        "import #{} of {} ({}, {}): {}",
        report.import_id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
        report.file_name,
        report.kind,
        report.encoding,
        report.status
    );
    println!(
        "  rows: {} read, {} inserted, {} updated, {} skipped, {} rejected in {:.1} s ({rate})",
        report.rows_total,
        report.rows_inserted,
        report.rows_updated,
        report.rows_skipped,
        report.rows_rejected,
        report.elapsed_ms as f64 / 1000.0
    );
    for error in report.errors.iter().take(ERRORS_SHOWN) {
        eprintln!(
            "  line {}: {}: {} ({})",
            error.line,
            if error.field.is_empty() { "-" } else { &error.field },
            error.message,
            error.code
        );
    }
    if report.errors_total as usize > ERRORS_SHOWN {
        eprintln!("  … and {} more problems (see --json)", report.errors_total as usize - ERRORS_SHOWN);
    }
    if let Some(path) = &report.reject_file {
        println!("  rejected rows written to {path}");
    }
}
