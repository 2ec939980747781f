//! Several gateway nodes (`wsctl dev` processes) on one Redis, behaving like one API
//! Gateway: a publish on any node reaches every subscriber on every node, in seq order,
//! and no node mistakes another's connections for gone ones.
//!
//! Every node claims a short random tag in the `wsctl:nodes` sorted set (score: until
//! when its claim holds; renewed every [`NODE_TTL`]/3) and starts every connection id it
//! mints with that tag. The publish script groups a room's members by tag and PUBLISHes
//! one message per node to that node's channel, `wsctl:node:{tag}`, inside the script:
//! Redis runs a room's publishes one after another, so every node receives that room's
//! messages in seq order, the publishing node's own included. Members whose node did not
//! listen come back to the publisher, which delivers them itself when they are its own
//! (its subscription is being re-established), prunes them when their node's claim has
//! expired (the node is gone, and its connections with it), and otherwise reports them
//! failed.
//!
//! On a Redis cluster, PUBLISH reaches every cluster node's listeners but counts only
//! those on the node that ran it, so a 0 proves nothing: every group counts as
//! dispatched, and the two uses of the count are not available there: a node that is
//! re-subscribing misses what is published meanwhile, and a killed node's connections are
//! not pruned by publishes (they stay listed as room members, costing one PUBLISH per
//! publish to their room, until an operator kicks them).
//!
//! The management API of any node also reaches every node's connections: a
//! PostToConnection for another node's connection is forwarded on that node's channel,
//! and GetConnection / DeleteConnection are requests answered on the asking node's
//! channel.
//!
//! Wire format of a channel message (first byte, then fields):
//! - `d{room}\n{id} {id}…\n{frame}`: deliver (room empty for a forwarded post);
//! - `q{op}{from}:{request}:{id}`: a request (`op` = `i` info, `k` kick) to answer;
//! - `a{request}:{answer}`: the answer to this node's request;
//! - `p{n}`: this node's own probe of its subscription.

use super::redis::RedisRoomStore;
use crate::error::StoreError;
use crate::protocol::Frame;
use crate::sender::LiveInfo;
use crate::store::now_ms;
use base64::Engine;
use futures_util::StreamExt;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

/// Prefix of every node's channel (followed by its tag).
pub const NODE_CHANNEL_PREFIX: &str = "wsctl:node:";
/// Length of a node tag, the first characters of each connection id the node mints.
pub const NODE_TAG_LEN: usize = 4;
/// How long a node's claim on its tag holds without renewal; a node silent for longer is
/// gone, and publishes prune its connections.
pub const NODE_TTL: Duration = Duration::from_secs(15);
/// The sorted set of node tags (score: claim expiry, epoch ms).
const NODES_KEY: &str = "wsctl:nodes";
/// How long a request to another node waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the node checks its subscription connection (a probe through it).
const LISTEN_CHECK: Duration = Duration::from_secs(2);

const STORE: &str = "Redis node bus";

/// The node tag a connection id starts with.
pub fn node_of(conn: &str) -> &str {
    conn.get(..NODE_TAG_LEN).unwrap_or(conn)
}

fn channel(node: &str) -> String {
    format!("{NODE_CHANNEL_PREFIX}{node}")
}

/// A management request one node makes of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOp {
    /// GetConnection: answered with the connection's [`LiveInfo`], or gone.
    Info,
    /// DeleteConnection: answered with whether the connection was there.
    Kick,
}

/// What a node answers to a [`NodeOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAnswer {
    /// The connection is not on this node (or is closing).
    Gone,
    /// The kick was done.
    Kicked,
    /// The connection's live details.
    Info(LiveInfo),
}

/// The local side of a node: delivers to its connections and answers other nodes.
pub trait NodeHandler: Send + Sync + 'static {
    /// Delivers `frame` to the local connections `ids` (a publish to `room`, or a
    /// forwarded post when `room` is None).
    fn deliver(&self, room: Option<&str>, ids: Vec<&str>, frame: Frame);
    /// Answers another node's request about local connection `conn`.
    fn answer(&self, op: NodeOp, conn: &str) -> NodeAnswer;
}

