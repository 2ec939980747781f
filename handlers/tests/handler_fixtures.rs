//! Each Lambda handler fed API Gateway-shaped events (tests/fixtures/apigw) returns the
//! right status and writes the right state — on the in-memory stores and on real Redis
//! (`redis-server`) + DynamoDB (`moto_server`) alike.

use async_trait::async_trait;
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use wsctl_handlers::admin::{AdminReply, AdminRequest};
use wsctl_handlers::lambda::{self, PublishEvent, PublishResult};
use wsctl_handlers::limits::Limits;
use wsctl_handlers::protocol::{ErrorCode, Frame};
use wsctl_handlers::sender::{LiveInfo, SendError, SendOutcome, Sender};
use wsctl_handlers::service::Services;
use wsctl_handlers::store::dynamo::{self, DynamoConnectionStore, DynamoKeyStore};
use wsctl_handlers::store::memory::{MemoryConnectionStore, MemoryKeyStore, MemoryRoomStore};
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_handlers::store::LiveStore;
use wsctl_testkit::{apigw_fixture, MotoServer, RedisServer};

/// A real [`Sender`] that keeps what it was asked to deliver, per connection; connections
/// in `gone` answer like API Gateway's 410.
#[derive(Default)]
struct RecordingSender {
    sent: Mutex<HashMap<String, Vec<String>>>,
    gone: Mutex<HashSet<String>>,
}

impl RecordingSender {
    fn frames(&self, conn: &str) -> Vec<Value> {
        let sent = self.sent.lock().unwrap();
        sent.get(conn).into_iter().flatten().map(|f| serde_json::from_str(f).unwrap()).collect()
    }
}

#[async_trait]
impl Sender for RecordingSender {
    async fn send(&self, conn: &str, frame: &Frame) -> SendOutcome {
        if self.gone.lock().unwrap().contains(conn) {
            return SendOutcome::Gone;
        }
        self.sent.lock().unwrap().entry(conn.to_owned()).or_default().push(frame.as_str().to_owned());
        SendOutcome::Delivered
    }
    async fn disconnect(&self, conn: &str) -> Result<bool, SendError> {
        Ok(self.gone.lock().unwrap().insert(conn.to_owned()))
    }
    async fn info(&self, _conn: &str) -> Result<Option<LiveInfo>, SendError> {
        Ok(None)
    }
}

struct Backend {
    name: &'static str,
    services: Arc<Services>,
    sender: Arc<RecordingSender>,
    rooms: Arc<dyn LiveStore>,
    /// Redis server to inspect raw state, when the backend is Redis.
    redis: Option<&'static RedisServer>,
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn memory_backend() -> Backend {
    let sender = Arc::new(RecordingSender::default());
    let rooms: Arc<dyn LiveStore> = Arc::new(MemoryRoomStore::new(100));
    let services = Services::new(
        rooms.clone(),
        Arc::new(MemoryConnectionStore::new()),
        Arc::new(MemoryKeyStore::new()),
        sender.clone(),
        Limits::default(),
    );
    Backend { name: "memory", services: Arc::new(services), sender, rooms, redis: None }
}

async fn aws_backend() -> Backend {
    let redis = RedisServer::shared();
    let moto = MotoServer::shared();
    let sdk = crate::moto_sdk::moto_sdk(moto).await;
    let client = dynamo::client(&sdk);
    let (conns, keys) = (unique("conns-"), unique("keys-"));
    dynamo::ensure_tables(&client, &conns, &keys).await.expect("create tables in moto");
    let sender = Arc::new(RecordingSender::default());
    let rooms: Arc<dyn LiveStore> = Arc::new(
        RedisRoomStore::new(RedisConfig { url: redis.url(), cluster: false, history: 100, connection_ttl_secs: 8100 })
            .unwrap(),
    );
    let services = Services::new(
        rooms.clone(),
        Arc::new(DynamoConnectionStore::new(client.clone(), conns)),
        Arc::new(DynamoKeyStore::new(client, keys)),
        sender.clone(),
        Limits::default(),
    );
    Backend { name: "redis+dynamodb", services: Arc::new(services), sender, rooms, redis: Some(redis) }
}

/// A fixture with its connection id and key id made unique to this run, and its connect
/// time set to now (records expire: a fixed timestamp would age out of its TTL).
fn event(name: &str, conn: &str, key_id: &str) -> String {
    let now = wsctl_handlers::store::now_ms().to_string();
    apigw_fixture(name)
        .replace("Pq3x9cVvIAMCJbA=", conn)
        .replace("key-7f3a9c2e", key_id)
        .replace("\"connectedAt\": 1795629600000", &format!("\"connectedAt\": {now}"))
}

fn ws_event(name: &str, conn: &str, key_id: &str) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_str(&event(name, conn, key_id)).unwrap()
}

