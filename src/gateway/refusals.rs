//! Refused connect attempts (no key, an unknown or revoked key) counted per source
//! address. A source that keeps failing is answered 429 before its attempts reach the
//! node's shared connect budget or the key store, so a scanner cannot starve valid
//! clients (who would otherwise get 503 while the shared budget is spent on it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;
use wsctl_handlers::ratelimit::TokenBucket;

/// Buckets kept before idle (full) ones are forgotten.
const SWEEP_ABOVE: usize = 4096;

/// One token bucket of refusals per source address.
pub struct SourceRefusals {
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl SourceRefusals {
    /// `rate` refusals per second per source, with a burst of twice that.
    pub fn new(rate: u32) -> Self {
        SourceRefusals { rate, buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `source` may still be refused (has not exhausted its budget).
    pub fn allows(&self, source: IpAddr) -> bool {
        let Ok(map) = self.buckets.lock() else { return true };
        map.get(&source).is_none_or(|b| b.has_token_at(Instant::now()))
    }

    /// Counts one refusal of `source`.
    pub fn charge(&self, source: IpAddr) {
        let Ok(mut map) = self.buckets.lock() else { return };
        let now = Instant::now();
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, b| !b.is_full_at(now));
        }
        let (rate, burst) = (self.rate, self.rate.saturating_mul(2));
        map.entry(source).or_insert_with(|| TokenBucket::new(rate, burst)).try_take_at(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_cut_off_after_its_burst_and_others_are_not() {
        let r = SourceRefusals::new(2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        for _ in 0..4 {
            assert!(r.allows(a));
            r.charge(a);
        }
        assert!(!r.allows(a), "burst of 4 spent");
        assert!(r.allows(b), "another source is unaffected");
    }
}
