//! Live connections of the local gateway and the in-process [`Sender`] over them.
//!
//! Each connection has a bounded outbound queue (messages and bytes). A push that would
//! exceed either bound closes the connection as a slow consumer (close code
//! [`CLOSE_SLOW_CONSUMER`]) instead of letting memory grow.

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, Notify};
use wsctl_handlers::metrics::Metrics;
use wsctl_handlers::protocol::Frame;
use wsctl_handlers::sender::{FanoutReport, LiveInfo, SendError, SendOutcome, Sender};
use wsctl_handlers::store::node_bus::{node_of, NodeAnswer, NodeBus, NodeOp};
use wsctl_handlers::store::{now_ms, ConnId};

/// Close code for a consumer whose outbound queue overflowed.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code for idle timeout, lifetime expiry and shutdown (as API Gateway: going away).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for an operator kick (DeleteConnection).
pub const CLOSE_KICKED: u16 = 4000;
/// Close code for messages or frames over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a WebSocket protocol violation.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a text message that is not valid UTF-8.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;

/// Why the gateway is closing a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason (at most 123 bytes on the wire).
    pub reason: String,
}

/// One live connection as the rest of the gateway sees it.
#[derive(Debug)]
pub struct ConnHandle {
    /// Connection id.
    pub id: ConnId,
    /// Client address.
    pub source_ip: String,
    /// Client user agent.
    pub user_agent: String,
    /// Connect time, epoch ms.
    pub connected_at_ms: u64,
    /// Last traffic in either direction, epoch ms.
    pub last_active_ms: AtomicU64,
    /// Frames received.
    pub messages_in: AtomicU64,
    /// Frames sent.
    pub messages_out: AtomicU64,
    tx: mpsc::Sender<Utf8Bytes>,
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    close: Mutex<Option<CloseRequest>>,
    closing: AtomicBool,
    /// Set when the WebSocket session starts (after the HTTP upgrade completed).
    pub upgraded: AtomicBool,
    close_notify: Notify,
}

/// The receiving side of a connection's queue, owned by its session task.
pub struct Outbox {
    rx: mpsc::Receiver<Utf8Bytes>,
}

impl ConnHandle {
    /// A handle and its outbox, with queue bounds of `max_messages` and `max_bytes`.
    pub fn new(
        id: ConnId,
        source_ip: String,
        user_agent: String,
        max_messages: usize,
        max_bytes: usize,
    ) -> (Arc<ConnHandle>, Outbox) {
        let (tx, rx) = mpsc::channel(max_messages.max(1));
        let now = now_ms();
        let handle = ConnHandle {
            id,
            source_ip,
            user_agent,
            connected_at_ms: now,
            last_active_ms: AtomicU64::new(now),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            tx,
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes: max_bytes,
            close: Mutex::new(None),
            closing: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            close_notify: Notify::new(),
        };
        (Arc::new(handle), Outbox { rx })
    }

    /// Records traffic now.
    pub fn touch(&self) {
        self.last_active_ms.store(now_ms(), Relaxed);
    }

    /// Queues a frame; on overflow asks the session to close as a slow consumer.
    pub fn push(&self, frame: Utf8Bytes) -> SendOutcome {
        if self.closing.load(Relaxed) {
            return SendOutcome::Gone;
        }
        let len = frame.len();
        if self.queued_bytes.fetch_add(len, Relaxed) + len > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(len, Relaxed);
            self.request_close(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full");
            return SendOutcome::Failed("slow consumer".into());
        }
        match self.tx.try_send(frame) {
            Ok(()) => SendOutcome::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(len, Relaxed);
                self.request_close(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full");
                SendOutcome::Failed("slow consumer".into())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued_bytes.fetch_sub(len, Relaxed);
                SendOutcome::Gone
            }
        }
    }

