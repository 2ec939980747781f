//! End-to-end tests of `wsctl dev` with real WebSocket clients: auth at the upgrade,
//! subscribe/publish/latest/replay/unsubscribe, disconnect cleanup, bad input, the
//! Lambda-side publish through the `@connections` API, and Ctrl-C.

use crate::common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use wsctl_handlers::limits::Limits;
use wsctl_handlers::sender::{ManagementApiConfig, ManagementApiSender};
use wsctl_handlers::service::Services;
use wsctl_handlers::store::memory::{MemoryConnectionStore, MemoryKeyStore};
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_testkit::{RedisServer, TempDir};

fn create_key(gw: &DevGateway, scopes: &str) -> String {
    let reply = gw.admin(json!({"op": "create_key", "name": "test", "scopes": scopes}));
    assert_eq!(reply["kind"], "key_created", "{reply}");
    reply["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn connect_requires_a_valid_key() {
    let gw = DevGateway::start();
    assert_eq!(refused_status(&gw.url).await, Some(401), "no key");
    assert_eq!(refused_status(&gw.url_with("wsk_wrong")).await, Some(403), "unknown key");
    assert_eq!(refused_status(&gw.url_with("")).await, Some(401), "empty key");
    // The x-api-key header works too.
    let mut req = gw.url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("x-api-key", gw.key.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("header key accepted");
    send(&mut ws, json!({"action": "ping", "id": 7})).await;
    assert_eq!(recv(&mut ws).await, json!({"type": "pong", "id": 7}));
    // A revoked key is refused at the next connect.
    let key = create_key(&gw, "subscribe");
    connect(&gw.url_with(&key)).await;
    let id = gw.admin(json!({"op": "list_keys"}))["keys"].as_array().unwrap().last().unwrap()["keyId"].clone();
    gw.admin(json!({"op": "revoke_key", "key_id": id}));
    assert_eq!(refused_status(&gw.url_with(&key)).await, Some(403), "revoked key");
}

#[tokio::test]
async fn subscribe_publish_latest_replay_unsubscribe_disconnect() {
    let gw = DevGateway::start();
    let room = "tvl:protocol:aave";
    let mut a = gw.connect().await;
    let reply = subscribe(&mut a, room).await;
    assert_eq!((reply["seq"].as_u64(), reply["latest"].is_null()), (Some(0), true));

    // `wsctl publish` (the CLI) reaches the subscriber.
    let (code, out, err) = gw.cli(&["publish", "--room", room, r#"{"tvl":1}"#]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 delivered"), "{out}");
    let m = recv(&mut a).await;
    assert_eq!((m["type"].as_str(), m["room"].as_str(), m["seq"].as_u64()), (Some("message"), Some(room), Some(1)));
    assert_eq!(m["data"]["tvl"], 1);

    // Publish over the socket (the dev key has the publish scope).
    for tvl in [2, 3] {
        send(&mut a, json!({"action": "publish", "room": room, "data": {"tvl": tvl}, "id": tvl})).await;
        let mut got = [recv(&mut a).await, recv(&mut a).await];
        got.sort_by_key(|v| v["type"].as_str().map(str::to_owned));
        assert_eq!(got[0]["type"], "message");
        assert_eq!(got[0]["seq"], tvl);
        assert_eq!(got[1]["type"], "published");
        assert_eq!(got[1]["id"], tvl);
    }

    // A late subscriber gets the latest value at once.
    let mut b = gw.connect().await;
    let reply = subscribe(&mut b, room).await;
    assert_eq!(reply["seq"], 3);
    assert_eq!(reply["latest"]["seq"], 3);
    assert_eq!(reply["latest"]["data"]["tvl"], 3);

    // `since` replays what the subscriber missed, in order, right after the reply.
    let mut c = gw.connect().await;
    send(&mut c, json!({"action": "subscribe", "room": room, "since": 1})).await;
    let reply = recv(&mut c).await;
    assert_eq!((reply["type"].as_str(), reply["replayed"].as_u64()), (Some("subscribed"), Some(2)));
    assert_eq!(recv(&mut c).await["seq"], 2);
    assert_eq!(recv(&mut c).await["seq"], 3);

    // Unsubscribe: no more deliveries to `a`, others still get them.
    send(&mut a, json!({"action": "unsubscribe", "room": room})).await;
    assert_eq!(recv(&mut a).await, json!({"type": "unsubscribed", "room": room}));
    gw.cli(&["publish", "--room", room, r#"{"tvl":4}"#]);
    assert_eq!(recv(&mut b).await["seq"], 4);
    assert_eq!(recv(&mut c).await["seq"], 4);
    assert_silent(&mut a, 200).await;

    // `rooms` lists the caller's rooms; closing clears every room of the connection.
    subscribe(&mut a, "price:coingecko:bitcoin").await;
    subscribe(&mut a, room).await;
    send(&mut a, json!({"action": "rooms"})).await;
    assert_eq!(recv(&mut a).await["rooms"], json!(["price:coingecko:bitcoin", room]));
    let before = gw.admin(json!({"op": "show_room", "room": room}));
    assert_eq!(before["members"].as_array().unwrap().len(), 3);
    a.close(None).await.unwrap();
    drop(a);
    let mut members = 3;
    for _ in 0..100 {
        members = gw.admin(json!({"op": "show_room", "room": room}))["members"].as_array().unwrap().len();
        if members == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(members, 2, "closed connection left the room");
    let btc = gw.admin(json!({"op": "show_room", "room": "price:coingecko:bitcoin"}));
    assert_eq!(btc["kind"], "error", "room without members or history is gone: {btc}");
    let conns = gw.admin(json!({"op": "list_connections", "limit": 100}));
    assert_eq!(conns["page"]["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_input_gets_documented_errors_and_the_gateway_keeps_serving() {
    let stages = TempDir::new("stages").unwrap();
    std::fs::write(stages.join("local.yaml"), "limits:\n  max_rooms_per_connection: 2\n").unwrap();
    let gw = DevGateway::start_with(stages.path(), &[]);
    let room = "tvl:chain:ethereum";
    let mut bystander = gw.connect().await;
    subscribe(&mut bystander, room).await;

    let mut ws = gw.connect().await;
    for (frame, code) in [
        ("{not json", "bad_json"),
        (r#"{"action":"dance","id":"d1"}"#, "unknown_action"),
        (r#"{"action":"subscribe","room":"no spaces"}"#, "invalid_room"),
        (r#"{"action":"subscribe","room":"a::b"}"#, "invalid_room"),
        (r#"{"room":"x"}"#, "bad_request"),
    ] {
        send_text(&mut ws, frame).await;
        let reply = recv(&mut ws).await;
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some(code)), "{frame}: {reply}");
    }
    // The id is echoed on errors too.
    send_text(&mut ws, r#"{"action":"dance","id":"d2"}"#).await;
    assert_eq!(recv(&mut ws).await["id"], "d2");

    // Too many rooms.
    subscribe(&mut ws, "r:1").await;
    subscribe(&mut ws, "r:2").await;
    send(&mut ws, json!({"action": "subscribe", "room": "r:3"})).await;
    assert_eq!(recv(&mut ws).await["code"], "too_many_rooms");

    // Binary frames are refused with an error, the connection stays.
    ws.send_binary_frame().await;
    assert_eq!(recv(&mut ws).await["code"], "unsupported_frame");

    // Publish without the scope.
    let sub_only = create_key(&gw, "subscribe");
    let mut reader = connect(&gw.url_with(&sub_only)).await;
    send(&mut reader, json!({"action": "publish", "room": room, "data": 1})).await;
    let reply = recv(&mut reader).await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("publish"));

    // 129 KB message: closed with 1009, like API Gateway.
    send_text(&mut ws, &"x".repeat(129 * 1024)).await;
    assert_eq!(recv_close(&mut ws).await, Some(1009));

    // Everyone else is still served.
    gw.cli(&["publish", "--room", room, r#"{"ok":true}"#]);
    let m = recv(&mut bystander).await;
    assert_eq!((m["type"].as_str(), m["data"]["ok"].as_bool()), (Some("message"), Some(true)));
    send(&mut reader, json!({"action": "ping"})).await;
    assert_eq!(recv(&mut reader).await["type"], "pong");

    // A bad DATA argument is a clear CLI error.
    let (code, _, err) = gw.cli(&["publish", "--room", room, "not json"]);
    assert_ne!(code, 0);
    assert!(err.contains("DATA must be JSON"), "{err}");
}

trait BinaryFrame {
    async fn send_binary_frame(&mut self);
}

impl BinaryFrame for Ws {
    async fn send_binary_frame(&mut self) {
        use futures_util::SinkExt;
        self.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    }
}

#[tokio::test]
async fn lambda_publish_handler_reaches_subscribers_through_the_connections_api() {
    let redis = RedisServer::shared();
    let gw = DevGateway::start_with(&repo_stages(), &["--redis-url", &redis.url()]);
    let room = format!("tvl:protocol:lambda{}", std::process::id());
    let mut ws = gw.connect().await;
    subscribe(&mut ws, &room).await;
    // A member that no longer exists: the management API answers 410 and it is pruned.
    redis.cmd(&["SADD", &format!("room:{{{room}}}:connections"), "ghostConnection1"]).unwrap();
    // The live subscriber is older than every gateway timer short of the idle timeout
    // (the upgrade deadline is 10 s): 410 pruning must take only the ghost.
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;

    // The Lambda side: the same Redis, the real management-API client pointed at the gateway.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let rooms =
        RedisRoomStore::new(RedisConfig { url: redis.url(), cluster: false, history: 100, connection_ttl_secs: 8100 })
            .unwrap();
    let sender = ManagementApiSender::new(&sdk, &gw.management, ManagementApiConfig::default());
    let lambda = Services::new(
        Arc::new(rooms),
        Arc::new(MemoryConnectionStore::new()),
        Arc::new(MemoryKeyStore::new()),
        Arc::new(sender),
        Limits::default(),
    );
    let data = serde_json::value::RawValue::from_string(r#"{"tvl":99}"#.into()).unwrap();
    let report = lambda.publish(&room, &data).await.expect("publish");
    assert_eq!((report.seq, report.subscribers, report.delivered, report.pruned), (1, 2, 1, 1));
    let m = recv(&mut ws).await;
    assert_eq!((m["seq"].as_u64(), m["data"]["tvl"].as_u64()), (Some(1), Some(99)));
    let members = redis.cmd(&["SMEMBERS", &format!("room:{{{room}}}:connections")]).unwrap();
    assert_eq!(members.to_sorted_strings().unwrap().len(), 1, "the ghost was pruned");
}

#[tokio::test]
async fn ctrl_c_runs_disconnect_for_every_connection() {
    let redis = RedisServer::shared();
    let mut gw = DevGateway::start_with(&repo_stages(), &["--redis-url", &redis.url()]);
    let room = format!("tvl:chain:shutdown{}", std::process::id());
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = gw.connect().await;
        subscribe(&mut ws, &room).await;
        clients.push(ws);
    }
    let key = format!("room:{{{room}}}:connections");
    assert_eq!(redis.cmd(&["SCARD", &key]).unwrap().as_int(), Some(3));
    let code = tokio::task::spawn_blocking(move || {
        let code = gw.interrupt();
        (gw, code)
    });
    for ws in &mut clients {
        assert_eq!(recv_close(ws).await, Some(1001), "going away on shutdown");
    }
    let (_gw, code) = code.await.unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(redis.cmd(&["SCARD", &key]).unwrap().as_int(), Some(0), "every $disconnect ran");
}

#[tokio::test]
async fn connections_end_at_the_maximum_lifetime_even_when_active() {
    let stages = TempDir::new("stages").unwrap();
    std::fs::write(stages.join("local.yaml"), "limits:\n  max_lifetime_secs: 1\n  idle_timeout_secs: 1\n").unwrap();
    let gw = DevGateway::start_with(stages.path(), &[]);
    let mut ws = gw.connect().await;
    subscribe(&mut ws, "tvl:protocol:uniswap").await;
    let started = std::time::Instant::now();
    // Stay busy: activity does not extend the lifetime.
    let code = loop {
        send(&mut ws, json!({"action": "ping"})).await;
        match tokio::time::timeout(std::time::Duration::from_millis(200), futures_util::StreamExt::next(&mut ws)).await
        {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("unexpected end: {other:?}"),
        }
        assert!(started.elapsed().as_secs() < 10, "lifetime not enforced");
    };
    assert_eq!(code, Some(1001));
    assert!(started.elapsed().as_millis() >= 900);
    // `$disconnect` runs after the close frame is sent (as on API Gateway): allow it a moment.
    let mut room = Value::Null;
    for _ in 0..100 {
        room = gw.admin(json!({"op": "show_room", "room": "tvl:protocol:uniswap"}));
        if room["kind"] == "error" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(room["kind"], "error", "the expired connection left its room: {room}");
}

#[tokio::test]
async fn rate_limits_per_connection_and_per_key_and_the_connection_cap_hold() {
    let stages = TempDir::new("stages").unwrap();
    std::fs::write(
        stages.join("local.yaml"),
        "limits:\n  requests_per_second: 5\n  request_burst: 5\n  key_requests_per_second: 8\n  key_request_burst: 8\n",
    )
    .unwrap();
    let gw = DevGateway::start_with(stages.path(), &[]);

    // Per connection: a flood of 20 pings gets 5 pongs, then rate_limited errors.
    let mut flood = gw.connect().await;
    for i in 0..20 {
        send(&mut flood, json!({"action": "ping", "id": i})).await;
    }
    let mut replies = Vec::new();
    for _ in 0..20 {
        replies.push(recv(&mut flood).await);
    }
    let pongs = replies.iter().filter(|r| r["type"] == "pong").count();
    let limited = replies.iter().filter(|r| r["code"] == "rate_limited").count();
    // The burst passes, plus at most one refilled token while the frames arrive.
    assert!((5..=6).contains(&pongs), "{replies:?}");
    assert_eq!(pongs + limited, 20);
    // Each reply, refusals included, carries its request's id, in order.
    let ids: Vec<i64> = replies.iter().filter_map(|r| r["id"].as_i64()).collect();
    assert_eq!(ids, (0..20).collect::<Vec<i64>>(), "{replies:?}");

    // Per key: a second key's three connections share its bucket of 8.
    let reply = gw.admin(json!({"op": "create_key", "name": "capped", "scopes": "subscribe", "max_connections": 3}));
    let key = reply["key"].as_str().unwrap().to_owned();
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(connect(&gw.url_with(&key)).await);
    }
    let mut ok = 0;
    for round in 0..4 {
        for ws in conns.iter_mut() {
            send(ws, json!({"action": "ping", "id": round})).await;
            ok += usize::from(recv(ws).await["type"] == "pong");
        }
    }
    assert!((8..=9).contains(&ok), "12 requests over 3 connections of one key: {ok} passed, the key allows 8");

    // The key's connection cap: a fourth connection is refused.
    assert_eq!(refused_status(&gw.url_with(&key)).await, Some(403));
    drop(conns.pop());
    let mut admitted = false;
    for _ in 0..50 {
        if refused_status(&gw.url_with(&key)).await.is_none() {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(admitted, "a slot frees up when a connection closes");
}

/// RFC 6455 close handshake: the gateway answers a client's close frame with its own
/// (echoing the code), so the client sees a clean close instead of 1006.
#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let gw = DevGateway::start();
    let mut ws = gw.connect().await;
    let bye = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
    ws.send(Message::Close(Some(bye))).await.expect("send close");
    assert_eq!(recv_close(&mut ws).await, Some(1000), "the server's close frame echoes 1000");
}

/// Logs written to a file or a pipe carry no colour escape codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    use std::io::{BufRead, BufReader, Read};
    let state = wsctl_testkit::TempDir::new("state").unwrap();
    let port = wsctl_testkit::free_port().to_string();
    let mut child = wsctl()
        .args(["--output", "json", "--stages-dir"])
        .arg(repo_stages())
        .args(["dev", "--port", &port, "--state-dir"])
        .arg(state.path())
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).expect("ready line");
    // SAFETY: kill() with a valid pid and signal number has no memory effects.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).expect("stderr");
    let _ = child.wait();
    assert!(logs.contains("INFO"), "expected log lines: {logs}");
    assert!(!logs.contains('\u{1b}'), "escape codes in piped logs: {logs:?}");
}
