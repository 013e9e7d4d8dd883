//! The subcommands, and what they share: loading settings, opening the services, logging,
//! and turning errors into messages and exit codes.

pub mod analyze;
pub mod demo;
pub mod import;
pub mod ledger;
pub mod loyalty;
pub mod serve;
pub mod user;

use std::sync::Arc;

use cardcrm_service::{
    ServiceError, Services,
    clock::SystemClock,
    config::{Overrides, Settings},
};

use crate::GlobalArgs;

/// A command's failure: what to print and the exit code. 2 means the input was wrong
/// (invalid rows, unreadable file, bad settings); 1 anything else.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub exit_code: u8,
}

impl Failure {
    pub fn input(message: impl Into<String>) -> Self {
        Self { message: message.into(), exit_code: 2 }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self { message: message.into(), exit_code: 1 }
    }
}

impl From<ServiceError> for Failure {
    fn from(error: ServiceError) -> Self {
        let exit_code = match &error {
            ServiceError::Invalid(_)
            | ServiceError::BadFile { .. }
            | ServiceError::ImportRejected { .. }
            | ServiceError::Config(_)
            | ServiceError::Conflict { .. }
            | ServiceError::NotFound { .. }
            | ServiceError::TooLarge { .. } => 2,
            _ => 1,
        };
        Self { message: error.to_string(), exit_code }
    }
}

pub type CommandResult = Result<(), Failure>;

pub fn overrides(global: &GlobalArgs, listen: Option<String>) -> Overrides {
    Overrides {
        config_file: global.config.clone(),
        data_dir: global.data_dir.clone(),
        database_url: global.database_url.clone(),
        listen,
    }
}

pub fn load_settings(global: &GlobalArgs, listen: Option<String>) -> Result<Settings, Failure> {
    Settings::load(&overrides(global, listen)).map_err(Failure::from)
}

/// Logs to standard error at the configured level (`RUST_LOG` wins when set).
pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

pub async fn open(settings: Settings) -> Result<Services, Failure> {
    Services::open(settings, Arc::new(SystemClock), true).await.map_err(Failure::from)
}

/// Who the command line acts as in the audit log.
pub fn operator() -> cardcrm_service::Identity {
    let user =
        std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    cardcrm_service::Identity::system(&format!("cli({user})"))
}

pub async fn migrate(global: &GlobalArgs) -> CommandResult {
    let settings = load_settings(global, None)?;
    init_logging(&settings);
    let url = cardcrm_store::redact_url(&settings.database_url());
    let services = open(settings).await?;
    println!("database {url} is at schema version {}", cardcrm_store::migrate::latest_version());
    drop(services);
    Ok(())
}

pub fn print_config(global: &GlobalArgs) -> CommandResult {
    let settings = load_settings(global, None)?;
    let text = serde_json::to_string_pretty(&settings.redacted())
        .map_err(|error| Failure::other(error.to_string()))?;
    println!("{text}");
    Ok(())
}

pub fn print_openapi() -> CommandResult {
    println!("{}", cardcrm_web::openapi_json());
    Ok(())
}
