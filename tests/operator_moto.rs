//! Operator commands on a deployed stage, with every AWS API served by a real
//! `moto_server` and nothing talking to real AWS.
//!
//! The tables are created like `wsctl_handlers::store::dynamo::ensure_tables` creates them
//! (it is called directly). The stage's stack outputs are either overridden
//! (`WSCTL_CONNECTIONS_TABLE`, `WSCTL_API_KEYS_TABLE`, `WSCTL_MANAGEMENT_ENDPOINT`), or
//! read from an app stack created in moto's CloudFormation. The management API
//! (GetConnection / DeleteConnection) is a real `wsctl dev` gateway whose records and keys
//! live in the same moto tables, so a kick or a revoke through the deployed-stage path
//! closes real WebSocket clients.

use crate::common::DevGateway;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsctl_testkit::{MotoServer, TempDir};

const WSCTL: &str = env!("CARGO_BIN_EXE_wsctl");

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn repo_stages() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("stages")
}

/// Names unique to one test, so tests can share the moto server.
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

async fn dynamodb(moto: &MotoServer) -> aws_sdk_dynamodb::Client {
    let creds = aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "test");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(creds)
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

/// A deployed stage called `name` (a stage file in a temp dir), its two tables in moto.
struct Stage {
    name: String,
    dir: TempDir,
    connections_table: String,
    keys_table: String,
    stack_prefix: String,
}

impl Stage {
    async fn create(moto: &MotoServer) -> Stage {
        let name = "moto".to_owned();
        let dir = TempDir::new("wsctl-operator-moto").expect("temp dir");
        let stack_prefix = unique("wsctl-optest");
        std::fs::write(dir.join(format!("{name}.yaml")), format!("region: us-east-1\nstack_name: {stack_prefix}\n"))
            .expect("stage file");
        let connections_table = unique("optest-connections");
        let keys_table = unique("optest-keys");
        wsctl_handlers::store::dynamo::ensure_tables(&dynamodb(moto).await, &connections_table, &keys_table)
            .await
            .expect("create the tables in moto");
        Stage { name, dir, connections_table, keys_table, stack_prefix }
    }

    /// `wsctl --stages-dir … ARGS --stage moto` against moto; `management` overrides the
    /// management endpoint, `tables` the table names (else the app stack outputs are read).
    fn wsctl(&self, moto: &MotoServer, args: &[&str], management: Option<&str>, tables: bool) -> Output {
        let mut cmd = Command::new(WSCTL);
        cmd.arg("--stages-dir").arg(self.dir.path()).args(args).args(["--stage", &self.name]);
        cmd.envs(moto.aws_env()).stdin(Stdio::null());
        for v in [
            "WSCTL_STAGE",
            "WSCTL_CONNECTIONS_TABLE",
            "WSCTL_API_KEYS_TABLE",
            "WSCTL_MANAGEMENT_ENDPOINT",
            "WSCTL_ADMIN_FUNCTION",
            "WSCTL_PUBLISH_FUNCTION",
            "AWS_PROFILE",
        ] {
            cmd.env_remove(v);
        }
        if tables {
            cmd.env("WSCTL_CONNECTIONS_TABLE", &self.connections_table).env("WSCTL_API_KEYS_TABLE", &self.keys_table);
        }
        if let Some(m) = management {
            cmd.env("WSCTL_MANAGEMENT_ENDPOINT", m);
        }
        cmd.output().expect("run wsctl")
    }

    fn json(&self, moto: &MotoServer, args: &[&str], management: Option<&str>) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.wsctl(moto, &all, management, true);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "wsctl {args:?} failed: {}\nstdout: {stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("wsctl {args:?} printed no JSON ({e}): {stdout}"))
    }
}

/// The gateway under test (see `tests/common`), on moto's tables when `stage` is given.
fn start_dev(moto: &MotoServer, stage: Option<&Stage>) -> DevGateway {
    let endpoint = moto.endpoint();
    let mut args: Vec<&str> = Vec::new();
    if let Some(s) = stage {
        args.extend(["--dynamodb-endpoint", &endpoint]);
        args.extend(["--connections-table", &s.connections_table, "--api-keys-table", &s.keys_table]);
    }
    DevGateway::start_env(&repo_stages(), &args, moto.aws_env())
}

