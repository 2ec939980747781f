//! `wsctl history` and `wsctl rollback` on moto (issue 14, item 4): every successful deploy
//! is recorded in the artifact bucket, and a rollback deploys a recorded build again through
//! the normal change sets, so the functions run its code again.
//!
//! moto skips `AWS::Lambda::Alias` inside CloudFormation, so the `live` alias itself cannot
//! be read back. What is checked instead is the chain the alias follows on AWS: the app
//! stack's template points each alias at its function's `AWS::Lambda::Version` resource,
//! that resource is build 1's again (its logical id is a hash of the function's code and
//! configuration), and the version it published runs build 1's zip.

use crate::deploy_support::{json, text, Harness, FUNCTIONS};
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const BUCKET: &str = "wsctl-artifacts-123456789012-us-east-1";

/// The stage the tests deploy: moto's (existing Redis, VPC created).
fn stage() -> String {
    crate::deploy_support::stage_yaml("")
}

/// function → base64 SHA-256 of its zip, as Lambda reports `CodeSha256`.
fn manifest_code(manifest: &Path) -> BTreeMap<String, String> {
    let m: Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    FUNCTIONS
        .iter()
        .map(|f| {
            let hex = m["functions"][f]["sha256"].as_str().unwrap();
            (f.to_string(), base64::engine::general_purpose::STANDARD.encode(hex::decode(hex).unwrap()))
        })
        .collect()
}

/// What the stage runs, per function, read back from moto.
#[derive(Debug, PartialEq)]
struct Deployed {
    /// `$LATEST`'s code.
    latest: BTreeMap<String, String>,
    /// The logical id of the function's `AWS::Lambda::Version` in the app stack.
    version_id: BTreeMap<String, String>,
    /// The Version resource the template's `live` alias points at.
    alias_target: BTreeMap<String, String>,
    /// The code of the newest published version (the one the stack's Version published).
    newest_version: BTreeMap<String, String>,
}

fn logical(f: &str) -> String {
    let mut c = f.chars();
    c.next().map(|first| first.to_ascii_uppercase().to_string() + c.as_str()).unwrap()
}

fn deployed(h: &Harness) -> Deployed {
    let app = format!("wsctl-{}-app", h.stage);
    h.runtime().block_on(async {
        let config = h.sdk().await;
        let lambda = aws_sdk_lambda::Client::new(&config);
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let resources = cfn.describe_stack_resources().stack_name(&app).send().await.unwrap();
        let body = cfn.get_template().stack_name(&app).send().await.unwrap().template_body().unwrap().to_owned();
        let template: serde_norway::Value = serde_norway::from_str(&body).unwrap();
        let mut d = Deployed {
            latest: BTreeMap::new(),
            version_id: BTreeMap::new(),
            alias_target: BTreeMap::new(),
            newest_version: BTreeMap::new(),
        };
        for f in FUNCTIONS {
            let name = format!("{app}-{f}");
            let cfg = lambda.get_function_configuration().function_name(&name).send().await.unwrap();
            d.latest.insert(f.into(), cfg.code_sha256().unwrap().to_owned());
            let ids: Vec<String> = resources
                .stack_resources()
                .iter()
                .filter(|r| r.resource_type() == Some("AWS::Lambda::Version"))
                .filter_map(|r| r.logical_resource_id())
                .filter(|id| id.strip_prefix(&logical(f)).is_some_and(|rest| rest.starts_with("Version")))
                .map(str::to_owned)
                .collect();
            assert_eq!(ids.len(), 1, "{f}: one Version in the app stack: {ids:?}");
            d.version_id.insert(f.into(), ids[0].clone());
            let target =
                &template["Resources"][format!("{}Alias", logical(f)).as_str()]["Properties"]["FunctionVersion"];
            let serde_norway::Value::Tagged(tagged) = target else { panic!("{f}: FunctionVersion is {target:?}") };
            assert_eq!(tagged.tag.to_string(), "!GetAtt", "{f}");
            let attr = tagged.value.as_str().unwrap();
            d.alias_target.insert(f.into(), attr.strip_suffix(".Version").unwrap_or(attr).to_owned());
            let versions = lambda.list_versions_by_function().function_name(&name).send().await.unwrap();
            let newest = versions.versions().iter().filter_map(|v| v.version()?.parse::<u64>().ok()).max().unwrap();
            let v = lambda.get_function().function_name(&name).qualifier(newest.to_string()).send().await.unwrap();
            d.newest_version.insert(f.into(), v.configuration().unwrap().code_sha256().unwrap().to_owned());
        }
        d
    })
}

