//! Randomness: the operating system's for secrets, a small seeded generator for demo data
//! (its own code, so the same seed gives the same data on every version and machine).

/// Fills `buffer` from the operating system's secure generator.
pub fn secure_bytes<const N: usize>() -> [u8; N] {
    let mut buffer = [0_u8; N];
    os_fill(&mut buffer);
    buffer
}

fn os_fill(buffer: &mut [u8]) {
    // The OS generator does not fail on supported platforms; if it ever does, continuing
    // with predictable bytes would be worse than stopping.
    getrandom::fill(buffer).expect("the operating system's random generator failed");
}

/// Bytes fetched from the OS generator in one call and handed out in pieces: a system call
/// per nonce would cost more than the encryption it serves (bulk imports seal millions).
const RANDOM_POOL_BYTES: usize = 4_096;

struct RandomPool {
    bytes: [u8; RANDOM_POOL_BYTES],
    used: usize,
}

thread_local! {
    static POOL: std::cell::RefCell<RandomPool> =
        const { std::cell::RefCell::new(RandomPool { bytes: [0; RANDOM_POOL_BYTES], used: RANDOM_POOL_BYTES }) };
}

/// Fills `buffer` with bytes of the OS generator through a per-thread pool; every byte is
/// handed out once and then wiped from the pool. For nonces and other small values.
pub fn secure_fill(buffer: &mut [u8]) {
    if buffer.len() > RANDOM_POOL_BYTES / 4 {
        os_fill(buffer);
        return;
    }
    POOL.with_borrow_mut(|pool| {
        if pool.used + buffer.len() > RANDOM_POOL_BYTES {
            os_fill(&mut pool.bytes);
            pool.used = 0;
        }
        let range = pool.used..pool.used + buffer.len();
        buffer.copy_from_slice(&pool.bytes[range.clone()]);
        pool.bytes[range].fill(0);
        pool.used += buffer.len();
    });
}

/// xoshiro256** seeded through SplitMix64: fast, reproducible, not for secrets.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: [u64; 4],
}

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        let mut split = seed;
        let mut next = || {
            split = split.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = split;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self { state: [next(), next(), next(), next()] }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.state[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = self.state[1] << 17;
        self.state[2] ^= self.state[0];
        self.state[3] ^= self.state[1];
        self.state[1] ^= self.state[2];
        self.state[0] ^= self.state[3];
        self.state[2] ^= shifted;
        self.state[3] = self.state[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1_u64 << 53) as f64)
    }

    /// Uniform in `[0, bound)`; `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[low, high]`.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    pub fn chance(&mut self, probability: f64) -> bool {
        self.next_f64() < probability
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index drawn with probability proportional to `weights`.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut target = self.next_f64() * total;
        for (index, weight) in weights.iter().enumerate() {
            if target < *weight {
                return index;
            }
            target -= weight;
        }
        weights.len() - 1
    }

    /// Standard normal by Box–Muller.
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Log-normal with the given median and shape.
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let mut a = SeededRng::new(42);
        let mut b = SeededRng::new(42);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let value = a.between(3, 7);
            b.between(3, 7);
            assert!((3..=7).contains(&value));
        }
        assert_ne!(SeededRng::new(1).next_u64(), SeededRng::new(2).next_u64());
    }

    #[test]
    fn pooled_secure_bytes_never_repeat_across_refills() {
        let mut seen = std::collections::HashSet::new();
        // Several pool refills' worth of 12-byte nonces: a repeat would mean a byte range was
        // handed out twice.
        for _ in 0..(3 * RANDOM_POOL_BYTES / 12) {
            let mut nonce = [0_u8; 12];
            secure_fill(&mut nonce);
            assert!(seen.insert(nonce), "a nonce repeated");
        }
        let mut large = [0_u8; RANDOM_POOL_BYTES];
        secure_fill(&mut large);
        assert!(large.iter().any(|byte| *byte != 0));
    }
}