    /// Asks the session to close with `code`; the first request wins.
    pub fn request_close(&self, code: u16, reason: &str) {
        if self.closing.swap(true, Relaxed) {
            return;
        }
        if let Ok(mut c) = self.close.lock() {
            *c = Some(CloseRequest { code, reason: reason.chars().take(120).collect() });
        }
        self.close_notify.notify_one();
    }

    /// Whether a close was requested.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Relaxed)
    }

    /// Waits until a close is requested, then returns it.
    pub async fn closed(&self) -> CloseRequest {
        loop {
            if let Some(req) = self.close.lock().ok().and_then(|c| c.clone()) {
                return req;
            }
            self.close_notify.notified().await;
        }
    }

    /// Live details for GetConnection.
    pub fn live_info(&self) -> LiveInfo {
        LiveInfo {
            connected_at_ms: self.connected_at_ms,
            last_active_at_ms: self.last_active_ms.load(Relaxed),
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            messages_in: Some(self.messages_in.load(Relaxed)),
            messages_out: Some(self.messages_out.load(Relaxed)),
        }
    }
}

impl Outbox {
    /// Waits for the next frame.
    pub async fn recv(&mut self, handle: &ConnHandle) -> Option<Utf8Bytes> {
        let f = self.rx.recv().await?;
        handle.queued_bytes.fetch_sub(f.len(), Relaxed);
        Some(f)
    }

    /// Takes a queued frame without waiting.
    pub fn try_recv(&mut self, handle: &ConnHandle) -> Option<Utf8Bytes> {
        let f = self.rx.try_recv().ok()?;
        handle.queued_bytes.fetch_sub(f.len(), Relaxed);
        Some(f)
    }
}

/// Every live connection of this gateway.
#[derive(Default)]
pub struct Registry {
    conns: RwLock<HashMap<ConnId, Arc<ConnHandle>>>,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// An empty registry reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Registry { conns: RwLock::default(), metrics }
    }

    /// Adds a connection.
    pub fn insert(&self, handle: Arc<ConnHandle>) {
        if let Ok(mut m) = self.conns.write() {
            m.insert(handle.id.clone(), handle);
            self.metrics.live_connections.store(m.len() as i64, Relaxed);
        }
    }

    /// Removes a connection; returns whether it was there.
    pub fn remove(&self, id: &str) -> bool {
        match self.conns.write() {
            Ok(mut m) => {
                let was = m.remove(id).is_some();
                self.metrics.live_connections.store(m.len() as i64, Relaxed);
                was
            }
            Err(_) => false,
        }
    }

    /// One connection.
    pub fn get(&self, id: &str) -> Option<Arc<ConnHandle>> {
        self.conns.read().ok()?.get(id).cloned()
    }

    /// One connection unless it is already being closed: a closing connection takes no
    /// more data, so to the management API it is gone.
    pub fn live(&self, id: &str) -> Option<Arc<ConnHandle>> {
        self.get(id).filter(|h| !h.is_closing())
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.conns.read().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `msg` to each of `ids` under one read lock; ids not here (or closing) go to
    /// `gone`. Returns (delivered, failed).
    pub fn push_many<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        msg: &Utf8Bytes,
        gone: &mut Vec<ConnId>,
    ) -> (usize, usize) {
        let (mut delivered, mut failed) = (0, 0);
        let Ok(map) = self.conns.read() else { return (0, ids.into_iter().count()) };
        for id in ids {
            match map.get(id).map(|h| h.push(msg.clone())) {
                Some(SendOutcome::Delivered) => delivered += 1,
                Some(SendOutcome::Failed(_)) => failed += 1,
                Some(SendOutcome::Gone) | None => gone.push(ConnId::from(id)),
            }
        }
        (delivered, failed)
    }

    /// A snapshot of every handle (for sweeps and shutdown).
    pub fn all(&self) -> Vec<Arc<ConnHandle>> {
        self.conns.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}

/// [`Sender`] into the local gateway's connection queues; with a node bus (several
/// gateways on one Redis), connections of other nodes are reached through their node.
pub struct LocalSender {
    registry: Arc<Registry>,
    node: Option<Arc<NodeBus>>,
}

