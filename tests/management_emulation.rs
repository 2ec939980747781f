//! `wsctl dev --management-latency-ms/--management-jitter-ms/--management-rate-limit`: the
//! `@connections` endpoint as a Lambda in a VPC sees API Gateway's. The real
//! `aws-sdk-apigatewaymanagement` client observes the latency and the 429
//! `LimitExceededException`; the handlers' management-API sender retries the 429s so a
//! fan-out loses nothing; and the sharded fan-out (`wsctl_handlers::fanout`) keeps every
//! subscriber's messages once and in order, in process and through an SQS FIFO queue
//! (moto_server) read as the `publish` function reads its event source.

use crate::common::*;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wsctl_handlers::fanout::{InProcessDispatch, ShardedSender, SqsDispatch};
use wsctl_handlers::limits::Limits;
use wsctl_handlers::sender::{ManagementApiConfig, ManagementApiSender, Sender};
use wsctl_handlers::service::Services;
use wsctl_handlers::store::memory::{MemoryConnectionStore, MemoryKeyStore};
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_testkit::{http_request, MotoServer, RedisServer};

async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

fn gateway(redis: &RedisServer, emulation: &[&str]) -> DevGateway {
    let url = redis.url();
    let mut args = vec!["--redis-url", url.as_str()];
    args.extend_from_slice(emulation);
    DevGateway::start_with(&repo_stages(), &args)
}

/// Handler-side services on the gateway's Redis (as the Lambda functions are), sending
/// through `sender`.
fn services(redis: &RedisServer, sender: Arc<dyn Sender>) -> Services {
    let rooms =
        RedisRoomStore::new(RedisConfig { url: redis.url(), cluster: false, history: 100, connection_ttl_secs: 600 })
            .expect("redis store");
    Services::new(
        Arc::new(rooms),
        Arc::new(MemoryConnectionStore::new()),
        Arc::new(MemoryKeyStore::new()),
        sender,
        Limits::default(),
    )
}

/// `n` subscribers of `room`; each returns the seqs it received once `quiet` passed without
/// a frame after `want` messages arrived (or 30 s passed).
async fn subscribers(gw: &DevGateway, room: &str, n: usize, want: usize) -> Vec<tokio::task::JoinHandle<Vec<u64>>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut ws = gw.connect().await;
        let reply = subscribe(&mut ws, room).await;
        assert_eq!(reply["seq"], 0, "room {room} is not new: {reply}");
        out.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                // after the last expected message, wait a little for duplicates
                let wait = if seen.len() >= want { Duration::from_millis(300) } else { Duration::from_secs(30) };
                match tokio::time::timeout(wait, ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON frame");
                        if v["type"] == "message" {
                            seen.push(v["seq"].as_u64().expect("seq"));
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            seen
        }));
    }
    out
}

/// Every subscriber got exactly seqs 1..=messages, in order.
async fn assert_all_in_order(readers: Vec<tokio::task::JoinHandle<Vec<u64>>>, messages: u64) {
    let want: Vec<u64> = (1..=messages).collect();
    for (i, r) in readers.into_iter().enumerate() {
        let seen = r.await.expect("reader");
        assert_eq!(seen, want, "subscriber {i} got {seen:?} (missing, duplicated or reordered)");
    }
}

