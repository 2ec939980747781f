//! Rooms in Redis (Debian's `redis-server` locally, ElastiCache in production).
//!
//! Layout (every multi-key command stays inside one hash slot, as cluster mode requires):
//! - `room:{R}:connections` SET of connection ids, `room:{R}:seq` counter,
//!   `room:{R}:history` ZSET (score = seq, member = frame), `room:{R}:meta` HASH;
//! - `connection:{ID}:rooms` SET of room names (expires with the connection record) and
//!   `connection:{ID}:gone` tombstone written by disconnect;
//! - `rooms` ZSET (lexicographic) indexing room names for paginated listing;
//! - `key:{K}:connections` ZSET of a key's live connections (score = expiry), its cap;
//! - `key:{K}:rooms` SET of the rooms key K created by publishing (its `max_rooms_per_key`
//!   quota). History is never emptied on Redis, so a room stays counted until an operator
//!   deletes it (its `room:{R}:*` keys and its entry here);
//! - `ratelimit:{B}` HASH, a token bucket (`tokens`, `at` on Redis's clock) expiring
//!   once it would be full again.
//!
//! A subscribe writes the connection side first, then the room side, then re-checks the
//! tombstone, so a disconnect racing a subscribe never leaves a member behind. The
//! client is created lazily and reconnects by itself, so a Redis outage turns into
//! `unavailable` errors (never a hang or a false acknowledgement) and heals without a
//! restart.
//!
//! Recovery is invisible to clients once Redis is back: a health check pings every
//! [`HEALTH_CHECK_PERIOD`] (every node of a cluster every [`CLUSTER_HEALTH_CHECK_PERIOD`]), so a connection that Redis dropped (a restart, a failover, an
//! idle timeout) is noticed and replaced by the probe rather than by a client's request;
//! and an idempotent operation that still meets a broken connection is retried once on
//! the new one. `publish` (it increments the room's `seq`) is never retried: a failure
//! there is reported as `unavailable` and the client decides.

use super::*;
use crate::store::memory::subscription_from;
use crate::store::node_bus::{NODE_CHANNEL_PREFIX, NODE_TAG_LEN};
use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

const STORE: &str = "Redis";
/// Hard bound on any single Redis operation.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the health check pings a single-node Redis.
pub const HEALTH_CHECK_PERIOD: Duration = Duration::from_millis(250);
/// How often the health check pings every node of a cluster. Slower: the cluster client
/// also retries a request on a broken node connection itself, and a node that stays down
/// until it is replaced would otherwise log a connect failure four times a second.
pub const CLUSTER_HEALTH_CHECK_PERIOD: Duration = Duration::from_secs(1);
/// Pause before the one retry of an idempotent operation, so the reconnect can start.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Connection settings for [`RedisRoomStore`].
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port` or `rediss://host:port` (TLS).
    pub url: String,
    /// Use the cluster-mode client (ElastiCache cluster mode enabled).
    pub cluster: bool,
    /// Messages kept per room.
    pub history: usize,
    /// Seconds a connection's room set lives (its record TTL).
    pub connection_ttl_secs: u64,
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(p, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(p, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis-backed [`RoomStore`].
pub struct RedisRoomStore {
    config: RedisConfig,
    conn: OnceCell<Conn>,
    /// The health-check task holds a weak reference and stops once the store is dropped.
    alive: Arc<()>,
    subscribe_conn_side: Script,
    subscribe_room_side: Script,
    publish: Script,
    claim_room: Script,
    claim_slot: Script,
    take_token: Script,
    /// Publishes hand members to their gateway nodes' channels (see [`super::node_bus`]).
    node_dispatch: bool,
    /// PEM roots to trust instead of the built-in ones (a private CA; tests).
    tls_root_cert: Option<Vec<u8>>,
}

/// `(ip, hostname, port)` of every node `CLUSTER SLOTS` announces by IP address together
/// with a hostname (Redis 7 adds `hostname` to a node's metadata when it is configured
/// but not the preferred endpoint).
fn announced_hostnames(slots: &Value) -> Vec<(String, String, u16)> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut out = Vec::new();
    let Value::Array(ranges) = slots else { return out };
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        for node in parts.iter().skip(2) {
            let Value::Array(fields) = node else { continue };
            let (Some(host), Some(Value::Int(port))) = (fields.first().and_then(text), fields.get(1)) else { continue };
            if host.parse::<std::net::IpAddr>().is_err() {
                continue;
            }
            let hostname = match fields.get(3) {
                // RESP2: a flat [key, value, ...] array; RESP3: a map.
                Some(Value::Array(meta)) => meta
                    .chunks(2)
                    .find(|kv| kv.first().and_then(text).as_deref() == Some("hostname"))
                    .and_then(|kv| kv.get(1).and_then(text)),
                Some(Value::Map(meta)) => {
                    meta.iter().find(|(k, _)| text(k).as_deref() == Some("hostname")).and_then(|(_, v)| text(v))
                }
                _ => None,
            };
            if let (Some(hostname), Ok(port)) = (hostname, u16::try_from(*port)) {
                out.push((host, hostname, port));
            }
        }
    }
    out
}

