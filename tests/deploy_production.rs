//! Issue 14's production features deployed on moto, as far as moto runs them.
//!
//! Tracing: the app stack with the X-Ray policy and every function depending on it deploys.
//! What it sets cannot be read back: moto's CloudFormation ignores a function's
//! `TracingConfig` (it reports `PassThrough`, as it ignores `Architectures`), and answers
//! ListStackResources/DescribeStackResources of this stack with a 500, so the mode and the
//! policy's grant are checked on the rendered template (`tests/template_production.rs`).
//! The custom domain's resources (ApiGatewayV2, and Route 53 aliases to it) are skipped by
//! moto altogether. Alarms: moto skips `AWS::CloudWatch::Alarm` in CloudFormation but
//! serves DescribeAlarms, GetMetricData and dashboards over the Query protocol, so `wsctl
//! status` is tested on state put there by tests/clients/cloudwatch.py.

use crate::deploy_support::{json, stack, stage_yaml, text, with_probe, Harness, FUNCTIONS};

#[test]
fn a_tracing_stage_deploys() {
    let h = Harness::new("traced", &stage_yaml("lambda:\n  tracing: active\n"));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    let out = h.deploy(&manifest, true);
    assert!(out.status.success(), "{}", text(&out));
    let report = crate::deploy_support::json(&out);
    assert_eq!(stack(&report, "app")["action"], "created", "{report:#}");
    let added: Vec<&str> = stack(&report, "app")["changes"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["logicalId"].as_str()).collect())
        .unwrap_or_default();
    assert!(added.contains(&"XRayTracingPolicy"), "the X-Ray policy is part of the stack: {added:?}");
    h.runtime().block_on(async {
        let lambda = aws_sdk_lambda::Client::new(&h.sdk().await);
        for f in FUNCTIONS {
            lambda.get_function_configuration().function_name(format!("wsctl-traced-app-{f}")).send().await.unwrap();
        }
    });
}

