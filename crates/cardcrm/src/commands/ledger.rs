//! `cardcrm ledger verify|reconcile`: whole-database checks of the stored-value ledger.

use clap::{Args, Subcommand};

use super::{CommandResult, Failure, init_logging, load_settings, open, operator};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Prove that every transfer balances, every account's balance is the sum of its
    /// postings, no prepaid balance is negative, and the liability equals the sum of
    /// customer balances. Exits 3 with the offending ids when anything is off.
    Verify(VerifyArgs),
    /// Print the daily reconciliation report of one business day as JSON.
    Reconcile(ReconcileArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The day, YYYY-MM-DD, in the business's time zone.
    #[arg(long)]
    pub date: String,
}

/// Exit code of a ledger that does not verify.
const EXIT_LEDGER_BROKEN: u8 = 3;

fn ids(list: &[i64]) -> String {
    list.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

pub async fn run(global: &GlobalArgs, command: LedgerCommand) -> CommandResult {
    let settings = load_settings(global, None)?;
    init_logging(&settings);
    let services = open(settings).await?;
    let identity = operator();
    let access = identity.grant().map_err(Failure::from)?;
    match command {
        LedgerCommand::Verify(args) => {
            let found = services.verify_ledger(access).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&found)
                        .map_err(|error| Failure::other(error.to_string()))?
                );
            } else {
                println!(
                    "transfers {} · accounts {} · liability {} (from account rows) / {} (from transfers)",
                    found.transfers,
                    found.accounts,
                    found.liability_posted_minor,
                    found.liability_from_transfers_minor
                );
                for (what, list) in [
                    ("transfers that do not balance or mix assets", &found.bad_transfers),
                    ("accounts whose balance differs from their postings", &found.drifted_accounts),
                    ("prepaid accounts below zero", &found.negative_accounts),
                    ("operations refunded beyond what they moved", &found.over_reversed_operations),
                    ("reversing transfers without a matching original", &found.stray_reversals),
                    ("points accounts that differ from their lots", &found.points_lot_mismatches),
                ] {
                    if !list.is_empty() {
                        println!("{what}: {}", ids(list));
                    }
                }
                if found.liability_posted_minor != found.liability_from_transfers_minor {
                    println!("liability from account rows and from transfers differ");
                }
            }
            if found.ok {
                if !args.json {
                    println!("ledger verified: OK");
                }
                Ok(())
            } else {
                Err(Failure {
                    message: "the ledger does not verify; see the ids above".into(),
                    exit_code: EXIT_LEDGER_BROKEN,
                })
            }
        }
        LedgerCommand::Reconcile(args) => {
            let report = services.reconciliation(access, &args.date).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|error| Failure::other(error.to_string()))?
            );
            if report.balanced {
                Ok(())
            } else {
                Err(Failure { message: "the day does not reconcile".into(), exit_code: EXIT_LEDGER_BROKEN })
            }
        }
    }
}
