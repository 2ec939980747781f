//! Issue 14's production features in the rendered templates: X-Ray tracing (`lambda.tracing`),
//! the custom domain (`api.domain`) and the CI deploy role (`ci:`). moto skips ApiGatewayV2
//! and cannot check IAM trust conditions, so these are the rendered templates' invariants;
//! `cfn-lint` and checkov run on them through `tests/template.rs` and `scripts/checkov.sh`.

use crate::common::templates::{render_json, wsctl_in};
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
