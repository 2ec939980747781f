//! `wsctl smoke --stage local` against a real `wsctl dev`: the journey passes and names
//! every step; against gateways broken on purpose (a proxy in front of the real one) it
//! fails naming the step that broke; the probe key is revoked either way; budgets are
//! validated and a step over its budget fails.
//!
//! The broken gateways are proxies, because `wsctl dev` has no switch for any of these
//! faults (and should not grow one): one stops passing the server's text frames a while
//! after each connect (a gateway that silently stops delivering to older connections),
//! one rewrites the field names of `@connections` answers (a management API of the wrong
//! shape), one adds the dev key to every upgrade that carries none (auth off: a `$connect`
//! route whose authorizer was detached admits everyone, which is what a client sees), and
//! one delays every handshake answer (for the budget).

use crate::common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsctl_handlers::smoke::{verdict, Step, StepStatus};
use wsctl_testkit::TempDir;

/// Every step of a run without `--hold`, in order.
const STEPS: [&str; 15] = [
    "create-key",
    "reject-no-key",
    "connect",
    "subscribe",
    "reject-outside-prefix",
    "publish",
    "deliver",
    "publish-while-away",
    "reconnect",
    "replay",
    "get-connection",
    "kick",
    "revoke-key",
    "reject-revoked-key",
    "delete-key",
];

/// A stages directory whose local stage has `smoke` (YAML body of the section).
fn stages_with(smoke: &str) -> TempDir {
    let dir = TempDir::new("wsctl-smoke-stages").expect("temp dir");
    std::fs::write(dir.join("local.yaml"), format!("limits: {{}}\nsmoke:\n{smoke}")).expect("write local.yaml");
    dir
}

/// Budgets no loaded test machine misses: these tests are about what each step checks;
/// `a_step_over_its_budget_fails` is about time.
fn generous() -> TempDir {
    stages_with("  connect_ms: 10000\n  route_ms: 10000\n  delivery_ms: 10000\n")
}

/// Runs `wsctl smoke --stage local --output json` with `args`; returns (exit code, report, stderr).
fn smoke(gw: &DevGateway, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["smoke", "--stage", "local", "--output", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = gw.cli(&all);
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON report ({e}): {out}\n{err}"));
    (code, doc, err)
}

fn step_names(doc: &Value) -> Vec<String> {
    doc["steps"].as_array().expect("steps").iter().map(|s| s["step"].as_str().expect("step").to_owned()).collect()
}

fn step<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("{name}: {doc}"))
}

