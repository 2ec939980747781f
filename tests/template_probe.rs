//! The probe in the rendered app template (`templates/probe.yaml`, merged only when the
//! stage sets `probe:`): its schedule, the permission that lets only that schedule invoke
//! it, its least-privilege role, its environment, and the availability alarm on its
//! metrics with the stage's SLO. moto cannot run EventBridge schedules, CloudWatch metric
//! math alarms or the Lambda runtime, so these are the template's invariants; the handler
//! itself runs in tests/probe.rs. cfn-lint and checkov see prod's template (tests/template.rs,
//! scripts/checkov.sh), which sets `probe:`.

use crate::common::templates::effective;
use serde_norway::Value;
use std::path::Path;
use std::process::Command;
use wsctl_testkit::TempDir;

fn render(stages_dir: &Path, stage: &str) -> Result<(Value, serde_json::Value), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .arg("--stages-dir")
        .arg(stages_dir)
        .args(["template", "--stage", stage, "--stack", "app", "--output", "json"])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run wsctl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    Ok((serde_norway::from_str(doc["template"].as_str().expect("template")).expect("YAML"), doc["parameters"].clone()))
}

fn stage_dir(extra: &str) -> TempDir {
    let dir = TempDir::new("wsctl-probe-stage").expect("temp dir");
    std::fs::write(dir.join("s.yaml"), format!("region: eu-west-1\naccount: \"111111111111\"\n{extra}"))
        .expect("stage file");
    dir
}

fn tagged<'a>(v: &'a Value, tag: &str) -> &'a Value {
    let Value::Tagged(t) = v else { panic!("{v:?} is not {tag}") };
    assert_eq!(t.tag.to_string(), tag, "{v:?}");
    &t.value
}

fn statements<'a>(t: &'a Value, role: &str, name: &str) -> &'a Vec<Value> {
    let policies = t["Resources"][role]["Properties"]["Policies"].as_sequence().expect("Policies");
    let p = policies.iter().find(|p| p["PolicyName"] == name).unwrap_or_else(|| panic!("{role} has no {name}"));
    p["PolicyDocument"]["Statement"].as_sequence().expect("Statement")
}

fn actions(s: &Value) -> Vec<String> {
    match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Sequence(v) => v.iter().map(|a| a.as_str().unwrap_or_default().to_owned()).collect(),
        other => panic!("Action {other:?}"),
    }
}

