//! Lambda side: building [`Services`] from the environment the templates set, and the
//! adapters from API Gateway events to the handler functions. Each binary in `src/bin/`
//! is one call into this module.

use crate::admin::AdminRequest;
use crate::auth::{Identity, Scopes};
use crate::limits::Limits;
use crate::sender::{ManagementApiConfig, ManagementApiSender, SendOutcome};
use crate::service::{Caller, ConnectError, ConnectInfo, Services};
use crate::store::dynamo::{self, DynamoConnectionStore, DynamoKeyStore};
use crate::store::now_ms;
use crate::store::redis::{RedisConfig, RedisRoomStore};
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::value::RawValue;
use std::future::Future;
use std::sync::Arc;

/// Configuration read from the function's environment.
#[derive(Debug, Clone)]
pub struct LambdaEnv {
    /// Stage name.
    pub stage: String,
    /// Connections table.
    pub connections_table: String,
    /// API-keys table.
    pub keys_table: String,
    /// Redis URL (`rediss://` for TLS), without credentials.
    pub redis_url: String,
    /// Secrets Manager ARN of the Redis AUTH token (`REDIS_AUTH_SECRET_ARN`), if Redis
    /// requires one. The token is fetched at cold start, never passed in the environment.
    pub redis_auth_secret_arn: Option<String>,
    /// Cluster-mode Redis.
    pub redis_cluster: bool,
    /// Management API endpoint including the stage.
    pub management_endpoint: String,
    /// Limits (JSON in `WSCTL_LIMITS`).
    pub limits: Limits,
    /// PostToConnection calls in flight per fan-out (`WSCTL_FANOUT_CONCURRENCY`, else
    /// `limits.fanout_concurrency`).
    pub fanout_concurrency: usize,
    /// The fan-out FIFO queue (`FANOUT_QUEUE_URL`): with `limits.fanout_shards` > 0, fan-outs
    /// are queued there in shards and delivered by the `publish` function.
    pub fanout_queue_url: Option<String>,
}

/// A missing or malformed environment variable.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {problem}")]
pub struct EnvError {
    /// Variable name.
    pub name: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl LambdaEnv {
    /// Reads the environment through `get` (std::env::var in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let need = |name: &'static str| get(name).ok_or(EnvError { name, problem: "not set".into() });
        let limits = match get("WSCTL_LIMITS") {
            Some(json) => {
                serde_json::from_str(&json).map_err(|e| EnvError { name: "WSCTL_LIMITS", problem: e.to_string() })?
            }
            None => Limits::default(),
        };
        let fanout_concurrency = match get("WSCTL_FANOUT_CONCURRENCY") {
            Some(v) => v
                .parse()
                .map_err(|_| EnvError { name: "WSCTL_FANOUT_CONCURRENCY", problem: format!("not a number: {v}") })?,
            None => limits.fanout_concurrency,
        };
        Ok(LambdaEnv {
            stage: get("WSCTL_STAGE").unwrap_or_else(|| "dev".into()),
            connections_table: need("CONNECTIONS_TABLE")?,
            keys_table: need("API_KEYS_TABLE")?,
            redis_url: need("REDIS_URL")?,
            redis_auth_secret_arn: get("REDIS_AUTH_SECRET_ARN").filter(|v| !v.is_empty()),
            redis_cluster: get("REDIS_CLUSTER").is_some_and(|v| v == "true"),
            management_endpoint: need("WS_MANAGEMENT_ENDPOINT")?,
            limits,
            fanout_concurrency,
            fanout_queue_url: get("FANOUT_QUEUE_URL").filter(|v| !v.is_empty()),
        })
    }

