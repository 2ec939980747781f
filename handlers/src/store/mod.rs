//! Storage behind traits, each with real implementations:
//! - [`RoomStore`]: rooms, membership, per-room seq and history (in-memory or Redis);
//! - [`LimitStore`]: API keys' connection caps and rate-limit buckets (the same backends);
//! - [`ConnectionStore`]: durable connection records with a TTL (in-memory or DynamoDB);
//! - [`KeyStore`]: API-key records, by hash (in-memory/file or DynamoDB).

pub mod dynamo;
pub mod memory;
pub mod node_bus;
pub mod redis;

use crate::auth::KeyRecord;
use crate::error::StoreError;
use crate::protocol::{Frame, MessageTemplate};
use crate::room::RoomName;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A connection id, shared cheaply between the stores, the registry and fan-outs.
pub type ConnId = Arc<str>;

/// Result of a subscribe.
#[derive(Debug, Clone, Default)]
pub struct Subscription {
    /// The room's current seq (0 if nothing was published yet).
    pub seq: u64,
    /// The room's last message (when no `since` was given).
    pub latest: Option<Frame>,
    /// Messages after `since` that history still holds, oldest first.
    pub replay: Vec<Frame>,
    /// True when history no longer reaches back to `since + 1` (the service also sets it
    /// when it cuts the replay to `max_replay_bytes`).
    pub truncated: bool,
}

/// Why a subscribe was refused by the store.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The connection already holds the maximum number of rooms.
    #[error("already subscribed to {0} rooms, the limit")]
    TooManyRooms(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a publish may store, from the stage's limits.
#[derive(Debug, Clone, Copy)]
pub struct PublishBounds<'a> {
    /// Bytes of the room's history (encoded frames); the oldest messages beyond it are
    /// dropped, never the newest.
    pub room_history_bytes: usize,
    /// History bytes across every room of the store. Only the in-memory store applies it
    /// (Redis is bounded by its `maxmemory`).
    pub max_history_bytes_total: usize,
    /// The API key publishing, when its publishes may create at most so many rooms.
    pub creator: Option<RoomQuota<'a>>,
}

/// How many rooms one API key may create by publishing.
#[derive(Debug, Clone, Copy)]
pub struct RoomQuota<'a> {
    /// The key's public id.
    pub key_id: &'a str,
    /// Rooms it may hold at once.
    pub max_rooms: usize,
}

impl<'a> PublishBounds<'a> {
    /// The limits' bounds; `key_id` is the publishing key (None for operator and Lambda
    /// publishes, which may create rooms freely).
    pub fn new(limits: &crate::limits::Limits, key_id: Option<&'a str>) -> Self {
        PublishBounds {
            room_history_bytes: limits.room_history_bytes,
            max_history_bytes_total: limits.max_history_bytes_total,
            creator: key_id
                .filter(|_| limits.max_rooms_per_key > 0)
                .map(|key_id| RoomQuota { key_id, max_rooms: limits.max_rooms_per_key }),
        }
    }
}

/// Why a publish was refused by the store.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The room is new and the publishing key already holds its maximum of rooms.
    #[error("this API key already holds {0} rooms, the limit")]
    TooManyRooms(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result of a publish at the store: the message's seq, its frame, and who is subscribed.
#[derive(Debug, Clone)]
pub struct Published {
    /// The seq assigned.
    pub seq: u64,
    /// The encoded `message` frame.
    pub frame: Frame,
    /// Subscribers of the room at publish time that the caller delivers to: all of them,
    /// except those [`Published::dispatched`] to their gateway node.
    pub members: Vec<ConnId>,
    /// Subscribers handed to their gateway node's channel, which delivers to them (Redis
    /// with a node bus only; 0 otherwise).
    pub dispatched: usize,
}

/// A room as listed by operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    /// Room name.
    pub room: String,
    /// Current subscribers.
    pub subscribers: u64,
    /// Last seq (0 if never published).
    pub seq: u64,
    /// Time of the last publish, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_publish_ms: Option<u64>,
}

