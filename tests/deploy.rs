//! End-to-end tests of `wsctl deploy/plan/status/destroy` against a real `moto_server`
//! (started per test on a free loopback port by `wsctl-testkit`), driving the built binary.
//!
//! moto runs CloudFormation stacks, change sets, S3, Lambda, IAM, EC2 and DynamoDB; it
//! skips ApiGatewayV2, ElastiCache and Lambda alias resources inside CloudFormation, so
//! these tests check what moto does create (tables, VPC, functions, versions, roles) and
//! the deployer's own behaviour (change sets, uploads, exit codes, output).

use crate::deploy_support::{json, stack, stage_yaml, stored_zip, text, Harness, FUNCTIONS};
use serde_json::Value;
use std::collections::BTreeMap;

#[test]
fn first_deploy_creates_everything_and_a_second_deploy_changes_nothing() {
    let h = Harness::new("e2e", &stage_yaml(""));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    let m = manifest.to_str().unwrap();

    let plan = h.wsctl(&["plan", "--stage", "e2e", "--manifest", m]);
    assert_eq!(plan.status.code(), Some(2), "plan before the first deploy has changes:\n{}", text(&plan));

    let first = h.deploy(&manifest, true);
    assert!(first.status.success(), "{}", text(&first));
    let report = json(&first);
    assert_eq!(report["ok"], true);
    for kind in ["bootstrap", "data", "app"] {
        assert_eq!(stack(&report, kind)["action"], "created", "{kind}: {report:#}");
    }
    let uploaded: Vec<&Value> =
        report["artifacts"].as_array().unwrap().iter().filter(|a| a["uploaded"] == true).collect();
    assert_eq!(uploaded.len(), 6, "every artifact uploaded once: {report:#}");

    // Read the deployed resources back with the SDK.
    let rt = h.runtime();
    rt.block_on(async {
        let config = h.sdk().await;
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        let tables = ddb.list_tables().send().await.unwrap().table_names().to_vec();
        let connections = tables.iter().find(|t| t.contains("ConnectionsTable")).expect("connections table");
        let keys = tables.iter().find(|t| t.contains("ApiKeysTable")).expect("api-keys table");
        let desc = ddb.describe_table().table_name(connections).send().await.unwrap();
        let table = desc.table().unwrap();
        assert_eq!(table.key_schema()[0].attribute_name(), "connectionId");
        let gsi = &table.global_secondary_indexes()[0];
        assert_eq!(gsi.index_name(), Some("byKey"));
        assert_eq!(gsi.projection().and_then(|p| p.projection_type()).map(|p| p.as_str()), Some("ALL"));
        // (moto ignores TimeToLiveSpecification in CloudFormation; tests/template.rs checks it.)
        let desc = ddb.describe_table().table_name(keys).send().await.unwrap();
        assert_eq!(desc.table().unwrap().key_schema()[0].attribute_name(), "keyHash");

        // The VPC functions sit in the data stack's private subnets.
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let resources = cfn.describe_stack_resources().stack_name("wsctl-e2e-data").send().await.unwrap();
        let mut private_subnets: Vec<String> = resources
            .stack_resources()
            .iter()
            .filter(|r| matches!(r.logical_resource_id(), Some("PrivateSubnetA" | "PrivateSubnetB")))
            .filter_map(|r| r.physical_resource_id().map(str::to_owned))
            .collect();
        private_subnets.sort();
        assert_eq!(private_subnets.len(), 2, "{private_subnets:?}");
        assert!(private_subnets.iter().all(|s| s.starts_with("subnet-")), "{private_subnets:?}");

        let lambda = aws_sdk_lambda::Client::new(&config);
        for f in FUNCTIONS {
            let name = format!("wsctl-e2e-app-{f}");
            let cfg = lambda
                .get_function_configuration()
                .function_name(&name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(cfg.runtime().map(|r| r.as_str()), Some("provided.al2023"));
            assert_eq!(cfg.handler(), Some("bootstrap"));
            let vars = cfg.environment().and_then(|e| e.variables()).cloned().unwrap_or_default();
            assert_eq!(vars.get("CONNECTIONS_TABLE"), Some(connections), "{name}: {vars:?}");
            assert_eq!(vars.get("API_KEYS_TABLE"), Some(keys));
            assert_eq!(vars.get("REDIS_URL").map(String::as_str), Some("rediss://redis.internal.example:6379"));
            assert_eq!(vars.get("REDIS_CLUSTER").map(String::as_str), Some("false"));
            assert_eq!(vars.get("WSCTL_STAGE").map(String::as_str), Some("e2e"));
            let limits: Value = serde_json::from_str(vars.get("WSCTL_LIMITS").expect("WSCTL_LIMITS")).unwrap();
            assert_eq!(limits["max_rooms_per_connection"], 64);
            assert!(vars
                .get("WS_MANAGEMENT_ENDPOINT")
                .is_some_and(|e| e.starts_with("https://") && e.ends_with("/live")));
            assert!(vars.contains_key("RUST_LOG"));
            let mut subnets: Vec<String> = cfg.vpc_config().map(|v| v.subnet_ids().to_vec()).unwrap_or_default();
            subnets.sort();
            if f == "authorizer" {
                assert!(subnets.is_empty(), "the authorizer runs outside the VPC: {subnets:?}");
            } else {
                assert_eq!(subnets, private_subnets, "{name} runs in the private subnets");
            }
            let versions = lambda.list_versions_by_function().function_name(&name).send().await.unwrap();
            assert!(
                versions.versions().iter().any(|v| v.version() != Some("$LATEST")),
                "{name} has a published version"
            );
        }
    });

    // Second deploy, nothing changed: no change sets executed, nothing uploaded, exit 0.
    let second = h.deploy(&manifest, false);
    assert!(second.status.success(), "{}", text(&second));
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(out.contains("wsctl-e2e-app: no changes"), "{}", text(&second));
    assert!(out.contains("stage e2e: no changes"), "{}", text(&second));
    assert!(out.contains("nothing uploaded"), "{}", text(&second));
    let again = json(&h.deploy(&manifest, true));
    for kind in ["bootstrap", "data", "app"] {
        assert_eq!(stack(&again, kind)["action"], "unchanged", "{again:#}");
    }
    assert!(again["artifacts"].as_array().unwrap().iter().all(|a| a["uploaded"] == false), "{again:#}");

    let plan = h.wsctl(&["plan", "--stage", "e2e", "--manifest", m]);
    assert_eq!(plan.status.code(), Some(0), "plan after deploying it: {}", text(&plan));

    let status = h.wsctl(&["status", "--stage", "e2e", "--output", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let status = json(&status);
    assert_eq!(status["stacks"][2]["stack"]["status"], "CREATE_COMPLETE", "{status:#}");
    assert_eq!(status["functions"].as_array().map(Vec::len), Some(6), "{status:#}");
    assert_eq!(status["redis"]["value"]["id"], "external");
}

#[test]
fn templates_over_the_inline_limit_go_through_the_artifact_bucket() {
    let h = Harness::new("big", &stage_yaml(""));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    // Lower the limit so the data and app templates (not the small bootstrap one) take the
    // S3 path that real templates over 51,200 bytes take.
    let m = manifest.to_str().unwrap();
    let out = h
        .command(&["deploy", "--stage", "big", "--yes", "--output", "json", "--manifest", m])
        .env("WSCTL_INLINE_TEMPLATE_LIMIT", "8000")
        .output()
        .expect("run wsctl");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stack(&json(&out), "app")["action"], "created");
    let rt = h.runtime();
    rt.block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&h.sdk().await).force_path_style(true).build(),
        );
        let listed = s3
            .list_objects_v2()
            .bucket("wsctl-artifacts-123456789012-us-east-1")
            .prefix("wsctl/templates/")
            .send()
            .await
            .unwrap();
        assert_eq!(listed.contents().len(), 2, "the data and app templates were uploaded: {listed:?}");
    });
}

