//! `wsctl destroy` leaves nothing of the stage behind (issue 11), against a real
//! `moto_server`: API Gateway creates its execution-log group
//! (`API-Gateway-Execution-Logs_{apiId}/{stage}`) itself, outside every stack and without
//! retention; destroy must delete it with the app stack.
//!
//! moto skips the API inside CloudFormation, so the test makes the stage's API (named
//! after the app stack, as the template names it) and its log group directly. Lambda's VPC
//! network interfaces are not covered: see docs/deploy.md, "Known traps".

mod deploy_support;

use deploy_support::{json, text, Harness};

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