fn history(h: &Harness) -> Value {
    let out = h.wsctl(&["history", "--stage", &h.stage, "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    json(&out)
}

fn numbers(history: &Value) -> Vec<u64> {
    history["entries"].as_array().unwrap().iter().map(|e| e["number"].as_u64().unwrap()).collect()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn deploy_two_builds_then_rollback_runs_build_one_again() {
    let h = Harness::new("rb", &stage());
    git(h.dir.path(), &["init", "-q"]);
    std::fs::write(h.dir.join("notes.txt"), "one\n").unwrap();
    git(h.dir.path(), &["add", "stages", "notes.txt"]);
    git(h.dir.path(), &["commit", "-qm", "one"]);
    let head = git(h.dir.path(), &["rev-parse", "HEAD"]);

    let never = h.wsctl(&["history", "--stage", "rb"]);
    assert!(never.status.success(), "{}", text(&never));
    assert!(String::from_utf8_lossy(&never.stdout).contains("stage rb: no deploy history"), "{}", text(&never));

    let b1 = h.manifest("dist1", |f| format!("{f} build 1"));
    let first = json(&h.deploy(&b1, true));
    assert_eq!(first["ok"], true, "{first:#}");
    assert_eq!(first["historyEntry"], 1, "{first:#}");
    let after_b1 = deployed(&h);
    assert_eq!(after_b1.latest, manifest_code(&b1));

    // Build 2 changes every function, deployed from a tree with an uncommitted change.
    std::fs::write(h.dir.join("notes.txt"), "two\n").unwrap();
    let b2 = h.manifest("dist2", |f| format!("{f} build 2"));
    let second = json(&h.deploy(&b2, true));
    assert_eq!(second["historyEntry"], 2, "{second:#}");
    let after_b2 = deployed(&h);
    assert_eq!(after_b2.latest, manifest_code(&b2));
    for f in FUNCTIONS {
        assert_ne!(after_b2.version_id[f], after_b1.version_id[f], "{f}: build 2 has its own Version");
    }
    // The same build again changes nothing and records nothing.
    let again = json(&h.deploy(&b2, true));
    assert_eq!(again["ok"], true, "{again:#}");
    assert!(again.get("historyEntry").is_none(), "a repeated deploy adds no entry: {again:#}");

    let listed = history(&h);
    assert_eq!(numbers(&listed), [2, 1], "newest first: {listed:#}");
    assert_eq!(listed["live"], 2, "{listed:#}");
    let (e2, e1) = (&listed["entries"][0], &listed["entries"][1]);
    assert_eq!((e2["live"].clone(), e1["live"].clone()), (Value::Bool(true), Value::Bool(false)));
    assert_eq!(e1["commit"], head.as_str(), "{listed:#}");
    assert_eq!(e2["commit"], format!("{head}-dirty").as_str(), "{listed:#}");
    assert!(e1["deployedBy"].as_str().is_some_and(|a| a.starts_with("arn:aws:")), "{listed:#}");
    assert!(
        e1["deployedAt"].as_str().is_some_and(|t| t.starts_with("20") && t.ends_with('Z') && t.len() == 20),
        "{listed:#}"
    );
    assert_ne!(e1["manifestHash"], e2["manifestHash"]);
    let b1_json: Value = serde_json::from_str(&std::fs::read_to_string(&b1).unwrap()).unwrap();
    assert_eq!(e1["manifest"]["functions"], b1_json["functions"], "entry 1 holds build 1's manifest");
    assert_eq!(listed["location"], format!("s3://{BUCKET}/wsctl/history/wsctl-rb/").as_str());

    let out = h.wsctl(&["rollback", "--stage", "rb", "--yes", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["rollback"], serde_json::json!({ "to": 1, "from": 2 }), "{report:#}");
    assert_eq!(report["historyEntry"], 3, "{report:#}");
    assert!(report["artifacts"].as_array().unwrap().iter().all(|a| a["uploaded"] == false), "{report:#}");
    let app = report["stacks"].as_array().unwrap().iter().find(|s| s["kind"] == "app").unwrap();
    assert_eq!(app["action"], "updated", "through a change set of the app stack: {report:#}");

    let after_rollback = deployed(&h);
    let b1_code = manifest_code(&b1);
    assert_eq!(after_rollback.latest, b1_code, "the functions run build 1's code");
    assert_eq!(after_rollback.newest_version, b1_code, "the published versions are build 1's");
    assert_eq!(after_rollback.version_id, after_b1.version_id, "build 1's Versions are back in the stack");
    assert_eq!(after_rollback.alias_target, after_rollback.version_id, "and the live aliases point at them");

    let listed = history(&h);
    assert_eq!(numbers(&listed), [3, 2, 1], "{listed:#}");
    assert_eq!(listed["live"], 3, "{listed:#}");
    let e3 = &listed["entries"][0];
    assert_eq!(e3["rollback"], serde_json::json!({ "to": 1, "from": 2 }), "{listed:#}");
    assert_eq!(e3["manifestHash"], listed["entries"][2]["manifestHash"], "{listed:#}");
    let table = h.wsctl(&["history", "--stage", "rb"]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let line = table.lines().find(|l| l.contains("rollback to 1 (from 2)")).unwrap_or_else(|| panic!("{table}"));
    assert!(line.starts_with("live") && line.contains(&head[..12]), "{table}");
}

#[test]
fn a_rollback_that_cannot_be_done_changes_nothing() {
    let h = Harness::new("rbx", &stage());
    let b1 = h.manifest("dist1", |f| format!("{f} build 1"));
    let b2 = h.manifest("dist2", |f| format!("{f} build 2"));
    for m in [&b1, &b2] {
        let out = h.deploy(m, false);
        assert!(out.status.success(), "{}", text(&out));
    }
    let b2_code = manifest_code(&b2);
    let unchanged = |what: &str| {
        assert_eq!(deployed(&h).latest, b2_code, "{what}: the functions still run build 2");
        assert_eq!(numbers(&history(&h)), [2, 1], "{what}: no entry recorded");
    };

    let out = h.wsctl(&["rollback", "--stage", "rbx", "--yes", "--to", "7"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("entries 1 to 2") && err.contains("no entry 7"), "{}", text(&out));
    unchanged("--to 7");

    let out = h.wsctl(&["rollback", "--stage", "rbx", "--yes", "--manifest", "0000deadbeef"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("starting with 0000deadbeef"), "{}", text(&out));
    unchanged("--manifest 0000deadbeef");

    let out = h.wsctl(&["rollback", "--stage", "rbx", "--yes", "--to", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("live already"), "{}", text(&out));
    unchanged("--to the live entry");

    // Build 1's connect zip is gone from the bucket (a lifecycle rule, a cleanup by hand).
    let m1: Value = serde_json::from_str(&std::fs::read_to_string(&b1).unwrap()).unwrap();
    let key = format!("wsctl/artifacts/{}.zip", m1["functions"]["connect"]["sha256"].as_str().unwrap());
    h.runtime().block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&h.sdk().await).force_path_style(true).build(),
        );
        s3.delete_object().bucket(BUCKET).key(&key).send().await.unwrap();
    });
    let out = h.wsctl(&["rollback", "--stage", "rbx", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no longer in the bucket") && err.contains(&format!("connect (s3://{BUCKET}/{key})")),
        "{}",
        text(&out)
    );
    assert!(!err.contains("publish (s3://"), "only what is missing is named: {}", text(&out));
    unchanged("a missing artifact");
}

#[test]
fn a_deploy_that_fails_its_code_check_is_not_recorded() {
    let h = Harness::new("rbf", &stage());
    let b1 = h.manifest("dist1", |f| format!("{f} build 1"));
    assert!(h.deploy(&b1, false).status.success());
    // Other bytes planted under the key of build 2's connect zip: the stacks update, then
    // the code check fails the deploy.
    let b2 = h.manifest("dist2", |f| format!("{f} build 2"));
    let m2: Value = serde_json::from_str(&std::fs::read_to_string(&b2).unwrap()).unwrap();
    let key = format!("wsctl/artifacts/{}.zip", m2["functions"]["connect"]["sha256"].as_str().unwrap());
    h.runtime().block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&h.sdk().await).force_path_style(true).build(),
        );
        let planted = crate::deploy_support::stored_zip("bootstrap", b"not the build");
        s3.put_object().bucket(BUCKET).key(&key).body(planted.into()).send().await.unwrap();
    });
    let out = h.deploy(&b2, true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(json(&out).get("historyEntry").is_none(), "{}", text(&out));
    let listed = history(&h);
    assert_eq!(numbers(&listed), [1], "only the successful deploy: {listed:#}");
    assert_eq!(listed["live"], Value::Null, "the functions run code no entry has: {listed:#}");

    // With no live entry there is no "previous" one; a chosen entry still rolls back.
    let out = h.wsctl(&["rollback", "--stage", "rbf", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches no history entry"), "{}", text(&out));
    let out = h.wsctl(&["rollback", "--stage", "rbf", "--yes", "--to", "1", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["rollback"], serde_json::json!({ "to": 1 }), "{}", text(&out));
    assert_eq!(deployed(&h).latest, manifest_code(&b1));
    let listed = history(&h);
    assert_eq!((numbers(&listed), listed["live"].clone()), (vec![2, 1], Value::from(2)), "{listed:#}");
}

/// After CodeDeploy rolled a canary back, `$LATEST` holds the new build but the `live` alias,
/// which every caller goes through, points at the old version: the history calls the old
/// build live, and `rollback` would start from it. moto's CloudFormation creates no alias,
/// so the test creates the one CodeDeploy would have left.
#[test]
fn the_live_entry_is_the_code_behind_the_live_alias_not_latest() {
    let h = Harness::new("ra", &stage());
    let b1 = h.manifest("dist1", |f| format!("{f} build 1"));
    assert_eq!(json(&h.deploy(&b1, true))["historyEntry"], 1);
    let b2 = h.manifest("dist2", |f| format!("{f} build 2"));
    assert_eq!(json(&h.deploy(&b2, true))["historyEntry"], 2);
    assert_eq!(history(&h)["live"], 2, "no alias (moto): $LATEST runs build 2");

    let b1_code = manifest_code(&b1);
    h.runtime().block_on(async {
        let lambda = aws_sdk_lambda::Client::new(&h.sdk().await);
        for f in FUNCTIONS {
            let name = format!("wsctl-ra-app-{f}");
            let versions = lambda.list_versions_by_function().function_name(&name).send().await.unwrap();
            let build_1 = versions
                .versions()
                .iter()
                .filter(|v| v.version() != Some("$LATEST"))
                .find(|v| v.code_sha256() == Some(b1_code[f].as_str()))
                .and_then(|v| v.version())
                .unwrap_or_else(|| panic!("{f}: build 1's published version"))
                .to_owned();
            lambda.create_alias().function_name(&name).name("live").function_version(build_1).send().await.unwrap();
        }
    });
    let listed = history(&h);
    assert_eq!(listed["live"], 1, "the alias runs build 1: {listed:#}");
    assert_eq!(deployed(&h).latest, manifest_code(&b2), "while $LATEST holds build 2");
}
