//! The handlers' logic, independent of how it is invoked: the Lambda binaries and the
//! local gateway both call these functions with their own stores and sender.

use crate::auth::{self, Denied, Identity, Scope};
use crate::error::{HandlerError, StoreError};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::protocol::{self, ErrorCode, Frame, MessageTemplate, Reply, Request};
use crate::room::RoomName;
use crate::sender::Sender;
use crate::store::{
    now_ms, ConnId, ConnectionRecord, ConnectionStore, KeyStore, LimitStore, LiveStore, PublishBounds, PublishError,
    RoomStore, SubscribeError,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Everything a handler needs: stores, sender, limits, counters.
pub struct Services {
    /// Rooms, membership and history.
    pub rooms: Arc<dyn RoomStore>,
    /// Connection caps and rate-limit buckets (the same backend as the rooms).
    pub limit_state: Arc<dyn LimitStore>,
    /// Durable connection records.
    pub connections: Arc<dyn ConnectionStore>,
    /// API keys.
    pub keys: Arc<dyn KeyStore>,
    /// Delivery to connections.
    pub sender: Arc<dyn Sender>,
    /// Limits of the stage.
    pub limits: Limits,
    /// Counters.
    pub metrics: Arc<Metrics>,
    order: PublishOrder,
    /// The caller enforces the per-connection rate limit itself (a gateway that holds the
    /// connection); otherwise it is a bucket in the live-state store (Lambda).
    connection_limit_by_caller: bool,
    /// Until when (epoch ms) the rate limits skip an unreachable store.
    limit_store_down_until: std::sync::atomic::AtomicU64,
}

/// Longest a rate-limit check waits on the store before admitting the request.
const LIMIT_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// After a failed check, how long the limits admit without asking the store again.
const LIMIT_STORE_BACKOFF_MS: u64 = 5_000;

/// Striped per-room locks that keep one process's publishes to a room in seq order from
/// seq assignment through enqueueing. Different rooms rarely share a stripe.
struct PublishOrder([tokio::sync::Mutex<()>; 64]);

impl PublishOrder {
    fn new() -> Self {
        PublishOrder(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
    }

    fn stripe(&self, room: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        room.hash(&mut h);
        &self.0[(h.finish() % 64) as usize]
    }
}

/// Why a connect was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The authorizer said no.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// A store failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Details API Gateway (or the local gateway) knows at `$connect`.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    /// The new connection's id.
    pub connection_id: String,
    /// The authorizer's identity.
    pub identity: Identity,
    /// Client address.
    pub source_ip: String,
    /// Client user agent.
    pub user_agent: String,
    /// Connect time, epoch ms.
    pub connected_at_ms: u64,
}

/// The calling connection of a `message`.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// Connection id.
    pub connection_id: &'a str,
    /// Identity from the authorizer context.
    pub identity: &'a Identity,
    /// API Gateway request id, echoed in errors.
    pub request_id: Option<&'a str>,
}

/// Outcome of a publish.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishReport {
    /// The room.
    pub room: String,
    /// The seq the message got.
    pub seq: u64,
    /// Subscribers at publish time.
    pub subscribers: usize,
    /// Deliveries accepted (for subscribers on other gateway nodes sharing a Redis: handed
    /// to their node, which delivers them).
    pub delivered: usize,
    /// Subscribers found gone and pruned.
    pub pruned: usize,
    /// Deliveries that failed otherwise.
    pub failed: usize,
}

/// Outcome of a disconnect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisconnectReport {
    /// Rooms the connection was removed from.
    pub rooms: Vec<String>,
    /// Whether a connection record existed.
    pub had_record: bool,
}

impl DisconnectReport {
    /// Something was removed (not an already cleaned-up connection).
    pub fn cleaned(&self) -> bool {
        self.had_record || !self.rooms.is_empty()
    }
}

