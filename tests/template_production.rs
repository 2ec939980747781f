//! Issue 14's production features in the rendered templates: X-Ray tracing (`lambda.tracing`),
//! the custom domain (`api.domain`), the CI deploy role (`ci:`) and the alarms and dashboard
//! (`alarms:`). moto skips ApiGatewayV2 and CloudWatch alarms and cannot check IAM trust
//! conditions, so these are the rendered templates' invariants;
//! `cfn-lint` and checkov run on them through `tests/template.rs` and `scripts/checkov.sh`.

use crate::common::templates::{effective, parse, render, render_json, wsctl_in};
use serde_norway::Value;
use wsctl_testkit::TempDir;

const FUNCTIONS: [&str; 6] = ["Authorizer", "Connect", "Disconnect", "Message", "Publish", "Admin"];

/// A stages directory holding `files` (name, body), each prefixed with a region and account.
fn stages(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new("wsctl-production-stage").expect("temp dir");
    for (name, body) in files {
        let text = format!("region: eu-west-1\naccount: \"111111111111\"\n{body}");
        std::fs::write(dir.join(format!("{name}.yaml")), text).expect("stage file");
    }
    dir
}

fn tagged<'a>(v: &'a Value, tag: &str) -> &'a Value {
    let Value::Tagged(t) = v else { panic!("{v:?} is not {tag}") };
    assert_eq!(t.tag.to_string(), tag, "{v:?}");
    &t.value
}

fn ref_names(v: &Value) -> Vec<String> {
    v.as_sequence().expect("a list").iter().map(|r| tagged(r, "!Ref").as_str().expect("name").to_owned()).collect()
}