/// `wsctl ci-role` creates the CI stack with the provider and the role on moto (which runs
/// IAM in CloudFormation but never evaluates trust conditions: those are checked on the
/// rendered template).
#[test]
fn ci_role_creates_the_stages_deploy_role_and_a_second_run_changes_nothing() {
    let ci = "ci:\n  github:\n    repository: acme/realtime\n    environments: [dev]\n";
    let h = Harness::new("cirole", &stage_yaml(ci));
    let out = h.wsctl(&["ci-role", "--stage", "cirole", "--yes", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = crate::deploy_support::json(&out);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["stack"]["stackName"], "wsctl-ci-wsctl-cirole", "{report:#}");
    assert_eq!(report["stack"]["action"], "created", "{report:#}");
    assert_eq!(h.stack_status("wsctl-ci-wsctl-cirole").as_deref(), Some("CREATE_COMPLETE"));
    let again = h.wsctl(&["ci-role", "--stage", "cirole", "--yes", "--output", "json"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(crate::deploy_support::json(&again)["stack"]["action"], "unchanged", "{}", text(&again));
}

/// Runs tests/clients/cloudwatch.py (boto3) against moto; its one JSON line.
fn cloudwatch_py(h: &Harness, args: &[&str]) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/cloudwatch.py");
    let python = std::env::var("WSCTL_PYTHON3").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(args)
        .args(["--endpoint", &h.moto.endpoint()])
        .output()
        .expect("python3 with boto3 (pip install boto3)");
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// A stage with `alarms:` (an email topic) and `probe:` deploys with its dashboard, and
/// `wsctl status` reads the stage's alarms and the probe's metrics from CloudWatch through
/// the Query client. moto's CloudFormation skips `AWS::CloudWatch::Alarm` and nothing runs
/// the probe on moto, so tests/clients/cloudwatch.py puts alarms named the way
/// CloudFormation names them (and two of other stacks), and ten probe runs of this month
/// (one failing, the newest) next to a failing run of another stage; the alarms themselves
/// are checked on the rendered templates (tests/template_production.rs).
#[test]
fn a_stage_with_alarms_deploys_and_status_reports_alarm_states_and_the_months_availability() {
    let h = Harness::new("watched", &stage_yaml("alarms:\n  email: ops@example.com\nprobe:\n  slo_percent: 99.5\n"));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    with_probe(&manifest);
    let out = h.deploy(&manifest, true);
    assert!(out.status.success(), "{}", text(&out));
    let dashboard = cloudwatch_py(&h, &["dashboard", "--name", "wsctl-watched-us-east-1"]);
    let body: serde_json::Value = serde_json::from_str(dashboard["body"].as_str().expect("body")).expect("JSON body");
    assert!(body["widgets"].as_array().is_some_and(|w| w.len() >= 6), "{body:#}");

    // Before any run: no number, said plainly.
    let status = h.wsctl(&["status", "--stage", "watched"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("no probe runs recorded this month"), "{}", text(&status));
    let report = json(&h.wsctl(&["status", "--stage", "watched", "--output", "json"]));
    assert_eq!(report["probe"]["value"]["month"]["runs"], 0, "{:#}", report["probe"]);
    assert!(report["probe"]["value"]["month"]["percent"].is_null(), "{:#}", report["probe"]);
    assert!(report["probe"]["value"]["lastRun"].is_null(), "{:#}", report["probe"]);

    cloudwatch_py(
        &h,
        &[
            "alarms",
            "--alarm",
            "wsctl-watched-app-AlarmConnectErrors-1A2B3C4D=ALARM",
            "--alarm",
            "wsctl-watched-data-AlarmConnectionsTableThrottles-9Z8Y7X=OK",
            "--alarm",
            "wsctl-watched-app-app-AlarmConnectErrors-5E6F=ALARM",
            "--alarm",
            "wsctl-watched2-app-AlarmConnectErrors-7G8H=ALARM",
        ],
    );
    cloudwatch_py(&h, &["probe", "--stage", "watched", "--passed", "9", "--failed", "1"]);
    cloudwatch_py(&h, &["probe", "--stage", "other", "--failed", "1"]);

    let out = h.wsctl(&["status", "--stage", "watched", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert!(report["alarms"]["error"].is_null(), "{:#}", report["alarms"]);
    let mut alarms: Vec<(String, String, String)> = report["alarms"]["value"]
        .as_array()
        .expect("alarms")
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (s("stack"), s("logicalId"), s("state"))
        })
        .collect();
    alarms.sort();
    assert_eq!(
        alarms,
        [
            ("app".to_owned(), "AlarmConnectErrors".to_owned(), "ALARM".to_owned()),
            ("data".to_owned(), "AlarmConnectionsTableThrottles".to_owned(), "OK".to_owned()),
        ],
        "{:#}",
        report["alarms"]
    );
    let probe = &report["probe"]["value"];
    assert_eq!(probe["sloPercent"], 99.5, "{probe:#}");
    assert_eq!((probe["month"]["runs"].as_u64(), probe["month"]["passed"].as_u64()), (Some(10), Some(9)), "{probe:#}");
    assert_eq!(probe["month"]["percent"], 90.0, "{probe:#}");
    assert_eq!(probe["month"]["meetsSlo"], false, "{probe:#}");
    assert_eq!(probe["lastRun"]["passed"], false, "the newest run failed: {probe:#}");

    let out = h.wsctl(&["status", "--stage", "watched"]);
    let printed = text(&out);
    assert!(printed.contains("90.00% available (9 of 10 runs passed), below the SLO"), "{printed}");
    assert!(printed.contains("probe (SLO 99.5%)") && printed.contains("last run: failed at"), "{printed}");
    assert!(printed.contains("ALARM") && printed.contains("AlarmConnectErrors"), "{printed}");
}
