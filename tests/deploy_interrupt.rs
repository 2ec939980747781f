//! `wsctl deploy` stopped mid-way — Ctrl-C, SIGTERM from a cancelled CI job, SIGKILL of a
//! dead runner — against a real `moto_server`: the stack is left unchanged or running to
//! completion, the report says which and what the next deploy does, and the next deploy
//! does exactly that.
//!
//! The moment between a change set's creation and its execution is made deterministic by
//! an HTTP proxy that holds the ExecuteChangeSet call (it never reaches moto). A stack
//! still being worked on by CloudFormation is a real CREATE_IN_PROGRESS stack in moto:
//! one whose custom resource has not answered yet, released by the test.
//!
//! moto executes change sets synchronously and implements neither CancelUpdateStack nor
//! ContinueUpdateRollback, so the cancel-and-roll-back of an update in progress and the
//! continuation of a failed rollback are covered by the status table's unit tests only.

use crate::deploy_support::hold::HoldProxy;
use crate::deploy_support::{json, stack, stage_yaml, text, Harness};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const SLOW: Duration = Duration::from_secs(180);

/// Writes build `n` of every function and deploys it; returns its manifest.
fn deployed_build(h: &Harness, n: u32) -> PathBuf {
    let manifest = h.manifest(&format!("dist{n}"), |f| format!("{f} build {n}"));
    let out = h.deploy(&manifest, false);
    assert!(out.status.success(), "{}", text(&out));
    manifest
}

/// Deploys `manifest` through a proxy that holds the first call whose body contains all of
/// `hold`; once it is held, sends `signal` and returns what wsctl did.
fn deploy_stopped_at(h: &Harness, manifest: &Path, hold: &[&str], signal: i32) -> Output {
    let proxy = HoldProxy::start(h.moto.addr(), hold);
    let run = h.spawn(&h.deploy_args(manifest), Some(&proxy.endpoint()));
    proxy.wait_held(SLOW);
    run.signal(signal);
    run.finish(SLOW)
}

fn field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v:#}"))
}

#[test]
fn ctrl_c_between_change_set_and_execution_leaves_the_stack_unchanged_and_the_next_deploy_applies_it() {
    let h = Harness::new("intr", &stage_yaml(""));
    deployed_build(&h, 1);
    let before = h.code_shas();

    // Build 2, through a proxy that holds the app stack's ExecuteChangeSet.
    let v2 = h.manifest("dist2", |f| format!("{f} build 2"));
    let out = deploy_stopped_at(&h, &v2, &["Action=ExecuteChangeSet", "StackName=wsctl-intr-app"], libc::SIGINT);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["interrupted"], true, "{report:#}");
    assert_eq!(report["ok"], false);
    let app = stack(&report, "app");
    assert_eq!(app["action"], "interrupted", "{report:#}");
    assert!(field(app, "message").contains("change set deleted, stack unchanged"), "{report:#}");
    assert!(field(app, "nextDeploy").contains("updates the stack"), "{report:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wsctl-intr-app: INTERRUPTED"), "{}", text(&out));
    assert!(stderr.contains("next deploy: updates the stack"), "{}", text(&out));

    // Unchanged: the functions run build 1 and no change set is left to run.
    assert_eq!(h.code_shas(), before);
    assert!(h.executable_change_sets("wsctl-intr-app").is_empty());

    // The next deploy applies build 2; the artifacts the interrupted run uploaded stay.
    let next = h.deploy(&v2, true);
    assert!(next.status.success(), "{}", text(&next));
    let report = json(&next);
    assert_eq!(stack(&report, "app")["action"], "updated", "{report:#}");
    assert!(report["artifacts"].as_array().unwrap().iter().all(|a| a["uploaded"] == false), "{report:#}");
    let after = h.code_shas();
    for ((f, old), (_, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "{f} runs build 2");
    }
}

