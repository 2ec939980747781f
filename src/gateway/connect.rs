//! `$connect` at the local gateway: admission control, the authorizer, the `connect`
//! handler, then the upgrade, in API Gateway's order. A refused connect never upgrades.

use super::registry::ConnHandle;
use super::{session, Gateway};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use wsctl_handlers::auth::{extract_key, Denied};
use wsctl_handlers::service::{ConnectError, ConnectInfo as HandlerConnectInfo};
use wsctl_handlers::store::{now_ms, ConnId};

/// A random token: 12 random bytes, URL-safe base64 (16 characters).
pub fn new_connection_id() -> String {
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An API Gateway-style connection id (16 URL-safe characters) minted by node `node`:
/// its tag, then 9 random bytes, so any node sharing the Redis can tell whose it is.
pub fn connection_id_on(node: &str) -> String {
    let mut b = [0u8; 9];
    rand::rng().fill_bytes(&mut b);
    format!("{node}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn refuse(gw: &Gateway, status: StatusCode, message: &str) -> Response {
    gw.services.metrics.connects_refused.fetch_add(1, Relaxed);
    let mut r = (status, format!("{message}\n")).into_response();
    if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

/// Any path other than the stage's: 403, as API Gateway answers a path it does not serve.
pub async fn wrong_stage(State(gw): State<Arc<Gateway>>) -> Response {
    refuse(&gw, StatusCode::FORBIDDEN, &format!("Forbidden: this gateway serves the stage path /{}", gw.stage))
}

/// The WebSocket route (`GET /{stage}` with an upgrade).
pub async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stage): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if stage != gw.stage {
        return wrong_stage(State(gw)).await;
    }
    if gw.shutting_down.load(Relaxed) {
        return refuse(&gw, StatusCode::SERVICE_UNAVAILABLE, "gateway is shutting down");
    }
    let source = peer.ip();
    if !gw.refusals.allows(source) {
        return refuse(&gw, StatusCode::TOO_MANY_REQUESTS, "too many refused connects from this address; retry later");
    }
    // A refusal by the authorizer costs this source's refusal budget, never the node's.
    let denied = |d: Denied| {
        gw.refusals.charge(source);
        tracing::info!(peer = %peer, reason = ?d, "connect refused");
        let status = StatusCode::from_u16(d.status()).unwrap_or(StatusCode::FORBIDDEN);
        refuse(&gw, status, &d.to_string())
    };
    let header_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let Some(key) = extract_key(query.get("apiKey").map(String::as_str), header_key) else {
        return denied(Denied::MissingKey);
    };
    let limits = &gw.services.limits;
    if gw.registry.len() >= limits.max_connections {
        return refuse(&gw, StatusCode::SERVICE_UNAVAILABLE, "connection limit of this gateway reached; retry later");
    }
    let identity = match gw.services.authorize(Some(key)).await {
        Ok(identity) => identity,
        Err(ConnectError::Denied(d)) => return denied(d),
        Err(ConnectError::Store(e)) => {
            tracing::error!(error = %e, "authorizer failed");
            return refuse(&gw, StatusCode::INTERNAL_SERVER_ERROR, "authorizer failed; retry later");
        }
    };
    // The node's connect budget is spent on authorized connects only: refused ones are
    // bounded per source above, so a flood of them cannot starve valid clients.
    if !gw.admit() {
        return refuse(&gw, StatusCode::SERVICE_UNAVAILABLE, "too many new connections per second; retry later");
    }
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let id: ConnId = ConnId::from(connection_id_on(&gw.node_tag));
    let info = HandlerConnectInfo {
        connection_id: id.to_string(),
        identity: identity.clone(),
        source_ip: peer.ip().to_string(),
        user_agent: user_agent.clone(),
        connected_at_ms: now_ms(),
    };
    match gw.services.connect(&info).await {
        Ok(()) => {}
        Err(ConnectError::Denied(d)) => {
            tracing::info!(peer = %peer, reason = %d, "connect refused");
            return refuse(&gw, StatusCode::FORBIDDEN, &d.to_string());
        }
        Err(ConnectError::Store(e)) => {
            tracing::error!(error = %e, "connect handler failed");
            return refuse(&gw, StatusCode::INTERNAL_SERVER_ERROR, "could not record the connection; retry later");
        }
    }
    let (handle, outbox) =
        ConnHandle::new(id, info.source_ip, user_agent, limits.outbound_queue_messages, limits.outbound_queue_bytes);
    gw.registry.insert(handle.clone());
    let failed = (gw.clone(), handle.clone());
    ws.read_buffer_size(gw.read_buffer)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .max_write_buffer_size(limits.outbound_queue_bytes + limits.max_message_bytes * 2)
        .on_failed_upgrade(move |e| {
            tracing::debug!(error = %e, "upgrade failed");
            let (gw, handle) = failed;
            tokio::spawn(async move { gw.finish(&handle).await });
        })
        .on_upgrade(move |socket| session::run(gw, handle, identity, outbox, socket))
}
