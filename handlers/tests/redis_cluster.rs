//! The Redis [`RoomStore`] in cluster mode against a real Redis Cluster (3 masters, 1 replica
//! each, started by the test): rooms, connections and API keys whose keys hash to slots on
//! every master; then a master SIGKILLed under the store.
//!
//! Every multi-key script keeps its keys in one hash slot (`{room}`, `{connection}`,
//! `{key id}` tags), so no operation may fail with CROSSSLOT; the state is read back from the
//! masters that own the keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use wsctl_handlers::error::StoreError;
use wsctl_handlers::limits::Limits;
use wsctl_handlers::protocol::MessageTemplate;
use wsctl_handlers::room::RoomName;
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_handlers::store::{now_ms, LimitStore, PublishBounds, PublishError, RoomStore, SubscribeError};
use wsctl_testkit::{RedisCluster, RespValue};

const HISTORY: usize = 5;

fn store(cluster: &RedisCluster) -> RedisRoomStore {
    RedisRoomStore::new(RedisConfig { url: cluster.url(), cluster: true, history: HISTORY, connection_ttl_secs: 600 })
        .expect("store config")
}

/// `count` names from `make(i)` whose key (`key(name)`) lands on each master, in order.
fn spread(
    cluster: &RedisCluster,
    per_master: usize,
    make: impl Fn(usize) -> String,
    key: impl Fn(&str) -> String,
) -> Vec<String> {
    let masters = cluster.masters().expect("masters");
    let mut by_master: BTreeMap<u16, Vec<String>> = masters.iter().map(|&m| (m, Vec::new())).collect();
    for i in 0..1000 {
        let name = make(i);
        let owner = cluster.master_for_key(&key(&name)).expect("owner of a key");
        let list = by_master.get_mut(&owner).expect("a known master");
        if list.len() < per_master {
            list.push(name);
        }
        if by_master.values().all(|l| l.len() == per_master) {
            break;
        }
    }
    assert!(by_master.values().all(|l| l.len() == per_master), "names did not spread over the masters");
    // Interleave the masters so neighbouring names live on different nodes.
    (0..per_master).flat_map(|i| by_master.values().map(move |l| l[i].clone()).collect::<Vec<_>>()).collect()
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name, 128).expect("room name")
}

fn smembers(cluster: &RedisCluster, key: &str) -> Vec<String> {
    cluster.smembers(key).expect("SMEMBERS")
}

fn int(cluster: &RedisCluster, args: &[&str]) -> i64 {
    match cluster.cmd_for_key(args[1], args).expect("command") {
        RespValue::Integer(i) => i,
        v => v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{args:?} answered {v:?}")),
    }
}

