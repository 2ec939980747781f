//! `wsctl dev --redis-url <seed> --redis-cluster` against a real Redis Cluster (3 masters,
//! 1 replica each, started by the test on free loopback ports), with real WebSocket clients:
//! rooms spread over every master, then a master SIGKILLed under live connections.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wsctl_testkit::{RedisCluster, RespValue};

const DEADLINE: Duration = Duration::from_secs(30);

fn members_key(room: &str) -> String {
    format!("room:{{{room}}}:connections")
}

/// `per_master` room names on each master (by their member key's slot), interleaved.
fn rooms_on_every_master(cluster: &RedisCluster, prefix: &str, per_master: usize) -> Vec<String> {
    let mut by_master: BTreeMap<u16, Vec<String>> =
        cluster.masters().expect("masters").into_iter().map(|m| (m, Vec::new())).collect();
    for i in 0..1000 {
        let room = format!("{prefix}:r{i}");
        let list = by_master.get_mut(&cluster.master_for_key(&members_key(&room)).expect("owner")).expect("a master");
        if list.len() < per_master {
            list.push(room);
        }
        if by_master.values().all(|l| l.len() == per_master) {
            return (0..per_master)
                .flat_map(|i| by_master.values().map(move |l| l[i].clone()).collect::<Vec<_>>())
                .collect();
        }
    }
    panic!("room names did not spread over the masters");
}

/// The port of the master that owns `room`'s keys.
fn owner(cluster: &RedisCluster, room: &str) -> u16 {
    cluster.master_for_key(&members_key(room)).expect("owner of a room")
}

fn smembers(cluster: &RedisCluster, key: &str) -> Vec<String> {
    cluster.smembers(key).expect("SMEMBERS")
}

async fn request(ws: &mut Ws, v: Value) -> Value {
    send(ws, v).await;
    recv(ws).await
}

/// Subscribes `ws` to a room of its own and reads its connection id back from the cluster.
async fn connection_id(cluster: &RedisCluster, ws: &mut Ws, name: &str) -> String {
    let room = format!("whoami:{name}");
    subscribe(ws, &room).await;
    let ids = smembers(cluster, &members_key(&room));
    assert_eq!(ids.len(), 1, "{room}: {ids:?}");
    ids[0].clone()
}

