//! `wsctl smoke` on a deployed stage's paths, with nothing talking to real AWS: the probe
//! key goes into the API-keys table (moto's DynamoDB), the publishes invoke the `publish`
//! function (the real `lambda::publish` entry point behind a local Lambda Invoke API, wired
//! as the Lambda binary wires it: rooms in a real `redis-server`, sends through the
//! management API), GetConnection and DeleteConnection go to the management endpoint. The
//! "API Gateway" is a `wsctl dev` sharing that Redis and those tables, so the key the
//! journey wrote is the key the gateway authorizes, as on AWS. (tests/operator_lambda.rs
//! has the same set-up for the operator commands.)

use crate::common::publish_lambda::PUBLISH_FN;
use crate::common::DevGateway;
use serde_json::Value;
use std::process::{Command, Stdio};
use wsctl_handlers::lambda::LambdaEnv;
use wsctl_testkit::{MotoServer, RedisServer, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_on_a_deployed_stage_through_its_tables_publish_function_and_management_api() {
    let moto = MotoServer::shared();
    let redis = RedisServer::shared();
    let tag = format!("{}", std::process::id());
    let (connections, keys) = (format!("smoke-conns-{tag}"), format!("smoke-keys-{tag}"));
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    wsctl_handlers::store::dynamo::ensure_tables(&wsctl_handlers::store::dynamo::client(&sdk), &connections, &keys)
        .await
        .expect("tables");
    let (redis_url, moto_url) = (redis.url(), moto.endpoint());
    let dev = DevGateway::start_env(
        &crate::common::repo_stages(),
        &[
            "--redis-url",
            &redis_url,
            "--dynamodb-endpoint",
            &moto_url,
            "--connections-table",
            &connections,
            "--api-keys-table",
            &keys,
        ],
        moto.aws_env(),
    );

    // The publish function, wired as the binary wires it from the template's environment.
    let env = LambdaEnv::from_lookup(|k| match k {
        "CONNECTIONS_TABLE" => Some(connections.clone()),
        "API_KEYS_TABLE" => Some(keys.clone()),
        "REDIS_URL" => Some(redis.url()),
        "WS_MANAGEMENT_ENDPOINT" => Some(dev.management.clone()),
        "WSCTL_STAGE" => Some("moto".into()),
        _ => None,
    })
    .expect("lambda env");
    let lambda_endpoint = crate::common::publish_lambda::start(env.services_with(&sdk).expect("services")).await;

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
    assert_eq!(doc["steps"].as_array().map(Vec::len), Some(13), "{doc:#}");
    // The key the journey created in the table is revoked there.
    let (_, listed) = wsctl(&["keys", "list"]);
    let probes: Vec<&Value> = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["name"].as_str().is_some_and(|n| n.starts_with("smoke:")))
        .collect();
    assert_eq!(probes.len(), 1, "{listed}");
    assert!(!probes[0]["revokedAt"].is_null(), "{listed}");
    assert_eq!(probes[0]["scopes"], serde_json::json!(["subscribe"]), "{listed}");
}