impl Services {
    /// Bundles the parts; `live` holds both the rooms and the limits.
    pub fn new(
        live: Arc<dyn LiveStore>,
        connections: Arc<dyn ConnectionStore>,
        keys: Arc<dyn KeyStore>,
        sender: Arc<dyn Sender>,
        limits: Limits,
    ) -> Self {
        Services {
            rooms: live.clone(),
            limit_state: live,
            connections,
            keys,
            sender,
            limits,
            metrics: Arc::new(Metrics::default()),
            order: PublishOrder::new(),
            connection_limit_by_caller: false,
            limit_store_down_until: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Another [`Services`] on the same stores, limits and counters, delivering through
    /// `sender` (e.g. the sharded fan-out beside the direct one).
    pub fn with_sender(&self, sender: Arc<dyn Sender>) -> Services {
        Services {
            rooms: self.rooms.clone(),
            limit_state: self.limit_state.clone(),
            connections: self.connections.clone(),
            keys: self.keys.clone(),
            sender,
            limits: self.limits.clone(),
            metrics: self.metrics.clone(),
            order: PublishOrder::new(),
            connection_limit_by_caller: self.connection_limit_by_caller,
            limit_store_down_until: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// For a runtime that holds its connections and limits each one's requests in
    /// process: `message` then skips the per-connection bucket in the store (the per-key
    /// one, shared across connections and nodes, stays).
    pub fn with_connection_limit_by_caller(mut self) -> Self {
        self.connection_limit_by_caller = true;
        self
    }

    /// The authorizer: checks the raw key (by its hash, compared in constant time), its
    /// revocation, its expiry and its connection cap.
    pub async fn authorize(&self, raw_key: Option<&str>) -> Result<Identity, ConnectError> {
        let raw = raw_key.ok_or(Denied::MissingKey)?;
        if !raw.starts_with(auth::KEY_PREFIX) || raw.len() > 128 {
            return Err(Denied::UnknownKey.into());
        }
        let hash = auth::hash_key(raw);
        let record = self.keys.get_by_hash(&hash).await?.ok_or(Denied::UnknownKey)?;
        if !auth::hashes_match(&record.key_hash, &hash) {
            return Err(Denied::UnknownKey.into());
        }
        if record.is_revoked() {
            return Err(Denied::Revoked.into());
        }
        if record.is_expired(now_ms()) {
            return Err(Denied::Expired.into());
        }
        if record.max_connections > 0
            && self.connections.count_by_key(&record.key_id).await? >= u64::from(record.max_connections)
        {
            return Err(Denied::ConnectionCap(record.max_connections).into());
        }
        Ok(Identity {
            key_id: record.key_id,
            scopes: record.scopes,
            max_connections: record.max_connections,
            room_prefix: record.room_prefix,
        })
    }

    /// `$connect`: claims one of the key's connection slots (when it has a cap: atomic in
    /// the live-state store, so concurrent connects cannot overshoot) and writes the durable
    /// record. A failure gives the slot back, leaving nothing behind.
    pub async fn connect(&self, info: &ConnectInfo) -> Result<(), ConnectError> {
        let identity = &info.identity;
        let capped = identity.max_connections > 0;
        if capped {
            let expires = info.connected_at_ms.saturating_add(self.limits.max_lifetime_secs.saturating_mul(1000));
            let claimed = self
                .limit_state
                .claim_slot(&identity.key_id, &info.connection_id, identity.max_connections, expires, now_ms())
                .await?;
            if !claimed {
                return Err(Denied::ConnectionCap(identity.max_connections).into());
            }
        }
        let record = ConnectionRecord {
            connection_id: info.connection_id.clone(),
            key_id: info.identity.key_id.clone(),
            source_ip: info.source_ip.clone(),
            user_agent: info.user_agent.clone(),
            connected_at: info.connected_at_ms,
            ttl: (info.connected_at_ms / 1000).saturating_add(self.limits.record_ttl_secs()),
        };
        if let Err(e) = self.connections.put(&record).await {
            if capped {
                let _ = self.limit_state.release_slot(&identity.key_id, &info.connection_id).await;
            }
            return Err(e.into());
        }
        self.metrics.connects.fetch_add(1, Relaxed);
        tracing::debug!(connection_id = %info.connection_id, key_id = %info.identity.key_id, "connected");
        Ok(())
    }

    /// `$disconnect`: removes the connection from every room and deletes its record.
    /// Idempotent; tries both stores even if one fails. Counted as a disconnect only when
    /// it cleaned something up (a prune or an earlier call may have done it already).
    pub async fn disconnect(&self, connection_id: &str) -> Result<DisconnectReport, StoreError> {
        let report = self.clean_up(connection_id).await?;
        if report.cleaned() {
            self.metrics.disconnects.fetch_add(1, Relaxed);
        }
        tracing::debug!(connection_id, rooms = report.rooms.len(), "disconnected");
        Ok(report)
    }

    /// Removes a connection's memberships, record and key slot (uncounted).
    async fn clean_up(&self, connection_id: &str) -> Result<DisconnectReport, StoreError> {
        let rooms = self.rooms.remove_connection(connection_id).await;
        let record = self.connections.delete(connection_id).await;
        let slot = match &record {
            Ok(Some(rec)) => self.limit_state.release_slot(&rec.key_id, connection_id).await,
            _ => Ok(()),
        };
        let report = DisconnectReport { rooms: rooms?, had_record: record?.is_some() };
        slot?;
        Ok(report)
    }

    /// `$default`: parses one frame, routes it by `action`, and returns the frames to send
    /// back to the caller (the reply first, then any replayed messages).
    pub async fn message(&self, caller: Caller<'_>, body: &str) -> Vec<Frame> {
        self.metrics.requests.fetch_add(1, Relaxed);
        // An oversized message is not parsed, but it still costs its sender a token.
        let inbound = (body.len() <= self.limits.max_message_bytes).then(|| protocol::parse(body));
        let id = inbound.as_ref().and_then(|i| i.id);
        if let Some(err) = self.admit(caller).await {
            return vec![self.error(&err, caller, id)];
        }
        let Some(inbound) = inbound else {
            let err = HandlerError::new(
                ErrorCode::MessageTooLarge,
                format!("message is {} bytes; the limit is {}", body.len(), self.limits.max_message_bytes),
            );
            return vec![self.error(&err, caller, None)];
        };
        match inbound.request {
            Ok(request) => match self.route(caller, request, id).await {
                Ok(frames) => frames,
                Err(err) => vec![self.error(&err, caller, id)],
            },
            Err(err) => vec![self.error(&err, caller, id)],
        }
    }

    /// The rate limits: a bucket per connection (unless the caller keeps it) and, when the
    /// stage sets `key_requests_per_second`, one per key across its connections. Both live
    /// in the live-state store, so they hold across Lambda invocations and gateway nodes.
    /// When the store cannot be reached the request is admitted (the limit fails open;
    /// what the request needs from the store then fails on its own, as `unavailable`).
    async fn admit(&self, caller: Caller<'_>) -> Option<HandlerError> {
        let l = &self.limits;
        if !self.connection_limit_by_caller {
            let bucket = format!("c:{}", caller.connection_id);
            if !self.take_token(&bucket, l.requests_per_second, l.request_burst).await {
                return Some(HandlerError::new(
                    ErrorCode::RateLimited,
                    format!("more than {} requests/s on this connection; slow down and retry", l.requests_per_second),
                ));
            }
        }
        if l.key_requests_per_second > 0 {
            let bucket = format!("k:{}", caller.identity.key_id);
            let burst = l.key_request_burst.max(l.key_requests_per_second);
            if !self.take_token(&bucket, l.key_requests_per_second, burst).await {
                return Some(HandlerError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} requests/s across this API key's connections; slow down and retry",
                        l.key_requests_per_second
                    ),
                ));
            }
        }
        None
    }

    /// Takes a token; admits when the store cannot answer within [`LIMIT_STORE_TIMEOUT`],
    /// and then, for [`LIMIT_STORE_BACKOFF_MS`], without asking it (one slow check, and
    /// one warning, per outage and interval instead of one per request).
    async fn take_token(&self, bucket: &str, rate: u32, burst: u32) -> bool {
        let now = now_ms();
        if now < self.limit_store_down_until.load(Relaxed) {
            return true;
        }
        let why =
            match tokio::time::timeout(LIMIT_STORE_TIMEOUT, self.limit_state.take_token(bucket, rate, burst)).await {
                Ok(Ok(taken)) => return taken,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} ms", LIMIT_STORE_TIMEOUT.as_millis()),
            };
        self.limit_store_down_until.store(now + LIMIT_STORE_BACKOFF_MS, Relaxed);
        tracing::warn!(error = %why, "rate-limit state unavailable; admitting requests unchecked for 5 s");
        true
    }

