//! `cardcrm serve`: the HTTP API until SIGINT or SIGTERM.

use cardcrm_service::Services;
use clap::Args;

use super::{CommandResult, Failure, init_logging, load_settings, open};
use crate::GlobalArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> CommandResult {
    let settings = load_settings(global, args.listen)?;
    init_logging(&settings);
    let services = open(settings).await?;
    serve(services, None).await
}

/// Binds, prints where it listens (and `banner`), and serves until a shutdown signal.
pub async fn serve(services: Services, banner: Option<String>) -> CommandResult {
    let address = services.settings().listen_address()?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| Failure::other(format!("cannot listen on {address}: {error}")))?;
    let bound = listener.local_addr().map_err(|error| Failure::other(error.to_string()))?;
    tracing::info!(%bound, database = services.database().backend().as_str(), "serving");
    if let Some(banner) = banner {
        println!("{banner}");
    }
    println!("cardcrm is listening on http://{bound} (API under /api/v1, document at /api/v1/openapi.json)");
    spawn_housekeeping(services.clone());
    let app = cardcrm_web::app(services);
    cardcrm_web::serve(listener, app, shutdown_signal())
        .await
        .map_err(|error| Failure::other(format!("the server stopped: {error}")))
}

/// Hourly upkeep while serving: idempotency keys past their retention are forgotten; points
/// past their expiry go to breakage, reminders are raised for points expiring soon, and
/// tiers are reviewed.
fn spawn_housekeeping(services: Services) {
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3_600));
        loop {
            every_hour.tick().await;
            match services.purge_idempotency_keys().await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "forgot idempotency keys past their retention"),
                Err(error) => tracing::warn!(%error, "purging idempotency keys failed"),
            }
            for job in [
                services.expire_points().await,
                services.remind_expiring_points().await,
                services.recompute_tiers().await,
            ] {
                match job {
                    Ok(report) => tracing::info!(
                        job = report.job,
                        members = report.members,
                        points = report.points,
                        changed = report.changed,
                        "loyalty job"
                    ),
                    Err(error) => tracing::warn!(%error, "a loyalty job failed"),
                }
            }
        }
    });
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
