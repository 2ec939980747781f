//! Faults survived by `wsctl dev` and the handlers: Redis unreachable and restarted,
//! DynamoDB (moto_server) stopped, clients that vanish without a close. Each test starts
//! and stops the real services itself and checks the state afterwards.

use crate::common::proxy::TcpProxy;
use crate::common::*;
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
    let gw = DevGateway::start_env(
        &repo_stages(),
        &["--redis-url", &redis.url(), "--dynamodb-endpoint", &moto.endpoint()],
        moto_credentials(&moto),
    );
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

/// moto's dummy credentials for the gateway's environment (the endpoint comes from
/// `--dynamodb-endpoint`). Given to the child only: setting them in this process would
/// race the other tests of this binary, which run on parallel threads.
fn moto_credentials(moto: &MotoServer) -> Vec<(String, String)> {
    moto.aws_env().into_iter().filter(|(k, _)| k != "AWS_ENDPOINT_URL").collect()
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

/// Redis restarted under load (its data kept, as ElastiCache keeps it across a node
/// replacement): a publisher, subscribers and a client that subscribes and unsubscribes.
/// During the outage requests fail fast as `unavailable`; every request sent more than
/// 1 s after Redis accepts connections again succeeds; and every subscriber received
/// exactly the acknowledged publishes, each once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_load_no_request_fails_once_redis_is_back() {
    redis_restart_under_load(Outage::Busy).await;
}

/// The same restart with the clients quiet from the moment Redis dies until 1.2 s after
/// it is back: no request of theirs makes the gateway notice the dead connection first
/// (the first release answered the first request after such a restart with "broken
/// pipe"); the gateway's own health check has to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_while_quiet_no_request_fails_once_redis_is_back() {
    redis_restart_under_load(Outage::Quiet).await;
}

/// Whether clients keep sending while Redis is down.
#[derive(Clone, Copy, PartialEq)]
enum Outage {
    Busy,
    Quiet,
}

async fn redis_restart_under_load(outage: Outage) {
    use crate::common::reader::Client;
    use std::time::Instant;

    let aof = TempDir::new("redis-aof").unwrap();
    let dir = aof.path().to_str().unwrap().to_owned();
    let mut redis = RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always", "--dir", &dir])
        .expect("redis");
    let gw = DevGateway::start_with(&repo_stages(), &["--redis-url", &redis.url()]);
    let room = "tvl:chain:ethereum";
    let start = Instant::now();
    let mut subscribers = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..4 {
        let mut c = Client::new(gw.connect().await, start);
        c.send(json!({"action": "subscribe", "room": room})).await;
        firsts.push(c.reply("subscribed").await["seq"].as_u64().unwrap());
        subscribers.push(c);
    }
    let mut publisher = Client::new(gw.connect().await, start);
    let mut churner = Client::new(gw.connect().await, start);

    // Requests every 50 ms (publish) and 100 ms (subscribe/unsubscribe), by id, with the
    // time each was sent.
    let mut sent: Vec<(u64, &str, Instant)> = Vec::new();
    let (mut id, mut stopped, mut back_at) = (0u64, false, None::<Instant>);
    let stop_at = start + Duration::from_millis(1500);
    loop {
        let now = Instant::now();
        if !stopped && now >= stop_at {
            redis.stop().unwrap();
            stopped = true;
        }
        if stopped && back_at.is_none() && now >= stop_at + Duration::from_secs(2) {
            redis.restart().unwrap();
            back_at = Some(Instant::now());
        }
        if back_at.is_some_and(|t| now >= t + Duration::from_secs(3)) {
            break;
        }
        let quiet = outage == Outage::Quiet && stopped && back_at.is_none_or(|t| now < t + Duration::from_millis(1200));
        if quiet {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        id += 1;
        publisher.send(json!({"action": "publish", "room": room, "data": {"n": id}, "id": id})).await;
        sent.push((id, "publisher", Instant::now()));
        if id % 2 == 0 {
            let action = if id % 4 == 0 { "subscribe" } else { "unsubscribe" };
            churner.send(json!({"action": action, "room": "price:coingecko:eth", "id": id})).await;
            sent.push((id, "churner", Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let back_at = back_at.expect("redis restarted");

    // Every request got exactly one reply: success, or `unavailable` during the outage.
    let (pub_replies, churn_replies) = (publisher.replies(), churner.replies());
    let mut acked = Vec::new();
    let mut refused = 0;
    for (id, who, at) in &sent {
        let replies = if *who == "publisher" { &pub_replies } else { &churn_replies };
        let mine: Vec<&Value> = replies.iter().filter(|r| r["id"] == *id).collect();
        assert_eq!(mine.len(), 1, "{who} request {id}: one reply expected, got {mine:?}");
        let reply = mine[0];
        if reply["type"] == "error" {
            assert_eq!(reply["code"], "unavailable", "{who} request {id}: {reply}");
            assert_eq!(reply["retryable"], true, "{reply}");
            assert!(
                *at < back_at + Duration::from_secs(1),
                "{who} request {id} sent {:?} after Redis was back failed: {reply}",
                at.duration_since(back_at)
            );
            refused += 1;
        } else if reply["type"] == "published" {
            acked.push(reply["seq"].as_u64().unwrap());
        }
    }
    match outage {
        Outage::Busy => assert!(refused > 0, "the outage refused nothing: it was not exercised"),
        Outage::Quiet => assert_eq!(refused, 0, "nothing was sent during the outage"),
    }
    assert!(acked.len() > 40, "too few publishes acknowledged: {}", acked.len());
    // Every subscriber got exactly the acknowledged publishes after its subscribe, in order.
    for (i, s) in subscribers.iter().enumerate() {
        let expected: Vec<u64> = acked.iter().copied().filter(|seq| *seq > firsts[i]).collect();
        assert_eq!(s.seqs(), expected, "subscriber {i}: expected exactly the acknowledged publishes");
        assert_eq!(s.closed(), None);
    }
}

/// DynamoDB (moto_server behind a proxy) partitioned and healed: `$connect` is refused
/// cleanly while it is unreachable, and every connect more than 1 s after it is back
/// succeeds (the SDK drops its dead pooled connections and retries transient failures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_partition_heals_and_every_later_connect_succeeds() {
    let moto = MotoServer::start().expect("moto");
    let proxy = TcpProxy::start(moto.addr()).await;
    let endpoint = format!("http://{}", proxy.addr);
    let gw = DevGateway::start_env(&repo_stages(), &["--dynamodb-endpoint", &endpoint], moto_credentials(&moto));
    let mut before = gw.connect().await;
    assert_eq!(request(&mut before, json!({"action": "ping"})).await["type"], "pong");

    proxy.cut().await;
    assert_eq!(refused_status(&gw.url_with(&gw.key)).await, Some(500), "refused while DynamoDB is unreachable");
    proxy.heal();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..10 {
        assert_eq!(refused_status(&gw.url_with(&gw.key)).await, None, "connect {i} after DynamoDB came back");
    }
    let mut after = gw.connect().await;
    let reply = request(&mut after, json!({"action": "subscribe", "room": "tvl:protocol:lido"})).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
}
