//! The gateway's HTTP side: the management API (`POST/GET/DELETE /@connections/{id}`,
//! shaped like API Gateway's so the real SDK client works against it), the operator
//! endpoint `/@admin` (bearer token), `/metrics` and `/healthz`.
//!
//! The management API follows the ApiGatewayManagementApi service model (botocore's
//! `apigatewaymanagementapi/2018-11-29/service-2.json`): POST answers 200 with no body,
//! GET 200 with `connectedAt`/`lastActiveAt` (ISO-8601) and `identity`, DELETE 204; errors
//! carry the exception name in `x-amzn-ErrorType` and a `{"message": …}` body:
//! `ForbiddenException` 403, `GoneException` 410, `PayloadTooLargeException` 413 and
//! `LimitExceededException` 429. `tests/management_api.rs` reads every field with the
//! Rust SDK and `tests/clients/independent.py` with boto3.

use super::registry::ConnHandle;
use super::Gateway;
use aws_sdk_apigatewaymanagement::primitives::{DateTime, DateTimeFormat};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use wsctl_handlers::admin::AdminRequest;
use wsctl_handlers::auth::hashes_match;
use wsctl_handlers::protocol::Frame;
use wsctl_handlers::sender::SendOutcome;
use wsctl_handlers::store::node_bus::NodeBus;

/// An error shaped as the service model's exceptions (what every SDK turns into a typed error).
fn aws_error(status: StatusCode, kind: &'static str, message: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "message": message }))).into_response();
    r.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
    r
}

fn gone() -> Response {
    aws_error(StatusCode::GONE, "GoneException", "connection is gone")
}

/// 403 `ForbiddenException` unless the request is SigV4-signed, as API Gateway answers an
/// unsigned call. Only the presence of a signature is checked: there are no IAM credentials
/// locally, so this is not access control (the gateway listens on loopback by default).
fn unsigned(headers: &HeaderMap) -> Option<Response> {
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    (!signed).then(|| {
        aws_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "Missing Authentication Token (sign the request with SigV4)",
        )
    })
}

fn iso(ms: u64) -> String {
    DateTime::from_millis(ms as i64).fmt(DateTimeFormat::DateTime).unwrap_or_default()
}

/// `POST @connections/{id}`: the body becomes one frame to that connection.
pub async fn post_to_connection(
    State(gw): State<Arc<Gateway>>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = unsigned(&headers) {
        return refused;
    }
    let Some(id) = connection_param(&params) else { return gone() };
    let limit = gw.services.limits.max_message_bytes;
    if body.len() > limit {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            &format!("payload exceeds {limit} bytes"),
        );
    }
    let Ok(text) = axum::extract::ws::Utf8Bytes::try_from(body) else {
        return aws_error(StatusCode::BAD_REQUEST, "BadRequestException", "payload must be UTF-8 text");
    };
    if let Some(bus) = remote(&gw, id) {
        // Another gateway node's connection: its node delivers it.
        return match gw.services.sender.send(id, &Frame::from(text.as_str().to_owned())).await {
            SendOutcome::Delivered => StatusCode::OK.into_response(),
            SendOutcome::Gone => gone(),
            SendOutcome::Failed(why) => unreachable_node(bus, id, &why),
        };
    }
    let Some(handle) = gw.registry.get(id) else { return gone() };
    match handle.push(text) {
        SendOutcome::Delivered => StatusCode::OK.into_response(),
        SendOutcome::Gone => gone(),
        // The model's answer for a full client-side buffer; the connection is being closed
        // as a slow consumer, so a retry gets 410.
        SendOutcome::Failed(why) => aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            &format!("the connection cannot take more data ({why}); it is being closed"),
        ),
    }
}

/// `GET @connections/{id}`: `connectedAt`, `lastActiveAt` (ISO-8601) and `identity`, the
/// wire names of the ApiGatewayManagementApi service model (what every AWS SDK reads).
pub async fn get_connection(
    State(gw): State<Arc<Gateway>>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unsigned(&headers) {
        return refused;
    }
    let info = match connection_param(&params).map(|id| (id, remote(&gw, id))) {
        Some((id, Some(bus))) => match gw.services.sender.info(id).await {
            Ok(Some(info)) => info,
            Ok(None) => return gone(),
            Err(e) => return unreachable_node(bus, id, &e.to_string()),
        },
        _ => match live(&gw, &params) {
            Some(h) => h.live_info(),
            None => return gone(),
        },
    };
    axum::Json(serde_json::json!({
        "connectedAt": iso(info.connected_at_ms),
        "lastActiveAt": iso(info.last_active_at_ms),
        "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
    }))
    .into_response()
}

/// `DELETE @connections/{id}`: closes the connection; its `$disconnect` runs.
pub async fn delete_connection(
    State(gw): State<Arc<Gateway>>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unsigned(&headers) {
        return refused;
    }
    if let Some((id, bus)) = connection_param(&params).and_then(|id| Some((id, remote(&gw, id)?))) {
        return match gw.services.sender.disconnect(id).await {
            Ok(true) => StatusCode::NO_CONTENT.into_response(),
            Ok(false) => gone(),
            Err(e) => unreachable_node(bus, id, &e.to_string()),
        };
    }
    let Some(h) = live(&gw, &params) else { return gone() };
    h.request_close(super::registry::CLOSE_KICKED, "disconnected by DeleteConnection");
    StatusCode::NO_CONTENT.into_response()
}

/// The node bus, when `id` belongs to another gateway node sharing this Redis.
fn remote<'a>(gw: &'a Gateway, id: &str) -> Option<&'a NodeBus> {
    gw.node.as_deref().filter(|bus| !bus.is_local(id))
}

/// 500, as API Gateway's answer when it cannot reach a connection's node.
fn unreachable_node(bus: &NodeBus, id: &str, why: &str) -> Response {
    tracing::warn!(node = bus.tag(), connection_id = id, error = why, "another gateway node did not take the request");
    aws_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerErrorException",
        "the gateway node holding this connection did not answer; retry",
    )
}

/// The connection named in the path, unless it is gone or already being closed (a closing
/// connection takes no more data, so to the management API it is gone).
fn live(gw: &Gateway, params: &[(String, String)]) -> Option<Arc<ConnHandle>> {
    connection_param(params).and_then(|id| gw.registry.get(id)).filter(|h| !h.is_closing())
}

fn connection_param(params: &[(String, String)]) -> Option<&str> {
    params.iter().find(|(k, _)| k == "id").map(|(_, v)| v.as_str())
}

/// `POST /@admin`: one typed operator request (the same the `admin` Lambda serves).
pub async fn admin(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !hashes_match(presented, &gw.admin_token) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong admin token (see the gateway's state directory)\n")
            .into_response();
    }
    let request: AdminRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("malformed admin request: {e}\n")).into_response(),
    };
    axum::Json(gw.services.admin(request).await).into_response()
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let mut r = gw.services.metrics.prometheus().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}