    /// Encodes an error reply and counts it.
    pub fn error(&self, err: &HandlerError, caller: Caller<'_>, id: Option<&RawValue>) -> Frame {
        self.metrics.error(err.code);
        tracing::debug!(connection_id = caller.connection_id, code = err.code.as_str(), "request refused");
        protocol::error_frame(err, caller.request_id, id)
    }

    fn room(&self, name: &str) -> Result<RoomName, HandlerError> {
        RoomName::parse(name, self.limits.max_room_name_len)
            .map_err(|e| HandlerError::new(ErrorCode::InvalidRoom, e.to_string()))
    }

    fn require(identity: &Identity, scope: Scope) -> Result<(), HandlerError> {
        if identity.scopes.has(scope) {
            return Ok(());
        }
        Err(HandlerError::new(
            ErrorCode::Forbidden,
            format!("this API key lacks the '{}' scope; create a key with --scopes {}", scope.as_str(), scope.as_str()),
        ))
    }

    async fn route(
        &self,
        caller: Caller<'_>,
        request: Request<'_>,
        id: Option<&RawValue>,
    ) -> Result<Vec<Frame>, HandlerError> {
        match request {
            Request::Ping => Ok(vec![Reply::Pong { id }.encode()]),
            Request::Subscribe { room, since } => {
                Self::require(caller.identity, Scope::Subscribe)?;
                let room = self.room(&room)?;
                caller.identity.may_name(room.as_str())?;
                let max = self.limits.max_rooms_per_connection;
                let sub = self.rooms.subscribe(caller.connection_id, &room, since, max).await.map_err(|e| match e {
                    SubscribeError::TooManyRooms(n) => HandlerError::new(
                        ErrorCode::TooManyRooms,
                        format!("already in {n} rooms, the limit; unsubscribe from one first"),
                    ),
                    SubscribeError::Store(e) => e.into(),
                })?;
                let mut sub = sub;
                // The newest missed messages that fit in one replay (always the newest):
                // a reply as large as a room's whole history would let a 60-byte request
                // make the gateway send megabytes.
                let mut bytes = 0;
                let fit = sub
                    .replay
                    .iter()
                    .rev()
                    .take_while(|f| {
                        bytes += f.as_str().len();
                        bytes <= self.limits.max_replay_bytes
                    })
                    .count()
                    .max(sub.replay.len().min(1));
                if fit < sub.replay.len() {
                    sub.replay.drain(..sub.replay.len() - fit);
                    sub.truncated = true;
                }
                let latest = sub.latest.as_ref().and_then(|f| serde_json::from_str::<&RawValue>(f.as_str()).ok());
                let reply = Reply::Subscribed {
                    room: room.as_str(),
                    seq: sub.seq,
                    latest,
                    replayed: since.map(|_| sub.replay.len()),
                    truncated: sub.truncated,
                    id,
                }
                .encode();
                let mut frames = Vec::with_capacity(1 + sub.replay.len());
                frames.push(reply);
                frames.extend(sub.replay);
                Ok(frames)
            }
            Request::Unsubscribe { room } => {
                let room = self.room(&room)?;
                caller.identity.may_name(room.as_str())?;
                self.rooms.unsubscribe(caller.connection_id, &room).await?;
                Ok(vec![Reply::Unsubscribed { room: room.as_str(), id }.encode()])
            }
            Request::Rooms => {
                let rooms = self.rooms.rooms_of(caller.connection_id).await?;
                Ok(vec![Reply::Rooms { rooms: &rooms, id }.encode()])
            }
            Request::Publish { room, data } => {
                Self::require(caller.identity, Scope::Publish)?;
                caller.identity.may_name(&room)?;
                let report = self.publish_as(&room, data, Some(&caller.identity.key_id)).await?;
                Ok(vec![
                    Reply::Published { room: &report.room, seq: report.seq, delivered: report.delivered, id }.encode()
                ])
            }
        }
    }

