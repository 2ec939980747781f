//! This gateway as one node of several sharing a Redis: what it does with the messages
//! other nodes (and its own publishes) put on its channel. See
//! [`wsctl_handlers::store::node_bus`] for the protocol.

use super::registry::{Registry, CLOSE_KICKED};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use wsctl_handlers::protocol::Frame;
use wsctl_handlers::room::RoomName;
use wsctl_handlers::service::Services;
use wsctl_handlers::store::node_bus::{NodeAnswer, NodeHandler, NodeOp};

/// Delivers the node channel's messages to this gateway's connections.
pub struct GatewayNode {
    /// The live connections.
    pub registry: Arc<Registry>,
    /// The handlers (weak: they hold the bus, which holds this).
    pub services: Weak<Services>,
}

impl NodeHandler for GatewayNode {
    fn deliver(&self, room: Option<&str>, ids: Vec<&str>, frame: Frame) {
        let Some(services) = self.services.upgrade() else { return };
        let text = axum::extract::ws::Utf8Bytes::from(frame.as_str());
        let mut gone = Vec::new();
        let (delivered, failed) = self.registry.push_many(ids, &text, &mut gone);
        services.metrics.deliveries.fetch_add(delivered as u64, Relaxed);
        services.metrics.delivery_failures.fetch_add(failed as u64, Relaxed);
        if gone.is_empty() {
            return;
        }
        // Connections of this node that ended: as API Gateway's 410, prune them (off the
        // channel's reader, which must keep up with the next publishes).
        let room = room.and_then(|r| RoomName::parse(r, usize::MAX).ok());
        tokio::spawn(async move {
            services.prune(&gone, room.as_ref()).await;
        });
    }

    fn answer(&self, op: NodeOp, conn: &str) -> NodeAnswer {
        let Some(handle) = self.registry.live(conn) else {
            return NodeAnswer::Gone;
        };
        match op {
            NodeOp::Info => NodeAnswer::Info(handle.live_info()),
            NodeOp::Kick => {
                handle.request_close(CLOSE_KICKED, "disconnected by DeleteConnection");
                NodeAnswer::Kicked
            }
        }
    }
}
