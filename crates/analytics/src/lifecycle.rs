//! Lifecycle stages 客户生命周期 by documented rules on recency and trend, and the
//! transitions between two dates. The rules, first match wins (days counted to the
//! analysis day; quarters are the 90 days up to it and the 90 before those):
//!
//! 1. no purchase by the day → none (not a stage: left out);
//! 2. `lost` 流失: the last purchase more than `lost_days` (365) ago;
//! 3. `dormant` 沉睡: the last purchase more than `dormant_days` (180) ago;
//! 4. `new` 新客: the first purchase within the last quarter;
//! 5. `won_back` 回流: bought in the last quarter after a gap of more than `dormant_days`
//!    (from the last purchase before the quarter to the first in it);
//! 6. `declining` 衰退: bought in the previous quarter, and in the last one at most half as often;
//! 7. `growing` 成长: bought in the last quarter at least 1.5 times as often as in the previous
//!    one (or only in the last one, after an earlier purchase);
//! 8. `mature` 成熟: everyone else still buying.

use serde::Serialize;

use crate::history::{QUARTER_DAYS, Standing};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    New,
    Growing,
    Mature,
    Declining,
    WonBack,
    Dormant,
    Lost,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::New,
        Stage::Growing,
        Stage::Mature,
        Stage::Declining,
        Stage::WonBack,
        Stage::Dormant,
        Stage::Lost,
    ];

    pub fn name_zh(self) -> &'static str {
        match self {
            Self::New => "新客",
            Self::Growing => "成长",
            Self::Mature => "成熟",
            Self::Declining => "衰退",
            Self::WonBack => "回流",
            Self::Dormant => "沉睡",
            Self::Lost => "流失",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|stage| *stage == self).unwrap_or(0)
    }
}

/// The thresholds of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleRules {
    pub dormant_days: i32,
    pub lost_days: i32,
}

impl Default for LifecycleRules {
    fn default() -> Self {
        Self { dormant_days: 180, lost_days: 365 }
    }
}

/// The stage of a customer standing at `cutoff` (`None`: nothing bought by then).
pub fn stage(standing: &Standing, cutoff: i32, rules: &LifecycleRules) -> Option<Stage> {
    if !standing.has_purchases() {
        return None;
    }
    let recency = cutoff - standing.last_day;
    if recency > rules.lost_days {
        return Some(Stage::Lost);
    }
    if recency > rules.dormant_days {
        return Some(Stage::Dormant);
    }
    if cutoff - standing.first_day < QUARTER_DAYS {
        return Some(Stage::New);
    }
    let (recent, earlier) = (f64::from(standing.recent_purchases), f64::from(standing.earlier_purchases));
    if recent > 0.0
        && standing.last_before_quarter != i32::MIN
        && i64::from(standing.first_in_quarter) - i64::from(standing.last_before_quarter)
            > i64::from(rules.dormant_days)
    {
        return Some(Stage::WonBack);
    }
    if earlier > 0.0 && recent <= earlier * 0.5 {
        return Some(Stage::Declining);
    }
    if recent > 0.0 && recent >= earlier * 1.5 {
        return Some(Stage::Growing);
    }
    Some(Stage::Mature)
}

/// How many customers moved from each stage (rows, at the earlier date) to each stage
/// (columns, at the later date); customers without purchases at the earlier date are
/// counted in `entered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transitions {
    pub stages: [Stage; 7],
    pub counts: [[u64; 7]; 7],
    pub entered: [u64; 7],
}

pub fn transitions(pairs: impl Iterator<Item = (Option<Stage>, Option<Stage>)>) -> Transitions {
    let mut found = Transitions { stages: Stage::ALL, counts: [[0; 7]; 7], entered: [0; 7] };
    for (before, after) in pairs {
        match (before, after) {
            (Some(before), Some(after)) => found.counts[before.index()][after.index()] += 1,
            (None, Some(after)) => found.entered[after.index()] += 1,
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `previous`: the last purchase before the quarter (the first in it is `last`).
    fn standing(first: i32, previous: i32, last: i32, recent: u32, earlier: u32) -> Standing {
        Standing {
            first_day: first,
            last_day: last,
            last_before_quarter: previous,
            first_in_quarter: if recent > 0 { last } else { i32::MAX },
            purchases: recent + earlier + 1,
            monetary_minor: 0,
            recent_purchases: recent,
            earlier_purchases: earlier,
            next_day: i32::MAX,
        }
    }

    #[test]
    fn each_rule_in_order() {
        let rules = LifecycleRules::default();
        let at = 1_000;
        assert_eq!(stage(&Standing::default(), at, &rules), None);
        assert_eq!(stage(&standing(100, 200, 600, 0, 0), at, &rules), Some(Stage::Lost));
        assert_eq!(stage(&standing(100, 200, 700, 0, 0), at, &rules), Some(Stage::Dormant));
        assert_eq!(stage(&standing(950, 960, 990, 3, 0), at, &rules), Some(Stage::New));
        assert_eq!(stage(&standing(100, 500, 990, 1, 0), at, &rules), Some(Stage::WonBack));
        assert_eq!(stage(&standing(100, 850, 900, 1, 4), at, &rules), Some(Stage::Declining));
        assert_eq!(stage(&standing(100, 980, 990, 6, 2), at, &rules), Some(Stage::Growing));
        assert_eq!(stage(&standing(100, 980, 990, 4, 4), at, &rules), Some(Stage::Mature));
        // The edges: exactly 365 and 180 days are not yet lost or dormant.
        assert_eq!(stage(&standing(100, 200, 635, 0, 0), at, &rules), Some(Stage::Dormant));
        assert_ne!(stage(&standing(100, 700, 820, 0, 1), at, &rules), Some(Stage::Dormant));
    }

    #[test]
    fn transitions_count_moves_and_entries() {
        let found = transitions(
            [
                (Some(Stage::New), Some(Stage::Growing)),
                (Some(Stage::New), Some(Stage::Growing)),
                (Some(Stage::Mature), Some(Stage::Declining)),
                (None, Some(Stage::New)),
                (None, None),
            ]
            .into_iter(),
        );
        assert_eq!(found.counts[Stage::New.index()][Stage::Growing.index()], 2);
        assert_eq!(found.counts[Stage::Mature.index()][Stage::Declining.index()], 1);
        assert_eq!(found.entered[Stage::New.index()], 1);
        assert_eq!(found.counts.iter().flatten().sum::<u64>(), 3);
    }
}
