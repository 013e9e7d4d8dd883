//! `cardcrm user add|reset|list`: staff accounts from the command line (the first admin).

use std::io::Read;

use cardcrm_service::staff::NewStaff;
use clap::{Args, Subcommand};

use super::{CommandResult, Failure, init_logging, load_settings, open, operator};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a staff account. Without --password-stdin a password is generated and printed.
    Add(AddArgs),
    /// Set a new password (generated unless --password-stdin), unlock, end sessions.
    Reset(ResetArgs),
    /// List staff accounts.
    List,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    pub username: String,
    /// admin, manager, clerk, service_agent, marketer or analyst.
    #[arg(long)]
    pub role: String,
    /// Limit the account to one store (its code).
    #[arg(long, value_name = "CODE")]
    pub store: Option<String>,
    #[arg(long)]
    pub display_name: Option<String>,
    /// Read the password from standard input instead of generating one.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub password_stdin: bool,
}

fn read_password() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|error| Failure::other(format!("cannot read the password: {error}")))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

pub async fn run(global: &GlobalArgs, command: UserCommand) -> CommandResult {
    let settings = load_settings(global, None)?;
    init_logging(&settings);
    let services = open(settings).await?;
    let identity = operator();
    match command {
        UserCommand::Add(args) => {
            let store_id = match &args.store {
                None => None,
                Some(code) => {
                    let stores = services.list_stores(&identity).await?;
                    let wanted = code.trim().to_uppercase();
                    Some(
                        stores
                            .iter()
                            .find(|store| store.code == wanted)
                            .map(|store| store.id)
                            .ok_or_else(|| Failure::input(format!("no store has the code {code}")))?,
                    )
                }
            };
            let password = if args.password_stdin { Some(read_password()?) } else { None };
            let created = services
                .create_staff(
                    identity.grant()?,
                    NewStaff {
                        username: args.username,
                        display_name: args.display_name,
                        role: args.role,
                        store_id,
                        password,
                    },
                )
                .await?;
            println!(
                "created {} ({}) with id {}",
                created.staff.username, created.staff.role, created.staff.id
            );
            if let Some(password) = created.generated_password {
                println!("password: {password}");
            }
        }
        UserCommand::Reset(args) => {
            let staff = services
                .find_staff_by_username(&args.username)
                .await?
                .ok_or_else(|| Failure::input(format!("no staff account is called {}", args.username)))?;
            let password = if args.password_stdin { Some(read_password()?) } else { None };
            let reset = services.reset_staff_password(identity.grant()?, staff.id, password).await?;
            println!(
                "reset the password of {}; the account is unlocked and its sessions ended",
                reset.staff.username
            );
            if let Some(password) = reset.generated_password {
                println!("password: {password}");
            }
        }
        UserCommand::List => {
            let mut cursor = None;
            println!(
                "{:>6}  {:<24} {:<14} {:<8} {:<9} last login",
                "id", "username", "role", "store", "status"
            );
            loop {
                let page = services.list_staff(identity.grant()?, cursor, 200).await?;
                for staff in &page.items {
                    println!(
                        "{:>6}  {:<24} {:<14} {:<8} {:<9} {}",
                        staff.id,
                        staff.username,
                        staff.role,
                        staff.store_id.map_or_else(|| "all".to_owned(), |id| id.to_string()),
                        staff.status,
                        staff.last_login_at.clone().unwrap_or_else(|| "never".into())
                    );
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
    }
    Ok(())
}
