//! `wsctl destroy` leaves nothing of the stage behind (issue 11), against a real
//! `moto_server`: API Gateway creates its execution-log group
//! (`API-Gateway-Execution-Logs_{apiId}/{stage}`) itself, outside every stack and without
//! retention; destroy must delete it with the app stack.
//!
//! moto skips the API inside CloudFormation, so the test makes the stage's API (named
//! after the app stack, as the template names it) and its log group directly.
//!
//! Lambda's VPC network interfaces outlive the functions and block the data stack's
//! subnets and security group; `tests/clients/lambda_enis.py` (boto3) creates them in the
//! deployed stage's VPC the way Lambda does, one of them still in use until the test
//! releases it, so the test sees destroy delete the released ones and wait for the last.
//! moto itself deletes subnets that still hold interfaces, so what the test proves is that
//! the interfaces are gone before the data stack is deleted, not the `DependencyViolation`.

use crate::deploy_support::{json, stage_yaml as network_stage_yaml, text, Harness};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn stage_yaml() -> String {
    "region: us-east-1\naccount: \"123456789012\"\nredis:\n  mode: existing\n  url: redis://redis.internal.example:6379\n\
     network:\n  mode: existing\n  vpc_id: vpc-0123456789abcdef0\n  subnet_ids: [subnet-0123456789abcdef0, subnet-0123456789abcdef1]\n  \
     security_group_id: sg-0123456789abcdef0\ntables:\n  retain: false\n"
        .to_owned()
}

#[test]
fn destroy_removes_api_gateways_execution_log_group() {
    let h = Harness::new("logs", &stage_yaml());
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    let out = h.deploy(&manifest, false);
    assert!(out.status.success(), "{}", text(&out));

    let rt = h.runtime();
    let (group, other) = rt.block_on(async {
        let config = h.sdk().await;
        let apigw = aws_sdk_apigatewayv2::Client::new(&config);
        let mut groups = Vec::new();
        for name in ["wsctl-logs-app", "someone-elses-api"] {
            let api = apigw
                .create_api()
                .name(name)
                .protocol_type(aws_sdk_apigatewayv2::types::ProtocolType::Websocket)
                .route_selection_expression("$request.body.action")
                .send()
                .await
                .unwrap();
            let group = format!("API-Gateway-Execution-Logs_{}/live", api.api_id().unwrap());
            let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
            logs.create_log_group().log_group_name(&group).send().await.unwrap();
            groups.push(group);
        }
        (groups[0].clone(), groups[1].clone())
    });

    let out = h.wsctl(&["destroy", "--stage", "logs", "--yes", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["logGroupsDeleted"], serde_json::json!([group]), "{report:#}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("execution-log group {group}")), "{}", text(&out));
    rt.block_on(async {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&h.sdk().await);
        let left =
            logs.describe_log_groups().log_group_name_prefix("API-Gateway-Execution-Logs_").send().await.unwrap();
        let names: Vec<&str> = left.log_groups().iter().filter_map(|g| g.log_group_name()).collect();
        assert_eq!(names, [other.as_str()], "only the other API's group is left");
    });
}

fn python() -> String {
    std::env::var("WSCTL_PYTHON3").unwrap_or_else(|_| "python3".into())
}

#[test]
fn destroy_deletes_lambdas_released_network_interfaces_and_waits_for_the_rest() {
    let h = Harness::new("enis", &network_stage_yaml(""));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    let out = h.deploy(&manifest, false);
    assert!(out.status.success(), "{}", text(&out));

    // The physical ids, as wsctl's wiring reads them (moto leaves `!If` outputs out).
    let (group, subnet) = h.runtime().block_on(async {
        let cfn = aws_sdk_cloudformation::Client::new(&h.sdk().await);
        let listed = cfn.list_stack_resources().stack_name("wsctl-enis-data").send().await.expect("data resources");
        let id = |logical: &str| {
            listed
                .stack_resource_summaries()
                .iter()
                .find(|r| r.logical_resource_id() == Some(logical))
                .and_then(|r| r.physical_resource_id())
                .unwrap_or_else(|| panic!("{logical} in the data stack"))
                .to_owned()
        };
        (id("LambdaSecurityGroup"), id("PrivateSubnetA"))
    });

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/lambda_enis.py");
    let endpoint = h.moto.endpoint();
    let mut lambda = Command::new(python())
        .arg(&script)
        .args(["create", "--endpoint", &endpoint, "--group", &group, "--subnet", &subnet, "--available", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with boto3 (pip install boto3)");
    let mut lines = BufReader::new(lambda.stdout.take().expect("piped stdout")).lines();
    let created: serde_json::Value =
        serde_json::from_str(&lines.next().expect("the script's first line").expect("read")).expect("json");
    let ours: Vec<String> =
        created["ours"].as_array().expect("ours").iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect();
    let in_use = created["in_use"].as_str().expect("in_use").to_owned();
    let other = created["other"].as_str().expect("other").to_owned();

    let destroy = h.spawn(&["destroy", "--stage", "enis", "--yes", "--output", "json"], None);
    // The released interfaces go at once; the one in use holds the data stack back.
    destroy.wait_for_output("waiting for Lambda to release 1 network interface(s)", Duration::from_secs(120));
    let untouched = |h: &Harness| h.stack_status("wsctl-enis-data").is_some_and(|s| s.ends_with("_COMPLETE"));
    assert!(untouched(&h), "the data stack is not deleted while an interface is in use");
    std::thread::sleep(Duration::from_millis(300));
    assert!(untouched(&h), "still waiting");
    let mut stdin = lambda.stdin.take().expect("piped stdin");
    writeln!(stdin, "release").expect("tell the script to release");
    drop(stdin);
    let released: serde_json::Value =
        serde_json::from_str(&lines.next().expect("the released line").expect("read")).expect("json");
    assert_eq!(released["released"].as_str(), Some(in_use.as_str()));
    assert!(lambda.wait().expect("script exit").success());

    let out = destroy.finish(Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut deleted: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("deleted Lambda's network interface "))
        .filter_map(|l| l.strip_suffix(" (released)"))
        .collect();
    deleted.sort();
    let mut want = ours.clone();
    want.push(in_use.clone());
    want.sort();
    assert_eq!(deleted, want, "{}", text(&out));
    // Then the data stack delete. moto cannot delete a VPC it created through
    // CloudFormation (it removes the VPC before its route tables and answers
    // DependencyViolation for the VPC, with or without interfaces); anything else must
    // have succeeded.
    let moto_vpc_limit = stderr.contains("DependencyViolation: The vpc");
    assert!(out.status.success() || moto_vpc_limit, "{}", text(&out));
    if out.status.success() {
        let report = json(&out);
        let mut reported: Vec<&str> = report["networkInterfacesDeleted"]
            .as_array()
            .unwrap_or_else(|| panic!("networkInterfacesDeleted in {report:#}"))
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        reported.sort();
        assert_eq!(reported, deleted, "{report:#}");
    }

    let mut ids = want.clone();
    ids.push(other.clone());
    let check = Command::new(python())
        .arg(&script)
        .args(["check", "--endpoint", &endpoint, "--ids", &ids.join(",")])
        .output()
        .expect("run the check");
    let left: serde_json::Value = serde_json::from_slice(&check.stdout).expect("check json");
    assert_eq!(left["left"], serde_json::json!([other]), "only someone else's interface is left");
}
