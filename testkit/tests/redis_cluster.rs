//! The `RedisCluster` harness itself: a 3×(1+1) cluster forms with every slot served, routes
//! keys to their masters, and fails over when a master is SIGKILLed.

use std::time::Duration;
use wsctl_testkit::{RedisCluster, RespValue, SLOTS};

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn fewer_than_three_masters_is_refused_before_starting_anything() {
    let err = RedisCluster::start(2, 1).expect_err("2 masters");
    assert!(err.to_string().contains("at least 3 masters"), "{err}");
}

#[test]
fn cluster_forms_routes_keys_and_fails_over() {
    let mut cluster = RedisCluster::start(3, 1).expect("start a 3-master cluster with 1 replica each");
    assert_eq!(cluster.ports().len(), 6);
    let masters = cluster.masters().expect("masters");
    assert_eq!(masters.len(), 3, "{cluster:?}");
    for &m in &masters {
        assert_eq!(cluster.replicas_of(m).expect("replicas").len(), 1, "master :{m}");
    }
    let served: u32 = cluster
        .nodes_seen_by(masters[0])
        .expect("CLUSTER NODES")
        .iter()
        .filter(|n| n.has("master"))
        .flat_map(|n| n.slots.iter().map(|&(a, b)| u32::from(b) - u32::from(a) + 1))
        .sum();
    assert_eq!(served, SLOTS);

    // A key's owner accepts it; another master redirects with MOVED.
    let key = "room:{tvl:chain:ethereum}:seq";
    let owner = cluster.master_for_key(key).expect("owner");
    assert_eq!(cluster.cmd_on(owner, &["SET", key, "7"]).expect("SET"), RespValue::Simple("OK".into()));
    let other = masters.iter().copied().find(|&m| m != owner).expect("another master");
    match cluster.cmd_on(other, &["GET", key]).expect("GET") {
        RespValue::Error(e) => assert!(e.starts_with("MOVED"), "{e}"),
        v => panic!("expected MOVED from a non-owner, got {v:?}"),
    }

    // SIGKILL the owner once its write is on the replica: the replica takes over with the data.
    cluster.wait_replicated(owner, Duration::from_secs(10)).expect("replicated");
    let replica = cluster.replicas_of(owner).expect("replicas")[0];
    cluster.kill_node(owner).expect("kill");
    assert!(!cluster.live_ports().contains(&owner));
    let promoted = cluster.wait_for_failover(owner, Duration::from_secs(30)).expect("failover");
    assert_eq!(promoted, replica);
    assert_eq!(cluster.master_for_key(key).expect("new owner"), replica);
    assert_eq!(cluster.cmd_for_key(key, &["GET", key]).expect("GET").as_str(), Some("7"));
    assert_eq!(cluster.masters().expect("masters").len(), 3);
    assert!(cluster.url().starts_with("redis://127.0.0.1:"));

    // Drop kills every node still running.
    let pids = cluster.pids();
    assert_eq!(pids.len(), 5);
    drop(cluster);
    assert!(pids.iter().all(|&p| !process_alive(p)), "a node outlived its RedisCluster");
}
