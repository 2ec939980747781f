//! `wsctl plan --no-build` on moto: the stacks' changes without building the handlers.
//! A stage never deployed is planned without code; a deployed one with the code it runs
//! now (its live history entry), which must plan exactly like `--manifest` of that build;
//! a stage whose running code no history entry has is refused. Every run has no cargo on
//! its `PATH`, so a build attempt would fail the test.

use crate::deploy_support::{json, text, Harness};
use serde_json::Value;
use std::process::Output;

/// `plan --stage S --output json ARGS…` with a `PATH` that holds no Rust toolchain.
fn plan(h: &Harness, args: &[&str]) -> Output {
    let mut all = vec!["plan", "--stage", h.stage.as_str(), "--output", "json"];
    all.extend(args);
    h.command(&all).env("PATH", "/usr/bin:/bin").output().expect("run wsctl plan")
}

/// One planned change: action, resource type, logical id.
type Row = (String, String, String);

/// The planned changes of every stack, by kind.
fn changes(report: &Value) -> Vec<(String, Vec<Row>)> {
    report["plan"]["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| {
            let rows = s["changes"]
                .as_array()
                .expect("changes")
                .iter()
                .map(|c| {
                    let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                    (field("action"), field("resourceType"), field("logicalId"))
                })
                .collect();
            (s["kind"].as_str().unwrap_or_default().to_owned(), rows)
        })
        .collect()
}

#[test]
fn plan_without_build_plans_a_new_stage_without_code_and_a_deployed_one_with_its_live_code() {
    let h = Harness::new("nb", &crate::deploy_support::stage_yaml(""));

    // Never deployed: every stack is created, the functions too, and nothing is built.
    let out = plan(&h, &["--no-build"]);
    assert_eq!(out.status.code(), Some(2), "changes pending: {}", text(&out));
    assert!(text(&out).contains("planning without code (--no-build)"), "{}", text(&out));
    let report = json(&out);
    assert_eq!((report["changes"].as_bool(), report["plan"]["ok"].as_bool()), (Some(true), Some(true)), "{report:#}");
    assert_eq!(report["plan"]["artifacts"], serde_json::json!([]), "no artifact is claimed: {report:#}");
    let planned = changes(&report);
    let app = &planned.iter().find(|(kind, _)| kind == "app").expect("the app stack is planned").1;
    assert!(
        app.iter()
            .any(|(action, kind, id)| action == "Add" && kind == "AWS::Lambda::Function" && id == "PublishFunction"),
        "{app:?}"
    );
    assert!(!h.dir.join("dist").exists(), "nothing was built");

    // Deployed: planned with the live build's code, exactly like `--manifest` of that build.
    let b1 = h.manifest("dist1", |f| format!("{f} build 1"));
    let deployed = json(&h.deploy(&b1, true));
    assert_eq!(deployed["ok"], true, "{deployed:#}");
    let b1 = b1.to_str().expect("utf-8 path");
    let with_manifest = plan(&h, &["--manifest", b1]);
    let without_build = plan(&h, &["--no-build"]);
    assert!(text(&without_build).contains("history entry 1"), "{}", text(&without_build));
    assert_eq!(without_build.status.code(), with_manifest.status.code(), "{}", text(&without_build));
    assert_eq!(changes(&json(&without_build)), changes(&json(&with_manifest)));
    // A stage-file change shows the same way in both.
    let stage_file = h.dir.join("stages/nb.yaml");
    let yaml = std::fs::read_to_string(&stage_file).expect("stage file");
    std::fs::write(&stage_file, yaml.replace("max_rooms_per_connection: 64", "max_rooms_per_connection: 32"))
        .expect("edit the stage file");
    let with_manifest = plan(&h, &["--manifest", b1]);
    let without_build = plan(&h, &["--no-build"]);
    assert_eq!(
        with_manifest.status.code(),
        Some(2),
        "the limit is the functions' configuration: {}",
        text(&with_manifest)
    );
    assert_eq!(without_build.status.code(), Some(2), "{}", text(&without_build));
    assert_eq!(changes(&json(&without_build)), changes(&json(&with_manifest)));

    // Code that no history entry has (here: the history is gone) is refused, not guessed.
    h.runtime().block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&h.sdk().await).force_path_style(true).build(),
        );
        let bucket = "wsctl-artifacts-123456789012-us-east-1";
        let listed = s3.list_objects_v2().bucket(bucket).prefix("wsctl/history/").send().await.expect("list");
        assert!(!listed.contents().is_empty(), "deploy recorded its history");
        for o in listed.contents() {
            s3.delete_object().bucket(bucket).key(o.key().expect("key")).send().await.expect("delete");
        }
    });
    let refused = plan(&h, &["--no-build"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("no entry of its deploy history"), "{}", text(&refused));
}