/// Polls `check` (blocking Redis reads) until it holds or [`DEADLINE`] passes.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes through the WebSocket `publish` action; returns the reply.
async fn publish(ws: &mut Ws, room: &str, data: Value) -> Value {
    let reply = request(ws, json!({"action": "publish", "room": room, "data": data})).await;
    assert_eq!(reply["type"], "published", "{reply}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_in_rooms_on_every_master_get_exactly_their_messages() {
    let cluster = RedisCluster::start(3, 1).expect("redis cluster");
    let gw = DevGateway::start_with(&repo_stages(), &["--redis-url", &cluster.url(), "--redis-cluster"]);
    let rooms = rooms_on_every_master(&cluster, "tvl:e2e", 2);
    let n = rooms.len();

    // Client i is in rooms i, i+1 and i+3 (mod 6): every room has three members.
    let mut clients = Vec::new();
    for i in 0..n {
        let mut ws = gw.connect().await;
        let id = connection_id(&cluster, &mut ws, &format!("c{i}")).await;
        let mine: Vec<String> = [i, (i + 1) % n, (i + 3) % n].iter().map(|&j| rooms[j].clone()).collect();
        for r in &mine {
            let reply = subscribe(&mut ws, r).await;
            assert_eq!((reply["seq"].as_u64(), &reply["latest"]), (Some(0), &Value::Null), "{reply}");
        }
        clients.push((ws, id, mine));
    }
    for r in &rooms {
        let mut want: Vec<String> = clients.iter().filter(|c| c.2.contains(r)).map(|c| c.1.clone()).collect();
        want.sort();
        assert_eq!(smembers(&cluster, &members_key(r)), want, "members of {r}");
    }

    // Five rounds over every room, interleaved across masters.
    let mut publisher = gw.connect().await;
    const ROUNDS: u64 = 5;
    for k in 1..=ROUNDS {
        for r in &rooms {
            let reply = publish(&mut publisher, r, json!({"room": r, "k": k})).await;
            assert_eq!((reply["seq"].as_u64(), reply["delivered"].as_u64()), (Some(k), Some(3)), "{reply}");
        }
    }
    // Every delivery is queued before its `published` reply, so a ping answered after the
    // expected messages proves nothing else was sent.
    for (ws, id, mine) in &mut clients {
        let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for _ in 0..mine.len() as u64 * ROUNDS {
            let m = recv(ws).await;
            assert_eq!(m["type"], "message", "{id}: {m}");
            let room = m["room"].as_str().expect("room").to_owned();
            assert!(mine.contains(&room), "{id} got a message of {room}, not one of its rooms {mine:?}");
            assert_eq!(m["data"]["room"], m["room"], "{m}");
            assert_eq!(m["data"]["k"], m["seq"], "{m}");
            got.entry(room).or_default().push(m["seq"].as_u64().expect("seq"));
        }
        for r in mine.iter() {
            assert_eq!(got.get(r).map(Vec::as_slice), Some(&[1, 2, 3, 4, 5][..]), "{id} in {r}: in order, once each");
        }
        assert_eq!(request(ws, json!({"action": "ping"})).await["type"], "pong", "{id}: no extra message");
    }

    // Disconnect cleans membership on whichever masters the rooms live.
    let gone: Vec<(String, Vec<String>)> = clients
        .drain(..3)
        .map(|(ws, id, mine)| {
            drop(ws);
            (id, mine)
        })
        .collect();
    until("disconnects to sweep the rooms", || {
        rooms.iter().all(|r| {
            let members = smembers(&cluster, &members_key(r));
            gone.iter().all(|(id, _)| !members.contains(id))
        })
    })
    .await;
    for r in &rooms {
        let mut want: Vec<String> = clients.iter().filter(|c| c.2.contains(r)).map(|c| c.1.clone()).collect();
        want.sort();
        assert_eq!(smembers(&cluster, &members_key(r)), want, "members of {r} after disconnects");
    }
    for (id, _) in &gone {
        let key = format!("connection:{{{id}}}:rooms");
        assert_eq!(cluster.cmd_for_key(&key, &["EXISTS", &key]).expect("EXISTS"), RespValue::Integer(0), "{key}");
    }
    // The survivors still get their rooms' messages.
    let r = &rooms[3];
    let reply = publish(&mut publisher, r, json!({"room": r, "k": ROUNDS + 1})).await;
    let expected = clients.iter().filter(|c| c.2.contains(r)).count() as u64;
    assert_eq!(reply["delivered"].as_u64(), Some(expected), "{reply}");
    for (ws, _, mine) in clients.iter_mut().filter(|c| c.2.contains(r)) {
        let m = recv(ws).await;
        assert_eq!((m["room"].as_str(), m["seq"].as_u64()), (Some(r.as_str()), Some(ROUNDS + 1)), "{mine:?}: {m}");
    }
}

/// SIGKILL of the master that owns a room's slot while clients are subscribed.
///
/// What is guaranteed, and asserted: the gateway keeps running and its clients stay
/// connected; a subscribe that cannot be served is answered with the retryable `unavailable`
/// error and leaves no membership behind, and one that is acknowledged is really stored;
/// once a replica is promoted the gateway heals without a restart (the cluster client
/// re-reads the slot map), memberships and seq written *and replicated* before the kill are
/// there, and publishes reach the room's members again. Rooms on the other masters are
/// served throughout. A client that disconnects while its room's slot has no master may
/// stay listed in that room until the next publish there finds it gone and prunes it.
///
/// What is not guaranteed: Redis replicates asynchronously, so a write acknowledged by a
/// master that dies before it reached the replica is lost with it (a membership, a seq, a
/// history entry). The test therefore waits for the replica to catch up before the kill.
/// Messages published while the room's slot has no master are refused (`unavailable`), not
/// queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_rides_out_a_master_failover() {
    let mut cluster = RedisCluster::start(3, 1).expect("redis cluster");
    let seed = cluster.url();
    let gw = DevGateway::start_with(&repo_stages(), &["--redis-url", &seed, "--redis-cluster"]);
    let rooms = rooms_on_every_master(&cluster, "price:failover", 1);
    // The victim's master is not the seed node (a client needs one live seed to start from).
    let victim = rooms
        .iter()
        .find(|r| !seed.ends_with(&format!(":{}", owner(&cluster, r))))
        .expect("a room off the seed")
        .clone();
    let safe = rooms.iter().find(|r| **r != victim).expect("another room").clone();
    let victim_master = owner(&cluster, &victim);
    let safe_master = owner(&cluster, &safe);

    let mut a = gw.connect().await;
    let mut b = gw.connect().await;
    let mut c = gw.connect().await;
    let mut late = gw.connect().await;
    let mut publisher = gw.connect().await;
    let a_id = connection_id(&cluster, &mut a, "a").await;
    let b_id = connection_id(&cluster, &mut b, "b").await;
    let c_id = connection_id(&cluster, &mut c, "c").await;
    let late_id = connection_id(&cluster, &mut late, "late").await;
    for ws in [&mut a, &mut b, &mut c] {
        subscribe(ws, &victim).await;
        subscribe(ws, &safe).await;
    }
    // Both rooms exist before the outage: a publish that creates a room also counts it
    // against the API key's room quota, which lives in the key's own slot (possibly on the
    // master about to die), so only publishes to existing rooms are independent of it.
    for room in [&victim, &safe] {
        assert_eq!(publish(&mut publisher, room, json!({"before": true})).await["seq"], 1);
        for ws in [&mut a, &mut b, &mut c] {
            assert_eq!(recv(ws).await["data"]["before"], true);
        }
    }

    // Only what reached the replica survives the master: wait for it, then SIGKILL.
    cluster.wait_replicated(victim_master, Duration::from_secs(10)).expect("writes reached the replica");
    // The replicas hold back their failover until the outage has been observed: the slot
    // stays masterless for as long as the assertions below take, whatever the machine's load.
    let replicas = cluster.replicas_of(victim_master).expect("replicas of the victim's master");
    let hold_failover = |cluster: &RedisCluster, hold: bool| {
        for r in &replicas {
            let value = if hold { "yes" } else { "no" };
            cluster.cmd_on(*r, &["CONFIG", "SET", "cluster-replica-no-failover", value]).expect("CONFIG SET");
        }
    };
    hold_failover(&cluster, true);
    cluster.kill_node(victim_master).expect("SIGKILL the master of the victim room");

    // While the slot has no master (a replica cannot be promoted before the node timeout has
    // passed): a subscribe to the victim room is refused as retryable `unavailable`.
    // Both outage requests go first, inside the node timeout (the pings need no Redis).
    let reply = request(&mut late, json!({"action": "subscribe", "room": victim, "id": 1})).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("unavailable")), "{reply}");
    assert_eq!((reply["retryable"].as_bool(), reply["id"].as_u64()), (Some(true), Some(1)), "{reply}");
    // A publish to the victim room fails loudly rather than pretending.
    let reply = request(&mut publisher, json!({"action": "publish", "room": victim, "data": 0})).await;
    assert_eq!(reply["code"], "unavailable", "{reply}");
    // Connections stay open and requests that need no Redis are served.
    for ws in [&mut a, &mut b, &mut late] {
        assert_eq!(request(ws, json!({"action": "ping"})).await["type"], "pong");
    }
    // A client that leaves now: its `$disconnect` cannot reach the victim room's slot.
    drop(c);
    // Rooms on the surviving masters keep working meanwhile, and c is not delivered to.
    // `delivered` counts members handed to their gateway node: c too while its
    // `$disconnect` (which also needs the masterless slot) has not left this room; its
    // node no longer holds it and prunes it.
    let reply = publish(&mut publisher, &safe, json!({"during": true})).await;
    let delivered = reply["delivered"].as_u64().unwrap_or(0);
    assert!((2..=3).contains(&delivered), "{reply}");
    for ws in [&mut a, &mut b] {
        assert_eq!(recv(ws).await["data"]["during"], true);
    }
    let mut safe_members = vec![a_id.clone(), b_id.clone()];
    safe_members.sort();
    until("c to leave the room on a live master", || smembers(&cluster, &members_key(&safe)) == safe_members).await;

    // The promotion (waited for off the runtime's async work).
    hold_failover(&cluster, false);
    let promoted = tokio::task::block_in_place(|| cluster.wait_for_failover(victim_master, DEADLINE))
        .expect("a replica takes over");
    assert_ne!(promoted, victim_master);
    // The refused subscribe left nothing behind; the replicated members are all there (and
    // c, whose disconnect could not reach this slot, until a publish prunes it).
    let mut want = vec![a_id.clone(), b_id.clone()];
    want.sort();
    let mut members = smembers(&cluster, &members_key(&victim));
    members.retain(|m| *m != c_id);
    assert_eq!(members, want, "members on the promoted replica");

    // Healed without a restart and without a user-visible error: a request that arrives
    // more than 1 s after the slot has a master again succeeds at the first attempt (the
    // cluster client's health check has met the dead node and refreshed the slots).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reply = request(&mut late, json!({"action": "subscribe", "room": victim})).await;
    assert_eq!(reply["type"], "subscribed", "the first request after the failover failed: {reply}");
    assert_eq!(reply["seq"], 1, "the replicated seq survived: {reply}");

    assert_eq!(cluster.master_for_key(&members_key(&victim)).expect("owner"), promoted);
    let c_still_member = smembers(&cluster, &members_key(&victim)).contains(&c_id);
    let reply = publish(&mut publisher, &victim, json!({"after": true})).await;
    // On a cluster `delivered` counts members handed to their gateway node: c too while it
    // is still a member (its node no longer holds it and prunes it).
    let handed = if c_still_member { 4 } else { 3 };
    assert_eq!((reply["seq"].as_u64(), reply["delivered"].as_u64()), (Some(2), Some(handed)), "{reply}");
    // c is pruned: the room holds exactly its live members, c's room list is gone.
    want.push(late_id.clone());
    want.sort();
    until("c to be pruned from the victim room", || smembers(&cluster, &members_key(&victim)) == want).await;
    let c_rooms = format!("connection:{{{c_id}}}:rooms");
    until("c's room list to be removed", || {
        cluster.cmd_for_key(&c_rooms, &["EXISTS", &c_rooms]).ok() == Some(RespValue::Integer(0))
    })
    .await;
    for ws in [&mut a, &mut b, &mut late] {
        let m = recv(ws).await;
        assert_eq!(
            (m["room"].as_str(), m["seq"].as_u64(), m["data"]["after"].as_bool()),
            (Some(victim.as_str()), Some(2), Some(true)),
            "{m}"
        );
    }
    // The other master's room is still served by the same master.
    assert_eq!(owner(&cluster, &safe), safe_master);
    let reply = publish(&mut publisher, &safe, json!({"safe": true})).await;
    assert_eq!(reply["delivered"].as_u64(), Some(2), "{reply}");
    for ws in [&mut a, &mut b] {
        assert_eq!(recv(ws).await["data"]["safe"], true);
    }
    // Disconnect still cleans up on the promoted master.
    drop(a);
    until("a's disconnect to sweep the victim room", || !smembers(&cluster, &members_key(&victim)).contains(&a_id))
        .await;
}
