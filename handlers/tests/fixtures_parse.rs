//! The API Gateway–shaped fixtures of `tests/fixtures/apigw/` parse with the event types the
//! Lambda binaries use, and carry what the handlers read.
//!
//! The handler fixture tests sit beside this file; they load the same events with
//! `wsctl_testkit::apigw_fixture_with_key(name, key)`.

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest};
use serde_json::Value;
use wsctl_testkit::{apigw_fixture, apigw_fixture_with_key, KEY_PLACEHOLDER};

const CONNECTION_ID: &str = "Pq3x9cVvIAMCJbA=";
const METHOD_ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect";

fn ws_event(name: &str) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_str(&apigw_fixture(name))
        .unwrap_or_else(|e| panic!("{name} is not an ApiGatewayWebsocketProxyRequest: {e}"))
}

fn authorizer_event(name: &str, key: &str) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    serde_json::from_str(&apigw_fixture_with_key(name, key))
        .unwrap_or_else(|e| panic!("{name} is not an ApiGatewayCustomAuthorizerRequestTypeRequest: {e}"))
}

/// The authorizer context as API Gateway flattens it into `requestContext.authorizer`.
fn authorizer_context(ev: &ApiGatewayWebsocketProxyRequest, key: &str) -> Option<String> {
    ev.request_context.authorizer.fields.get(key).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn assert_common(ev: &ApiGatewayWebsocketProxyRequest, event_type: &str, route_key: &str) {
    let rc = &ev.request_context;
    assert_eq!(rc.event_type.as_deref(), Some(event_type));
    assert_eq!(rc.route_key.as_deref(), Some(route_key));
    assert_eq!(rc.connection_id.as_deref(), Some(CONNECTION_ID));
    assert_eq!(rc.apiid.as_deref(), Some("abcdef1234"));
    assert_eq!(rc.stage.as_deref(), Some("dev"));
    assert_eq!(rc.domain_name.as_deref(), Some("abcdef1234.execute-api.us-east-1.amazonaws.com"));
    assert_eq!(rc.identity.source_ip.as_deref(), Some("198.51.100.23"));
    assert!(rc.identity.user_agent.is_some());
    assert!(rc.connected_at > 0 && rc.request_time_epoch >= rc.connected_at);
    assert!(rc.request_id.is_some());
}

#[test]
fn connect_event() {
    let ev = ws_event("connect.json");
    assert_common(&ev, "CONNECT", "$connect");
    assert_eq!(ev.query_string_parameters.first("apiKey"), Some(KEY_PLACEHOLDER));
    assert!(ev.headers.get("x-api-key").is_none(), "the key comes in the query string here");
    assert_eq!(
        ev.headers.get("host").and_then(|h| h.to_str().ok()),
        Some("abcdef1234.execute-api.us-east-1.amazonaws.com")
    );
    assert_eq!(authorizer_context(&ev, "keyId").as_deref(), Some("key-7f3a9c2e"));
    assert_eq!(authorizer_context(&ev, "scopes").as_deref(), Some("subscribe"));
    assert_eq!(authorizer_context(&ev, "maxConnections").as_deref(), Some("5"));
    assert_eq!(authorizer_context(&ev, "principalId").as_deref(), Some("key-7f3a9c2e"));
    assert!(ev.body.is_none());

    let with_key: ApiGatewayWebsocketProxyRequest =
        serde_json::from_str(&apigw_fixture_with_key("connect.json", "wsk_test_123")).unwrap();
    assert_eq!(with_key.query_string_parameters.first("apiKey"), Some("wsk_test_123"));
}

#[test]
fn disconnect_event() {
    let ev = ws_event("disconnect.json");
    assert_common(&ev, "DISCONNECT", "$disconnect");
    assert_eq!(ev.request_context.disconnect_status_code, Some(1005));
    assert_eq!(ev.request_context.disconnect_reason.as_deref(), Some("Client-side close frame status not set"));
    assert_eq!(authorizer_context(&ev, "keyId").as_deref(), Some("key-7f3a9c2e"));
    assert!(ev.body.is_none());
}

fn message(name: &str) -> (ApiGatewayWebsocketProxyRequest, String) {
    let ev = ws_event(name);
    assert_common(&ev, "MESSAGE", "$default");
    assert!(ev.request_context.message_id.is_some(), "{name}: MESSAGE events carry a messageId");
    assert!(!ev.is_base64_encoded);
    let body = ev.body.clone().unwrap_or_else(|| panic!("{name} has no body"));
    (ev, body)
}

#[test]
fn message_subscribe_event() {
    let (ev, body) = message("message_subscribe.json");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["action"], "subscribe");
    assert_eq!(body["room"], "tvl:protocol:aave");
    assert_eq!(body["id"], "req-1");
    assert_eq!(authorizer_context(&ev, "scopes").as_deref(), Some("subscribe"));
}