fn throttled(gw: &DevGateway) -> i64 {
    gw.metric("wsctl_management_throttled_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_client_sees_the_latency_and_a_429_limit_exceeded() {
    let redis = RedisServer::start().expect("redis-server");
    let gw = gateway(
        &redis,
        &[
            "--management-latency-ms",
            "60",
            "--management-jitter-ms",
            "10",
            "--management-rate-limit",
            "5",
            "--management-burst",
            "3",
        ],
    );
    let _ws = connect_as(&gw.url, &gw.key, "emulated-client").await.expect("connect");
    let id = gw.connection_id("emulated-client");
    let client = gw.management_client();

    // latency: every call waits 60 ± 10 ms
    let started = Instant::now();
    client.get_connection().connection_id(&id).send().await.expect("GetConnection");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(50), "GetConnection answered in {took:?}, under the 50 ms floor");

    // the bucket holds 3: of 12 posts at once, at least 8 are refused with the model's 429
    let posts = (0..12).map(|i| {
        let client = client.clone();
        let id = id.clone();
        async move {
            client
                .post_to_connection()
                .connection_id(id)
                .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(format!("{{\"n\":{i}}}")))
                .send()
                .await
        }
    });
    let results = futures_util::future::join_all(posts).await;
    let throttled_posts = results
        .iter()
        .filter(|r| {
            r.as_ref().err().and_then(|e| e.as_service_error()).is_some_and(|e| e.is_limit_exceeded_exception())
        })
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok + throttled_posts, 12, "other errors: {results:?}");
    assert!(throttled_posts >= 8, "only {throttled_posts} of 12 posts got LimitExceededException");
    assert_eq!(throttled(&gw), throttled_posts as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handlers_sender_retries_429s_without_losing_or_repeating_a_message() {
    let redis = RedisServer::start().expect("redis-server");
    let gw = gateway(
        &redis,
        &["--management-latency-ms", "5", "--management-rate-limit", "100", "--management-burst", "10"],
    );
    let (n, messages) = (40, 5u64);
    let readers = subscribers(&gw, "emu:retry", n, messages as usize).await;
    let sender = ManagementApiSender::new(&sdk().await, &gw.management, ManagementApiConfig::default());
    let svc = services(&redis, Arc::new(sender));
    let data = serde_json::value::RawValue::from_string(r#"{"v":1}"#.into()).unwrap();
    for seq in 1..=messages {
        let r = svc.publish("emu:retry", &data).await.expect("publish");
        assert_eq!((r.seq, r.delivered, r.failed), (seq, n, 0), "{r:?}");
    }
    // 200 sends through a bucket of 10 refilling 100/s: most were throttled at least once
    assert!(throttled(&gw) >= 50, "only {} 429s: the retry path was not exercised", throttled(&gw));
    assert_all_in_order(readers, messages).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_fan_out_keeps_every_subscriber_once_and_in_order_under_429s() {
    let redis = RedisServer::start().expect("redis-server");
    let gw = gateway(
        &redis,
        &[
            "--management-latency-ms",
            "8",
            "--management-jitter-ms",
            "7",
            "--management-rate-limit",
            "400",
            "--management-burst",
            "20",
        ],
    );
    let (n, messages) = (60, 20u64);
    let readers = subscribers(&gw, "emu:sharded", n, messages as usize).await;
    let config = ManagementApiConfig { concurrency: 8, ..Default::default() };
    let direct: Arc<dyn Sender> = Arc::new(ManagementApiSender::new(&sdk().await, &gw.management, config));
    let worker = Arc::new(services(&redis, direct.clone()));
    let dispatch = Arc::new(InProcessDispatch::new(worker, 4));
    let svc = services(&redis, Arc::new(ShardedSender::new(direct, dispatch.clone(), 4, 10)));
    let data = serde_json::value::RawValue::from_string(r#"{"v":1}"#.into()).unwrap();
    for seq in 1..=messages {
        // acknowledged once queued: the shards deliver behind the publisher's back
        let r = svc.publish("emu:sharded", &data).await.expect("publish");
        assert_eq!((r.seq, r.delivered, r.failed), (seq, n, 0), "{r:?}");
    }
    assert_all_in_order(readers, messages).await;
    let stats = &dispatch.stats;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.delivered.load(Relaxed), n as u64 * messages, "shard workers' count");
    assert_eq!(stats.failed.load(Relaxed), 0);
    assert!(stats.jobs.load(Relaxed) >= messages * 4, "fewer jobs than shards x messages: not sharded");
    assert!(throttled(&gw) > 0, "no 429 happened: the test did not exercise throttling");
}

/// Creates a FIFO queue on moto with SQS's JSON protocol (moto routes on the credential
/// scope's service, so the request carries an unchecked SigV4 header); returns its URL.
fn create_fifo_queue(moto: &MotoServer, name: &str) -> String {
    let body = serde_json::json!({
        "QueueName": name,
        "Attributes": {"FifoQueue": "true", "DeduplicationScope": "messageGroup"},
    })
    .to_string();
    let auth =
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0";
    let resp = http_request(
        moto.addr(),
        "POST",
        "/",
        &[
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "AmazonSQS.CreateQueue"),
            ("authorization", auth),
        ],
        body.as_bytes(),
        Duration::from_secs(10),
    )
    .expect("CreateQueue");
    assert_eq!(resp.status, 200, "CreateQueue: {}", resp.text());
    let reply: serde_json::Value = serde_json::from_str(&resp.text()).expect("CreateQueue JSON");
    reply["QueueUrl"].as_str().expect("QueueUrl").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_queued_on_sqs_fifo_is_delivered_by_the_publish_function_in_order() {
    let redis = RedisServer::start().expect("redis-server");
    let moto = MotoServer::start().expect("moto_server");
    let gw = gateway(&redis, &["--management-latency-ms", "3", "--management-jitter-ms", "2"]);
    let (n, messages) = (30, 6u64);
    let readers = subscribers(&gw, "emu:sqs", n, messages as usize).await;
    let queue = create_fifo_queue(&moto, "wsctl-fanout.fifo");
    let sdk = sdk().await;
    let sqs_sdk = sdk.to_builder().endpoint_url(moto.endpoint()).build();
    let direct: Arc<dyn Sender> =
        Arc::new(ManagementApiSender::new(&sdk, &gw.management, ManagementApiConfig::default()));
    let dispatch = Arc::new(SqsDispatch::new(&sqs_sdk, &queue));
    let svc = Arc::new(services(&redis, Arc::new(ShardedSender::new(direct.clone(), dispatch.clone(), 3, 1000))));
    let worker = services(&redis, direct);
    let data = serde_json::value::RawValue::from_string(r#"{"v":1}"#.into()).unwrap();
    for seq in 1..=messages {
        let r = svc.publish("emu:sqs", &data).await.expect("publish");
        assert_eq!((r.seq, r.delivered, r.failed), (seq, n, 0), "{r:?}");
    }
    // Nothing is sent until the queue is read: the publishes only queued the shards.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // As the event source mapping does: receive, hand the event to the publish function's
    // handler, delete; in queue order.
    let mut jobs = 0;
    loop {
        let (event, receipts) = dispatch.receive(10).await.expect("ReceiveMessage");
        if event.records.is_empty() {
            break;
        }
        jobs += event.records.len();
        let payload = serde_json::value::to_raw_value(&event).expect("event JSON");
        let out =
            wsctl_handlers::lambda::publish_or_deliver(svc.clone(), &worker, &payload).await.expect("publish function");
        assert_eq!(out["failed"], 0, "{out}");
        dispatch.delete(&receipts).await.expect("DeleteMessage");
    }
    assert!(jobs >= messages as usize * 2, "{jobs} jobs for {messages} messages: not sharded");
    assert_all_in_order(readers, messages).await;
}
