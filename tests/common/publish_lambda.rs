//! The Lambda Invoke API for a stage's `publish` function, served locally (moto_server
//! cannot run functions without Docker): the real `lambda::publish` entry point on
//! services wired as the Lambda binary wires them, answering as the Lambda service does
//! (the result with 200, or `X-Amz-Function-Error`). Point the SDK at it with
//! `AWS_ENDPOINT_URL_LAMBDA`.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use wsctl_handlers::lambda;
use wsctl_handlers::service::Services;

/// The function name the endpoint answers to.
pub const PUBLISH_FN: &str = "smoketest-publish";

async fn invoke(State(services): State<Arc<Services>>, UrlPath(name): UrlPath<String>, body: Bytes) -> Response {
    if name != PUBLISH_FN {
        let mut r = (StatusCode::NOT_FOUND, format!("Function not found: {name}")).into_response();
        r.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static("ResourceNotFoundException"));
        return r;
    }
    let outcome = match serde_json::from_slice(&body) {
        Ok(event) => lambda::publish(services, event).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-executed-version", HeaderValue::from_static("1"));
    match outcome.and_then(|r| serde_json::to_vec(&r).map_err(|e| e.to_string())) {
        Ok(json) => (StatusCode::OK, headers, json).into_response(),
        Err(message) => {
            headers.insert("x-amz-function-error", HeaderValue::from_static("Unhandled"));
            (StatusCode::OK, headers, serde_json::json!({ "errorMessage": message }).to_string()).into_response()
        }
    }
}

/// Serves the Invoke API for [`PUBLISH_FN`] on a free port; returns its endpoint.
pub async fn start(services: Services) -> String {
    let app = axum::Router::new()
        .route("/2015-03-31/functions/{name}/invocations", axum::routing::post(invoke))
        .with_state(Arc::new(services));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    endpoint
}

/// moto's dummy credentials and region, every client pointed at `endpoint`.
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// A deployed stage's paths on loopback: its two tables in moto, a `wsctl dev` on Redis
/// standing in for API Gateway (WebSocket URL and management API), and the real
/// `publish` handler behind a local Lambda Invoke API ([`start`]).
pub struct LoopbackStage {
    /// The SDK configuration of moto.
    pub sdk: aws_config::SdkConfig,
    /// The gateway.
    pub dev: super::DevGateway,
    /// Connections table.
    pub connections: String,
    /// API-keys table.
    pub keys: String,
    /// Where the Lambda Invoke API answers (`AWS_ENDPOINT_URL_LAMBDA`).
    pub lambda_endpoint: String,
}

/// Starts a [`LoopbackStage`] whose tables are named `{prefix}-conns-PID` and
/// `{prefix}-keys-PID`, its `publish` function wired for stage `stage`.
pub async fn loopback_stage(prefix: &str, stage: &str) -> LoopbackStage {
    let (moto, redis) = (wsctl_testkit::MotoServer::shared(), wsctl_testkit::RedisServer::shared());
    let tag = std::process::id();
    let (connections, keys) = (format!("{prefix}-conns-{tag}"), format!("{prefix}-keys-{tag}"));
    let sdk = sdk(&moto.endpoint()).await;
    wsctl_handlers::store::dynamo::ensure_tables(&wsctl_handlers::store::dynamo::client(&sdk), &connections, &keys)
        .await
        .expect("tables");
    let (redis_url, moto_url) = (redis.url(), moto.endpoint());
    let dev = super::DevGateway::start_env(
        &super::repo_stages(),
        &[
            "--redis-url",
            &redis_url,
            "--dynamodb-endpoint",
            &moto_url,
            "--connections-table",
            &connections,
            "--api-keys-table",
            &keys,
        ],
        moto.aws_env(),
    );
    // The publish function, wired as the binary wires it from the template's environment.
    let env = lambda::LambdaEnv::from_lookup(|k| match k {
        "CONNECTIONS_TABLE" => Some(connections.clone()),
        "API_KEYS_TABLE" => Some(keys.clone()),
        "REDIS_URL" => Some(redis_url.clone()),
        "WS_MANAGEMENT_ENDPOINT" => Some(dev.management.clone()),
        "WSCTL_STAGE" => Some(stage.to_owned()),
        _ => None,
    })
    .expect("publish function environment");
    let lambda_endpoint = start(env.services_with(&sdk).expect("services")).await;
    LoopbackStage { sdk, dev, connections, keys, lambda_endpoint }
}