/// This node's membership of the bus.
pub struct NodeBus {
    tag: String,
    store: Arc<RedisRoomStore>,
    pending: Mutex<HashMap<u64, oneshot::Sender<String>>>,
    next_request: AtomicU64,
}

impl NodeBus {
    /// Claims a free node tag on `store`'s Redis and keeps the claim renewed while the bus
    /// lives. Call [`NodeBus::listen`] before minting connection ids.
    pub async fn join(store: Arc<RedisRoomStore>) -> Result<Arc<NodeBus>, StoreError> {
        let mut tag = None;
        for _ in 0..16 {
            let candidate = new_node_tag();
            if claim(&store, &candidate, true).await? {
                tag = Some(candidate);
                break;
            }
        }
        let tag = tag.ok_or_else(|| StoreError::corrupt(STORE, "no free node tag after 16 tries"))?;
        let bus = Arc::new(NodeBus { tag, store, pending: Mutex::default(), next_request: AtomicU64::new(1) });
        tokio::spawn(renew(Arc::downgrade(&bus)));
        tracing::debug!(node = %bus.tag, "joined the node bus");
        Ok(bus)
    }

    /// This node's tag (the first [`NODE_TAG_LEN`] characters of its connection ids).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Whether `conn` was minted by this node.
    pub fn is_local(&self, conn: &str) -> bool {
        node_of(conn) == self.tag
    }

    /// Subscribes to this node's channel (done when this returns, so a publish that
    /// follows reaches `handler`) and keeps the subscription up, re-subscribing after a
    /// lost connection, until the bus is dropped.
    pub async fn listen(self: &Arc<Self>, handler: Arc<dyn NodeHandler>) -> Result<(), StoreError> {
        let first = subscribe(&self.store, &self.tag).await?;
        tokio::spawn(listen_loop(Arc::downgrade(self), handler, first));
        Ok(())
    }

    /// Hands `frame` for `ids` (all of node `node`) to that node; false when no node
    /// listened on its channel.
    pub async fn forward(&self, node: &str, ids: &[&str], frame: &Frame) -> Result<bool, StoreError> {
        let mut payload = String::with_capacity(2 + ids.len() * 17 + frame.as_str().len());
        payload.push_str("d\n");
        payload.push_str(&ids.join(" "));
        payload.push('\n');
        payload.push_str(frame.as_str());
        self.publish(node, payload).await
    }