#[test]
fn a_probe_stage_runs_the_probe_every_minute_and_alarms_below_its_slo() {
    let dir = stage_dir("probe: { slo_percent: 99.5, window_minutes: 30 }\nsmoke: { delivery_ms: 800 }\n");
    let (t, params) = render(dir.path(), "s").expect("renders");
    let r = &t["Resources"];

    // Every minute, the function's ARN, no retries (a late run would measure the wrong minute).
    let schedule = &r["ProbeSchedule"]["Properties"];
    assert_eq!(schedule["ScheduleExpression"], "rate(1 minute)");
    assert_eq!(schedule["State"], "ENABLED");
    let target = &schedule["Targets"][0];
    assert_eq!(tagged(&target["Arn"], "!GetAtt"), "ProbeFunction.Arn");
    assert_eq!(target["RetryPolicy"]["MaximumRetryAttempts"], 0);
    let invoke = &r["ProbeInvokeConfig"]["Properties"];
    assert_eq!((&invoke["MaximumRetryAttempts"], &invoke["Qualifier"]), (&Value::from(0), &Value::from("$LATEST")));

    // Only that rule may invoke it.
    let permission = &r["ProbePermission"]["Properties"];
    assert_eq!(permission["Principal"], "events.amazonaws.com");
    assert_eq!(permission["Action"], "lambda:InvokeFunction");
    assert_eq!(tagged(&permission["SourceArn"], "!GetAtt"), "ProbeSchedule.Arn");
    assert_eq!(tagged(&permission["FunctionName"], "!GetAtt"), "ProbeFunction.Arn");

    // The function: its own code, no VPC, the journey's environment.
    let f = &r["ProbeFunction"]["Properties"];
    assert_eq!(tagged(&f["Code"]["S3Key"], "!Ref"), "ProbeCodeKey");
    assert!(f.get("VpcConfig").is_none(), "the probe measures from outside the VPC");
    let env = &f["Environment"]["Variables"];
    assert_eq!(tagged(&env["PUBLISH_FUNCTION"], "!Ref"), "PublishAlias", "the stage's own publish path");
    assert!(tagged(&env["PROBE_URL"], "!Sub").as_str().is_some_and(|u| u.starts_with("wss://${Api}")));
    assert_eq!(tagged(&env["PROBE_BUDGET"], "!Ref"), "ProbeBudgetJson");
    let budget: serde_json::Value =
        serde_json::from_str(params["ProbeBudgetJson"].as_str().expect("budget")).expect("budget JSON");
    assert_eq!(budget, serde_json::json!({"connect_ms": 100, "route_ms": 50, "delivery_ms": 800}));

    // Least privilege: publish only through the live alias, GET/DELETE @connections only,
    // key writes (create, revoke, delete) on the keys table, connection reads on an index.
    let publish = statements(&t, "ProbeRole", "publish");
    assert_eq!(actions(&publish[0]), ["lambda:InvokeFunction"]);
    assert_eq!(tagged(&publish[0]["Resource"], "!Ref"), "PublishAlias");
    let manage = statements(&t, "ProbeRole", "manage-connections");
    let arns: Vec<&str> =
        manage[0]["Resource"].as_sequence().expect("arns").iter().filter_map(|a| tagged(a, "!Sub").as_str()).collect();
    assert_eq!(arns.len(), 2, "{arns:?}");
    assert!(arns.iter().all(|a| a.contains("/GET/@connections/") || a.contains("/DELETE/@connections/")), "{arns:?}");
    let tables = statements(&t, "ProbeRole", "tables");
    assert_eq!(
        actions(&tables[0]),
        ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"]
    );
    assert_eq!(actions(&tables[1]), ["dynamodb:Query"]);
    assert!(
        tables[1]["Resource"]
            .as_sequence()
            .expect("arns")
            .iter()
            .all(|a| tagged(a, "!Sub").as_str().is_some_and(|s| s.ends_with("${ConnectionsTableName}/index/*"))),
        "connections: index reads only"
    );

    // The availability alarm: passing runs / all runs over the window, below the SLO.
    let alarm = &r["ProbeAvailabilityAlarm"]["Properties"];
    assert_eq!(params["ProbeSloPercent"], "99.5", "{params}");
    assert_eq!(params["ProbeWindowSeconds"], "1800", "{params}");
    assert_eq!(tagged(&alarm["Threshold"], "!Ref"), "ProbeSloPercent");
    assert_eq!(alarm["ComparisonOperator"], "LessThanThreshold");
    assert_eq!(alarm["TreatMissingData"], "breaching");
    let metrics = alarm["Metrics"].as_sequence().expect("Metrics");
    let expression = metrics.iter().find(|m| m["ReturnData"] == true).expect("the returned series");
    assert_eq!(expression["Expression"], "100 * success / (success + failure)");
    for (id, name) in [("success", "Success"), ("failure", "Failure")] {
        let m = metrics.iter().find(|m| m["Id"] == id).unwrap_or_else(|| panic!("{id}"));
        let stat = &m["MetricStat"];
        assert_eq!(stat["Metric"]["Namespace"], "wsctl/probe");
        assert_eq!(stat["Metric"]["MetricName"], name);
        assert_eq!(stat["Metric"]["Dimensions"][0]["Name"], "Stage");
        assert_eq!(tagged(&stat["Metric"]["Dimensions"][0]["Value"], "!Ref"), "StageName");
        assert_eq!(tagged(&stat["Period"], "!Ref"), "ProbeWindowSeconds");
        assert_eq!(stat["Stat"], "Sum");
    }
}

