//! Programme KPIs month by month, from one pass over purchases in any order (memory per
//! customer: a bit per month, not per purchase). Months are calendar months of local days.
//!
//! Definitions, for a month m of the report:
//! - buyers: customers with a purchase in m; new: whose first purchase ever is in m;
//!   returning: the other buyers; repeat rate = returning / buyers.
//! - active at m: a purchase in m or in the two months before (a 3-month window, the usual
//!   membership convention); churned at m: active at m − 1 and not at m (their last purchase
//!   was in m − 3); churn rate = churned / active at m − 1.
//! - revenue: what was paid in m (refunds subtracted, in their own month); average basket =
//!   revenue / purchases.
//! - retention cohorts: customers whose first purchase is in month c of the report, and the
//!   share of them buying in each later month c + k.
//!
//! Purchases earlier than the report's first month minus three only set "first purchase
//! before the report" (so those buyers are returning, never new).

use serde::Serialize;

/// Most months a report covers.
pub const MONTHS_MAX: usize = 60;
/// Months kept before the report's first, for the activity window.
const LEAD_MONTHS: usize = 3;
/// Most stores a report breaks down by.
pub const STORES_MAX: usize = 10_000;

/// (year, month 1–12) of a day number (days since 1970-01-01; Hinnant's `civil_from_days`).
pub fn year_month_of_day(day: i32) -> (i32, u32) {
    let shifted = day + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i32::from(month <= 2);
    (year, month as u32)
}

/// The month number (year · 12 + month − 1) of a day number.
pub fn month_of_day(day: i32) -> i32 {
    let (year, month) = year_month_of_day(day);
    year * 12 + month as i32 - 1
}

/// `2026-11` for a month number.
pub fn month_name(month: i32) -> String {
    format!("{:04}-{:02}", month.div_euclid(12), month.rem_euclid(12) + 1)
}

/// One month of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthKpi {
    pub month: String,
    pub buyers: u64,
    pub new_customers: u64,
    pub returning_buyers: u64,
    pub repeat_rate: f64,
    pub active_customers: u64,
    pub churned_customers: u64,
    pub churn_rate: f64,
    pub purchases: u64,
    pub revenue_minor: i64,
    pub average_basket_minor: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    pub month: String,
    pub customers: u64,
    /// Share of the cohort buying 1, 2, … months after their first month, to the report's end.
    pub retention: Vec<f64>,
}

/// One store's purchases and revenue per month of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreKpi {
    pub store: u32,
    pub purchases: Vec<u64>,
    pub revenue_minor: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiReport {
    pub months: Vec<MonthKpi>,
    pub cohorts: Vec<Cohort>,
    pub stores: Vec<StoreKpi>,
}

/// Per customer: the months bought in and the first purchase's month.
#[derive(Debug, Clone)]
pub struct KpiAccumulator {
    /// Month number of bit 0 (the report's first month minus the lead).
    base_month: i32,
    /// Months in the report.
    months: usize,
    bought: Vec<u64>,
    first_month: Vec<i32>,
    /// Revenue of each customer in the report's last month (by-tier breakdowns read it).
    last_month_revenue_minor: Vec<i64>,
    purchases: Vec<u64>,
    revenue_minor: Vec<i64>,
    stores: Vec<(Vec<u64>, Vec<i64>)>,
}

impl KpiAccumulator {
    /// A report of `months` months (1 to 60) ending with the month of `as_of_day`.
    pub fn new(as_of_day: i32, months: usize) -> Self {
        let months = months.clamp(1, MONTHS_MAX);
        let last = month_of_day(as_of_day);
        Self {
            base_month: last - (months + LEAD_MONTHS) as i32 + 1,
            months,
            bought: Vec::new(),
            first_month: Vec::new(),
            last_month_revenue_minor: Vec::new(),
            purchases: vec![0; months],
            revenue_minor: vec![0; months],
            stores: Vec::new(),
        }
    }

    fn grow(&mut self, customer: usize) {
        if customer >= self.bought.len() {
            self.bought.resize(customer + 1, 0);
            self.first_month.resize(customer + 1, i32::MAX);
            self.last_month_revenue_minor.resize(customer + 1, 0);
        }
    }