#[test]
fn a_deploy_killed_before_its_first_create_ran_is_cleaned_up_and_resumed_by_the_next() {
    let h = Harness::new("killed", &stage_yaml(""));
    let v1 = h.manifest("dist", |f| format!("{f} build 1"));
    let out = deploy_stopped_at(&h, &v1, &["Action=ExecuteChangeSet", "StackName=wsctl-killed-data"], libc::SIGKILL);
    assert_eq!(out.status.code(), None, "killed: {}", text(&out));

    // What a killed run leaves: the bootstrap stack, and an empty data stack in review
    // with the change set that never ran.
    assert_eq!(h.stack_status("wsctl-bootstrap").as_deref(), Some("CREATE_COMPLETE"));
    assert_eq!(h.stack_status("wsctl-killed-data").as_deref(), Some("REVIEW_IN_PROGRESS"));
    assert_eq!(h.executable_change_sets("wsctl-killed-data").len(), 1);
    assert_eq!(h.stack_status("wsctl-killed-app"), None);

    let plan = h.wsctl(&["plan", "--stage", "killed", "--manifest", v1.to_str().unwrap()]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout)
            .contains("wsctl-killed-data is REVIEW_IN_PROGRESS: deploy will first remove"),
        "{}",
        text(&plan)
    );

    let next = h.deploy(&v1, true);
    assert!(next.status.success(), "{}", text(&next));
    let report = json(&next);
    assert_eq!(stack(&report, "bootstrap")["action"], "unchanged", "{report:#}");
    assert_eq!(stack(&report, "data")["action"], "created", "{report:#}");
    assert_eq!(stack(&report, "app")["action"], "created", "{report:#}");
    assert!(
        String::from_utf8_lossy(&next.stderr).contains("an empty stack made by a change set that never ran"),
        "{}",
        text(&next)
    );
    assert_eq!(h.stack_status("wsctl-killed-data").as_deref(), Some("CREATE_COMPLETE"));
    assert!(h.executable_change_sets("wsctl-killed-data").is_empty());
    assert!(h.code_shas().iter().all(|(_, sha)| !sha.is_empty()), "every function exists");
}

