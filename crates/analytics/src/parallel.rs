//! Splitting a pass over many customers across the machine's cores: each thread folds its
//! own contiguous share into an accumulator and the shares are combined in order, so the
//! result does not depend on scheduling (only on the number of threads).

use std::num::NonZeroUsize;

/// Below this many items a pass runs on the calling thread (spawning costs more).
const ITEMS_PER_THREAD_MIN: usize = 16_384;

/// Threads a pass may use: the cores the process may run on.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get).min(64)
}

/// Folds `items` with `fold` from `zero` on up to `threads()` threads and combines the
/// shares' results with `combine`, left to right.
pub fn fold<T: Sync, A: Send>(
    items: &[T],
    zero: impl Fn() -> A + Sync,
    fold: impl Fn(A, &T) -> A + Sync,
    combine: impl Fn(A, A) -> A,
) -> A {
    let threads = threads().min(items.len() / ITEMS_PER_THREAD_MIN).max(1);
    if threads == 1 {
        return items.iter().fold(zero(), &fold);
    }
    let share = items.len().div_ceil(threads);
    let results: Vec<A> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(share).map(|chunk| scope.spawn(|| chunk.iter().fold(zero(), &fold))).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    results.into_iter().reduce(combine).unwrap_or_else(zero)
}

/// Maps `items` to a vector of results in order, on up to `threads()` threads.
pub fn map<T: Sync, R: Send>(items: &[T], map: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads().min(items.len() / ITEMS_PER_THREAD_MIN).max(1);
    if threads == 1 {
        return items.iter().map(map).collect();
    }
    let share = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(share)
            .map(|chunk| scope.spawn(|| chunk.iter().map(&map).collect::<Vec<R>>()))
            .collect();
        let mut results = Vec::with_capacity(items.len());
        for handle in handles {
            results.extend(handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_and_maps_in_order_whatever_the_split() {
        let items: Vec<u64> = (0..100_000).collect();
        let sum = fold(&items, || 0_u64, |sum, item| sum + item, |left, right| left + right);
        assert_eq!(sum, 99_999 * 100_000 / 2);
        let doubled = map(&items, |item| item * 2);
        assert!(doubled.iter().enumerate().all(|(index, value)| *value == 2 * index as u64));
        assert_eq!(fold(&[] as &[u64], || 7, |sum, item| sum + item, |left, right| left + right), 7);
    }
}
