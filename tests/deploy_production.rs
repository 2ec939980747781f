//! Issue 14's production features deployed on moto, as far as moto runs them.
//!
//! Tracing: the app stack with the X-Ray policy and every function depending on it deploys.
//! What it sets cannot be read back: moto's CloudFormation ignores a function's
//! `TracingConfig` (it reports `PassThrough`, as it ignores `Architectures`), and answers
//! ListStackResources/DescribeStackResources of this stack with a 500, so the mode and the
//! policy's grant are checked on the rendered template (`tests/template_production.rs`).
//! The custom domain's resources (ApiGatewayV2, and Route 53 aliases to it) are skipped by
//! moto altogether.

use crate::deploy_support::{stack, stage_yaml, text, Harness, FUNCTIONS};

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
