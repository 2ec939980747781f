//! The real Lambda binaries, booted as Lambda boots them: each runs against a local
//! implementation of the Lambda Runtime API (`/2018-06-01/runtime/invocation/next`, then
//! `…/{id}/response` or `…/{id}/error`), with the environment the app template gives it,
//! on `redis-server` and moto's DynamoDB. This proves what the handler-level fixtures call
//! past: each binary reads its environment, builds its stores, takes events from the
//! runtime, answers each one, and prints its counters as CloudWatch EMF with the
//! `function` and `stage` dimensions the alarms select on. When the scripted events are
//! used up the runtime answers `next` without an event, which the runtime client treats
//! as fatal (it panics on the missing request id), so the binary exits; its stderr is
//! kept and shown only when an assertion fails.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsctl_handlers::admin::{AdminReply, AdminRequest};
use wsctl_handlers::store::dynamo;
use wsctl_testkit::{apigw_fixture, apigw_fixture_with_key, MotoServer, RedisServer};

const STAGE: &str = "lambda-runtime-test";

/// What the runtime hands out and what it was answered.
#[derive(Default)]
struct Runtime {
    events: Mutex<VecDeque<(String, String)>>,
    answers: Mutex<Vec<Answer>>,
}

/// One invocation's outcome, as the binary posted it.
#[derive(Debug, Clone)]
struct Answer {
    request_id: String,
    error: bool,
    body: Value,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn next(State(rt): State<Arc<Runtime>>) -> Response {
    let Some((id, event)) = lock(&rt.events).pop_front() else {
        // Nothing more to run: an error makes the runtime client stop, so the binary exits.
        return (StatusCode::INTERNAL_SERVER_ERROR, "no more events").into_response();
    };
    let mut headers = HeaderMap::new();
    let deadline = (wsctl_handlers::store::now_ms() + 30_000).to_string();
    headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_str(&id).expect("header"));
    headers.insert("lambda-runtime-deadline-ms", HeaderValue::from_str(&deadline).expect("header"));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:test"),
    );
    (StatusCode::OK, headers, event).into_response()
}

async fn record(rt: &Runtime, request_id: String, error: bool, body: Bytes) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&rt.answers).push(Answer { request_id, error, body });
    (StatusCode::ACCEPTED, "").into_response()
}

async fn response(State(rt): State<Arc<Runtime>>, Path(id): Path<String>, body: Bytes) -> Response {
    record(&rt, id, false, body).await
}

async fn error(State(rt): State<Arc<Runtime>>, Path(id): Path<String>, body: Bytes) -> Response {
    record(&rt, id, true, body).await
}

async fn init_error(State(rt): State<Arc<Runtime>>, body: Bytes) -> Response {
    record(&rt, "init".into(), true, body).await
}

