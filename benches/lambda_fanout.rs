//! Lambda-path fan-out: the `publish` handler, with the real `aws-sdk-apigatewaymanagement`
//! client, posting to `wsctl dev`'s `@connections` endpoint — the production shape with
//! the gateway standing in for API Gateway. Rooms live in a real `redis-server` shared by
//! the gateway and the handler.
//!
//! `cargo bench --bench lambda_fanout -- [SUBSCRIBERS] [MESSAGES] [CONCURRENCY,...]`
//! (defaults: 2000 subscribers, 5 messages, concurrency 8,32,64,128,256). Prints one
//! table row and one JSON line per concurrency setting; every run also checks that each
//! subscriber received every message exactly once and in seq order.

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wsctl_handlers::limits::Limits;
use wsctl_handlers::sender::{ManagementApiConfig, ManagementApiSender};
use wsctl_handlers::service::Services;
use wsctl_handlers::store::memory::{MemoryConnectionStore, MemoryKeyStore};
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_testkit::{free_port, RedisServer, TempDir};

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args().filter(|a| !a.starts_with('-')).nth(i).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let subscribers: usize = arg(1, 2000);
    let messages: u64 = arg(2, 5);
    let concurrency: Vec<usize> = std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(3)
        .map(|v| v.split(',').filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_else(|| vec![8, 32, 64, 128, 256]);

    let redis = RedisServer::start().expect("start redis-server");
    let state = TempDir::new("lambda-fanout").expect("temp dir");
    let port = free_port();
    let mut gw = Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .args(["--output", "json", "--stages-dir", concat!(env!("CARGO_MANIFEST_DIR"), "/stages")])
        .args(["dev", "--port", &port.to_string(), "--redis-url", &redis.url(), "--state-dir"])
        .arg(state.path())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start wsctl dev");
    let mut line = String::new();
    BufReader::new(gw.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready JSON");
    let url = format!("{}?apiKey={}", ready["url"].as_str().unwrap(), ready["apiKey"].as_str().unwrap());
    let management = ready["managementEndpoint"].as_str().unwrap().to_owned();

    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await;
    println!(
        "lambda-path fan-out: {subscribers} subscribers, {messages} messages per setting, gateway pid {}",
        gw.id()
    );
    println!("{:>11} {:>12} {:>14} {:>9} {:>7}", "concurrency", "deliveries", "deliveries/s", "pruned", "failed");
    for (round, c) in concurrency.iter().enumerate() {
        let room = format!("bench:lambda:{round}");
        // Subscribers: each counts its messages and checks seq order.
        let mut readers = Vec::new();
        for _ in 0..subscribers {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
            ws.send(Message::text(format!(r#"{{"action":"subscribe","room":"{room}"}}"#))).await.unwrap();
            loop {
                if let Some(Ok(Message::Text(t))) = ws.next().await {
                    if t.contains("subscribed") {
                        break;
                    }
                }
            }
            readers.push(tokio::spawn(async move {
                let (mut got, mut last, mut ordered) = (0u64, 0u64, true);
                while got < messages {
                    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                            let seq = v["seq"].as_u64().unwrap_or(0);
                            ordered &= seq == last + 1;
                            last = seq;
                            got += 1;
                        }
                        Ok(Some(Ok(_))) => continue,
                        _ => break,
                    }
                }
                (got, ordered)
            }));
        }
        let rooms = RedisRoomStore::new(RedisConfig {
            url: redis.url(),
            cluster: false,
            history: 10,
            connection_ttl_secs: 600,
        })
        .expect("redis store");
        let sender =
            ManagementApiSender::new(&sdk, &management, ManagementApiConfig { concurrency: *c, max_attempts: 4 });
        let services = Services::new(
            Arc::new(rooms),
            Arc::new(MemoryConnectionStore::new()),
            Arc::new(MemoryKeyStore::new()),
            Arc::new(sender),
            Limits::default(),
        );
        let data = serde_json::value::RawValue::from_string(r#"{"tvl":1}"#.into()).unwrap();
        let start = Instant::now();
        let (mut delivered, mut pruned, mut failed) = (0, 0, 0);
        for _ in 0..messages {
            let r = services.publish(&room, &data).await.expect("publish");
            delivered += r.delivered;
            pruned += r.pruned;
            failed += r.failed;
        }
        let secs = start.elapsed().as_secs_f64();
        let mut complete = 0;
        for r in readers {
            let (got, ordered) = r.await.unwrap();
            assert!(ordered, "a subscriber saw seq out of order");
            complete += usize::from(got == messages);
        }
        assert_eq!(complete, subscribers, "every subscriber received every message");
        let rate = delivered as f64 / secs;
        println!("{c:>11} {delivered:>12} {rate:>14.0} {pruned:>9} {failed:>7}");
        println!(
            "{}",
            serde_json::json!({"scenario": "lambda_fanout", "concurrency": c, "subscribers": subscribers,
                "messages": messages, "deliveries": delivered, "seconds": secs, "deliveries_per_s": rate.round(),
                "pruned": pruned, "failed": failed})
        );
    }
    let _ = gw.kill();
    let _ = gw.wait();
}