fn seq_of(frame: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(frame).expect("frame is JSON");
    v["seq"].as_u64().expect("frame has a seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_store_works_across_slots_and_masters() {
    let cluster = RedisCluster::start(3, 1).expect("redis cluster");
    let store = store(&cluster);
    let rooms = spread(&cluster, 3, |i| format!("tvl:cluster:r{i}"), |r| format!("room:{{{r}}}:connections"));
    let conns = spread(&cluster, 2, |i| format!("conn{i}"), |c| format!("connection:{{{c}}}:rooms"));

    // Connection i joins room j when (i + j) % 3 != 0: every room has members on other masters.
    let mut expected: BTreeMap<String, BTreeSet<String>> = rooms.iter().map(|r| (r.clone(), BTreeSet::new())).collect();
    for (i, c) in conns.iter().enumerate() {
        for (_, r) in rooms.iter().enumerate().filter(|(j, _)| (i + j) % 3 != 0) {
            let sub = store.subscribe(c, &room(r), None, 64).await.unwrap_or_else(|e| panic!("subscribe {c} {r}: {e}"));
            assert_eq!((sub.seq, sub.latest.is_none(), sub.replay.len()), (0, true, 0), "fresh room {r}");
            expected.get_mut(r).expect("room").insert(c.clone());
        }
    }
    // Seven publishes per room; history keeps five. Each names exactly the room's members.
    let data = serde_json::value::RawValue::from_string(r#"{"tvl":1}"#.into()).expect("raw JSON");
    let t0 = now_ms();
    for n in 1..=7u64 {
        for r in &rooms {
            let p = store.publish(&room(r), &MessageTemplate::new(r, &data, t0), t0, &bounds()).await.expect("publish");
            assert_eq!(p.seq, n, "{r}");
            assert_eq!(seq_of(p.frame.as_str()), n);
            let members: BTreeSet<String> = p.members.iter().map(|m| m.to_string()).collect();
            assert_eq!(&members, &expected[r], "members of {r} at publish");
        }
    }

    // Replay: history holds seq 3..=7.
    let r0 = room(&rooms[0]);
    let late = "late-subscriber";
    let sub = store.subscribe(late, &r0, Some(3), 64).await.expect("subscribe since 3");
    assert_eq!(sub.seq, 7);
    assert_eq!(sub.replay.iter().map(|f| seq_of(f.as_str())).collect::<Vec<_>>(), vec![4, 5, 6, 7]);
    assert!(!sub.truncated);
    let sub = store.subscribe(late, &room(&rooms[1]), Some(1), 64).await.expect("subscribe since 1");
    assert_eq!(sub.replay.iter().map(|f| seq_of(f.as_str())).collect::<Vec<_>>(), vec![3, 4, 5, 6, 7]);
    assert!(sub.truncated, "seq 2 is gone from history");
    let sub = store.subscribe(late, &room(&rooms[2]), None, 64).await.expect("subscribe latest");
    assert_eq!(sub.latest.as_ref().map(|f| seq_of(f.as_str())), Some(7));
    for r in &rooms[..3] {
        expected.get_mut(r).expect("room").insert(late.to_owned());
    }
    // The room cap counts rooms across slots.
    match store.subscribe(late, &room(&rooms[3]), None, 3).await {
        Err(SubscribeError::TooManyRooms(3)) => {}
        other => panic!("expected TooManyRooms(3), got {other:?}"),
    }
    let mut late_rooms = rooms[..3].to_vec();
    late_rooms.sort();
    assert_eq!(store.rooms_of(late).await.expect("rooms_of"), late_rooms);

    // Unsubscribe: once true, then false.
    let (c0, r_leave) = (&conns[0], rooms.iter().find(|r| expected[*r].contains(&conns[0])).expect("a room of conn0"));
    assert!(store.unsubscribe(c0, &room(r_leave)).await.expect("unsubscribe"));
    assert!(!store.unsubscribe(c0, &room(r_leave)).await.expect("unsubscribe again"));
    expected.get_mut(r_leave).expect("room").remove(c0);

    // Disconnect of conn1 sweeps every room it was in, wherever those live.
    let c1 = &conns[1];
    let c1_rooms: Vec<String> = expected.iter().filter(|(_, m)| m.contains(c1)).map(|(r, _)| r.clone()).collect();
    assert_eq!(store.remove_connection(c1).await.expect("remove_connection"), c1_rooms);
    for r in &c1_rooms {
        expected.get_mut(r).expect("room").remove(c1);
    }
    assert_eq!(store.remove_connection(c1).await.expect("remove again"), Vec::<String>::new());

    // What the store says, and what the owning masters hold.
    for (r, members) in &expected {
        let want: Vec<String> = members.iter().cloned().collect();
        let mut got: Vec<String> =
            store.members(&room(r)).await.expect("members").iter().map(|m| m.to_string()).collect();
        got.sort();
        assert_eq!(got, want, "store members of {r}");
        assert_eq!(smembers(&cluster, &format!("room:{{{r}}}:connections")), want, "SMEMBERS of {r}");
        assert_eq!(int(&cluster, &["GET", &format!("room:{{{r}}}:seq")]), 7);
        assert_eq!(int(&cluster, &["ZCARD", &format!("room:{{{r}}}:history")]), HISTORY as i64);
        let info = store.room_info(&room(r)).await.expect("room_info").expect("room exists");
        assert_eq!((info.subscribers, info.seq, info.last_publish_ms), (members.len() as u64, 7, Some(t0)));
    }
    for c in &conns {
        let key = format!("connection:{{{c}}}:rooms");
        let want: Vec<String> = expected.iter().filter(|(_, m)| m.contains(c)).map(|(r, _)| r.clone()).collect();
        assert_eq!(smembers(&cluster, &key), want, "{key}");
        if c == c1 {
            assert_eq!(int(&cluster, &["EXISTS", &format!("connection:{{{c}}}:gone")]), 1, "tombstone of {c}");
        } else {
            assert!(int(&cluster, &["TTL", &key]) > 0, "{key} expires with the connection");
        }
    }
    let listed = store.list_rooms("tvl:cluster:", None, 100).await.expect("list_rooms");
    let mut names: Vec<String> = listed.items.iter().map(|i| i.room.clone()).collect();
    names.sort();
    assert_eq!(names, expected.keys().cloned().collect::<Vec<_>>());

    // Per-key connection slots (claim/release) on keys of every master.
    let key_ids = spread(&cluster, 1, |i| format!("kid{i}"), |k| format!("key:{{{k}}}:connections"));
    let (now, exp) = (now_ms(), now_ms() + 3_600_000);
    for k in &key_ids {
        assert!(store.claim_slot(k, "a", 2, exp, now).await.expect("claim a"));
        assert!(store.claim_slot(k, "b", 2, exp, now).await.expect("claim b"));
        assert!(store.claim_slot(k, "a", 2, exp, now).await.expect("re-claim a"), "a holder may claim again");
        assert!(!store.claim_slot(k, "c", 2, exp, now).await.expect("claim c"), "key {k} is at its cap");
        store.release_slot(k, "a").await.expect("release a");
        store.release_slot(k, "a").await.expect("release a twice");
        assert!(store.claim_slot(k, "c", 2, exp, now).await.expect("claim c after release"));
        let zkey = format!("key:{{{k}}}:connections");
        let holders = cluster
            .cmd_for_key(&zkey, &["ZRANGE", &zkey, "0", "-1"])
            .expect("ZRANGE")
            .to_sorted_strings()
            .expect("zset");
        assert_eq!(holders, vec!["b".to_string(), "c".to_string()], "{zkey}");
    }
}

/// Retries `op` while it fails with `unavailable`, until it succeeds or `timeout` passes.
/// The default limits' bounds for an operator publish.
fn bounds() -> PublishBounds<'static> {
    PublishBounds::new(&Limits::default(), None)
}

async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let start = Instant::now();
    loop {
        match op().await {
            Ok(v) => return v,
            Err(StoreError::Unavailable { .. }) if start.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: {e} after {:?}", start.elapsed()),
        }
    }
}