    /// Adds a purchase (a refund: a negative amount, which counts only as revenue) of
    /// `customer` on `day` at store number `store`. Days after the report's last month
    /// are ignored; so are stores numbered past [`STORES_MAX`].
    pub fn add(&mut self, customer: u32, day: i32, amount_minor: i64, store: Option<u32>) {
        let customer = customer as usize;
        self.grow(customer);
        let offset = month_of_day(day) - self.base_month;
        let span = (self.months + LEAD_MONTHS) as i32;
        if offset >= span {
            return;
        }
        let report_index = offset - LEAD_MONTHS as i32;
        if report_index >= 0 {
            let index = report_index as usize;
            self.revenue_minor[index] += amount_minor;
            if index + 1 == self.months {
                self.last_month_revenue_minor[customer] += amount_minor;
            }
            if let Some(store) = store.filter(|store| (*store as usize) < STORES_MAX) {
                let store = store as usize;
                if store >= self.stores.len() {
                    self.stores.resize(store + 1, (vec![0; self.months], vec![0; self.months]));
                }
                self.stores[store].1[index] += amount_minor;
                if amount_minor > 0 {
                    self.stores[store].0[index] += 1;
                }
            }
        }
        if amount_minor <= 0 {
            return;
        }
        let month = self.base_month + offset;
        self.first_month[customer] = self.first_month[customer].min(month);
        if offset >= 0 {
            self.bought[customer] |= 1 << offset;
            if report_index >= 0 {
                self.purchases[report_index as usize] += 1;
            }
        }
    }

    /// Customers seen so far.
    pub fn customers(&self) -> usize {
        self.bought.len()
    }

    /// Whether `customer` bought in report month `index`, and was active (bought in it or the
    /// two before).
    pub fn bought_in(&self, customer: usize, index: usize) -> bool {
        self.bought.get(customer).is_some_and(|bits| bits & (1 << (index + LEAD_MONTHS)) != 0)
    }

    pub fn active_in(&self, customer: usize, index: usize) -> bool {
        self.bought.get(customer).is_some_and(|bits| bits & (0b111 << (index + 1)) != 0)
    }

    /// What `customer` paid in the report's last month.
    pub fn last_month_revenue_minor(&self, customer: usize) -> i64 {
        self.last_month_revenue_minor.get(customer).copied().unwrap_or(0)
    }

