//! Programme KPIs over time 经营指标: month by month, buyers, new and returning customers,
//! repeat rate, active customers, churn, revenue and average basket
//! (`cardcrm_analytics::kpi` defines each), retention by first-purchase cohort, revenue per
//! store, and per tier for the last month; the stored-value liability at each month's end,
//! the points outstanding now, and the average CLV of the latest `clv` run.

use cardcrm_analytics::kpi::{Cohort, KpiReport, MonthKpi};
use cardcrm_store::repo::{analysis as repo, ledger as ledger_repo, loyalty as loyalty_repo};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::{
    Access, Services,
    analysis::Keep,
    error::{ServiceError, ServiceResult},
    perm,
};

/// Months a report covers unless asked otherwise.
pub const MONTHS_DEFAULT: usize = 12;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreMonths {
    /// The store's code (none: purchases without a store).
    pub store: String,
    pub purchases: Vec<u64>,
    pub revenue_minor: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierKpi {
    pub tier: String,
    pub members: u64,
    /// Members active in the report's last month (a purchase in it or the two before).
    pub active: u64,
    pub buyers_last_month: u64,
    pub revenue_last_month_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LatestClv {
    pub run_id: i64,
    pub as_of: String,
    pub clv_mean: f64,
}

/// The KPI report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KpiView {
    pub as_of: String,
    pub currency: String,
    #[schema(value_type = Vec<Object>)]
    pub months: Vec<MonthKpi>,
    /// Stored value customers hold at the end of each month of `months` (to the analysis
    /// day's end for its month).
    pub stored_value_liability_minor: Vec<i64>,
    #[schema(value_type = Vec<Object>)]
    pub cohorts: Vec<Cohort>,
    pub stores: Vec<StoreMonths>,
    pub tiers: Vec<TierKpi>,
    /// Points outstanding now (spendable and pending) and the members holding them.
    pub points_outstanding: i64,
    pub members_with_points: i64,
    /// From the newest `clv` run up to the analysis day, if there is one.
    pub latest_clv: Option<LatestClv>,
}

impl Services {
    /// KPIs for the `months` months (1 to 60) up to the month of `as_of` (default today).
    pub async fn kpi_report(
        &self,
        _access: Access<'_, perm::AnalysisRead>,
        as_of: Option<String>,
        months: Option<usize>,
    ) -> ServiceResult<KpiView> {
        let months = months.unwrap_or(MONTHS_DEFAULT);
        if !(1..=cardcrm_analytics::kpi::MONTHS_MAX).contains(&months) {
            return Err(ServiceError::invalid(
                "months",
                "value.out_of_range",
                format!("between 1 and {}", cardcrm_analytics::kpi::MONTHS_MAX),
            ));
        }
        let as_of = match as_of.as_deref() {
            Some(raw) => cardcrm_domain::date::parse_date(raw).map_err(|error| {
                ServiceError::invalid("as_of", error.code, format!("as_of: {}", error.message))
            })?,
            None => self.today(),
        };
        if as_of > self.today() {
            return Err(ServiceError::invalid(
                "as_of",
                "as_of.future",
                "the analysis day is today or earlier",
            ));
        }
        let (file, ids) = self.read_purchases_for_analysis(as_of, Keep::Kpi(months)).await?;
        let accumulator =
            file.kpi.as_ref().ok_or_else(|| ServiceError::Config("the reader kept no KPIs".into()))?;
        let KpiReport { months: rows, cohorts, stores } = accumulator.report();
        let stores = stores
            .into_iter()
            .map(|store| StoreMonths {
                store: file.store_names.get(store.store as usize).cloned().unwrap_or_default(),
                purchases: store.purchases,
                revenue_minor: store.revenue_minor,
            })
            .collect();
        // Month ends in the business's time zone: the first day of each next month, and the
        // end of the analysis day for its own month.
        let zone = self.default_zone().clone();
        let instant = |date: Date| -> ServiceResult<i64> {
            date.to_zoned(zone.clone())
                .map(|zoned| zoned.timestamp().as_millisecond())
                .map_err(|error| ServiceError::invalid("as_of", "as_of.invalid", error.to_string()))
        };
        let mut ends = Vec::with_capacity(rows.len());
        for row in &rows {
            let (year, month) = row.month.split_once('-').unwrap_or_default();
            let first = Date::new(year.parse().unwrap_or(1970), month.parse().unwrap_or(1), 1)
                .map_err(|error| ServiceError::Config(error.to_string()))?;
            let next =
                first.last_of_month().tomorrow().map_err(|error| ServiceError::Config(error.to_string()))?;
            let end = if next > as_of {
                as_of.tomorrow().map_err(|error| ServiceError::Config(error.to_string()))?
            } else {
                next
            };
            ends.push(instant(end)?);
        }
        let last = rows.len().saturating_sub(1);
        let now_ms = self.now_ms();
        let as_of_text = as_of.to_string();
        let tier_numbers: Vec<(usize, i64)> =
            ids.iter().enumerate().map(|(number, id)| (number, *id)).collect();
        let (liability, tiers, points, latest) = self
            .database()
            .read_consistent(move |conn| {
                let mut liability = Vec::with_capacity(ends.len());
                for end in &ends {
                    liability.push(
                        ledger_repo::liability_at(conn, *end)?
                            .iter()
                            .map(|(_, _, amount)| *amount)
                            .sum::<i64>(),
                    );
                }
                let tiers = repo::member_tiers(conn, now_ms)?;
                let (spendable, pending, _, holders) = loyalty_repo::points_outstanding(conn, now_ms, 0)?;
                let latest = repo::latest_run(conn, "clv", &as_of_text)?;
                Ok::<_, ServiceError>((liability, tiers, (spendable + pending, holders), latest))
            })
            .await?;
        // Per tier: members, and of them who was active or bought in the last month.
        let numbers: std::collections::HashMap<i64, usize> =
            tier_numbers.iter().map(|(number, id)| (*id, *number)).collect();
        let mut by_tier: std::collections::BTreeMap<String, TierKpi> = std::collections::BTreeMap::new();
        for (customer_id, tier) in tiers {
            let entry = by_tier.entry(tier.clone()).or_insert_with(|| TierKpi {
                tier,
                members: 0,
                active: 0,
                buyers_last_month: 0,
                revenue_last_month_minor: 0,
            });
            entry.members += 1;
            if let Some(number) = numbers.get(&customer_id) {
                entry.active += u64::from(accumulator.active_in(*number, last));
                entry.buyers_last_month += u64::from(accumulator.bought_in(*number, last));
                entry.revenue_last_month_minor += accumulator.last_month_revenue_minor(*number);
            }
        }
        let latest_clv = latest.map(|run| {
            let summary: serde_json::Value = serde_json::from_str(&run.summary_json).unwrap_or_default();
            LatestClv {
                run_id: run.id,
                as_of: run.as_of,
                clv_mean: summary["clv_mean"].as_f64().unwrap_or(0.0),
            }
        });
        Ok(KpiView {
            as_of: as_of.to_string(),
            currency: self.currency().as_str().to_owned(),
            months: rows,
            stored_value_liability_minor: liability,
            cohorts,
            stores,
            tiers: by_tier.into_values().collect(),
            points_outstanding: points.0,
            members_with_points: points.1,
            latest_clv,
        })
    }
}
