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

    /// A refund of `amount_minor` (negative) on `day`: lowers the customer's monetary total,
    /// never below zero, and is not a purchase. A refund after the analysis day, or of a
    /// customer with no purchase by then, changes nothing.
    pub fn refund(&mut self, customer: u32, day: i32, amount_minor: i64) {
        if day > self.as_of_day {
            return;
        }
        if let Some(Some(totals)) = self.totals.get_mut(customer as usize) {
            totals.monetary_minor = totals.monetary_minor.saturating_add(amount_minor).max(0);
        }
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
/// first to the end period; `average_minor` the mean of the repeat periods' totals (the
/// first period left out; 0 without repeats), in minor units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodSummary {
    pub frequency: f64,
    pub recency: f64,
    pub age: f64,
    pub average_minor: f64,
}

/// The models' time unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodUnit {
    Day,
    Week,
}

impl PeriodUnit {
    /// The period number of a day number.
    pub fn period_of_day(self, day: i32) -> i32 {
        match self {
            Self::Day => day,
            Self::Week => week_of_day(day),
        }
    }

    /// Units in a month, as lifetimes counts them (30 days, 4.345 weeks).
    pub fn per_month(self) -> f64 {
        match self {
            Self::Day => 30.0,
            Self::Week => 4.345,
        }
    }
}

/// A purchase for [`period_summaries`]: customer number, period number, amount in minor units.
pub type PeriodPurchase = (u32, i32, i64);

#[derive(Debug, Clone, Copy, Default)]
struct PeriodState {
    first: i32,
    last: i32,
    /// 0: no purchase yet.
    periods: u32,
    last_total_minor: i64,
    repeat_total_minor: i64,
}

/// Period summaries built while purchases stream past, when each customer's purchases come
/// in time order (as exports are written): memory per customer, not per purchase. A
/// purchase earlier than its customer's last period makes the result unusable
/// ([`in_order`](Self::in_order) turns false): the caller then sorts ([`period_summaries`]).
#[derive(Debug, Clone)]
pub struct PeriodAccumulator {
    end_period: i32,
    states: Vec<PeriodState>,
    in_order: bool,
}

impl PeriodAccumulator {
    pub fn new(end_period: i32) -> Self {
        Self { end_period, states: Vec::new(), in_order: true }
    }

    /// Adds a purchase of customer number `customer` in `period`; purchases after the end
    /// period are left out.
    pub fn add(&mut self, customer: u32, period: i32, amount_minor: i64) {
        let index = customer as usize;
        if index >= self.states.len() {
            self.states.resize(index + 1, PeriodState::default());
        }
        if period > self.end_period {
            return;
        }
        let state = &mut self.states[index];
        if state.periods == 0 {
            *state = PeriodState {
                first: period,
                last: period,
                periods: 1,
                last_total_minor: amount_minor,
                repeat_total_minor: 0,
            };
        } else if period == state.last {
            state.last_total_minor = state.last_total_minor.saturating_add(amount_minor);
        } else if period > state.last {
            if state.periods > 1 {
                state.repeat_total_minor = state.repeat_total_minor.saturating_add(state.last_total_minor);
            }
            state.periods += 1;
            state.last = period;
            state.last_total_minor = amount_minor;
        } else {
            self.in_order = false;
        }
    }

    /// Whether every customer's purchases came in time order (the summaries are right).
    pub fn in_order(&self) -> bool {
        self.in_order
    }

    /// Summaries per customer number, for `customers` customers (`None`: no purchase up to
    /// the end period).
    pub fn summaries(&self, customers: usize) -> Vec<Option<PeriodSummary>> {
        debug_assert!(self.in_order, "summaries of purchases out of order");
        let mut summaries: Vec<Option<PeriodSummary>> = self
            .states
            .iter()
            .map(|state| {
                (state.periods > 0).then(|| {
                    let frequency = f64::from(state.periods - 1);
                    let repeat_minor = if state.periods > 1 {
                        state.repeat_total_minor.saturating_add(state.last_total_minor)
                    } else {
                        0
                    };
                    PeriodSummary {
                        frequency,
                        recency: f64::from(state.last - state.first),
                        age: f64::from(self.end_period - state.first),
                        average_minor: if state.periods > 1 { repeat_minor as f64 / frequency } else { 0.0 },
                    }
                })
            })
            .collect();
        summaries.resize(customers, None);
        summaries
    }
}

