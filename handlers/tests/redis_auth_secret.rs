//! The Redis AUTH token path of the Lambda functions, against real components: the token
//! sits in Secrets Manager (`moto_server`), Redis (`redis-server --requirepass`) demands
//! it, and the functions get only the secret's ARN (`REDIS_AUTH_SECRET_ARN`).
//!
//! The token uses characters an ElastiCache token may hold that a URL may not (`:`, `%`,
//! `#`, `?`…), so the percent-encoding into the Redis URL is exercised for real.

use crate::moto_sdk::moto_sdk;
use std::collections::HashMap;
use wsctl_handlers::lambda::LambdaEnv;
use wsctl_testkit::{MotoServer, RedisServer};

const TOKEN: &str = "T0ken:with%odd#chars?&=+!~*()$,;[]^_|-long-enough-for-elasticache";

/// A secret holding `value`; returns its ARN.
async fn secret(sdk: &aws_config::SdkConfig, name: &str, value: &str) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let out = sm.create_secret().name(name).secret_string(value).send().await.expect("create the secret");
    out.arn().expect("secret arn").to_owned()
}

fn env(redis: &RedisServer, secret_arn: Option<&str>) -> LambdaEnv {
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("CONNECTIONS_TABLE", "connections".to_owned()),
        ("API_KEYS_TABLE", "api-keys".to_owned()),
        ("REDIS_URL", redis.url()),
        ("WS_MANAGEMENT_ENDPOINT", "https://abc123.execute-api.us-east-1.amazonaws.com/live".to_owned()),
    ]);
    if let Some(arn) = secret_arn {
        vars.insert("REDIS_AUTH_SECRET_ARN", arn.to_owned());
    }
    LambdaEnv::from_lookup(|k| vars.get(k).cloned()).expect("environment")
}

#[tokio::test]
async fn the_token_comes_from_secrets_manager_and_unlocks_redis() {
    let moto = MotoServer::shared();
    let redis = RedisServer::start_with_args(&["--requirepass", TOKEN]).expect("redis-server --requirepass");
    let sdk = moto_sdk(moto).await;
    let arn = secret(&sdk, "wsctl/test/redis-auth-ok", TOKEN).await;

    // The token is fetched at cold start and Redis accepts it.
    let svc = env(&redis, Some(&arn)).services_from(&sdk, true).await.expect("services");
    assert!(svc.limit_state.take_token("c:auth-check", 10, 10).await.expect("an authenticated Redis call"));

    // Without the token Redis refuses, and the error does not carry the token.
    let svc = env(&redis, None).services_from(&sdk, true).await.expect("services");
    let err = svc.limit_state.take_token("c:auth-check", 10, 10).await.expect_err("Redis demands AUTH").to_string();
    assert!(err.contains("NOAUTH") || err.to_lowercase().contains("auth"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");

    // A wrong token in the secret is refused the same way, and not echoed.
    let wrong = secret(&sdk, "wsctl/test/redis-auth-wrong", "not-the-token-0123456789").await;
    let svc = env(&redis, Some(&wrong)).services_from(&sdk, true).await.expect("services");
    let err = svc.limit_state.take_token("c:auth-check", 10, 10).await.expect_err("a wrong token").to_string();
    assert!(!err.contains("not-the-token-0123456789"), "{err}");
}

#[tokio::test]
async fn a_missing_secret_stops_the_cold_start_and_the_authorizer_never_reads_it() {
    let moto = MotoServer::shared();
    let redis = RedisServer::shared();
    let sdk = moto_sdk(moto).await;
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:wsctl/test/absent-AbCdEf";

    let err = match env(redis, Some(arn)).services_from(&sdk, true).await {
        Ok(_) => panic!("a missing secret must stop the cold start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot read the Redis AUTH token from") && err.contains(arn), "{err}");

    // needs_redis = false (the authorizer): Secrets Manager is not asked at all.
    assert!(env(redis, Some(arn)).services_from(&sdk, false).await.is_ok());
}