    /// Asks the node holding `conn` to answer `op`; Gone when no node holds it.
    pub async fn request(&self, op: NodeOp, conn: &str) -> Result<NodeAnswer, StoreError> {
        let id = self.next_request.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| StoreError::corrupt(STORE, "poisoned"))?.insert(id, tx);
        let op_char = match op {
            NodeOp::Info => 'i',
            NodeOp::Kick => 'k',
        };
        let sent = self.publish(node_of(conn), format!("q{op_char}{}:{id}:{conn}", self.tag)).await;
        let answer = match sent {
            Ok(true) => tokio::time::timeout(REQUEST_TIMEOUT, rx).await,
            other => {
                self.forget(id);
                return other.map(|_| NodeAnswer::Gone);
            }
        };
        self.forget(id);
        match answer {
            Ok(Ok(text)) => Ok(decode_answer(&text)),
            // No answer: a node that no longer holds a claim is gone, with its connections.
            _ if !self.is_live(node_of(conn)).await? => Ok(NodeAnswer::Gone),
            _ => Err(StoreError::unavailable(
                STORE,
                format!("node {} did not answer within {} s", node_of(conn), REQUEST_TIMEOUT.as_secs()),
            )),
        }
    }

    /// Whether node `node` holds a current claim (a node whose claim lapsed is gone).
    pub async fn is_live(&self, node: &str) -> Result<bool, StoreError> {
        let score: Option<u64> = self.store.command(::redis::cmd("ZSCORE").arg(NODES_KEY).arg(node)).await?;
        Ok(score.is_some_and(|until| until > now_ms()))
    }

    /// Gives the tag back (on shutdown, after every local connection was cleaned up).
    pub async fn leave(&self) {
        let _ = self.store.command::<i64>(::redis::cmd("ZREM").arg(NODES_KEY).arg(&self.tag)).await;
    }

    fn forget(&self, id: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
    }

    /// PUBLISHes to `node`'s channel; false when certainly nobody listened. In cluster
    /// mode PUBLISH counts only the listeners on the Redis node that ran it, while the
    /// message reaches every Redis node's, so there a 0 proves nothing and this is true.
    async fn publish(&self, node: &str, payload: String) -> Result<bool, StoreError> {
        let receivers: i64 = self.store.command_once(::redis::cmd("PUBLISH").arg(channel(node)).arg(payload)).await?;
        Ok(receivers > 0 || self.store.config().cluster)
    }

    /// Handles one message of this node's channel.
    async fn on_message(&self, payload: &str, handler: &dyn NodeHandler) {
        let (kind, rest) = payload.split_at(payload.len().min(1));
        match kind {
            "d" => {
                let mut parts = rest.splitn(3, '\n');
                let (Some(head), Some(ids), Some(frame)) = (parts.next(), parts.next(), parts.next()) else {
                    tracing::warn!("malformed delivery on the node channel");
                    return;
                };
                let room = (!head.is_empty()).then_some(head);
                handler.deliver(
                    room,
                    ids.split(' ').filter(|s| !s.is_empty()).collect(),
                    Frame::from(frame.to_owned()),
                );
            }
            "q" => {
                let Some((op, rest)) = rest.split_at_checked(1) else { return };
                let mut parts = rest.splitn(3, ':');
                let (Some(from), Some(request), Some(conn)) = (parts.next(), parts.next(), parts.next()) else {
                    return;
                };
                let op = if op == "k" { NodeOp::Kick } else { NodeOp::Info };
                let answer = encode_answer(&handler.answer(op, conn));
                if let Err(e) = self.publish(from, format!("a{request}:{answer}")).await {
                    tracing::warn!(node = from, error = %e, "could not answer another node's request");
                }
            }
            "a" => {
                let Some((request, answer)) = rest.split_once(':') else { return };
                let waiting = request.parse().ok().and_then(|id| self.pending.lock().ok()?.remove(&id));
                if let Some(tx) = waiting {
                    let _ = tx.send(answer.to_owned());
                }
            }
            _ => tracing::warn!("unknown message on the node channel"),
        }
    }
}

fn encode_answer(a: &NodeAnswer) -> String {
    match a {
        NodeAnswer::Gone => "gone".into(),
        NodeAnswer::Kicked => "kicked".into(),
        NodeAnswer::Info(info) => serde_json::to_string(info).unwrap_or_else(|_| "gone".into()),
    }
}

fn decode_answer(text: &str) -> NodeAnswer {
    match text {
        "kicked" => NodeAnswer::Kicked,
        _ => serde_json::from_str(text).map(NodeAnswer::Info).unwrap_or(NodeAnswer::Gone),
    }
}

