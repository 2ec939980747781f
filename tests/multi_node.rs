//! Several `wsctl dev` processes on one Redis behave like one API Gateway: a publish on
//! any process reaches every subscriber on every process, in seq order; no process
//! prunes another's connections; a process that dies has its connections pruned once
//! its claim lapses; and the management API of one process reaches the connections of
//! every other.

use crate::common::reader::Client;
use crate::common::{connect_as, DevGateway};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use wsctl_testkit::{RedisCluster, RedisServer, RespValue, TempDir};

const ROOM: &str = "tvl:chain:ethereum";

fn on_redis(redis: &RedisServer) -> DevGateway {
    DevGateway::start_with(&crate::common::repo_stages(), &["--redis-url", &redis.url()])
}

fn members(redis: &RedisServer, room: &str) -> i64 {
    redis.cmd(&["SCARD", &format!("room:{{{room}}}:connections")]).unwrap().as_int().unwrap()
}

async fn subscribed(gw: &DevGateway, start: Instant) -> (Client, u64) {
    let c = Client::new(gw.connect().await, start);
    subscribed_client(c).await
}

async fn subscribed_client(mut c: Client) -> (Client, u64) {
    c.send(json!({"action": "subscribe", "room": ROOM})).await;
    let seq = c.reply("subscribed").await["seq"].as_u64().unwrap();
    (c, seq)
}

