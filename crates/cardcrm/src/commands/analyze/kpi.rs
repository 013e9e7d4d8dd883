//! `cardcrm analyze kpi`: programme KPIs month by month, on a purchases file or on the
//! database (which adds the stored-value liability, points, tiers and the latest CLV).

use std::io::Write;

use cardcrm_analytics::kpi::{Cohort, MonthKpi};
use cardcrm_service::{analysis::Keep, kpi::KpiView};
use clap::Args;

use super::{FileArgs, Format, read_file, write_csv};
use crate::{
    GlobalArgs,
    commands::{CommandResult, Failure, load_settings, open, operator},
};

#[derive(Debug, Args)]
pub struct KpiArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Months up to and including the analysis day's month (1 to 60).
    #[arg(long, default_value_t = 12)]
    pub months: usize,
}

fn io(error: std::io::Error) -> Failure {
    Failure::other(format!("writing the result: {error}"))
}

pub async fn run(global: &GlobalArgs, args: &KpiArgs) -> CommandResult {
    if !(1..=cardcrm_analytics::kpi::MONTHS_MAX).contains(&args.months) {
        return Err(Failure::input(format!(
            "--months must be between 1 and {}",
            cardcrm_analytics::kpi::MONTHS_MAX
        )));
    }
    let settings = load_settings(global, None)?;
    let view = match &args.file.input {
        Some(_) => {
            let (file, currency) = read_file(&settings, &args.file, Keep::Kpi(args.months))?;
            let report = file.kpi.as_ref().ok_or_else(|| Failure::other("the reader kept no KPIs"))?.report();
            KpiView {
                as_of: args.file.as_of.clone(),
                currency: currency.as_str().to_owned(),
                months: report.months,
                stored_value_liability_minor: Vec::new(),
                cohorts: report.cohorts,
                stores: report
                    .stores
                    .into_iter()
                    .map(|store| cardcrm_service::kpi::StoreMonths {
                        store: file.store_names.get(store.store as usize).cloned().unwrap_or_default(),
                        purchases: store.purchases,
                        revenue_minor: store.revenue_minor,
                    })
                    .collect(),
                tiers: Vec::new(),
                points_outstanding: 0,
                members_with_points: 0,
                latest_clv: None,
            }
        }
        None => {
            let services = open(settings).await?;
            let identity = operator();
            services
                .kpi_report(
                    identity.grant().map_err(Failure::from)?,
                    Some(args.file.as_of.clone()),
                    Some(args.months),
                )
                .await?
        }
    };
    print(&view, args.file.format, args.file.input.is_none())
}

fn print(view: &KpiView, format: Format, database: bool) -> CommandResult {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Format::Json => {
            serde_json::to_writer(&mut out, view).map_err(|error| Failure::other(error.to_string()))?;
            writeln!(out).map_err(io)?;
        }
        Format::Csv => {
            write_csv(
                &mut out,
                [
                    "month",
                    "buyers",
                    "new_customers",
                    "returning_buyers",
                    "repeat_rate",
                    "active_customers",
                    "churned_customers",
                    "churn_rate",
                    "purchases",
                    "revenue_minor",
                    "average_basket_minor",
                    "stored_value_liability_minor",
                ],
                view.months.iter().enumerate().map(|(index, row)| {
                    [
                        row.month.clone(),
                        row.buyers.to_string(),
                        row.new_customers.to_string(),
                        row.returning_buyers.to_string(),
                        format!("{:.4}", row.repeat_rate),
                        row.active_customers.to_string(),
                        row.churned_customers.to_string(),
                        format!("{:.4}", row.churn_rate),
                        row.purchases.to_string(),
                        row.revenue_minor.to_string(),
                        format!("{:.1}", row.average_basket_minor),
                        view.stored_value_liability_minor.get(index).map(i64::to_string).unwrap_or_default(),
                    ]
                }),
            )?;
        }
        Format::Table => {
            writeln!(
                out,
                "KPIs by month up to {} (amounts in {}; active: a purchase in the month or the two before)",
                view.as_of, view.currency
            )
            .map_err(io)?;
            writeln!(
                out,
                "{:<8} {:>9} {:>8} {:>7} {:>9} {:>8} {:>7} {:>10} {:>14} {:>9}{}",
                "month",
                "buyers",
                "new",
                "repeat",
                "active",
                "churned",
                "churn",
                "purchases",
                "revenue",
                "basket",
                if database { "  stored value owed" } else { "" }
            )
            .map_err(io)?;
            for (index, row) in view.months.iter().enumerate() {
                let MonthKpi {
                    month,
                    buyers,
                    new_customers,
                    repeat_rate,
                    active_customers,
                    churned_customers,
                    churn_rate,
                    purchases,
                    revenue_minor,
                    average_basket_minor,
                    ..
                } = row;
                write!(
                    out,
                    "{month:<8} {buyers:>9} {new_customers:>8} {:>6.1}% {active_customers:>9} {churned_customers:>8} {:>6.1}% {purchases:>10} {:>14.2} {:>9.2}",
                    repeat_rate * 100.0,
                    churn_rate * 100.0,
                    *revenue_minor as f64 / 100.0,
                    average_basket_minor / 100.0
                )
                .map_err(io)?;
                if let Some(owed) = view.stored_value_liability_minor.get(index) {
                    write!(out, "  {:>17.2}", *owed as f64 / 100.0).map_err(io)?;
                }
                writeln!(out).map_err(io)?;
            }
            writeln!(out, "retention by first-purchase month (share buying 1, 2, 3 … months later):")
                .map_err(io)?;
            for Cohort { month, customers, retention } in
                view.cohorts.iter().filter(|cohort| cohort.customers > 0)
            {
                let shares: Vec<String> =
                    retention.iter().take(6).map(|share| format!("{:>5.1}%", share * 100.0)).collect();
                writeln!(out, "  {month} {customers:>8}  {}", shares.join(" ")).map_err(io)?;
            }
            if database {
                for tier in &view.tiers {
                    writeln!(
                        out,
                        "tier {:<10} members {:>8} · active {:>8} · bought last month {:>8} · revenue {:>12.2}",
                        tier.tier,
                        tier.members,
                        tier.active,
                        tier.buyers_last_month,
                        tier.revenue_last_month_minor as f64 / 100.0
                    )
                    .map_err(io)?;
                }
                writeln!(
                    out,
                    "points outstanding {} (held by {} members)",
                    view.points_outstanding, view.members_with_points
                )
                .map_err(io)?;
                match &view.latest_clv {
                    Some(clv) => writeln!(
                        out,
                        "average CLV {:.2} (run {}, as of {})",
                        clv.clv_mean, clv.run_id, clv.as_of
                    ),
                    None => writeln!(out, "average CLV: no clv run yet (cardcrm analyze clv --as-of DATE)"),
                }
                .map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)
}
