//! The deployed-stage paths that go through Lambda: `rooms list|show`, the room parts of
//! `connections list|show`, and `publish`.
//!
//! moto_server cannot run Lambda functions without Docker, so the test serves the Lambda
//! Invoke API itself (`POST /2015-03-31/functions/{name}/invocations`, pointed at with
//! `AWS_ENDPOINT_URL_LAMBDA`) and runs the real handler entry points behind it
//! (`lambda::admin`, `lambda::publish`) on services wired exactly like the Lambda
//! binaries wire them (`LambdaEnv::from_lookup` + `services_with`): rooms in a real
//! `redis-server`, records and keys in moto's DynamoDB, sends through the management API
//! of a `wsctl dev` gateway that shares that Redis and those tables. Real WebSocket
//! clients hold the connections.

use crate::common::DevGateway;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsctl_handlers::lambda::{self, LambdaEnv};
use wsctl_handlers::service::Services;
use wsctl_testkit::{MotoServer, RedisServer, TempDir};

const WSCTL: &str = env!("CARGO_BIN_EXE_wsctl");
const ADMIN_FN: &str = "optest-admin";
const PUBLISH_FN: &str = "optest-publish";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn start_dev(moto: &MotoServer, redis: &RedisServer, connections: &str, keys: &str) -> DevGateway {
    let (redis_url, moto_url) = (redis.url(), moto.endpoint());
    let args = ["--redis-url", &redis_url, "--dynamodb-endpoint", &moto_url];
    let tables = ["--connections-table", connections, "--api-keys-table", keys];
    DevGateway::start_env(&crate::common::repo_stages(), &[&args[..], &tables[..]].concat(), moto.aws_env())
}