fn err(e: RedisError) -> StoreError {
    StoreError::unavailable(STORE, e)
}

fn room_key(room: &str, what: &str) -> String {
    format!("room:{{{room}}}:{what}")
}

fn slots_key(key_id: &str) -> String {
    format!("key:{{{key_id}}}:connections")
}

fn created_rooms_key(key_id: &str) -> String {
    format!("key:{{{key_id}}}:rooms")
}

fn conn_key(id: &str, what: &str) -> String {
    format!("connection:{{{id}}}:{what}")
}

fn bucket_key(bucket: &str) -> String {
    format!("ratelimit:{{{bucket}}}")
}

const ROOMS_INDEX: &str = "rooms";

impl RedisRoomStore {
    /// Validates the URL; connects on first use.
    pub fn new(config: RedisConfig) -> Result<Self, StoreError> {
        ::redis::parse_redis_url(&config.url).ok_or_else(|| {
            StoreError::corrupt(STORE, format!("not a redis:// or rediss:// URL: {}", redact_url(&config.url)))
        })?;
        Ok(RedisRoomStore {
            config,
            node_dispatch: false,
            conn: OnceCell::new(),
            alive: Arc::new(()),
            tls_root_cert: None,
            // KEYS: conn rooms, conn tombstone. ARGV: room, max rooms, ttl.
            subscribe_conn_side: Script::new(
                r"if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
                  if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
                    if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
                    redis.call('SADD', KEYS[1], ARGV[1])
                  end
                  redis.call('EXPIRE', KEYS[1], ARGV[3])
                  return redis.call('SCARD', KEYS[1])",
            ),
            // KEYS: members, seq, history. ARGV: conn, since ('' = latest only).
            // Returns {seq, oldest seq in history (0 = none), frames...}.
            subscribe_room_side: Script::new(
                r"redis.call('SADD', KEYS[1], ARGV[1])
                  local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
                  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
                  local out = {seq, tonumber(oldest[2] or '0')}
                  local frames
                  if ARGV[2] == '' then
                    frames = redis.call('ZRANGE', KEYS[3], -1, -1)
                  else
                    frames = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[2], '+inf')
                  end
                  for i = 1, #frames do out[#out + 1] = frames[i] end
                  return out",
            ),
            // KEYS: seq, history, members, meta. ARGV: prefix, suffix, history len, now ms,
            // history bytes, may create ('0': a room never published to is left alone and
            // the answer is {-1}), node channel prefix ('' = no node bus), room, node tag
            // length, cluster ('1': PUBLISH counts only this Redis node's listeners, so
            // every group counts as dispatched). Returns {seq, frame, dispatched, member...}: with a node bus, members
            // are grouped by their node tag and each group is PUBLISHed, with the frame, to
            // its node's channel (so every node receives a room's messages in seq order);
            // `dispatched` counts the members some node listened for, and the members
            // returned are those whose node had no listener. Without a bus, every member.
            // The history's byte size is kept in meta's `history_bytes` (counted from the
            // history itself the first time, for rooms older than the field).
            publish: Script::new(
                r"if ARGV[6] == '0' and redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
                  local seq = redis.call('INCR', KEYS[1])
                  local frame = ARGV[1] .. seq .. ARGV[2]
                  local keep = tonumber(ARGV[3])
                  if keep > 0 then
                    local max_bytes = tonumber(ARGV[5])
                    local bytes = tonumber(redis.call('HGET', KEYS[4], 'history_bytes') or '-1')
                    redis.call('ZADD', KEYS[2], seq, frame)
                    if bytes < 0 then
                      bytes = 0
                      for _, f in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do bytes = bytes + #f end
                    else
                      bytes = bytes + #frame
                    end
                    local n = redis.call('ZCARD', KEYS[2])
                    while n > 1 and (n > keep or bytes > max_bytes) do
                      local oldest = redis.call('ZPOPMIN', KEYS[2])
                      bytes = bytes - #oldest[1]
                      n = n - 1
                    end
                    redis.call('HSET', KEYS[4], 'history_bytes', bytes)
                  end
                  redis.call('HSET', KEYS[4], 'last_publish_ms', ARGV[4])
                  local members = redis.call('SMEMBERS', KEYS[3])
                  local out = {seq, frame, 0}
                  if ARGV[7] == '' then
                    for i = 1, #members do out[#out + 1] = members[i] end
                    return out
                  end
                  local groups, order = {}, {}
                  for i = 1, #members do
                    local node = string.sub(members[i], 1, tonumber(ARGV[9]))
                    local g = groups[node]
                    if not g then g = {}; groups[node] = g; order[#order + 1] = node end
                    g[#g + 1] = members[i]
                  end
                  local head = 'd' .. ARGV[8] .. '\n'
                  local tail = '\n' .. frame
                  for _, node in ipairs(order) do
                    local g = groups[node]
                    local heard = redis.call('PUBLISH', ARGV[7] .. node, head .. table.concat(g, ' ') .. tail)
                    if heard > 0 or ARGV[10] == '1' then
                      out[3] = out[3] + #g
                    else
                      for j = 1, #g do out[#out + 1] = g[j] end
                    end
                  end
                  return out",
            ),
            // KEYS: the rooms a key created (a SET in the key's slot). ARGV: room, cap.
            // 1 when the room counts against the key (now or already), 0 when it is full.
            claim_room: Script::new(
                r"if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
                  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
                  redis.call('SADD', KEYS[1], ARGV[1])
                  return 1",
            ),
            // KEYS: the key's slots ZSET. ARGV: conn, cap, expires ms, now ms, key ttl s.
            claim_slot: Script::new(
                r"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
                  if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
                    if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
                  end
                  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
                  redis.call('EXPIRE', KEYS[1], ARGV[5])
                  return 1",
            ),
            // A token bucket in one hash, on Redis's clock (callers' clocks differ).
            // KEYS: the bucket. ARGV: rate per second, burst.
            take_token: Script::new(
                r"if redis.replicate_commands then redis.replicate_commands() end
                  local rate = tonumber(ARGV[1])
                  local burst = tonumber(ARGV[2])
                  local t = redis.call('TIME')
                  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
                  local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
                  local tokens = tonumber(b[1]) or burst
                  local at = tonumber(b[2]) or now
                  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
                  local taken = 0
                  if tokens >= 1 then tokens = tokens - 1; taken = 1 end
                  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
                  redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
                  return taken",
            ),
        })
    }

    /// Trusts the PEM certificate(s) in `pem` for `rediss://` instead of the built-in roots
    /// (a private CA).
    pub fn with_tls_root_cert(mut self, pem: Vec<u8>) -> Self {
        self.tls_root_cert = Some(pem);
        self
    }

    fn tls_certificates(&self) -> Option<::redis::TlsCertificates> {
        let root_cert = self.tls_root_cert.clone()?;
        Some(::redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) })
    }

    /// TLS cluster mode: where nodes announce their IP addresses, the address each is
    /// reached at for the TLS handshake (its announced hostname), read from `CLUSTER SLOTS`
    /// through the seed (whose URL names a host the certificate covers). A certificate
    /// names hosts, not node IPs: without this map every node but the seed fails its
    /// hostname check (ElastiCache may announce IPs; sockudo#126).
    async fn tls_node_addresses(
        &self,
    ) -> Result<std::collections::HashMap<::redis::cluster::NodeAddress, ::redis::cluster::NodeAddress>, StoreError>
    {
        let client = match self.tls_certificates() {
            Some(certs) => ::redis::Client::build_with_tls(self.config.url.as_str(), certs),
            None => ::redis::Client::open(self.config.url.as_str()),
        }
        .map_err(err)?;
        let mut seed = tokio::time::timeout(OP_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| StoreError::unavailable(STORE, "timed out connecting"))?
            .map_err(err)?;
        let slots: Value = ::redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut seed).await.map_err(err)?;
        Ok(announced_hostnames(&slots)
            .into_iter()
            .map(|(ip, host, port)| {
                (::redis::cluster::NodeAddress::new(ip, port), ::redis::cluster::NodeAddress::new(host, port))
            })
            .collect())
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        let c = self
            .conn
            .get_or_try_init(|| async {
                let conn = if self.config.cluster {
                    let mut builder = ClusterClientBuilder::new(vec![self.config.url.as_str()])
                        .connection_timeout(Duration::from_millis(1000))
                        .response_timeout(Duration::from_millis(2000))
                        .retries(2);
                    if let Some(certs) = self.tls_certificates() {
                        builder = builder.certs(certs);
                    }
                    if self.config.url.starts_with("rediss://") {
                        builder = builder.node_address_map(self.tls_node_addresses().await?);
                    }
                    let client = builder.build().map_err(err)?;
                    let c = tokio::time::timeout(OP_TIMEOUT, client.get_async_connection())
                        .await
                        .map_err(|_| StoreError::unavailable(STORE, "timed out connecting"))?
                        .map_err(err)?;
                    Conn::Cluster(c)
                } else {
                    let client = ::redis::Client::open(self.config.url.as_str()).map_err(err)?;
                    let cfg = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(Duration::from_millis(1000)))
                        .set_response_timeout(Some(Duration::from_millis(2000)))
                        .set_number_of_retries(1)
                        .set_min_delay(Duration::from_millis(20))
                        .set_max_delay(Duration::from_millis(500));
                    Conn::Single(ConnectionManager::new_lazy_with_config(client, cfg).map_err(err)?)
                };
                self.start_health_check(conn.clone());
                Ok::<Conn, StoreError>(conn)
            })
            .await?;
        Ok(c.clone())
    }

    /// Pings every [`HEALTH_CHECK_PERIOD`] (cluster: [`CLUSTER_HEALTH_CHECK_PERIOD`]) until
    /// the store is dropped. A failed ping makes
    /// the client reconnect (single node: the connection manager replaces a dropped
    /// connection on the error; cluster: the client refreshes its node connections), so
    /// the first request after an outage finds a working connection.
    fn start_health_check(&self, conn: Conn) {
        let alive = Arc::downgrade(&self.alive);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let period = match conn {
                Conn::Single(_) => HEALTH_CHECK_PERIOD,
                Conn::Cluster(_) => CLUSTER_HEALTH_CHECK_PERIOD,
            };
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if alive.strong_count() == 0 {
                    return;
                }
                let mut c = conn.clone();
                let ping = ::redis::cmd("PING");
                if let Ok(Err(e)) = tokio::time::timeout(OP_TIMEOUT, ping.query_async::<Value>(&mut c)).await {
                    tracing::debug!(error = %e, "Redis health check failed; reconnecting");
                }
            }
        });
    }

    /// Runs an idempotent operation, bounded by [`OP_TIMEOUT`]; when it meets a broken
    /// connection (dropped, refused, reset) it is retried once, on the connection the
    /// client has reconnected meanwhile.
    async fn with<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        match self.attempt(&f).await {
            Err(Attempt::Redis(e)) if is_broken_connection(&e) => {
                tracing::debug!(error = %e, "Redis connection broken; retrying once");
                tokio::time::sleep(RETRY_PAUSE).await;
                self.attempt(&f).await.map_err(StoreError::from)
            }
            other => other.map_err(StoreError::from),
        }
    }

    /// Runs an operation that must not run twice (it is not idempotent), bounded by
    /// [`OP_TIMEOUT`].
    async fn with_once<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        self.attempt(f).await.map_err(StoreError::from)
    }

    async fn attempt<T, F, Fut>(&self, f: F) -> Result<T, Attempt>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let conn = self.conn().await.map_err(Attempt::Store)?;
        match tokio::time::timeout(OP_TIMEOUT, f(conn)).await {
            Ok(r) => r.map_err(Attempt::Redis),
            Err(_) => Err(Attempt::Store(StoreError::unavailable(STORE, "operation timed out"))),
        }
    }

    /// For gateway nodes sharing this Redis: a publish no longer returns the members to
    /// deliver but hands them to their nodes' channels (the node tag leads each
    /// connection id), where each node's [`super::node_bus::NodeBus`] listens. Only
    /// members whose node did not listen come back in [`Published::members`].
    pub fn with_node_dispatch(mut self) -> Self {
        self.node_dispatch = true;
        self
    }

    /// The connection settings.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Runs one command that may safely run twice (retried once on a broken connection).
    pub(crate) async fn command<T: ::redis::FromRedisValue + Send>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        self.with(|mut c| async move { cmd.query_async::<T>(&mut c).await }).await
    }

    /// Runs one command that must not run twice (such as PUBLISH).
    pub(crate) async fn command_once<T: ::redis::FromRedisValue + Send>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        self.with_once(|mut c| async move { cmd.query_async::<T>(&mut c).await }).await
    }

    /// Checks that Redis answers (used at start-up to fail fast with a clear message).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.with(|mut c| async move { ::redis::cmd("PING").query_async::<String>(&mut c).await }).await.map(|_| ())
    }
}

