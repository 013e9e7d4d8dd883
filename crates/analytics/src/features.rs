//! Per-customer figures built in one pass over purchases, in any order: memory grows with
//! customers, not with purchases. Days are whole local days numbered by the caller (days
//! since 1970-01-01 in the business's time zone); this crate never reads a clock.

use crate::rfm::RfmFigures;

/// What one customer's purchases add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerTotals {
    pub first_day: i32,
    pub last_day: i32,
    pub purchases: u32,
    pub monetary_minor: i64,
}

/// Accumulates purchases up to and including `as_of_day`; later ones are counted apart and
/// otherwise ignored (a customer whose purchases all come later has no totals).
#[derive(Debug, Clone)]
pub struct Accumulator {
    as_of_day: i32,
    totals: Vec<Option<CustomerTotals>>,
    after_as_of: u64,
}

impl Accumulator {
    pub fn new(as_of_day: i32) -> Self {
        Self { as_of_day, totals: Vec::new(), after_as_of: 0 }
    }

    /// Adds one purchase of customer number `customer` (dense, from 0).
    pub fn add(&mut self, customer: u32, day: i32, amount_minor: i64) {
        let index = customer as usize;
        if index >= self.totals.len() {
            self.totals.resize(index + 1, None);
        }
        if day > self.as_of_day {
            self.after_as_of += 1;
            return;
        }
        let totals = self.totals[index].get_or_insert(CustomerTotals {
            first_day: day,
            last_day: day,
            purchases: 0,
            monetary_minor: 0,
        });
        totals.first_day = totals.first_day.min(day);
        totals.last_day = totals.last_day.max(day);
        totals.purchases += 1;
        totals.monetary_minor = totals.monetary_minor.saturating_add(amount_minor);
    }

    /// The analysis day.
    pub fn as_of_day(&self) -> i32 {
        self.as_of_day
    }

    /// Purchases dated after the analysis day, left out.
    pub fn after_as_of(&self) -> u64 {
        self.after_as_of
    }

    pub fn totals(&self) -> &[Option<CustomerTotals>] {
        &self.totals
    }

    /// RFM figures per customer number; a customer with no purchase up to the day has
    /// frequency 0.
    pub fn rfm_figures(&self) -> Vec<RfmFigures> {
        self.totals
            .iter()
            .map(|totals| match totals {
                Some(totals) => RfmFigures {
                    recency_days: i64::from(self.as_of_day - totals.last_day),
                    frequency: i64::from(totals.purchases),
                    monetary_minor: totals.monetary_minor,
                },
                None => RfmFigures { recency_days: 0, frequency: 0, monetary_minor: 0 },
            })
            .collect()
    }
}

/// One customer's purchase periods as the BG/NBD and Gamma–Gamma models read them (the
/// definitions of lifetimes' `summary_data_from_transaction_data`): purchases on the same
/// period (day or week) count once; `frequency` is the number of periods with a purchase
/// less one; `recency` the periods from the first to the last; `age` the periods from the
/// first to the end period; `average` the mean of the repeat periods' totals (the first
/// period left out; 0 without repeats), in the amounts' own unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodSummary {
    pub frequency: f64,
    pub recency: f64,
    pub age: f64,
    pub average: f64,
}

/// A purchase for [`period_summaries`]: customer number, period number, amount.
pub type PeriodPurchase = (u32, i32, f64);

/// Summaries per customer number (`None`: no purchase up to `end_period`). Sorts `purchases`
/// in place (customer, then period): memory is that of the purchases given.
pub fn period_summaries(
    purchases: &mut [PeriodPurchase],
    customers: usize,
    end_period: i32,
) -> Vec<Option<PeriodSummary>> {
    purchases.sort_unstable_by_key(|purchase| (purchase.0, purchase.1));
    let mut summaries = vec![None; customers];
    let mut start = 0;
    while start < purchases.len() {
        let customer = purchases[start].0;
        let mut end = start;
        while end < purchases.len() && purchases[end].0 == customer {
            end += 1;
        }
        let rows = purchases[start..end].iter().filter(|purchase| purchase.1 <= end_period);
        let (mut first, mut last, mut periods, mut repeat_total) = (None::<i32>, 0, 0_u32, 0.0);
        let mut current = None::<i32>;
        for (_, period, amount) in rows {
            if current != Some(*period) {
                current = Some(*period);
                periods += 1;
                last = *period;
                first.get_or_insert(*period);
            }
            if first != Some(*period) {
                repeat_total += amount;
            }
        }
        if let (Some(first), Some(slot)) = (first, summaries.get_mut(customer as usize)) {
            let frequency = f64::from(periods - 1);
            *slot = Some(PeriodSummary {
                frequency,
                recency: f64::from(last - first),
                age: f64::from(end_period - first),
                average: if periods > 1 { repeat_total / frequency } else { 0.0 },
            });
        }
        start = end;
    }
    summaries
}

/// The week (Monday to Sunday, pandas' `W-SUN` period) of a day number: 1970-01-01 was a
/// Thursday, so week 0 starts on Monday 1969-12-29.
pub fn week_of_day(day: i32) -> i32 {
    (day + 3).div_euclid(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchases_in_any_order_add_up_and_later_ones_are_left_out() {
        let mut accumulator = Accumulator::new(100);
        accumulator.add(0, 90, 1_000);
        accumulator.add(0, 10, 500);
        accumulator.add(0, 95, 250);
        accumulator.add(2, 101, 9_999); // only after the day
        accumulator.add(1, 100, 10);
        let figures = accumulator.rfm_figures();
        assert_eq!(figures[0], RfmFigures { recency_days: 5, frequency: 3, monetary_minor: 1_750 });
        assert_eq!(figures[1], RfmFigures { recency_days: 0, frequency: 1, monetary_minor: 10 });
        assert_eq!(figures[2].frequency, 0, "purchases only after the cutoff count as none");
        assert_eq!(accumulator.after_as_of(), 1);
        assert_eq!(accumulator.totals()[0].unwrap().first_day, 10);
    }

    #[test]
    fn periods_count_once_and_the_first_is_left_out_of_the_average() {
        // Customer 0: two purchases on day 10 (one period), then days 12 and 12, then 20;
        // customer 1: one day only; customer 2: only after the end.
        let mut purchases = vec![
            (0, 20, 7.0),
            (0, 10, 1.0),
            (1, 15, 3.0),
            (0, 12, 2.0),
            (0, 10, 4.0),
            (0, 12, 6.0),
            (2, 40, 1.0),
        ];
        let summaries = period_summaries(&mut purchases, 3, 30);
        assert_eq!(
            summaries[0],
            Some(PeriodSummary { frequency: 2.0, recency: 10.0, age: 20.0, average: 7.5 })
        );
        assert_eq!(
            summaries[1],
            Some(PeriodSummary { frequency: 0.0, recency: 0.0, age: 15.0, average: 0.0 })
        );
        assert_eq!(summaries[2], None);
    }

    #[test]
    fn weeks_start_on_monday() {
        // 1970-01-04 (day 3) was a Sunday, 1970-01-05 (day 4) a Monday.
        assert_eq!(week_of_day(3), week_of_day(-3));
        assert_eq!(week_of_day(4), week_of_day(3) + 1);
        assert_eq!(week_of_day(-4), week_of_day(-3) - 1);
    }
}
