//! Disconnect racing subscribe, double disconnect, and publish racing disconnect, many
//! times over, against real Redis: afterwards no room holds a member whose connection is
//! gone, and no connection keeps a room list.

use std::sync::Arc;
use wsctl_handlers::limits::Limits;
use wsctl_handlers::protocol::MessageTemplate;
use wsctl_handlers::room::RoomName;
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_handlers::store::{PublishBounds, RoomStore, SubscribeError};
use wsctl_testkit::RedisServer;

const ROUNDS: usize = 150;
const ROOMS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_orphan_membership_after_racing_subscribe_disconnect_publish() {
    let redis = RedisServer::shared();
    let store = Arc::new(
        RedisRoomStore::new(RedisConfig { url: redis.url(), cluster: false, history: 10, connection_ttl_secs: 600 })
            .unwrap(),
    );
    let prefix = format!("race{}", std::process::id());
    let rooms: Vec<RoomName> = (0..ROOMS).map(|i| RoomName::parse(&format!("{prefix}:r{i}"), 128).unwrap()).collect();
    let data = serde_json::value::RawValue::from_string("1".into()).unwrap();
    let mut acked_after_disconnect = 0;
    for round in 0..ROUNDS {
        let conn = format!("{prefix}c{round}");
        let mut tasks = Vec::new();
        for room in rooms.clone() {
            let (s, c) = (store.clone(), conn.clone());
            tasks.push(tokio::spawn(async move {
                match s.subscribe(&c, &room, None, 128).await {
                    Ok(_) => true,
                    Err(SubscribeError::Store(_)) => false,
                    Err(e) => panic!("{e}"),
                }
            }));
        }
        // Two disconnects (a double $disconnect) and a publish race the subscribes.
        let (s1, c1) = (store.clone(), conn.clone());
        let d1 = tokio::spawn(async move { s1.remove_connection(&c1).await.unwrap() });
        let (s2, c2) = (store.clone(), conn.clone());
        let d2 = tokio::spawn(async move { s2.remove_connection(&c2).await.unwrap() });
        let (s3, room, d) = (store.clone(), rooms[round % ROOMS].clone(), data.clone());
        let p = tokio::spawn(async move {
            let t = MessageTemplate::new(room.as_str(), &d, 1);
            s3.publish(&room, &t, 1, &PublishBounds::new(&Limits::default(), None)).await.unwrap()
        });
        let mut acked = 0;
        for t in tasks {
            acked += usize::from(t.await.unwrap());
        }
        d1.await.unwrap();
        d2.await.unwrap();
        p.await.unwrap();
        // Whatever the interleaving: once both disconnects are done, the connection is in
        // no room, and its own room list is gone.
        for room in &rooms {
            let members = store.members(room).await.unwrap();
            assert!(
                !members.iter().any(|m| m.as_ref() == conn),
                "round {round}: {conn} left behind in {room} (acked {acked})"
            );
        }
        assert!(store.rooms_of(&conn).await.unwrap().is_empty(), "round {round}: room list of {conn} survived");
        // A subscribe after the disconnect is refused, never acknowledged.
        let late = store.subscribe(&conn, &rooms[0], None, 128).await;
        if late.is_ok() {
            acked_after_disconnect += 1;
        }
    }
    assert_eq!(acked_after_disconnect, 0, "subscribes after a disconnect were acknowledged");
    for room in &rooms {
        assert!(store.members(room).await.unwrap().is_empty());
    }
}