async fn subscribe(ws: &mut Ws, room: &str) {
    let req = serde_json::json!({"action": "subscribe", "room": room}).to_string();
    ws.send(Message::Text(req.into())).await.expect("send subscribe");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("reply").expect("open");
        if let Ok(Message::Text(t)) = msg {
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
            assert_eq!(v["type"], "subscribed", "{v}");
            return;
        }
    }
}

async fn expect_closed(ws: &mut Ws, who: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("{who} was not closed within 10 s"),
            Ok(None | Some(Ok(Message::Close(_))) | Some(Err(_))) => return,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn by_agent(doc: &Value) -> HashMap<String, Value> {
    doc["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("no connections in {doc}"))
        .iter()
        .map(|c| (c["userAgent"].as_str().unwrap_or("").to_owned(), c.clone()))
        .collect()
}

fn record(id: &str, key_id: &str, connected_at_ms: u64) -> HashMap<String, AttributeValue> {
    let ttl = wsctl_handlers::store::now_ms() / 1000 + 3600;
    HashMap::from([
        ("connectionId".to_owned(), AttributeValue::S(id.to_owned())),
        ("keyId".to_owned(), AttributeValue::S(key_id.to_owned())),
        ("sourceIp".to_owned(), AttributeValue::S("198.51.100.7".into())),
        ("userAgent".to_owned(), AttributeValue::S("loadgen".into())),
        ("connectedAt".to_owned(), AttributeValue::N(connected_at_ms.to_string())),
        ("ttl".to_owned(), AttributeValue::N(ttl.to_string())),
    ])
}

/// Writes items with BatchWriteItem, 25 at a time, resending what moto leaves unprocessed.
async fn batch_write(client: &aws_sdk_dynamodb::Client, table: &str, items: Vec<HashMap<String, AttributeValue>>) {
    for chunk in items.chunks(25) {
        let mut pending: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(item.clone())).build().expect("put request");
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        while !pending.is_empty() {
            let out = client.batch_write_item().request_items(table, pending).send().await.expect("BatchWriteItem");
            pending = out.unprocessed_items.and_then(|mut u| u.remove(table)).unwrap_or_default();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployed_stage_lists_shows_kicks_and_manages_keys() {
    let moto = MotoServer::shared();
    let stage = Stage::create(moto).await;
    let dev = start_dev(moto, Some(&stage));
    let mgmt = Some(dev.management.as_str());
    let mut c1 = crate::common::connect_as(&dev.url, &dev.key, "moto-client-1").await.expect("client 1");
    let c2 = crate::common::connect_as(&dev.url, &dev.key, "moto-client-2").await.expect("client 2");
    subscribe(&mut c1, "tvl:protocol:aave").await;

    // A record whose connection is long gone (its $disconnect never ran).
    let client = dynamodb(moto).await;
    batch_write(&client, &stage.connections_table, vec![record("staleConnId0", "key_stale", 1_000)]).await;

    // list: the table, enriched with GetConnection; rooms need the admin function, which
    // this stage does not have, and the listing says so instead of failing.
    let doc = stage.json(moto, &["connections", "list"], mgmt);
    assert_eq!(doc["total"], 3, "{doc}");
    let listed = by_agent(&doc);
    assert_eq!(listed["moto-client-1"]["state"], "live", "{doc}");
    assert_eq!(listed["moto-client-2"]["state"], "live", "{doc}");
    assert!(listed["moto-client-1"]["lastActiveAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{doc}");
    assert_eq!(listed["loadgen"]["state"], "gone", "{doc}");
    assert_eq!(doc["connections"][0]["connectionId"], "staleConnId0", "sorted oldest first: {doc}");
    let warnings = doc["warnings"].to_string();
    assert!(warnings.contains("rooms unavailable") && warnings.contains("not deployed yet"), "{doc}");
    let key_id = listed["moto-client-1"]["keyId"].as_str().expect("key id").to_owned();
    let id1 = listed["moto-client-1"]["connectionId"].as_str().expect("id").to_owned();

    // --key: a Query on the byKey index.
    let mine = stage.json(moto, &["connections", "list", "--key", &key_id], mgmt);
    assert_eq!(mine["total"], 2, "{mine}");

    // show.
    let shown = stage.json(moto, &["connections", "show", &id1], mgmt);
    assert_eq!(shown["userAgent"], "moto-client-1");
    assert_eq!(shown["state"], "live");
    assert_eq!(shown["keyId"], key_id.as_str());
    let missing = stage.wsctl(moto, &["connections", "show", "noSuchConnection"], mgmt, true);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));

    // kick: DeleteConnection closes the client; the gateway's $disconnect removes its record.
    let kicked = stage.json(moto, &["connections", "kick", &id1], mgmt);
    assert_eq!(kicked["wasLive"], true, "{kicked}");
    expect_closed(&mut c1, "client 1").await;
    let mut left = 0;
    for _ in 0..100 {
        left = stage.json(moto, &["connections", "list", "--key", &key_id], mgmt)["total"].as_u64().unwrap_or(99);
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 1, "the kicked connection's record should be gone");
    // Kicking a gone connection removes its leftover record; after that it is not found.
    let stale = stage.json(moto, &["connections", "kick", "staleConnId0"], mgmt);
    assert_eq!(stale["wasLive"], false, "{stale}");
    let again = stage.wsctl(moto, &["connections", "kick", "staleConnId0"], mgmt, true);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not found"));

    // keys create: the raw key is printed once, only its hash is stored, and it connects.
    let created = stage.json(moto, &["keys", "create", "--name", "partner", "--scopes", "subscribe,publish"], mgmt);
    let raw = created["key"].as_str().expect("raw key").to_owned();
    let new_id = created["keyId"].as_str().expect("key id").to_owned();
    assert_eq!(created["scopes"], serde_json::json!(["subscribe", "publish"]));
    let items = client.scan().table_name(&stage.keys_table).send().await.expect("scan keys").items.unwrap_or_default();
    let stored = items.iter().find(|i| i.get("keyId").and_then(|v| v.as_s().ok()) == Some(&new_id)).expect("stored");
    assert_eq!(stored["keyHash"].as_s().ok(), Some(&wsctl_handlers::auth::hash_key(&raw)));
    assert!(!format!("{items:?}").contains(&raw), "the raw key must not be stored");
    let listed_keys = stage.json(moto, &["keys", "list"], mgmt);
    let ids: Vec<&str> =
        listed_keys["keys"].as_array().expect("keys").iter().filter_map(|k| k["keyId"].as_str()).collect();
    assert!(ids.contains(&new_id.as_str()) && ids.contains(&key_id.as_str()), "{listed_keys}");
    assert!(!listed_keys.to_string().contains(&raw));

    let mut c3 = crate::common::connect_as(&dev.url, &raw, "moto-client-3").await.expect("connect with the new key");
    subscribe(&mut c3, "tvl:chain:base").await;
    let revoked = stage.json(moto, &["keys", "revoke", &new_id, "--disconnect"], mgmt);
    assert_eq!(revoked["disconnected"], 1, "{revoked}");
    assert!(revoked["revokedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    expect_closed(&mut c3, "client 3").await;
    match crate::common::connect_as(&dev.url, &raw, "moto-client-3-again").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        Err(e) => panic!("reconnect with a revoked key failed oddly: {e}"),
        Ok(_) => panic!("a revoked key could connect again"),
    }
    let unknown = stage.wsctl(moto, &["keys", "revoke", "key_0000000000000000"], mgmt, true);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));

    // keys create --expires-in writes DynamoDB's TTL attribute (seconds) beside expiresAt;
    // keys delete removes the item.
    let expiring = stage.json(moto, &["keys", "create", "--name", "temp", "--expires-in", "1d"], mgmt);
    let temp_id = expiring["keyId"].as_str().expect("key id").to_owned();
    let items = client.scan().table_name(&stage.keys_table).send().await.expect("scan keys").items.unwrap_or_default();
    let item = items.iter().find(|i| i.get("keyId").and_then(|v| v.as_s().ok()) == Some(&temp_id)).expect("stored");
    let ttl: u64 = item["ttl"].as_n().expect("ttl").parse().expect("a number");
    let day_from_now = wsctl_handlers::store::now_ms() / 1000 + 86_400;
    assert!(ttl.abs_diff(day_from_now) <= 60, "ttl {ttl} vs {day_from_now}");
    let deleted = stage.json(moto, &["keys", "delete", &temp_id], mgmt);
    assert_eq!(deleted["keyId"], temp_id.as_str(), "{deleted}");
    let items = client.scan().table_name(&stage.keys_table).send().await.expect("scan keys").items.unwrap_or_default();
    assert!(items.iter().all(|i| i.get("keyId").and_then(|v| v.as_s().ok()) != Some(&temp_id)), "deleted");
    let unknown = stage.wsctl(moto, &["keys", "delete", &temp_id], mgmt, true);
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("not found"));
    drop(c2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_list_pages_through_ten_thousand_records() {
    let moto = MotoServer::shared();
    let stage = Stage::create(moto).await;
    // A gateway with none of these connections: GetConnection answers 410 for each.
    let dev = start_dev(moto, None);
    let client = dynamodb(moto).await;
    let base = wsctl_handlers::store::now_ms() - 10_000_000;
    let items: Vec<_> = (0..10_000u64)
        .map(|i| {
            // Written out of order; every tenth belongs to key_b.
            let n = (i * 7_919) % 10_000;
            record(&format!("conn{n:05}"), if n % 10 == 0 { "key_b" } else { "key_a" }, base + n)
        })
        .collect();
    batch_write(&client, &stage.connections_table, items).await;

    let doc = stage.json(moto, &["connections", "list"], Some(&dev.management));
    let list = doc["connections"].as_array().expect("connections");
    assert_eq!(doc["total"], 10_000);
    assert_eq!(doc["truncated"], false);
    assert_eq!(list.len(), 10_000);
    let ids: HashSet<&str> = list.iter().filter_map(|c| c["connectionId"].as_str()).collect();
    assert_eq!(ids.len(), 10_000, "every record exactly once");
    // RFC 3339 UTC strings of one width sort as the times they name.
    let times: Vec<&str> = list.iter().map(|c| c["connectedAt"].as_str().expect("RFC 3339 connectedAt")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted by connect time");
    assert!(list.iter().all(|c| c["state"] == "gone"));

    // The index Query pages too; --limit caps explicitly and says so.
    // (--no-live skips GetConnection: the records alone.)
    let by_key = stage.json(moto, &["connections", "list", "--key", "key_b", "--no-live"], Some(&dev.management));
    assert_eq!(by_key["total"], 1_000);
    assert!(by_key["connections"].as_array().expect("list").iter().all(|c| c["keyId"] == "key_b"));
    assert!(by_key["connections"].as_array().expect("list").iter().all(|c| c["state"] == "unchecked"));
    let capped = stage.json(moto, &["connections", "list", "--limit", "2500"], Some(&dev.management));
    assert_eq!(capped["total"], 2_500);
    assert_eq!(capped["truncated"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_outputs_name_the_resources_and_a_missing_stack_is_reported() {
    let moto = MotoServer::shared();
    let stage = Stage::create(moto).await;

    // Not deployed yet: no app stack, no overrides.
    let out = stage.wsctl(moto, &["keys", "list"], None, false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not deployed yet") && err.contains("wsctl deploy --stage moto"), "{err}");

    // An app stack whose outputs name the tables (as the real app stack's do).
    let creds = aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "test");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(creds)
        .load()
        .await;
    let template = serde_json::json!({
        "Resources": { "Marker": { "Type": "AWS::CloudFormation::WaitConditionHandle" } },
        "Outputs": {
            "ConnectionsTableName": { "Value": stage.connections_table },
            "ApiKeysTableName": { "Value": stage.keys_table },
            "ManagementEndpoint": { "Value": "http://127.0.0.1:9/none" },
        }
    });
    aws_sdk_cloudformation::Client::new(&sdk)
        .create_stack()
        .stack_name(format!("{}-app", stage.stack_prefix))
        .template_body(template.to_string())
        .send()
        .await
        .expect("create the app stack in moto");

    let out = stage.wsctl(moto, &["--output", "json", "keys", "create", "--name", "from-outputs"], None, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let out = stage.wsctl(moto, &["--output", "json", "keys", "list"], None, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed["keys"][0]["keyId"], created["keyId"], "{listed}");
    assert_eq!(listed["keys"][0]["name"], "from-outputs");
    // Text output: a table and a count.
    let out = stage.wsctl(moto, &["keys", "list"], None, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("KEY ID") && text.contains("from-outputs") && text.contains("1 key(s) on stage moto"),
        "{text}"
    );
}

#[test]
fn missing_credentials_are_a_clear_error() {
    let dir = TempDir::new("wsctl-operator-nocreds").expect("temp dir");
    std::fs::write(dir.join("moto.yaml"), "region: us-east-1\n").expect("stage file");
    let out = wsctl_testkit::keep_coverage_profile(Command::new(WSCTL).env_clear())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .arg("--stages-dir")
        .arg(dir.path())
        .args(["connections", "list", "--stage", "moto"])
        .output()
        .expect("run wsctl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS credentials for stage 'moto'") && err.contains("--profile"), "{err}");
}
