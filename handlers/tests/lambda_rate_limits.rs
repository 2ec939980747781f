//! The per-connection and per-key rate limits on the Lambda path: every `$default`
//! invocation may land in another container, so the buckets must live in Redis. Requests
//! are spread over several `Services` (each with its own Redis client, as separate Lambda
//! containers have) against one real `redis-server`.
//!
//! No wall-clock limit is asserted: the number admitted is checked against the burst plus
//! what the bucket can have refilled in the time the test measured it took.

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::encodings::Body;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use wsctl_handlers::lambda;
use wsctl_handlers::limits::Limits;
use wsctl_handlers::protocol::Frame;
use wsctl_handlers::sender::{LiveInfo, SendError, SendOutcome, Sender};
use wsctl_handlers::service::Services;
use wsctl_handlers::store::memory::{MemoryConnectionStore, MemoryKeyStore};
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_testkit::{apigw_fixture, RedisServer};

/// A ping's reply is the route response: nothing is ever posted to a connection.
struct NothingPosted;

#[async_trait]
impl Sender for NothingPosted {
    async fn send(&self, conn: &str, _frame: &Frame) -> SendOutcome {
        panic!("nothing should be posted to {conn}")
    }
    async fn disconnect(&self, _conn: &str) -> Result<bool, SendError> {
        Ok(false)
    }
    async fn info(&self, _conn: &str) -> Result<Option<LiveInfo>, SendError> {
        Ok(None)
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}{nanos}")
}

/// `containers` independent handler instances over one Redis.
fn containers(redis: &RedisServer, limits: &Limits, containers: usize) -> Vec<Arc<Services>> {
    (0..containers)
        .map(|_| {
            let rooms = RedisRoomStore::new(RedisConfig {
                url: redis.url(),
                cluster: false,
                history: 10,
                connection_ttl_secs: 8100,
            })
            .expect("redis store");
            Arc::new(Services::new(
                Arc::new(rooms),
                Arc::new(MemoryConnectionStore::new()),
                Arc::new(MemoryKeyStore::new()),
                Arc::new(NothingPosted),
                limits.clone(),
            ))
        })
        .collect()
}

