//! The `@connections` management API of `wsctl dev` as the real `aws-sdk-apigatewaymanagement`
//! client reads it: every field of GetConnection, PostToConnection's exact bytes, DeleteConnection,
//! and each error of the ApiGatewayManagementApi service model as the SDK's typed exception
//! (`GoneException`, `PayloadTooLargeException`, `ForbiddenException`, `LimitExceededException`).
//!
//! One connection is held past 15 s and read again: the gateway once dropped every
//! connection from its registry after about 10 s, and no test held one that long.

use crate::common::*;
use aws_sdk_apigatewaymanagement::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_apigatewaymanagement::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_apigatewaymanagement::error::DisplayErrorContext;
use aws_sdk_apigatewaymanagement::primitives::{Blob, DateTime};
use aws_sdk_apigatewaymanagement::Client;
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the connection is held before it is read again (the old sweeper dropped
/// connections after ~10 s).
const HOLD: Duration = Duration::from_secs(16);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn ms(t: Option<&DateTime>, field: &str) -> i64 {
    t.unwrap_or_else(|| panic!("GetConnection has no {field}"))
        .to_millis()
        .unwrap_or_else(|e| panic!("{field} out of range: {e}"))
}

/// Strips the SigV4 `Authorization` header before the request leaves, so the gateway sees
/// an unsigned call (as a caller without credentials would send it).
#[derive(Debug)]
struct Unsigned;

impl Intercept for Unsigned {
    fn name(&self) -> &'static str {
        "Unsigned"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        context.request_mut().headers_mut().remove("authorization");
        Ok(())
    }
}

fn unsigned_client(signed: &Client) -> Client {
    Client::from_conf(signed.config().to_builder().interceptor(Unsigned).build())
}