/// A CREATE_IN_PROGRESS stack named `name` that stays so until [`release`]: its one
/// resource is a custom resource whose function never answers (moto cannot run it).
fn create_in_progress(h: &Harness, name: &str) -> String {
    let function = r#"{"Resources":{
        "Role":{"Type":"AWS::IAM::Role","Properties":{"AssumeRolePolicyDocument":{"Version":"2012-10-17",
            "Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}}},
        "Fn":{"Type":"AWS::Lambda::Function","Properties":{"Runtime":"python3.12","Handler":"index.handler",
            "Role":{"Fn::GetAtt":["Role","Arn"]},"Code":{"ZipFile":"def handler(event, context):\n    pass\n"}}}},
        "Outputs":{"Arn":{"Value":{"Fn::GetAtt":["Fn","Arn"]}}}}"#;
    h.runtime().block_on(async {
        let cfn = aws_sdk_cloudformation::Client::new(&h.sdk().await);
        cfn.create_stack().stack_name("custom-resource-fn").template_body(function).send().await.expect("fn stack");
        let out = cfn.describe_stacks().stack_name("custom-resource-fn").send().await.expect("describe fn stack");
        let arn = out.stacks()[0].outputs()[0].output_value().expect("function arn").to_owned();
        let held =
            format!(r#"{{"Resources":{{"Hold":{{"Type":"Custom::Hold","Properties":{{"ServiceToken":"{arn}"}}}}}}}}"#);
        let created = cfn.create_stack().stack_name(name).template_body(held).send().await.expect("held stack");
        created.stack_id().expect("stack id").to_owned()
    })
}

/// Answers the custom resource of [`create_in_progress`]: the stack completes.
fn release(h: &Harness, stack_id: &str) {
    let body = serde_json::json!({ "Status": "SUCCESS", "StackId": stack_id, "LogicalResourceId": "Hold", "Data": {} });
    let path =
        format!("/cloudformation_us-east-1/cfnresponse?stack={}", stack_id.replace(':', "%3A").replace('/', "%2F"));
    let r = h
        .moto
        .request("POST", &path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
        .expect("cfnresponse");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_stack_still_in_progress_is_waited_for_sigterm_leaves_it_running_and_the_next_deploy_resumes() {
    let h = Harness::new("busy", &stage_yaml(""));
    let v1 = h.manifest("dist", |f| format!("{f} build 1"));
    let data_id = create_in_progress(&h, "wsctl-busy-data");
    let args = h.deploy_args(&v1);

    // A CI job cancelled while the deploy waits: SIGTERM stops waiting, touches nothing.
    let run = h.spawn(&args, None);
    run.wait_for_output("waiting for it to finish before deploying", SLOW);
    run.signal(libc::SIGTERM);
    let out = run.finish(SLOW);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let report = json(&out);
    let data = stack(&report, "data");
    assert_eq!(data["action"], "interrupted", "{report:#}");
    assert_eq!(data["status"], "CREATE_IN_PROGRESS", "{report:#}");
    assert!(field(data, "message").contains("left running"), "{report:#}");
    assert!(field(data, "nextDeploy").contains("waits for CloudFormation to finish"), "{report:#}");
    assert!(report["stacks"].as_array().unwrap().iter().all(|s| s["kind"] != "app"), "{report:#}");
    assert_eq!(h.stack_status("wsctl-busy-data").as_deref(), Some("CREATE_IN_PROGRESS"));
    assert!(h.executable_change_sets("wsctl-busy-data").is_empty());

    // `status` says what the next deploy will do with it.
    let status = h.wsctl(&["status", "--stage", "busy", "--output", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let status = json(&status);
    let next = status["stacks"][1]["nextDeploy"].as_str().unwrap_or_default();
    assert!(next.contains("waits for CloudFormation to finish"), "{status:#}");
    assert!(status["stacks"][0]["nextDeploy"].is_null(), "a settled stack has no advice: {status:#}");

    // A plan says what deploy will do first, and plans the app as if the data stack were new.
    let plan = h.wsctl(&["plan", "--stage", "busy", "--manifest", v1.to_str().unwrap()]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(shown.contains("wsctl-busy-data is CREATE_IN_PROGRESS: deploy will first wait"), "{}", text(&plan));

    // The next deploy waits too, and carries on once CloudFormation is done.
    let run = h.spawn(&args, None);
    run.wait_for_output("waiting for it to finish before deploying", SLOW);
    release(&h, &data_id);
    let out = run.finish(SLOW);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(stack(&report, "data")["action"], "updated", "{report:#}");
    assert_eq!(stack(&report, "app")["action"], "created", "{report:#}");
    assert!(h.code_shas().iter().all(|(_, sha)| !sha.is_empty()), "every function exists");
}

#[test]
fn ctrl_c_at_the_confirmation_prompt_deletes_the_change_set() {
    let h = Harness::new("tty", &stage_yaml(""));
    deployed_build(&h, 1);
    let before = h.code_shas();

    let v2 = h.manifest("dist2", |f| format!("{f} build 2"));
    let mut run = h.spawn_in_terminal(&["deploy", "--stage", "tty", "--manifest", v2.to_str().unwrap()]);
    run.wait_for_output("Update stack wsctl-tty-app? [y/N]", SLOW);
    run.type_keys(b"\x03");
    let out = run.finish(SLOW);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(shown.contains("wsctl-tty-app: INTERRUPTED"), "{}", text(&out));
    assert!(shown.contains("change set deleted, stack unchanged"), "{}", text(&out));
    assert!(shown.contains("stage tty: deploy interrupted"), "{}", text(&out));
    assert_eq!(h.code_shas(), before);
    assert!(h.executable_change_sets("wsctl-tty-app").is_empty());
}

#[test]
fn destroy_removes_what_a_killed_first_deploy_left() {
    let h = Harness::new("undo", &stage_yaml(""));
    let v1 = h.manifest("dist", |f| format!("{f} build 1"));
    deploy_stopped_at(&h, &v1, &["Action=ExecuteChangeSet", "StackName=wsctl-undo-data"], libc::SIGKILL);
    assert_eq!(h.stack_status("wsctl-undo-data").as_deref(), Some("REVIEW_IN_PROGRESS"));

    let out = h.wsctl(&["destroy", "--stage", "undo", "--yes", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["stacks"][0]["name"], "wsctl-undo-data", "{report:#}");
    assert_eq!(report["stacks"][0]["action"], "deleted", "{report:#}");
    assert_eq!(h.stack_status("wsctl-undo-data"), None);
}

#[test]
fn ctrl_c_while_the_change_set_is_computed_deletes_it() {
    let h = Harness::new("calc", &stage_yaml(""));
    deployed_build(&h, 1);
    let before = h.code_shas();

    // Hold the first look at the app stack's new change set: wsctl is then waiting for
    // CloudFormation to compute it.
    let v2 = h.manifest("dist2", |f| format!("{f} build 2"));
    let out = deploy_stopped_at(&h, &v2, &["Action=DescribeChangeSet", "StackName=wsctl-calc-app"], libc::SIGINT);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let report = json(&out);
    let app = stack(&report, "app");
    assert_eq!(app["action"], "interrupted", "{report:#}");
    assert!(field(app, "message").contains("change set deleted, stack unchanged"), "{report:#}");
    assert_eq!(h.code_shas(), before);
    assert!(h.executable_change_sets("wsctl-calc-app").is_empty());
}
