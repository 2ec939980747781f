//! Faults survived by `wsctl dev` and the handlers: Redis unreachable and restarted,
//! DynamoDB (moto_server) stopped, clients that vanish without a close. Each test starts
//! and stops the real services itself and checks the state afterwards.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use common::*;
use proxy::TcpProxy;
use serde_json::{json, Value};
use std::time::Duration;
use wsctl_testkit::{MotoServer, RedisServer, TempDir};

async fn request(ws: &mut Ws, v: Value) -> Value {
    send(ws, v).await;
    recv(ws).await
}

async fn subscribe_eventually(ws: &mut Ws, room: &str) -> Value {
    for _ in 0..100 {
        let reply = request(ws, json!({"action": "subscribe", "room": room})).await;
        if reply["type"] == "subscribed" {
            return reply;
        }
        assert_eq!(reply["code"], "unavailable", "{reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("subscribe never recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_retryable_errors_and_heals_without_restart() {
    let mut redis = RedisServer::start().expect("redis");
    let proxy = TcpProxy::start(redis.addr()).await;
    let url = format!("redis://{}", proxy.addr);
    let gw = DevGateway::start_with(&repo_stages(), &["--redis-url", &url]);
    let room = "tvl:protocol:aave";
    let mut a = gw.connect().await;
    let acked = request(&mut a, json!({"action": "subscribe", "room": room})).await;
    assert_eq!(acked["type"], "subscribed");

    // Partition the gateway from Redis: clients stay connected, subscribes fail as
    // `unavailable` (retryable), never with a false acknowledgement.
    proxy.cut().await;
    let reply = request(&mut a, json!({"action": "subscribe", "room": "tvl:chain:ethereum", "id": 1})).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("unavailable")), "{reply}");
    assert_eq!(reply["retryable"], true);
    assert_eq!(reply["id"], 1);
    assert_eq!(redis.cmd(&["SCARD", "room:{tvl:chain:ethereum}:connections"]).unwrap().as_int(), Some(0));
    assert_eq!(request(&mut a, json!({"action": "ping"})).await["type"], "pong", "still connected");
    let (code, _, err) = gw.cli(&["publish", "--room", room, "1"]);
    assert_ne!(code, 0, "publish during the outage fails loudly");
    assert!(err.contains("unavailable"), "{err}");

    // Heal: the gateway reconnects by itself; the acknowledged subscription still holds.
    proxy.heal();
    subscribe_eventually(&mut a, "tvl:chain:ethereum").await;
    let (code, _, err) = gw.cli(&["publish", "--room", room, r#"{"after":"heal"}"#]);
    assert_eq!(code, 0, "{err}");
    let m = recv(&mut a).await;
    assert_eq!((m["type"].as_str(), m["data"]["after"].as_str()), (Some("message"), Some("heal")));

    // A real Redis restart (data lost: no persistence here) also heals with no gateway restart.
    redis.stop().unwrap();
    let reply = request(&mut a, json!({"action": "subscribe", "room": "price:coingecko:eth"})).await;
    assert_eq!(reply["code"], "unavailable", "{reply}");
    redis.restart().unwrap();
    subscribe_eventually(&mut a, "price:coingecko:eth").await;
    assert_eq!(redis.cmd(&["SCARD", "room:{price:coingecko:eth}:connections"]).unwrap().as_int(), Some(1));
}

#[tokio::test]
async fn dynamodb_outage_refuses_connects_cleanly() {
    let redis = RedisServer::start().expect("redis");
    let mut moto = MotoServer::start().expect("moto");
    let gw = {
        // The gateway reads credentials from its environment: give it moto's dummy ones.
        let stages = repo_stages();
        let _env = AwsEnv::set(&moto);
        DevGateway::start_with(&stages, &["--redis-url", &redis.url(), "--dynamodb-endpoint", &moto.endpoint()])
    };
    let mut a = gw.connect().await;
    assert_eq!(
        request(&mut a, json!({"action": "subscribe", "room": "tvl:protocol:aave"})).await["type"],
        "subscribed"
    );
    let keys_before = redis.cmd(&["DBSIZE"]).unwrap().as_int();

    moto.stop().unwrap();
    // $connect cannot check the key or write the record: refused with 500, nothing written.
    let status = refused_status(&gw.url_with(&gw.key)).await;
    assert_eq!(status, Some(500));
    assert_eq!(redis.cmd(&["DBSIZE"]).unwrap().as_int(), keys_before, "no half-written connection in Redis");
    // Existing connections keep working (rooms live in Redis).
    assert_eq!(request(&mut a, json!({"action": "ping"})).await["type"], "pong");
    let reply = request(&mut a, json!({"action": "subscribe", "room": "tvl:chain:base"})).await;
    assert_eq!(reply["type"], "subscribed");
}

/// Sets moto's dummy credentials in this process's environment (inherited by `wsctl dev`)
/// for as long as it lives.
struct AwsEnv(Vec<String>);

impl AwsEnv {
    fn set(moto: &MotoServer) -> AwsEnv {
        let mut names = Vec::new();
        for (k, v) in moto.aws_env() {
            if k != "AWS_ENDPOINT_URL" {
                std::env::set_var(&k, v);
                names.push(k);
            }
        }
        AwsEnv(names)
    }
}

impl Drop for AwsEnv {
    fn drop(&mut self) {
        for k in &self.0 {
            std::env::remove_var(k);
        }
    }
}

#[tokio::test]
async fn vanished_clients_are_pruned_by_idle_timeout_and_by_the_gone_path() {
    let stages = TempDir::new("stages").unwrap();
    std::fs::write(stages.join("local.yaml"), "limits:\n  idle_timeout_secs: 1\n").unwrap();
    let gw = DevGateway::start_with(stages.path(), &[]);
    let room = "tvl:protocol:curve";
    let mut stay = gw.connect().await;
    request(&mut stay, json!({"action": "subscribe", "room": room})).await;

    // A client that freezes (never reads, never closes: like dropped packets).
    let mut frozen = gw.connect().await;
    request(&mut frozen, json!({"action": "subscribe", "room": room})).await;
    // A client whose process dies: its socket goes away with no WebSocket close.
    let mut killed = gw.connect().await;
    request(&mut killed, json!({"action": "subscribe", "room": room})).await;
    assert_eq!(gw.admin(json!({"op": "show_room", "room": room}))["members"].as_array().unwrap().len(), 3);
    drop(killed);

    // Keep the healthy client active while the frozen one idles past the timeout.
    let mut members = 3;
    for _ in 0..40 {
        request(&mut stay, json!({"action": "ping"})).await;
        members = gw.admin(json!({"op": "show_room", "room": room}))["members"].as_array().unwrap().len();
        if members == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(members, 1, "vanished clients left the room");
    let conns = gw.admin(json!({"op": "list_connections", "limit": 10}));
    assert_eq!(conns["page"]["items"].as_array().unwrap().len(), 1, "and the table");
    assert_eq!(recv_close(&mut frozen).await, Some(1001), "the frozen client was closed as idle");
    let (code, out, _) = gw.cli(&["publish", "--room", room, "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("1 delivered, 0 pruned"), "{out}");
}