#[test]
fn without_probe_nothing_of_it_is_rendered_and_bad_values_name_the_key() {
    let dir = stage_dir("");
    let (t, params) = render(dir.path(), "s").expect("renders");
    let probe_ids: Vec<&str> = t["Resources"]
        .as_mapping()
        .expect("Resources")
        .keys()
        .filter_map(Value::as_str)
        .filter(|id| id.starts_with("Probe"))
        .collect();
    assert_eq!(probe_ids, Vec::<&str>::new());
    assert!(params.get("ProbeSloPercent").is_none(), "{params}");
    assert!(t["Parameters"].get("ProbeCodeKey").is_none());

    for (yaml, key) in [
        ("probe: { slo_percent: 0 }\n", "probe.slo_percent"),
        ("probe: { slo_percent: 100.1 }\n", "probe.slo_percent"),
        ("probe: { window_minutes: 2 }\n", "probe.window_minutes"),
    ] {
        let dir = stage_dir(yaml);
        let err = render(dir.path(), "s").expect_err(yaml);
        assert!(err.contains("s.yaml") && err.contains(key), "{yaml}: {err}");
    }
    // `probe: {}` is the defaults: 99.9% over an hour.
    let dir = stage_dir("probe: {}\n");
    let (_, params) = render(dir.path(), "s").expect("renders");
    assert_eq!((&params["ProbeSloPercent"], &params["ProbeWindowSeconds"]), (&"99.9".into(), &"3600".into()));
}

#[test]
fn on_a_canary_stage_a_failing_probe_run_rolls_the_bake_back() {
    let groups = |t: &Value| -> Vec<Vec<String>> {
        ["Authorizer", "Connect", "Disconnect", "Message", "Publish", "Admin"]
            .iter()
            .map(|f| {
                t["Resources"][format!("{f}DeploymentGroup").as_str()]["Properties"]["AlarmConfiguration"]["Alarms"]
                    .as_sequence()
                    .expect("alarms")
                    .iter()
                    .map(|a| match &a["Name"] {
                        Value::Tagged(t) if t.tag == "Ref" || t.tag == "Sub" => {
                            t.value.as_str().unwrap_or_default().to_owned()
                        }
                        other => panic!("alarm name {other:?}"),
                    })
                    .collect()
            })
            .collect()
    };
    let dir = stage_dir("rollout: { strategy: canary }\nprobe: {}\n");
    let (t, params) = render(dir.path(), "s").expect("renders");
    let t = effective(&t, &params);
    let failures = &t["Resources"]["ProbeFailuresAlarm"]["Properties"];
    // The groups watch the probe's alarm by its name (app.yaml cannot refer to the probe
    // fragment's resources), so the name must be the one the alarm is created with.
    let probe_alarm = tagged(&failures["AlarmName"], "!Sub").as_str().expect("alarm name").to_owned();
    for (f, alarms) in groups(&t).iter().enumerate() {
        assert!(alarms.contains(&probe_alarm), "group {f}: {alarms:?}");
        assert_eq!(alarms.len(), 3, "its own errors alarm, the handled errors' and the probe's: {alarms:?}");
    }
    assert_eq!((&failures["MetricName"], &failures["Threshold"]), (&Value::from("Failure"), &Value::from(1)));
    assert_eq!(failures["TreatMissingData"], "notBreaching", "no run is not a failed run");
    let describe = statements(&t, "CodeDeployRole", "shift-live-aliases")
        .iter()
        .find(|s| s["Action"] == "cloudwatch:DescribeAlarms")
        .expect("DescribeAlarms");
    assert!(
        describe["Resource"]
            .as_sequence()
            .expect("arns")
            .iter()
            .any(|a| matches!(a, Value::Tagged(s) if s.tag == "Sub"
                && s.value.as_str().is_some_and(|arn| arn.ends_with(&format!(":alarm:{probe_alarm}"))))),
        "CodeDeploy may read the probe's alarm: {describe:?}"
    );

    // Canary without the probe: its errors alarm and the handled errors'.
    let dir = stage_dir("rollout: { strategy: canary }\n");
    let (t, params) = render(dir.path(), "s").expect("renders");
    let t = effective(&t, &params);
    assert!(groups(&t).iter().all(|alarms| alarms.len() == 2), "{:?}", groups(&t));
}