impl LocalSender {
    /// A sender over `registry`, and over `node`'s peers when given.
    pub fn new(registry: Arc<Registry>, node: Option<Arc<NodeBus>>) -> Self {
        LocalSender { registry, node }
    }

    /// The bus, when `conn` belongs to another node.
    fn remote(&self, conn: &str) -> Option<&NodeBus> {
        self.node.as_deref().filter(|bus| !bus.is_local(conn))
    }

    /// Hands `frame` to another node for `ids` (all of that node). A node that did not
    /// listen is gone (its connections with it) only once its claim has lapsed.
    async fn forward(&self, bus: &NodeBus, node: &str, ids: &[&str], frame: &Frame) -> SendOutcome {
        match bus.forward(node, ids, frame).await {
            Ok(true) => SendOutcome::Delivered,
            Ok(false) => match bus.is_live(node).await {
                Ok(false) => SendOutcome::Gone,
                Ok(true) => SendOutcome::Failed(format!("gateway node {node} is not listening")),
                Err(e) => SendOutcome::Failed(e.to_string()),
            },
            Err(e) => SendOutcome::Failed(e.to_string()),
        }
    }
}

fn text(frame: &Frame) -> Utf8Bytes {
    // Frames are built from Strings; the check runs once per frame, not per receiver.
    Utf8Bytes::try_from(frame.bytes().clone()).unwrap_or_else(|_| Utf8Bytes::from_static(""))
}

#[async_trait]
impl Sender for LocalSender {
    async fn send(&self, conn: &str, frame: &Frame) -> SendOutcome {
        if let Some(bus) = self.remote(conn) {
            return self.forward(bus, node_of(conn), &[conn], frame).await;
        }
        match self.registry.get(conn) {
            Some(h) => h.push(text(frame)),
            None => SendOutcome::Gone,
        }
    }

    async fn send_many(&self, conns: &[ConnId], frame: &Frame) -> FanoutReport {
        let msg = text(frame);
        let mut report = FanoutReport::default();
        let mut remote: BTreeMap<&str, Vec<&ConnId>> = BTreeMap::new();
        let local = conns.iter().filter(|id| match self.remote(id) {
            Some(_) => {
                remote.entry(node_of(id)).or_default().push(id);
                false
            }
            None => true,
        });
        (report.delivered, report.failed) =
            self.registry.push_many(local.map(|id| id.as_ref()), &msg, &mut report.gone);
        if let Some(bus) = self.node.as_deref() {
            for (node, ids) in remote {
                let refs: Vec<&str> = ids.iter().map(|id| id.as_ref()).collect();
                match self.forward(bus, node, &refs, frame).await {
                    SendOutcome::Delivered => report.delivered += ids.len(),
                    SendOutcome::Gone => report.gone.extend(ids.into_iter().cloned()),
                    SendOutcome::Failed(why) => {
                        tracing::warn!(node, connections = ids.len(), error = %why, "could not reach another gateway node");
                        report.failed += ids.len();
                    }
                }
            }
        }
        report
    }

    async fn disconnect(&self, conn: &str) -> Result<bool, SendError> {
        if let Some(bus) = self.remote(conn) {
            return match bus.request(NodeOp::Kick, conn).await {
                Ok(answer) => Ok(answer == NodeAnswer::Kicked),
                Err(e) => Err(SendError(e.to_string())),
            };
        }
        match self.registry.live(conn) {
            Some(h) => {
                h.request_close(CLOSE_KICKED, "disconnected by DeleteConnection");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn info(&self, conn: &str) -> Result<Option<LiveInfo>, SendError> {
        if let Some(bus) = self.remote(conn) {
            return match bus.request(NodeOp::Info, conn).await {
                Ok(NodeAnswer::Info(info)) => Ok(Some(info)),
                Ok(_) => Ok(None),
                Err(e) => Err(SendError(e.to_string())),
            };
        }
        Ok(self.registry.live(conn).map(|h| h.live_info()))
    }
}