#[test]
fn message_publish_event() {
    let (ev, body) = message("message_publish.json");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["action"], "publish");
    assert_eq!(body["room"], "tvl:protocol:aave");
    assert!(body["data"].is_object());
    let scopes = authorizer_context(&ev, "scopes").unwrap();
    assert!(scopes.split(',').any(|s| s == "publish"), "{scopes}");
}

#[test]
fn message_bad_json_event() {
    let (_, body) = message("message_bad_json.json");
    assert!(serde_json::from_str::<Value>(&body).is_err(), "the body must not be valid JSON: {body}");
}

#[test]
fn message_unknown_action_event() {
    let (_, body) = message("message_unknown_action.json");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["action"], "teleport");
    assert_eq!(body["id"], "req-3");
}

fn assert_authorizer_common(name: &str, ev: &ApiGatewayCustomAuthorizerRequestTypeRequest) {
    assert_eq!(ev.type_.as_deref(), Some("REQUEST"), "{name}");
    assert_eq!(ev.method_arn.as_deref(), Some(METHOD_ARN), "{name}");
    assert_eq!(ev.request_context.apiid.as_deref(), Some("abcdef1234"), "{name}");
    assert_eq!(ev.request_context.stage.as_deref(), Some("dev"), "{name}");
    assert_eq!(
        ev.request_context.identity.as_ref().and_then(|i| i.source_ip.as_deref()),
        Some("198.51.100.23"),
        "{name}"
    );
    assert_eq!(ev.headers.get("upgrade").and_then(|h| h.to_str().ok()), Some("websocket"), "{name}");

    // The typed request context has no connectionId/routeKey/eventType (it models REST
    // APIs); WebSocket sends them, so a handler that needs them reads the raw JSON.
    let raw: Value = serde_json::from_str(&apigw_fixture(name)).unwrap();
    let rc = &raw["requestContext"];
    assert_eq!(rc["routeKey"], "$connect", "{name}");
    assert_eq!(rc["eventType"], "CONNECT", "{name}");
    assert_eq!(rc["connectionId"], CONNECTION_ID, "{name}");
}

#[test]
fn authorizer_query_event() {
    let ev = authorizer_event("authorizer_query.json", "wsk_test_q");
    assert_authorizer_common("authorizer_query.json", &ev);
    assert_eq!(ev.query_string_parameters.first("apiKey"), Some("wsk_test_q"));
    assert!(ev.headers.get("x-api-key").is_none());
}

#[test]
fn authorizer_header_event() {
    let ev = authorizer_event("authorizer_header.json", "wsk_test_h");
    assert_authorizer_common("authorizer_header.json", &ev);
    assert_eq!(ev.headers.get("x-api-key").and_then(|h| h.to_str().ok()), Some("wsk_test_h"));
    assert_eq!(
        ev.headers.get("X-API-KEY").and_then(|h| h.to_str().ok()),
        Some("wsk_test_h"),
        "header names are case-insensitive"
    );
    assert!(ev.query_string_parameters.first("apiKey").is_none());
}
