//! `cardcrm loyalty run`: the loyalty jobs (expiry, reminders, tier review) from the command
//! line, for cron and for benchmarks; `serve` also runs them every hour.

use clap::{Args, Subcommand, ValueEnum};

use super::{CommandResult, Failure, init_logging, load_settings, open, operator};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum LoyaltyCommand {
    /// Run loyalty jobs now and print what each did.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Job {
    /// Move points past their expiry to breakage.
    Expire,
    /// Raise `points_expiring` events within the reminder window.
    Remind,
    /// Review every member's tier (renewal, grace, downgrade, upgrade, ends of overrides).
    Tiers,
    /// expire, then remind, then tiers.
    All,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which job to run.
    #[arg(value_enum)]
    pub job: Job,
    /// Print the reports as JSON lines.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, command: LoyaltyCommand) -> CommandResult {
    let settings = load_settings(global, None)?;
    init_logging(&settings);
    let services = open(settings).await?;
    let identity = operator();
    match command {
        LoyaltyCommand::Run(args) => {
            let jobs: &[&str] = match args.job {
                Job::Expire => &["expire"],
                Job::Remind => &["remind"],
                Job::Tiers => &["tiers"],
                Job::All => &["expire", "remind", "tiers"],
            };
            for job in jobs {
                let access = identity.grant().map_err(Failure::from)?;
                let report = services.run_loyalty_job(access, job).await?;
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string(&report).map_err(|error| Failure::other(error.to_string()))?
                    );
                } else {
                    println!(
                        "{:<7} members {:>9} · points {:>12} · changed {:>9} · {} ms",
                        report.job, report.members, report.points, report.changed, report.duration_ms
                    );
                }
            }
            Ok(())
        }
    }
}
