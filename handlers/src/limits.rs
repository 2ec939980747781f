//! Per-stage runtime limits. Defaults match API Gateway's WebSocket quotas; every field can
//! be overridden under `limits:` in a stage file.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits applied to every connection and to the node as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct Limits {
    /// Largest inbound message in bytes (API Gateway: 128 KiB); larger closes with 1009.
    pub max_message_bytes: usize,
    /// Largest single frame in bytes (API Gateway: 32 KiB); larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Rooms one connection may be subscribed to at once.
    pub max_rooms_per_connection: usize,
    /// Longest room name in characters.
    pub max_room_name_len: usize,
    /// Sustained requests per second per connection (token-bucket refill rate).
    pub requests_per_second: u32,
    /// Requests a connection may burst above the sustained rate (token-bucket size).
    pub request_burst: u32,
    /// Sustained requests per second across all connections of one API key (0 = no limit).
    pub key_requests_per_second: u32,
    /// Burst of the per-key bucket.
    pub key_request_burst: u32,
    /// Outbound queue per connection, in messages; a consumer that falls further behind is closed.
    pub outbound_queue_messages: usize,
    /// Outbound queue per connection, in bytes.
    pub outbound_queue_bytes: usize,
    /// Seconds a write to a client may stay blocked (the client reads nothing) before the
    /// connection is closed as a slow consumer (4008).
    pub write_timeout_secs: u64,
    /// Kernel send buffer per connection, in bytes (`SO_SNDBUF`; Linux doubles it for its
    /// bookkeeping). Fixed instead of autotuned (up to 4 MiB), so a client that stops
    /// reading holds at most this much kernel memory before its outbound queue fills.
    pub send_buffer_bytes: usize,
    /// Seconds without traffic in either direction before the gateway closes a connection.
    pub idle_timeout_secs: u64,
    /// Seconds after which every connection is closed (API Gateway: 2 h).
    pub max_lifetime_secs: u64,
    /// Live connections one gateway node accepts; beyond it upgrades get 503.
    pub max_connections: usize,
    /// New connections per second one gateway node accepts; beyond it upgrades get 503.
    pub connects_per_second: u32,
    /// Seconds a new connection has to send its complete upgrade request (and a kept-alive
    /// HTTP connection its next request) before the gateway drops it.
    pub handshake_timeout_secs: u64,
    /// Connections one gateway node holds open before their upgrade; beyond it new TCP
    /// connections are closed at once.
    pub max_pending_handshakes: usize,
    /// Refused connects (no key, bad key) one source address may make per second before
    /// its attempts are answered 429 without touching the node's connect budget.
    pub refused_connects_per_second_per_source: u32,
    /// Messages of each room kept for `since` replay and the latest value.
    pub room_history: usize,
    /// Bytes of each room's history (encoded frames): the oldest messages are dropped
    /// beyond it, but never the newest, so `latest` always answers.
    pub room_history_bytes: usize,
    /// Rooms one API key may create by publishing to them (0 = no limit). A room counts
    /// against the key whose publish gave it its first message for as long as the store
    /// holds its history; beyond the cap a publish to a new room is refused
    /// (`too_many_rooms`) and nothing is stored.
    pub max_rooms_per_key: usize,
    /// History bytes across all rooms of the in-memory store (`wsctl dev`); beyond it the
    /// oldest messages of any room are evicted, a room's newest one last. (Redis is
    /// bounded by its own `maxmemory`; see docs/deploy.md.)
    pub max_history_bytes_total: usize,
    /// Bytes one `since` replay may send; only the newest missed messages that fit are
    /// replayed (always at least the newest) and the reply says `truncated: true`.
    pub max_replay_bytes: usize,
    /// Extra seconds a connection record outlives `max_lifetime_secs` before DynamoDB's TTL may remove it.
    pub record_ttl_margin_secs: u64,
    /// Shards of a room's fan-out on Lambda (0 = the publishing invocation sends to every
    /// member itself). With N > 0 a publish splits the members by a stable hash of their
    /// connection id into N ordered shards, hands them to the fan-out queue (an SQS FIFO
    /// queue, one message group per shard) and is acknowledged once they are queued; the
    /// `publish` function delivers each shard. See `wsctl_handlers::fanout`.
    pub fanout_shards: u32,
    /// PostToConnection calls in flight per fan-out (per shard when sharded).
    pub fanout_concurrency: usize,
    /// Most connections in one shard job (one invocation's work when sharded): a larger
    /// shard is queued as several jobs in its group, so no invocation's length grows with
    /// the room.
    pub fanout_job_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 128 * 1024,
            max_frame_bytes: 32 * 1024,
            max_rooms_per_connection: 128,
            max_room_name_len: 128,
            requests_per_second: 100,
            request_burst: 200,
            key_requests_per_second: 0,
            key_request_burst: 0,
            outbound_queue_messages: 1000,
            outbound_queue_bytes: 1024 * 1024,
            write_timeout_secs: 10,
            send_buffer_bytes: 256 * 1024,
            idle_timeout_secs: 600,
            max_lifetime_secs: 7200,
            max_connections: 100_000,
            connects_per_second: 5_000,
            handshake_timeout_secs: 10,
            max_pending_handshakes: 1_024,
            refused_connects_per_second_per_source: 20,
            room_history: 100,
            room_history_bytes: 1024 * 1024,
            max_rooms_per_key: 1_000,
            max_history_bytes_total: 256 * 1024 * 1024,
            max_replay_bytes: 1024 * 1024,
            record_ttl_margin_secs: 900,
            fanout_shards: 0,
            fanout_concurrency: 64,
            fanout_job_connections: 1000,
        }
    }
}

