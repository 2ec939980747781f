//! Issue 17, item 4, as the probe ran it against `wsctl dev`: four connections of one
//! publish-scope key, each within its rate limit, flood 100 KB messages into more rooms
//! than the key may create. The gateway's resident memory must stay within what the
//! history limits allow, the rooms beyond the key's quota must be refused, and a
//! `since: 0` replay must stay within `max_replay_bytes`.

use crate::common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use wsctl_testkit::TempDir;

const MIB: u64 = 1024 * 1024;
/// The history every room and the gateway may hold, and one replay's size.
const ROOM_HISTORY_BYTES: u64 = MIB / 2;
const MAX_HISTORY_BYTES_TOTAL: u64 = 8 * MIB;
const MAX_ROOMS_PER_KEY: usize = 20;
const MAX_REPLAY_BYTES: u64 = MIB / 4;
const CONNECTIONS: usize = 4;
/// Rooms the flood publishes into; the last ten are beyond the key's quota.
const ROOMS: usize = 30;
/// Publishes per connection: 1,200 in all, 120 MB.
const PUBLISHES: usize = 300;

fn stages() -> TempDir {
    let dir = TempDir::new("stages").expect("temp dir");
    let limits = format!(
        "limits:
  room_history_bytes: {ROOM_HISTORY_BYTES}
  max_history_bytes_total: {MAX_HISTORY_BYTES_TOTAL}
  max_rooms_per_key: {MAX_ROOMS_PER_KEY}
  max_replay_bytes: {MAX_REPLAY_BYTES}
"
    );
    std::fs::write(dir.join("local.yaml"), limits).expect("stage file");
    dir
}

/// A field of /proc/PID/status in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024
}

/// Sends `text` as one message in 32 KiB frames (API Gateway's frame limit, and the
/// gateway's), as a real client does with a 100 KB message.
async fn send_fragmented(ws: &mut Ws, text: &str) {
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(32 * 1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
        ws.feed(Message::Frame(frame)).await.expect("send frame");
    }
    ws.flush().await.expect("flush");
}

/// One connection's share of the flood: publishes paced at 80/s (the per-connection limit
/// is 100/s), each awaited; returns the rooms refused as beyond the quota.
async fn flood(mut ws: Ws, first: usize, blob: String) -> Vec<String> {
    let mut refused = Vec::new();
    let start = Instant::now();
    for n in 0..PUBLISHES {
        let due = start + Duration::from_millis(n as u64 * 1000 / 80);
        tokio::time::sleep_until(due.into()).await;
        let room = format!("flood:r{}", (first + n) % ROOMS);
        let request = format!(r#"{{"action":"publish","room":"{room}","data":{{"blob":"{blob}"}}}}"#);
        send_fragmented(&mut ws, &request).await;
        let reply = recv(&mut ws).await;
        match reply["type"].as_str() {
            Some("published") => {}
            Some("error") if reply["code"] == "too_many_rooms" => refused.push(room),
            _ => panic!("publish {n} to {room}: {reply}"),
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_flooding_many_rooms_stays_within_the_history_limits() {
    let stages = stages();
    let gw = DevGateway::start_with(stages.path(), &[]);
    let blob = "x".repeat(100 * 1024);
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        conns.push(gw.connect().await);
    }
    // Warm up: one small publish per room, so the allocator and tables are past start-up.
    let mut probe = gw.connect().await;
    for r in 0..MAX_ROOMS_PER_KEY {
        send(&mut probe, json!({"action": "publish", "room": format!("flood:r{r}"), "data": 0})).await;
        assert_eq!(recv(&mut probe).await["type"], "published");
    }
    let before = proc_status_bytes(gw.pid(), "VmRSS");

    let tasks: Vec<_> =
        conns.into_iter().enumerate().map(|(i, ws)| tokio::spawn(flood(ws, i * 7, blob.clone()))).collect();
    let mut refused = Vec::new();
    for t in tasks {
        refused.extend(t.await.expect("flood task"));
    }
    let peak = proc_status_bytes(gw.pid(), "VmHWM");
    let after = proc_status_bytes(gw.pid(), "VmRSS");

    // What the gateway may hold: the history total (frames are a little over 100 KB and
    // counted as encoded), the four connections' messages in flight (128 KiB each, a few
    // copies: frames, the parsed request, the rendered frame) and the allocator's slack
    // for that much churn. The unbounded gateway held all 120 MB.
    let allowed = 3 * MAX_HISTORY_BYTES_TOTAL + 16 * MIB;
    eprintln!(
        "RSS before {} MiB, after {} MiB, peak {} MiB; growth allowed {} MiB",
        before / MIB,
        after / MIB,
        peak / MIB,
        allowed / MIB
    );
    assert!(
        peak.saturating_sub(before) <= allowed,
        "the flood grew the gateway by {} MiB (peak), over the {} MiB the limits allow",
        peak.saturating_sub(before) / MIB,
        allowed / MIB
    );

    // Every publish into the ten rooms beyond the quota was refused, and nothing else.
    refused.sort();
    refused.dedup();
    let beyond: Vec<String> = (MAX_ROOMS_PER_KEY..ROOMS).map(|r| format!("flood:r{r}")).collect();
    let mut beyond_sorted = beyond.clone();
    beyond_sorted.sort();
    assert_eq!(refused, beyond_sorted, "exactly the rooms beyond max_rooms_per_key are refused");
    let listed = gw.admin(json!({"op": "list_rooms", "prefix": "flood:", "limit": 100}));
    let listed: Vec<&str> = listed["page"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|r| r["room"].as_str())
        .collect();
    assert_eq!(listed.len(), MAX_ROOMS_PER_KEY, "rooms beyond the quota were created anyway: {listed:?}");
    assert!(beyond.iter().all(|r| !listed.contains(&r.as_str())), "{listed:?}");

    // `since: 0` replays only the newest messages that fit in max_replay_bytes, and says
    // that the replay does not reach back.
    send(&mut probe, json!({"action": "subscribe", "room": "flood:r3", "since": 0})).await;
    let reply = recv(&mut probe).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["truncated"], true, "{reply}");
    let replayed = reply["replayed"].as_u64().expect("replayed") as usize;
    assert!(replayed >= 1, "the newest message is always replayed: {reply}");
    let mut bytes = 0;
    let mut last_seq = 0;
    for _ in 0..replayed {
        let text = recv_text(&mut probe).await;
        bytes += text.len() as u64;
        let v: Value = serde_json::from_str(&text).expect("JSON");
        last_seq = v["seq"].as_u64().expect("seq");
    }
    assert!(bytes <= MAX_REPLAY_BYTES, "a since: 0 replay sent {bytes} bytes, over {MAX_REPLAY_BYTES}");
    assert_eq!(last_seq, reply["seq"].as_u64().expect("seq"), "the replay ends at the newest message");
}
