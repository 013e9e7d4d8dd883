//! Each customer's purchase history as seen from several cutoff days at once, built in one
//! pass over purchases in any order (memory per customer and cutoff, not per purchase):
//! what they had bought by the cutoff, in the two quarters before it, and when they bought
//! next. Lifecycle stages, their transitions and the churn model read it.

/// Days in the "recent" and "previous" windows before a cutoff.
pub const QUARTER_DAYS: i32 = 90;
/// Most cutoffs one pass keeps.
pub const CUTOFFS_MAX: usize = 8;

/// One customer as of one cutoff. `purchases == 0`: nothing bought by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    pub first_day: i32,
    pub last_day: i32,
    /// The latest purchase day before the last quarter (`i32::MIN`: none) and the first in
    /// it (`i32::MAX`: none): the gap a returning customer closed.
    pub last_before_quarter: i32,
    pub first_in_quarter: i32,
    pub purchases: u32,
    pub monetary_minor: i64,
    /// Purchases in the 90 days up to the cutoff, and in the 90 days before those.
    pub recent_purchases: u32,
    pub earlier_purchases: u32,
    /// The first purchase day after the cutoff (`i32::MAX`: none yet).
    pub next_day: i32,
}

impl Standing {
    fn empty() -> Self {
        Self {
            last_before_quarter: i32::MIN,
            first_in_quarter: i32::MAX,
            next_day: i32::MAX,
            ..Self::default()
        }
    }

    fn add(&mut self, cutoff: i32, day: i32, amount_minor: i64) {
        if day > cutoff {
            self.next_day = self.next_day.min(day);
            return;
        }
        if self.purchases == 0 {
            self.first_day = day;
            self.last_day = day;
        } else {
            self.first_day = self.first_day.min(day);
            self.last_day = self.last_day.max(day);
        }
        self.purchases += 1;
        self.monetary_minor = self.monetary_minor.saturating_add(amount_minor);
        if day > cutoff - QUARTER_DAYS {
            self.recent_purchases += 1;
            self.first_in_quarter = self.first_in_quarter.min(day);
        } else {
            self.last_before_quarter = self.last_before_quarter.max(day);
            if day > cutoff - 2 * QUARTER_DAYS {
                self.earlier_purchases += 1;
            }
        }
    }

    pub fn has_purchases(&self) -> bool {
        self.purchases > 0
    }
}

/// Standings of every customer at each cutoff.
#[derive(Debug, Clone)]
pub struct HistoryAccumulator {
    cutoffs: Vec<i32>,
    /// Customer-major: customer × cutoffs + cutoff index.
    standings: Vec<Standing>,
}

impl HistoryAccumulator {
    /// Keeps the cutoffs given (at most [`CUTOFFS_MAX`]; more are ignored).
    pub fn new(cutoffs: &[i32]) -> Self {
        Self { cutoffs: cutoffs.iter().copied().take(CUTOFFS_MAX).collect(), standings: Vec::new() }
    }

    pub fn cutoffs(&self) -> &[i32] {
        &self.cutoffs
    }

    pub fn add(&mut self, customer: u32, day: i32, amount_minor: i64) {
        let width = self.cutoffs.len();
        let start = customer as usize * width;
        if start + width > self.standings.len() {
            self.standings.resize(start + width, Standing::empty());
        }
        for (standing, cutoff) in self.standings[start..start + width].iter_mut().zip(&self.cutoffs) {
            standing.add(*cutoff, day, amount_minor);
        }
    }

    /// Customers seen (with a purchase at any date).
    pub fn customers(&self) -> usize {
        self.standings.len() / self.cutoffs.len().max(1)
    }

    /// The standing of customer number `customer` at cutoff number `cutoff` (an empty one
    /// for a customer never seen).
    pub fn standing(&self, customer: usize, cutoff: usize) -> Standing {
        self.standings.get(customer * self.cutoffs.len() + cutoff).copied().unwrap_or_else(Standing::empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_in_any_order_sees_each_cutoff() {
        let mut history = HistoryAccumulator::new(&[200, 100]);
        for day in [150, 10, 95, 250, 60, 99] {
            history.add(0, day, 100);
        }
        let at_200 = history.standing(0, 0);
        assert_eq!((at_200.first_day, at_200.last_day), (10, 150));
        assert_eq!((at_200.last_before_quarter, at_200.first_in_quarter), (99, 150));
        assert_eq!((at_200.purchases, at_200.monetary_minor, at_200.next_day), (5, 500, 250));
        // (110, 200] holds 150; (20, 110] holds 95, 99 and 60.
        assert_eq!((at_200.recent_purchases, at_200.earlier_purchases), (1, 3));
        let at_100 = history.standing(0, 1);
        assert_eq!((at_100.last_day, at_100.purchases, at_100.next_day), (99, 4, 150));
        assert_eq!((at_100.last_before_quarter, at_100.first_in_quarter), (10, 60));
        // (10, 100] holds 95, 60 and 99; (−80, 10] holds 10.
        assert_eq!((at_100.recent_purchases, at_100.earlier_purchases), (3, 1));
        assert!(!history.standing(5, 0).has_purchases(), "a customer never seen");
    }
}