#[test]
fn tracing_turns_on_xray_for_every_function_with_the_permission_it_needs() {
    let dir =
        stages(&[("on", "lambda:\n  tracing: active\n"), ("pass", "lambda:\n  tracing: passthrough\n"), ("off", "")]);
    for (stage, mode) in [("on", "Active"), ("pass", "PassThrough")] {
        let (t, params) = render_json(dir.path(), stage, "app");
        assert_eq!(params["TracingMode"], mode, "{stage}");
        let policy = &t["Resources"]["XRayTracingPolicy"];
        assert!(policy.get("Condition").is_none(), "{stage}: the functions depend on it");
        let actions = &policy["Properties"]["PolicyDocument"]["Statement"][0]["Action"];
        assert_eq!(actions, &Value::from(vec!["xray:PutTraceSegments", "xray:PutTelemetryRecords"]));
        let roles = ref_names(&policy["Properties"]["Roles"]);
        for f in FUNCTIONS {
            let function = &t["Resources"][format!("{f}Function").as_str()];
            assert_eq!(function["Properties"]["TracingConfig"]["Mode"], mode, "{stage} {f}");
            let depends = function["DependsOn"].as_sequence().expect("DependsOn list");
            assert!(depends.contains(&Value::from("XRayTracingPolicy")), "{stage} {f}: {depends:?}");
            assert!(roles.contains(&format!("{f}Role")), "{stage}: the X-Ray policy misses {f}Role: {roles:?}");
        }
    }
    let (t, params) = render_json(dir.path(), "off", "app");
    assert_eq!(params["TracingMode"], "", "tracing is opt-in");
    // Off, the policy hangs on a condition that is false exactly when the mode is "".
    assert_eq!(t["Resources"]["XRayTracingPolicy"]["Condition"], "Tracing", "no X-Ray grant without tracing");
    let equals = tagged(&tagged(&t["Conditions"]["Tracing"], "!Not")[0], "!Equals");
    assert_eq!(tagged(&equals[0], "!Ref"), "TracingMode");
    assert_eq!(equals[1], "");
    for f in FUNCTIONS {
        let function = &t["Resources"][format!("{f}Function").as_str()];
        assert!(function["Properties"].get("TracingConfig").is_none(), "off: {f} traces");
    }
    // Nothing on the API stage: API Gateway v2 has no tracing property to set.
    assert!(t["Resources"]["ApiStage"]["Properties"].get("TracingEnabled").is_none());

    let bad = stages(&[("s", "lambda:\n  tracing: on\n")]);
    let out = wsctl_in(bad.path(), &["template", "--stage", "s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("s.yaml") && err.contains("tracing"), "{err}");
    assert!(err.contains("active") && err.contains("passthrough"), "names the allowed values: {err}");
}

const DOMAIN: &str = "api:\n  domain:\n    name: ws.example.com\n    certificate_arn: arn:aws:acm:eu-west-1:111111111111:certificate/abc\n    hosted_zone_id: Z0123456789EXAMPLE\n    hosted_zone_name: example.com\n";

fn domain_stage(body: &str) -> String {
    format!("api:\n  domain:\n{body}")
}

#[test]
fn a_custom_domain_maps_the_stage_behind_a_regional_tls12_name_with_alias_records() {
    let with_path = format!("{DOMAIN}    base_path: v1\n");
    // One directory each: two stages may not claim one name.
    let (root, path_dir, dir) = (stages(&[("root", DOMAIN)]), stages(&[("path", &with_path)]), stages(&[("none", "")]));
    for (stage_dir, stage, path) in [(&root, "root", ""), (&path_dir, "path", "v1")] {
        let (t, params) = render_json(stage_dir.path(), stage, "app");
        assert_eq!(params["DomainName"], "ws.example.com", "{stage}");
        assert_eq!(params["DomainCertificateArn"], "arn:aws:acm:eu-west-1:111111111111:certificate/abc");
        assert_eq!(params["DomainHostedZoneId"], "Z0123456789EXAMPLE");
        assert_eq!(params["DomainBasePath"], path, "{stage}");
        let r = &t["Resources"];
        let domain = &r["ApiDomainName"];
        assert_eq!(domain["Type"], "AWS::ApiGatewayV2::DomainName");
        assert_eq!(domain["Condition"], "HasDomain");
        assert_eq!(tagged(&domain["Properties"]["DomainName"], "!Ref"), "DomainName");
        let config = &domain["Properties"]["DomainNameConfigurations"][0];
        assert_eq!(config["EndpointType"], "REGIONAL");
        assert_eq!(config["SecurityPolicy"], "TLS_1_2");
        assert_eq!(config["IpAddressType"], "dualstack", "the AAAA record needs an IPv6 endpoint");
        assert_eq!(tagged(&config["CertificateArn"], "!Ref"), "DomainCertificateArn");

        let mapping = &r["ApiDomainMapping"];
        assert_eq!(mapping["Type"], "AWS::ApiGatewayV2::ApiMapping");
        assert_eq!(tagged(&mapping["Properties"]["ApiId"], "!Ref"), "Api");
        assert_eq!(tagged(&mapping["Properties"]["Stage"], "!Ref"), "ApiStage");
        assert_eq!(tagged(&mapping["Properties"]["DomainName"], "!Ref"), "ApiDomainName");
        let key = tagged(&mapping["Properties"]["ApiMappingKey"], "!If");
        assert_eq!(key[0], "HasDomainBasePath");
        assert_eq!(tagged(&key[1], "!Ref"), "DomainBasePath");

        for (id, ty) in [("ApiDomainRecordIpv4", "A"), ("ApiDomainRecordIpv6", "AAAA")] {
            let record = &r[id];
            assert_eq!(record["Type"], "AWS::Route53::RecordSet", "{id}");
            assert_eq!(record["Condition"], "HasDomainRecords", "{id}");
            assert_eq!(record["Properties"]["Type"], ty);
            assert_eq!(tagged(&record["Properties"]["HostedZoneId"], "!Ref"), "DomainHostedZoneId");
            let alias = &record["Properties"]["AliasTarget"];
            assert_eq!(tagged(&alias["DNSName"], "!GetAtt"), "ApiDomainName.RegionalDomainName");
            assert_eq!(tagged(&alias["HostedZoneId"], "!GetAtt"), "ApiDomainName.RegionalHostedZoneId");
        }
        let url = tagged(&t["Outputs"]["DomainWebSocketUrl"]["Value"], "!If");
        assert_eq!(url[0], "HasDomainBasePath");
        assert_eq!(tagged(&url[1], "!Sub"), "wss://${ApiDomainName}/${DomainBasePath}");
        assert_eq!(tagged(&url[2], "!Sub"), "wss://${ApiDomainName}");
        // The management API stays on the execute-api host (a base path would break it).
        let env = &r["ConnectFunction"]["Properties"]["Environment"]["Variables"]["WS_MANAGEMENT_ENDPOINT"];
        assert!(tagged(env, "!Sub").as_str().unwrap().contains(".execute-api."), "{env:?}");
    }
    // The conditions the resources hang on follow the parameters.
    let c = &t_conditions(dir.path());
    let has = tagged(&tagged(&c["HasDomain"], "!Not")[0], "!Equals");
    assert_eq!(tagged(&has[0], "!Ref"), "DomainName");
    assert_eq!(has[1], "");
    let records = tagged(&c["HasDomainRecords"], "!And");
    assert_eq!(tagged(&records[0], "!Condition"), "HasDomain");
    let zone = tagged(&tagged(&records[1], "!Not")[0], "!Equals");
    assert_eq!(tagged(&zone[0], "!Ref"), "DomainHostedZoneId");

    let (_, params) = render_json(dir.path(), "none", "app");
    for p in ["DomainName", "DomainCertificateArn", "DomainHostedZoneId", "DomainBasePath"] {
        assert_eq!(params[p], "", "no domain: {p}");
    }
}

fn t_conditions(dir: &std::path::Path) -> Value {
    render_json(dir, "none", "app").0["Conditions"].clone()
}

/// `wsctl template` on stage `s` of `dir`: its stderr when it fails.
fn refused(dir: &TempDir, stage: &str) -> String {
    let out = wsctl_in(dir.path(), &["template", "--stage", stage]);
    assert!(!out.status.success(), "{stage} rendered");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_domain_is_refused_with_a_foreign_certificate_outside_its_zone_or_claimed_twice() {
    let us_cert = domain_stage(
        "    name: ws.example.com\n    certificate_arn: arn:aws:acm:us-east-1:111111111111:certificate/abc\n",
    );
    let outside = DOMAIN.replace("name: ws.example.com", "name: ws.example.org");
    let dir = stages(&[("cert", &us_cert), ("zone", &outside)]);
    let err = refused(&dir, "cert");
    assert!(err.contains("cert.yaml") && err.contains("api.domain.certificate_arn"), "{err}");
    assert!(err.contains("us-east-1") && err.contains("eu-west-1"), "{err}");
    let err = refused(&dir, "zone");
    assert!(err.contains("zone.yaml") && err.contains("api.domain.name") && err.contains("example.com"), "{err}");

    // Two stage files, one name: both are refused, each naming the other file.
    let staging = DOMAIN.replace("hosted_zone_id: Z0123456789EXAMPLE", "hosted_zone_id: Z0OTHERZONE");
    let dir = stages(&[("prod", DOMAIN), ("staging", &staging), ("dev", "")]);
    let err = refused(&dir, "prod");
    assert!(err.contains("prod.yaml") && err.contains("staging.yaml") && err.contains("ws.example.com"), "{err}");
    let err = refused(&dir, "staging");
    assert!(err.contains("staging.yaml") && err.contains("prod.yaml"), "{err}");
    let out = wsctl_in(dir.path(), &["template", "--stage", "dev"]);
    assert!(out.status.success(), "a stage without a domain is not affected");
    // With its own name each renders.
    let own = DOMAIN.replace("name: ws.example.com", "name: staging.ws.example.com");
    std::fs::write(dir.join("staging.yaml"), format!("region: eu-west-1\naccount: \"111111111111\"\n{own}")).unwrap();
    for stage in ["prod", "staging"] {
        let out = wsctl_in(dir.path(), &["template", "--stage", stage]);
        assert!(out.status.success(), "{stage}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

const CI: &str =
    "ci:\n  github:\n    repository: acme/realtime\n    branches: [main, release/*]\n    environments: [prod]\n";

/// Whether an IAM resource pattern (`*` and `?` globs) matches `arn`.
fn glob_matches(pattern: &str, arn: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), arn.as_bytes())
}

#[test]
fn the_ci_role_trusts_only_the_repositorys_refs_and_carries_exactly_the_stages_policies() {
    let existing = format!(
        "{CI}  oidc_provider_arn: arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com\n"
    );
    let dir = stages(&[("s", CI), ("e", &existing), ("none", "")]);
    let (t, params) = render_json(dir.path(), "s", "ci");
    assert_eq!(
        params["Subjects"],
        "repo:acme/realtime:ref:refs/heads/main,repo:acme/realtime:ref:refs/heads/release/*,repo:acme/realtime:environment:prod"
    );
    assert_eq!(params["OidcProviderArn"], "", "no ARN given: the stack creates the provider");
    let r = &t["Resources"];
    let provider = &r["GitHubOidcProvider"];
    assert_eq!(provider["Condition"], "CreateOidcProvider");
    assert_eq!(provider["DeletionPolicy"], "Retain", "other stages of the account may trust it");
    assert_eq!(provider["Properties"]["Url"], "https://token.actions.githubusercontent.com");
    assert_eq!(provider["Properties"]["ClientIdList"], Value::from(vec!["sts.amazonaws.com"]));

    let trust = &r["DeployRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"];
    let statements = trust.as_sequence().expect("statements");
    assert_eq!(statements.len(), 1, "one way in: {statements:?}");
    let st = &statements[0];
    assert_eq!(st["Effect"], "Allow");
    assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity");
    let federated = tagged(&st["Principal"]["Federated"], "!If");
    assert_eq!(federated[0], "CreateOidcProvider");
    assert_eq!(tagged(&federated[1], "!Ref"), "GitHubOidcProvider");
    assert_eq!(tagged(&federated[2], "!Ref"), "OidcProviderArn");
    let conditions = st["Condition"].as_mapping().expect("conditions");
    assert_eq!(conditions.len(), 2, "{conditions:?}");
    assert_eq!(st["Condition"]["StringEquals"]["token.actions.githubusercontent.com:aud"], "sts.amazonaws.com");
    assert_eq!(st["Condition"]["StringEquals"].as_mapping().unwrap().len(), 1);
    let sub = &st["Condition"]["StringLike"];
    assert_eq!(sub.as_mapping().unwrap().len(), 1, "{sub:?}");
    assert_eq!(tagged(&sub["token.actions.githubusercontent.com:sub"], "!Ref"), "Subjects");
    assert_eq!(t["Parameters"]["Subjects"]["Type"], "CommaDelimitedList");

    // The permissions are `wsctl iam-policy --stage s` (deployer, then operator: a deploy
    // job also runs `deploy --smoke`), to the letter.
    let policies = r["DeployRole"]["Properties"]["Policies"].as_sequence().expect("Policies");
    assert_eq!(policies.len(), 2);
    let mut printed_by_role = Vec::new();
    for (i, role) in ["deployer", "operator"].into_iter().enumerate() {
        assert_eq!(policies[i]["PolicyName"].as_str(), Some(format!("wsctl-{role}").as_str()));
        let in_template: serde_json::Value = serde_json::to_value(&policies[i]["PolicyDocument"]).unwrap();
        let out = wsctl_in(dir.path(), &["iam-policy", "--stage", "s", "--role", role]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(in_template, printed, "{role}");
        printed_by_role.push(printed);
    }

    // Neither the CI stack nor the role it creates is within what those policies grant,
    // so a workflow cannot widen its own trust or permissions.
    let stack_arn = "arn:aws:cloudformation:eu-west-1:111111111111:stack/wsctl-ci-wsctl-s/0123";
    let role_arn = "arn:aws:iam::111111111111:role/wsctl-ci-wsctl-s-DeployRole-ABCDEF";
    for st in printed_by_role.iter().flat_map(|p| p["Statement"].as_array().unwrap()) {
        let actions = st["Action"].to_string();
        let resources: Vec<&str> = st["Resource"].as_array().unwrap().iter().filter_map(|r| r.as_str()).collect();
        for res in resources {
            if actions.contains("cloudformation:") {
                assert!(!glob_matches(res, stack_arn), "{} grants the CI stack: {res}", st["Sid"]);
            }
            if actions.contains("iam:") {
                assert!(!glob_matches(res, role_arn), "{} grants the CI role: {res}", st["Sid"]);
            }
        }
    }
    assert!(glob_matches("arn:aws:iam::111111111111:role/wsctl-s-*", "arn:aws:iam::111111111111:role/wsctl-s-AppRole"));

    // An existing provider is used instead of creating one.
    let (_, params) = render_json(dir.path(), "e", "ci");
    assert_eq!(
        params["OidcProviderArn"],
        "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"
    );

    // Both render cfn-lint clean (the provider created, and given).
    let lint = TempDir::new("wsctl-ci-lint").expect("temp dir");
    let mut files = Vec::new();
    for stage in ["s", "e"] {
        let out = wsctl_in(dir.path(), &["template", "--stage", stage, "--stack", "ci"]);
        assert!(out.status.success());
        let path = lint.join(format!("{stage}-ci.yaml"));
        std::fs::write(&path, &out.stdout).unwrap();
        files.push(path);
    }
    let out = std::process::Command::new("cfn-lint").args(&files).output().expect("run cfn-lint");
    assert!(out.status.success(), "cfn-lint: {}", String::from_utf8_lossy(&out.stdout));

    // Without `ci:` there is nothing to render, and the error says what to add.
    let out = wsctl_in(dir.path(), &["template", "--stage", "none", "--stack", "ci"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ci.github.repository"));
    // A role open to any workflow of the repository is refused.
    let open = stages(&[("o", "ci:\n  github:\n    repository: acme/realtime\n")]);
    let out = wsctl_in(open.path(), &["template", "--stage", "o", "--stack", "ci"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("o.yaml") && err.contains("ci.github"), "{err}");
}

/// The alarms of a rendered template: logical id → properties.
fn alarms_of(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(k, r)| (k.as_str().unwrap().to_owned(), r["Properties"].clone()))
        .collect()
}

/// A stage's app stack as CloudFormation creates it (see [`effective`]).
fn effective_app(stages_dir: &std::path::Path, stage: &str) -> Value {
    let (app, params) = render_json(stages_dir, stage, "app");
    effective(&app, &params)
}

#[test]
fn alarms_watch_every_sla_signal_notify_the_topic_and_cost_nothing_when_absent() {
    let topic = "arn:aws:sns:eu-west-1:111111111111:oncall";
    let body = format!(
        "redis:\n  shards: 2\n  replicas_per_shard: 1\nlambda:\n  timeout_secs: 10\nprobe: {{}}\nalarms:\n  topic_arn: {topic}\n  lambda_errors: 7\n  connect_stall_minutes: 15\n"
    );
    let email = "redis:\n  mode: existing\n  url: redis://r:6379\nalarms:\n  email: ops@example.com\n";
    let dir = stages(&[("t", &body), ("m", email), ("none", "")]);

    // What CloudFormation creates: the canary's alarms (condition `Canary`) are not.
    let app = effective_app(dir.path(), "t");
    let alarms = alarms_of(&app);
    let id = |s: &str| alarms.iter().find(|(k, _)| k == s).map(|(_, p)| p.clone()).unwrap_or_else(|| panic!("no {s}"));
    for f in FUNCTIONS {
        let errors = id(&format!("Alarm{f}Errors"));
        assert_eq!((errors["Namespace"].as_str(), errors["MetricName"].as_str()), (Some("AWS/Lambda"), Some("Errors")));
        assert_eq!(tagged(&errors["Dimensions"][0]["Value"], "!Ref"), format!("{f}Function").as_str());
        assert_eq!(errors["Threshold"], 7.0);
        assert_eq!(id(&format!("Alarm{f}Throttles"))["MetricName"], "Throttles");
        let p99 = id(&format!("Alarm{f}DurationP99"));
        assert_eq!(
            (p99["ExtendedStatistic"].as_str(), p99["Threshold"].as_f64()),
            (Some("p99"), Some(8000.0)),
            "80% of 10 s"
        );
    }
    // Connects stalled while messages flow: metric math on the stage's API, for 15 minutes.
    let stall = id("AlarmConnectStalled");
    let metrics = stall["Metrics"].as_sequence().expect("metric math");
    let expression = metrics.iter().find(|m| m["ReturnData"] == true).expect("one result")["Expression"].clone();
    assert_eq!(expression, "IF(FILL(messages,0) > 0 AND FILL(connects,0) == 0, 1, 0)");
    let names: Vec<&str> = metrics.iter().filter_map(|m| m["MetricStat"]["Metric"]["MetricName"].as_str()).collect();
    assert_eq!(names, ["ConnectCount", "MessageCount"]);
    assert_eq!(tagged(&metrics[0]["MetricStat"]["Metric"]["Dimensions"][0]["Value"], "!Ref"), "Api");
    assert_eq!(stall["EvaluationPeriods"], 3);
    let errors = id("AlarmApiErrors")["Metrics"].clone();
    let names: Vec<&str> =
        errors.as_sequence().unwrap().iter().filter_map(|m| m["MetricStat"]["Metric"]["MetricName"].as_str()).collect();
    assert_eq!(names, ["IntegrationError", "ExecutionError"]);
    assert_eq!(id("AlarmApiClientErrors")["MetricName"], "ClientError");
    for (alarm, metric) in [
        ("AlarmFanoutFailures", "delivery_failures"),
        ("AlarmUnavailableReplies", "errors_unavailable"),
        ("AlarmPrunedConnections", "prunes"),
    ] {
        let m = id(alarm)["Metrics"].clone();
        let stat = &m[0]["MetricStat"]["Metric"];
        assert_eq!((stat["Namespace"].as_str(), stat["MetricName"].as_str()), (Some("wsctl"), Some(metric)), "{alarm}");
        assert_eq!(stat["Dimensions"][0]["Name"], "function");
        assert_eq!(stat["Dimensions"][1]["Name"], "stage", "{alarm}: per stage");
        assert_eq!(tagged(&stat["Dimensions"][1]["Value"], "!Ref"), "StageName", "{alarm}");
    }
    // Every alarm of the stack notifies the topic, on ALARM and on OK: this section's and
    // the probe's (the SLA's own alarm).
    let ids: Vec<&str> = alarms.iter().map(|(k, _)| k.as_str()).collect();
    assert!(ids.contains(&"ProbeAvailabilityAlarm") && ids.contains(&"ProbeFailuresAlarm"), "{ids:?}");
    for (k, p) in &alarms {
        assert_eq!(p["AlarmActions"], Value::from(vec![topic]), "{k}");
        assert_eq!(p["OKActions"], Value::from(vec![topic]), "{k}");
    }
    let dashboard = &app["Resources"]["Dashboard"];
    assert_eq!(dashboard["Type"], "AWS::CloudWatch::Dashboard");
    let body = tagged(&dashboard["Properties"]["DashboardBody"], "!Sub").as_str().unwrap();
    let parsed: serde_json::Value = serde_json::from_str(body).expect("the dashboard body is JSON");
    assert!(parsed["widgets"].as_array().unwrap().len() >= 6);
    assert!(body.contains("${Api}") && body.contains("${ConnectFunction}") && body.contains("errors_unavailable"));
    let failed = parsed["widgets"].as_array().unwrap().iter().find(|w| w["properties"]["title"] == "Failed deliveries");
    assert_eq!(
        failed.map(|w| w["properties"]["metrics"][0].clone()),
        Some(serde_json::json!(["wsctl", "delivery_failures", "function", "message", "stage", "${StageName}"])),
        "the handlers' metrics of this stage"
    );
    let probe = parsed["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["properties"]["title"] == "Probe runs: passed and failed");
    assert_eq!(
        probe.map(|w| w["properties"]["metrics"][1].clone()),
        Some(serde_json::json!(["wsctl/probe", "Failure", "Stage", "${StageName}"])),
        "the probe's runs, on a probe stage"
    );

    // Data stack: DynamoDB per table, Redis per shard (replica lag on the replicas), the
    // memory alarms notify too.
    let (data, _) = render_json(dir.path(), "t", "data");
    let alarms = alarms_of(&data);
    let ids: Vec<&str> = alarms.iter().map(|(k, _)| k.as_str()).collect();
    for table in ["ConnectionsTable", "ApiKeysTable"] {
        assert!(ids.contains(&format!("Alarm{table}Throttles").as_str()), "{ids:?}");
        assert!(ids.contains(&format!("Alarm{table}SystemErrors").as_str()), "{ids:?}");
    }
    for shard in ["0001", "0002"] {
        for what in ["RedisCpu", "RedisEvictions", "RedisReplicationLag"] {
            assert!(ids.contains(&format!("Alarm{what}Shard{shard}").as_str()), "{what} {shard}: {ids:?}");
        }
    }
    let lag = &alarms.iter().find(|(k, _)| k == "AlarmRedisReplicationLagShard0002").unwrap().1;
    assert_eq!(tagged(&lag["Dimensions"][0]["Value"], "!Sub"), "${RedisReplicationGroup}-0002-002", "a replica");
    for (k, p) in &alarms {
        assert_eq!(p["AlarmActions"], Value::from(vec![topic]), "{k} notifies");
    }

    // email: the data stack creates the topic and subscribes the address; no Redis alarms
    // for a Redis the stage does not own.
    let (data, _) = render_json(dir.path(), "m", "data");
    let t = &data["Resources"]["AlarmTopic"];
    assert_eq!(t["Type"], "AWS::SNS::Topic");
    assert_eq!(t["Properties"]["Subscription"][0]["Endpoint"], "ops@example.com");
    assert!(alarms_of(&data).iter().all(|(k, _)| !k.contains("RedisCpu")));
    let app = effective_app(dir.path(), "m");
    let action = &alarms_of(&app)[0].1["AlarmActions"][0];
    assert_eq!(tagged(action, "!Sub"), "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:wsctl-m-alarms");

    // Without the section: no alarm beyond the memory one, no dashboard.
    let app = effective_app(dir.path(), "none");
    assert!(alarms_of(&app).is_empty() && app["Resources"].get("Dashboard").is_none());

    // cfn-lint on both variants.
    let lint = TempDir::new("wsctl-alarms-lint").expect("temp dir");
    let mut files = Vec::new();
    for stage in ["t", "m"] {
        for stack in ["data", "app"] {
            let out = wsctl_in(dir.path(), &["template", "--stage", stage, "--stack", stack]);
            assert!(out.status.success());
            let path = lint.join(format!("{stage}-{stack}.yaml"));
            std::fs::write(&path, &out.stdout).unwrap();
            files.push(path);
        }
    }
    let out = std::process::Command::new("cfn-lint").args(&files).output().expect("run cfn-lint");
    assert!(out.status.success(), "cfn-lint: {}", String::from_utf8_lossy(&out.stdout));

    // A topic of another region is refused.
    let bad = stages(&[("b", "alarms:\n  topic_arn: arn:aws:sns:us-east-1:111111111111:x\n")]);
    let out = wsctl_in(bad.path(), &["template", "--stage", "b"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("alarms.topic_arn") && err.contains("eu-west-1"), "{err}");
}

/// Every repository stage: each alarm is one metric or one returned expression over
/// metrics that each name a namespace and a metric, and fires at or above a positive
/// threshold (or a threshold parameter); a stage with `alarms:` points every alarm of both
/// stacks but the canary's rollback alarms at its topic and has the dashboard, a stage
/// without has neither.
#[test]
fn every_stages_alarms_are_well_formed_and_notify_its_topic() {
    let mut with_alarms = 0;
    for stage in crate::common::templates::stages() {
        let file: Value = parse(
            &std::fs::read_to_string(crate::common::templates::repo_stages().join(format!("{stage}.yaml"))).unwrap(),
        );
        let topic = file["alarms"]["topic_arn"].as_str().map(str::to_owned);
        with_alarms += usize::from(file.get("alarms").is_some());
        for stack in ["data", "app"] {
            let t = parse(&render(&stage, stack));
            for (id, p) in alarms_of(&t) {
                let at = format!("{stage}/{stack} {id}");
                match p["Metrics"].as_sequence() {
                    Some(metrics) => {
                        assert_eq!(metrics.iter().filter(|m| m["ReturnData"] == true).count(), 1, "{at}");
                        for m in metrics.iter().filter(|m| m.get("MetricStat").is_some()) {
                            let metric = &m["MetricStat"]["Metric"];
                            assert!(metric["Namespace"].is_string() && metric["MetricName"].is_string(), "{at}");
                        }
                    }
                    None => assert!(p["Namespace"].is_string() && p["MetricName"].is_string(), "{at}"),
                }
                match p["Threshold"].as_f64() {
                    Some(t) => assert!(t > 0.0, "{at}: an alarm at 0 always fires"),
                    None => assert!(!tagged(&p["Threshold"], "!Ref").is_null(), "{at}: a threshold parameter"),
                }
                // The canary's rollback alarms (`<Function>ErrorsAlarm`) are CodeDeploy's; the
                // function's own `Alarm<Function>Errors` is the one that notifies.
                let rollback = id.ends_with("ErrorsAlarm") && !id.starts_with("Alarm");
                if let (Some(topic), false) = (&topic, rollback) {
                    assert_eq!(p["AlarmActions"], Value::from(vec![topic.as_str()]), "{at}");
                }
            }
            if stack == "app" {
                assert_eq!(t["Resources"].get("Dashboard").is_some(), file.get("alarms").is_some(), "{stage}");
            }
        }
    }
    assert!(with_alarms >= 1, "stages/prod.yaml shows alarms");
}
