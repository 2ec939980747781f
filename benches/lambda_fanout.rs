//! Lambda-path fan-out: the `publish` handler, with the real `aws-sdk-apigatewaymanagement`
//! client, posting to `wsctl dev`'s `@connections` endpoint — the production shape with
//! the gateway standing in for API Gateway, optionally with API Gateway's latency and
//! request-rate limit (`wsctl dev --management-latency-ms/-jitter-ms/-rate-limit`). Rooms
//! live in a real `redis-server` shared by the gateway and the handler.
//!
//! ```text
//! cargo bench --bench lambda_fanout -- [--subscribers 2000] [--messages 5]
//!     [--shards 0,16] [--concurrency 64] [--latency-ms 0] [--jitter-ms 0]
//!     [--rate-limit 0] [--burst RATE/2] [--interval-ms 0] [--hold-ms 0] [--timeout-secs 10]
//!     [--job-connections 1000] [--gateways 1] [--subscriber-procs 1]
//! ```
//! One round per (shards, concurrency) pair. `--shards 0`: one invocation sends to every
//! member (`concurrency` in flight); `--shards N`: the publish hands N shards to the
//! in-process dispatcher, whose workers run the same shard handler the `publish` function
//! runs for each SQS FIFO message group on AWS (`wsctl_handlers::fanout`), each with
//! `concurrency` sends in flight, at most `--job-connections` per job. `--interval-ms` spaces the publishes, so publish→last is
//! measured per message rather than behind the previous one.
//!
//! Rooms larger than one process's open-file limit (20,000 here): `--gateways G` starts G
//! `wsctl dev` processes on the one Redis (subscribers spread over them round-robin; the
//! handler posts every message to the first one's `@connections`, one endpoint and one
//! token bucket as on AWS, which forwards to the node holding the connection), and
//! `--subscriber-procs P` holds the subscribers in P child processes of this bench (each
//! reports its receipts, stamped with the wall clock, when the round ends).
//!
//! Reported per round: the publish acknowledgement time, publish→last delivery per message
//! (time from the publish call to the last subscriber's receipt of that seq), deliveries
//! per second (over the whole run when back to back; one message's deliveries over its
//! median publish→last with `--interval-ms`), 429s answered by the gateway, and the longest "invocation" (the publish call
//! inline; the longest shard job when sharded) against half of `--timeout-secs`. Delivery
//! accounting per subscriber: every published `seq` above its `subscribed` reply must arrive
//! once and in order. Exits 1 when anything was missing, duplicated or reordered.

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use wsctl_handlers::fanout::{InProcessDispatch, ShardedSender};
use wsctl_handlers::limits::Limits;
use wsctl_handlers::sender::{ManagementApiConfig, ManagementApiSender, Sender};
use wsctl_handlers::service::Services;
use wsctl_handlers::store::memory::{MemoryConnectionStore, MemoryKeyStore};
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_testkit::{free_port, http_request, RedisServer, TempDir};

/// The value of `--name` (or `default`).
fn flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} {v}: not a valid value")))
        .unwrap_or(default)
}

fn list(name: &str, default: &str) -> Vec<usize> {
    flag::<String>(name, default.into())
        .split(',')
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}: '{v}' is not a number")))
        .collect()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Wall-clock microseconds: receipts are compared across processes.
fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// One subscriber's `subscribed` seq and the (seq, wall-clock µs) of every message it got.
type Receipts = (u64, Vec<(u64, u64)>);

/// One subscriber connection from source address 127.0.0.`source` (spreading ephemeral
/// ports over several addresses), retried while the gateway's connect rate refuses it.
async fn connect(gw: SocketAddr, url: &str, source: u8) -> Ws {
    let mut last = String::new();
    for attempt in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)), 0)).expect("bind");
        match socket.connect(gw).await {
            Ok(tcp) => match tokio_tungstenite::client_async(url, tcp).await {
                Ok((ws, _)) => return ws,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await;
    }
    panic!("cannot connect a subscriber: {last}");
}

/// Connects and subscribes; returns the socket and the `subscribed` reply's seq.
async fn subscriber(gw: SocketAddr, url: String, room: String, source: u8) -> (Ws, u64) {
    let mut ws = connect(gw, &url, source).await;
    ws.send(Message::text(format!(r#"{{"action":"subscribe","room":"{room}"}}"#))).await.expect("subscribe");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                if v["type"] == "subscribed" {
                    return (ws, v["seq"].as_u64().unwrap_or(0));
                }
                assert_ne!(v["type"], "error", "subscribe refused: {v}");
            }
            Some(Ok(_)) => {}
            other => panic!("subscriber closed before its subscribed reply: {other:?}"),
        }
    }
}