    /// Builds the services: DynamoDB stores, Redis rooms (connected lazily), the
    /// management-API sender. With `needs_redis`, the Redis AUTH token (if any) is read
    /// from Secrets Manager first; the authorizer, which never talks to Redis, skips it.
    pub async fn services(&self, needs_redis: bool) -> Result<Services, Error> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        self.services_from(&sdk, needs_redis).await
    }

    /// Like [`LambdaEnv::services`] with a given SDK configuration (which also reaches
    /// Secrets Manager for the token).
    pub async fn services_from(&self, sdk: &aws_config::SdkConfig, needs_redis: bool) -> Result<Services, Error> {
        Ok(self.services_and_shard_worker_from(sdk, needs_redis).await?.0)
    }

    /// [`LambdaEnv::services_and_shard_worker`] after the Redis AUTH token lookup (if any).
    pub async fn services_and_shard_worker_from(
        &self,
        sdk: &aws_config::SdkConfig,
        needs_redis: bool,
    ) -> Result<(Services, Services), Error> {
        match (&self.redis_auth_secret_arn, needs_redis) {
            (Some(arn), true) => {
                let token = fetch_secret(sdk, arn).await?;
                let mut env = self.clone();
                env.redis_url = with_password(&self.redis_url, &token);
                env.services_and_shard_worker(sdk)
            }
            _ => self.services_and_shard_worker(sdk),
        }
    }

    /// The services over `redis_url` as it is (no token lookup).
    pub fn services_with(&self, sdk: &aws_config::SdkConfig) -> Result<Services, Error> {
        Ok(self.services_and_shard_worker(sdk)?.0)
    }

    /// The services (whose fan-outs are queued in shards when `FANOUT_QUEUE_URL` is set and
    /// `limits.fanout_shards` > 0) and the services that deliver one shard (same stores,
    /// sending directly through the management API).
    pub fn services_and_shard_worker(&self, sdk: &aws_config::SdkConfig) -> Result<(Services, Services), Error> {
        let direct = self.services_direct(sdk)?;
        let sender: Arc<dyn crate::sender::Sender> = match (&self.fanout_queue_url, self.limits.fanout_shards) {
            (Some(url), shards) if shards > 0 => {
                let dispatch = Arc::new(crate::fanout::SqsDispatch::new(sdk, url));
                Arc::new(crate::fanout::ShardedSender::new(
                    direct.sender.clone(),
                    dispatch,
                    shards,
                    self.limits.fanout_job_connections,
                ))
            }
            _ => direct.sender.clone(),
        };
        Ok((direct.with_sender(sender), direct))
    }

    fn services_direct(&self, sdk: &aws_config::SdkConfig) -> Result<Services, Error> {
        let ddb = dynamo::client(sdk);
        let rooms = RedisRoomStore::new(RedisConfig {
            url: self.redis_url.clone(),
            cluster: self.redis_cluster,
            history: self.limits.room_history,
            connection_ttl_secs: self.limits.record_ttl_secs(),
        })?;
        let sender = ManagementApiSender::new(
            sdk,
            &self.management_endpoint,
            ManagementApiConfig { concurrency: self.fanout_concurrency, ..Default::default() },
        );
        Ok(Services::new(
            Arc::new(rooms),
            Arc::new(DynamoConnectionStore::new(ddb.clone(), &self.connections_table)),
            Arc::new(DynamoKeyStore::new(ddb, &self.keys_table)),
            Arc::new(sender),
            self.limits.clone(),
        ))
    }
}

/// Reads a secret's string value (the Redis AUTH token).
async fn fetch_secret(sdk: &aws_config::SdkConfig, arn: &str) -> Result<String, Error> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
        format!(
            "cannot read the Redis AUTH token from {arn}: {}",
            aws_sdk_secretsmanager::error::DisplayErrorContext(e)
        )
    })?;
    out.secret_string.ok_or_else(|| format!("secret {arn} has no string value").into())
}

/// `url` with `password` added as its credentials (percent-encoded).
pub fn with_password(url: &str, password: &str) -> String {
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://:{encoded}@{}", rest.rsplit('@').next().unwrap_or(rest)),
        None => url.to_owned(),
    }
}

/// Structured JSON logs on stdout (CloudWatch), level from `RUST_LOG`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).without_time().try_init();
}

/// Runs a Lambda function: logging, services from the environment, then `handler` for
/// every event, emitting the invocation's counters as CloudWatch EMF afterwards.
pub async fn run<E, R, F, Fut>(function: &'static str, handler: F) -> Result<(), Error>
where
    E: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Arc<Services>, E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Error>> + Send,
{
    init_logging();
    let env = LambdaEnv::from_lookup(|k| std::env::var(k).ok())?;
    let services = Arc::new(env.services(function != "authorizer").await?);
    let handler = Arc::new(handler);
    let stage: Arc<str> = env.stage.into();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| {
        let services = services.clone();
        let handler = handler.clone();
        let stage = stage.clone();
        async move {
            let out = handler(services.clone(), event.payload).await;
            println!("{}", services.metrics.emf("wsctl", function, &stage, now_ms()));
            services.metrics.reset();
            out
        }
    }))
    .await
}