/// Summaries per customer number (`None`: no purchase up to `end_period`) of purchases in
/// any order: sorts `purchases` in place (customer, then period) and streams them.
pub fn period_summaries(
    purchases: &mut [PeriodPurchase],
    customers: usize,
    end_period: i32,
) -> Vec<Option<PeriodSummary>> {
    purchases.sort_unstable_by_key(|purchase| (purchase.0, purchase.1));
    let mut accumulator = PeriodAccumulator::new(end_period);
    for (customer, period, amount_minor) in purchases.iter() {
        accumulator.add(*customer, *period, *amount_minor);
    }
    accumulator.summaries(customers)
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
    fn refunds_lower_what_was_paid_but_are_not_visits() {
        let mut accumulator = Accumulator::new(100);
        accumulator.add(0, 90, 1_000);
        accumulator.refund(0, 95, -300);
        accumulator.refund(0, 101, -500); // after the day: left out
        accumulator.refund(1, 50, -100); // nothing bought: nothing to lower
        accumulator.add(2, 80, 200);
        accumulator.refund(2, 85, -900); // more than was paid: down to zero, not below
        let figures = accumulator.rfm_figures();
        assert_eq!(figures[0], RfmFigures { recency_days: 10, frequency: 1, monetary_minor: 700 });
        assert_eq!(figures[1].frequency, 0);
        assert_eq!(figures[2], RfmFigures { recency_days: 20, frequency: 1, monetary_minor: 0 });
    }

    #[test]
    fn periods_count_once_and_the_first_is_left_out_of_the_average() {
        // Customer 0: two purchases on day 10 (one period), then days 12 and 12, then 20;
        // customer 1: one day only; customer 2: only after the end.
        let mut purchases = vec![
            (0, 20, 700),
            (0, 10, 100),
            (1, 15, 300),
            (0, 12, 200),
            (0, 10, 400),
            (0, 12, 600),
            (2, 40, 100),
        ];
        let summaries = period_summaries(&mut purchases, 4, 30);
        assert_eq!(
            summaries[0],
            Some(PeriodSummary { frequency: 2.0, recency: 10.0, age: 20.0, average_minor: 750.0 })
        );
        assert_eq!(
            summaries[1],
            Some(PeriodSummary { frequency: 0.0, recency: 0.0, age: 15.0, average_minor: 0.0 })
        );
        assert_eq!(summaries[2], None);
        assert_eq!(summaries[3], None, "a customer number past the last purchase has no summary");
        // The same purchases streamed in time order give the same summaries.
        let mut streamed = PeriodAccumulator::new(30);
        for (customer, period, amount) in
            [(0, 10, 100), (0, 10, 400), (0, 12, 200), (1, 15, 300), (0, 12, 600), (0, 20, 700), (2, 40, 100)]
        {
            streamed.add(customer, period, amount);
        }
        assert!(streamed.in_order());
        assert_eq!(streamed.summaries(4), summaries);
        // One purchase before its customer's last period: the stream says so.
        streamed.add(0, 11, 1);
        assert!(!streamed.in_order());
    }

    #[test]
    fn weeks_start_on_monday() {
        // 1970-01-04 (day 3) was a Sunday, 1970-01-05 (day 4) a Monday.
        assert_eq!(week_of_day(3), week_of_day(-3));
        assert_eq!(week_of_day(4), week_of_day(3) + 1);
        assert_eq!(week_of_day(-4), week_of_day(-3) - 1);
    }
}
