//! Connections that outlive every timer of `wsctl dev`.
//!
//! The first release dropped every connection from the gateway 10 s after it connected
//! (the upgrade deadline was applied to upgraded connections too), and no test held a
//! connection that long. Each test here holds real clients past the gateway's background
//! paths and checks, from outside, that a healthy connection keeps receiving every
//! message, stays listed, can be kicked, and is closed with the documented code when —
//! and only when — its limit applies:
//!
//! | background path | where it is exercised |
//! |---|---|
//! | upgrade deadline (10 s) | every test: clients live past 10 s |
//! | sweeper (every tenth of the shorter limit) | short-limits tests: runs every 300 ms |
//! | idle timeout | short limits: an idle client is closed 1001 at 3 s, active ones never |
//! | maximum lifetime | short limits: closed 1001 at 14 s, not before |
//! | slow-consumer eviction | short limits: an 8-message queue never evicts a reader |
//! | record TTL | short limits: lifetime + 1 s margin; records stay listed throughout |
//! | key-slot expiry | short limits: a capped key's slot is held for the whole life |
//! | rate-limit refill | short limits: 2.5 publishes/s against a 5/s bucket of 5 for 12 s |
//! | room history trimming | short limits: history of 3, `since` replay truncates |
//! | 410 pruning | `@connections` GET/POST answer 200 for live connections past 10 s |
//! | all of it on default limits | `default_limits_hold_real_clients_for_30_seconds` |

use crate::common::reader::Client;
use crate::common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use wsctl_testkit::{RedisServer, TempDir};

const ROOM: &str = "price:coingecko:bitcoin";

const SHORT_LIMITS: &str = "limits:
  idle_timeout_secs: 3
  max_lifetime_secs: 14
  record_ttl_margin_secs: 1
  room_history: 3
  requests_per_second: 5
  request_burst: 5
  outbound_queue_messages: 8
";

/// Connects with `key` and a user agent that names the client in `connections list`.
async fn client(gw: &DevGateway, key: &str, agent: &str, start: Instant) -> Client {
    Client::new(connect_as(&gw.url, key, agent).await.expect("connect"), start)
}

/// The live connections' user agents, from the operator's `list_connections`.
fn listed_agents(gw: &DevGateway) -> Vec<String> {
    let reply = gw.admin(json!({"op": "list_connections", "limit": 100}));
    let mut agents: Vec<String> = reply["page"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|d| d["record"]["userAgent"].as_str().unwrap_or_default().to_owned())
        .collect();
    agents.sort();
    agents
}

/// `GetConnection` through the real management-API client: the connection's age in ms.
async fn connection_age_ms(gw: &DevGateway, id: &str) -> i64 {
    let out = gw.management_client().get_connection().connection_id(id).send().await;
    let out = out.unwrap_or_else(|e| panic!("GetConnection {id}: {e:?}"));
    let connected = out.connected_at().expect("connectedAt").to_millis().expect("millis");
    let last = out.last_active_at().expect("lastActiveAt").to_millis().expect("millis");
    assert!(last >= connected, "lastActiveAt before connectedAt");
    last - connected
}

/// Every seq from `first` to `last`, once and in order.
fn assert_contiguous(who: &str, seqs: &[u64], first: u64, last: u64) {
    let expected: Vec<u64> = (first..=last).collect();
    assert_eq!(seqs, expected.as_slice(), "{who}: expected every seq {first}..={last} exactly once, in order");
}

fn short_stages() -> TempDir {
    let dir = TempDir::new("stages").expect("temp dir");
    std::fs::write(dir.join("local.yaml"), SHORT_LIMITS).expect("stage file");
    dir
}

async fn sleep_until(start: Instant, at: Duration) {
    tokio::time::sleep_until((start + at).into()).await;
}

