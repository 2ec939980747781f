//! The `admin` function's request/reply contract for rooms (what `wsctl rooms …` and the
//! room parts of `wsctl connections …` send on deployed stages), as JSON fixtures run
//! through `lambda::admin` exactly as the Lambda runtime would: request JSON →
//! [`AdminRequest`] → handler → [`AdminReply`] JSON, compared with the expected reply.
//!
//! Each fixture runs on the in-memory room store and on real Redis (`redis-server`).
//! Placeholders: `$P` is a room prefix unique to the run, `$A`/`$B`/`$C` the three
//! connections, `$K` their key id. Times in replies are checked to be positive and then
//! compared as `"<ms>"`.

use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use wsctl_handlers::admin::{AdminReply, AdminRequest};
use wsctl_handlers::auth::{Identity, Scope, Scopes};
use wsctl_handlers::lambda;
use wsctl_handlers::limits::Limits;
use wsctl_handlers::protocol::Frame;
use wsctl_handlers::sender::{LiveInfo, SendError, SendOutcome, Sender};
use wsctl_handlers::service::{Caller, ConnectInfo, Services};
use wsctl_handlers::store::memory::{MemoryConnectionStore, MemoryKeyStore, MemoryRoomStore};
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_handlers::store::LiveStore;
use wsctl_testkit::RedisServer;

/// A real [`Sender`] over a Vec: it records every delivery, knows which connections are
/// open, and answers like API Gateway (gone connections are 410s).
#[derive(Default)]
struct VecSender {
    sent: Mutex<Vec<(String, String)>>,
    open: Mutex<HashSet<String>>,
}

impl VecSender {
    fn is_open(&self, conn: &str) -> bool {
        self.open.lock().map(|o| o.contains(conn)).unwrap_or(false)
    }
    fn delivered_to(&self, conn: &str) -> Vec<Value> {
        let sent = self.sent.lock().expect("sent");
        sent.iter().filter(|(c, _)| c == conn).map(|(_, f)| serde_json::from_str(f).expect("frame JSON")).collect()
    }
}

#[async_trait]
impl Sender for VecSender {
    async fn send(&self, conn: &str, frame: &Frame) -> SendOutcome {
        if !self.is_open(conn) {
            return SendOutcome::Gone;
        }
        self.sent.lock().expect("sent").push((conn.to_owned(), frame.as_str().to_owned()));
        SendOutcome::Delivered
    }
    async fn disconnect(&self, conn: &str) -> Result<bool, SendError> {
        Ok(self.open.lock().map_err(|e| SendError(e.to_string()))?.remove(conn))
    }
    async fn info(&self, conn: &str) -> Result<Option<LiveInfo>, SendError> {
        Ok(self.is_open(conn).then(|| LiveInfo {
            connected_at_ms: 1_000,
            last_active_at_ms: 2_000,
            source_ip: "203.0.113.9".into(),
            user_agent: "fixture".into(),
            messages_in: None,
            messages_out: None,
        }))
    }
}