/// Reads one subscriber until it has every published seq above `base` (or the drain
/// deadline passed); returns its base and what it received, with arrival times.
async fn read(mut ws: Ws, base: u64, mut published: watch::Receiver<Option<Arc<Vec<u64>>>>) -> Receipts {
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut due: Option<(Arc<Vec<u64>>, Instant)> = None;
    loop {
        if let Some((p, deadline)) = &due {
            let want = p.iter().filter(|&&s| s > base).count();
            let got = p.iter().filter(|&&s| s > base && seen.iter().any(|(x, _)| *x == s)).count();
            if got == want || Instant::now() >= *deadline {
                break;
            }
        }
        let wait = due.as_ref().map_or(Duration::from_secs(3600), |d| d.1.saturating_duration_since(Instant::now()));
        tokio::select! {
            c = published.changed() => {
                if c.is_err() {
                    break;
                }
                if let Some(p) = published.borrow_and_update().clone() {
                    due = Some((p, Instant::now() + Duration::from_secs(60)));
                }
            }
            m = tokio::time::timeout(wait, ws.next()) => match m {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let at = now_us();
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if let Some(seq) = v["seq"].as_u64().filter(|_| v["type"] == "message") {
                        seen.push((seq, at));
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => break,
                Err(_) => {}
            }
        }
    }
    (base, seen)
}

/// A gateway subscribers connect to: its address and its `?apiKey=` URL.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    url: String,
}

