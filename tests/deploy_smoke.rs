//! `wsctl deploy --smoke`: the journey runs after a successful deploy and its verdict is the
//! exit code, with its report in the one deploy document. moto runs the deploy; it reports
//! no stack outputs and runs no API Gateway, so the journey's paths are overridden
//! (`WSCTL_*`): its key goes into a table in moto, and its WebSocket URL is a port where
//! nothing listens — a stage that deployed fine and serves nobody, which is what the gate
//! is for. (tests/smoke_deployed.rs runs the journey to a pass on a deployed stage's paths.)

use crate::deploy_support::{json, stage_yaml, text, Harness};
use serde_json::Value;

#[test]
fn deploy_smoke_fails_the_deploy_when_the_journey_fails_and_still_revokes_the_key() {
    let h = Harness::new("gate", &stage_yaml("smoke: { connect_ms: 10000, route_ms: 10000, delivery_ms: 10000 }\n"));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));

    // Without --smoke the document says so with nulls.
    let plain = h.deploy(&manifest, true);
    assert!(plain.status.success(), "{}", text(&plain));
    let report = json(&plain);
    assert_eq!((&report["smoke"], &report["smokeError"]), (&Value::Null, &Value::Null), "{report:#}");

    let (connections, keys) = ("gate-connections", "gate-keys");
    let rt = h.runtime();
    let ddb = rt.block_on(async { wsctl_handlers::store::dynamo::client(&h.sdk().await) });
    rt.block_on(wsctl_handlers::store::dynamo::ensure_tables(&ddb, connections, keys)).expect("tables");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nobody = format!("ws://{}/live", dead.local_addr().expect("addr"));
    drop(dead);

    let m = manifest.to_str().expect("utf-8");
    let out = h
        .command(&["deploy", "--stage", "gate", "--yes", "--manifest", m, "--smoke", "--output", "json"])
        .env("WSCTL_WEBSOCKET_URL", &nobody)
        .env("WSCTL_CONNECTIONS_TABLE", connections)
        .env("WSCTL_API_KEYS_TABLE", keys)
        .env("WSCTL_MANAGEMENT_ENDPOINT", "http://127.0.0.1:9/live")
        .output()
        .expect("run wsctl");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["ok"], true, "the deploy itself succeeded: {report:#}");
    assert_eq!(report["smokeError"], Value::Null, "{report:#}");
    let smoke = &report["smoke"];
    assert_eq!(smoke["ok"], false, "{report:#}");
    assert_eq!(smoke["failedStep"], "reject-no-key", "{report:#}");
    assert_eq!(smoke["url"], nobody.as_str());
    for name in ["revoke-key", "delete-key"] {
        let step = smoke["steps"].as_array().expect("steps").iter().find(|s| s["step"] == name).cloned();
        assert_eq!(step.as_ref().map(|s| &s["status"]), Some(&Value::from("passed")), "{name}: {report:#}");
    }

    // The probe key is gone from the table: revoked, then deleted.
    let listed = h
        .command(&["keys", "list", "--stage", "gate", "--output", "json"])
        .env("WSCTL_API_KEYS_TABLE", keys)
        .output()
        .expect("run wsctl");
    let listed = json(&listed);
    let probes: Vec<&Value> = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["name"].as_str().is_some_and(|n| n.starts_with("smoke:")))
        .collect();
    assert!(probes.is_empty(), "no probe key left in the table: {listed}");

    // Text: the deploy's lines, then the journey's report naming the failed step.
    let out = h
        .command(&["deploy", "--stage", "gate", "--yes", "--manifest", m, "--smoke"])
        .env("WSCTL_WEBSOCKET_URL", &nobody)
        .env("WSCTL_CONNECTIONS_TABLE", connections)
        .env("WSCTL_API_KEYS_TABLE", keys)
        .env("WSCTL_MANAGEMENT_ENDPOINT", "http://127.0.0.1:9/live")
        .output()
        .expect("run wsctl");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stage gate: no changes"), "{stdout}");
    assert!(stdout.contains("smoke: FAILED at reject-no-key"), "{stdout}");
}