#[test]
fn a_handler_change_updates_only_the_functions() {
    let h = Harness::new("hc", &stage_yaml(""));
    let v1 = h.manifest("dist1", |f| format!("{f} build 1"));
    assert!(h.deploy(&v1, false).status.success());
    let rt = h.runtime();
    let before: BTreeMap<String, String> = rt.block_on(async {
        let lambda = aws_sdk_lambda::Client::new(&h.sdk().await);
        let mut shas = BTreeMap::new();
        for f in FUNCTIONS {
            let cfg =
                lambda.get_function_configuration().function_name(format!("wsctl-hc-app-{f}")).send().await.unwrap();
            shas.insert(f.to_owned(), cfg.code_sha256().unwrap().to_owned());
        }
        shas
    });

    // Only connect's source changed.
    let v2 = h.manifest("dist2", |f| if f == "connect" { "connect build 2".into() } else { format!("{f} build 1") });
    let out = h.deploy(&v2, true);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(stack(&report, "bootstrap")["action"], "unchanged", "{report:#}");
    assert_eq!(stack(&report, "data")["action"], "unchanged", "{report:#}");
    let app = stack(&report, "app");
    assert_eq!(app["action"], "updated", "{report:#}");
    let changes = app["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    for c in changes {
        let ty = c["resourceType"].as_str().unwrap();
        assert!(ty.starts_with("AWS::Lambda::"), "a handler change touched {ty}: {report:#}");
        assert!(c["logicalId"].as_str().unwrap().starts_with("Connect"), "only connect's resources change: {report:#}");
    }
    let uploaded: Vec<&str> = report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["uploaded"] == true)
        .map(|a| a["function"].as_str().unwrap())
        .collect();
    assert_eq!(uploaded, ["connect"], "{report:#}");

    let after: BTreeMap<String, String> = rt.block_on(async {
        let lambda = aws_sdk_lambda::Client::new(&h.sdk().await);
        let mut shas = BTreeMap::new();
        for f in FUNCTIONS {
            let cfg =
                lambda.get_function_configuration().function_name(format!("wsctl-hc-app-{f}")).send().await.unwrap();
            shas.insert(f.to_owned(), cfg.code_sha256().unwrap().to_owned());
        }
        shas
    });
    for f in FUNCTIONS {
        if f == "connect" {
            assert_ne!(before[f], after[f], "connect runs the new code");
        } else {
            assert_eq!(before[f], after[f], "{f} is untouched");
        }
    }
}

