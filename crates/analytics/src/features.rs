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
}
