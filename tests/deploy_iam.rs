//! `wsctl iam-policy --stage S` grants every AWS action wsctl calls (issue 11).
//!
//! A recording proxy sits between wsctl and moto_server and names the IAM action of every
//! request (from the signed request itself). The moto e2e run deploys, plans, reads the
//! status, lists the history and rolls back, creates, lists and revokes a key, and destroys
//! the app stack; every recorded action must be granted by the printed deployer policy
//! (deploy, plan, status, history, rollback, destroy)
//! or operator policy (the key commands). An action wsctl starts calling without the
//! policy granting it fails this test. What CloudFormation does with the deployer's
//! credentials never passes through the proxy (moto does it internally), so that part of
//! the policy stays unproven here.

use crate::deploy_support::record::RecordProxy;
use crate::deploy_support::{json, stage_yaml, text, with_probe, Harness};
use serde_json::Value;
use std::collections::BTreeSet;

/// `pattern` (an IAM action, `*` wildcards) covers `action`; case-insensitive as IAM is.
fn covers(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match p.split_once('*') {
        None => p == a,
        Some((head, tail)) => a.starts_with(head) && a.len() >= head.len() + tail.len() && a.ends_with(tail),
    }
}

fn granted(policy: &Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .expect("Statement")
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => vec![],
        })
        .collect()
}

fn missing(policy: &Value, called: &BTreeSet<String>) -> Vec<String> {
    let grants = granted(policy);
    called.iter().filter(|a| !grants.iter().any(|g| covers(g, a))).cloned().collect()
}

#[test]
fn every_action_wsctl_calls_is_granted_by_the_printed_policy() {
    // With the probe and alarms, so `status` reads the probe's metrics and alarm states.
    let h = Harness::new("iam", &stage_yaml("probe: {}\nalarms: {}\n"));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    with_probe(&manifest);
    let m = manifest.to_str().unwrap();
    let proxy = RecordProxy::start(h.moto.endpoint().trim_start_matches("http://").parse().expect("moto address"));
    let run = |args: &[&str]| {
        let out = h.command(args).env("AWS_ENDPOINT_URL", proxy.endpoint()).output().unwrap();
        assert!(out.status.success() || out.status.code() == Some(2), "{args:?}: {}", text(&out));
        out
    };

    let policies = json(&h.wsctl(&["iam-policy", "--stage", "iam"]));
    assert_eq!(policies["account"], "123456789012");
    let deployer = &policies["deployer"];
    let operator = &policies["operator"];
    // --role prints one document, the same as in the combined output.
    assert_eq!(&json(&h.wsctl(&["iam-policy", "--stage", "iam", "--role", "deployer"])), deployer);

    run(&["plan", "--stage", "iam", "--manifest", m]);
    run(&["deploy", "--stage", "iam", "--yes", "--manifest", m]);
    let v2 = h.manifest("dist2", |f| if f == "connect" { "connect build 2".into() } else { format!("{f} build 1") });
    with_probe(&v2);
    run(&["deploy", "--stage", "iam", "--yes", "--manifest", v2.to_str().unwrap()]);
    run(&["status", "--stage", "iam"]);
    run(&["history", "--stage", "iam"]);
    run(&["rollback", "--stage", "iam", "--yes"]);
    let deploy_calls = proxy.take();

    // moto leaves the app stack without outputs (it skips the API they refer to): the
    // key commands are given the table.
    let table = h.runtime().block_on(async {
        let ddb = aws_sdk_dynamodb::Client::new(&h.sdk().await);
        let tables = ddb.list_tables().send().await.unwrap().table_names().to_vec();
        tables.into_iter().find(|t| t.contains("ApiKeysTable")).expect("api-keys table")
    });
    let op = |args: &[&str]| {
        let out = h
            .command(args)
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .env("WSCTL_API_KEYS_TABLE", &table)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    };
    let created =
        json(&op(&["keys", "create", "--stage", "iam", "--name", "n", "--scopes", "subscribe", "--output", "json"]));
    let id = created["keyId"].as_str().expect("keyId").to_owned();
    op(&["keys", "list", "--stage", "iam"]);
    op(&["keys", "revoke", "--stage", "iam", &id]);
    let operator_calls = proxy.take();

    run(&["destroy", "--stage", "iam", "--yes", "--keep-data"]);
    let destroy_calls = proxy.take();

    let deployer_calls: BTreeSet<String> = deploy_calls.union(&destroy_calls).cloned().collect();
    eprintln!("deployer calls: {deployer_calls:?}\noperator calls: {operator_calls:?}");
    for (name, calls) in [("deploy/plan/status/history/rollback/destroy", &deployer_calls), ("keys", &operator_calls)] {
        assert!(calls.len() >= 3, "{name}: the proxy saw the calls: {calls:?}");
        assert!(calls.iter().all(|a| !a.starts_with('?')), "{name}: requests the recorder could not name: {calls:?}");
    }
    // Sanity: the recorder sees the calls that matter.
    for a in [
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "s3:PutObject",
        "sts:GetCallerIdentity",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:GetMetricData",
        "s3:ListBucket",
        "s3:GetObject",
    ] {
        assert!(deployer_calls.contains(a), "{a} not recorded: {deployer_calls:?}");
    }
    assert!(operator_calls.contains("dynamodb:PutItem"), "{operator_calls:?}");

    let not_granted = missing(deployer, &deployer_calls);
    assert!(not_granted.is_empty(), "the deployer policy does not grant {not_granted:?} (called: {deployer_calls:?})");
    let not_granted = missing(operator, &operator_calls);
    assert!(not_granted.is_empty(), "the operator policy does not grant {not_granted:?} (called: {operator_calls:?})");
    // And the check can fail: a policy without one of the called actions is caught.
    let mut trimmed = deployer.clone();
    for s in trimmed["Statement"].as_array_mut().unwrap() {
        if let Some(a) = s["Action"].as_array_mut() {
            a.retain(|v| v != "cloudformation:ExecuteChangeSet");
        }
    }
    assert_eq!(missing(&trimmed, &deployer_calls), ["cloudformation:ExecuteChangeSet"]);
}

#[test]
fn covers_matches_wildcards_like_iam() {
    assert!(covers("ec2:Describe*", "ec2:DescribeSubnets"));
    assert!(covers("s3:GetObject", "S3:getobject"));
    assert!(!covers("s3:GetObject", "s3:GetObjectAcl"));
    assert!(!covers("ec2:Describe*", "ec2:DeleteVpc"));
}