/// SIGKILL of the master that owns a room: operations on that room fail as `unavailable`
/// (never a false success) until a replica is promoted; then the same store (no restart)
/// serves the room again, with every write that had reached the replica before the kill.
///
/// Guaranteed: writes replicated before the master died survive the failover (the test waits
/// for the replica's offset before killing). Not guaranteed: Redis replicates
/// asynchronously, so a write acknowledged by a master that dies before replicating it is
/// lost; a subscriber must resubscribe with `since` after a reconnect to recover messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_store_heals_after_a_master_fails_over() {
    let mut cluster = RedisCluster::start(3, 1).expect("redis cluster");
    let store = store(&cluster);
    let seed = cluster.url();
    let rooms = spread(&cluster, 2, |i| format!("price:failover:r{i}"), |r| format!("room:{{{r}}}:connections"));
    // The victim: a room whose master is not the seed node.
    let owner_of = |r: &str| cluster.master_for_key(&format!("room:{{{r}}}:connections")).expect("owner");
    let victim =
        rooms.iter().find(|r| !seed.ends_with(&format!(":{}", owner_of(r)))).expect("a room off the seed").clone();
    let victim_master = owner_of(&victim);
    // Connections whose own keys live off the victim master, so only the room side is hit.
    let conns: Vec<String> = (0..200)
        .map(|i| format!("fo-conn{i}"))
        .filter(|c| cluster.master_for_key(&format!("connection:{{{c}}}:rooms")).expect("owner") != victim_master)
        .take(3)
        .collect();
    let data = serde_json::value::RawValue::from_string("1".into()).expect("raw JSON");
    for c in &conns {
        for r in &rooms {
            store.subscribe(c, &room(r), None, 64).await.expect("subscribe before the kill");
        }
    }
    let t = MessageTemplate::new(&victim, &data, 1);
    assert_eq!(store.publish(&room(&victim), &t, 1, &bounds()).await.expect("publish").seq, 1);

    cluster.wait_replicated(victim_master, Duration::from_secs(10)).expect("writes reached the replica");
    let replica = cluster.replicas_of(victim_master).expect("replicas")[0];
    cluster.kill_node(victim_master).expect("SIGKILL the victim's master");

    // Before the promotion the victim's slot has no master: a subscribe there must not be
    // acknowledged unless it really landed. (On a fast machine a retry inside the client may
    // already reach the promoted replica.)
    let r = room(&victim);
    let newcomer = (0..200)
        .map(|i| format!("fo-new{i}"))
        .find(|c| cluster.master_for_key(&format!("connection:{{{c}}}:rooms")).expect("owner") != victim_master)
        .expect("a connection id off the victim master");
    let early_ack = match store.subscribe(&newcomer, &r, None, 64).await {
        Ok(_) => true,
        Err(SubscribeError::Store(StoreError::Unavailable { .. })) => false,
        Err(e) => panic!("expected unavailable while the master is down, got {e}"),
    };
    let promoted = cluster.wait_for_failover(victim_master, Duration::from_secs(30)).expect("failover");
    assert_eq!(promoted, replica);

    // Healed without a new store: the replicated state is there.
    let members: BTreeSet<String> = eventually(Duration::from_secs(20), "members", || store.members(&r))
        .await
        .iter()
        .map(|m| m.to_string())
        .collect();
    let mut want: BTreeSet<String> = conns.iter().cloned().collect();
    if early_ack {
        want.insert(newcomer.clone());
    }
    assert_eq!(members, want, "membership after failover: replicated members kept, no unacknowledged member");
    let newcomer_rooms = store.rooms_of(&newcomer).await.expect("rooms_of");
    assert_eq!(newcomer_rooms.is_empty(), !early_ack, "a refused subscribe is undone on the connection side");
    let p = eventually(Duration::from_secs(20), "publish", || async {
        store.publish(&r, &t, 2, &bounds()).await.map_err(|e| match e {
            PublishError::Store(e) => e,
            other => panic!("publish: {other}"),
        })
    })
    .await;
    assert_eq!(p.seq, 2, "the seq replicated before the kill survived");
    let sub = eventually(Duration::from_secs(20), "subscribe", || async {
        store.subscribe(&newcomer, &r, Some(0), 64).await.map_err(|e| match e {
            SubscribeError::Store(e) => e,
            other => panic!("{other}"),
        })
    })
    .await;
    assert_eq!(sub.replay.iter().map(|f| seq_of(f.as_str())).collect::<Vec<_>>(), vec![1, 2]);
    want.insert(newcomer.clone());
    assert_eq!(smembers(&cluster, &format!("room:{{{victim}}}:connections")), want.into_iter().collect::<Vec<_>>());
    assert_eq!(cluster.master_for_key(&format!("room:{{{victim}}}:seq")).expect("owner"), promoted);
    // Rooms on the surviving masters were never affected.
    for other in rooms.iter().filter(|o| **o != victim) {
        store.subscribe(&conns[1], &room(other), None, 64).await.expect("subscribe elsewhere");
    }
}