/// The identity API Gateway passes from the authorizer's context to every route.
pub fn identity_of(event: &ApiGatewayWebsocketProxyRequest) -> Option<Identity> {
    let a = &event.request_context.authorizer;
    // API Gateway passes context values as strings; accept numbers too.
    let field = |k: &str| {
        a.fields.get(k).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    Some(Identity {
        key_id: field("keyId")?,
        scopes: Scopes::parse_list(&field("scopes").unwrap_or_default()).ok()?,
        max_connections: field("maxConnections").and_then(|v| v.parse().ok()).unwrap_or(0),
        // Absent (not "") for a key without a prefix: context values cannot be null.
        room_prefix: field("roomPrefix"),
    })
}

fn response(status: i64, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = body.map(Body::Text);
    r
}

/// The REQUEST authorizer on `$connect`: Allow with the key's context, Deny (403) for a
/// missing, bad or revoked key or one at its connection cap. Only an internal failure (the
/// key store unreachable) is a function error.
///
/// A refusal is never a function error: canary stages roll a release back on the
/// functions' `Errors` metric, so a refusal counted there would let anyone roll back a
/// deploy with a few key-less connection attempts. (API Gateway answers 401 only when the
/// authorizer *fails* with "Unauthorized"; a missing key therefore gets 403 on AWS.)
pub async fn authorizer(
    svc: Arc<Services>,
    event: ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, Error> {
    let query = event.query_string_parameters.first("apiKey");
    let header = event.headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let method_arn = event.method_arn.clone().unwrap_or_default();
    let policy = |effect: IamPolicyEffect| {
        let mut statement = IamPolicyStatement::default();
        statement.action = vec!["execute-api:Invoke".into()];
        statement.effect = effect;
        // The method ARN ends in `/$connect`: a REST-style `stage/*/*` would not match.
        statement.resource = vec![method_arn.clone()];
        let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
        policy.version = Some("2012-10-17".into());
        policy.statement = vec![statement];
        policy
    };
    let answer = |principal: String, effect: IamPolicyEffect, context: serde_json::Value| {
        let mut r = ApiGatewayCustomAuthorizerResponse::default();
        r.principal_id = Some(principal);
        r.policy_document = policy(effect);
        r.context = context;
        r
    };
    match svc.authorize(crate::auth::extract_key(query, header)).await {
        Ok(identity) => {
            let mut context = serde_json::json!({
                "keyId": identity.key_id,
                "scopes": identity.scopes.to_string(),
                "maxConnections": identity.max_connections.to_string(),
            });
            if let Some(prefix) = &identity.room_prefix {
                context["roomPrefix"] = prefix.clone().into();
            }
            Ok(answer(identity.key_id.clone(), IamPolicyEffect::Allow, context))
        }
        Err(ConnectError::Denied(why)) => {
            tracing::info!(reason = %why, "connect denied");
            Ok(answer("denied".into(), IamPolicyEffect::Deny, serde_json::json!({})))
        }
        Err(ConnectError::Store(e)) => Err(Box::new(e)),
    }
}

/// `$connect`: records the connection.
pub async fn connect(
    svc: Arc<Services>,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, Error> {
    let ctx = &event.request_context;
    let (Some(connection_id), Some(identity)) = (ctx.connection_id.clone(), identity_of(&event)) else {
        return Ok(response(403, Some("no authorizer context: is the authorizer attached to $connect?".into())));
    };
    let info = ConnectInfo {
        connection_id,
        identity,
        source_ip: ctx.identity.source_ip.clone().unwrap_or_default(),
        user_agent: ctx.identity.user_agent.clone().unwrap_or_default(),
        connected_at_ms: u64::try_from(ctx.connected_at).unwrap_or_else(|_| now_ms()),
    };
    match svc.connect(&info).await {
        Ok(()) => Ok(response(200, None)),
        Err(ConnectError::Denied(why)) => {
            tracing::info!(connection_id = %info.connection_id, reason = %why, "connect refused");
            Ok(response(403, Some(why.to_string())))
        }
        // A function error (API Gateway answers 500 all the same): the rollback alarms
        // count exactly these, and never a refusal.
        Err(e) => {
            tracing::error!(connection_id = %info.connection_id, error = %e, "connect failed");
            Err(Box::new(e))
        }
    }
}

/// `$disconnect`: removes the connection everywhere.
pub async fn disconnect(
    svc: Arc<Services>,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, Error> {
    let id = event.request_context.connection_id.clone().unwrap_or_default();
    match svc.disconnect(&id).await {
        Ok(_) => Ok(response(200, None)),
        Err(e) => {
            // TTL and the 410 path clean up what this could not; the failure is a function
            // error, so the rollback alarms see it.
            tracing::error!(connection_id = %id, error = %e, "disconnect cleanup failed");
            Err(Box::new(e))
        }
    }
}

/// `$default`: the last frame goes back as the route response; when there are more (a
/// reply followed by replayed messages), the ones before it are posted in order through
/// the management API first, so the client sees them in order.
///
/// The route response always carries a frame: a route response without a body would
/// reach the client as an empty message.
pub async fn message(
    svc: Arc<Services>,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, Error> {
    let ctx = &event.request_context;
    let id = ctx.connection_id.clone().unwrap_or_default();
    let Some(identity) = identity_of(&event) else {
        return Ok(response(403, None));
    };
    let caller = Caller { connection_id: &id, identity: &identity, request_id: ctx.request_id.as_deref() };
    let mut frames = svc.message(caller, event.body.as_deref().unwrap_or("")).await;
    // `Services::message` answers every request with at least one frame (a reply or an
    // error); `None` would only follow from a bug there.
    let last = frames.pop().map(|f| f.as_str().to_owned());
    for frame in &frames {
        if let SendOutcome::Gone = svc.sender.send(&id, frame).await {
            break;
        }
    }
    Ok(response(200, last))
}

/// What producers send to the `publish` function.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishEvent {
    /// Room name.
    pub room: String,
    /// Any JSON value.
    pub data: Box<RawValue>,
}

/// The `publish` function's reply: the report, or an error with its code.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PublishResult {
    /// Success.
    Ok(crate::service::PublishReport),
    /// Failure.
    Err {
        /// Code.
        code: crate::protocol::ErrorCode,
        /// What was wrong and what to do.
        message: String,
    },
}

/// Runs the `publish` function: a producer's [`PublishEvent`] is published (its fan-out
/// queued in shards when sharding is on), and an SQS event of the fan-out queue is
/// delivered shard job by shard job ([`crate::fanout::deliver_event`]).
pub async fn run_publish() -> Result<(), Error> {
    init_logging();
    let env = LambdaEnv::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let (services, worker) = env.services_and_shard_worker_from(&sdk, true).await?;
    let (services, worker) = (Arc::new(services), Arc::new(worker));
    let stage: Arc<str> = env.stage.into();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let (services, worker, stage) = (services.clone(), worker.clone(), stage.clone());
        async move {
            let out = publish_or_deliver(services.clone(), &worker, &event.payload).await;
            println!("{}", services.metrics.emf("wsctl", "publish", &stage, now_ms()));
            services.metrics.reset();
            out
        }
    }))
    .await
}