/// A random tag of [`NODE_TAG_LEN`] URL-safe characters.
pub fn new_node_tag() -> String {
    let mut b = [0u8; 3];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Claims `tag` until now + [`NODE_TTL`]: a new claim only if no live node holds it,
/// a renewal always. Lapsed claims of other nodes are dropped on the way.
async fn claim(store: &RedisRoomStore, tag: &str, new: bool) -> Result<bool, StoreError> {
    let now = now_ms();
    let until = now + NODE_TTL.as_millis() as u64;
    let script = ::redis::cmd("EVAL")
        .arg(
            r"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
              if ARGV[4] == '1' and redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
              redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
              return 1",
        )
        .arg(1)
        .arg(NODES_KEY)
        .arg(tag)
        .arg(now)
        .arg(until)
        .arg(if new { "1" } else { "0" })
        .clone();
    let claimed: i64 = store.command(&script).await?;
    Ok(claimed == 1)
}

/// Renews the claim every third of [`NODE_TTL`] until the bus is dropped.
async fn renew(bus: Weak<NodeBus>) {
    let mut tick = tokio::time::interval(NODE_TTL / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(bus) = bus.upgrade() else { return };
        if let Err(e) = claim(&bus.store, &bus.tag, false).await {
            tracing::warn!(node = %bus.tag, error = %e, "could not renew this node's claim on the bus");
        }
    }
}

type Subscription = (::redis::aio::PubSubSink, ::redis::aio::PubSubStream);

async fn subscribe(store: &RedisRoomStore, tag: &str) -> Result<Subscription, StoreError> {
    let unavailable = |e: ::redis::RedisError| StoreError::unavailable(STORE, e);
    let client = ::redis::Client::open(store.config().url.as_str()).map_err(unavailable)?;
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel(tag)).await?;
        Ok::<_, ::redis::RedisError>(pubsub.split())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, connect)
        .await
        .map_err(|_| StoreError::unavailable(STORE, "timed out subscribing to the node channel"))?
        .map_err(unavailable)
}

/// Reads the node channel; on a lost connection subscribes again, every 100 ms until it
/// succeeds. A connection is lost when its stream ends, or when a probe this node
/// publishes to its own channel every [`LISTEN_CHECK`] has not come back by the next one
/// (a half-open connection never ends its stream). A PING on the subscription itself is
/// not used: in RESP2's subscribed mode its reply can be taken for a message.
async fn listen_loop(bus: Weak<NodeBus>, handler: Arc<dyn NodeHandler>, first: Subscription) {
    let (mut _sink, mut stream) = first;
    let mut check = tokio::time::interval(LISTEN_CHECK);
    let (mut sent, mut seen) = (0u64, 0u64);
    loop {
        let lost = tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => {
                    let Some(bus) = bus.upgrade() else { return };
                    match std::str::from_utf8(msg.get_payload_bytes()) {
                        Ok(probe) if probe.starts_with('p') => seen = probe[1..].parse().unwrap_or(seen),
                        Ok(text) => bus.on_message(text, handler.as_ref()).await,
                        Err(_) => tracing::warn!("non-UTF-8 message on the node channel"),
                    }
                    false
                }
                None => true,
            },
            _ = check.tick() => {
                let Some(bus) = bus.upgrade() else { return };
                let lost = seen < sent;
                if !lost {
                    sent += 1;
                    // A failed probe is seen as lost at the next tick.
                    let _ = bus.publish(&bus.tag, format!("p{sent}")).await;
                }
                lost
            }
        };
        if !lost {
            continue;
        }
        if let Some(b) = bus.upgrade() {
            tracing::warn!(node = %b.tag, "lost the node channel's connection; subscribing again");
        }
        loop {
            let Some(b) = bus.upgrade() else { return };
            tokio::time::sleep(Duration::from_millis(100)).await;
            match subscribe(&b.store, &b.tag).await {
                Ok((s, st)) => {
                    (_sink, stream) = (s, st);
                    seen = sent;
                    check.reset();
                    tracing::info!(node = %b.tag, "node channel subscribed again");
                    break;
                }
                Err(e) => tracing::debug!(error = %e, "node channel: subscribe failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_tags_are_url_safe_and_lead_the_ids() {
        let tag = new_node_tag();
        assert_eq!(tag.len(), NODE_TAG_LEN);
        assert!(tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{tag}");
        assert_eq!(node_of(&format!("{tag}abcdefghijkl")), tag);
        assert_eq!(node_of("ab"), "ab");
    }

    #[test]
    fn answers_round_trip() {
        let info = LiveInfo {
            connected_at_ms: 1,
            last_active_at_ms: 2,
            source_ip: "127.0.0.1".into(),
            user_agent: "ua".into(),
            messages_in: Some(3),
            messages_out: None,
        };
        for a in [NodeAnswer::Gone, NodeAnswer::Kicked, NodeAnswer::Info(info)] {
            assert_eq!(decode_answer(&encode_answer(&a)), a);
        }
    }
}
