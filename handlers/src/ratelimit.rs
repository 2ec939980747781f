//! A token bucket: `rate` tokens per second refill a bucket of `burst` tokens.

use std::time::Instant;

/// A token bucket. Not thread-safe on purpose: each connection owns its own.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    capacity: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second.
    pub fn new(rate: u32, burst: u32) -> Self {
        let capacity = f64::from(burst.max(1));
        TokenBucket { tokens: capacity, capacity, rate: f64::from(rate), last: Instant::now() }
    }

    /// Takes one token if available.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// Whether the bucket would be full at `now` (an idle bucket: forgetting it changes
    /// nothing).
    pub fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.capacity
    }

    /// Whether a token is available at `now`, without taking it.
    pub fn has_token_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.capacity) >= 1.0
    }

    /// Takes one token at time `now` (for tests).
    pub fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5);
        b.last = t0;
        assert_eq!((0..10).filter(|_| b.try_take_at(t0)).count(), 5);
        assert!(!b.try_take_at(t0 + Duration::from_millis(50)));
        assert!(b.try_take_at(t0 + Duration::from_millis(150)));
        // a long pause refills only up to the burst
        let later = t0 + Duration::from_secs(60);
        assert!(b.is_full_at(later));
        assert_eq!((0..10).filter(|_| b.try_take_at(later)).count(), 5);
        assert!(!b.is_full_at(later));
    }
}