    pub fn report(&self) -> KpiReport {
        let lead = LEAD_MONTHS as i32;
        let months = (0..self.months)
            .map(|index| {
                let month = self.base_month + lead + index as i32;
                let mut row = MonthKpi {
                    month: month_name(month),
                    buyers: 0,
                    new_customers: 0,
                    returning_buyers: 0,
                    repeat_rate: 0.0,
                    active_customers: 0,
                    churned_customers: 0,
                    churn_rate: 0.0,
                    purchases: self.purchases[index],
                    revenue_minor: self.revenue_minor[index],
                    average_basket_minor: 0.0,
                };
                let mut active_before = 0_u64;
                for (customer, bits) in self.bought.iter().enumerate() {
                    if self.bought_in(customer, index) {
                        row.buyers += 1;
                        if self.first_month[customer] == month {
                            row.new_customers += 1;
                        }
                    }
                    let active_now = self.active_in(customer, index);
                    let was_active = bits & (0b111 << index) != 0;
                    row.active_customers += u64::from(active_now);
                    active_before += u64::from(was_active);
                    row.churned_customers += u64::from(was_active && !active_now);
                }
                row.returning_buyers = row.buyers - row.new_customers;
                let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
                row.repeat_rate = share(row.returning_buyers, row.buyers);
                row.churn_rate = share(row.churned_customers, active_before);
                row.average_basket_minor =
                    if row.purchases == 0 { 0.0 } else { row.revenue_minor as f64 / row.purchases as f64 };
                row
            })
            .collect();
        let cohorts = (0..self.months)
            .map(|index| {
                let month = self.base_month + lead + index as i32;
                let members: Vec<usize> =
                    (0..self.bought.len()).filter(|customer| self.first_month[*customer] == month).collect();
                let retention = (index + 1..self.months)
                    .map(|later| {
                        let kept =
                            members.iter().filter(|customer| self.bought_in(**customer, later)).count();
                        if members.is_empty() { 0.0 } else { kept as f64 / members.len() as f64 }
                    })
                    .collect();
                Cohort { month: month_name(month), customers: members.len() as u64, retention }
            })
            .collect();
        let stores = self
            .stores
            .iter()
            .enumerate()
            .filter(|(_, (purchases, _))| purchases.iter().any(|count| *count > 0))
            .map(|(store, (purchases, revenue))| StoreKpi {
                store: store as u32,
                purchases: purchases.clone(),
                revenue_minor: revenue.clone(),
            })
            .collect();
        KpiReport { months, cohorts, stores }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Day number of a date (tests only: the callers have their own).
    fn day(year: i32, month: u32, day: u32) -> i32 {
        // Count from 1970-01-01 by stepping months; fine for tests.
        let mut total = 0;
        let (mut y, mut m) = (1970, 1);
        while (y, m) < (year, month) {
            let length = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
                _ => 28,
            };
            total += length;
            (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        }
        total + day as i32 - 1
    }

    #[test]
    fn months_of_days_follow_the_calendar() {
        assert_eq!(year_month_of_day(0), (1970, 1));
        assert_eq!(year_month_of_day(day(2024, 2, 29)), (2024, 2));
        assert_eq!(year_month_of_day(day(2024, 3, 1)), (2024, 3));
        assert_eq!(year_month_of_day(day(2026, 12, 31)), (2026, 12));
        assert_eq!(year_month_of_day(-1), (1969, 12));
        assert_eq!(month_name(month_of_day(day(2026, 11, 23))), "2026-11");
    }

    #[test]
    fn buyers_new_returning_active_and_churned_by_month() {
        // Report: 2026-03 … 2026-06 (4 months) as of 2026-06-15.
        let mut kpi = KpiAccumulator::new(day(2026, 6, 15), 4);
        // 0: bought in 2025 (before the report) and in April: returning in April.
        kpi.add(0, day(2025, 6, 1), 1_000, None);
        kpi.add(0, day(2026, 4, 2), 2_000, Some(1));
        // 1: first purchase in March, again in March and in May.
        kpi.add(1, day(2026, 3, 1), 500, Some(0));
        kpi.add(1, day(2026, 3, 20), 700, Some(0));
        kpi.add(1, day(2026, 5, 5), 300, None);
        // 2: only in February 2026 (the lead): active in March and April, churned in May.
        kpi.add(2, day(2026, 2, 10), 100, None);
        // After the report: ignored. A refund in May counts as revenue only.
        kpi.add(1, day(2026, 7, 1), 900, None);
        kpi.add(1, day(2026, 5, 6), -100, Some(0));
        let report = kpi.report();
        let months: Vec<&str> = report.months.iter().map(|row| row.month.as_str()).collect();
        assert_eq!(months, ["2026-03", "2026-04", "2026-05", "2026-06"]);
        let [march, april, may, june] = [0, 1, 2, 3].map(|index| &report.months[index]);
        assert_eq!(
            (march.buyers, march.new_customers, march.purchases, march.revenue_minor),
            (1, 1, 2, 1_200)
        );
        assert_eq!((april.buyers, april.new_customers, april.returning_buyers), (1, 0, 1));
        assert_eq!(april.repeat_rate, 1.0);
        assert_eq!((may.buyers, may.revenue_minor, may.purchases), (1, 200, 1));
        // Active: March {1, 2}; April {0, 1, 2}; May {0, 1} (2's last month, February, left
        // the window); June {0, 1}.
        assert_eq!(
            [march.active_customers, april.active_customers, may.active_customers, june.active_customers],
            [2, 3, 2, 2]
        );
        assert_eq!((may.churned_customers, may.churn_rate), (1, 1.0 / 3.0));
        assert_eq!(june.churned_customers, 0);
        // The March cohort (customer 1) bought again in May only.
        assert_eq!(report.cohorts[0].customers, 1);
        assert_eq!(report.cohorts[0].retention, [0.0, 1.0, 0.0]);
        assert_eq!(report.cohorts[1].customers, 0, "customer 0's first purchase was in 2025");
        // Stores: 0 (March 2 purchases, May a refund) and 1 (April).
        assert_eq!(report.stores.len(), 2);
        assert_eq!(report.stores[0].purchases, [2, 0, 0, 0]);
        assert_eq!(report.stores[0].revenue_minor, [1_200, 0, -100, 0]);
        assert_eq!(report.stores[1].revenue_minor, [0, 2_000, 0, 0]);
        assert_eq!(kpi.last_month_revenue_minor(1), 0);
    }
}
