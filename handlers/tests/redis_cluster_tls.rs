//! Cluster mode over TLS whatever the nodes announce (issue 11): a real `redis-server`
//! cluster with TLS whose certificate names only a hostname (no IP address), once with the
//! nodes announcing that hostname and once announcing their IP
//! (`cluster-preferred-endpoint-type ip`, as ElastiCache may). The store must reach every
//! shard in both: with IPs announced, a client that verifies the certificate against the
//! address it connects to fails on every node it was not seeded with.

use std::collections::BTreeMap;
use wsctl_handlers::room::RoomName;
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_handlers::store::RoomStore;
use wsctl_testkit::{AnnouncedEndpoint, ClusterTls, ClusterTlsFiles, RedisCluster, TempDir};

const HOSTNAME: &str = "localhost";

/// One room name per master, by where its membership key lands.
fn room_per_master(cluster: &RedisCluster) -> BTreeMap<u16, String> {
    let masters = cluster.masters().expect("masters");
    let mut by_master = BTreeMap::new();
    for i in 0..1000 {
        let name = format!("tls:r{i}");
        let owner = cluster.master_for_key(&format!("room:{{{name}}}:connections")).expect("owner");
        by_master.entry(owner).or_insert(name);
        if by_master.len() == masters.len() {
            break;
        }
    }
    assert_eq!(by_master.len(), masters.len(), "a room on every master");
    by_master
}

async fn reaches_every_shard(announce: AnnouncedEndpoint) {
    let dir = TempDir::new("wsctl-tls-cluster").expect("temp dir");
    let files = ClusterTlsFiles::generate(dir.path(), HOSTNAME).expect("certificates (openssl)");
    let cluster = RedisCluster::start_tls(3, 0, ClusterTls { files: files.clone(), announce }).expect("TLS cluster");
    let slots = cluster.cmd_on(cluster.ports()[0], &["CLUSTER", "SLOTS"]).expect("CLUSTER SLOTS");
    eprintln!("{announce:?}: CLUSTER SLOTS over the plain port: {slots:?}");

    let url = cluster.tls_url(HOSTNAME).expect("TLS url");
    let store = RedisRoomStore::new(RedisConfig { url, cluster: true, history: 5, connection_ttl_secs: 600 })
        .expect("store")
        .with_tls_root_cert(std::fs::read(&files.ca).expect("CA file"));
    for (master, name) in room_per_master(&cluster) {
        let room = RoomName::parse(&name, 128).expect("room name");
        let conn = format!("conn-{master}");
        store
            .subscribe(&conn, &room, None, 64)
            .await
            .unwrap_or_else(|e| panic!("{announce:?}: the shard on port {master} is unreachable: {e}"));
        let members = cluster.smembers(&format!("room:{{{name}}}:connections")).expect("SMEMBERS");
        assert_eq!(members, vec![conn], "{announce:?}: written on the master of port {master}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_announcing_hostnames() {
    reaches_every_shard(AnnouncedEndpoint::Hostname).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_announcing_ips() {
    reaches_every_shard(AnnouncedEndpoint::Ip).await;
}
