//! Operator commands on `--stage local`, end to end: a real `wsctl dev` (embedded stores),
//! real WebSocket clients (tokio-tungstenite), and the real `wsctl` binary for every
//! operator command.

use crate::common::DevGateway;
use futures_util::StreamExt;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsctl_testkit::TempDir;

const WSCTL: &str = env!("CARGO_BIN_EXE_wsctl");

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn stages_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("stages")
}

/// Operator commands against the gateway under test (see `tests/common`).
impl DevGateway {
    /// Runs `wsctl ARGS --stage local --state-dir … --stages-dir …`.
    fn wsctl(&self, args: &[&str]) -> Output {
        Command::new(WSCTL)
            .arg("--stages-dir")
            .arg(stages_dir())
            .args(args)
            .args(["--stage", "local", "--state-dir"])
            .arg(self.state.path())
            .env_remove("WSCTL_STAGE")
            .stdin(Stdio::null())
            .output()
            .expect("run wsctl")
    }

    /// Runs a command with `--output json`, expects success, returns its document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.wsctl(&all);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "wsctl {args:?} failed: {}\nstdout: {stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("wsctl {args:?} printed no JSON ({e}): {stdout}"))
    }

    /// The listed connections, keyed by user agent: (connection id, rooms, key id).
    fn connections(&self, extra: &[&str]) -> Vec<(String, String, Vec<String>, String)> {
        let mut args = vec!["connections", "list"];
        args.extend_from_slice(extra);
        let doc = self.json(&args);
        let list = doc["connections"].as_array().unwrap_or_else(|| panic!("no connections array: {doc}"));
        assert_eq!(doc["total"].as_u64(), Some(list.len() as u64), "{doc}");
        assert_eq!(doc["truncated"], false, "{doc}");
        let mut out: Vec<_> = list
            .iter()
            .map(|c| {
                let rooms = c["rooms"].as_array().expect("rooms").iter().map(|r| r.as_str().unwrap_or("").to_owned());
                (
                    c["userAgent"].as_str().unwrap_or("").to_owned(),
                    c["connectionId"].as_str().unwrap_or("").to_owned(),
                    rooms.collect(),
                    c["keyId"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// Waits until the server closes the connection (a Close frame or the end of the stream).
async fn expect_closed(ws: &mut Ws, who: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{who} was not closed within 10 s"));
        match next {
            None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        }
    }
}

/// Polls `check` until it holds (the gateway runs `$disconnect` after the socket closes).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_kick_and_revoke_on_the_local_gateway() {
    let dev = DevGateway::start();
    let (room_a, room_b) = ("tvl:protocol:aave", "tvl:chain:ethereum");
    let mut c1 = crate::common::connect_as(&dev.url, &dev.key, "client-1").await.expect("client 1");
    let mut c2 = crate::common::connect_as(&dev.url, &dev.key, "client-2").await.expect("client 2");
    let mut c3 = crate::common::connect_as(&dev.url, &dev.key, "client-3").await.expect("client 3");
    crate::common::subscribe(&mut c1, room_a).await;
    crate::common::subscribe(&mut c2, room_a).await;
    crate::common::subscribe(&mut c2, room_b).await;
    crate::common::subscribe(&mut c3, room_b).await;

    // Exactly the three clients, each with its rooms, all on the dev key.
    let keys = dev.json(&["keys", "list"]);
    let dev_key_id = keys["keys"][0]["keyId"].as_str().expect("dev key id").to_owned();
    let listed = dev.connections(&[]);
    let agents: Vec<&str> = listed.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(agents, ["client-1", "client-2", "client-3"], "{listed:?}");
    assert_eq!(listed[0].2, [room_a]);
    let mut c2_rooms = vec![room_b, room_a];
    c2_rooms.sort();
    assert_eq!(listed[1].2, c2_rooms);
    assert_eq!(listed[2].2, [room_b]);
    assert!(listed.iter().all(|c| c.3 == dev_key_id), "{listed:?}");
    let id1 = listed[0].1.clone();
    let id2 = listed[1].1.clone();

    // Filters: by room (the room's members) and by key.
    let in_a: Vec<String> = dev.connections(&["--room", room_a]).into_iter().map(|c| c.0).collect();
    assert_eq!(in_a, ["client-1", "client-2"]);
    assert_eq!(dev.connections(&["--key", &dev_key_id]).len(), 3);
    assert_eq!(dev.connections(&["--key", "key_0000000000000000"]).len(), 0);
    // --limit caps explicitly and says so.
    let capped = dev.json(&["connections", "list", "--limit", "2", "--sort", "id"]);
    assert_eq!(capped["connections"].as_array().map(Vec::len), Some(2), "{capped}");
    assert_eq!(capped["truncated"], true, "{capped}");

    // show: everything known about one connection.
    let shown = dev.json(&["connections", "show", &id1]);
    assert_eq!(shown["connectionId"], id1.as_str());
    assert_eq!(shown["userAgent"], "client-1");
    assert_eq!(shown["state"], "live");
    assert_eq!(shown["rooms"], serde_json::json!([room_a]));
    assert!(shown["lastActiveAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{shown}");

    // rooms list / show.
    let rooms = dev.json(&["rooms", "list"]);
    let counts: Vec<(String, u64)> = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| (r["room"].as_str().unwrap_or("").to_owned(), r["subscribers"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(counts, [(room_b.to_owned(), 2), (room_a.to_owned(), 2)]);
    let mut members_a = vec![id1.clone(), id2.clone()];
    members_a.sort();
    assert_eq!(dev.json(&["rooms", "show", room_a])["members"], serde_json::json!(members_a));

    // kick: the client sees a close; it disappears from the listing and from its room.
    let kicked = dev.json(&["connections", "kick", &id1, "--reason", "test"]);
    assert_eq!(kicked["wasLive"], true, "{kicked}");
    expect_closed(&mut c1, "client 1").await;
    eventually("the kicked connection to leave the listing", || dev.connections(&[]).len() == 2).await;
    let left: Vec<String> = dev.connections(&[]).into_iter().map(|c| c.0).collect();
    assert_eq!(left, ["client-2", "client-3"]);
    assert_eq!(dev.json(&["rooms", "show", room_a])["members"], serde_json::json!([id2.clone()]));

    // publish reaches the remaining member of room A.
    let report = dev.json(&["publish", "--room", room_a, r#"{"tvl":42}"#]);
    assert_eq!(report["delivered"], 1, "{report}");
    let msg = crate::common::recv(&mut c2).await;
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["data"]["tvl"], 42);
    // DATA may be any JSON value, a negative number too.
    assert_eq!(dev.json(&["publish", "--room", room_a, "-5"])["delivered"], 1);
    assert_eq!(crate::common::recv(&mut c2).await["data"], -5);

    // Unknown connection: clear error, non-zero exit.
    // (Ids may start with '-': URL-safe base64.)
    for args in [
        ["connections", "kick", "no-such-connection"],
        ["connections", "show", "no-such-connection"],
        ["connections", "show", "-no-such-connection"],
    ] {
        let out = dev.wsctl(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", String::from_utf8_lossy(&out.stderr));
    }

    // keys create: the key is printed once and works; revoke --disconnect closes its
    // client and a reconnect with it is refused with 403.
    let created = dev.json(&["keys", "create", "--name", "ci", "--scopes", "subscribe", "--max-connections", "5"]);
    let new_key = created["key"].as_str().expect("raw key").to_owned();
    let new_id = created["keyId"].as_str().expect("key id").to_owned();
    assert_eq!(created["scopes"], serde_json::json!(["subscribe"]));
    assert_eq!(created["maxConnections"], 5);
    let state_files: String = std::fs::read_dir(dev.state.path())
        .expect("state dir")
        .flatten()
        .filter(|e| e.file_name() != "dev-key")
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(!state_files.contains(&new_key), "the raw key must not be stored");
    let listed_keys = dev.wsctl(&["keys", "list"]);
    assert!(!String::from_utf8_lossy(&listed_keys.stdout).contains(&new_key));
    let mut c4 = crate::common::connect_as(&dev.url, &new_key, "client-4").await.expect("connect with the new key");
    crate::common::subscribe(&mut c4, room_b).await;
    let by_key = dev.connections(&["--key", &new_id]);
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0].0, "client-4");

    let revoked = dev.json(&["keys", "revoke", &new_id, "--disconnect"]);
    assert_eq!(revoked["disconnected"], 1, "{revoked}");
    assert!(revoked["revokedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{revoked}");
    expect_closed(&mut c4, "client 4").await;
    match crate::common::connect_as(&dev.url, &new_key, "client-4-again").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        Err(e) => panic!("reconnect with a revoked key failed oddly: {e}"),
        Ok(_) => panic!("a revoked key could connect again"),
    }
    eventually("the revoked key's connection to leave the listing", || dev.connections(&["--key", &new_id]).is_empty())
        .await;
    let out = dev.wsctl(&["keys", "revoke", "key_0000000000000000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // keys create --expires-in: the expiry is recorded and listed; keys delete removes the
    // record, after which the key cannot connect; an unknown id or a bad lifetime is refused.
    let in_two_hours = || wsctl::output::rfc3339_ms(wsctl_handlers::store::now_ms() + 7_200_000);
    let earliest = in_two_hours();
    let expiring = dev.json(&["keys", "create", "--name", "temp", "--expires-in", "2h"]);
    let latest = in_two_hours();
    let expires_at = expiring["expiresAt"].as_str().expect("expiresAt").to_owned();
    let temp_key = expiring["key"].as_str().expect("raw key").to_owned();
    let temp_id = expiring["keyId"].as_str().expect("key id").to_owned();
    // Same format, so the strings order as the times do.
    assert!(earliest <= expires_at && expires_at <= latest, "{earliest} <= {expires_at} <= {latest}");
    let listed = dev.json(&["keys", "list"]);
    let entry = listed["keys"].as_array().unwrap().iter().find(|k| k["keyId"] == temp_id.as_str()).expect("listed");
    assert_eq!(entry["expiresAt"], expires_at.as_str());
    let table = String::from_utf8_lossy(&dev.wsctl(&["keys", "list"]).stdout).into_owned();
    assert!(table.contains("EXPIRES") && table.contains(&expires_at[..16].replace('T', " ")), "{table}");
    let c5 = crate::common::connect_as(&dev.url, &temp_key, "client-5").await.expect("an unexpired key connects");
    drop(c5);
    let deleted = dev.json(&["keys", "delete", &temp_id]);
    assert_eq!(deleted["keyId"], temp_id.as_str(), "{deleted}");
    let listed = dev.json(&["keys", "list"]);
    assert!(listed["keys"].as_array().unwrap().iter().all(|k| k["keyId"] != temp_id.as_str()), "{listed}");
    match crate::common::connect_as(&dev.url, &temp_key, "client-5-again").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        Err(e) => panic!("connect with a deleted key failed oddly: {e}"),
        Ok(_) => panic!("a deleted key could connect"),
    }
    let out = dev.wsctl(&["keys", "delete", &temp_id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found on stage 'local'"), "{out:?}");
    let out = dev.wsctl(&["keys", "create", "--name", "x", "--expires-in", "30 days"]);
    assert_eq!(out.status.code(), Some(64), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("e.g. 30d"), "{out:?}");

    // --watch without a terminal prints one JSON document per refresh.
    let out =
        dev.wsctl(&["--output", "json", "connections", "list", "--watch", "--interval", "0.2", "--iterations", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("watch line is not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|d| d["total"] == 2), "{lines:?}");

    // Text tables fit the terminal width (COLUMNS when stdout is not a terminal).
    let out = Command::new(WSCTL)
        .arg("--stages-dir")
        .arg(stages_dir())
        .args(["connections", "list", "--stage", "local", "--state-dir"])
        .arg(dev.state.path())
        .env("COLUMNS", "70")
        .output()
        .expect("run wsctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("2 connections on stage local"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 70), "a line is wider than 70:\n{text}");
    drop((c2, c3));
}

#[test]
fn local_stage_without_a_gateway_says_how_to_start_one() {
    let empty = TempDir::new("wsctl-operator-nogw").expect("temp dir");
    let out = Command::new(WSCTL)
        .args(["connections", "list", "--stage", "local", "--state-dir"])
        .arg(empty.path())
        .output()
        .expect("run wsctl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wsctl dev"), "{err}");
}

#[test]
fn unknown_stage_is_a_clear_error() {
    let out = Command::new(WSCTL)
        .arg("--stages-dir")
        .arg(stages_dir())
        .args(["keys", "list", "--stage", "no-such-stage"])
        .output()
        .expect("run wsctl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stage 'no-such-stage' not found") && err.contains("dev"), "{err}");
}
