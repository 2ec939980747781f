//! The gateway's HTTP surface called in-process through [`app`] (no socket): the
//! management API's answers as the ApiGatewayManagementApi model shapes them, and
//! `/@admin` running the real admin handler on the embedded stores.

use super::registry::{ConnHandle, Outbox};
use super::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "test-admin-token";
/// What the SDK sends: only the presence of a SigV4 signature is checked locally.
const SIGNED: &str = "AWS4-HMAC-SHA256 Credential=x/20261204/us-east-1/execute-api/aws4_request";

fn gateway() -> Arc<Gateway> {
    let limits = Limits::default();
    let settings = GatewaySettings {
        stage: "local".into(),
        admin_token: TOKEN.into(),
        read_buffer: 2048,
        management: http::ManagementEmulation::default(),
    };
    Arc::new(Gateway::new(&GatewayStores::embedded(limits.room_history), &limits, settings))
}

/// A live connection registered as a WebSocket session would register it.
fn connect(gw: &Gateway, id: &str) -> (Arc<ConnHandle>, Outbox) {
    let (handle, outbox) = ConnHandle::new(id.into(), "203.0.113.9".into(), "test-agent/1".into(), 16, 1 << 20);
    gw.registry.insert(handle.clone());
    (handle, outbox)
}

async fn call(
    gw: &Arc<Gateway>,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, Value, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let request = request.body(Body::from(body.to_owned())).expect("a valid request");
    let response = app(gw.clone()).oneshot(request).await.expect("the router never fails");
    let status = response.status();
    let kind = response.headers().get("x-amzn-ErrorType").map(|v| v.to_str().unwrap_or("").to_owned());
    let bytes = response.into_body().collect().await.expect("a body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body, kind.unwrap_or_default())
}

/// One admin request; every reply, errors included, is a typed document with 200.
async fn admin(gw: &Arc<Gateway>, request: Value) -> Value {
    let (status, body, _) =
        call(gw, Method::POST, "/@admin", Some(&format!("Bearer {TOKEN}")), &request.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{request} → {body}");
    body
}

#[tokio::test]
async fn post_to_connection_delivers_the_body_as_one_frame_and_answers_200_without_a_body() {
    let gw = gateway();
    let (handle, mut outbox) = connect(&gw, "conn-1");
    for uri in ["/@connections/conn-1", "/local/@connections/conn-1"] {
        let (status, body, _) = call(&gw, Method::POST, uri, Some(SIGNED), r#"{"hello":1}"#).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(body, Value::String(String::new()), "POST answers with no body");
        let frame = outbox.try_recv(&handle).expect("the frame was queued to the connection");
        assert_eq!(frame.as_str(), r#"{"hello":1}"#);
    }
}

#[tokio::test]
async fn get_connection_answers_the_service_models_fields() {
    let gw = gateway();
    let (_handle, _outbox) = connect(&gw, "conn-2");
    let (status, body, _) = call(&gw, Method::GET, "/@connections/conn-2", Some(SIGNED), "").await;
    assert_eq!(status, StatusCode::OK);
    let fields: Vec<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(fields, ["connectedAt", "identity", "lastActiveAt"]);
    let connected = body["connectedAt"].as_str().expect("connectedAt is a string");
    assert!(connected.ends_with('Z') && connected.contains('T'), "ISO-8601 UTC: {connected}");
    assert_eq!(body["identity"], json!({ "sourceIp": "203.0.113.9", "userAgent": "test-agent/1" }));
}

#[tokio::test]
async fn delete_connection_closes_it_with_204_and_then_it_is_gone() {
    let gw = gateway();
    let (handle, _outbox) = connect(&gw, "conn-3");
    let (status, _, _) = call(&gw, Method::DELETE, "/@connections/conn-3", Some(SIGNED), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(handle.is_closing(), "the session was asked to close");
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let (status, body, kind) = call(&gw, method.clone(), "/@connections/conn-3", Some(SIGNED), "x").await;
        assert_eq!((status, kind.as_str()), (StatusCode::GONE, "GoneException"), "{method} after DELETE");
        assert!(body["message"].is_string(), "errors carry {{\"message\"}}: {body}");
    }
}

#[tokio::test]
async fn the_management_api_refuses_unsigned_calls_and_oversized_payloads() {
    let gw = gateway();
    let (_handle, _outbox) = connect(&gw, "conn-4");
    let (status, body, kind) = call(&gw, Method::POST, "/@connections/conn-4", None, "hi").await;
    assert_eq!((status, kind.as_str()), (StatusCode::FORBIDDEN, "ForbiddenException"));
    assert!(body["message"].as_str().is_some_and(|m| m.contains("SigV4")), "{body}");
    let too_big = "x".repeat(gw.services.limits.max_message_bytes + 1);
    let (status, _, kind) = call(&gw, Method::POST, "/@connections/conn-4", Some(SIGNED), &too_big).await;
    assert_eq!((status, kind.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException"));
    let (status, _, kind) = call(&gw, Method::GET, "/@connections/nobody", Some(SIGNED), "").await;
    assert_eq!((status, kind.as_str()), (StatusCode::GONE, "GoneException"));
}

#[tokio::test]
async fn admin_needs_the_bearer_token() {
    let gw = gateway();
    for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
        let (status, body, _) = call(&gw, Method::POST, "/@admin", auth, r#"{"op":"list_keys"}"#).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(body.as_str().is_some_and(|b| b.contains("admin token")), "{body}");
    }
}

#[tokio::test]
async fn admin_refuses_a_malformed_request_with_400() {
    let gw = gateway();
    let auth = format!("Bearer {TOKEN}");
    let (status, body, _) = call(&gw, Method::POST, "/@admin", Some(&auth), r#"{"op":"drop_everything"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.as_str().is_some_and(|b| b.starts_with("malformed admin request")), "{body}");
}

#[tokio::test]
async fn admin_runs_the_key_lifecycle_on_the_stores() {
    let gw = gateway();
    let created =
        admin(&gw, json!({ "op": "create_key", "name": "ci", "scopes": "publish", "max_connections": 3 })).await;
    assert_eq!(created["kind"], "key_created");
    let key_id = created["record"]["keyId"].as_str().expect("a key id").to_owned();
    assert!(created["key"].as_str().is_some_and(|k| !k.is_empty()), "the raw key, once: {created}");
    assert_eq!(created["record"]["maxConnections"], 3);

    let listed = admin(&gw, json!({ "op": "list_keys" })).await;
    assert_eq!(listed["kind"], "keys");
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["keys"][0]["keyId"], key_id.as_str());
    assert!(listed["keys"][0].get("hash").is_none(), "hashes never leave the store");

    let revoked = admin(&gw, json!({ "op": "revoke_key", "key_id": key_id })).await;
    assert_eq!(revoked["kind"], "key_revoked");
    assert!(revoked["record"]["revokedAt"].is_u64(), "{revoked}");
}

#[tokio::test]
async fn admin_answers_an_unknown_connection_with_the_not_found_code() {
    let gw = gateway();
    // An admin error is a typed reply with 200, not an HTTP error (`admin` checks the status).
    let reply = admin(&gw, json!({ "op": "show_connection", "connection_id": "nobody" })).await;
    assert_eq!(reply["kind"], "error");
    assert_eq!(reply["code"], "not_found");
}

#[tokio::test]
async fn admin_publish_reaches_a_subscribed_connection() {
    let gw = gateway();
    let (handle, mut outbox) = connect(&gw, "conn-5");
    let room = wsctl_handlers::room::RoomName::parse("tvl:one", 128).expect("a valid room");
    gw.services.rooms.subscribe("conn-5", &room, None, 10).await.expect("subscribes");
    let reply = admin(&gw, json!({ "op": "publish", "room": "tvl:one", "data": { "tvl": 1 } })).await;
    assert_eq!(reply["kind"], "published", "{reply}");
    assert_eq!(reply["report"]["subscribers"], 1);
    assert_eq!(reply["report"]["delivered"], 1);
    let frame: Value = serde_json::from_str(outbox.try_recv(&handle).expect("delivered").as_str()).expect("JSON");
    assert_eq!((frame["room"].clone(), frame["data"].clone()), (json!("tvl:one"), json!({ "tvl": 1 })));
}

#[tokio::test]
async fn a_websocket_client_subscribes_and_receives_a_publish_from_the_gateway_in_process_on_port_0() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let gw = gateway();
    let created = admin(&gw, json!({ "op": "create_key", "name": "ws", "scopes": "subscribe" })).await;
    let key = created["key"].as_str().expect("a raw key").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(gw.clone(), listener, &Limits::default(), async move {
        let _ = stopped.await;
    }));

    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/local?apiKey={key}")).await.expect("upgrade");
    ws.send(Message::text(r#"{"action":"subscribe","room":"tvl:ws"}"#)).await.expect("send");
    let next = |frame: Option<Result<Message, _>>| -> Value {
        let text = frame.expect("a frame").expect("not an error").into_text().expect("text");
        serde_json::from_str(text.as_str()).expect("JSON")
    };
    let subscribed = next(ws.next().await);
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(gw.registry.len(), 1, "the session registered its connection");

    let reply = admin(&gw, json!({ "op": "publish", "room": "tvl:ws", "data": { "tvl": 2 } })).await;
    assert_eq!(reply["report"]["delivered"], 1, "{reply}");
    let message = next(ws.next().await);
    assert_eq!((message["type"].clone(), message["data"].clone()), (json!("message"), json!({ "tvl": 2 })));

    // Without a key the upgrade is refused, as API Gateway refuses $connect.
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/local")).await;
    assert!(refused.is_err(), "no key, no connection");
    let _ = stop.send(());
    server.await.expect("the accept loop ends on shutdown");
}