fn ping(conn: &str, key_id: &str, n: usize) -> ApiGatewayWebsocketProxyRequest {
    let text =
        apigw_fixture("message_subscribe.json").replace("Pq3x9cVvIAMCJbA=", conn).replace("key-7f3a9c2e", key_id);
    let mut event: ApiGatewayWebsocketProxyRequest = serde_json::from_str(&text).expect("fixture");
    event.body = Some(format!(r#"{{"action":"ping","id":{n}}}"#));
    event
}

/// Sends `count` pings, `(connection, key)` taken in turn from `callers`, each through the
/// next container; returns how many got `pong` and how many `rate_limited`, and the time taken.
async fn flood(services: &[Arc<Services>], callers: &[(String, String)], count: usize) -> (usize, usize, f64) {
    let started = Instant::now();
    let (mut admitted, mut limited) = (0, 0);
    for n in 0..count {
        let (conn, key) = &callers[n % callers.len()];
        let svc = services[n % services.len()].clone();
        let resp = lambda::message(svc, ping(conn, key, n)).await.expect("message handler");
        let Some(Body::Text(body)) = resp.body else { panic!("no reply body: {resp:?}") };
        let reply: Value = serde_json::from_str(&body).expect("json reply");
        assert_eq!(reply["id"], n, "the reply keeps the request id: {reply}");
        match (reply["type"].as_str(), reply["code"].as_str()) {
            (Some("pong"), _) => admitted += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            other => panic!("unexpected reply {other:?}: {reply}"),
        }
    }
    (admitted, limited, started.elapsed().as_secs_f64())
}

#[tokio::test]
async fn the_connection_limit_holds_across_lambda_containers() {
    let redis = RedisServer::shared();
    let limits = Limits { requests_per_second: 2, request_burst: 5, ..Limits::default() };
    let services = containers(redis, &limits, 4);
    let caller = (unique("conn-"), unique("key-"));
    let (admitted, limited, secs) = flood(&services, std::slice::from_ref(&caller), 40).await;
    let ceiling = 5 + (secs * 2.0).ceil() as usize;
    assert!(admitted >= 5, "the burst is admitted: {admitted}");
    assert!(admitted <= ceiling, "{admitted} admitted; at most {ceiling} (burst 5 + 2/s over {secs:.2}s)");
    assert!(admitted < 4 * 5, "one bucket for all containers, not one each: {admitted} admitted");
    assert_eq!(admitted + limited, 40);

    // Another connection of the same key has a bucket of its own.
    let other = (unique("conn-"), caller.1.clone());
    let (admitted, _, _) = flood(&services, &[other], 5).await;
    assert_eq!(admitted, 5);
}

#[tokio::test]
async fn the_key_limit_holds_across_connections_and_containers() {
    let redis = RedisServer::shared();
    let limits = Limits {
        requests_per_second: 1000,
        request_burst: 1000,
        key_requests_per_second: 2,
        key_request_burst: 8,
        ..Limits::default()
    };
    let services = containers(redis, &limits, 3);
    let key = unique("key-");
    let callers: Vec<(String, String)> = (0..4).map(|_| (unique("conn-"), key.clone())).collect();
    let (admitted, limited, secs) = flood(&services, &callers, 60).await;
    let ceiling = 8 + (secs * 2.0).ceil() as usize;
    assert!(admitted >= 8, "the key's burst is admitted: {admitted}");
    assert!(admitted <= ceiling, "{admitted} admitted for the key; at most {ceiling} over {secs:.2}s");
    assert!(admitted < 3 * 8, "one bucket for all containers and connections: {admitted} admitted");
    assert_eq!(admitted + limited, 60);

    // The bucket is one Redis hash, expiring once it would be full again.
    let ttl = redis.cmd(&["PTTL", &format!("ratelimit:{{k:{key}}}")]).expect("PTTL").as_int().expect("int");
    assert!(ttl > 0 && ttl <= 5_000, "the bucket expires (4 s to refill + 1 s): {ttl} ms");
}

#[tokio::test]
async fn with_redis_down_the_limit_fails_open() {
    let mut redis = RedisServer::start().expect("redis-server");
    let limits = Limits { requests_per_second: 1, request_burst: 1, ..Limits::default() };
    let services = containers(&redis, &limits, 1);
    let caller = (unique("conn-"), unique("key-"));
    redis.stop().expect("stop redis");
    // ping needs nothing from Redis: an unreachable bucket does not refuse it (requests
    // that need Redis then fail on their own, as `unavailable`: tests/faults.rs).
    let (admitted, limited, _) = flood(&services, std::slice::from_ref(&caller), 3).await;
    assert_eq!((admitted, limited), (3, 0));
}

#[tokio::test]
async fn an_oversized_message_still_costs_a_token() {
    let redis = RedisServer::shared();
    let limits = Limits { requests_per_second: 1, request_burst: 2, max_message_bytes: 64, ..Limits::default() };
    let services = containers(redis, &limits, 1);
    let (conn, key) = (unique("conn-"), unique("key-"));
    let mut codes = Vec::new();
    let started = Instant::now();
    for n in 0..3 {
        let mut event = ping(&conn, &key, n);
        if n < 2 {
            event.body = Some(format!(r#"{{"action":"ping","pad":"{}"}}"#, "x".repeat(100)));
        }
        let resp = lambda::message(services[0].clone(), event).await.expect("message handler");
        let Some(Body::Text(body)) = resp.body else { panic!("no reply body: {resp:?}") };
        let reply: Value = serde_json::from_str(&body).expect("json reply");
        codes.push(reply["code"].as_str().unwrap_or("none").to_owned());
    }
    // (Only a second's pause between the calls could refill a token.)
    if started.elapsed().as_secs_f64() < 1.0 {
        assert_eq!(codes, ["message_too_large", "message_too_large", "rate_limited"]);
    }
}