fn body_json(resp: &ApiGatewayProxyResponse) -> Value {
    match &resp.body {
        Some(Body::Text(t)) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

async fn create_key(svc: &Services, scopes: &str) -> (String, String) {
    let req = AdminRequest::CreateKey {
        name: "fixture".into(),
        scopes: scopes.into(),
        max_connections: 0,
        room_prefix: None,
        expires_at: None,
    };
    match svc.admin(req).await {
        AdminReply::KeyCreated { key, record } => (key, record.key_id),
        other => panic!("{other:?}"),
    }
}

async fn authorizer_cases(b: &Backend) {
    let (raw, key_id) = create_key(&b.services, "subscribe").await;
    let ev = |name: &str, key: &str| -> ApiGatewayCustomAuthorizerRequestTypeRequest {
        serde_json::from_str(&apigw_fixture(name).replace("REPLACE_KEY", key)).unwrap()
    };
    for fixture in ["authorizer_query.json", "authorizer_header.json"] {
        let allow = lambda::authorizer(b.services.clone(), ev(fixture, &raw)).await.expect("allow");
        let doc = serde_json::to_value(&allow).unwrap();
        assert_eq!(doc["policyDocument"]["Statement"][0]["Effect"], "Allow", "{} {fixture}", b.name);
        assert!(doc["policyDocument"]["Statement"][0]["Resource"][0].as_str().unwrap().ends_with("/$connect"));
        assert_eq!(doc["context"]["keyId"], key_id.as_str());
        assert_eq!(doc["context"]["scopes"], "subscribe");
        assert!(doc["context"].get("roomPrefix").is_none(), "a key without a prefix passes none: {doc}");
        // The raw key never appears in what the authorizer returns.
        assert!(!doc.to_string().contains(&raw));
        let deny = lambda::authorizer(b.services.clone(), ev(fixture, "wsk_not-a-real-key")).await.expect("deny");
        assert_eq!(serde_json::to_value(&deny).unwrap()["policyDocument"]["Statement"][0]["Effect"], "Deny");
    }
    // Every refusal is an answer (Deny), never a function error: canary stages roll a
    // release back on the functions' Errors metric (issue 11).
    let missing = lambda::authorizer(b.services.clone(), ev("authorizer_query.json", "")).await;
    let missing = missing.unwrap_or_else(|e| panic!("{}: a missing key is a function error: {e}", b.name));
    assert_eq!(serde_json::to_value(&missing).unwrap()["policyDocument"]["Statement"][0]["Effect"], "Deny");
    b.services.admin(AdminRequest::RevokeKey { key_id, disconnect: false }).await;
    let revoked = lambda::authorizer(b.services.clone(), ev("authorizer_query.json", &raw)).await.expect("deny");
    assert_eq!(serde_json::to_value(&revoked).unwrap()["policyDocument"]["Statement"][0]["Effect"], "Deny");

    // A key at its connection cap: Deny from the authorizer, 403 from $connect (a connect
    // racing past the authorizer), neither a function error.
    let req = AdminRequest::CreateKey {
        name: "capped".into(),
        scopes: "subscribe".into(),
        max_connections: 1,
        room_prefix: None,
        expires_at: None,
    };
    let AdminReply::KeyCreated { key: capped, record } = b.services.admin(req).await else { panic!("create key") };
    let mut first = ws_event("connect.json", &unique("cap-"), &record.key_id);
    first.request_context.authorizer.fields.insert("maxConnections".into(), "1".into());
    let resp = lambda::connect(b.services.clone(), first.clone()).await.expect("first connect");
    assert_eq!(resp.status_code, 200, "{}", b.name);
    let at_cap = lambda::authorizer(b.services.clone(), ev("authorizer_query.json", &capped)).await;
    let at_cap = at_cap.unwrap_or_else(|e| panic!("{}: a key at its cap is a function error: {e}", b.name));
    assert_eq!(serde_json::to_value(&at_cap).unwrap()["policyDocument"]["Statement"][0]["Effect"], "Deny");
    let mut second = first;
    second.request_context.connection_id = Some(unique("cap-"));
    let resp = lambda::connect(b.services.clone(), second).await.expect("a refused connect is not a function error");
    assert_eq!(resp.status_code, 403, "{}", b.name);
}

async fn lifecycle(b: &Backend) {
    let (conn, other, key_id) = (unique("c1-"), unique("c2-"), unique("key-"));
    let room = format!("tvl:protocol:{}", unique("aave"));
    let svc = &b.services;
    let counter = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let before = [&svc.metrics.connects, &svc.metrics.disconnects, &svc.metrics.prunes].map(counter);

    // $connect records the connection with a TTL.
    for c in [&conn, &other] {
        let resp = lambda::connect(svc.clone(), ws_event("connect.json", c, &key_id)).await.unwrap();
        assert_eq!(resp.status_code, 200, "{}", b.name);
    }
    let rec = svc.connections.get(&conn).await.unwrap().expect("record written");
    assert_eq!(rec.key_id, key_id);
    assert_eq!(rec.source_ip, "198.51.100.23");
    assert!(rec.ttl > rec.connected_at / 1000 + 7200, "ttl covers the 2 h lifetime plus a margin");

    // $default subscribe: the reply is the route response; membership is written.
    let mut sub = ws_event("message_subscribe.json", &conn, &key_id);
    sub.body = Some(format!(r#"{{"action":"subscribe","room":"{room}","id":"req-1"}}"#));
    let resp = lambda::message(svc.clone(), sub).await.unwrap();
    let reply = body_json(&resp);
    assert_eq!(
        (reply["type"].as_str(), reply["room"].as_str(), reply["id"].as_str()),
        (Some("subscribed"), Some(room.as_str()), Some("req-1"))
    );
    assert_eq!(b.rooms.rooms_of(&conn).await.unwrap(), vec![room.clone()]);
    if let Some(redis) = b.redis {
        let members = redis.cmd(&["SMEMBERS", &format!("room:{{{room}}}:connections")]).unwrap();
        assert_eq!(members.to_sorted_strings().unwrap(), vec![conn.clone()]);
    }

    // The fixture's key only has `subscribe`: publishing is refused with `forbidden`.
    let mut publish = ws_event("message_publish.json", &conn, &key_id);
    publish.body = Some(format!(r#"{{"action":"publish","room":"{room}","data":{{"tvl":1}}}}"#));
    let scopes = publish.request_context.authorizer.fields.get("scopes").cloned();
    publish.request_context.authorizer.fields.insert("scopes".into(), "subscribe".into());
    let reply = body_json(&lambda::message(svc.clone(), publish).await.unwrap());
    assert_eq!(reply["code"], "forbidden", "{}", b.name);
    assert!(scopes.is_some(), "fixture carries scopes");

    // Bad frames get their documented codes.
    for (fixture, code) in [("message_bad_json.json", "bad_json"), ("message_unknown_action.json", "unknown_action")] {
        let reply = body_json(&lambda::message(svc.clone(), ws_event(fixture, &conn, &key_id)).await.unwrap());
        assert_eq!(reply["type"], "error");
        assert_eq!(reply["code"], code, "{} {fixture}", b.name);
    }

    // publish (the producer-facing function): delivered to the subscriber with seq 1;
    // a subscriber that is gone (410) is pruned from the room and the table.
    let mut sub2 = ws_event("message_subscribe.json", &other, &key_id);
    sub2.body = Some(format!(r#"{{"action":"subscribe","room":"{room}"}}"#));
    lambda::message(svc.clone(), sub2).await.unwrap();
    b.sender.gone.lock().unwrap().insert(other.clone());
    let data = serde_json::value::RawValue::from_string(r#"{"tvl":123.5}"#.into()).unwrap();
    let out = lambda::publish(svc.clone(), PublishEvent { room: room.clone(), data }).await.unwrap();
    let PublishResult::Ok(report) = out else { panic!("{out:?}") };
    assert_eq!((report.seq, report.subscribers, report.delivered, report.pruned), (1, 2, 1, 1), "{}", b.name);
    let got = b.sender.frames(&conn);
    assert_eq!(got.last().unwrap()["seq"], 1);
    assert_eq!(got.last().unwrap()["data"]["tvl"], 123.5);
    assert!(svc.connections.get(&other).await.unwrap().is_none(), "gone connection's record pruned");
    assert!(b.rooms.rooms_of(&other).await.unwrap().is_empty(), "gone connection's rooms pruned");

    // A late subscriber gets the latest value in the reply; `since` replays.
    let late = unique("c3-");
    lambda::connect(svc.clone(), ws_event("connect.json", &late, &key_id)).await.unwrap();
    let mut sub3 = ws_event("message_subscribe.json", &late, &key_id);
    sub3.body = Some(format!(r#"{{"action":"subscribe","room":"{room}"}}"#));
    let reply = body_json(&lambda::message(svc.clone(), sub3).await.unwrap());
    assert_eq!(reply["latest"]["data"]["tvl"], 123.5, "{}", b.name);
    assert_eq!(reply["seq"], 1);

    // $disconnect clears every room and the record.
    let resp = lambda::disconnect(svc.clone(), ws_event("disconnect.json", &conn, &key_id)).await.unwrap();
    assert_eq!(resp.status_code, 200);
    assert!(b.rooms.rooms_of(&conn).await.unwrap().is_empty());
    assert!(svc.connections.get(&conn).await.unwrap().is_none());
    if let Some(redis) = b.redis {
        let members = redis.cmd(&["SMEMBERS", &format!("room:{{{room}}}:connections")]).unwrap();
        assert_eq!(members.to_sorted_strings().unwrap(), vec![late.clone()], "only the late subscriber is left");
    }
    // Double disconnect is harmless.
    let resp = lambda::disconnect(svc.clone(), ws_event("disconnect.json", &conn, &key_id)).await.unwrap();
    assert_eq!(resp.status_code, 200);
    // The pruned connection's late $disconnect finds nothing left to clean.
    lambda::disconnect(svc.clone(), ws_event("disconnect.json", &other, &key_id)).await.unwrap();

    // Each connection is counted once: 3 connects = 1 disconnect + 1 prune + 1 still live,
    // however many times its cleanup ran.
    let after = [&svc.metrics.connects, &svc.metrics.disconnects, &svc.metrics.prunes].map(counter);
    let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(delta, [3, 1, 1], "connects, disconnects, prunes ({})", b.name);
}

/// A key limited to a room prefix, from creation through the authorizer's context to
/// `$default`: subscribe and publish inside the prefix pass, outside it are `forbidden`
/// naming the prefix. Then an expired key is denied and a deleted one is gone.
async fn key_limit_cases(b: &Backend) {
    let svc = &b.services;
    let now = wsctl_handlers::store::now_ms();
    let prefix = format!("{}:", unique("tenant-"));
    let create = |room_prefix: Option<String>, expires_at: Option<u64>| AdminRequest::CreateKey {
        name: "limited".into(),
        scopes: "subscribe,publish".into(),
        max_connections: 0,
        room_prefix,
        expires_at,
    };
    let AdminReply::KeyCreated { key: raw, record } =
        svc.admin(create(Some(prefix.clone()), Some(now + 3_600_000))).await
    else {
        panic!("create key ({})", b.name)
    };
    assert_eq!(record.room_prefix.as_deref(), Some(prefix.as_str()));
    let authorize = |key: &str| {
        let ev: ApiGatewayCustomAuthorizerRequestTypeRequest =
            serde_json::from_str(&apigw_fixture("authorizer_header.json").replace("REPLACE_KEY", key)).unwrap();
        let svc = svc.clone();
        async move { serde_json::to_value(lambda::authorizer(svc, ev).await.expect("an answer")).unwrap() }
    };
    let allow = authorize(&raw).await;
    assert_eq!(allow["policyDocument"]["Statement"][0]["Effect"], "Allow", "{} {allow}", b.name);
    assert_eq!(allow["context"]["roomPrefix"], prefix.as_str(), "{allow}");

    // $default with the context API Gateway passes on: exactly the authorizer's.
    let conn = unique("limited-");
    let send = |fixture: &str, body: String| {
        let mut ev = ws_event(fixture, &conn, &record.key_id);
        ev.request_context.authorizer.fields =
            allow["context"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        ev.body = Some(body);
        let svc = svc.clone();
        async move { body_json(&lambda::message(svc, ev).await.unwrap()) }
    };
    let inside = format!("{prefix}room");
    let outside = format!("{}:room", unique("tenant-"));
    for room in [&inside, &outside] {
        let sub = send("message_subscribe.json", format!(r#"{{"action":"subscribe","room":"{room}"}}"#)).await;
        let publish =
            send("message_publish.json", format!(r#"{{"action":"publish","room":"{room}","data":{{"n":1}}}}"#)).await;
        if room == &inside {
            assert_eq!(sub["type"], "subscribed", "{}: {sub}", b.name);
            assert_eq!(publish["type"], "published", "{}: {publish}", b.name);
        } else {
            for reply in [&sub, &publish] {
                assert_eq!(reply["code"], "forbidden", "{}: {reply}", b.name);
                let message = reply["message"].as_str().unwrap();
                assert!(message.contains(&prefix), "the refusal names the prefix: {message}");
            }
        }
    }
    assert_eq!(b.rooms.rooms_of(&conn).await.unwrap(), vec![inside.clone()], "{}", b.name);

    // A prefix no room name can start with is refused at creation.
    let bad = svc.admin(create(Some("a::".into()), None)).await;
    assert!(matches!(bad, AdminReply::Error { .. }), "{bad:?}");

    // Past its expiry a key is denied like a revoked one.
    let AdminReply::KeyCreated { key: expired, .. } = svc.admin(create(None, Some(now - 1))).await else {
        panic!("create expired key")
    };
    let deny = authorize(&expired).await;
    assert_eq!(deny["policyDocument"]["Statement"][0]["Effect"], "Deny", "{} {deny}", b.name);

    // A deleted key is gone from the store and the listing, and no longer connects.
    let deleted = svc.admin(AdminRequest::DeleteKey { key_id: record.key_id.clone() }).await;
    assert!(matches!(deleted, AdminReply::KeyDeleted { .. }), "{deleted:?}");
    assert!(svc.keys.get_by_id(&record.key_id).await.unwrap().is_none(), "{}", b.name);
    let AdminReply::Keys { keys } = svc.admin(AdminRequest::ListKeys).await else { panic!("list keys") };
    assert!(keys.iter().all(|k| k.key_id != record.key_id), "{}", b.name);
    let deny = authorize(&raw).await;
    assert_eq!(deny["policyDocument"]["Statement"][0]["Effect"], "Deny", "{} {deny}", b.name);
    let again = svc.admin(AdminRequest::DeleteKey { key_id: record.key_id.clone() }).await;
    assert!(matches!(again, AdminReply::Error { code: ErrorCode::NotFound, .. }), "{again:?}");
}

#[tokio::test]
async fn handlers_on_memory_stores() {
    let b = memory_backend();
    authorizer_cases(&b).await;
    key_limit_cases(&b).await;
    lifecycle(&b).await;
}

#[tokio::test]
async fn handlers_on_redis_and_dynamodb() {
    let b = aws_backend().await;
    authorizer_cases(&b).await;
    key_limit_cases(&b).await;
    lifecycle(&b).await;
}

/// Services on moto DynamoDB tables that do not exist: every store call fails, as when
/// DynamoDB is unreachable.
async fn broken_backend() -> Arc<Services> {
    let moto = MotoServer::shared();
    let sdk = crate::moto_sdk::moto_sdk(moto).await;
    let client = dynamo::client(&sdk);
    Arc::new(Services::new(
        Arc::new(MemoryRoomStore::new(100)),
        Arc::new(DynamoConnectionStore::new(client.clone(), unique("missing-conns-"))),
        Arc::new(DynamoKeyStore::new(client, unique("missing-keys-"))),
        Arc::new(RecordingSender::default()),
        Limits::default(),
    ))
}

#[tokio::test]
async fn internal_failures_are_function_errors_so_the_rollback_alarms_see_them() {
    let svc = broken_backend().await;
    let ev: ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_str(&apigw_fixture("authorizer_query.json").replace("REPLACE_KEY", "wsk_some-key")).unwrap();
    assert!(lambda::authorizer(svc.clone(), ev).await.is_err(), "the key store is down: a function error");
    let conn = unique("c-");
    let connect = lambda::connect(svc.clone(), ws_event("connect.json", &conn, "k")).await;
    assert!(connect.is_err(), "the connections table is down: a function error, got {connect:?}");
    let disconnect = lambda::disconnect(svc.clone(), ws_event("disconnect.json", &conn, "k")).await;
    assert!(disconnect.is_err(), "the connections table is down: a function error, got {disconnect:?}");
}

#[tokio::test]
async fn default_route_always_answers_with_a_frame_and_replays_in_order() {
    // A reply followed by replayed messages: the ones before the last go through
    // @connections, the last is the route response. A route response without a body
    // would reach the client as an empty message.
    let b = memory_backend();
    let svc = &b.services;
    let (conn, key_id) = (unique("r-"), unique("key-"));
    let room = format!("replay:{}", unique("room"));
    lambda::connect(svc.clone(), ws_event("connect.json", &conn, &key_id)).await.unwrap();
    for n in 1..=3 {
        let data = serde_json::value::RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap();
        lambda::publish(svc.clone(), PublishEvent { room: room.clone(), data }).await.unwrap();
    }
    let mut sub = ws_event("message_subscribe.json", &conn, &key_id);
    sub.body = Some(format!(r#"{{"action":"subscribe","room":"{room}","since":0,"id":"s1"}}"#));
    let resp = lambda::message(svc.clone(), sub).await.unwrap();
    let route_response = match &resp.body {
        Some(Body::Text(t)) if !t.is_empty() => t.clone(),
        other => panic!("the route response carries no frame ({other:?}): the client would get an empty message"),
    };
    let mut seen = b.sender.frames(&conn);
    seen.push(serde_json::from_str(&route_response).unwrap());
    assert_eq!(seen[0]["type"], "subscribed", "the reply comes first: {seen:?}");
    assert_eq!(seen[0]["id"], "s1");
    let replayed: Vec<u64> = seen[1..].iter().map(|f| f["seq"].as_u64().expect("a replayed message")).collect();
    assert_eq!(replayed, [1, 2, 3], "{seen:?}");

    // Every other kind of request answers with exactly one frame, as the route response.
    for body in [r#"{"action":"ping","id":"p"}"#, "not json", r#"{"action":"nope"}"#] {
        let mut ev = ws_event("message_subscribe.json", &conn, &key_id);
        ev.body = Some(body.into());
        let before = b.sender.frames(&conn).len();
        let resp = lambda::message(svc.clone(), ev).await.unwrap();
        assert!(matches!(&resp.body, Some(Body::Text(t)) if !t.is_empty()), "{body}: {:?}", resp.body);
        assert_eq!(b.sender.frames(&conn).len(), before, "{body}: nothing through @connections");
    }
}

#[tokio::test]
async fn connect_without_authorizer_context_is_refused() {
    let b = memory_backend();
    let mut ev = ws_event("connect.json", &unique("c-"), "k");
    ev.request_context.authorizer.fields.clear();
    let resp = lambda::connect(b.services.clone(), ev).await.unwrap();
    assert_eq!(resp.status_code, 403);
}
