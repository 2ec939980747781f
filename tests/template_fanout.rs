//! The sharded fan-out in the rendered app template (moto cannot run an event source mapping
//! on an alias, so these are the template's invariants; the delivery path itself runs in
//! `tests/management_emulation.rs` against moto's SQS): a FIFO queue grouped per shard,
//! read by the publish function's live alias one job at a time only when the stage shards,
//! with least-privilege queue permissions, and the queue's URL in the environment.

use serde_norway::Value;
use std::path::Path;
use std::process::Command;
use wsctl_testkit::TempDir;

fn render(stages_dir: &Path, stage: &str) -> (Value, serde_json::Value) {
    crate::common::templates::render_json(stages_dir, stage, "app")
}

fn stage_dir(limits: &str, timeout: u32) -> TempDir {
    let dir = TempDir::new("wsctl-fanout-stage").expect("temp dir");
    let body =
        format!("region: eu-west-1\naccount: \"111111111111\"\nlambda:\n  timeout_secs: {timeout}\nlimits:\n{limits}");
    std::fs::write(dir.join("s.yaml"), body).expect("stage file");
    dir
}

fn tagged<'a>(v: &'a Value, tag: &str) -> &'a Value {
    let Value::Tagged(t) = v else { panic!("{v:?} is not {tag}") };
    assert_eq!(t.tag.to_string(), tag, "{v:?}");
    &t.value
}

/// The statements of `role`'s policy `name`.
fn statements<'a>(t: &'a Value, role: &str, name: &str) -> &'a Vec<Value> {
    let policies = t["Resources"][role]["Properties"]["Policies"].as_sequence().expect("Policies");
    let p = policies.iter().find(|p| p["PolicyName"] == name).unwrap_or_else(|| panic!("{role} has no {name}"));
    p["PolicyDocument"]["Statement"].as_sequence().expect("Statement")
}

fn actions(s: &Value) -> Vec<String> {
    match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Sequence(v) => v.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
        other => panic!("Action {other:?}"),
    }
}

#[test]
fn a_sharding_stage_gets_a_fifo_queue_read_by_the_live_publish_alias() {
    let dir = stage_dir("  fanout_shards: 16\n", 10);
    let (t, params) = render(dir.path(), "s");
    assert_eq!(params["FanoutSharded"], "true", "{params}");
    let condition = tagged(&t["Conditions"]["FanoutSharded"], "!Equals");
    assert_eq!(tagged(&condition[0], "!Ref"), "FanoutSharded");

    let q = &t["Resources"]["FanoutQueue"];
    assert_eq!(q["Type"], "AWS::SQS::Queue");
    assert_eq!(q["Properties"]["FifoQueue"], true, "ordering per shard needs FIFO");
    assert_eq!(q["Properties"]["DeduplicationScope"], "messageGroup");
    let visibility = q["Properties"]["VisibilityTimeout"].as_u64().expect("VisibilityTimeout");
    assert!(visibility >= 6 * 30, "visibility {visibility} s is under 6x the largest allowed timeout (30 s)");

    let esm = &t["Resources"]["FanoutEventSource"];
    assert_eq!(esm["Type"], "AWS::Lambda::EventSourceMapping");
    assert_eq!(esm["Condition"], "FanoutSharded");
    assert_eq!(esm["Properties"]["BatchSize"], 1, "one job per invocation bounds its length");
    assert_eq!(tagged(&esm["Properties"]["EventSourceArn"], "!GetAtt"), "FanoutQueue.Arn");
    assert_eq!(tagged(&esm["Properties"]["FunctionName"], "!Sub"), "${PublishFunction.Arn}:live");

    // every function can find the queue; only publish and message may send; only publish reads
    for f in ["PublishFunction", "MessageFunction", "ConnectFunction"] {
        let env = &t["Resources"][f]["Properties"]["Environment"]["Variables"];
        assert_eq!(tagged(&env["FANOUT_QUEUE_URL"], "!Ref"), "FanoutQueue", "{f}");
    }
    for role in ["PublishRole", "MessageRole"] {
        let s = statements(&t, role, "fanout-queue-send");
        assert_eq!(actions(&s[0]), ["sqs:SendMessage"], "{role}");
        assert_eq!(tagged(&s[0]["Resource"], "!GetAtt"), "FanoutQueue.Arn");
    }
    let read = statements(&t, "PublishRole", "fanout-queue-receive");
    assert_eq!(
        actions(&read[0]),
        ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    );
    assert_eq!(tagged(&read[0]["Resource"], "!GetAtt"), "FanoutQueue.Arn");
    for role in ["ConnectRole", "DisconnectRole", "AuthorizerRole", "AdminRole"] {
        let names: Vec<&str> = t["Resources"][role]["Properties"]["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|p| p["PolicyName"].as_str())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with("fanout")), "{role} has queue access: {names:?}");
    }
}

#[test]
fn a_stage_without_shards_creates_no_event_source_and_long_timeouts_are_refused() {
    let dir = stage_dir("  requests_per_second: 100\n", 10);
    let (_, params) = render(dir.path(), "s");
    assert_eq!(params["FanoutSharded"], "false", "{params}");

    let dir = stage_dir("  fanout_shards: 4\n", 60);
    let out = Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .arg("--stages-dir")
        .arg(dir.path())
        .args(["template", "--stage", "s", "--stack", "app"])
        .output()
        .expect("run wsctl");
    assert!(!out.status.success(), "a 60 s timeout with shards was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lambda.timeout_secs") && err.contains("fanout_shards"), "{err}");

    let dir = stage_dir("  fanout_shards: 300\n", 10);
    let out = Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .arg("--stages-dir")
        .arg(dir.path())
        .args(["template", "--stage", "s", "--stack", "app"])
        .output()
        .expect("run wsctl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("fanout_shards"), "{err}");
}