#[test]
fn an_artifact_replaced_in_the_bucket_is_caught_after_the_deploy() {
    let h = Harness::new("tamper", &stage_yaml(""));
    let v1 = h.manifest("dist1", |f| format!("{f} build 1"));
    assert!(h.deploy(&v1, false).status.success());
    // Someone plants other bytes under the key of connect's next build.
    let v2 = h.manifest("dist2", |f| if f == "connect" { "connect build 2".into() } else { format!("{f} build 1") });
    let m2: Value = serde_json::from_str(&std::fs::read_to_string(&v2).unwrap()).unwrap();
    let key = format!("wsctl/artifacts/{}.zip", m2["functions"]["connect"]["sha256"].as_str().unwrap());
    let rt = h.runtime();
    rt.block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&h.sdk().await).force_path_style(true).build(),
        );
        s3.put_object()
            .bucket("wsctl-artifacts-123456789012-us-east-1")
            .key(&key)
            .body(stored_zip("bootstrap", b"not the build").into())
            .send()
            .await
            .unwrap();
    });
    let out = h.deploy(&v2, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CODE MISMATCH wsctl-tamper-app-connect"), "{}", text(&out));
    assert!(!stdout.contains("CODE MISMATCH wsctl-tamper-app-publish"), "{}", text(&out));
}

