//! The probe function's handler (`wsctl_handlers::smoke::probe`) on the EventBridge
//! scheduled event it gets every minute (`tests/fixtures/eventbridge/scheduled.json`),
//! configured from the environment the app template gives it, against a stage made of
//! real parts: its tables in moto, its `publish` function behind a local Invoke API
//! (`tests/common/publish_lambda.rs`), and a `wsctl dev` as API Gateway sharing that Redis
//! and those tables. What stays unproven here: the real Lambda runtime, IAM, and
//! CloudWatch extracting the EMF line (the template tests check the schedule, alarm and
//! permissions as rendered).

use crate::common::publish_lambda::{loopback_stage, sdk, LoopbackStage};
use serde_json::Value;
use std::sync::Arc;
use wsctl_handlers::smoke::probe::{self, Probe, ProbeEnv, NAMESPACE};

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eventbridge/scheduled.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_measures_a_working_stage_and_a_dead_one() {
    let stage = loopback_stage("probe", "probe").await;
    let LoopbackStage { sdk: aws, dev, connections, keys, .. } = &stage;
    let ddb = wsctl_handlers::store::dynamo::client(aws);
    let lambda = sdk(&stage.lambda_endpoint).await;

    // The probe's environment, as the app template sets it.
    let probe_env = |url: &str| {
        ProbeEnv::from_lookup(|k| match k {
            "WSCTL_STAGE" => Some("probe".into()),
            "PROBE_URL" => Some(url.to_owned()),
            "CONNECTIONS_TABLE" => Some(connections.clone()),
            "API_KEYS_TABLE" => Some(keys.clone()),
            "PUBLISH_FUNCTION" => Some(crate::common::publish_lambda::PUBLISH_FN.into()),
            "WS_MANAGEMENT_ENDPOINT" => Some(dev.management.clone()),
            "PROBE_BUDGET" => Some(r#"{"connect_ms":10000,"route_ms":10000,"delivery_ms":10000}"#.into()),
            _ => None,
        })
        .expect("probe env")
    };

    // A working stage: the handler answers ok, and its metrics say Success.
    let working = Arc::new(Probe::new(probe_env(&dev.url), aws, &lambda));
    let outcome = probe::probe(working.clone(), fixture()).await.expect("the handler never fails");
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.failed_step, None);
    let (report, emf) = probe::measure(&working).await;
    assert!(report.ok, "{report:?}");
    assert_eq!((emf["Success"].as_u64(), emf["Failure"].as_u64()), (Some(1), Some(0)), "{emf}");
    assert_eq!(emf["Stage"], "probe");
    let directive = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], NAMESPACE);
    assert_eq!(directive["Dimensions"], serde_json::json!([["Stage"]]));
    let names: Vec<&str> =
        directive["Metrics"].as_array().expect("metrics").iter().filter_map(|m| m["Name"].as_str()).collect();
    for name in [
        "Success",
        "Failure",
        "connectMs",
        "reject-outside-prefixMs",
        "deliverMs",
        "replayMs",
        "kickMs",
        "delete-keyMs",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
        assert!(emf[name].is_number(), "{name} has no value: {emf}");
    }

    // A dead stage: the handler still answers (a failed journey is measured, not an
    // error), Failure is 1, and no run leaves its probe key in the table.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nobody = format!("ws://{}/live", dead.local_addr().expect("addr"));
    drop(dead);
    let broken = Arc::new(Probe::new(probe_env(&nobody), aws, &lambda));
    let outcome = probe::probe(broken.clone(), fixture()).await.expect("the handler never fails");
    assert!(!outcome.ok);
    assert_eq!(outcome.failed_step.as_deref(), Some("reject-no-key"));
    let (_, emf) = probe::measure(&broken).await;
    assert_eq!((emf["Success"].as_u64(), emf["Failure"].as_u64()), (Some(0), Some(1)), "{emf}");
    assert_eq!(emf["failedStep"], "reject-no-key", "{emf}");
    assert!(emf["got"].as_str().is_some_and(|g| g.contains("cannot connect")), "{emf}");

    use wsctl_handlers::store::KeyStore;
    let store = wsctl_handlers::store::dynamo::DynamoKeyStore::new(ddb, keys.clone());
    let probes: Vec<_> =
        store.list().await.expect("keys").into_iter().filter(|k| k.name.starts_with("smoke:")).collect();
    assert!(probes.is_empty(), "every run deletes its probe key: {probes:?}");
}