/// The seqs acknowledged by `published` replies of `client`, checking each one's
/// `delivered` against the subscribers every process holds.
fn acknowledged(client: &Client, subscribers: u64) -> Vec<u64> {
    let replies: Vec<Value> = client.replies().into_iter().filter(|r| r["type"] == "published").collect();
    for r in &replies {
        assert_eq!(r["delivered"], subscribers, "every subscriber, on both processes, counted: {r}");
    }
    replies.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

async fn wait_for_replies(client: &Client, kind: &str, n: usize) {
    for _ in 0..1000 {
        if client.replies().iter().filter(|r| r["type"] == kind).count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} {kind} replies: {:?}", client.replies().len());
}

async fn wait_for_seqs(clients: &[&Client], n: usize) {
    for _ in 0..1000 {
        if clients.iter().all(|c| c.seqs().len() >= n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_on_either_process_reach_every_subscriber_on_both_in_order() {
    let redis = RedisServer::start().expect("redis");
    let (a, b) = (on_redis(&redis), on_redis(&redis));
    publishes_reach_every_subscriber(a, b, || members(&redis, ROOM)).await;
}

/// The same on a Redis cluster (3 masters with a replica each): a node's channel message
/// is broadcast by every master and re-broadcast by replicas, and each subscriber still
/// gets every publish exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_on_either_process_reach_every_subscriber_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 1).expect("redis cluster");
    let args = ["--redis-url", &cluster.url(), "--redis-cluster"];
    let (a, b) = (
        DevGateway::start_with(&crate::common::repo_stages(), &args),
        DevGateway::start_with(&crate::common::repo_stages(), &args),
    );
    let key = format!("room:{{{ROOM}}}:connections");
    let count = || match cluster.cmd_for_key(&key, &["SCARD", &key]).expect("SCARD") {
        RespValue::Integer(n) => n,
        other => panic!("SCARD: {other:?}"),
    };
    publishes_reach_every_subscriber(a, b, count).await;
}

async fn publishes_reach_every_subscriber(a: DevGateway, b: DevGateway, members: impl Fn() -> i64) {
    let start = Instant::now();
    let mut subscribers = Vec::new();
    for gw in [&a, &b, &a, &b, &a, &b] {
        subscribers.push(subscribed(gw, start).await);
    }
    assert_eq!(members(), 6);

    // Both publishers send without waiting for replies, so the two processes' publishes
    // to the one room interleave.
    let (mut pa, mut pb) = (Client::new(a.connect().await, start), Client::new(b.connect().await, start));
    const EACH: u64 = 150;
    for n in 0..EACH {
        pa.send(json!({"action": "publish", "room": ROOM, "data": {"from": "a", "n": n}})).await;
        pb.send(json!({"action": "publish", "room": ROOM, "data": {"from": "b", "n": n}})).await;
    }
    wait_for_replies(&pa, "published", EACH as usize).await;
    wait_for_replies(&pb, "published", EACH as usize).await;
    let mut acked: Vec<u64> = acknowledged(&pa, 6);
    acked.extend(acknowledged(&pb, 6));
    acked.sort_unstable();
    assert_eq!(acked.len() as u64, 2 * EACH);
    assert_eq!(acked.iter().collect::<BTreeSet<_>>().len() as u64, 2 * EACH, "one seq per publish");

    let clients: Vec<&Client> = subscribers.iter().map(|(c, _)| c).collect();
    wait_for_seqs(&clients, acked.len()).await;
    for (i, (c, first)) in subscribers.iter().enumerate() {
        let expected: Vec<u64> = acked.iter().copied().filter(|s| s > first).collect();
        assert_eq!(
            c.seqs(),
            expected,
            "subscriber {i} (process {}): every publish once, in seq order",
            ["a", "b"][i % 2]
        );
    }
    // Nobody mistook the other process's subscribers for gone ones.
    assert_eq!(members(), 6);
    for gw in [&a, &b] {
        assert_eq!(gw.metric("wsctl_prunes_total"), 0);
        assert_eq!(gw.metric("wsctl_deliveries_total"), 3 * 2 * EACH as i64, "each process delivered to its own 3");
    }

    // The operator's publish through one process reaches the other's subscribers too.
    let reply = a.admin(json!({"op": "publish", "room": ROOM, "data": {"from": "operator"}}));
    assert_eq!(reply["report"]["delivered"], 6, "{reply}");
    let seq = reply["report"]["seq"].as_u64().unwrap();
    wait_for_seqs(&clients, acked.len() + 1).await;
    for (c, _) in &subscribers {
        assert_eq!(c.seqs().last(), Some(&seq));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_keeps_its_members_until_its_claim_lapses_then_they_are_pruned() {
    let redis = RedisServer::start().expect("redis");
    let a = on_redis(&redis);
    let mut b = on_redis(&redis);
    let start = Instant::now();
    let (on_a, _) = subscribed(&a, start).await;
    let mut on_b = Vec::new();
    for _ in 0..2 {
        on_b.push(subscribed(&b, start).await.0);
    }
    assert_eq!(members(&redis, ROOM), 3);
    // SIGKILL: no `$disconnect` runs, B's members stay in the room.
    let killed_at = Instant::now();
    // SAFETY: kill() with a valid pid and signal number has no memory effects.
    unsafe {
        libc::kill(b.pid() as i32, libc::SIGKILL);
    }
    let _ = b.interrupt();
    drop(on_b);

    // Within B's claim (15 s) its members are neither delivered to nor pruned.
    let reply = a.admin(json!({"op": "publish", "room": ROOM, "data": {"n": 1}}));
    assert_eq!(
        (reply["report"]["delivered"].as_u64(), reply["report"]["pruned"].as_u64()),
        (Some(1), Some(0)),
        "{reply}"
    );
    assert_eq!(reply["report"]["failed"], 2, "{reply}");
    assert_eq!(members(&redis, ROOM), 3, "a live claim protects the members");

    // Past the claim, the next publish finds B gone and prunes its members.
    let lapse = Duration::from_secs(16).saturating_sub(killed_at.elapsed());
    tokio::time::sleep(lapse).await;
    let reply = a.admin(json!({"op": "publish", "room": ROOM, "data": {"n": 2}}));
    assert_eq!(
        (reply["report"]["delivered"].as_u64(), reply["report"]["pruned"].as_u64()),
        (Some(1), Some(2)),
        "{reply}"
    );
    assert_eq!(members(&redis, ROOM), 1);
    wait_for_seqs(&[&on_a], 2).await;
    assert_eq!(on_a.seqs(), vec![1, 2]);
    assert_eq!(a.metric("wsctl_prunes_total"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_of_one_process_reaches_connections_on_another() {
    let redis = RedisServer::start().expect("redis");
    let (a, b) = (on_redis(&redis), on_redis(&redis));
    let start = Instant::now();
    let ws = connect_as(&b.url, &b.key, "client-on-b").await.expect("connect to b");
    let client = Client::new(ws, start);
    let id = b.connection_id("client-on-b");
    let mgmt = a.management_client();

    mgmt.post_to_connection()
        .connection_id(&id)
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(br#"{"type":"message","seq":41}"#.to_vec()))
        .send()
        .await
        .expect("post through process a");
    for _ in 0..250 {
        if !client.seqs().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.seqs(), vec![41], "the post through a reached the client on b");

    let info = mgmt.get_connection().connection_id(&id).send().await.expect("get through process a");
    assert_eq!(info.identity().and_then(|i| i.user_agent()), Some("client-on-b"));
    assert!(info.connected_at().is_some() && info.last_active_at().is_some());

    mgmt.delete_connection().connection_id(&id).send().await.expect("delete through process a");
    let (code, _) = client.wait_closed(Duration::from_secs(5)).await;
    assert_eq!(code, Some(4000));
    let err = mgmt.get_connection().connection_id(&id).send().await.expect_err("gone after the kick");
    assert!(err.as_service_error().is_some_and(|e| e.is_gone_exception()), "{err:?}");
    // An id no process minted is gone, as on API Gateway.
    let err = mgmt.get_connection().connection_id("zzzzAAAAAAAAAAAA").send().await.expect_err("unknown id");
    assert!(err.as_service_error().is_some_and(|e| e.is_gone_exception()), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_both_processes_listen_again() {
    let aof = TempDir::new("redis-aof").unwrap();
    let dir = aof.path().to_str().unwrap().to_owned();
    let mut redis = RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always", "--dir", &dir])
        .expect("redis");
    let (a, b) = (on_redis(&redis), on_redis(&redis));
    let start = Instant::now();
    let (on_b, first) = subscribed(&b, start).await;
    redis.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart().unwrap();

    // Publishes on a, retried until Redis answers again; each acknowledged one must reach
    // the subscriber on b (after b re-subscribed to its channel: within a few seconds).
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.len() < 20 && Instant::now() < deadline {
        let reply = a.admin(json!({"op": "publish", "room": ROOM, "data": {"n": acked.len()}}));
        if let Some(report) = reply.get("report") {
            if report["delivered"] == 1 {
                acked.push(report["seq"].as_u64().unwrap());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(acked.len(), 20, "publishes reaching b after the restart");
    wait_for_seqs(&[&on_b], acked.len()).await;
    let got: Vec<u64> = on_b.seqs().into_iter().filter(|s| *s > first).collect();
    assert_eq!(got, acked, "every publish acknowledged as delivered reached b, in order");
    assert_eq!(members(&redis, ROOM), 1);
}
