//! `cardcrm`: the one binary. Serves the API, loads demo data, imports files, manages staff
//! accounts and prints the effective configuration.

mod commands;

/// mimalloc: imports allocate rows on the reader thread and free them on the storage writer,
/// a pattern glibc's allocator handles poorly (measured: a fifth of the writer's time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cardcrm",
    version,
    about = "Card-customer management and loyalty platform",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Data directory (SQLite database, key file, demo files). Default: per-user data dir.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: a SQLite path or sqlite://PATH, or postgres://USER@HOST:PORT/DB.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Settings file (TOML). Default: CARDCRM_CONFIG, else DATA_DIR/cardcrm.toml if present.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(commands::serve::ServeArgs),
    /// Create a database with generated demo data, print the logins and serve it.
    Demo(commands::demo::DemoArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Import customers, transactions or stores from a CSV or XLSX file.
    Import(commands::import::ImportArgs),
    /// Manage staff accounts.
    #[command(subcommand)]
    User(commands::user::UserCommand),
    /// Check and report on the stored-value ledger.
    #[command(subcommand)]
    Ledger(commands::ledger::LedgerCommand),
    /// Customer analyses (RFM, K-means, CLV; on a purchases file with --input).
    #[command(subcommand)]
    Analyze(commands::analyze::AnalyzeCommand),
    /// Run the loyalty jobs (points expiry, expiry reminders, tier review) now.
    #[command(subcommand)]
    Loyalty(commands::loyalty::LoyaltyCommand),
    /// Print the effective settings (secrets hidden).
    Config,
    /// Write generated demo files (stores, customers, transactions) for benchmarks.
    Generate(commands::demo::GenerateArgs),
    /// Print the OpenAPI document.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(&cli.global, args).await,
            Command::Demo(args) => commands::demo::run(&cli.global, args).await,
            Command::Migrate => commands::migrate(&cli.global).await,
            Command::Import(args) => commands::import::run(&cli.global, args).await,
            Command::User(command) => commands::user::run(&cli.global, command).await,
            Command::Ledger(command) => commands::ledger::run(&cli.global, command).await,
            Command::Analyze(command) => commands::analyze::run(&cli.global, command).await,
            Command::Loyalty(command) => commands::loyalty::run(&cli.global, command).await,
            Command::Config => commands::print_config(&cli.global),
            Command::Generate(args) => commands::demo::generate(&cli.global, args),
            Command::Openapi => commands::print_openapi(),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.exit_code)
        }
    }
}
