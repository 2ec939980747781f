//! The room store's memory bounds, each written as the attack it stops (issue 17, item
//! 4): one publishing key floods 100 KB messages, within its rate limit, into one room or
//! into many. Each case runs on the in-memory store and on a real redis-server, except the
//! gateway-wide total, which only the in-memory store applies (Redis has `maxmemory`).

use serde_json::value::RawValue;
use std::sync::Arc;
use wsctl_handlers::limits::Limits;
use wsctl_handlers::protocol::{Frame, MessageTemplate};
use wsctl_handlers::room::RoomName;
use wsctl_handlers::store::memory::MemoryRoomStore;
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_handlers::store::{PublishBounds, PublishError, RoomQuota, RoomStore, Subscription};
use wsctl_testkit::{RedisCluster, RedisServer};

const KB: usize = 1024;

/// A 100 KB JSON value, the probe's message size.
fn blob() -> Box<RawValue> {
    RawValue::from_string(format!(r#"{{"blob":"{}"}}"#, "x".repeat(100 * KB))).expect("raw JSON")
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name, 128).expect("room name")
}

fn bounds(
    room_history_bytes: usize,
    max_history_bytes_total: usize,
    creator: Option<(&str, usize)>,
) -> PublishBounds<'_> {
    PublishBounds {
        room_history_bytes,
        max_history_bytes_total,
        creator: creator.map(|(key_id, max_rooms)| RoomQuota { key_id, max_rooms }),
    }
}

async fn publish(store: &dyn RoomStore, name: &str, b: &PublishBounds<'_>) -> Result<u64, PublishError> {
    let data = blob();
    store.publish(&room(name), &MessageTemplate::new(name, &data, 1), 1, b).await.map(|p| p.seq)
}

/// Everything the room's history holds (a subscribe with `since: 0` at the store).
async fn history(store: &dyn RoomStore, name: &str) -> Subscription {
    store.subscribe("probe", &room(name), Some(0), 1_000).await.expect("subscribe")
}

fn bytes(frames: &[Frame]) -> usize {
    frames.iter().map(|f| f.as_str().len()).sum()
}

fn seq_of(frame: &Frame) -> u64 {
    let v: serde_json::Value = serde_json::from_str(frame.as_str()).expect("frame JSON");
    v["seq"].as_u64().expect("seq")
}

fn memory() -> Arc<dyn RoomStore> {
    Arc::new(MemoryRoomStore::new(Limits::default().room_history))
}

fn redis(server: &RedisServer) -> Arc<dyn RoomStore> {
    let config = RedisConfig {
        url: server.url(),
        cluster: false,
        history: Limits::default().room_history,
        connection_ttl_secs: 600,
    };
    Arc::new(RedisRoomStore::new(config).expect("redis store"))
}

/// 30 messages of 100 KB into one room (3 MB; 100 messages of history would hold them
/// all): the history keeps the newest ones that fit in 512 KiB, and a message larger than
/// the whole bound still stays as the room's latest.
async fn one_room_flood(store: &dyn RoomStore) {
    let b = bounds(512 * KB, 1 << 30, None);
    for n in 1..=30 {
        assert_eq!(publish(store, "flood:one", &b).await.expect("publish"), n);
    }
    let sub = history(store, "flood:one").await;
    let held = bytes(&sub.replay);
    assert!(held <= 512 * KB, "history holds {held} bytes, over 512 KiB");
    assert!(held > 400 * KB, "history holds only {held} bytes: it should fill the bound");
    assert_eq!(sub.replay.last().map(seq_of), Some(30), "the newest message is kept");
    assert!(sub.truncated, "history no longer reaches back to seq 1");

    let tiny = bounds(1_000, 1 << 30, None);
    publish(store, "flood:tiny", &tiny).await.expect("publish");
    publish(store, "flood:tiny", &tiny).await.expect("publish");
    let latest = store.subscribe("probe", &room("flood:tiny"), None, 1_000).await.expect("subscribe").latest;
    assert_eq!(latest.as_ref().map(seq_of), Some(2), "a message over the bound is still the latest");
    assert_eq!(history(store, "flood:tiny").await.replay.len(), 1, "and the only one kept");
}

/// One key publishes into 8 rooms with a quota of 5: the sixth new room is refused and
/// nothing of it is stored; the key still publishes to its rooms; another key and an
/// operator publish (no key) still create rooms.
async fn one_key_many_rooms(store: &dyn RoomStore, key: &str) {
    let mine = bounds(1 << 20, 1 << 30, Some((key, 5)));
    for i in 0..5 {
        publish(store, &format!("{key}:r{i}"), &mine).await.expect("within the quota");
    }
    for i in 5..8 {
        let name = format!("{key}:r{i}");
        match publish(store, &name, &mine).await {
            Err(PublishError::TooManyRooms(5)) => {}
            other => panic!("room {i} of a key with a quota of 5: {other:?}"),
        }
        assert_eq!(store.room_info(&room(&name)).await.expect("room_info"), None, "nothing stored for {name}");
    }
    assert_eq!(publish(store, &format!("{key}:r0"), &mine).await.expect("an existing room"), 2);
    let other = format!("{key}-other");
    let theirs = bounds(1 << 20, 1 << 30, Some((&other, 5)));
    assert_eq!(publish(store, &format!("{key}:r5"), &theirs).await.expect("another key's quota"), 1);
    assert_eq!(publish(store, &format!("{key}:r5"), &mine).await.expect("now an existing room"), 2);
    let operator = bounds(1 << 20, 1 << 30, None);
    assert_eq!(publish(store, &format!("{key}:r6"), &operator).await.expect("operator publish"), 1);
}

