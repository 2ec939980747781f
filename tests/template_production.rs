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
