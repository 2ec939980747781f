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