    /// `publish` by an operator or the publish Lambda: assigns the next seq, fans the
    /// message out to every subscriber with bounded concurrency, and prunes subscribers
    /// found gone. It may create rooms without limit.
    pub async fn publish(&self, room: &str, data: &RawValue) -> Result<PublishReport, HandlerError> {
        self.publish_as(room, data, None).await
    }

    /// `publish` by a client: as [`Services::publish`], but a publish that creates a room
    /// counts it against `key_id`'s `max_rooms_per_key`.
    pub async fn publish_as(
        &self,
        room: &str,
        data: &RawValue,
        key_id: Option<&str>,
    ) -> Result<PublishReport, HandlerError> {
        let room = self.room(room)?;
        if data.get().len() > self.limits.max_message_bytes {
            return Err(HandlerError::new(
                ErrorCode::MessageTooLarge,
                format!("data is {} bytes; the limit is {}", data.get().len(), self.limits.max_message_bytes),
            ));
        }
        let now = now_ms();
        let template = MessageTemplate::new(room.as_str(), data, now);
        let (published, fanout) = {
            let _in_order = self.order.stripe(room.as_str()).lock().await;
            let bounds = PublishBounds::new(&self.limits, key_id);
            let published = self.rooms.publish(&room, &template, now, &bounds).await.map_err(|e| match e {
                PublishError::TooManyRooms(n) => HandlerError::new(
                    ErrorCode::TooManyRooms,
                    format!(
                        "this API key has created {n} rooms, the limit (max_rooms_per_key); publish to an existing room"
                    ),
                ),
                PublishError::Store(e) => e.into(),
            })?;
            let fanout = self.sender.send_many(&published.members, &published.frame).await;
            (published, fanout)
        };
        self.metrics.publishes.fetch_add(1, Relaxed);
        self.metrics.deliveries.fetch_add(fanout.delivered as u64, Relaxed);
        self.metrics.delivery_failures.fetch_add(fanout.failed as u64, Relaxed);
        let pruned = self.prune(&fanout.gone, Some(&room)).await;
        Ok(PublishReport {
            room: room.as_str().to_owned(),
            seq: published.seq,
            subscribers: published.members.len() + published.dispatched,
            delivered: fanout.delivered + published.dispatched,
            pruned,
            failed: fanout.failed,
        })
    }

    /// Removes connections found gone from every room and the table; returns how many it
    /// removed something of (one whose `$disconnect` got there first is not counted).
    /// `found_in` is the room whose fan-out found them: they leave it even when their own
    /// room list was lost (an orphan entry), so nothing stale outlives one publish.
    pub async fn prune(&self, gone: &[ConnId], found_in: Option<&RoomName>) -> usize {
        let mut pruned = 0;
        for conn in gone {
            let mut removed = false;
            if let Some(room) = found_in {
                match self.rooms.unsubscribe(conn, room).await {
                    Ok(was_member) => removed = was_member,
                    Err(e) => {
                        tracing::warn!(connection_id = %conn, error = %e, "could not prune a gone connection from its room")
                    }
                }
            }
            match self.clean_up(conn).await {
                Ok(report) => pruned += usize::from(removed || report.cleaned()),
                Err(e) => tracing::warn!(connection_id = %conn, error = %e, "could not prune a gone connection"),
            }
        }
        self.metrics.prunes.fetch_add(pruned as u64, Relaxed);
        pruned
    }
}
