//! A stage with `probe:` deployed on moto: the seventh function's zip is uploaded and the
//! function, its role, its schedule and the schedule's permission are created; a manifest
//! without the probe's zip is refused for such a stage, and a manifest with it deploys a
//! stage without `probe:` with nothing of the probe. moto creates these resources but never
//! fires the schedule or runs the function, and skips the availability alarm and the invoke
//! config; tests/probe.rs runs the handler, tests/template_probe.rs checks the wiring.

use crate::deploy_support::{json, stage_yaml, text, with_probe, Harness};

#[test]
fn a_probe_stage_deploys_the_probe_and_its_schedule() {
    let h = Harness::new("pr", &stage_yaml("probe: { slo_percent: 99.5, window_minutes: 30 }\n"));
    let old = h.manifest("old", |f| format!("{f} build 1"));
    let refused = h.deploy(&old, false);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("no `probe` artifact"), "{}", text(&refused));

    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    with_probe(&manifest);
    let out = h.deploy(&manifest, true);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    let probe = report["artifacts"].as_array().expect("artifacts").iter().find(|a| a["function"] == "probe").cloned();
    assert_eq!(probe.map(|a| a["uploaded"].clone()), Some(serde_json::Value::Bool(true)), "{report:#}");

    let rt = h.runtime();
    rt.block_on(async {
        let config = h.sdk().await;
        let lambda = aws_sdk_lambda::Client::new(&config);
        let f = lambda.get_function().function_name("wsctl-pr-app-probe").send().await.expect("probe function");
        let env =
            f.configuration().and_then(|c| c.environment()).and_then(|e| e.variables()).cloned().unwrap_or_default();
        assert_eq!(env.get("WSCTL_STAGE").map(String::as_str), Some("pr"), "{env:?}");
        assert!(env.get("PROBE_BUDGET").is_some_and(|b| b.contains("delivery_ms")), "{env:?}");

        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let resources = cfn.describe_stack_resources().stack_name("wsctl-pr-app").send().await.expect("resources");
        let ids: Vec<&str> = resources.stack_resources().iter().filter_map(|r| r.logical_resource_id()).collect();
        // (moto skips the metric-math alarm and the EventInvokeConfig, as it skips aliases
        // and ApiGatewayV2: they are listed without a logical id.)
        for id in ["ProbeFunction", "ProbeSchedule", "ProbePermission", "ProbeRole", "ProbeLogGroup"] {
            assert!(ids.contains(&id), "{id} not created: {ids:?}");
        }
    });

    // The same manifest (probe zip and all) deploys a stage without `probe:`: nothing of it.
    std::fs::write(h.dir.join("stages/plain.yaml"), stage_yaml("")).expect("stage file");
    let m = manifest.to_str().expect("utf-8");
    let out = h.wsctl(&["deploy", "--stage", "plain", "--yes", "--manifest", m]);
    assert!(out.status.success(), "{}", text(&out));
    rt.block_on(async {
        let lambda = aws_sdk_lambda::Client::new(&h.sdk().await);
        assert!(lambda.get_function().function_name("wsctl-plain-app-probe").send().await.is_err());
    });
}