/// One page of a listing; `next` continues it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Cursor for the next page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Rooms, membership and message history.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Adds `conn` to `room` (at most `max_rooms` rooms per connection) and returns the
    /// room's seq, latest message or replay after `since` (bounded by `history`).
    async fn subscribe(
        &self,
        conn: &str,
        room: &RoomName,
        since: Option<u64>,
        max_rooms: usize,
    ) -> Result<Subscription, SubscribeError>;
    /// Removes `conn` from `room`; returns whether it was a member (on either side: the
    /// room's member set or the connection's room list).
    async fn unsubscribe(&self, conn: &str, room: &RoomName) -> Result<bool, StoreError>;
    /// The rooms `conn` is in, sorted.
    async fn rooms_of(&self, conn: &str) -> Result<Vec<String>, StoreError>;
    /// Removes `conn` from every room; returns the rooms it was in. Idempotent.
    async fn remove_connection(&self, conn: &str) -> Result<Vec<String>, StoreError>;
    /// Assigns the next seq, stores the message in the room's history (bounded in
    /// messages and bytes), and returns the frame and current members, atomically per
    /// room. A publish that would give the room its first message counts the room against
    /// `bounds.creator`'s quota and is refused, changing nothing, when it is full.
    async fn publish(
        &self,
        room: &RoomName,
        message: &MessageTemplate,
        now_ms: u64,
        bounds: &PublishBounds<'_>,
    ) -> Result<Published, PublishError>;
    /// Current members of `room`.
    async fn members(&self, room: &RoomName) -> Result<Vec<ConnId>, StoreError>;
    /// Rooms whose name starts with `prefix`, in name order, paginated.
    async fn list_rooms(&self, prefix: &str, cursor: Option<&str>, limit: usize) -> Result<Page<RoomInfo>, StoreError>;
    /// One room's counters, or None if it has neither members nor history.
    async fn room_info(&self, room: &RoomName) -> Result<Option<RoomInfo>, StoreError>;
}

/// Limits that hold across processes: API keys' connection caps and rate-limit buckets,
/// kept beside the rooms (in memory, or in the same Redis) so every Lambda container and
/// gateway node shares them.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Atomically takes one of `cap` live-connection slots of key `key_id` for `conn`
    /// until `expires_at_ms` (its maximum lifetime). Slots past their expiry are freed
    /// first, so a lost `$disconnect` cannot hold a slot forever. Returns false when the
    /// key is at its cap.
    async fn claim_slot(
        &self,
        key_id: &str,
        conn: &str,
        cap: u32,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError>;
    /// Gives `conn`'s slot of `key_id` back. Idempotent.
    async fn release_slot(&self, key_id: &str, conn: &str) -> Result<(), StoreError>;
    /// Takes one token from the rate-limit bucket `bucket` (refilled at `rate` per second
    /// up to `burst`), shared by every process that uses this store, so a limit holds
    /// across Lambda invocations and gateway nodes. False when the bucket is empty.
    async fn take_token(&self, bucket: &str, rate: u32, burst: u32) -> Result<bool, StoreError>;
}

/// The live-state store of a deployment: rooms and limits, one backend.
pub trait LiveStore: RoomStore + LimitStore {}

impl<T: RoomStore + LimitStore + ?Sized> LiveStore for T {}

/// A durable connection record (the connections table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRecord {
    /// API Gateway connection id.
    pub connection_id: String,
    /// Public id of the key it connected with (never the key).
    pub key_id: String,
    /// Client address.
    pub source_ip: String,
    /// Client user agent.
    pub user_agent: String,
    /// Connect time, epoch ms.
    pub connected_at: u64,
    /// Expiry, epoch seconds (DynamoDB TTL attribute `ttl`).
    pub ttl: u64,
}

impl ConnectionRecord {
    /// Whether the record is past its TTL at `now_s` (expired items linger in DynamoDB).
    pub fn expired(&self, now_s: u64) -> bool {
        self.ttl <= now_s
    }
}

/// Durable connection records.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Writes a record (overwrites).
    async fn put(&self, record: &ConnectionRecord) -> Result<(), StoreError>;
    /// Reads a record; expired records read as absent.
    async fn get(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError>;
    /// Deletes a record; returns it if it existed. Idempotent.
    async fn delete(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError>;
    /// All live records, paginated (sorted by connection id within the in-memory store).
    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ConnectionRecord>, StoreError>;
    /// Live records of one key, paginated.
    async fn list_by_key(
        &self,
        key_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ConnectionRecord>, StoreError>;
    /// Live connections of one key.
    async fn count_by_key(&self, key_id: &str) -> Result<u64, StoreError>;
}

/// API-key records, looked up by the key's hash.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new record; fails with `AlreadyExists` if the hash is taken.
    async fn create(&self, record: &KeyRecord) -> Result<(), StoreError>;
    /// The record for a key hash.
    async fn get_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// The record for a public key id.
    async fn get_by_id(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Every record (keys are few).
    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Marks a key revoked at `now_ms`; returns the updated record, None if unknown.
    async fn revoke(&self, key_id: &str, now_ms: u64) -> Result<Option<KeyRecord>, StoreError>;
    /// Removes a key's record for good; returns it, None if unknown. Idempotent.
    async fn delete(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError>;
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
