//! Closes connections past the idle timeout or the maximum lifetime, like API Gateway
//! (10 min idle, 2 h lifetime by default). One task scans the registry, instead of one
//! timer per connection.

use super::registry::CLOSE_GOING_AWAY;
use super::Gateway;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use wsctl_handlers::store::now_ms;

/// Time a registered connection may take to complete its HTTP upgrade.
const UPGRADE_DEADLINE_MS: u64 = 10_000;

/// Scans every connection periodically; runs until aborted.
pub async fn run(gw: Arc<Gateway>) {
    let limits = &gw.services.limits;
    let idle_ms = limits.idle_timeout_secs * 1000;
    let life_ms = limits.max_lifetime_secs * 1000;
    // A tenth of the shorter limit, between 100 ms and 5 s.
    let period = Duration::from_millis((idle_ms.min(life_ms) / 10).clamp(100, 5000));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let now = now_ms();
        for h in gw.registry.all() {
            // An upgrade that never completed (and never reported failure) must not leak.
            if !h.upgraded.load(Relaxed) && now.saturating_sub(h.connected_at_ms) >= UPGRADE_DEADLINE_MS {
                gw.finish(&h).await;
                continue;
            }
            if h.is_closing() {
                continue;
            }
            if now.saturating_sub(h.connected_at_ms) >= life_ms {
                h.request_close(CLOSE_GOING_AWAY, "maximum connection duration reached");
            } else if now.saturating_sub(h.last_active_ms.load(Relaxed)) >= idle_ms {
                h.request_close(CLOSE_GOING_AWAY, "idle timeout");
            }
        }
    }
}
