//! `wsctl smoke` on a deployed stage's paths, with nothing talking to real AWS: the probe
//! key goes into the API-keys table (moto's DynamoDB), the publishes invoke the `publish`
//! function (the real `lambda::publish` entry point behind a local Lambda Invoke API, wired
//! as the Lambda binary wires it: rooms in a real `redis-server`, sends through the
//! management API), GetConnection and DeleteConnection go to the management endpoint. The
//! "API Gateway" is a `wsctl dev` sharing that Redis and those tables, so the key the
//! journey wrote is the key the gateway authorizes, as on AWS. (tests/operator_lambda.rs
//! has the same set-up for the operator commands.)

use crate::common::publish_lambda::{loopback_stage, LoopbackStage, PUBLISH_FN};
use serde_json::Value;
use std::process::{Command, Stdio};
use wsctl_testkit::{MotoServer, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_on_a_deployed_stage_through_its_tables_publish_function_and_management_api() {
    let moto = MotoServer::shared();
    let tag = std::process::id();
    let stage = loopback_stage("smoke", "moto").await;
    let LoopbackStage { dev, connections, keys, lambda_endpoint, .. } = &stage;
    let moto_url = moto.endpoint();

    let stages = TempDir::new("wsctl-smoke-deployed").expect("temp dir");
    std::fs::write(
        stages.join("moto.yaml"),
        format!(
            "region: us-east-1\nstack_name: smoketest-{tag}\n\
             smoke: {{ connect_ms: 10000, route_ms: 10000, delivery_ms: 10000 }}\n"
        ),
    )
    .expect("stage file");
    let mut vars: Vec<(String, String)> = moto.aws_env().into_iter().filter(|(k, _)| k != "AWS_ENDPOINT_URL").collect();
    vars.extend(
        [
            ("AWS_ENDPOINT_URL_DYNAMODB", moto_url.as_str()),
            ("AWS_ENDPOINT_URL_STS", moto_url.as_str()),
            ("AWS_ENDPOINT_URL_LAMBDA", lambda_endpoint.as_str()),
            ("WSCTL_CONNECTIONS_TABLE", connections.as_str()),
            ("WSCTL_API_KEYS_TABLE", keys.as_str()),
            ("WSCTL_MANAGEMENT_ENDPOINT", dev.management.as_str()),
            ("WSCTL_PUBLISH_FUNCTION", PUBLISH_FN),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let wsctl = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsctl"));
        cmd.arg("--stages-dir").arg(stages.path()).args(args).args(["--stage", "moto", "--output", "json"]);
        for v in ["WSCTL_STAGE", "AWS_PROFILE", "AWS_ENDPOINT_URL", "WSCTL_ADMIN_FUNCTION"] {
            cmd.env_remove(v);
        }
        let out = cmd.envs(vars.iter().cloned()).stdin(Stdio::null()).output().expect("run wsctl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let doc: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), doc)
    };

    let (code, doc) = wsctl(&["smoke", "--url", &dev.url]);
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(doc["stage"], "moto");
    for s in doc["steps"].as_array().expect("steps") {
        assert_eq!(s["status"], "passed", "{s}");
    }
    assert_eq!(doc["steps"].as_array().map(Vec::len), Some(15), "{doc:#}");
    // The gateway read the key from the table: its room prefix went through DynamoDB.
    let outside = doc["steps"].as_array().expect("steps").iter().find(|s| s["step"] == "reject-outside-prefix");
    assert!(outside.is_some_and(|s| s["got"].as_str().is_some_and(|g| g.contains("\"smoke:\""))), "{doc:#}");
    // The key the journey created in the table is gone from it: revoked, then deleted.
    let (_, listed) = wsctl(&["keys", "list"]);
    let probes: Vec<&Value> = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["name"].as_str().is_some_and(|n| n.starts_with("smoke:")))
        .collect();
    assert!(probes.is_empty(), "{listed}");
}
