//! `wsctl bench` end to end: each scenario runs small (50 connections) against a local
//! gateway (`wsctl dev`, embedded stores; fan-out and the soak also on Redis) started by
//! the test, and the report's counts are checked (never its timings).

use serde_json::Value;
use std::process::{Command, Stdio};

const WSCTL: &str = env!("CARGO_BIN_EXE_wsctl");

mod common;

use common::DevGateway;

/// Starts `wsctl dev` (repository stages, `extra` arguments, quiet logs); its PID is what
/// `--server-pid` samples.
fn start_dev(extra: &[&str]) -> DevGateway {
    DevGateway::start_env(&common::repo_stages(), extra, vec![("RUST_LOG".into(), "warn".into())])
}

/// Runs `wsctl --output json bench --url … --key … ARGS`; returns the exit code and the
/// JSON document.
fn bench(dev: &DevGateway, key: &str, args: &[&str]) -> (i32, Value) {
    let out = Command::new(WSCTL)
        .args(["--output", "json", "bench", "--url", &dev.url, "--key", key])
        .args(["--quiet", "--max-seconds", "90"])
        .args(args)
        // for --publish-cmd 'wsctl publish --stage local …'
        .env("WSCTL_STATE_DIR", dev.state.path())
        .stdin(Stdio::null())
        .output()
        .expect("run wsctl bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "bench printed no JSON document ({e}); stdout: {stdout}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

fn n(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64().unwrap_or_else(|| panic!("{} is not a count in {v}", path.join(".")))
}

#[test]
fn connect_holds_every_connection_and_reports_server_memory() {
    let dev = start_dev(&[]);
    let pid = dev.pid().to_string();
    let (code, r) =
        bench(&dev, &dev.key, &["connect", "-n", "50", "--rate", "500", "--hold-ms", "300", "--server-pid", &pid]);
    assert_eq!(r["scenario"], "connect");
    assert_eq!(n(&r, &["requested"]), 50);
    assert_eq!(n(&r, &["connected"]), 50, "{r}");
    assert_eq!(n(&r, &["failed"]), 0, "{r}");
    assert_eq!(n(&r, &["dropped_during_hold"]), 0, "{r}");
    assert_eq!(n(&r, &["connect_ms", "count"]), 50);
    assert_eq!(n(&r, &["server", "pid"]), u64::from(dev.pid()));
    assert!(r["server"]["kib_per_conn"].is_number(), "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(code, 0);
}

#[test]
fn connect_with_a_bad_key_counts_refusals_by_cause() {
    let dev = start_dev(&[]);
    let (code, r) = bench(&dev, "not-a-key", &["connect", "-n", "5", "--hold-ms", "0"]);
    assert_eq!(n(&r, &["connected"]), 0, "{r}");
    assert_eq!(n(&r, &["failed"]), 5, "{r}");
    let refused = r["failures"]["http_401"].as_u64().unwrap_or(0) + r["failures"]["http_403"].as_u64().unwrap_or(0);
    assert_eq!(refused, 5, "{r}");
    assert_eq!(r["ok"], false);
    assert_ne!(code, 0);
}

#[test]
fn route_answers_every_request() {
    let dev = start_dev(&[]);
    let (code, r) = bench(&dev, &dev.key, &["route", "-n", "50", "--rate", "500", "--duration-s", "1"]);
    assert_eq!(r["scenario"], "route");
    assert_eq!(n(&r, &["connections", "connected"]), 50, "{r}");
    // 50 connections × 10 requests each (every 100 ms over 1 s)
    assert_eq!(n(&r, &["sent"]), 500, "{r}");
    assert_eq!(n(&r, &["answered"]), 500, "{r}");
    assert_eq!(n(&r, &["lost"]), 0);
    assert_eq!(n(&r, &["ping_ms", "count"]), 250);
    assert_eq!(n(&r, &["subscribe_ms", "count"]), 250);
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(code, 0);
}

#[test]
fn fanout_delivers_every_message_to_every_subscriber_in_order() {
    check_fanout(&start_dev(&[]));
}

#[test]
fn fanout_on_redis_delivers_every_message_in_order() {
    let redis = wsctl_testkit::RedisServer::shared();
    check_fanout(&start_dev(&["--redis-url", &redis.url()]));
}

fn check_fanout(dev: &DevGateway) {
    let pid = dev.pid().to_string();
    let (code, r) = bench(
        dev,
        &dev.key,
        &["fanout", "-s", "50", "-m", "5", "--interval-ms", "50", "--settle-ms", "100", "--server-pid", &pid],
    );
    assert_eq!(r["scenario"], "fanout");
    assert_eq!(n(&r, &["subscribed"]), 50, "{r}");
    assert_eq!(n(&r, &["publisher", "sent"]), 5, "{r}");
    assert_eq!(n(&r, &["publisher", "acked"]), 5, "{r}");
    assert_eq!(n(&r, &["publisher", "server_delivered"]), 250, "{r}");
    assert_eq!(n(&r, &["expected"]), 250);
    assert_eq!(n(&r, &["delivered"]), 250, "{r}");
    assert_eq!(n(&r, &["missing"]), 0);
    assert_eq!(n(&r, &["duplicates"]), 0);
    assert_eq!(n(&r, &["seq", "in_order"]), 250, "{r}");
    assert_eq!(n(&r, &["seq", "gaps"]), 0);
    assert_eq!(n(&r, &["seq", "reordered"]), 0);
    assert_eq!(n(&r, &["messages_complete"]), 5);
    assert_eq!(n(&r, &["publish_to_last_ms", "count"]), 5);
    let per = r["per_message"].as_array().expect("per_message");
    assert_eq!(per.len(), 5);
    assert!(per.iter().all(|m| m["delivered"] == 50), "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(code, 0);
}

#[test]
fn mixed_soak_keeps_seq_continuous_under_churn() {
    check_mixed(&start_dev(&[]));
}

#[test]
fn mixed_soak_on_redis_keeps_seq_continuous_under_churn() {
    let redis = wsctl_testkit::RedisServer::shared();
    check_mixed(&start_dev(&["--redis-url", &redis.url()]));
}

fn check_mixed(dev: &DevGateway) {
    let pid = dev.pid().to_string();
    let (code, r) = bench(
        dev,
        &dev.key,
        &[
            "mixed",
            "-n",
            "50",
            "--duration-s",
            "4",
            "--rooms",
            "10",
            "--churn-rate",
            "10",
            "--publish-rate",
            "40",
            "--ping-s",
            "1",
            "--sample-ms",
            "500",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(r["scenario"], "mixed");
    assert!(n(&r, &["churn", "connects_ok"]) > 50, "churn replaced no connection: {r}");
    assert_eq!(r["churn"]["connect_failures"], serde_json::json!({}), "{r}");
    assert_eq!(n(&r, &["churn", "closed_by_server"]), 0, "{r}");
    assert_eq!(n(&r, &["subscribed"]), n(&r, &["subscribes_sent"]), "{r}");
    assert_eq!(n(&r, &["pongs"]), n(&r, &["pings"]), "{r}");
    assert!(n(&r, &["publisher", "sent"]) > 100, "{r}");
    assert_eq!(n(&r, &["publisher", "acked"]), n(&r, &["publisher", "sent"]), "{r}");
    assert!(n(&r, &["deliveries"]) > 0, "{r}");
    assert_eq!(n(&r, &["seq", "gaps"]), 0, "{r}");
    assert_eq!(n(&r, &["seq", "reordered"]), 0, "{r}");
    assert_eq!(n(&r, &["seq", "duplicates"]), 0, "{r}");
    assert!(!r["server"]["samples"].as_array().expect("samples").is_empty());
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(code, 0);
}

#[test]
fn fanout_through_wsctl_publish_counts_every_delivery() {
    let dev = start_dev(&[]);
    let stages = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stages");
    let cmd = format!("'{WSCTL}' --stages-dir '{}' publish --stage local --room {{room}} '{{data}}'", stages.display());
    let (code, r) = bench(
        &dev,
        &dev.key,
        &["fanout", "-s", "20", "-m", "3", "--interval-ms", "100", "--settle-ms", "100", "--publish-cmd", &cmd],
    );
    assert_eq!(r["publish_via"], "cmd");
    assert_eq!(n(&r, &["publisher", "sent"]), 3, "{r}");
    assert_eq!(n(&r, &["publisher", "acked"]), 3, "{r}");
    assert_eq!(n(&r, &["delivered"]), 60, "{r}");
    assert_eq!(n(&r, &["missing"]), 0);
    assert_eq!(n(&r, &["seq", "in_order"]), 60, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(code, 0);
}