#[test]
fn a_failed_deploy_exits_non_zero_and_names_the_failed_resource() {
    // An existing network whose security group moto does not know: the data stack's Redis
    // security group cannot be created.
    let yaml = "region: us-east-1\naccount: \"123456789012\"\nredis:\n  mode: create\nnetwork:\n  mode: existing\n  \
                vpc_id: vpc-0123456789abcdef0\n  subnet_ids: [subnet-0123456789abcdef0, subnet-0123456789abcdef1]\n  \
                security_group_id: sg-0123456789abcdef0\n";
    let h = Harness::new("broken", yaml);
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    let out = h.deploy(&manifest, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAILED RedisSecurityGroup (AWS::EC2::SecurityGroup)"), "{}", text(&out));
    assert!(stdout.contains("sg-0123456789abcdef0"), "the reason is shown: {}", text(&out));
    // What the next deploy does with the stack the failure left (moto leaves a failed
    // first create in review; CloudFormation's ROLLBACK_COMPLETE is deleted and recreated).
    assert!(stdout.contains("next deploy: removes the empty stack"), "{}", text(&out));

    let out = h.deploy(&manifest, true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    let data = stack(&report, "data");
    assert_eq!(data["action"], "failed");
    assert_eq!(data["failures"][0]["logicalId"], "RedisSecurityGroup", "{report:#}");
    assert!(data["nextDeploy"].as_str().is_some_and(|n| n.contains("creates the stack")), "{report:#}");
    // ...and it did so: the second run removed the first one's leftover before failing again.
    assert!(String::from_utf8_lossy(&out.stderr).contains("removing it and its change sets"), "{}", text(&out));
    assert!(report["stacks"].as_array().unwrap().iter().all(|s| s["kind"] != "app"), "stops before the app stack");
}

/// A stage on an existing network (moto cannot delete every VPC resource it creates, so the
/// destroy test keeps the data stack to its tables).
fn existing_network_stage_yaml(extra: &str) -> String {
    format!(
        "region: us-east-1\naccount: \"123456789012\"\nredis:\n  mode: existing\n  url: redis://redis.internal.example:6379\n\
         network:\n  mode: existing\n  vpc_id: vpc-0123456789abcdef0\n  subnet_ids: [subnet-0123456789abcdef0, subnet-0123456789abcdef1]\n  \
         security_group_id: sg-0123456789abcdef0\ntables:\n  retain: false\n{extra}"
    )
}

#[test]
fn destroy_removes_the_stacks_and_a_protected_stage_needs_force() {
    let h = Harness::new("gone", &existing_network_stage_yaml(""));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    assert!(h.deploy(&manifest, false).status.success());

    let out = h.wsctl(&["destroy", "--stage", "gone", "--yes", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    let names: Vec<&str> = report["stacks"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["wsctl-gone-app", "wsctl-gone-data"]);
    assert!(report["stacks"].as_array().unwrap().iter().all(|s| s["action"] == "deleted"), "{report:#}");

    let rt = h.runtime();
    rt.block_on(async {
        let config = h.sdk().await;
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        for name in ["wsctl-gone-app", "wsctl-gone-data"] {
            let gone = match cfn.describe_stacks().stack_name(name).send().await {
                Err(_) => true,
                Ok(o) => o.stacks().iter().all(|s| s.stack_status().map(|x| x.as_str()) == Some("DELETE_COMPLETE")),
            };
            assert!(gone, "{name} still exists");
        }
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        let tables = ddb.list_tables().send().await.unwrap().table_names().to_vec();
        assert!(tables.is_empty(), "tables of an unretained stage are deleted: {tables:?}");
        let lambda = aws_sdk_lambda::Client::new(&config);
        assert!(lambda.get_function().function_name("wsctl-gone-app-connect").send().await.is_err());
    });

    // A protected stage refuses without --force, and touches nothing.
    std::fs::write(h.dir.join("stages/gone.yaml"), existing_network_stage_yaml("protected: true\n")).unwrap();
    let out = h.wsctl(&["destroy", "--stage", "gone", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"), "{}", text(&out));
}

#[test]
fn without_a_terminal_deploy_needs_yes_and_the_account_is_guarded() {
    let h = Harness::new("guard", &stage_yaml(""));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    let m = manifest.to_str().unwrap();

    let out = h.wsctl(&["deploy", "--stage", "guard", "--manifest", m]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"), "{}", text(&out));
    let rt = h.runtime();
    rt.block_on(async {
        let cfn = aws_sdk_cloudformation::Client::new(&h.sdk().await);
        let stacks = cfn.describe_stacks().send().await.unwrap();
        let live: Vec<_> = stacks
            .stacks()
            .iter()
            .filter(|s| s.stack_status().map(|x| x.as_str()) != Some("DELETE_COMPLETE"))
            .filter_map(|s| s.stack_name())
            .collect();
        assert!(live.is_empty(), "a refused deploy leaves no stack behind: {live:?}");
    });

    std::fs::write(h.dir.join("stages/other.yaml"), stage_yaml("").replace("123456789012", "999999999999")).unwrap();
    let out = h.wsctl(&["deploy", "--stage", "other", "--yes", "--manifest", m]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("123456789012") && err.contains("999999999999"), "{}", text(&out));
}

/// Published versions of each function of a stage's app stack (without `$LATEST`).
fn versions(h: &Harness) -> BTreeMap<String, Vec<u64>> {
    h.runtime().block_on(async {
        let lambda = aws_sdk_lambda::Client::new(&h.sdk().await);
        let mut all = BTreeMap::new();
        for f in FUNCTIONS {
            let name = format!("wsctl-{}-app-{f}", h.stage);
            let out = lambda.list_versions_by_function().function_name(&name).send().await.unwrap();
            let mut v: Vec<u64> = out.versions().iter().filter_map(|v| v.version()?.parse().ok()).collect();
            v.sort_unstable();
            all.insert(f.to_owned(), v);
        }
        all
    })
}

#[test]
fn old_lambda_versions_are_pruned_to_the_newest_keep_versions() {
    let h = Harness::new("prune", &stage_yaml("lambda:\n  keep_versions: 10\n"));
    for build in 1..=5 {
        let m = h.manifest(&format!("dist{build}"), |f| format!("{f} build {build}"));
        let out = h.deploy(&m, false);
        assert!(out.status.success(), "{}", text(&out));
    }
    // Replaced versions are retained for rollback, so they accumulate. (moto publishes a
    // version before applying the new code, so it lags one deploy behind AWS.)
    let before = versions(&h);
    for (f, v) in &before {
        assert!(v.len() >= 3, "{f}: {v:?}");
    }

    std::fs::write(h.dir.join("stages/prune.yaml"), stage_yaml("lambda:\n  keep_versions: 2\n")).unwrap();
    let m = h.manifest("dist6", |f| format!("{f} build 6"));
    let out = h.deploy(&m, true);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["prunedVersions"].as_array().map(Vec::len), Some(6), "{report:#}");
    let shown = String::from_utf8_lossy(&out.stderr);
    assert!(shown.contains("old versions deleted (keeping 2 per function)"), "{}", text(&out));

    // Each function keeps its two newest versions. (The versions the stack and the aliases
    // hold are spared too: moto gives Version resources no ARN and runs no aliases, so
    // that part is covered by the unit tests of src/deploy/versions.rs.)
    for (f, v) in versions(&h) {
        let newest_two: Vec<u64> = {
            let mut all: Vec<u64> = before[&f].iter().copied().chain(v.iter().copied()).collect();
            all.sort_unstable();
            all.dedup();
            all.split_off(all.len() - 2)
        };
        assert_eq!(v, newest_two, "{f} keeps its two newest");
    }
}