/// One event of the `publish` function: a producer's message, or fan-out jobs (an SQS
/// event, recognised by its `Records`).
pub async fn publish_or_deliver(
    services: Arc<Services>,
    worker: &Services,
    payload: &RawValue,
) -> Result<serde_json::Value, Error> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "Records")]
        records: Option<serde::de::IgnoredAny>,
    }
    let is_queue_event = serde_json::from_str::<Probe>(payload.get()).is_ok_and(|p| p.records.is_some());
    if is_queue_event {
        let event: crate::fanout::SqsEvent = serde_json::from_str(payload.get())?;
        let r = crate::fanout::deliver_event(worker, &event).await;
        return Ok(serde_json::json!({ "delivered": r.delivered, "gone": r.gone.len(), "failed": r.failed }));
    }
    let event: PublishEvent = serde_json::from_str(payload.get())
        .map_err(|e| format!("not a publish event ({{\"room\": …, \"data\": …}}): {e}"))?;
    Ok(serde_json::to_value(publish(services, event).await?)?)
}

/// `publish`: fans a message out to a room.
pub async fn publish(svc: Arc<Services>, event: PublishEvent) -> Result<PublishResult, Error> {
    Ok(match svc.publish(&event.room, &event.data).await {
        Ok(report) => PublishResult::Ok(report),
        Err(e) => PublishResult::Err { code: e.code, message: e.message },
    })
}

/// `admin`: one operator request.
pub async fn admin(svc: Arc<Services>, request: AdminRequest) -> Result<crate::admin::AdminReply, Error> {
    Ok(svc.admin(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_added_percent_encoded() {
        assert_eq!(with_password("rediss://host:6379", "a/b@c%d"), "rediss://:a%2Fb%40c%25d@host:6379");
        assert_eq!(with_password("rediss://:old@host:6379", "new"), "rediss://:new@host:6379");
        let url = with_password("rediss://host:6379", "tok#en!");
        // The client percent-decodes the password it connects with.
        let info = ::redis::IntoConnectionInfo::into_connection_info(url.as_str()).expect("valid URL");
        assert_eq!(info.redis_settings().password(), Some("tok#en!"));
    }

    #[test]
    fn environment_names_the_secret_not_the_token() {
        let vars = [
            ("CONNECTIONS_TABLE", "c"),
            ("API_KEYS_TABLE", "k"),
            ("REDIS_URL", "rediss://host:6379"),
            ("REDIS_AUTH_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:x"),
            ("WS_MANAGEMENT_ENDPOINT", "https://a.execute-api.us-east-1.amazonaws.com/dev"),
        ];
        let get = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let env = LambdaEnv::from_lookup(get).unwrap();
        assert_eq!(env.redis_auth_secret_arn.as_deref(), Some("arn:aws:secretsmanager:us-east-1:1:secret:x"));
        let none = LambdaEnv::from_lookup(|k| if k == "REDIS_AUTH_SECRET_ARN" { Some(String::new()) } else { get(k) });
        assert_eq!(none.unwrap().redis_auth_secret_arn, None);
    }
}