#[tokio::test]
async fn a_flood_into_one_room_keeps_its_history_within_room_history_bytes() {
    one_room_flood(&*memory()).await;
    let server = RedisServer::start().expect("redis-server");
    one_room_flood(&*redis(&server)).await;
}

#[tokio::test]
async fn a_key_cannot_create_rooms_beyond_max_rooms_per_key() {
    one_key_many_rooms(&*memory(), "k1").await;
    let server = RedisServer::start().expect("redis-server");
    one_key_many_rooms(&*redis(&server), "k1").await;
}

#[tokio::test]
async fn both_redis_bounds_hold_in_cluster_mode() {
    // The rooms and the key's room set land on different shards: each script stays in
    // its own hash slot.
    let cluster = RedisCluster::start(3, 0).expect("redis cluster");
    let config = RedisConfig {
        url: cluster.url(),
        cluster: true,
        history: Limits::default().room_history,
        connection_ttl_secs: 600,
    };
    let store = RedisRoomStore::new(config).expect("redis store");
    one_room_flood(&store).await;
    one_key_many_rooms(&store, "k1").await;
}

#[tokio::test]
async fn a_redis_room_from_before_the_byte_bound_is_trimmed_too() {
    let server = RedisServer::start().expect("redis-server");
    let store = redis(&server);
    let roomy = bounds(1 << 30, 1 << 30, None);
    for _ in 0..10 {
        publish(&*store, "old:room", &roomy).await.expect("publish");
    }
    // As a room written before the byte size was kept: no `history_bytes` in its meta.
    server.cmd(&["HDEL", "room:{old:room}:meta", "history_bytes"]).expect("HDEL");
    publish(&*store, "old:room", &bounds(512 * KB, 1 << 30, None)).await.expect("publish");
    let sub = history(&*store, "old:room").await;
    assert!(bytes(&sub.replay) <= 512 * KB, "{} bytes held, over 512 KiB", bytes(&sub.replay));
    assert_eq!(sub.replay.last().map(seq_of), Some(11));
}

#[tokio::test]
async fn a_flood_across_rooms_keeps_the_memory_store_within_max_history_bytes_total() {
    let store = memory();
    let total = 1024 * KB;
    let b = bounds(512 * KB, total, None);
    // A quiet room publishes once, then four busy rooms ten times each (4 MB): only the
    // busy rooms' older messages go; every room keeps its newest, since those fit.
    publish(&*store, "few:quiet", &b).await.expect("publish");
    for _ in 0..10 {
        for r in 0..4 {
            publish(&*store, &format!("few:{r}"), &b).await.expect("publish");
        }
    }
    let mut held = 0;
    for name in ["few:quiet", "few:0", "few:1", "few:2", "few:3"] {
        let sub = history(&*store, name).await;
        held += bytes(&sub.replay);
        let newest = if name == "few:quiet" { 1 } else { 10 };
        assert_eq!(sub.replay.last().map(seq_of), Some(newest), "room {name} keeps its newest message");
    }
    assert!(held <= total, "{held} bytes of history, over {total}");

    // Forty rooms (their newest messages alone are 4 MB): the rooms published to longest
    // ago lose their newest too, and the total still holds.
    for r in 0..40 {
        publish(&*store, &format!("many:{r}"), &b).await.expect("publish");
    }
    let mut held = 0;
    let few = ["few:quiet", "few:0", "few:1", "few:2", "few:3"].map(String::from);
    for name in few.into_iter().chain((0..40).map(|r| format!("many:{r}"))) {
        held += bytes(&history(&*store, &name).await.replay);
    }
    assert!(held <= total, "{held} bytes of history across 45 rooms, over {total}");
    assert_eq!(history(&*store, "many:39").await.replay.len(), 1, "the newest room keeps its message");
}

#[tokio::test]
async fn a_room_whose_history_the_total_evicted_no_longer_counts_against_its_key() {
    let store = memory();
    // Room for two 100 KB messages in all; the key may hold three rooms.
    let b = bounds(512 * KB, 250 * KB, Some(("k", 3)));
    for r in 0..3 {
        publish(&*store, &format!("q:{r}"), &b).await.expect("within the quota");
    }
    assert_eq!(store.room_info(&room("q:0")).await.expect("room_info"), None, "q:0's only message was evicted");
    // With room to spare from here on, so nothing else is evicted.
    let roomy = bounds(512 * KB, 1 << 30, Some(("k", 3)));
    publish(&*store, "q:3", &roomy).await.expect("q:0 no longer counts, so a fourth room fits");
    match publish(&*store, "q:4", &roomy).await {
        Err(PublishError::TooManyRooms(3)) => {}
        other => panic!("a fifth room with q:1..q:3 held: {other:?}"),
    }
}
