//! Hostile and careless clients against `wsctl dev`, each written as the attack: raw
//! sockets that stall before their upgrade, a flood of key-less connects, a half-sent
//! request during Ctrl-C, malformed frames, key probing, and paths the stage does not
//! serve. Each asserts the bound that holds, from outside.

use crate::common::*;
use futures_util::SinkExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use wsctl_testkit::TempDir;

fn stages_with(limits: &str) -> TempDir {
    let dir = TempDir::new("stages").expect("temp dir");
    std::fs::write(dir.join("local.yaml"), format!("limits:\n{limits}")).expect("stage file");
    dir
}

/// Reads until the server closes the socket; returns how long that took (None: still
/// open after `within`).
async fn closed_by_server(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// The upgrade request of a WebSocket client, as raw bytes (without the final CRLF).
fn upgrade_head(gw: &DevGateway, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        gw.addr
    )
}

/// The status line and body of a refused upgrade (headers that vary, like the date, left
/// out).
async fn refusal(gw: &DevGateway, path: &str) -> String {
    let mut tcp = TcpStream::connect(gw.addr).await.expect("connect");
    // `close` too: hyper then ends the connection after the refusal instead of keeping it.
    let head = format!("{}\r\n", upgrade_head(gw, path).replace("Connection: Upgrade", "Connection: Upgrade, close"));
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    format!("{status}\n{body}")
}

