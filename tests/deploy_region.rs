//! The stage file decides where a stage lives, every command that changes a deployed stage
//! says where before it acts, and AWS errors say what happened and what to do (issue 11).
//!
//! Against a real `moto_server`: CI jobs (and `configure-aws-credentials`) export
//! `AWS_REGION`; it used to override the stage file's `region:` silently, so
//! `wsctl deploy --stage prod` could build a second production in another region.

use crate::deploy_support::{json, stage_yaml, text, Harness};
use std::process::Command;

const STAGE_REGION: &str = "eu-west-1";
const AMBIENT_REGION: &str = "us-west-2";

/// A stage pinned to eu-west-1 (moto serves every region).
fn pinned_stage_yaml() -> String {
    stage_yaml("").replace("region: us-east-1", &format!("region: {STAGE_REGION}"))
}

/// wsctl with moto's environment, then the ambient region of a CI job set elsewhere.
fn ambient(h: &Harness, args: &[&str]) -> Command {
    let mut cmd = h.command(args);
    cmd.env("AWS_REGION", AMBIENT_REGION).env("AWS_DEFAULT_REGION", "ap-south-1");
    cmd
}

async fn sdk_in(h: &Harness, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(h.moto.endpoint())
        .credentials_provider(aws_sdk_lambda::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// The stage's API-keys table in its region (moto leaves the app stack without outputs:
/// it skips the API resources they refer to).
fn keys_table(h: &Harness) -> String {
    h.runtime().block_on(async {
        let ddb = aws_sdk_dynamodb::Client::new(&sdk_in(h, STAGE_REGION).await);
        let tables = ddb.list_tables().send().await.expect("list tables").table_names().to_vec();
        tables.into_iter().find(|t| t.contains("ApiKeysTable")).expect("the api-keys table in the stage's region")
    })
}

/// Names of the live stacks in one region.
fn stacks_in(h: &Harness, region: &str) -> Vec<String> {
    h.runtime().block_on(async {
        let cfn = aws_sdk_cloudformation::Client::new(&sdk_in(h, region).await);
        let out = cfn.describe_stacks().send().await.expect("describe stacks");
        out.stacks()
            .iter()
            .filter(|s| s.stack_status().map(|x| x.as_str()) != Some("DELETE_COMPLETE"))
            .filter_map(|s| s.stack_name().map(str::to_owned))
            .collect()
    })
}

#[test]
fn the_stage_files_region_wins_over_the_environment_and_each_write_names_its_target() {
    let h = Harness::new("pinned", &pinned_stage_yaml());
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    let m = manifest.to_str().unwrap();

    // --region naming another region is refused before anything is touched.
    let out = ambient(&h, &["deploy", "--stage", "pinned", "--yes", "--manifest", m, "--region", AMBIENT_REGION])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("--region {AMBIENT_REGION}")) && err.contains("region: eu-west-1"), "{}", text(&out));
    assert!(stacks_in(&h, AMBIENT_REGION).is_empty());

    // With AWS_REGION and AWS_DEFAULT_REGION elsewhere, the stacks land in the stage's region.
    let out =
        ambient(&h, &["deploy", "--stage", "pinned", "--yes", "--manifest", m, "--output", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["region"], STAGE_REGION, "{report:#}");
    let target = &report["target"];
    assert_eq!(
        (target["stage"].as_str(), target["account"].as_str(), target["region"].as_str()),
        (Some("pinned"), Some("123456789012"), Some(STAGE_REGION)),
        "{report:#}"
    );
    let line = format!("stage pinned → account 123456789012/{STAGE_REGION}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&line), "the target is printed first: {}", text(&out));
    let mut here = stacks_in(&h, STAGE_REGION);
    here.sort();
    assert_eq!(here, ["wsctl-bootstrap", "wsctl-pinned-app", "wsctl-pinned-data"]);
    assert!(stacks_in(&h, AMBIENT_REGION).is_empty(), "nothing in the ambient region");
    assert!(stacks_in(&h, "ap-south-1").is_empty(), "nothing in AWS_DEFAULT_REGION's region");

    // The same region given twice is fine.
    let out = ambient(&h, &["plan", "--stage", "pinned", "--manifest", m, "--region", STAGE_REGION]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "no changes: {}", text(&out));

    // Operator writes check the account and say where they write (stdout JSON, stderr line).
    let table = keys_table(&h);
    let ambient = |h: &Harness, args: &[&str]| {
        let mut cmd = ambient(h, args);
        cmd.env("WSCTL_API_KEYS_TABLE", &table);
        cmd
    };
    let out = ambient(
        &h,
        &["keys", "create", "--stage", "pinned", "--name", "ci", "--scopes", "subscribe", "--output", "json"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let created = json(&out);
    assert_eq!(created["target"]["region"], STAGE_REGION, "{created:#}");
    assert_eq!(created["target"]["account"], "123456789012", "{created:#}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&line), "{}", text(&out));

    // A stage file naming another account refuses the write and writes nothing.
    let other = format!("{}stack_name: wsctl-pinned\n", pinned_stage_yaml().replace("123456789012", "999999999999"));
    std::fs::write(h.dir.join("stages/other.yaml"), other).unwrap();
    let out =
        ambient(&h, &["keys", "create", "--stage", "other", "--name", "ci", "--scopes", "subscribe"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("123456789012") && err.contains("999999999999"), "{}", text(&out));
    let listed = json(&ambient(&h, &["keys", "list", "--stage", "pinned", "--output", "json"]).output().unwrap());
    assert_eq!(listed["total"], 1, "only the first key was written: {listed:#}");

    // destroy names its target too (the app stack only: moto cannot delete the VPC it made).
    let out =
        ambient(&h, &["destroy", "--stage", "pinned", "--yes", "--keep-data", "--output", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["target"]["region"], STAGE_REGION, "{report:#}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&line), "{}", text(&out));
}

/// Markers of a Rust `Debug` dump of an SDK error in what a command printed.
fn debug_dump(s: &str) -> Option<&'static str> {
    ["CredentialsNotLoaded(", "DispatchFailure(", "ConnectorError {", "source: Some(", "Error {", "kind: "]
        .into_iter()
        .find(|m| s.contains(m))
}

#[test]
fn missing_credentials_and_an_unreachable_endpoint_are_explained_not_dumped() {
    let h = Harness::new("nocreds", &stage_yaml(""));
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    let m = manifest.to_str().unwrap();
    let nowhere = h.dir.join("no-such-aws-config");
    let without_credentials = |args: &[&str]| {
        let mut cmd = h.command(args);
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_CONFIG_FILE", &nowhere)
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("RUST_LOG");
        cmd.output().unwrap()
    };
    for args in [
        vec!["deploy", "--stage", "nocreds", "--yes", "--manifest", m],
        vec!["plan", "--stage", "nocreds", "--manifest", m],
        vec!["status", "--stage", "nocreds"],
        vec!["destroy", "--stage", "nocreds", "--yes"],
    ] {
        let out = without_credentials(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no AWS credentials"), "{args:?}: {}", text(&out));
        assert!(err.contains("--profile") && err.contains("aws sso login"), "{args:?} says what to do: {}", text(&out));
        assert_eq!(debug_dump(&err), None, "{args:?}: a Debug dump: {}", text(&out));
        // The SDK's credential-chain warnings stay behind -v.
        assert!(!err.contains("WARN"), "{args:?}: {}", text(&out));
    }

    // Nothing listens at the endpoint: the network is named, not dumped.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = h
        .command(&["status", "--stage", "nocreds"])
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach AWS"), "{}", text(&out));
    assert_eq!(debug_dump(&err), None, "a Debug dump: {}", text(&out));
}
