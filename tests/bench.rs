//! `wsctl bench` end to end: each scenario runs small (50 connections) against a local
//! gateway (`wsctl dev`, embedded stores; fan-out and the soak also on Redis) started by
//! the test, and the report's counts are checked (never its timings). The delivery
//! accounting is checked both ways: clean on a gateway that delivers, and failing (exit 1,
//! missing > 0) when a proxy silently stops fan-out to some connections.

use serde_json::Value;
use std::process::{Command, Stdio};

const WSCTL: &str = env!("CARGO_BIN_EXE_wsctl");

use crate::common::proxy::MuteProxy;
use crate::common::DevGateway;
use std::time::Duration;

/// Starts `wsctl dev` (repository stages, `extra` arguments, quiet logs); its PID is what
/// `--server-pid` samples.
fn start_dev(extra: &[&str]) -> DevGateway {
    DevGateway::start_env(&crate::common::repo_stages(), extra, vec![("RUST_LOG".into(), "warn".into())])
}

/// Runs `wsctl --output json bench --url … --key … ARGS`; returns the exit code and the
/// JSON document.
fn bench(dev: &DevGateway, key: &str, args: &[&str]) -> (i32, Value) {
    bench_url(dev, &dev.url, key, args)
}

/// [`bench`] against another URL (a proxy in front of the gateway).
fn bench_url(dev: &DevGateway, url: &str, key: &str, args: &[&str]) -> (i32, Value) {
    let out = Command::new(WSCTL)
        .args(["--output", "json", "bench", "--url", url, "--key", key])
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
    // nothing is published: nothing is due
    assert_eq!(n(&r, &["delivery", "subscribers"]), 50, "{r}");
    assert_eq!(n(&r, &["delivery", "expected"]) + n(&r, &["delivery", "unexpected"]), 0, "{r}");
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
    assert_eq!(n(&r, &["delivery", "expected"]), 250, "{r}");
    assert_eq!(n(&r, &["delivery", "received"]), 250, "{r}");
    assert_eq!(n(&r, &["delivery", "missing"]), 0);
    assert_eq!(n(&r, &["delivery", "duplicated"]), 0);
    assert_eq!(n(&r, &["delivery", "reordered"]), 0);
    assert_eq!(n(&r, &["delivery", "unexpected"]), 0);
    assert_eq!(n(&r, &["delivery", "subscribers"]), 50);
    assert_eq!(n(&r, &["messages_complete"]), 5);
    assert_eq!(n(&r, &["publish_to_last_ms", "count"]), 5);
    let per = r["per_message"].as_array().expect("per_message");
    assert_eq!(per.len(), 5);
    assert!(per.iter().all(|m| m["delivered"] == 50), "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(code, 0);
}

#[test]
fn mixed_soak_accounts_for_every_delivery_under_churn() {
    check_mixed(&start_dev(&[]));
}

#[test]
fn mixed_soak_on_redis_accounts_for_every_delivery_under_churn() {
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
    check_accounting(&r);
    assert!(!r["server"]["samples"].as_array().expect("samples").is_empty());
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(code, 0);
}

#[test]
fn fanout_through_wsctl_publish_counts_every_delivery() {
    let dev = start_dev(&[]);
    let stages = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stages");
    let cmd = format!(
        "'{WSCTL}' --stages-dir '{}' --output json publish --stage local --room {{room}} '{{data}}'",
        stages.display()
    );
    let (code, r) = bench(
        &dev,
        &dev.key,
        &["fanout", "-s", "20", "-m", "3", "--interval-ms", "100", "--settle-ms", "100", "--publish-cmd", &cmd],
    );
    assert_eq!(r["publish_via"], "cmd");
    assert_eq!(n(&r, &["publisher", "sent"]), 3, "{r}");
    assert_eq!(n(&r, &["publisher", "acked"]), 3, "{r}");
    assert_eq!(n(&r, &["delivery", "expected"]), 60, "{r}");
    assert_eq!(n(&r, &["delivery", "received"]), 60, "{r}");
    assert_eq!(n(&r, &["delivery", "missing"]), 0);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(code, 0);
}

/// A clean accounting: something was due, all of it arrived, once and in order, and the
/// counts add up.
fn check_accounting(r: &Value) {
    let d = |k: &str| n(r, &["delivery", k]);
    assert!(d("expected") > 0, "nothing was due: {r}");
    assert_eq!(d("received"), d("expected"), "{r}");
    assert_eq!(d("missing"), 0, "{r}");
    assert_eq!(d("duplicated"), 0, "{r}");
    assert_eq!(d("reordered"), 0, "{r}");
    assert_eq!(d("subscribers_affected"), 0, "{r}");
    assert_eq!(d("subscribers"), n(r, &["churn", "connects_ok"]), "{r}");
    // every delivery is due, optional (around a leave) or outside a window
    assert_eq!(d("received") + d("optional") + d("unexpected"), n(r, &["deliveries"]), "{r}");
}

/// The `mixed` arguments of a soak with long-lived connections: `secs` long, 30 slots,
/// lifetimes `lo`–`hi` s.
fn long_lived(secs: &str, lo: &str, hi: &str) -> Vec<String> {
    [
        "mixed",
        "-n",
        "30",
        "--duration-s",
        secs,
        "--rooms",
        "6",
        "--lifetime-min-s",
        lo,
        "--lifetime-max-s",
        hi,
        "--publish-rate",
        "20",
        "--ping-s",
        "3",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn mixed_soak_accounts_for_every_delivery_to_connections_older_than_the_gateway_timers() {
    // the gateway's sweeper once dropped every connection from fan-out 10 s after connect;
    // here every connection lives at least 12 s
    let dev = start_dev(&[]);
    let args = long_lived("20", "12", "20");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, r) = bench(&dev, &dev.key, &args);
    assert_eq!(r["lifetime_s"], serde_json::json!([12.0, 20.0]), "{r}");
    assert!(n(&r, &["churn", "lived_10s_or_more"]) >= 30, "{r}");
    assert_eq!(n(&r, &["churn", "closed_by_server"]), 0, "{r}");
    assert_eq!(n(&r, &["publisher", "acked"]), n(&r, &["publisher", "sent"]), "{r}");
    check_accounting(&r);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(code, 0);
}

#[test]
fn mixed_soak_fails_when_connections_silently_stop_receiving() {
    // every other connection through the proxy gets no fan-out 2 s after connect, while it
    // still answers pings: the shape of the registry bug, which no seq gap reveals
    let dev = start_dev(&[]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let proxy = rt.block_on(MuteProxy::start(dev.addr, Duration::from_secs(2)));
    let url = dev.url.replace(&dev.addr.to_string(), &proxy.addr.to_string());
    let args = long_lived("8", "5", "8");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, r) = bench_url(&dev, &url, &dev.key, &args);
    let muted = proxy.muted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(muted > 0, "the proxy muted no connection: {r}");
    let d = |k: &str| n(&r, &["delivery", k]);
    assert!(d("missing") > 0, "{r}");
    assert_eq!(d("received") + d("missing"), d("expected"), "{r}");
    assert!(d("subscribers_affected") > 0 && d("subscribers_affected") <= muted, "{r}");
    // nothing else went wrong: every request was answered, no seq gap was seen
    assert_eq!(n(&r, &["unanswered"]), 0, "{r}");
    assert_eq!(n(&r, &["pongs"]), n(&r, &["pings"]), "{r}");
    assert_eq!(d("duplicated") + d("reordered"), 0, "{r}");
    let problems = r["problems"].as_array().expect("problems");
    assert!(problems.iter().any(|p| p.as_str().unwrap_or("").contains("missing")), "{r}");
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(code, 1);
}