/// Issue 11: a canary rolls back on failures the handlers answer themselves (a store down:
/// `unavailable`; `internal`), which are no function errors, and never on rejections. The
/// alarm's metrics are exactly the ones the handlers emit: the names and dimensions come
/// from the handlers' own EMF document, not from a second copy of them here.
#[test]
fn on_a_canary_stage_unavailable_and_internal_replies_roll_the_bake_back_and_rejections_do_not() {
    use wsctl_handlers::metrics::Metrics;
    use wsctl_handlers::protocol::ErrorCode;
    let dir = stage_dir("rollout: { strategy: canary, error_threshold: 3 }\n");
    let (t, params) = render(dir.path(), "s").expect("renders");
    let t = effective(&t, &params);
    let alarm = &t["Resources"]["HandledErrorsAlarm"]["Properties"];
    assert_eq!(tagged(&alarm["Threshold"], "!Ref"), "CanaryErrorThreshold");
    assert_eq!(
        (&params["CanaryErrorThreshold"], &alarm["TreatMissingData"]),
        (&"3".into(), &Value::from("notBreaching"))
    );
    for f in ["Authorizer", "Connect", "Disconnect", "Message", "Publish", "Admin"] {
        let watched =
            &t["Resources"][format!("{f}DeploymentGroup").as_str()]["Properties"]["AlarmConfiguration"]["Alarms"];
        assert!(
            watched.as_sequence().expect("alarms").iter().any(|a| tagged(&a["Name"], "!Ref") == "HandledErrorsAlarm"),
            "{f}: {watched:?}"
        );
    }
    let stats: Vec<&Value> = alarm["Metrics"]
        .as_sequence()
        .expect("metric math")
        .iter()
        .filter_map(|m| m.get("MetricStat"))
        .map(|s| &s["Metric"])
        .collect();
    let watched: std::collections::BTreeSet<(String, String)> = stats
        .iter()
        .map(|m| {
            let dims = m["Dimensions"].as_sequence().expect("dimensions");
            let function = dims.iter().find(|d| d["Name"] == "function").expect("function dimension");
            let stage = dims.iter().find(|d| d["Name"] == "stage").expect("stage dimension");
            assert_eq!(tagged(&stage["Value"], "!Ref"), "StageName", "{m:?}");
            assert_eq!(m["Namespace"], "wsctl", "{m:?}");
            (
                function["Value"].as_str().expect("function").to_owned(),
                m["MetricName"].as_str().expect("name").to_owned(),
            )
        })
        .collect();
    // What the handlers emit for a failure and for rejections.
    let emitted = |code: ErrorCode| -> Vec<String> {
        let metrics = Metrics::default();
        metrics.error(code);
        let doc = metrics.emf("wsctl", "message", "s", 0);
        let dims = &doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0];
        assert_eq!(dims, &serde_json::json!(["function", "stage"]), "the alarm's dimensions are the EMF ones");
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .filter_map(|m| m["Name"].as_str().map(str::to_owned))
            .collect()
    };
    for function in ["connect", "message", "publish", "admin"] {
        for code in [ErrorCode::Unavailable, ErrorCode::Internal] {
            for name in emitted(code) {
                assert!(
                    watched.contains(&(function.to_owned(), name.clone())),
                    "{function} {name} unwatched: {watched:?}"
                );
            }
        }
    }
    for code in
        [ErrorCode::Forbidden, ErrorCode::RateLimited, ErrorCode::BadJson, ErrorCode::TooManyRooms, ErrorCode::NotFound]
    {
        for name in emitted(code) {
            assert!(watched.iter().all(|(_, n)| *n != name), "a rejection ({name}) would roll back: {watched:?}");
        }
    }
    // Without a canary there is nothing to roll back.
    let dir = stage_dir("");
    let (t, params) = render(dir.path(), "s").expect("renders");
    assert!(effective(&t, &params)["Resources"].get("HandledErrorsAlarm").is_none());
}