/// The key ids `wsctl keys list --output json` shows, and those of them named as probe keys.
fn key_ids(gw: &DevGateway) -> (Vec<String>, Vec<String>) {
    let (code, out, err) = gw.cli(&["keys", "list", "--stage", "local", "--output", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let keys = doc["keys"].as_array().expect("keys");
    let id = |k: &Value| k["keyId"].as_str().expect("keyId").to_owned();
    let probes = keys.iter().filter(|k| k["name"].as_str().is_some_and(|n| n.starts_with("smoke:")));
    (keys.iter().map(id).collect(), probes.map(id).collect())
}

/// Asserts the runs left no probe key: not in the listing, not in the key file, and the
/// listing holds exactly the keys it held before (`before`).
fn assert_nothing_left(gw: &DevGateway, before: &[String]) {
    let (all, probes) = key_ids(gw);
    assert!(probes.is_empty(), "probe keys left behind: {probes:?}");
    assert_eq!(all, before, "the key store holds what it held before the runs");
    let file = std::fs::read_to_string(gw.state.join("keys.json")).expect("key file");
    assert!(!file.contains("smoke:"), "a probe key record in the key file:\n{file}");
}

/// Asserts a failed run: exit 1, `failedStep`, the step's status, and what it got.
fn assert_failed_at(code: i32, doc: &Value, name: &str, got: &str) {
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(doc["failedStep"], name, "{doc}");
    let s = step(doc, name);
    assert_eq!(s["status"], "failed", "{s}");
    let text = s["got"].as_str().unwrap_or_default();
    assert!(text.contains(got), "{name} got {text:?}, expected it to mention {got:?}");
    assert!(!s["expected"].as_str().unwrap_or_default().is_empty(), "{s}");
    // The key is revoked, refused and deleted even after a failure.
    assert_eq!(step(doc, "revoke-key")["status"], "passed", "{doc}");
    assert_eq!(step(doc, "reject-revoked-key")["status"], "passed", "{doc}");
    assert_eq!(step(doc, "delete-key")["status"], "passed", "{doc}");
}

#[test]
fn smoke_passes_against_wsctl_dev_and_names_every_step() {
    let stages = generous();
    let gw = DevGateway::start_with(stages.path(), &[]);
    let (before, _) = key_ids(&gw);
    assert!(!before.is_empty(), "the dev key is listed");
    let (code, doc, err) = smoke(&gw, &[]);
    assert_eq!(code, 0, "{doc}\n{err}");
    assert_eq!(doc["ok"], true, "{doc}");
    // The probe key may not leave its room prefix.
    let outside = step(&doc, "reject-outside-prefix")["got"].as_str().unwrap_or_default().to_owned();
    assert!(outside.starts_with("forbidden") && outside.contains("\"smoke:\""), "{outside}");
    assert_eq!(doc["stage"], "local");
    assert_eq!(doc["failedStep"], Value::Null);
    assert_eq!(doc["url"], gw.url.as_str());
    assert_eq!(step_names(&doc), STEPS);
    for s in doc["steps"].as_array().expect("steps") {
        assert_eq!(s["status"], "passed", "{s}");
        assert!(s["elapsedMs"].as_f64().is_some(), "every step is timed: {s}");
    }
    assert_eq!(step(&doc, "connect")["budgetMs"], 10000, "the stage's budget applies");
    assert_eq!(doc["budget"], serde_json::json!({"connectMs": 10000, "routeMs": 10000, "deliveryMs": 10000}));
    assert_eq!(step(&doc, "publish")["budgetMs"], Value::Null, "operator calls have no budget");
    // The report's time follows the one JSON style.
    assert!(doc["startedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{doc}");

    // The text report names every step and the verdict.
    let (code, out, err) = gw.cli(&["smoke", "--stage", "local"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for name in STEPS {
        assert!(out.lines().any(|l| l.split_whitespace().nth(1) == Some(name)), "{name} missing from\n{out}");
    }
    assert!(out.contains("smoke: ok"), "{out}");
    assert_nothing_left(&gw, &before);
}

#[test]
fn hold_keeps_the_subscriber_and_a_gateway_that_stops_delivering_fails_at_deliver() {
    let stages = generous();
    let gw = DevGateway::start_with(stages.path(), &[]);
    let (before, _) = key_ids(&gw);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Passes the server's text frames for 1 s after each connect, then drops them.
    let proxy = rt.block_on(Proxy::start(gw.addr, Fault::MuteAfter(Duration::from_secs(1))));
    let url = gw.url.replace(&gw.addr.to_string(), &proxy.addr.to_string());

    // Without a hold every connection is younger than 1 s when its message comes: passes.
    let (code, doc, err) = smoke(&gw, &["--url", &url]);
    assert_eq!(code, 0, "{doc}\n{err}");
    assert!(!step_names(&doc).contains(&"hold".to_owned()));

    // Held 2 s, the subscriber outlives the proxy's timer and never gets the message.
    let (code, doc, _) = smoke(&gw, &["--url", &url, "--hold", "2s"]);
    assert_eq!(step(&doc, "hold")["status"], "passed", "{doc}");
    assert!(step(&doc, "hold")["elapsedMs"].as_f64().is_some_and(|ms| ms >= 2000.0), "{doc}");
    assert_eq!(doc["holdMs"], 2000);
    assert_failed_at(code, &doc, "deliver", "no message seq");
    assert_eq!(step(&doc, "replay")["status"], "skipped", "{doc}");
    assert_nothing_left(&gw, &before);
}

#[test]
fn a_management_api_of_the_wrong_shape_fails_at_get_connection() {
    let stages = generous();
    let gw = DevGateway::start_with(stages.path(), &[]);
    let (before, _) = key_ids(&gw);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let proxy = rt.block_on(Proxy::start(gw.addr, Fault::PascalCaseFields));
    let management = gw.management.replace(&gw.addr.to_string(), &proxy.addr.to_string());
    let (code, doc, _) = smoke(&gw, &["--management-endpoint", &management]);
    assert_failed_at(code, &doc, "get-connection", "connectedAt missing");
    let got = step(&doc, "get-connection")["got"].as_str().unwrap_or_default().to_owned();
    assert!(got.contains("identity.userAgent missing"), "{got}");
    assert_eq!(step(&doc, "kick")["status"], "skipped", "{doc}");
    assert!(proxy.rewritten() > 0, "the proxy rewrote an answer");
    assert_nothing_left(&gw, &before);
}

#[test]
fn a_gateway_with_auth_off_fails_at_reject_no_key() {
    let stages = generous();
    let gw = DevGateway::start_with(stages.path(), &[]);
    let (before, _) = key_ids(&gw);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let proxy = rt.block_on(Proxy::start(gw.addr, Fault::AdmitKeyless(gw.key.clone())));
    let url = gw.url.replace(&gw.addr.to_string(), &proxy.addr.to_string());
    let (code, doc, _) = smoke(&gw, &["--url", &url]);
    assert_failed_at(code, &doc, "reject-no-key", "HTTP 101");
    assert_eq!(step(&doc, "connect")["status"], "skipped", "{doc}");
    assert_nothing_left(&gw, &before);

    // The text report names the failed step with what was expected.
    let (code, out, _) = gw.cli(&["smoke", "--stage", "local", "--url", &url]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("smoke: FAILED at reject-no-key: expected HTTP 401 or 403; got HTTP 101"), "{out}");
}

#[test]
fn a_step_over_its_budget_fails_and_budgets_are_validated() {
    // The budget logic: over the budget fails, within passes, no budget only needs success.
    let ok = Ok("fine".to_owned());
    assert_eq!(verdict(&ok, Duration::from_micros(1), Some(Duration::ZERO)), StepStatus::Failed);
    assert_eq!(verdict(&ok, Duration::from_millis(5), Some(Duration::from_millis(5))), StepStatus::Passed);
    assert_eq!(verdict(&ok, Duration::from_secs(60), None), StepStatus::Passed);
    assert_eq!(verdict(&Err("no".into()), Duration::ZERO, Some(Duration::from_secs(1))), StepStatus::Failed);
    assert_eq!(Step::Connect.as_str(), "connect");

    // End to end: every handshake answer is held 50 ms; a 5 ms connect budget cannot hold.
    let stages = stages_with("  connect_ms: 5\n  route_ms: 10000\n  delivery_ms: 10000\n");
    let gw = DevGateway::start_with(stages.path(), &[]);
    let (before, _) = key_ids(&gw);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let proxy = rt.block_on(Proxy::start(gw.addr, Fault::DelayAnswer(Duration::from_millis(50))));
    let url = gw.url.replace(&gw.addr.to_string(), &proxy.addr.to_string());
    let (code, doc, _) = smoke(&gw, &["--url", &url]);
    assert_eq!((code, &doc["failedStep"]), (1, &Value::from("reject-no-key")), "{doc}");
    let got = step(&doc, "reject-no-key")["got"].as_str().unwrap_or_default().to_owned();
    assert!(got.starts_with("HTTP 401") && got.contains("over its budget of 5 ms"), "{got}");
    assert_eq!(step(&doc, "connect")["status"], "skipped", "{doc}");
    // The key is still revoked; its refusal is as slow as every handshake here.
    assert_eq!(step(&doc, "revoke-key")["status"], "passed", "{doc}");
    let refused = step(&doc, "reject-revoked-key");
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(refused["got"].as_str().is_some_and(|g| g.starts_with("HTTP 403")), "{refused}");
    assert_nothing_left(&gw, &before);

    // Stage files: a budget out of range names the file and the key (as every stage key).
    let bad = stages_with("  connect_ms: 0\n");
    let (code, out, err) = gw_cli_with_stages(&gw, bad.path(), &["smoke", "--stage", "local"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("local.yaml") && err.contains("smoke.connect_ms") && err.contains("1..=10000"), "{err}");
    let typo = stages_with("  conect_ms: 10\n");
    let (code, _, err) = gw_cli_with_stages(&gw, typo.path(), &["smoke", "--stage", "local"]);
    assert_eq!(code, 1);
    assert!(err.contains("conect_ms") && err.contains("connect_ms"), "{err}");
}

/// Runs wsctl against `gw`'s state directory with another stages directory.
fn gw_cli_with_stages(gw: &DevGateway, stages: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = wsctl()
        .arg("--stages-dir")
        .arg(stages)
        .args(args)
        .env("WSCTL_STATE_DIR", gw.state.path())
        .output()
        .expect("run wsctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a [`Proxy`] breaks.
#[derive(Clone)]
enum Fault {
    /// Drops the server's text frames once the connection is this old.
    MuteAfter(Duration),
    /// Answers of `@connections` with PascalCase field names (`ConnectedAt`, …), as a
    /// hand-written management API might send; same length, so Content-Length holds.
    PascalCaseFields,
    /// Adds `apiKey=KEY` to every upgrade request without a key.
    AdmitKeyless(String),
    /// Holds the first bytes of every answer this long.
    DelayAnswer(Duration),
}

/// A loopback proxy in front of the gateway with one [`Fault`]; stops when dropped.
struct Proxy {
    addr: SocketAddr,
    rewritten: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let rewritten = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = rewritten.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (fault, counter) = (fault.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let born = Instant::now();
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        if let Fault::AdmitKeyless(key) = &fault {
                            let Some(head) = read_head(&mut cr).await else { return };
                            if sw.write_all(&admit_keyless(&head, key)).await.is_err() {
                                return;
                            }
                        }
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    };
                    let down = async {
                        match &fault {
                            Fault::MuteAfter(after) => mute_after(&mut sr, &mut cw, born, *after).await,
                            Fault::PascalCaseFields => pascal_case(&mut sr, &mut cw, &counter).await,
                            Fault::DelayAnswer(delay) => {
                                let mut first = vec![0u8; 16 * 1024];
                                let Ok(n) = sr.read(&mut first).await else { return };
                                tokio::time::sleep(*delay).await;
                                if n == 0 || cw.write_all(&first[..n]).await.is_err() {
                                    return;
                                }
                                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                            }
                            Fault::AdmitKeyless(_) => {
                                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        Proxy { addr, rewritten, task }
    }

    fn rewritten(&self) -> u64 {
        self.rewritten.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads an HTTP head (through the blank line) and returns it with whatever came after.
async fn read_head(r: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = r.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// The request with `apiKey=KEY` added to its target when it carries no key.
fn admit_keyless(head: &[u8], key: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let lower = text.to_ascii_lowercase();
    if lower.contains("apikey=") || lower.contains("\r\nx-api-key:") {
        return head.to_vec();
    }
    let Some(line_end) = text.find("\r\n") else { return head.to_vec() };
    let mut parts = text[..line_end].splitn(3, ' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return head.to_vec();
    };
    let sep = if target.contains('?') { '&' } else { '?' };
    format!("{method} {target}{sep}apiKey={key} {version}{}", &text[line_end..]).into_bytes()
}

/// Passes the upgrade answer, then the server's frames, dropping text frames once the
/// connection is `after` old.
async fn mute_after(
    sr: &mut (impl AsyncReadExt + Unpin),
    cw: &mut (impl AsyncWriteExt + Unpin),
    born: Instant,
    after: Duration,
) {
    let Some(mut buf) = read_head(sr).await else { return };
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return };
    if !buf.starts_with(b"HTTP/1.1 101") {
        // A refused upgrade: an HTTP answer, not frames.
        if cw.write_all(&buf).await.is_ok() {
            let _ = tokio::io::copy(sr, cw).await;
        }
        return;
    }
    if cw.write_all(&buf[..end + 4]).await.is_err() {
        return;
    }
    buf.drain(..end + 4);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some((header, payload)) = frame_header(&buf).filter(|(h, p)| buf.len() >= h + p) {
            let len = header + payload;
            let text_frame = buf[0] & 0x0f == 1;
            if !(text_frame && born.elapsed() >= after) && cw.write_all(&buf[..len]).await.is_err() {
                return;
            }
            buf.drain(..len);
        }
        match sr.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// (header length, payload length) of the server frame at the start of `b`.
fn frame_header(b: &[u8]) -> Option<(usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    match b[1] & 0x7f {
        126 if b.len() >= 4 => Some((4, u16::from_be_bytes([b[2], b[3]]) as usize)),
        127 if b.len() >= 10 => Some((10, u64::from_be_bytes(b[2..10].try_into().ok()?) as usize)),
        126 | 127 => None,
        n => Some((2, n as usize)),
    }
}

/// Relays HTTP answers one by one (head, then Content-Length bytes of body), renaming the
/// GetConnection fields to PascalCase.
async fn pascal_case(
    sr: &mut (impl AsyncReadExt + Unpin),
    cw: &mut (impl AsyncWriteExt + Unpin),
    counter: &std::sync::atomic::AtomicU64,
) {
    const RENAMES: [(&[u8], &[u8]); 4] = [
        (b"\"connectedAt\"", b"\"ConnectedAt\""),
        (b"\"lastActiveAt\"", b"\"LastActiveAt\""),
        (b"\"sourceIp\"", b"\"SourceIp\""),
        (b"\"userAgent\"", b"\"UserAgent\""),
    ];
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match sr.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match sr.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let mut message: Vec<u8> = buf.drain(..head_end + length).collect();
        for (from, to) in RENAMES {
            let mut i = 0;
            while let Some(at) = message[i..].windows(from.len()).position(|w| w == from) {
                message[i + at..i + at + to.len()].copy_from_slice(to);
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                i += at + to.len();
            }
        }
        if cw.write_all(&message).await.is_err() {
            return;
        }
    }
}
