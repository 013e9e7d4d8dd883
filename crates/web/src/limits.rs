//! Rate limits: a token bucket per caller (API token, staff member, or address before
//! sign-in). Requests over the limit get 429 with `Retry-After`.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use axum::http::StatusCode;

use crate::problem::{ApiError, Problem};

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by caller. `rate_per_second == 0` turns limiting off.
pub struct RateLimiter {
    rate_per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Most callers tracked at once; idle ones are dropped beyond it.
const TRACKED_MAX: usize = 100_000;

impl RateLimiter {
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        Self {
            rate_per_second: f64::from(rate_per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        if self.rate_per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= TRACKED_MAX && !buckets.contains_key(key) {
            let burst = self.burst;
            let rate = self.rate_per_second;
            buckets.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, updated: now });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.rate_per_second).ceil().max(1.0) as u64;
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {wait} s"),
        );
        problem.retry_after_seconds = Some(wait);
        Err(ApiError::from(problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_requests_are_refused_per_key() {
        let limiter = RateLimiter::new(1, 3);
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let refused = limiter.check("a").unwrap_err();
        assert_eq!(refused.0.status, 429);
        assert_eq!(refused.0.retry_after_seconds, Some(1));
        assert!(limiter.check("b").is_ok(), "other callers have their own bucket");
        assert!(RateLimiter::new(0, 0).check("a").is_ok(), "zero turns limiting off");
    }
}
