//! Lambda-path fan-out: the `publish` handler, with the real `aws-sdk-apigatewaymanagement`
//! client, posting to `wsctl dev`'s `@connections` endpoint — the production shape with
//! the gateway standing in for API Gateway. Rooms live in a real `redis-server` shared by
//! the gateway and the handler.
//!
//! `cargo bench --bench lambda_fanout -- [SUBSCRIBERS] [MESSAGES] [CONCURRENCY,...] [HOLD_MS]`
//! (defaults: 2000 subscribers, 5 messages, concurrency 8,32,64,128,256, hold 0 ms).
//! Prints one table row and one JSON line per concurrency setting. Delivery accounting per
//! subscriber: every publish's `seq` (from the handler's report) above the subscriber's
//! `subscribed` reply must arrive once and in order; HOLD_MS holds the subscribers that
//! long before the first publish (15000: past every timer of the gateway). Exits 1 when
//! anything was missing, duplicated or reordered.

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
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
    let hold_ms: u64 = arg(4, 0);

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
        "lambda-path fan-out: {subscribers} subscribers held {hold_ms} ms, {messages} messages per setting, gateway pid {}",
        gw.id()
    );
    println!(
        "{:>11} {:>12} {:>14} {:>9} {:>7} {:>17} {:>7} {:>5} {:>5}",
        "concurrency", "deliveries", "deliveries/s", "pruned", "failed", "received/expected", "missing", "dup", "reord"
    );
    let mut problems = Vec::new();
    for (round, c) in concurrency.iter().enumerate() {
        let room = format!("bench:lambda:{round}");
        // Subscribers: each records the seqs it receives until it has every published seq
        // above its `subscribed` reply's, or until the drain deadline.
        let (seqs_tx, seqs_rx) = watch::channel::<Option<Arc<Vec<u64>>>>(None);
        let mut readers = Vec::new();
        for _ in 0..subscribers {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
            ws.send(Message::text(format!(r#"{{"action":"subscribe","room":"{room}"}}"#))).await.unwrap();
            let base = loop {
                if let Some(Ok(Message::Text(t))) = ws.next().await {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if v["type"] == "subscribed" {
                        break v["seq"].as_u64().unwrap_or(0);
                    }
                }
            };
            let mut seqs_rx = seqs_rx.clone();
            readers.push(tokio::spawn(async move {
                let mut seen: Vec<u64> = Vec::new();
                let mut due: Option<(Arc<Vec<u64>>, Instant)> = None;
                loop {
                    if let Some((published, deadline)) = &due {
                        let want = published.iter().filter(|&&s| s > base).count();
                        let got = published.iter().filter(|&&s| s > base && seen.contains(&s)).count();
                        if got == want || Instant::now() >= *deadline {
                            break;
                        }
                    }
                    let wait = due
                        .as_ref()
                        .map_or(Duration::from_secs(600), |d| d.1.saturating_duration_since(Instant::now()));
                    tokio::select! {
                        c = seqs_rx.changed() => {
                            if c.is_err() {
                                break;
                            }
                            if let Some(p) = seqs_rx.borrow_and_update().clone() {
                                due = Some((p, Instant::now() + Duration::from_secs(10)));
                            }
                        }
                        m = tokio::time::timeout(wait, ws.next()) => match m {
                            Ok(Some(Ok(Message::Text(t)))) => {
                                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                                if let Some(seq) = v["seq"].as_u64().filter(|_| v["type"] == "message") {
                                    seen.push(seq);
                                }
                            }
                            Ok(Some(Ok(_))) => {}
                            Ok(_) => break,
                            Err(_) => {}
                        }
                    }
                }
                (base, seen)
            }));
        }
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
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
        let mut published = Vec::new();
        for _ in 0..messages {
            let r = services.publish(&room, &data).await.expect("publish");
            published.push(r.seq);
            delivered += r.delivered;
            pruned += r.pruned;
            failed += r.failed;
        }
        let secs = start.elapsed().as_secs_f64();
        let _ = seqs_tx.send(Some(Arc::new(published.clone())));
        // accounting: each subscriber against the published seqs above its subscribed reply
        let (mut expected, mut received, mut dup, mut reord, mut unexpected, mut affected) = (0, 0, 0, 0, 0, 0);
        for r in readers {
            let (base, seen) = r.await.expect("reader");
            let due: Vec<u64> = published.iter().copied().filter(|&s| s > base).collect();
            let mut distinct = std::collections::HashSet::new();
            let (mut d, mut o, mut max) = (0, 0, 0);
            for &s in &seen {
                if !distinct.insert(s) {
                    d += 1;
                } else if s < max {
                    o += 1;
                }
                max = max.max(s);
            }
            let got = due.iter().filter(|s| distinct.contains(s)).count() as u64;
            expected += due.len() as u64;
            received += got;
            dup += d;
            reord += o;
            unexpected += distinct.len() as u64 - got;
            affected += u64::from(got < due.len() as u64 || d + o > 0);
        }
        let missing = expected - received;
        if missing + dup + reord > 0 {
            problems.push(format!(
                "concurrency {c}: {missing} missing, {dup} duplicated, {reord} reordered (of {expected} expected) at {affected} subscribers"
            ));
        }
        let rate = delivered as f64 / secs;
        println!(
            "{c:>11} {delivered:>12} {rate:>14.0} {pruned:>9} {failed:>7} {:>17} {missing:>7} {dup:>5} {reord:>5}",
            format!("{received}/{expected}")
        );
        println!(
            "{}",
            serde_json::json!({"scenario": "lambda_fanout", "concurrency": c, "subscribers": subscribers,
                "messages": messages, "hold_ms": hold_ms, "deliveries": delivered, "seconds": secs,
                "deliveries_per_s": rate.round(), "pruned": pruned, "failed": failed,
                "delivery": {"expected": expected, "received": received, "missing": missing, "duplicated": dup,
                    "reordered": reord, "unexpected": unexpected, "subscribers_affected": affected}})
        );
    }
    let _ = gw.kill();
    let _ = gw.wait();
    for p in &problems {
        eprintln!("PROBLEM {p}");
    }
    if !problems.is_empty() {
        std::process::exit(1);
    }
}