/// Why one attempt at an operation failed.
enum Attempt {
    /// Redis (or the connection to it) answered with an error.
    Redis(RedisError),
    /// No connection, or no answer in time.
    Store(StoreError),
}

impl From<Attempt> for StoreError {
    fn from(a: Attempt) -> Self {
        match a {
            Attempt::Redis(e) => err(e),
            Attempt::Store(e) => e,
        }
    }
}

/// A failure of the connection itself (not of the command), after which the client
/// reconnects: the command may be retried on the new connection.
fn is_broken_connection(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_connection_refusal() || e.is_unrecoverable_error()
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn as_string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

#[async_trait]
impl RoomStore for RedisRoomStore {
    async fn subscribe(
        &self,
        conn: &str,
        room: &RoomName,
        since: Option<u64>,
        max_rooms: usize,
    ) -> Result<Subscription, SubscribeError> {
        let (rooms_key, gone_key) = (conn_key(conn, "rooms"), conn_key(conn, "gone"));
        let ttl = self.config.connection_ttl_secs;
        let (rk, gk) = (&rooms_key, &gone_key);
        let added: i64 = self
            .with(|mut c| {
                let mut inv = self.subscribe_conn_side.key(rk);
                inv.key(gk).arg(room.as_str()).arg(max_rooms).arg(ttl);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        match added {
            -1 => return Err(SubscribeError::TooManyRooms(max_rooms)),
            -2 => return Err(StoreError::unavailable(STORE, "connection is disconnecting").into()),
            _ => {}
        }
        let keys = [
            room_key(room.as_str(), "connections"),
            room_key(room.as_str(), "seq"),
            room_key(room.as_str(), "history"),
        ];
        let since_arg = since.map(|s| s.to_string()).unwrap_or_default();
        let (k, since_ref) = (&keys, &since_arg);
        let room_side: Result<Vec<Value>, StoreError> = self
            .with(|mut c| {
                let mut inv = self.subscribe_room_side.key(&k[0]);
                inv.key(&k[1]).key(&k[2]).arg(conn).arg(since_ref);
                async move { inv.invoke_async(&mut c).await }
            })
            .await;
        let reply = match room_side {
            Ok(v) => v,
            Err(e) => {
                // Undo the connection side so the acknowledged state stays exact.
                let _ = self
                    .with(|mut c| async move {
                        ::redis::cmd("SREM").arg(rk).arg(room.as_str()).query_async::<i64>(&mut c).await
                    })
                    .await;
                return Err(e.into());
            }
        };
        // A disconnect that started meanwhile has already swept the rooms: undo our add.
        let gone: bool =
            self.with(|mut c| async move { ::redis::cmd("EXISTS").arg(gk).query_async(&mut c).await }).await?;
        if gone {
            let member_key = &keys[0];
            let _ =
                self.with(|mut c| async move {
                    ::redis::cmd("SREM").arg(member_key).arg(conn).query_async::<i64>(&mut c).await
                })
                .await;
            return Err(StoreError::unavailable(STORE, "connection is disconnecting").into());
        }
        let name = room.as_str();
        let _ = self
            .with(|mut c| async move {
                ::redis::cmd("ZADD").arg(ROOMS_INDEX).arg(0).arg(name).query_async::<i64>(&mut c).await
            })
            .await;
        let mut it = reply.into_iter();
        let seq = it.next().as_ref().and_then(as_u64).ok_or_else(|| StoreError::corrupt(STORE, "subscribe reply"))?;
        let oldest = it.next().as_ref().and_then(as_u64).unwrap_or(0);
        let frames: Vec<Frame> = it.filter_map(as_string).map(Frame::from).collect();
        // Reconstruct (seq, frame) pairs: replayed frames are consecutive up to `seq`.
        let n = frames.len() as u64;
        let history: Vec<(u64, Frame)> =
            frames.into_iter().enumerate().map(|(i, f)| (seq + 1 - n + i as u64, f)).collect();
        let mut sub = subscription_from(seq, &history, since);
        if let Some(since) = since {
            sub.truncated = since < seq && (oldest == 0 || oldest > since + 1);
        }
        Ok(sub)
    }

    async fn unsubscribe(&self, conn: &str, room: &RoomName) -> Result<bool, StoreError> {
        let rooms_key = &conn_key(conn, "rooms");
        let member_key = &room_key(room.as_str(), "connections");
        // Two keys, possibly on two cluster shards. The room side is what fan-out reads, so
        // it is removed even when the connection's shard is unreachable (a stale entry in
        // the connection's own list only costs its cleanup a no-op); its failure is the
        // error.
        let removed: Result<i64, StoreError> = self
            .with(
                |mut c| async move { ::redis::cmd("SREM").arg(rooms_key).arg(room.as_str()).query_async(&mut c).await },
            )
            .await;
        let left: i64 = self
            .with(|mut c| async move { ::redis::cmd("SREM").arg(member_key).arg(conn).query_async(&mut c).await })
            .await?;
        Ok(left > 0 || removed.is_ok_and(|n| n > 0))
    }

    async fn rooms_of(&self, conn: &str) -> Result<Vec<String>, StoreError> {
        let key = &conn_key(conn, "rooms");
        let mut rooms: Vec<String> =
            self.with(|mut c| async move { ::redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }).await?;
        rooms.sort();
        Ok(rooms)
    }

    async fn remove_connection(&self, conn: &str) -> Result<Vec<String>, StoreError> {
        let (rooms_key, gone_key) = (&conn_key(conn, "rooms"), &conn_key(conn, "gone"));
        let ttl = self.config.connection_ttl_secs;
        let rooms: Vec<String> = self
            .with(|mut c| async move {
                ::redis::cmd("SET").arg(gone_key).arg(1).arg("EX").arg(ttl).query_async::<()>(&mut c).await?;
                ::redis::cmd("SMEMBERS").arg(rooms_key).query_async(&mut c).await
            })
            .await?;
        // Every room is tried (in cluster mode they live on different shards, and one may be
        // failing over); the connection's list is kept until all are done, so a later
        // cleanup (a retried $disconnect, a prune) finds the rest.
        let mut first_error = None;
        for room in &rooms {
            let key = &room_key(room, "connections");
            let removed = self
                .with(|mut c| async move { ::redis::cmd("SREM").arg(key).arg(conn).query_async::<i64>(&mut c).await })
                .await;
            if let Err(e) = removed {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.with(|mut c| async move { ::redis::cmd("DEL").arg(rooms_key).query_async::<i64>(&mut c).await }).await?;
        let mut rooms = rooms;
        rooms.sort();
        Ok(rooms)
    }

    async fn publish(
        &self,
        room: &RoomName,
        message: &MessageTemplate,
        now_ms: u64,
        bounds: &PublishBounds<'_>,
    ) -> Result<Published, PublishError> {
        let r = room.as_str();
        let keys = [room_key(r, "seq"), room_key(r, "history"), room_key(r, "connections"), room_key(r, "meta")];
        let history = self.config.history;
        let room_bytes = bounds.room_history_bytes;
        let keys = &keys;
        let node_channels = if self.node_dispatch { NODE_CHANNEL_PREFIX } else { "" };
        // Not idempotent (INCR): never retried, see the module comment.
        let run = |may_create: bool| {
            self.with_once(move |mut c| {
                let mut inv = self.publish.key(&keys[0]);
                inv.key(&keys[1])
                    .key(&keys[2])
                    .key(&keys[3])
                    .arg(&message.prefix)
                    .arg(&message.suffix)
                    .arg(history)
                    .arg(now_ms)
                    .arg(room_bytes)
                    .arg(if may_create { "1" } else { "0" })
                    .arg(node_channels)
                    .arg(r)
                    .arg(NODE_TAG_LEN)
                    .arg(if self.config.cluster { "1" } else { "0" });
                async move { inv.invoke_async::<Vec<Value>>(&mut c).await }
            })
        };
        let mut reply = run(bounds.creator.is_none()).await?;
        if let (Some(quota), [Value::Int(-1)]) = (bounds.creator, reply.as_slice()) {
            // A new room: count it against the key (its own hash slot, so a call of its
            // own), then publish. A room someone else creates in between still counts.
            let key = &created_rooms_key(quota.key_id);
            let claimed: i64 = self
                .with(|mut c| {
                    let mut inv = self.claim_room.key(key);
                    inv.arg(r).arg(quota.max_rooms);
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            if claimed == 0 {
                return Err(PublishError::TooManyRooms(quota.max_rooms));
            }
            reply = run(true).await?;
        }
        let _ = self
            .with(|mut c| async move {
                ::redis::cmd("ZADD").arg(ROOMS_INDEX).arg(0).arg(r).query_async::<i64>(&mut c).await
            })
            .await;
        let mut it = reply.into_iter();
        let seq = it.next().as_ref().and_then(as_u64).ok_or_else(|| StoreError::corrupt(STORE, "publish reply"))?;
        let frame = it
            .next()
            .and_then(as_string)
            .map(Frame::from)
            .ok_or_else(|| StoreError::corrupt(STORE, "publish frame"))?;
        let dispatched =
            it.next().as_ref().and_then(as_u64).ok_or_else(|| StoreError::corrupt(STORE, "publish dispatch count"))?;
        let members = it.filter_map(as_string).map(ConnId::from).collect();
        Ok(Published { seq, frame, members, dispatched: dispatched as usize })
    }

    async fn members(&self, room: &RoomName) -> Result<Vec<ConnId>, StoreError> {
        let key = &room_key(room.as_str(), "connections");
        let ids: Vec<String> =
            self.with(|mut c| async move { ::redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }).await?;
        Ok(ids.into_iter().map(ConnId::from).collect())
    }

    async fn list_rooms(&self, prefix: &str, cursor: Option<&str>, limit: usize) -> Result<Page<RoomInfo>, StoreError> {
        let min = match cursor {
            Some(c) => format!("({c}"),
            None => format!("[{prefix}"),
        };
        let max = format!("[{prefix}\u{7f}");
        let (min, max) = (&min, &max);
        let names: Vec<String> = self
            .with(|mut c| async move {
                ::redis::cmd("ZRANGEBYLEX")
                    .arg(ROOMS_INDEX)
                    .arg(min)
                    .arg(max)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit + 1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut items = Vec::with_capacity(names.len().min(limit));
        for name in names.iter().take(limit) {
            let room =
                RoomName::parse(name, 255).map_err(|e| StoreError::corrupt(STORE, format!("room index: {e}")))?;
            match self.room_info(&room).await? {
                Some(info) => items.push(info),
                None => {
                    // The room has neither members nor history any more: drop it from the index.
                    let _ = self
                        .with(|mut c| async move {
                            ::redis::cmd("ZREM").arg(ROOMS_INDEX).arg(name).query_async::<i64>(&mut c).await
                        })
                        .await;
                }
            }
        }
        let next = (names.len() > limit).then(|| names[limit - 1].clone()).filter(|_| limit > 0);
        Ok(Page { items, next })
    }

    async fn room_info(&self, room: &RoomName) -> Result<Option<RoomInfo>, StoreError> {
        let r = room.as_str();
        let (members, seq, meta, history) =
            (&room_key(r, "connections"), &room_key(r, "seq"), &room_key(r, "meta"), &room_key(r, "history"));
        let (subscribers, seq, last, hist): (u64, Option<u64>, Option<u64>, u64) = self
            .with(|mut c| async move {
                ::redis::pipe()
                    .cmd("SCARD")
                    .arg(members)
                    .cmd("GET")
                    .arg(seq)
                    .cmd("HGET")
                    .arg(meta)
                    .arg("last_publish_ms")
                    .cmd("ZCARD")
                    .arg(history)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if subscribers == 0 && hist == 0 {
            return Ok(None);
        }
        Ok(Some(RoomInfo { room: r.to_owned(), subscribers, seq: seq.unwrap_or(0), last_publish_ms: last }))
    }
}

#[async_trait]
impl LimitStore for RedisRoomStore {
    async fn claim_slot(
        &self,
        key_id: &str,
        conn: &str,
        cap: u32,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let key = &slots_key(key_id);
        let ttl = self.config.connection_ttl_secs;
        let claimed: i64 = self
            .with(|mut c| {
                let mut inv = self.claim_slot.key(key);
                inv.arg(conn).arg(cap).arg(expires_at_ms).arg(now_ms).arg(ttl);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        Ok(claimed == 1)
    }

    async fn release_slot(&self, key_id: &str, conn: &str) -> Result<(), StoreError> {
        let key = &slots_key(key_id);
        self.with(|mut c| async move { ::redis::cmd("ZREM").arg(key).arg(conn).query_async::<i64>(&mut c).await })
            .await
            .map(|_| ())
    }

    async fn take_token(&self, bucket: &str, rate: u32, burst: u32) -> Result<bool, StoreError> {
        // Not idempotent (it takes a token), and fail-open upstream: never retried.
        let key = bucket_key(bucket);
        let taken: i64 = self
            .with_once(|mut c| {
                let mut inv = self.take_token.key(&key);
                inv.arg(rate.max(1)).arg(burst.max(1));
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        Ok(taken == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("rediss://:s3cret@host:6379"), "rediss://:***@host:6379");
        assert_eq!(redact_url("redis://app:s3cret@host:6379/0"), "redis://app:***@host:6379/0");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
    }
}