/// Serves the Runtime API for `events` (request id, JSON); returns its `host:port`.
async fn serve(rt: Arc<Runtime>) -> String {
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(rt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the runtime API");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr.to_string()
}

/// The stage's tables in moto, and a key in them (raw key, key id).
async fn tables_and_key() -> (String, String, String, String) {
    let moto = MotoServer::shared();
    let sdk = crate::moto_sdk::moto_sdk(moto).await;
    let client = dynamo::client(&sdk);
    let n = std::process::id();
    let (conns, keys) = (format!("lr-conns-{n}"), format!("lr-keys-{n}"));
    dynamo::ensure_tables(&client, &conns, &keys).await.expect("create tables in moto");
    let services = wsctl_handlers::service::Services::new(
        Arc::new(wsctl_handlers::store::memory::MemoryRoomStore::new(10)),
        Arc::new(dynamo::DynamoConnectionStore::new(client.clone(), conns.clone())),
        Arc::new(dynamo::DynamoKeyStore::new(client, keys.clone())),
        // Creating a key sends nothing.
        Arc::new(wsctl_handlers::sender::ManagementApiSender::new(&sdk, "http://127.0.0.1:9", Default::default())),
        wsctl_handlers::limits::Limits::default(),
    );
    let req = AdminRequest::CreateKey {
        name: "lambda-runtime".into(),
        scopes: "subscribe,publish".into(),
        max_connections: 0,
        room_prefix: None,
        expires_at: None,
    };
    let (raw, key_id) = match services.admin(req).await {
        AdminReply::KeyCreated { key, record } => (key, record.key_id),
        other => panic!("{other:?}"),
    };
    (conns, keys, raw, key_id)
}

/// One binary's run: its answers, its stdout (the EMF lines) and its stderr (its log).
struct Run {
    answers: Vec<Answer>,
    stdout: String,
    stderr: String,
}

/// Runs the binary `name` against a runtime holding `events`.
async fn invoke(name: &str, events: Vec<(String, String)>, tables: &(String, String)) -> Run {
    let rt = Arc::new(Runtime::default());
    *lock(&rt.events) = events.into();
    let api = serve(rt.clone()).await;
    let exe = match name {
        "authorizer" => env!("CARGO_BIN_EXE_authorizer"),
        "connect" => env!("CARGO_BIN_EXE_connect"),
        "message" => env!("CARGO_BIN_EXE_message"),
        other => panic!("no binary {other}"),
    };
    let child = wsctl_testkit::keep_coverage_profile(Command::new(exe).env_clear())
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("wsctl-{STAGE}-app-{name}"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ENDPOINT_URL", MotoServer::shared().endpoint())
        .env("WSCTL_STAGE", STAGE)
        .env("CONNECTIONS_TABLE", &tables.0)
        .env("API_KEYS_TABLE", &tables.1)
        .env("REDIS_URL", RedisServer::shared().url())
        // Nothing in these events posts to a connection.
        .env("WS_MANAGEMENT_ENDPOINT", "http://127.0.0.1:9")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {exe}: {e}"));
    let out = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut child = child;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    panic!("the {exe} binary did not exit after its events");
                }
            }
        }
        child.wait_with_output().expect("its output")
    })
    .await
    .expect("wait");
    let answers = lock(&rt.answers).clone();
    Run {
        answers,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The EMF documents a binary printed.
fn emf(stdout: &str) -> Vec<Value> {
    stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("_aws").is_some()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binaries_boot_on_the_runtime_api_answer_their_events_and_emit_emf() {
    let (conns, keys, raw, key_id) = tables_and_key().await;
    let tables = (conns, keys);

    // The authorizer: the key allows, a wrong key is denied (an answer, never an error).
    let good = apigw_fixture_with_key("authorizer_query.json", &raw);
    let bad = apigw_fixture_with_key("authorizer_query.json", "wsk_not-a-key-of-this-stage");
    let run = invoke("authorizer", vec![("req-allow".into(), good), ("req-deny".into(), bad)], &tables).await;
    let (answers, stdout) = (&run.answers, &run.stdout);
    assert_eq!(answers.len(), 2, "{answers:?}; its log: {}", run.stderr);
    let by_id = |id: &str| answers.iter().find(|a| a.request_id == id).unwrap_or_else(|| panic!("{id}: {answers:?}"));
    let allow = by_id("req-allow");
    assert!(!allow.error, "{allow:?}");
    assert_eq!(allow.body["policyDocument"]["Statement"][0]["Effect"], "Allow", "{allow:?}");
    assert_eq!(allow.body["context"]["keyId"], key_id.as_str(), "{allow:?}");
    let deny = by_id("req-deny");
    assert!(!deny.error, "a refusal is an answer, not a function error: {deny:?}");
    assert_eq!(deny.body["policyDocument"]["Statement"][0]["Effect"], "Deny", "{deny:?}");
    let docs = emf(stdout);
    assert_eq!(docs.len(), 2, "one EMF document per invocation: {stdout}");
    for d in &docs {
        assert_eq!((d["function"].as_str(), d["stage"].as_str()), (Some("authorizer"), Some(STAGE)), "{d}");
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["function", "stage"]]));
    }

    // $connect with the authorizer's context stores the connection; $default answers.
    let conn = format!("LrT{}x=", std::process::id());
    let with_ids = |name: &str| {
        apigw_fixture(name)
            .replace("Pq3x9cVvIAMCJbA=", &conn)
            .replace("key-7f3a9c2e", &key_id)
            .replace("\"connectedAt\": 1795629600000", &format!("\"connectedAt\": {}", wsctl_handlers::store::now_ms()))
    };
    let run = invoke("connect", vec![("req-connect".into(), with_ids("connect.json"))], &tables).await;
    let answers = &run.answers;
    assert_eq!(answers.len(), 1, "{answers:?}; its log: {}", run.stderr);
    assert!(!answers[0].error, "{answers:?}");
    assert_eq!(answers[0].body["statusCode"], 200, "{answers:?}");
    assert!(emf(&run.stdout).iter().any(|d| d["function"] == "connect" && d["connects"] == 1), "{}", run.stdout);

    let run = invoke(
        "message",
        vec![
            ("req-subscribe".into(), with_ids("message_subscribe.json")),
            ("req-unknown".into(), with_ids("message_unknown_action.json")),
        ],
        &tables,
    )
    .await;
    let answers = &run.answers;
    assert_eq!(answers.len(), 2, "{answers:?}; its log: {}", run.stderr);
    let reply = |a: &Answer| -> Value {
        serde_json::from_str(a.body["body"].as_str().unwrap_or_else(|| panic!("a route response body: {a:?}")))
            .expect("a JSON frame")
    };
    let subscribed = reply(&answers[0]);
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let unknown = reply(&answers[1]);
    assert_eq!(
        (unknown["type"].as_str(), unknown["code"].as_str()),
        (Some("error"), Some("unknown_action")),
        "{unknown}"
    );
    let docs = emf(&run.stdout);
    assert!(docs.iter().any(|d| d["function"] == "message" && d["errors_unknown_action"] == 1), "{}", run.stdout);
}