impl Limits {
    /// The idle timeout as a [`Duration`].
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The maximum connection lifetime as a [`Duration`].
    pub fn max_lifetime(&self) -> Duration {
        Duration::from_secs(self.max_lifetime_secs)
    }

    /// Seconds a connection record stays valid: lifetime plus margin (its DynamoDB `ttl`).
    pub fn record_ttl_secs(&self) -> u64 {
        self.max_lifetime_secs.saturating_add(self.record_ttl_margin_secs)
    }

    /// Checks that the values are usable; returns the name of the first bad field and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive: [(&'static str, u64); 21] = [
            ("fanout_job_connections", self.fanout_job_connections as u64),
            ("fanout_concurrency", self.fanout_concurrency as u64),
            ("max_message_bytes", self.max_message_bytes as u64),
            ("send_buffer_bytes", self.send_buffer_bytes as u64),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("max_pending_handshakes", self.max_pending_handshakes as u64),
            ("refused_connects_per_second_per_source", self.refused_connects_per_second_per_source.into()),
            ("write_timeout_secs", self.write_timeout_secs),
            ("max_frame_bytes", self.max_frame_bytes as u64),
            ("max_rooms_per_connection", self.max_rooms_per_connection as u64),
            ("max_room_name_len", self.max_room_name_len as u64),
            ("requests_per_second", self.requests_per_second.into()),
            ("outbound_queue_messages", self.outbound_queue_messages as u64),
            ("outbound_queue_bytes", self.outbound_queue_bytes as u64),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("max_lifetime_secs", self.max_lifetime_secs),
            ("max_connections", self.max_connections as u64),
            ("connects_per_second", self.connects_per_second.into()),
            ("room_history_bytes", self.room_history_bytes as u64),
            ("max_history_bytes_total", self.max_history_bytes_total as u64),
            ("max_replay_bytes", self.max_replay_bytes as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err((name, "must be greater than 0".into()));
        }
        if self.max_frame_bytes > self.max_message_bytes {
            return Err(("max_frame_bytes", format!("must not exceed max_message_bytes ({})", self.max_message_bytes)));
        }
        for (name, value) in
            [("max_lifetime_secs", self.max_lifetime_secs), ("record_ttl_margin_secs", self.record_ttl_margin_secs)]
        {
            if value > 86_400 {
                return Err((name, "must be at most 86400 (one day)".into()));
            }
        }
        if self.idle_timeout_secs > self.max_lifetime_secs {
            return Err((
                "idle_timeout_secs",
                format!("must not exceed max_lifetime_secs ({})", self.max_lifetime_secs),
            ));
        }
        if self.max_room_name_len > 255 {
            return Err(("max_room_name_len", "must be at most 255".into()));
        }
        if self.fanout_shards > 256 {
            return Err(("fanout_shards", "must be at most 256 (SQS message groups the fan-out spreads over)".into()));
        }
        if self.fanout_concurrency > 1024 {
            return Err(("fanout_concurrency", "must be at most 1024".into()));
        }
        if self.room_history > 10_000 {
            return Err(("room_history", "must be at most 10000".into()));
        }
        if self.room_history_bytes > self.max_history_bytes_total {
            return Err((
                "room_history_bytes",
                format!("must not exceed max_history_bytes_total ({})", self.max_history_bytes_total),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let bad = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l.validate().unwrap_err().0
        };
        assert_eq!(bad(|l| l.max_lifetime_secs = u64::MAX), "max_lifetime_secs");
        assert_eq!(bad(|l| l.record_ttl_margin_secs = u64::MAX), "record_ttl_margin_secs");
        assert_eq!(bad(|l| l.idle_timeout_secs = 7201), "idle_timeout_secs");
        assert_eq!(bad(|l| l.max_frame_bytes = l.max_message_bytes + 1), "max_frame_bytes");
        assert_eq!(bad(|l| l.requests_per_second = 0), "requests_per_second");
        assert_eq!(bad(|l| l.max_replay_bytes = 0), "max_replay_bytes");
        assert_eq!(bad(|l| l.room_history_bytes = l.max_history_bytes_total + 1), "room_history_bytes");
        let huge = Limits { max_lifetime_secs: u64::MAX, record_ttl_margin_secs: u64::MAX, ..Limits::default() };
        assert_eq!(huge.record_ttl_secs(), u64::MAX, "saturates instead of overflowing");
    }
}
