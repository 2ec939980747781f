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
//!
//! [`ManagementEmulation`] makes the endpoint behave like the one a Lambda in a VPC reaches
//! through NAT: every call waits a fixed latency plus uniform jitter, and calls beyond a
//! token bucket (API Gateway's account-wide 10,000 requests/s, burst 5,000) get
//! `LimitExceededException` 429, so the Lambda fan-out path is measured against AWS-like
//! behaviour (`benches/lambda_fanout.rs`).

use super::Gateway;
use aws_sdk_apigatewaymanagement::primitives::{DateTime, DateTimeFormat};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsctl_handlers::admin::AdminRequest;
use wsctl_handlers::auth::hashes_match;
use wsctl_handlers::protocol::Frame;
use wsctl_handlers::ratelimit::TokenBucket;
use wsctl_handlers::sender::SendOutcome;
use wsctl_handlers::store::node_bus::NodeBus;

/// An error shaped as the service model's exceptions (what every SDK turns into a typed error).
fn aws_error(status: StatusCode, kind: &'static str, message: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "message": message }))).into_response();
    r.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
    r
}

/// `wsctl dev` options that make `@connections` answer like API Gateway seen from a Lambda
/// in a VPC (all off by default: the endpoint answers at once and never throttles).
#[derive(Debug, Clone, Default)]
pub struct ManagementEmulationArgs {
    /// Added latency of every `@connections` call, ms (20 is typical from a VPC Lambda through NAT).
    pub management_latency_ms: u64,
    /// Uniform jitter around the latency, ms: each call waits latency ± jitter.
    pub management_jitter_ms: u64,
    /// `@connections` requests per second before 429 `LimitExceededException` (token bucket;
    /// API Gateway's account default is 10000). 0: no limit.
    pub management_rate_limit: u32,
    /// Bucket size of --management-rate-limit (default: half the rate, as API Gateway's 10,000/5,000).
    pub management_burst: Option<u32>,
}

/// Latency and throttling applied to every `@connections` call (see the module docs).
#[derive(Debug, Default)]
pub struct ManagementEmulation {
    latency: Duration,
    jitter: Duration,
    bucket: Option<Mutex<TokenBucket>>,
    rate: (u32, u32),
    /// Calls answered 429 by the emulated bucket (`wsctl_management_throttled_total`).
    throttled: std::sync::atomic::AtomicU64,
}

impl ManagementEmulation {
    /// From the `wsctl dev` options; a jitter larger than the latency is refused.
    pub fn new(args: &ManagementEmulationArgs) -> anyhow::Result<Self> {
        if args.management_jitter_ms > args.management_latency_ms {
            anyhow::bail!(
                "--management-jitter-ms {} exceeds --management-latency-ms {}: a call cannot take less than 0 ms; \
                 lower the jitter or raise the latency",
                args.management_jitter_ms,
                args.management_latency_ms
            );
        }
        let rate =
            (args.management_rate_limit, args.management_burst.unwrap_or((args.management_rate_limit / 2).max(1)));
        let bucket = (rate.0 > 0).then(|| Mutex::new(TokenBucket::new(rate.0, rate.1)));
        Ok(ManagementEmulation {
            latency: Duration::from_millis(args.management_latency_ms),
            jitter: Duration::from_millis(args.management_jitter_ms),
            bucket,
            rate,
            throttled: Default::default(),
        })
    }

    /// Whether any emulation is on (for the banner).
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.latency.is_zero() {
            parts.push(format!("{} ms ± {} ms latency", self.latency.as_millis(), self.jitter.as_millis()));
        }
        if self.bucket.is_some() {
            parts.push(format!("{} requests/s (burst {}), 429 beyond", self.rate.0, self.rate.1));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Waits the call's latency, then takes a token: `Some(429)` when the bucket is empty.
    async fn admit(&self) -> Option<Response> {
        if !self.latency.is_zero() {
            let wait = if self.jitter.is_zero() {
                self.latency
            } else {
                use rand::RngExt;
                let j = self.jitter.as_micros() as i64;
                let delta = rand::rng().random_range(-j..=j);
                Duration::from_micros((self.latency.as_micros() as i64 + delta).max(0) as u64)
            };
            tokio::time::sleep(wait).await;
        }
        let bucket = self.bucket.as_ref()?;
        let admitted = bucket.lock().map(|mut b| b.try_take()).unwrap_or(true);
        if admitted {
            return None;
        }
        self.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(aws_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException", "Rate exceeded"))
    }
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
    if let Some(throttled) = gw.management.admit().await {
        return throttled;
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
    // One path for every connection: the sender delivers to this node's connections and
    // forwards to the node that holds any other.
    match gw.services.sender.send(id, &Frame::from(text.as_str().to_owned())).await {
        SendOutcome::Delivered => StatusCode::OK.into_response(),
        SendOutcome::Gone => gone(),
        SendOutcome::Failed(why) => match remote(&gw, id) {
            Some(bus) => unreachable_node(bus, id, &why),
            // The model's answer for a full client-side buffer; the connection is being
            // closed as a slow consumer, so a retry gets 410.
            None => aws_error(
                StatusCode::TOO_MANY_REQUESTS,
                "LimitExceededException",
                &format!("the connection cannot take more data ({why}); it is being closed"),
            ),
        },
    }
}

/// `GET @connections/{id}`: `connectedAt`, `lastActiveAt` (ISO-8601) and `identity`, the
/// wire names of the ApiGatewayManagementApi service model (what every AWS SDK reads).
pub async fn get_connection(
    State(gw): State<Arc<Gateway>>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Some(throttled) = gw.management.admit().await {
        return throttled;
    }
    if let Some(refused) = unsigned(&headers) {
        return refused;
    }
    let Some(id) = connection_param(&params) else { return gone() };
    let info = match gw.services.sender.info(id).await {
        Ok(Some(info)) => info,
        Ok(None) => return gone(),
        Err(e) => return unreachable(&gw, id, &e.to_string()),
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
    if let Some(throttled) = gw.management.admit().await {
        return throttled;
    }
    if let Some(refused) = unsigned(&headers) {
        return refused;
    }
    let Some(id) = connection_param(&params) else { return gone() };
    match gw.services.sender.disconnect(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => gone(),
        Err(e) => unreachable(&gw, id, &e.to_string()),
    }
}

/// The node bus, when `id` belongs to another gateway node sharing this Redis.
fn remote<'a>(gw: &'a Gateway, id: &str) -> Option<&'a NodeBus> {
    gw.node.as_deref().filter(|bus| !bus.is_local(id))
}

/// 500 for a request the sender could not complete: only another node's connection can
/// fail that way (this node answers its own at once).
fn unreachable(gw: &Gateway, id: &str, why: &str) -> Response {
    match remote(gw, id) {
        Some(bus) => unreachable_node(bus, id, why),
        None => aws_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerErrorException", why),
    }
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
    let mut text = gw.services.metrics.prometheus();
    let throttled = gw.management.throttled.load(std::sync::atomic::Ordering::Relaxed);
    text.push_str(
        "# HELP wsctl_management_throttled_total @connections calls answered 429 by --management-rate-limit.\n",
    );
    text.push_str("# TYPE wsctl_management_throttled_total counter\n");
    text.push_str(&format!("wsctl_management_throttled_total {throttled}\n"));
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}