/// The Lambda Invoke API for the two functions, as the Lambda service answers it: the
/// function's JSON result with 200, or `X-Amz-Function-Error` when the function fails.
async fn invoke(State(services): State<Arc<Services>>, UrlPath(name): UrlPath<String>, body: Bytes) -> Response {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let outcome: Result<Vec<u8>, String> = match name.as_str() {
        ADMIN_FN => match serde_json::from_slice(&body) {
            Ok(request) => lambda::admin(services, request)
                .await
                .map_err(|e| text(&e))
                .and_then(|r| serde_json::to_vec(&r).map_err(|e| text(&e))),
            Err(e) => Err(text(&e)),
        },
        PUBLISH_FN => match serde_json::from_slice(&body) {
            Ok(event) => lambda::publish(services, event)
                .await
                .map_err(|e| text(&e))
                .and_then(|r| serde_json::to_vec(&r).map_err(|e| text(&e))),
            Err(e) => Err(text(&e)),
        },
        _ => {
            let body = serde_json::json!({"Type": "User", "Message": format!("Function not found: {name}")});
            let mut r = (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
            r.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static("ResourceNotFoundException"));
            return r;
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-executed-version", HeaderValue::from_static("1"));
    match outcome {
        Ok(json) => (StatusCode::OK, headers, json).into_response(),
        Err(message) => {
            headers.insert("x-amz-function-error", HeaderValue::from_static("Unhandled"));
            let body = serde_json::json!({"errorType": "Runtime.UnmarshalError", "errorMessage": message});
            (StatusCode::OK, headers, body.to_string()).into_response()
        }
    }
}

/// Serves [`invoke`] on a free port; returns its endpoint.
async fn start_lambda(services: Services) -> String {
    let app = axum::Router::new()
        .route("/2015-03-31/functions/{name}/invocations", axum::routing::post(invoke))
        .with_state(Arc::new(services));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn connect(url: &str, key: &str, agent: &str) -> Ws {
    crate::common::connect_as(url, key, agent).await.expect("connect")
}

struct Env {
    stages: TempDir,
    vars: Vec<(String, String)>,
}

impl Env {
    fn wsctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(WSCTL);
        cmd.arg("--stages-dir").arg(self.stages.path()).args(args).args(["--stage", "moto"]);
        for v in ["WSCTL_STAGE", "AWS_PROFILE", "AWS_ENDPOINT_URL"] {
            cmd.env_remove(v);
        }
        cmd.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))).stdin(Stdio::null());
        cmd.output().expect("run wsctl")
    }

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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_publish_go_through_the_admin_and_publish_functions() {
    let moto = MotoServer::shared();
    let redis = RedisServer::shared();
    let (connections, keys) = (unique("lt-conns-"), unique("lt-keys-"));
    let sdk = crate::common::publish_lambda::sdk(&moto.endpoint()).await;
    wsctl_handlers::store::dynamo::ensure_tables(&wsctl_handlers::store::dynamo::client(&sdk), &connections, &keys)
        .await
        .expect("tables");
    let dev = start_dev(moto, redis, &connections, &keys);

    // The functions' environment, as the app template sets it.
    let env = LambdaEnv::from_lookup(|k| match k {
        "CONNECTIONS_TABLE" => Some(connections.clone()),
        "API_KEYS_TABLE" => Some(keys.clone()),
        "REDIS_URL" => Some(redis.url()),
        "WS_MANAGEMENT_ENDPOINT" => Some(dev.management.clone()),
        "WSCTL_STAGE" => Some("moto".into()),
        _ => None,
    })
    .expect("lambda env");
    let lambda_endpoint = start_lambda(env.services_with(&sdk).expect("services")).await;

    let stages = TempDir::new("wsctl-operator-lambda").expect("temp dir");
    std::fs::write(stages.join("moto.yaml"), format!("region: us-east-1\nstack_name: {}\n", unique("optest-l")))
        .expect("stage file");
    // Per-service endpoints (standard SDK variables; they apply when neither
    // --endpoint-url nor AWS_ENDPOINT_URL is set): DynamoDB and CloudFormation at moto,
    // Lambda at the test's Invoke endpoint.
    let mut vars: Vec<(String, String)> = moto.aws_env().into_iter().filter(|(k, _)| k != "AWS_ENDPOINT_URL").collect();
    let moto_endpoint = moto.endpoint();
    vars.extend(
        [
            ("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint.as_str()),
            ("AWS_ENDPOINT_URL_CLOUDFORMATION", moto_endpoint.as_str()),
            // `publish` checks the account (STS) before it writes.
            ("AWS_ENDPOINT_URL_STS", moto_endpoint.as_str()),
            ("AWS_ENDPOINT_URL_LAMBDA", lambda_endpoint.as_str()),
            ("WSCTL_CONNECTIONS_TABLE", connections.as_str()),
            ("WSCTL_API_KEYS_TABLE", keys.as_str()),
            ("WSCTL_MANAGEMENT_ENDPOINT", dev.management.as_str()),
            ("WSCTL_ADMIN_FUNCTION", ADMIN_FN),
            ("WSCTL_PUBLISH_FUNCTION", PUBLISH_FN),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let ops = Env { stages, vars };

    let p = unique("lt");
    let (aave, eth) = (format!("{p}:protocol:aave"), format!("{p}:chain:ethereum"));
    let mut a = connect(&dev.url, &dev.key, "lambda-client-a").await;
    let mut b = connect(&dev.url, &dev.key, "lambda-client-b").await;
    crate::common::subscribe(&mut a, &aave).await;
    crate::common::subscribe(&mut b, &aave).await;
    crate::common::subscribe(&mut b, &eth).await;

    // rooms list / show through the admin function (Redis is only reachable there).
    let rooms = ops.json(&["rooms", "list", "--prefix", &format!("{p}:")]);
    let got: Vec<(String, u64)> = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| (r["room"].as_str().unwrap_or("").to_owned(), r["subscribers"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(got, [(eth.clone(), 1), (aave.clone(), 2)], "{rooms}");
    let shown = ops.json(&["rooms", "show", &aave]);
    assert_eq!(shown["members"].as_array().map(Vec::len), Some(2), "{shown}");

    // connections list: records from DynamoDB, live state from GetConnection, rooms from
    // the admin function; no warnings.
    let listed = ops.json(&["connections", "list"]);
    assert_eq!(listed["total"], 2, "{listed}");
    assert_eq!(listed["warnings"], serde_json::json!([]), "{listed}");
    let b_row = listed["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .find(|c| c["userAgent"] == "lambda-client-b")
        .expect("client b listed")
        .clone();
    let mut b_rooms = vec![eth.clone(), aave.clone()];
    b_rooms.sort();
    assert_eq!(b_row["rooms"], serde_json::json!(b_rooms), "{listed}");
    assert_eq!(b_row["state"], "live");
    let b_id = b_row["connectionId"].as_str().expect("id").to_owned();
    let in_eth = ops.json(&["connections", "list", "--room", &eth]);
    assert_eq!(in_eth["total"], 1, "{in_eth}");
    assert_eq!(in_eth["connections"][0]["connectionId"], b_id.as_str());
    let shown = ops.json(&["connections", "show", &b_id]);
    assert_eq!(shown["rooms"], serde_json::json!(b_rooms), "{shown}");

    // publish invokes the publish function, which posts to both subscribers.
    let report = ops.json(&["publish", "--room", &aave, r#"{"tvl":7}"#]);
    assert_eq!(report["delivered"], 2, "{report}");
    assert_eq!(report["seq"], 1, "{report}");
    for ws in [&mut a, &mut b] {
        let msg = crate::common::recv(ws).await;
        assert_eq!(msg["type"], "message", "{msg}");
        assert_eq!(msg["data"]["tvl"], 7);
    }
    let refused = ops.wsctl(&["publish", "--room", "bad room", "1"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("invalid_room"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let missing = ops.wsctl(&["rooms", "show", &format!("{p}:nothing")]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));

    // invoke: a raw event to the publish function, its reply printed as it came.
    let invoked = ops.json(&["invoke", "publish", &format!(r#"{{"room":"{aave}","data":{{"tvl":8}}}}"#)]);
    assert_eq!(invoked["functionError"], Value::Null, "{invoked}");
    assert_eq!(invoked["functionName"], PUBLISH_FN, "{invoked}");
    assert_eq!(invoked["payload"]["delivered"], 2, "{invoked}");
    for ws in [&mut a, &mut b] {
        assert_eq!(crate::common::recv(ws).await["data"]["tvl"], 8);
    }
    // A function error exits 1 and shows what the function said.
    let failed = ops.wsctl(&["invoke", "admin", r#"{"not":"a request"}"#]);
    assert_eq!(failed.status.code(), Some(1));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("failed (Unhandled)") && err.contains("errorMessage"), "{err}");
    let unknown = ops.wsctl(&["invoke", "mesage"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("pick one of authorizer"));

    // A function that does not exist: a clear error naming it.
    let mut cmd_vars = ops.vars.clone();
    cmd_vars.retain(|(k, _)| k != "WSCTL_ADMIN_FUNCTION");
    cmd_vars.push(("WSCTL_ADMIN_FUNCTION".into(), "no-such-function".into()));
    let broken = Env { stages: TempDir::new("wsctl-operator-lambda2").expect("temp"), vars: cmd_vars };
    std::fs::write(broken.stages.join("moto.yaml"), "region: us-east-1\n").expect("stage file");
    let out = broken.wsctl(&["rooms", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-function"), "{err}");
}
