//! Category recommendations 交叉推荐: association rules "bought A → also bought B" over
//! each customer's set of categories (up to 64 categories, one bit each), with support,
//! confidence and lift; and per customer the next-best categories they have not bought,
//! by the strongest rule from a category they have, topped up with the most popular ones.

use serde::Serialize;

/// Most categories the bit sets hold.
pub const CATEGORIES_MAX: usize = 64;

/// A rule over customers: of those who bought `antecedent`, the share `confidence` also
/// bought `consequent`; `support` is the share of all customers who bought both; `lift` is
/// the confidence over the consequent's own share (above 1: more likely together).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rule {
    pub antecedent: usize,
    pub consequent: usize,
    pub customers: u64,
    pub support: f64,
    pub confidence: f64,
    pub lift: f64,
}

/// How many customers bought each category, and each pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    pub customers: u64,
    pub single: Vec<u64>,
    /// `pairs[a * categories + b]`, symmetric.
    pub pairs: Vec<u64>,
    pub categories: usize,
}

/// Counts categories and pairs of categories over the customers' sets (customers with an
/// empty set count in no category but in the total).
pub fn count(baskets: &[u64], categories: usize) -> Counts {
    let categories = categories.min(CATEGORIES_MAX);
    let mut single = vec![0; categories];
    let mut pairs = vec![0; categories * categories];
    for basket in baskets {
        let members: Vec<usize> = (0..categories).filter(|bit| basket & (1 << bit) != 0).collect();
        for (index, &first) in members.iter().enumerate() {
            single[first] += 1;
            for &second in &members[index + 1..] {
                pairs[first * categories + second] += 1;
                pairs[second * categories + first] += 1;
            }
        }
    }
    Counts { customers: baskets.len() as u64, single, pairs, categories }
}

/// The rules with at least `support_min` support and `confidence_min` confidence, strongest
/// (confidence, then lift) first.
pub fn rules(counts: &Counts, support_min: f64, confidence_min: f64) -> Vec<Rule> {
    let total = counts.customers.max(1) as f64;
    let mut found = Vec::new();
    for antecedent in 0..counts.categories {
        for consequent in 0..counts.categories {
            let both = counts.pairs[antecedent * counts.categories + consequent];
            if antecedent == consequent || both == 0 || counts.single[antecedent] == 0 {
                continue;
            }
            let support = both as f64 / total;
            let confidence = both as f64 / counts.single[antecedent] as f64;
            if support < support_min || confidence < confidence_min {
                continue;
            }
            let lift = confidence / (counts.single[consequent] as f64 / total);
            found.push(Rule { antecedent, consequent, customers: both, support, confidence, lift });
        }
    }
    found.sort_by(|left, right| {
        right
            .confidence
            .total_cmp(&left.confidence)
            .then(right.lift.total_cmp(&left.lift))
            .then((left.antecedent, left.consequent).cmp(&(right.antecedent, right.consequent)))
    });
    found
}

/// One recommended category and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Suggestion {
    pub category: usize,
    /// The rule's confidence, or the category's share of customers for a popular pick.
    pub score: f64,
    /// The category the customer bought that led here (`None`: a popular pick).
    pub because_of: Option<usize>,
}

/// Up to `count` categories the customer has not bought: by the strongest rule from one
/// they have, then the most popular others.
pub fn suggest(basket: u64, rules: &[Rule], counts: &Counts, count: usize) -> Vec<Suggestion> {
    let mut found: Vec<Suggestion> = Vec::with_capacity(count);
    let has = |category: usize| basket & (1 << category) != 0;
    let taken = |found: &[Suggestion], category: usize| {
        found.iter().any(|suggestion| suggestion.category == category)
    };
    for rule in rules {
        if found.len() >= count {
            return found;
        }
        if has(rule.antecedent) && !has(rule.consequent) && !taken(&found, rule.consequent) {
            found.push(Suggestion {
                category: rule.consequent,
                score: rule.confidence,
                because_of: Some(rule.antecedent),
            });
        }
    }
    let mut popular: Vec<usize> =
        (0..counts.categories).filter(|category| counts.single[*category] > 0).collect();
    popular.sort_by(|left, right| counts.single[*right].cmp(&counts.single[*left]).then(left.cmp(right)));
    for category in popular {
        if found.len() >= count {
            break;
        }
        if !has(category) && !taken(&found, category) {
            found.push(Suggestion {
                category,
                score: counts.single[category] as f64 / counts.customers.max(1) as f64,
                because_of: None,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // Categories: 0 tea, 1 cakes, 2 wine, 3 toys.
    fn baskets() -> Vec<u64> {
        vec![0b0011, 0b0011, 0b0011, 0b0001, 0b0100, 0b0110, 0b1000, 0b0000]
    }

    #[test]
    fn support_confidence_and_lift_by_hand() {
        let counts = count(&baskets(), 4);
        assert_eq!(counts.single, vec![4, 4, 2, 1]);
        let found = rules(&counts, 0.0, 0.0);
        let rule = |a: usize, b: usize| {
            *found.iter().find(|rule| rule.antecedent == a && rule.consequent == b).unwrap()
        };
        // Tea → cakes: 3 of 8 customers bought both; 3 of the 4 tea buyers; cakes alone 4/8.
        let tea_cakes = rule(0, 1);
        assert_eq!(tea_cakes.customers, 3);
        assert!((tea_cakes.support - 3.0 / 8.0).abs() < 1e-12);
        assert!((tea_cakes.confidence - 0.75).abs() < 1e-12);
        assert!((tea_cakes.lift - 1.5).abs() < 1e-12);
        // Wine → cakes: 1 of the 2 wine buyers.
        assert!((rule(2, 1).confidence - 0.5).abs() < 1e-12);
        assert!(
            found.iter().all(|rule| rule.antecedent != 3 && rule.consequent != 3),
            "toys go with nothing"
        );
        assert_eq!(rules(&counts, 0.2, 0.0).len(), 2, "only tea ↔ cakes has support ≥ 0.2");
    }

    #[test]
    fn suggestions_follow_rules_then_popularity() {
        let counts = count(&baskets(), 4);
        let found = rules(&counts, 0.0, 0.0);
        // A tea buyer: cakes by the rule first, then wine or toys.
        let tea = suggest(0b0001, &found, &counts, 2);
        assert_eq!(tea[0], Suggestion { category: 1, score: 0.75, because_of: Some(0) });
        assert_eq!(tea.len(), 2);
        assert!(tea.iter().all(|suggestion| suggestion.category != 0), "nothing they already buy");
        // A customer with nothing: the most popular categories (tea and cakes tie: lower first).
        let nobody = suggest(0, &found, &counts, 3);
        assert_eq!(nobody.iter().map(|suggestion| suggestion.category).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(nobody.iter().all(|suggestion| suggestion.because_of.is_none()));
        // Someone who has everything gets nothing.
        assert!(suggest(0b1111, &found, &counts, 3).is_empty());
    }
}