/// A slowloris (one header byte a second) and a silent TCP connection are both dropped
/// after the handshake timeout, holding no file descriptor beyond it.
#[tokio::test]
async fn stalled_handshakes_are_dropped_after_the_handshake_timeout() {
    let stages = stages_with("  handshake_timeout_secs: 2\n");
    let gw = DevGateway::start_with(stages.path(), &[]);
    let mut silent = TcpStream::connect(gw.addr).await.expect("connect");
    let mut slow = TcpStream::connect(gw.addr).await.expect("connect");
    let head = upgrade_head(&gw, "/local");
    let drip = async {
        for b in head.bytes() {
            if slow.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), drip).await;
    let silent_closed = closed_by_server(&mut silent, Duration::from_secs(5)).await;
    assert!(silent_closed.is_some(), "a silent TCP connection is still open after 4 s + 5 s");
    assert!(closed_by_server(&mut slow, Duration::from_secs(5)).await.is_some(), "the slowloris is still open");
    // A real client is unaffected.
    let mut ws = gw.connect().await;
    send(&mut ws, json!({"action": "ping"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
}

/// Connections before their upgrade are capped: beyond the cap a new TCP connection is
/// closed at once and counted; once the stalled ones time out, clients connect again.
#[tokio::test]
async fn pending_handshakes_are_capped() {
    let stages = stages_with("  handshake_timeout_secs: 2\n  max_pending_handshakes: 4\n");
    let gw = DevGateway::start_with(stages.path(), &[]);
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(TcpStream::connect(gw.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(gw.addr).await.expect("the kernel still accepts");
    let closed = closed_by_server(&mut extra, Duration::from_secs(1)).await;
    assert!(closed.is_some(), "the fifth pending connection was not closed at once");
    // After the handshake timeout the stalled ones are gone and the cap frees up.
    for s in &mut stalled {
        assert!(closed_by_server(s, Duration::from_secs(5)).await.is_some());
    }
    assert!(gw.metric("wsctl_handshakes_refused_total") >= 1);
    let mut ws = gw.connect().await;
    send(&mut ws, json!({"action": "ping"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
}

/// Ctrl-C with a half-sent HTTP request open: the gateway still closes its WebSocket
/// clients with 1001 and exits, without waiting for the stalled request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_cannot_hold_shutdown_hostage() {
    let mut gw = DevGateway::start();
    let mut ws = gw.connect().await;
    let mut half = TcpStream::connect(gw.addr).await.expect("connect");
    half.write_all(upgrade_head(&gw, "/local").as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let code = tokio::task::block_in_place(|| gw.interrupt());
    assert_eq!(code, Some(0), "the gateway did not exit within 10 s of Ctrl-C");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(recv_close(&mut ws).await, Some(1001));
    drop(half);
}

/// Frames that break the protocol close with the RFC 6455 codes: 1007 for a text frame
/// that is not UTF-8, 1002 for a reserved opcode.
#[tokio::test]
async fn malformed_frames_close_with_1007_and_1002() {
    let gw = DevGateway::start();
    let mut ws = gw.connect().await;
    let bad_utf8 = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(bad_utf8)).await.expect("send");
    assert_eq!(recv_close(&mut ws).await, Some(1007));

    let mut ws = gw.connect().await;
    let reserved = Frame::message(vec![1, 2, 3], OpCode::Data(Data::Reserved(3)), true);
    ws.send(Message::Frame(reserved)).await.expect("send");
    assert_eq!(recv_close(&mut ws).await, Some(1002));
}

/// A flood of key-less and bad-key connects from one address is answered 429 once its
/// refusal budget is spent, and never touches the node's connect budget: valid clients
/// from other addresses connecting during the flood are admitted (they used to get 503).
#[tokio::test]
async fn a_refused_connect_flood_does_not_starve_valid_clients() {
    let stages = stages_with("  connects_per_second: 5\n  refused_connects_per_second_per_source: 2\n");
    let gw = DevGateway::start_with(stages.path(), &[]);
    let mut statuses = Vec::new();
    let start = Instant::now();
    for i in 0..30 {
        let url = if i % 2 == 0 { gw.url.clone() } else { gw.url_with("wsk_probing") };
        statuses.push(refused_status(&url).await);
    }
    // A burst of 4, then 2 more per second of the flood (however slow this machine is).
    let refused = statuses.iter().filter(|s| matches!(s, Some(401) | Some(403))).count();
    let allowed = 4 + (2.0 * start.elapsed().as_secs_f64()).ceil() as usize;
    assert!(statuses.iter().take(4).all(|s| matches!(s, Some(401) | Some(403))), "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, Some(401) | Some(403) | Some(429))), "{statuses:?}");
    assert!(refused <= allowed, "{refused} refusals answered, {allowed} allowed: not throttled: {statuses:?}");
    // Valid clients from other addresses are admitted during the flood (the node's budget
    // of 5/s was not spent on it).
    for i in 2..5 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(format!("127.0.0.{i}:0").parse().unwrap()).expect("bind 127.0.0.x");
        let tcp = socket.connect(gw.addr).await.expect("connect");
        let req = gw.url_with(&gw.key).into_client_request().unwrap();
        let upgraded = tokio_tungstenite::client_async(req, tcp).await;
        assert!(upgraded.is_ok(), "valid client from 127.0.0.{i}: {:?}", upgraded.err());
    }
}

/// Refusals do not tell an unknown key from a revoked one; an empty `apiKey=` does not
/// hide a valid `x-api-key` header; only the stage's path is served.
#[tokio::test]
async fn refusals_reveal_nothing_and_only_the_stage_path_is_served() {
    let gw = DevGateway::start();
    let created = gw.admin(json!({"op": "create_key", "name": "probe", "scopes": "subscribe"}));
    let key = created["key"].as_str().expect("key").to_owned();
    gw.admin(json!({"op": "revoke_key", "key_id": created["record"]["keyId"]}));
    let revoked = refusal(&gw, &format!("/local?apiKey={key}")).await;
    let unknown = refusal(&gw, "/local?apiKey=wsk_neverissued").await;
    assert!(revoked.starts_with("HTTP/1.1 403"), "{revoked}");
    assert_eq!(revoked, unknown, "a revoked key is refused exactly like an unknown one");

    let mut req = format!("{}?apiKey=", gw.url).into_client_request().unwrap();
    req.headers_mut().insert("x-api-key", gw.key.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok(), "an empty apiKey= hid the header key");

    let other = gw.url.replace("/local", "/prod");
    assert_eq!(refused_status(&format!("{other}?apiKey={}", gw.key)).await, Some(403), "another stage's path");
    let root = gw.url.replace("/local", "/");
    assert_eq!(refused_status(&format!("{root}?apiKey={}", gw.key)).await, Some(403), "the root path");
}

/// Every file with a secret or its hash is private (0600), written without a window.
#[cfg(unix)]
#[tokio::test]
async fn state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let gw = DevGateway::start();
    gw.admin(json!({"op": "create_key", "name": "k", "scopes": "subscribe"}));
    let mode = |name: &str| std::fs::metadata(gw.state.join(name)).expect(name).permissions().mode() & 0o777;
    assert_eq!(mode("dev-key"), 0o600);
    assert_eq!(mode("admin-token"), 0o600);
    assert_eq!(mode("keys.json"), 0o600);
}