/// Asserts GetConnection's fields: connect time within `connected` (epoch ms bounds), last
/// activity between connect and now, identity as the client presented itself. Returns
/// (connectedAt, lastActiveAt) in epoch ms.
async fn read_connection(client: &Client, id: &str, connected: (i64, i64), agent: &str) -> (i64, i64) {
    let out = client
        .get_connection()
        .connection_id(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetConnection: {}", DisplayErrorContext(e)));
    let read_at = now_ms();
    let connected_at = ms(out.connected_at(), "connectedAt");
    let last_active_at = ms(out.last_active_at(), "lastActiveAt");
    assert!(
        (connected.0 - 1000..=connected.1 + 1000).contains(&connected_at),
        "connectedAt {connected_at} outside the connect window {connected:?}"
    );
    assert!(
        (connected_at..=read_at + 1000).contains(&last_active_at),
        "lastActiveAt {last_active_at} not between connectedAt {connected_at} and now {read_at}"
    );
    let identity = out.identity().expect("GetConnection has no identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert_eq!(identity.user_agent(), Some(agent));
    (connected_at, last_active_at)
}

#[tokio::test]
async fn the_sdk_client_reads_every_field_and_gets_typed_errors_on_a_connection_held_past_15_s() {
    let gw = DevGateway::start();
    let client = gw.management_client();
    let agent = "management-api-test/1.0 (sdk)";
    let before = now_ms();
    let started = Instant::now();
    let mut ws = connect_as(&gw.url, &gw.key, agent).await.expect("connect");
    let connected = (before, now_ms());
    let id = gw.connection_id(agent);

    // GetConnection right after connecting.
    let (connected_at, first_active) = read_connection(&client, &id, connected, agent).await;

    // PostToConnection delivers the exact bytes, as one text frame.
    let payload = r#"{"from":"sdk","n":0,"text":"h\u00e9llo"}"#;
    client
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(payload))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PostToConnection: {}", DisplayErrorContext(e)));
    assert_eq!(recv_text(&mut ws).await, payload);

    // Over the model's 128 KiB `Data` limit: the typed PayloadTooLargeException, and nothing sent.
    let err = client
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'x'; 128 * 1024 + 1]))
        .send()
        .await
        .expect_err("an oversized post must fail")
        .into_service_error();
    assert!(err.is_payload_too_large_exception(), "expected PayloadTooLargeException, got {err:?}");
    assert!(err.meta().message().is_some_and(|m| m.contains("131072")), "{err:?}");
    assert_silent(&mut ws, 200).await;

    // An unsigned call: the typed ForbiddenException on each operation, and no effect.
    let unsigned = unsigned_client(&client);
    let get = unsigned.get_connection().connection_id(&id).send().await.expect_err("unsigned get");
    assert!(get.into_service_error().is_forbidden_exception());
    let post = unsigned.post_to_connection().connection_id(&id).data(Blob::new("{}")).send().await;
    assert!(post.expect_err("unsigned post").into_service_error().is_forbidden_exception());
    let delete = unsigned.delete_connection().connection_id(&id).send().await;
    assert!(delete.expect_err("unsigned delete").into_service_error().is_forbidden_exception());
    assert_silent(&mut ws, 200).await;

    // Hold the connection past 15 s, active both ways: pings and posts keep arriving.
    subscribe(&mut ws, "tvl:protocol:held").await;
    let mut n = 1;
    while started.elapsed() < HOLD {
        tokio::time::sleep(Duration::from_secs(2)).await;
        send(&mut ws, json!({"action": "ping", "id": n})).await;
        assert_eq!(recv(&mut ws).await, json!({"type": "pong", "id": n}), "at {:?}", started.elapsed());
        let body = format!(r#"{{"from":"sdk","n":{n}}}"#);
        client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new(body.as_bytes()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PostToConnection at {:?}: {}", started.elapsed(), DisplayErrorContext(e)));
        assert_eq!(recv_text(&mut ws).await, body);
        n += 1;
    }

    // Read again after the hold: same connect time, activity moved on with the traffic.
    let (again_connected, last_active) = read_connection(&client, &id, connected, agent).await;
    assert_eq!(again_connected, connected_at, "connectedAt must not change");
    assert!(now_ms() - connected_at >= 15_000, "the connection is older than 15 s when read");
    assert!(
        last_active >= first_active + 12_000,
        "lastActiveAt {last_active} did not follow the traffic (first read {first_active})"
    );

    // DeleteConnection closes the client with 4000 (operator kick); then the id is Gone everywhere.
    client
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteConnection: {}", DisplayErrorContext(e)));
    assert_eq!(recv_close(&mut ws).await, Some(4000));
    assert_gone_everywhere(&client, &id).await;
    // An id the gateway never issued is Gone too.
    assert_gone_everywhere(&client, "AAAAAAAAAAAAAAAA").await;
}

/// GetConnection, PostToConnection and DeleteConnection all fail with the typed GoneException.
async fn assert_gone_everywhere(client: &Client, id: &str) {
    // The session may need a moment to leave the registry after its close frame.
    let mut get = None;
    for _ in 0..50 {
        match client.get_connection().connection_id(id).send().await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                get = Some(e.into_service_error());
                break;
            }
        }
    }
    let get = get.unwrap_or_else(|| panic!("GetConnection {id} still answers after it was closed"));
    assert!(get.is_gone_exception(), "get {id}: expected GoneException, got {get:?}");
    let post = client.post_to_connection().connection_id(id).data(Blob::new("{}")).send().await;
    let post = post.expect_err("post to a gone connection").into_service_error();
    assert!(post.is_gone_exception(), "post {id}: expected GoneException, got {post:?}");
    let delete = client.delete_connection().connection_id(id).send().await;
    let delete = delete.expect_err("delete a gone connection").into_service_error();
    assert!(delete.is_gone_exception(), "delete {id}: expected GoneException, got {delete:?}");
}

#[tokio::test]
async fn posting_to_a_client_that_does_not_read_ends_in_limit_exceeded() {
    let gw = DevGateway::start();
    let client = gw.management_client();
    let agent = "management-api-test/1.0 (never reads)";
    // Connected but never read from: the socket buffers fill, then the gateway's queue.
    let _ws = connect_as(&gw.url, &gw.key, agent).await.expect("connect");
    let id = gw.connection_id(agent);
    let chunk = format!("\"{}\"", "x".repeat(100 * 1024));
    // Loopback socket buffers hold a few MiB and the queue 1 MiB: 400 posts (40 MiB) is ample.
    for i in 0..400 {
        let res = client.post_to_connection().connection_id(&id).data(Blob::new(chunk.as_bytes())).send().await;
        let Err(e) = res else { continue };
        let e = e.into_service_error();
        assert!(e.is_limit_exceeded_exception(), "post {i}: expected LimitExceededException, got {e:?}");
        // The connection is closed as a slow consumer: the next post finds it gone, and the
        // gateway ends its session ($disconnect runs) although the client never reads.
        assert_gone_everywhere(&client, &id).await;
        let mut listed = true;
        for _ in 0..100 {
            let reply = gw.admin(json!({"op": "list_connections", "limit": 100}));
            listed = reply["page"]["items"].as_array().is_some_and(|items| !items.is_empty());
            if !listed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!listed, "the slow consumer's session did not end within 5 s (stuck writing to a full socket?)");
        return;
    }
    panic!("400 posts of 100 KiB to a client that never reads were all accepted");
}