/// The short-limits scenario on the gateway `gw` (stage [`SHORT_LIMITS`]).
async fn every_timer_fires_only_where_it_applies(gw: &DevGateway) {
    let capped = gw.admin(json!({"op": "create_key", "name": "capped", "scopes": "subscribe", "max_connections": 1}));
    let capped_key = capped["key"].as_str().unwrap_or_else(|| panic!("{capped}")).to_owned();
    let start = Instant::now();

    // steady: subscribed, pings every second; kicked at the end by the operator.
    let mut steady = client(gw, &gw.key, "steady", start).await;
    steady.send(json!({"action": "subscribe", "room": ROOM})).await;
    let first = steady.reply("subscribed").await["seq"].as_u64().unwrap() + 1;
    // lifer: subscribed on the capped key, never kicked: the 14 s lifetime closes it.
    let mut lifer = client(gw, &capped_key, "lifer", start).await;
    lifer.send(json!({"action": "subscribe", "room": ROOM})).await;
    lifer.reply("subscribed").await;
    // idler: connected, silent and subscribed to nothing: the 3 s idle timeout closes it.
    let idler = client(gw, &gw.key, "idler", start).await;
    // publisher: 2.5 publishes/s for 12 s against a bucket of 5 refilled at 5/s.
    let mut publisher = client(gw, &gw.key, "publisher", start).await;

    let mut last_acked = 0;
    let mut at = Duration::from_millis(500);
    let mut n = 0;
    while at < Duration::from_secs(12) {
        sleep_until(start, at).await;
        n += 1;
        publisher.send(json!({"action": "publish", "room": ROOM, "data": {"n": n}, "id": n})).await;
        if n % 3 == 0 {
            steady.send(json!({"action": "ping"})).await;
            lifer.send(json!({"action": "ping"})).await;
        }
        at += Duration::from_millis(400);
    }
    // Every publish was acknowledged (none refused by the rate limit), in order.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acks: Vec<Value> = publisher.replies().into_iter().filter(|r| r["type"] != "pong").collect();
    assert_eq!(acks.len(), n as usize, "one reply per publish: {acks:?}");
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack["type"], "published", "publish {} at ~{} ms: {ack}", i + 1, 500 + i * 400);
        last_acked = ack["seq"].as_u64().unwrap();
    }

    // The idle client was closed by the idle timeout, not before 3 s; nobody else was.
    let (code, when) = idler.closed().expect("the idle client was closed");
    assert_eq!(code, Some(1001), "idle timeout closes with 1001");
    assert!(when >= Duration::from_millis(2900), "closed as idle after only {when:?}");
    assert_eq!(steady.closed(), None, "steady was closed: {:?}", steady.closed());
    assert_eq!(lifer.closed(), None, "lifer was closed before its lifetime: {:?}", lifer.closed());
    assert_eq!(publisher.closed(), None, "publisher was closed: {:?}", publisher.closed());

    // ~12.5 s in: past the upgrade deadline, four idle periods, the history and the buckets.
    assert!(start.elapsed() > Duration::from_secs(12));
    assert_contiguous("steady", &steady.seqs(), first, last_acked);
    assert_contiguous("lifer", &lifer.seqs(), first, last_acked);
    assert_eq!(listed_agents(gw), ["lifer", "publisher", "steady"], "listed past every timer");
    assert_eq!(gw.metric("wsctl_live_connections"), 3, "live gauge past every timer");
    let steady_id = gw.connection_id("steady");
    assert!(connection_age_ms(gw, &steady_id).await > 11_000, "GetConnection past 10 s");
    // The capped key's slot is still held by lifer: a second connection is refused.
    assert_eq!(refused_status(&gw.url_with(&capped_key)).await, Some(403), "slot held for the connection's life");
    // History trimmed to 3: a replay from the start is truncated, a recent one is whole.
    let mut late = gw.connect().await;
    send(&mut late, json!({"action": "subscribe", "room": ROOM, "since": 1})).await;
    let reply = recv(&mut late).await;
    assert_eq!((reply["replayed"].as_u64(), reply["truncated"].as_bool()), (Some(3), Some(true)), "{reply}");
    for seq in last_acked - 2..=last_acked {
        assert_eq!(recv(&mut late).await["seq"].as_u64(), Some(seq));
    }
    send(&mut late, json!({"action": "subscribe", "room": ROOM, "since": last_acked - 2})).await;
    let reply = recv(&mut late).await;
    assert_eq!((reply["replayed"].as_u64(), reply["truncated"].as_bool()), (Some(2), None), "{reply}");
    send(&mut late, json!({"action": "unsubscribe", "room": ROOM})).await;
    drop(late);

    // The operator kicks steady: close 4000.
    let kicked = gw.admin(json!({"op": "kick_connection", "connection_id": steady_id}));
    assert_ne!(kicked["kind"], "error", "{kicked}");
    assert_eq!(steady.wait_closed(Duration::from_secs(5)).await.0, Some(4000), "kick closes with 4000");

    // lifer is closed by the 14 s lifetime with 1001, not before; its slot is freed.
    let (code, when) = lifer.wait_closed(Duration::from_secs(5)).await;
    assert_eq!(code, Some(1001), "lifetime closes with 1001");
    assert!(when >= Duration::from_millis(13_900), "closed for lifetime after only {when:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!listed_agents(gw).contains(&"lifer".to_owned()), "lifer's $disconnect ran");
    assert_eq!(refused_status(&gw.url_with(&capped_key)).await, None, "the capped key's slot was freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_limits_every_timer_fires_only_where_it_applies() {
    let stages = short_stages();
    let gw = DevGateway::start_with(stages.path(), &[]);
    every_timer_fires_only_where_it_applies(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_limits_every_timer_fires_only_where_it_applies_on_redis() {
    let redis = RedisServer::start().expect("redis-server");
    let stages = short_stages();
    let gw = DevGateway::start_with(stages.path(), &["--redis-url", &redis.url()]);
    every_timer_fires_only_where_it_applies(&gw).await;
}

/// Default limits (the repository's `local` stage): real clients held 30 s, receiving a
/// publish every second, listed and reachable through `@connections` at the end, then
/// closed 1001 by Ctrl-C with their `$disconnect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_hold_real_clients_for_30_seconds() {
    let mut gw = DevGateway::start_with(Path::new(&repo_stages()), &[]);
    let start = Instant::now();
    let mut subscribers = Vec::new();
    let mut firsts = Vec::new();
    for i in 0..3 {
        let mut c = client(&gw, &gw.key, &format!("sub-{i}"), start).await;
        c.send(json!({"action": "subscribe", "room": ROOM})).await;
        firsts.push(c.reply("subscribed").await["seq"].as_u64().unwrap() + 1);
        subscribers.push(c);
    }
    let mut publisher = client(&gw, &gw.key, "publisher", start).await;
    for n in 1..=30u64 {
        sleep_until(start, Duration::from_secs(n)).await;
        publisher.send(json!({"action": "publish", "room": ROOM, "data": {"n": n}, "id": n})).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acks = publisher.replies();
    assert_eq!(acks.len(), 30, "{acks:?}");
    let last = acks.last().and_then(|a| a["seq"].as_u64()).expect("last seq");
    for (i, c) in subscribers.iter().enumerate() {
        assert_contiguous(&format!("sub-{i}"), &c.seqs(), firsts[i], last);
        assert_eq!(c.closed(), None);
    }
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert_eq!(listed_agents(&gw), ["publisher", "sub-0", "sub-1", "sub-2"]);
    assert_eq!(gw.metric("wsctl_live_connections"), 4);
    assert!(connection_age_ms(&gw, &gw.connection_id("sub-0")).await > 28_000, "GetConnection at 30 s");

    // Ctrl-C: every connection is closed with 1001 (not dropped: 1006).
    assert_eq!(gw.interrupt(), Some(0), "the gateway exits cleanly on Ctrl-C");
    for c in subscribers.iter().chain([&publisher]) {
        assert_eq!(c.wait_closed(Duration::from_secs(5)).await.0, Some(1001));
    }
}

/// Slow-consumer eviction applies to a client that stops reading, and only to it: a raw
/// subscriber that never reads is closed (its `$disconnect` runs, the metric counts it)
/// once its outbound queue overflows, while a publisher that keeps reading is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_evicted_as_a_slow_consumer() {
    let stages = TempDir::new("stages").expect("temp dir");
    let limits = "limits:
  outbound_queue_bytes: 65536
  outbound_queue_messages: 100
  write_timeout_secs: 2
  send_buffer_bytes: 65536
  requests_per_second: 1000
  request_burst: 1000
";
    std::fs::write(stages.join("local.yaml"), limits).expect("stage file");
    let gw = DevGateway::start_with(stages.path(), &[]);
    let start = Instant::now();
    let room = "tvl:protocol:stalled";
    // Subscribes, then is never read again: the kernel's buffers fill, then the queue.
    let mut stalled = connect_as(&gw.url, &gw.key, "stalled").await.expect("connect");
    subscribe(&mut stalled, room).await;
    let mut publisher = client(&gw, &gw.key, "publisher", start).await;
    let blob = "x".repeat(20_000);
    // 100 × 20 KB = 2 MB: more than the fixed send buffer, the client's receive buffer and
    // the queue hold together (an autotuned send buffer of up to 4 MiB would absorb it all).
    for n in 0..100 {
        publisher.send(json!({"action": "publish", "room": room, "data": {"n": n, "pad": blob}, "id": n})).await;
    }
    // Every socket the gateway accepted has the fixed kernel send buffer (Linux reports
    // twice the value set), not an autotuned one of up to 4 MiB.
    let buffers = kernel_send_buffers(gw.addr.port());
    assert!(!buffers.is_empty(), "ss listed no socket of the gateway");
    assert!(buffers.iter().all(|b| *b == 2 * 65536), "send buffers: {buffers:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while listed_agents(&gw).contains(&"stalled".to_owned()) {
        assert!(Instant::now() < deadline, "the stalled subscriber was never evicted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gw.metric("wsctl_slow_consumers_total"), 1);
    assert_eq!(listed_agents(&gw), ["publisher"], "only the stalled client was evicted");
    assert_eq!(publisher.closed(), None);
    drop(stalled);
}

/// The kernel send buffer (`ss -m`'s `tb`) of every established socket on local `port`.
fn kernel_send_buffers(port: u16) -> Vec<u64> {
    let filter = format!("( sport = :{port} )");
    let out = std::process::Command::new("ss")
        .args(["-tmnH", "state", "established", &filter])
        .output()
        .expect("run ss (Debian package iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .split("skmem:(")
        .skip(1)
        .filter_map(|m| m.split(',').find_map(|f| f.strip_prefix("tb")).and_then(|v| v.parse().ok()))
        .collect()
}
