//! Tests of the rendered CloudFormation templates: `cfn-lint` clean for every stage file,
//! least-privilege IAM, the runtime contract (environment, tables, routes), hashed
//! versions, and the stage-file errors. They drive the built binary (`wsctl template`).

use crate::common::templates::{
    effective, parse, render, render_json, repo_stages, resolve, stages, wsctl_in as wsctl,
};
use serde_norway::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use wsctl_testkit::TempDir;

const STACKS: [&str; 3] = ["bootstrap", "data", "app"];
const FUNCTIONS: [&str; 6] = ["Authorizer", "Connect", "Disconnect", "Message", "Publish", "Admin"];

fn resources(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    t["Resources"].get(id).unwrap_or_else(|| panic!("no resource {id}"))
}

#[test]
fn cfn_lint_passes_for_every_stage_and_stack() {
    let version = Command::new("cfn-lint").arg("--version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "cfn-lint is not installed; CI installs it with: python3 -m pip install 'cfn-lint>=1'"
    );
    let dir = TempDir::new("wsctl-cfn-lint").expect("temp dir");
    let mut files = Vec::new();
    for stage in stages() {
        for stack in STACKS {
            let path = dir.join(format!("{stage}-{stack}.yaml"));
            std::fs::write(&path, render(&stage, stack)).expect("write template");
            files.push(path);
        }
    }
    let out = Command::new("cfn-lint").args(&files).output().expect("run cfn-lint");
    assert!(
        out.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Actions that AWS only grants on `Resource: "*"`: Lambda creates and deletes a VPC
/// function's network interfaces itself, and `ec2:Describe*` has no resource-level
/// scoping (the AWSLambdaVPCAccessExecutionRole managed policy grants the same); the X-Ray
/// write actions (`lambda.tracing`) have no resource-level scoping either.
const STAR_RESOURCE_ALLOWED: [&str; 8] = [
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
];

fn strings(v: &Value) -> Vec<Value> {
    match v {
        Value::Sequence(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// Every problem in the IAM policies of a template (empty when least-privilege).
fn iam_problems(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, body) in resources(template) {
        let ty = body["Type"].as_str().unwrap_or_default();
        let documents: Vec<Value> = match ty {
            "AWS::IAM::Role" => {
                if body["Properties"].get("ManagedPolicyArns").is_some() {
                    problems.push(format!("{id}: managed policies are not audited; use inline policies"));
                }
                body["Properties"]
                    .get("Policies")
                    .map(strings)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| p["PolicyDocument"].clone())
                    .collect()
            }
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => vec![body["Properties"]["PolicyDocument"].clone()],
            _ => continue,
        };
        for doc in documents {
            for st in strings(&doc["Statement"]) {
                if st.get("NotAction").is_some() || st.get("NotResource").is_some() {
                    problems.push(format!("{id}: NotAction/NotResource"));
                }
                if st["Effect"].as_str() != Some("Allow") {
                    continue;
                }
                let actions: Vec<String> =
                    strings(&st["Action"]).iter().filter_map(|a| a.as_str().map(str::to_owned)).collect();
                for a in &actions {
                    if a == "*" || a.ends_with(":*") || a.contains('*') {
                        problems.push(format!("{id}: wildcard action {a}"));
                    }
                }
                for r in strings(&st["Resource"]) {
                    if r.as_str() == Some("*") {
                        if let Some(a) = actions.iter().find(|a| !STAR_RESOURCE_ALLOWED.contains(&a.as_str())) {
                            problems.push(format!("{id}: Resource \"*\" for {a}"));
                        }
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn iam_policies_grant_no_wildcard_actions_or_resources() {
    for stage in stages() {
        for stack in STACKS {
            let template = parse(&render(&stage, stack));
            let problems = iam_problems(&template);
            assert!(problems.is_empty(), "{stage}/{stack}: {problems:#?}");
        }
    }
    // The audit itself catches what it should.
    let bad = parse(
        r#"
Resources:
  R:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyDocument:
            Statement:
              - {Effect: Allow, Action: "s3:*", Resource: "arn:aws:s3:::b/*"}
              - {Effect: Allow, Action: [dynamodb:GetItem], Resource: "*"}
"#,
    );
    assert_eq!(iam_problems(&bad).len(), 2, "{:?}", iam_problems(&bad));
}

#[test]
fn app_template_honours_the_runtime_contract() {
    for stage in stages() {
        // Rendered once: the raw template, and its parameters for `effective` below.
        let (app, params) = render_json(&repo_stages(), &stage, "app");
        for f in FUNCTIONS {
            let props = &resource(&app, &format!("{f}Function"))["Properties"];
            assert_eq!(props["Runtime"].as_str(), Some("provided.al2023"));
            assert_eq!(props["Handler"].as_str(), Some("bootstrap"));
            let env = props["Environment"]["Variables"].as_mapping().expect("environment");
            for var in [
                "WSCTL_STAGE",
                "CONNECTIONS_TABLE",
                "API_KEYS_TABLE",
                "REDIS_URL",
                "REDIS_CLUSTER",
                "WS_MANAGEMENT_ENDPOINT",
                "WSCTL_LIMITS",
                "RUST_LOG",
            ] {
                assert!(env.contains_key(var), "{stage}: {f} lacks {var}");
            }
            let alias = &resource(&app, &format!("{f}Alias"))["Properties"];
            assert_eq!(alias["Name"].as_str(), Some("live"));
            // The alias points at a version whose logical id carries a hash.
            let version_ref = serde_norway::to_string(&alias["FunctionVersion"]).unwrap();
            assert!(version_ref.contains(&format!("{f}Version")), "{version_ref}");
            let version_id = version_ref.split_whitespace().nth(1).unwrap().trim_end_matches(".Version");
            assert!(version_id.len() == format!("{f}Version").len() + 12, "hashed: {version_id}");
            assert!(app["Resources"].get(version_id).is_some(), "{version_id} exists");
        }
        assert_eq!(
            serde_norway::to_string(
                &resource(&app, "ConnectFunction")["Properties"]["Environment"]["Variables"]["WSCTL_LIMITS"]
            )
            .unwrap()
            .trim(),
            "!Ref LimitsJson",
            "limits enter as a parameter"
        );
        // Only the authorizer runs outside the VPC.
        assert!(resource(&app, "AuthorizerFunction")["Properties"].get("VpcConfig").is_none());
        assert!(resource(&app, "PublishFunction")["Properties"].get("VpcConfig").is_some());

        // $connect is authorized; integrations and the authorizer target the live aliases.
        let connect = &resource(&app, "ConnectRoute")["Properties"];
        assert_eq!(connect["RouteKey"].as_str(), Some("$connect"));
        assert_eq!(connect["AuthorizationType"].as_str(), Some("CUSTOM"));
        let authorizer = &resource(&app, "Authorizer")["Properties"];
        assert_eq!(authorizer["AuthorizerType"].as_str(), Some("REQUEST"));
        assert!(authorizer.get("IdentitySource").is_none(), "no identity source: key in query or header");
        assert!(serde_norway::to_string(&authorizer["AuthorizerUri"]).unwrap().contains("${AuthorizerAlias}"));
        for (integration, alias) in [
            ("ConnectIntegration", "ConnectAlias"),
            ("DisconnectIntegration", "DisconnectAlias"),
            ("DefaultIntegration", "MessageAlias"),
        ] {
            let uri = serde_norway::to_string(&resource(&app, integration)["Properties"]["IntegrationUri"]).unwrap();
            assert!(uri.contains(&format!("${{{alias}}}")), "{integration} targets {alias}: {uri}");
        }
        assert_eq!(resource(&app, "DefaultRoute")["Properties"]["RouteKey"].as_str(), Some("$default"));

        // The stage points at a hash-named deployment that exists.
        let stage_props = &resource(&app, "ApiStage")["Properties"];
        let deployment = serde_norway::to_string(&stage_props["DeploymentId"]).unwrap();
        let deployment = deployment.trim().trim_start_matches("!Ref ").to_owned();
        assert!(deployment.starts_with("Deployment") && deployment.len() == "Deployment".len() + 12, "{deployment}");
        assert!(app["Resources"].get(deployment.as_str()).is_some());
        assert!(matches!(stage_props["AccessLogSettings"]["DestinationArn"], Value::Tagged(_) | Value::String(_)));

        // Canary stages shift the aliases through CodeDeploy; others have neither the
        // update policy nor any CodeDeploy resource.
        let app = effective(&app, &params);
        let canary = stage == "staging" || stage == "prod";
        for f in FUNCTIONS {
            let policy = &resource(&app, &format!("{f}Alias"))["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"];
            assert_eq!(!policy.is_null(), canary, "{stage}: {f}Alias's canary update policy");
            if canary {
                let group = serde_norway::to_string(&policy["DeploymentGroupName"]).unwrap();
                assert_eq!(group.trim(), format!("!Ref {f}DeploymentGroup"), "{stage}: {f}Alias's group");
                resource(&app, &format!("{f}DeploymentGroup"));
            }
        }
        let codedeploy = resources(&app)
            .into_iter()
            .filter(|(_, r)| r["Type"].as_str().is_some_and(|t| t.starts_with("AWS::CodeDeploy::")))
            .count();
        assert_eq!(codedeploy, if canary { 2 + FUNCTIONS.len() } else { 0 }, "{stage}: CodeDeploy resources");
    }
}

#[test]
fn data_template_has_the_contracted_tables_and_retention() {
    for stage in stages() {
        let data = parse(&render(&stage, "data"));
        let conns = resource(&data, "ConnectionsTable");
        let p = &conns["Properties"];
        assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
        assert_eq!(p["KeySchema"][0]["AttributeName"].as_str(), Some("connectionId"));
        assert_eq!(p["TimeToLiveSpecification"]["AttributeName"].as_str(), Some("ttl"));
        assert_eq!(p["GlobalSecondaryIndexes"][0]["IndexName"].as_str(), Some("byKey"));
        assert_eq!(p["GlobalSecondaryIndexes"][0]["Projection"]["ProjectionType"].as_str(), Some("ALL"));
        let keys = &resource(&data, "ApiKeysTable")["Properties"];
        assert_eq!(keys["KeySchema"][0]["AttributeName"].as_str(), Some("keyHash"));
        assert_eq!(keys["GlobalSecondaryIndexes"][0]["IndexName"].as_str(), Some("byKeyId"));
        assert_eq!(keys["TimeToLiveSpecification"]["AttributeName"].as_str(), Some("ttl"), "probe keys expire");
        let retain = stage == "prod";
        let expected = if retain { "Retain" } else { "Delete" };
        assert_eq!(conns["DeletionPolicy"].as_str(), Some(expected), "{stage}");
        let redis = resource(&data, "RedisReplicationGroup");
        assert_eq!(redis["DeletionPolicy"].as_str(), Some(if retain { "Snapshot" } else { "Delete" }), "{stage}");
        assert_eq!(redis["Properties"]["AtRestEncryptionEnabled"].as_bool(), Some(true));
    }
}

/// What a stage file says about Redis, read independently of wsctl's own parsing.
struct RedisExpectation {
    cluster: bool,
    shards: u64,
    family: &'static str,
    alarm_percent: u64,
}

fn redis_expectation(stage_file: &Path) -> RedisExpectation {
    let stage: Value = serde_norway::from_str(&std::fs::read_to_string(stage_file).unwrap()).unwrap();
    let r = &stage["redis"];
    let shards = r["shards"].as_u64().unwrap_or(1);
    let engine = r["engine"].as_str().unwrap_or("valkey");
    let version = r["engine_version"].as_str().unwrap_or("7.2");
    // ElastiCache's documented families for the versions our stage files use.
    let family = match (engine, version.split('.').next().unwrap()) {
        ("valkey", "7") => "valkey7",
        ("valkey", "8") => "valkey8",
        ("redis", "7") => "redis7",
        ("redis", "6") => "redis6.x",
        other => panic!("{}: no expected family for {other:?}; extend this table", stage_file.display()),
    };
    RedisExpectation {
        cluster: r["cluster_mode"].as_bool().unwrap_or(false) || shards > 1,
        shards,
        family,
        alarm_percent: r["memory_alarm_percent"].as_u64().unwrap_or(80),
    }
}

/// The Redis parameter group (noeviction, cluster-enabled, family), its use by the
/// replication group, and the memory alarms, for one rendered stage.
fn assert_redis_memory_guards(stages_dir: &Path, stage: &str) {
    let want = redis_expectation(&stages_dir.join(format!("{stage}.yaml")));
    let (t, params) = render_json(stages_dir, stage, "data");
    let r = |v: &Value| resolve(&t, &params, v);

    let group = resource(&t, "RedisParameterGroup");
    assert_eq!(group["Type"].as_str(), Some("AWS::ElastiCache::ParameterGroup"));
    assert_eq!(group["Condition"].as_str(), Some("CreateRedis"), "{stage}");
    let p = &group["Properties"];
    assert_eq!(p["Properties"]["maxmemory-policy"].as_str(), Some("noeviction"), "{stage}");
    let cluster_enabled = if want.cluster { "yes" } else { "no" };
    assert_eq!(r(&p["Properties"]["cluster-enabled"]).as_str(), Some(cluster_enabled), "{stage}");
    let family = r(&p["CacheParameterGroupFamily"]);
    assert_eq!(family.as_str(), Some(want.family), "{stage}");
    let allowed = t["Parameters"]["RedisParameterGroupFamily"]["AllowedValues"].as_sequence().unwrap();
    assert!(allowed.contains(&family), "{stage}: CloudFormation would refuse {family:?}");

    let rg = &resource(&t, "RedisReplicationGroup")["Properties"];
    let Value::Tagged(name) = &rg["CacheParameterGroupName"] else { panic!("{stage}: {rg:?}") };
    assert_eq!((name.tag.to_string(), name.value.as_str()), ("!Ref".into(), Some("RedisParameterGroup")), "{stage}");

    let mut alarms: Vec<(String, Value)> = resources(&t)
        .into_iter()
        .filter(|(_, b)| b["Properties"]["MetricName"].as_str() == Some("DatabaseMemoryUsagePercentage"))
        .collect();
    alarms.sort_by(|a, b| a.0.cmp(&b.0));
    let expected_ids: Vec<String> = if want.cluster {
        (1..=want.shards).map(|n| format!("${{RedisReplicationGroup}}-{n:04}-001")).collect()
    } else {
        vec!["${RedisReplicationGroup}-001".into()]
    };
    let mut ids = Vec::new();
    for (id, alarm) in &alarms {
        assert_eq!(alarm["Type"].as_str(), Some("AWS::CloudWatch::Alarm"), "{stage} {id}");
        assert_eq!(alarm["Condition"].as_str(), Some("CreateRedis"), "{stage} {id}");
        let p = &alarm["Properties"];
        assert_eq!(p["Namespace"].as_str(), Some("AWS/ElastiCache"), "{stage} {id}");
        assert_eq!(p["Dimensions"].as_sequence().map(Vec::len), Some(1), "{stage} {id}");
        assert_eq!(p["Dimensions"][0]["Name"].as_str(), Some("CacheClusterId"), "{stage} {id}");
        let threshold = r(&p["Threshold"]);
        assert_eq!(threshold.as_str(), Some(want.alarm_percent.to_string().as_str()), "{stage} {id}");
        assert_eq!(p["ComparisonOperator"].as_str(), Some("GreaterThanOrEqualToThreshold"), "{stage} {id}");
        assert_eq!(p["TreatMissingData"].as_str(), Some("missing"), "{stage} {id}");
        let Value::Tagged(sub) = r(&p["Dimensions"][0]["Value"]) else { panic!("{stage} {id}: not !Sub") };
        assert_eq!(sub.tag.to_string(), "!Sub", "{stage} {id}");
        ids.push(sub.value.as_str().unwrap().to_owned());
    }
    assert_eq!(ids, expected_ids, "{stage}: one alarm on the first node of each shard");
}

#[test]
fn redis_refuses_writes_when_full_and_alarms_before() {
    for stage in stages() {
        assert_redis_memory_guards(&repo_stages(), &stage);
    }
    // The threshold, cluster mode and shard count follow the stage file.
    let dir = TempDir::new("wsctl-redis-memory").unwrap();
    let dev = std::fs::read_to_string(repo_stages().join("dev.yaml")).unwrap();
    assert!(dev.contains("shards: 1\n"), "dev.yaml changed shape; adjust this test");
    let variants = [
        ("low", dev.replace("shards: 1\n", "shards: 1\n  memory_alarm_percent: 65\n")),
        ("sharded", dev.replace("shards: 1\n", "shards: 3\n")),
        ("one-shard-cluster", dev.replace("shards: 1\n", "shards: 1\n  cluster_mode: true\n")),
        ("redis6", dev.replace("engine: valkey", "engine: redis").replace("\"7.2\"", "\"6.2\"")),
    ];
    for (name, yaml) in variants {
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
        assert_redis_memory_guards(dir.path(), name);
    }
}

/// Writes a manifest with one zip per function whose bytes come from `body`.
fn manifest(dir: &Path, body: impl Fn(&str) -> String) -> PathBuf {
    use sha2::{Digest, Sha256};
    std::fs::create_dir_all(dir).unwrap();
    let mut functions = serde_json::Map::new();
    for f in ["authorizer", "connect", "disconnect", "message", "publish", "admin"] {
        let bytes = body(f).into_bytes();
        std::fs::write(dir.join(format!("{f}.zip")), &bytes).unwrap();
        let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        functions.insert(f.into(), serde_json::json!({"file": format!("{f}.zip"), "sha256": sha, "size": bytes.len()}));
    }
    let path = dir.join("manifest.json");
    let m = serde_json::json!({"version": 1, "architecture": "arm64", "target": "aarch64-unknown-linux-gnu.2.34", "functions": functions});
    std::fs::write(&path, m.to_string()).unwrap();
    path
}

fn version_ids(stages_dir: &Path, stage: &str, manifest: &Path) -> Vec<String> {
    let out = wsctl(stages_dir, &["template", "--stage", stage, "--manifest", manifest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = parse(&String::from_utf8_lossy(&out.stdout));
    let mut ids: Vec<String> = resources(&t)
        .into_iter()
        .filter(|(_, b)| b["Type"].as_str() == Some("AWS::Lambda::Version"))
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn versions_are_named_after_code_and_configuration() {
    let dir = TempDir::new("wsctl-versions").unwrap();
    let stages_dir = dir.join("stages");
    std::fs::create_dir_all(&stages_dir).unwrap();
    let dev = std::fs::read_to_string(repo_stages().join("dev.yaml")).unwrap();
    std::fs::write(stages_dir.join("dev.yaml"), &dev).unwrap();
    std::fs::write(stages_dir.join("big.yaml"), dev.replace("memory_mb: 256", "memory_mb: 512")).unwrap();

    let m1 = manifest(&dir.join("m1"), |f| format!("{f} v1"));
    let m2 = manifest(&dir.join("m2"), |f| if f == "connect" { "connect v2".into() } else { format!("{f} v1") });
    let a = version_ids(&stages_dir, "dev", &m1);
    let b = version_ids(&stages_dir, "dev", &m2);
    assert_eq!(a, version_ids(&stages_dir, "dev", &m1), "rendering is deterministic");
    let changed: Vec<&String> = b.iter().filter(|id| !a.contains(id)).collect();
    assert_eq!(changed.len(), 1, "{a:?} vs {b:?}");
    assert!(changed[0].starts_with("ConnectVersion"));
    // A configuration change publishes every function anew.
    let c = version_ids(&stages_dir, "big", &m1);
    assert!(c.iter().all(|id| !a.contains(id)), "{a:?} vs {c:?}");
}

#[test]
fn stage_errors_name_the_file_the_key_and_the_fix() {
    let dir = TempDir::new("wsctl-bad-stage").unwrap();
    let cases = [
        ("typo", "lambda:\n  memroy_mb: 512\n", vec!["typo.yaml", "memroy_mb", "memory_mb"]),
        (
            "retention",
            "lambda:\n  log_retention_days: 10\n",
            vec!["retention.yaml", "lambda.log_retention_days", "14, 30"],
        ),
        ("arch", "lambda:\n  architecture: sparc\n", vec!["arch.yaml", "architecture", "arm64"]),
        ("redis", "redis:\n  mode: existing\n", vec!["redis.yaml", "redis.url", "rediss://"]),
        ("limits", "limits:\n  max_frame_bytes: 0\n", vec!["limits.yaml", "limits.max_frame_bytes"]),
        (
            "alarm",
            "redis:\n  memory_alarm_percent: 0\n",
            vec!["alarm.yaml", "redis.memory_alarm_percent", "1..=100", "default, 80"],
        ),
    ];
    for (name, yaml, needles) in cases {
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
        let out = wsctl(dir.path(), &["template", "--stage", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{name}: '{n}' missing from: {err}");
        }
    }
    let out = wsctl(dir.path(), &["template", "--stage", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pick one of"), "lists the stages");
}

#[test]
fn template_json_output_is_one_document() {
    let out = wsctl(&repo_stages(), &["template", "--stage", "prod", "--stack", "data", "--output", "json"]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["stackName"], "wsctl-prod-data");
    assert_eq!(doc["parameters"]["RedisClusterMode"], "true");
    assert_eq!(doc["parameters"]["NatPerAz"], "true");
    assert!(doc["template"].as_str().unwrap().contains("AWS::ElastiCache::ReplicationGroup"));
}