/// One run: services on `rooms`, three connections (`$A` and `$B` in the aave room, `$B`
/// and `$C` in the ethereum room), and the placeholder values.
struct Run {
    services: Arc<Services>,
    sender: Arc<VecSender>,
    vars: Vec<(&'static str, String)>,
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("fx{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

impl Run {
    async fn new(rooms: Arc<dyn LiveStore>) -> Run {
        let sender = Arc::new(VecSender::default());
        let services = Arc::new(Services::new(
            rooms,
            Arc::new(MemoryConnectionStore::new()),
            Arc::new(MemoryKeyStore::new()),
            sender.clone(),
            Limits::default(),
        ));
        let p = unique();
        let identity = Identity {
            key_id: format!("key_{p}"),
            scopes: Scopes::new(vec![Scope::Subscribe, Scope::Publish]),
            max_connections: 0,
            room_prefix: None,
        };
        let ids = [format!("{p}A"), format!("{p}B"), format!("{p}C")];
        let subscriptions = [(0, "protocol:aave"), (1, "protocol:aave"), (1, "chain:ethereum"), (2, "chain:ethereum")];
        for id in &ids {
            let info = ConnectInfo {
                connection_id: id.clone(),
                identity: identity.clone(),
                source_ip: "203.0.113.9".into(),
                user_agent: "fixture".into(),
                connected_at_ms: wsctl_handlers::store::now_ms(),
            };
            services.connect(&info).await.expect("connect");
            sender.open.lock().expect("open").insert(id.clone());
        }
        for (who, room) in subscriptions {
            let caller = Caller { connection_id: &ids[who], identity: &identity, request_id: None };
            let body = serde_json::json!({"action": "subscribe", "room": format!("{p}:{room}")}).to_string();
            let frames = services.message(caller, &body).await;
            let reply: Value = serde_json::from_str(frames[0].as_str()).expect("reply JSON");
            assert_eq!(reply["type"], "subscribed", "{reply}");
        }
        let [a, b, c] = ids;
        let vars = vec![("$P", p), ("$A", a), ("$B", b), ("$C", c), ("$K", identity.key_id)];
        Run { services, sender, vars }
    }

    fn fill(&self, text: &str) -> String {
        self.vars.iter().fold(text.to_owned(), |t, (k, v)| t.replace(k, v))
    }

    /// Runs one fixture: the request as the Lambda runtime parses it, the reply as it is
    /// serialized back, normalized.
    async fn exchange(&self, request: &Value) -> Value {
        let text = self.fill(&request.to_string());
        let request: AdminRequest =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture request {text} does not parse: {e}"));
        let reply: AdminReply = lambda::admin(self.services.clone(), request).await.expect("admin handler");
        let mut json = serde_json::to_value(&reply).expect("reply serializes");
        normalize_times(&mut json);
        // The reply must read back as the typed reply wsctl parses.
        serde_json::from_value::<AdminReply>(serde_json::to_value(&reply).expect("json")).expect("reply parses back");
        json
    }

    async fn check(&self, name: &str, request: Value, expected: Value) {
        let got = self.exchange(&request).await;
        let want: Value = serde_json::from_str(&self.fill(&expected.to_string())).expect("expected JSON");
        assert_eq!(got, want, "fixture {name}: {request}");
    }
}

/// Replaces epoch times by `"<ms>"` after checking they are set.
fn normalize_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if ["lastPublishMs", "connectedAt", "ttl", "createdAt"].contains(&k.as_str()) {
                    assert!(val.as_u64().is_some_and(|t| t > 0), "{k} should be a positive time, is {val}");
                    *val = Value::from("<ms>");
                } else {
                    normalize_times(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_times),
        _ => {}
    }
}

fn live() -> Value {
    serde_json::json!({"connectedAtMs": 1000, "lastActiveAtMs": 2000, "sourceIp": "203.0.113.9", "userAgent": "fixture"})
}

fn record(id: &str) -> Value {
    serde_json::json!({
        "connectionId": id, "keyId": "$K", "sourceIp": "203.0.113.9", "userAgent": "fixture",
        "connectedAt": "<ms>", "ttl": "<ms>"
    })
}

/// The fixtures, in order (later ones see what earlier ones did).
async fn run_fixtures(run: &Run) {
    use serde_json::json;
    run.check(
        "list_rooms: every room under a prefix, in name order, with counters",
        json!({"op": "list_rooms", "prefix": "$P:", "limit": 10}),
        json!({"kind": "rooms", "page": {"items": [
            {"room": "$P:chain:ethereum", "subscribers": 2, "seq": 0},
            {"room": "$P:protocol:aave", "subscribers": 2, "seq": 0}
        ]}}),
    )
    .await;
    run.check(
        "publish: fan-out report",
        json!({"op": "publish", "room": "$P:protocol:aave", "data": {"tvl": 12.5}}),
        json!({"kind": "published", "report": {
            "room": "$P:protocol:aave", "seq": 1, "subscribers": 2, "delivered": 2, "pruned": 0, "failed": 0
        }}),
    )
    .await;
    for id in ["$A", "$B"] {
        let frames = run.sender.delivered_to(&run.fill(id));
        assert_eq!(frames.len(), 1, "{id} got {frames:?}");
        assert_eq!(frames[0]["type"], "message");
        assert_eq!(frames[0]["data"]["tvl"], 12.5);
        assert_eq!(frames[0]["seq"], 1);
    }
    run.check(
        "list_rooms: a narrower prefix; the published room has a seq and a last publish time",
        json!({"op": "list_rooms", "prefix": "$P:protocol:", "limit": 10}),
        json!({"kind": "rooms", "page": {"items": [
            {"room": "$P:protocol:aave", "subscribers": 2, "seq": 1, "lastPublishMs": "<ms>"}
        ]}}),
    )
    .await;
    run.check(
        "show_room: counters and sorted members",
        json!({"op": "show_room", "room": "$P:protocol:aave"}),
        json!({"kind": "room", "info": {"room": "$P:protocol:aave", "subscribers": 2, "seq": 1, "lastPublishMs": "<ms>"},
               "members": ["$A", "$B"]}),
    )
    .await;
    run.check(
        "show_room: unknown room",
        json!({"op": "show_room", "room": "$P:nothing:here"}),
        json!({"kind": "error", "code": "not_found", "message": "room $P:nothing:here not found"}),
    )
    .await;
    run.check(
        "show_room: a name outside the grammar",
        json!({"op": "show_room", "room": "bad room"}),
        json!({"kind": "error", "code": "invalid_room",
               "message": "room name contains ' '; allowed are A-Z a-z 0-9 _ . - and ':' between segments"}),
    )
    .await;
    run.check(
        "list_rooms: page size out of range",
        json!({"op": "list_rooms", "limit": 0}),
        json!({"kind": "error", "code": "bad_request", "message": "limit must be 1..=1000"}),
    )
    .await;
    run.check(
        "list_connections: a room's members with their rooms and live state",
        json!({"op": "list_connections", "room": "$P:chain:ethereum", "limit": 10}),
        json!({"kind": "connections", "page": {"items": [
            {"record": record("$B"), "rooms": ["$P:chain:ethereum", "$P:protocol:aave"], "live": live()},
            {"record": record("$C"), "rooms": ["$P:chain:ethereum"], "live": live()}
        ]}}),
    )
    .await;
    run.check(
        "show_connection: rooms of one connection",
        json!({"op": "show_connection", "connection_id": "$A"}),
        json!({"kind": "connection", "details": {"record": record("$A"), "rooms": ["$P:protocol:aave"], "live": live()}}),
    )
    .await;

    // Kick a live connection: closed at the gateway; its $disconnect (run by API Gateway,
    // here by the test) removes it from its rooms.
    run.check(
        "kick_connection: live",
        json!({"op": "kick_connection", "connection_id": "$A"}),
        json!({"kind": "kicked", "connection_id": "$A", "was_live": true}),
    )
    .await;
    assert!(!run.sender.is_open(&run.fill("$A")));
    run.services.disconnect(&run.fill("$A")).await.expect("$disconnect");
    run.check(
        "show_room: the kicked connection is no longer a member",
        json!({"op": "show_room", "room": "$P:protocol:aave"}),
        json!({"kind": "room", "info": {"room": "$P:protocol:aave", "subscribers": 1, "seq": 1, "lastPublishMs": "<ms>"},
               "members": ["$B"]}),
    )
    .await;

    // Kick a connection that is already gone (its $disconnect never ran): the admin
    // function cleans up its record and memberships itself.
    run.sender.open.lock().expect("open").remove(&run.fill("$C"));
    run.check(
        "kick_connection: already gone, cleaned up",
        json!({"op": "kick_connection", "connection_id": "$C"}),
        json!({"kind": "kicked", "connection_id": "$C", "was_live": false}),
    )
    .await;
    run.check(
        "show_room: the gone connection was removed",
        json!({"op": "show_room", "room": "$P:chain:ethereum"}),
        json!({"kind": "room", "info": {"room": "$P:chain:ethereum", "subscribers": 1, "seq": 0}, "members": ["$B"]}),
    )
    .await;
    run.check(
        "kick_connection: unknown",
        json!({"op": "kick_connection", "connection_id": "$P-nobody"}),
        json!({"kind": "error", "code": "not_found", "message": "connection $P-nobody not found"}),
    )
    .await;

    // Paging: one room per page, the cursor continues, the last page has no cursor.
    let first = run.exchange(&json!({"op": "list_rooms", "prefix": "$P:", "limit": 1})).await;
    assert_eq!(first["page"]["items"][0]["room"], run.fill("$P:chain:ethereum"), "{first}");
    let cursor = first["page"]["next"].as_str().unwrap_or_else(|| panic!("page 1 has no cursor: {first}"));
    let second = run.exchange(&json!({"op": "list_rooms", "prefix": "$P:", "limit": 1, "cursor": cursor})).await;
    assert_eq!(second["page"]["items"][0]["room"], run.fill("$P:protocol:aave"), "{second}");
    // A store may hand out a cursor with the last item; that page must then be empty.
    if let Some(next) = second["page"]["next"].as_str() {
        let third = run.exchange(&json!({"op": "list_rooms", "prefix": "$P:", "limit": 1, "cursor": next})).await;
        assert_eq!(third["page"]["items"], json!([]), "{third}");
        assert!(third["page"].get("next").is_none(), "{third}");
    }
}

#[test]
fn malformed_requests_are_refused_at_parse_time() {
    for bad in [
        r#"{"op":"list_rooms","limit":10,"extra":true}"#,
        r#"{"op":"drop_room","room":"a"}"#,
        r#"{"op":"list_rooms"}"#,
        r#"{"room":"a"}"#,
    ] {
        assert!(serde_json::from_str::<AdminRequest>(bad).is_err(), "{bad} should not parse");
    }
}

#[tokio::test]
async fn room_fixtures_on_the_memory_store() {
    let run = Run::new(Arc::new(MemoryRoomStore::new(100))).await;
    run_fixtures(&run).await;
}

#[tokio::test]
async fn room_fixtures_on_redis() {
    let redis = RedisServer::shared();
    let store =
        RedisRoomStore::new(RedisConfig { url: redis.url(), cluster: false, history: 100, connection_ttl_secs: 8100 })
            .expect("redis room store");
    let run = Run::new(Arc::new(store)).await;
    run_fixtures(&run).await;
}