/// Connects subscribers `offset..offset + count` of the room (subscriber i on gateway
/// i mod G, from source address 127.0.0.(1 + i mod 16)) and starts reading each.
async fn subscribe_all(
    targets: &[Target],
    room: &str,
    offset: usize,
    count: usize,
    published: &watch::Receiver<Option<Arc<Vec<u64>>>>,
) -> Vec<tokio::task::JoinHandle<Receipts>> {
    let connected: Vec<(Ws, u64)> = futures_util::stream::iter(offset..offset + count)
        .map(|i| {
            let t = &targets[i % targets.len()];
            subscriber(t.addr, t.url.clone(), room.to_owned(), 1 + (i % 16) as u8)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    connected.into_iter().map(|(ws, base)| tokio::spawn(read(ws, base, published.clone()))).collect()
}

/// A round's subscribers: in this process, or in child processes of this bench.
enum Subscribers {
    Local { readers: Vec<tokio::task::JoinHandle<Receipts>>, published: watch::Sender<Option<Arc<Vec<u64>>>> },
    Children(Vec<tokio::process::Child>),
}

impl Subscribers {
    /// Connects and subscribes `count` subscribers, in `procs` processes when over one.
    async fn start(targets: &[Target], room: &str, count: usize, procs: usize) -> Subscribers {
        if procs <= 1 {
            let (published, rx) = watch::channel(None);
            let readers = subscribe_all(targets, room, 0, count, &rx).await;
            return Subscribers::Local { readers, published };
        }
        let spec: Vec<String> = targets.iter().map(|t| format!("{}|{}", t.addr, t.url)).collect();
        let mut children = Vec::new();
        let mut offset = 0;
        for p in 0..procs {
            let n = count / procs + usize::from(p < count % procs);
            let child = tokio::process::Command::new(std::env::current_exe().expect("this bench"))
                .args(["--subscriber-child", "--room", room, "--offset", &offset.to_string()])
                .args(["--count", &n.to_string(), "--targets", &spec.join(",")])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start a subscriber process");
            children.push(child);
            offset += n;
        }
        for child in &mut children {
            let line = first_line(child).await;
            assert!(line.contains("\"ready\""), "a subscriber process did not get ready: {line}");
        }
        Subscribers::Children(children)
    }

    /// Tells every subscriber which seqs were published; returns each one's receipts once
    /// it has them all (or its drain deadline passed).
    async fn finish(self, seqs: &[u64]) -> Vec<Receipts> {
        match self {
            Subscribers::Local { readers, published } => {
                let _ = published.send(Some(Arc::new(seqs.to_vec())));
                let mut all = Vec::with_capacity(readers.len());
                for r in readers {
                    all.push(r.await.expect("reader"));
                }
                all
            }
            Subscribers::Children(mut children) => {
                let line = format!("{}\n", serde_json::json!(seqs));
                for child in &mut children {
                    let stdin = child.stdin.as_mut().expect("stdin");
                    stdin.write_all(line.as_bytes()).await.expect("seqs to a subscriber process");
                    stdin.flush().await.expect("flush");
                }
                let mut all = Vec::new();
                for child in &mut children {
                    let report = first_line(child).await;
                    let receipts: Vec<Receipts> = serde_json::from_str(&report).expect("a subscriber process's report");
                    all.extend(receipts);
                }
                for mut child in children {
                    let _ = child.wait().await;
                }
                all
            }
        }
    }
}

/// The next line a child process prints. The reader is dropped with whatever it buffered
/// past that line, which is safe only because a subscriber process prints nothing more
/// until it is answered (`ready`, then its report and exit).
async fn first_line(child: &mut tokio::process::Child) -> String {
    let stdout = child.stdout.as_mut().expect("stdout");
    let mut line = Vec::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    reader.read_until(b'\n', &mut line).await.expect("read a subscriber process");
    String::from_utf8(line).expect("utf-8")
}

/// `--subscriber-child`: holds `--count` subscribers of `--room`, prints `{"ready":N}`,
/// reads the published seqs (one JSON array on stdin), then prints every subscriber's
/// receipts as one JSON line.
async fn subscriber_child() {
    let count: usize = flag("--count", 0);
    wsctl::gateway::fdlimit::raise_and_pregrow(count + 256);
    let offset: usize = flag("--offset", 0);
    let room: String = flag("--room", String::new());
    let targets: Vec<Target> = flag::<String>("--targets", String::new())
        .split(',')
        .map(|t| {
            let (addr, url) = t.split_once('|').expect("--targets ADDR|URL,…");
            Target { addr: addr.parse().expect("gateway address"), url: url.to_owned() }
        })
        .collect();
    let (published, rx) = watch::channel(None);
    let readers = subscribe_all(&targets, &room, offset, count, &rx).await;
    let mut out = tokio::io::stdout();
    out.write_all(format!("{{\"ready\":{count}}}\n").as_bytes()).await.expect("stdout");
    out.flush().await.expect("stdout");
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin()).read_line(&mut line).await.expect("stdin");
    let seqs: Vec<u64> = serde_json::from_str(&line).expect("the published seqs");
    let all = Subscribers::Local { readers, published }.finish(&seqs).await;
    out.write_all(format!("{}\n", serde_json::json!(all)).as_bytes()).await.expect("stdout");
    out.flush().await.expect("stdout");
}

/// Starts `wsctl dev` on the bench's Redis, with the management API's emulation; returns
/// the process, the subscribers' target, the `@connections` endpoint and its state dir.
fn start_gateway(
    redis_url: &str,
    latency: (u64, u64),
    rate: (u32, u32),
) -> (std::process::Child, Target, String, TempDir) {
    let state = TempDir::new("lambda-fanout").expect("temp dir");
    let port = free_port();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_wsctl"));
    dev.args(["--output", "json", "--stages-dir", concat!(env!("CARGO_MANIFEST_DIR"), "/stages")])
        .args(["dev", "--port", &port.to_string(), "--redis-url", redis_url, "--state-dir"])
        .arg(state.path());
    if latency.0 > 0 {
        dev.args(["--management-latency-ms", &latency.0.to_string(), "--management-jitter-ms", &latency.1.to_string()]);
    }
    if rate.0 > 0 {
        dev.args(["--management-rate-limit", &rate.0.to_string(), "--management-burst", &rate.1.to_string()]);
    }
    let mut gw = dev.env("RUST_LOG", "error").stdout(Stdio::piped()).spawn().expect("start wsctl dev");
    let mut line = String::new();
    BufReader::new(gw.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready JSON");
    let url = format!("{}?apiKey={}", ready["url"].as_str().unwrap(), ready["apiKey"].as_str().unwrap());
    let management = ready["managementEndpoint"].as_str().unwrap().to_owned();
    let target = Target { addr: SocketAddr::from(([127, 0, 0, 1], port)), url };
    (gw, target, management, state)
}

fn throttled(addr: SocketAddr) -> u64 {
    let resp = http_request(addr, "GET", "/metrics", &[], b"", Duration::from_secs(5)).expect("metrics");
    resp.text()
        .lines()
        .find_map(|l| l.strip_prefix("wsctl_management_throttled_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--subscriber-child") {
        return subscriber_child().await;
    }
    let subscribers: usize = flag("--subscribers", 2000);
    let gateways: usize = flag("--gateways", 1);
    let procs: usize = flag("--subscriber-procs", 1);
    // Subscribers hold one descriptor each (here, unless child processes hold them).
    wsctl::gateway::fdlimit::raise_and_pregrow(if procs > 1 { 1024 } else { subscribers + 256 });
    let messages: u64 = flag("--messages", 5);
    let shard_counts = list("--shards", "0");
    let concurrency = list("--concurrency", "64");
    let latency_ms: u64 = flag("--latency-ms", 0);
    let jitter_ms: u64 = flag("--jitter-ms", 0);
    let rate_limit: u32 = flag("--rate-limit", 0);
    let burst: u32 = flag("--burst", (rate_limit / 2).max(1));
    let interval_ms: u64 = flag("--interval-ms", 0);
    let hold_ms: u64 = flag("--hold-ms", 0);
    let timeout_secs: f64 = flag("--timeout-secs", 10.0);
    let job_size: usize = flag("--job-connections", Limits::default().fanout_job_connections);

    let redis = RedisServer::start().expect("start redis-server");
    let mut processes = Vec::new();
    let mut targets = Vec::new();
    let mut management = String::new();
    for g in 0..gateways.max(1) {
        let (process, target, endpoint, state) =
            start_gateway(&redis.url(), (latency_ms, jitter_ms), (rate_limit, burst));
        if g == 0 {
            management = endpoint;
        }
        processes.push((process, state));
        targets.push(target);
    }
    let gw_addr = targets[0].addr;

    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await;
    println!(
        "lambda-path fan-out: {subscribers} subscribers, {messages} messages {interval_ms} ms apart, \
         @connections latency {latency_ms}±{jitter_ms} ms, rate limit {rate_limit}/s (burst {burst}), \
         invocation timeout {timeout_secs} s, {} gateway process(es) (pids {:?}), subscribers in {} process(es)",
        processes.len(),
        processes.iter().map(|p| p.0.id()).collect::<Vec<_>>(),
        procs.max(1)
    );
    println!(
        "{:>6} {:>5} {:>9} {:>9} {:>11} {:>11} {:>12} {:>8} {:>10} {:>17} {:>7} {:>4} {:>5}",
        "shards",
        "conc",
        "ack p50",
        "ack max",
        "pub→last50",
        "pub→lastmx",
        "deliveries/s",
        "429s",
        "longest",
        "received/expected",
        "missing",
        "dup",
        "reord"
    );
    let mut problems = Vec::new();
    let mut round = 0;
    for &shards in &shard_counts {
        for &c in &concurrency {
            round += 1;
            let room = format!("bench:lambda:{round}");
            let subs = Subscribers::start(&targets, &room, subscribers, procs).await;
            tokio::time::sleep(Duration::from_millis(hold_ms)).await;

            let rooms = RedisRoomStore::new(RedisConfig {
                url: redis.url(),
                cluster: false,
                history: 10,
                connection_ttl_secs: 600,
            })
            .expect("redis store");
            let rooms: Arc<dyn wsctl_handlers::store::LiveStore> = Arc::new(rooms);
            let config = ManagementApiConfig { concurrency: c, ..Default::default() };
            let direct: Arc<dyn Sender> = Arc::new(ManagementApiSender::new(&sdk, &management, config));
            let services_with = |sender: Arc<dyn Sender>| {
                Services::new(
                    rooms.clone(),
                    Arc::new(MemoryConnectionStore::new()),
                    Arc::new(MemoryKeyStore::new()),
                    sender,
                    Limits::default(),
                )
            };
            let dispatch = (shards > 0)
                .then(|| Arc::new(InProcessDispatch::new(Arc::new(services_with(direct.clone())), shards as u32)));
            let services = match &dispatch {
                Some(d) => {
                    services_with(Arc::new(ShardedSender::new(direct.clone(), d.clone(), shards as u32, job_size)))
                }
                None => services_with(direct.clone()),
            };
            let throttled_before = throttled(gw_addr);
            let data = serde_json::value::RawValue::from_string(r#"{"tvl":1}"#.into()).unwrap();
            let (mut delivered, mut failed) = (0, 0);
            let mut published: Vec<(u64, u64, Duration)> = Vec::new();
            for m in 0..messages {
                if m > 0 && interval_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(interval_ms)).await;
                }
                let (t0, at) = (Instant::now(), now_us());
                let r = services.publish(&room, &data).await.expect("publish");
                published.push((r.seq, at, t0.elapsed()));
                delivered += r.delivered;
                failed += r.failed;
            }
            let seqs: Vec<u64> = published.iter().map(|p| p.0).collect();

            let (mut expected, mut received, mut dup, mut reord, mut affected) = (0u64, 0u64, 0u64, 0u64, 0u64);
            let mut last_at: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
            for (base, seen) in subs.finish(&seqs).await {
                let due: Vec<u64> = seqs.iter().copied().filter(|&s| s > base).collect();
                let mut distinct = std::collections::HashSet::new();
                let (mut d, mut o, mut max) = (0, 0, 0);
                for &(s, at) in &seen {
                    if !distinct.insert(s) {
                        d += 1;
                    } else if s < max {
                        o += 1;
                    }
                    max = max.max(s);
                    let e = last_at.entry(s).or_insert(at);
                    *e = (*e).max(at);
                }
                let got = due.iter().filter(|s| distinct.contains(s)).count() as u64;
                expected += due.len() as u64;
                received += got;
                dup += d;
                reord += o;
                affected += u64::from(got < due.len() as u64 || d + o > 0);
            }
            let missing = expected - received;
            let throttled_total = throttled(gw_addr) - throttled_before;
            let mut acks: Vec<f64> = published.iter().map(|p| p.2.as_secs_f64() * 1000.0).collect();
            acks.sort_by(f64::total_cmp);
            let mut to_last: Vec<f64> = published
                .iter()
                .filter_map(|(s, t0, _)| last_at.get(s).map(|l| l.saturating_sub(*t0) as f64 / 1000.0))
                .collect();
            to_last.sort_by(f64::total_cmp);
            let first = published.first().map(|p| p.1);
            let last = last_at.values().max().copied();
            let span = match (first, last) {
                (Some(f), Some(l)) => l.saturating_sub(f) as f64 / 1e6,
                _ => f64::NAN,
            };
            // back to back: deliveries over the whole span; spaced: one message's fan-out
            // rate (its deliveries over its median publish→last)
            let rate = if interval_ms > 0 && !to_last.is_empty() {
                received as f64 / messages as f64 / (pct(&to_last, 0.5) / 1000.0)
            } else {
                received as f64 / span
            };
            // the longest single invocation: the publish call itself inline, the longest
            // shard job (or a publish's dispatch) when sharded
            let longest_ms = match &dispatch {
                Some(d) => d.longest_job().as_secs_f64() * 1000.0,
                None => 0.0,
            }
            .max(pct(&acks, 1.0));
            if missing + dup + reord > 0 {
                problems.push(format!(
                    "shards {shards} concurrency {c}: {missing} missing, {dup} duplicated, {reord} reordered (of {expected} expected) at {affected} subscribers"
                ));
            }
            if let Some(d) = &dispatch {
                let s = &d.stats;
                let job_failed = s.failed.load(Relaxed);
                if job_failed > 0 {
                    problems.push(format!("shards {shards}: {job_failed} sends failed in shard jobs"));
                }
            }
            if failed > 0 {
                problems.push(format!("shards {shards} concurrency {c}: {failed} sends failed"));
            }
            println!(
                "{shards:>6} {c:>5} {:>7.1}ms {:>7.1}ms {:>9.0}ms {:>9.0}ms {rate:>12.0} {throttled_total:>8} {longest_ms:>8.0}ms {:>17} {missing:>7} {dup:>4} {reord:>5}",
                pct(&acks, 0.5),
                pct(&acks, 1.0),
                pct(&to_last, 0.5),
                pct(&to_last, 1.0),
                format!("{received}/{expected}"),
            );
            println!(
                "{}",
                serde_json::json!({"scenario": "lambda_fanout", "shards": shards, "concurrency": c, "job_connections": job_size,
                    "subscribers": subscribers, "gateways": processes.len(), "subscriber_procs": procs.max(1),
                    "messages": messages, "interval_ms": interval_ms,
                    "latency_ms": latency_ms, "jitter_ms": jitter_ms, "rate_limit": rate_limit, "burst": burst,
                    "hold_ms": hold_ms, "dispatched_or_delivered": delivered, "failed": failed,
                    "ack_ms": {"p50": pct(&acks, 0.5), "max": pct(&acks, 1.0)},
                    "publish_to_last_ms": {"p50": pct(&to_last, 0.5), "max": pct(&to_last, 1.0), "all": to_last},
                    "deliveries_per_s": rate.round(), "throttled_429": throttled_total,
                    "longest_invocation_ms": longest_ms.round(),
                    "half_timeout_ms": timeout_secs * 500.0,
                    "delivery": {"expected": expected, "received": received, "missing": missing, "duplicated": dup,
                        "reordered": reord, "subscribers_affected": affected}})
            );
        }
    }
    for (mut gw, _state) in processes {
        let _ = gw.kill();
        let _ = gw.wait();
    }
    for p in &problems {
        eprintln!("PROBLEM {p}");
    }
    if !problems.is_empty() {
        std::process::exit(1);
    }
}
