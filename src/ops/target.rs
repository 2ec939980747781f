//! Where an operator command acts: the running local gateway (`--stage local`), or a
//! deployed stage's AWS resources, named by its app stack's outputs.
//!
//! Deployed stages are reached like this: connection records and keys in DynamoDB
//! directly, live connection state through the API Gateway management API, and Redis
//! (rooms) through the stage's `admin` Lambda, since Redis sits inside the VPC. The names
//! come from the app stack (`<prefix>-app`) outputs, read once per command with
//! DescribeStacks; each can be overridden (flags or `WSCTL_*` variables), which is how the
//! tests point wsctl at moto_server and how a stage deployed by other means is operated.

use crate::aws::AwsTarget;
use crate::contract::{self, output, Function, LIVE_ALIAS};
use crate::local::{AdminClient, LocalState};
use crate::stage::Stage;
use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::OnceCell;
use wsctl_handlers::admin::{AdminReply, AdminRequest, MAX_PAGE};
use wsctl_handlers::lambda::PublishResult;
use wsctl_handlers::protocol::ErrorCode;
use wsctl_handlers::sender::{ManagementApiConfig, ManagementApiSender};
use wsctl_handlers::service::PublishReport;
use wsctl_handlers::store::dynamo::{self, DynamoConnectionStore, DynamoKeyStore};

/// Which stage a command acts on.
#[derive(Debug, Clone)]
pub struct TargetArgs {
    /// Stage: `local` (the running `wsctl dev`) or a deployed stage (stages/NAME.yaml).
    pub stage: String,
    /// State directory of the local gateway (`--stage local`).
    pub state_dir: PathBuf,
    /// Overrides of the deployed stage's stack outputs.
    pub overrides: Overrides,
}

/// Names normally read from a deployed stage's app stack outputs. When every name a
/// command needs is given, wsctl does not call CloudFormation at all.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Connections table (default: app stack output ConnectionsTableName).
    pub connections_table: Option<String>,
    /// API-keys table (default: app stack output ApiKeysTableName).
    pub api_keys_table: Option<String>,
    /// Management API endpoint, https://{api}.execute-api.{region}.amazonaws.com/{stage}
    /// (default: app stack output ManagementEndpoint).
    pub management_endpoint: Option<String>,
    /// `admin` Lambda function, invoked through its `live` alias (default: app stack output AdminFunctionName).
    pub admin_function: Option<String>,
    /// `publish` Lambda function, invoked through its `live` alias (default: app stack output PublishFunctionName).
    pub publish_function: Option<String>,
    /// WebSocket URL, wss://… (default: app stack output WebSocketUrl).
    pub websocket_url: Option<String>,
}

/// The stage a command acts on.
pub enum Target {
    /// The running `wsctl dev`, through its `/@admin` endpoint.
    Local(AdminClient),
    /// A deployed stage.
    Deployed(Box<Deployed>),
}

impl Target {
    /// Resolves `--stage`: `local` needs a running gateway; any other name needs its stage
    /// file, a region and AWS credentials (the stack outputs are read when first needed).
    pub async fn resolve(stages: &Path, aws: &AwsTarget, args: &TargetArgs) -> Result<Target> {
        if args.stage == "local" {
            return Ok(Target::Local(LocalState::existing(&args.state_dir)?.admin_client()?));
        }
        let stage = Stage::load(stages, &args.stage)?;
        let region = stage.region.clone().ok_or_else(|| {
            anyhow!(
                "stage '{}' has no `region:` in its stage file, so it is not a deployed stage; \
                 add `region:` and deploy it (`wsctl deploy --stage {}`), or use --stage local",
                stage.name,
                stage.name
            )
        })?;
        // The stage file's region wins; --region may only repeat it.
        let sdk = crate::aws::sdk_config(aws, &stage.name, Some(&region)).await?;
        check_credentials(&sdk, &stage.name).await?;
        Ok(Target::Deployed(Box::new(Deployed {
            stage: stage.name.clone(),
            account: stage.account.clone(),
            profile: aws.profile.clone(),
            region,
            app_stack: contract::app_stack(&stage),
            sdk,
            overrides: args.overrides.clone(),
            outputs: OnceCell::new(),
        })))
    }

    /// Before a command changes a deployed stage: checks that the credentials belong to the
    /// stage file's `account:` (when it names one) and prints where the change goes
    /// (`stage prod → account …/eu-west-1 (profile X)`) on stderr. `None` for `local`.
    pub async fn guard_write(&self) -> Result<Option<crate::aws::TargetLine>> {
        let Target::Deployed(d) = self else { return Ok(None) };
        let sts = aws_sdk_sts::Client::new(&d.sdk);
        let me = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(crate::deploy::sdk_error)
            .context("asking STS which account these credentials belong to")?;
        let account = me.account().unwrap_or_default().to_owned();
        if let Some(expected) = d.account.as_deref() {
            if account != expected {
                bail!(
                    "refusing to change stage '{}': the credentials belong to account {account} ({}), but                      stages/{}.yaml says `account: \"{expected}\"`; switch profile (--profile) or fix the stage file",
                    d.stage,
                    me.arn().unwrap_or("unknown identity"),
                    d.stage
                );
            }
        }
        let target = crate::aws::TargetLine {
            stage: d.stage.clone(),
            account,
            region: d.region.clone(),
            profile: d.profile.clone(),
            caller: me.arn().map(str::to_owned),
        };
        target.announce();
        Ok(Some(target))
    }

    /// The stage's name.
    pub fn stage_name(&self) -> &str {
        match self {
            Target::Local(_) => "local",
            Target::Deployed(d) => &d.stage,
        }
    }

    /// Runs one operator request where the stage serves it: the local gateway's `/@admin`;
    /// on a deployed stage the `admin` function, or, for keys and kicks, the stage's tables
    /// and management API directly ([`super::deployed`]).
    pub async fn call(&self, request: &AdminRequest) -> Result<Answer, AdminError> {
        match self {
            Target::Deployed(d) if super::deployed::serves(request) => super::deployed::call(d, request).await,
            _ => Ok(Answer { reply: self.admin().await?.call(request).await?, warnings: Vec::new() }),
        }
    }

    /// Publishes to a room: through the local gateway's `/@admin`, or through a deployed
    /// stage's `publish` function, the path producers use.
    pub async fn publish(&self, room: &str, data: serde_json::Value) -> Result<PublishReport, AdminError> {
        let Target::Deployed(d) = self else {
            return match self.call(&AdminRequest::Publish { room: room.to_owned(), data }).await?.reply {
                AdminReply::Published { report } => Ok(report),
                other => Err(unexpected(&other).into()),
            };
        };
        // The publish function's own event: {"room": …, "data": …}.
        let event = serde_json::json!({ "room": room, "data": data });
        match d.publish_function().await?.invoke::<_, PublishResult>(&event).await? {
            PublishResult::Ok(report) => Ok(report),
            PublishResult::Err { code, message } => Err(AdminError::Refused { code, message }),
        }
    }

    /// The channel for typed admin requests: the gateway, or the stage's `admin` Lambda.
    pub async fn admin(&self) -> Result<Admin<'_>> {
        match self {
            Target::Local(client) => Ok(Admin::Gateway(client)),
            Target::Deployed(d) => Ok(Admin::Lambda(d.admin_function().await?)),
        }
    }
}

/// What a stage answered to one request, and what it could not do alongside (warnings
/// for the operator).
pub struct Answer {
    /// The reply.
    pub reply: AdminReply,
    /// What was left undone, e.g. a cleanup that will happen later by itself.
    pub warnings: Vec<String>,
}

/// A command's JSON document with `"target"` (where a write went) added, when there is one.
pub fn with_target<T: Serialize>(doc: &T, target: &Option<crate::aws::TargetLine>) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(doc)?;
    if let (Some(t), Some(map)) = (target, v.as_object_mut()) {
        map.insert("target".into(), serde_json::to_value(t)?);
    }
    Ok(v)
}

/// Fails early, with what to do, when no AWS credentials can be found.
async fn check_credentials(sdk: &SdkConfig, stage: &str) -> Result<()> {
    use aws_sdk_lambda::config::ProvideCredentials;
    let hint = "configure credentials: --profile NAME (or AWS_PROFILE), `aws sso login`, or \
                AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY";
    let provider =
        sdk.credentials_provider().ok_or_else(|| anyhow!("no AWS credentials for stage '{stage}': {hint}"))?;
    match tokio::time::timeout(Duration::from_secs(20), provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(anyhow!("no AWS credentials for stage '{stage}' ({e}): {hint}")),
        Err(_) => Err(anyhow!("no AWS credentials for stage '{stage}' (timed out looking for them): {hint}")),
    }
}

/// A deployed stage: its SDK configuration and (lazily) its app stack outputs.
pub struct Deployed {
    /// Stage name.
    pub stage: String,
    /// The stage file's `account:`, if it names one.
    account: Option<String>,
    /// `--profile`/`AWS_PROFILE`.
    profile: Option<String>,
    region: String,
    app_stack: String,
    sdk: SdkConfig,
    overrides: Overrides,
    outputs: OnceCell<BTreeMap<String, String>>,
}

impl Deployed {
    /// The app stack's outputs (DescribeStacks once per command).
    async fn outputs(&self) -> Result<&BTreeMap<String, String>> {
        self.outputs
            .get_or_try_init(|| async {
                let cfn = aws_sdk_cloudformation::Client::new(&self.sdk);
                let not_deployed = || {
                    anyhow!(
                        "stage '{}' is not deployed yet: stack {} does not exist in {}; run `wsctl deploy --stage {}`",
                        self.stage,
                        self.app_stack,
                        self.region,
                        self.stage
                    )
                };
                let out = match cfn.describe_stacks().stack_name(&self.app_stack).send().await {
                    Ok(out) => out,
                    Err(e) => {
                        let text = crate::deploy::sdk_error(e).to_string();
                        if text.contains("does not exist") {
                            return Err(not_deployed());
                        }
                        return Err(anyhow!(text)).with_context(|| {
                            format!("cannot read stack {} in {} (check credentials and region)", self.app_stack, self.region)
                        });
                    }
                };
                let stack = out.stacks().first().ok_or_else(not_deployed)?;
                let status = stack.stack_status().map(|s| s.as_str().to_owned()).unwrap_or_default();
                // The status table says what the stack is: deleted, or never created.
                let recovery = crate::deploy::Recovery::for_status(Some(&status));
                if recovery == crate::deploy::Recovery::Create {
                    return Err(not_deployed());
                }
                if matches!(recovery, crate::deploy::Recovery::DiscardReview | crate::deploy::Recovery::Recreate) {
                    bail!(
                        "stage '{}' is not deployed: stack {} is {status}; see `wsctl status --stage {}` and deploy again",
                        self.stage,
                        self.app_stack,
                        self.stage
                    );
                }
                Ok(stack
                    .outputs()
                    .iter()
                    .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
                    .collect())
            })
            .await
    }

    /// An override, else the named app stack output.
    async fn name(&self, given: &Option<String>, output: &str) -> Result<String> {
        if let Some(v) = given {
            return Ok(v.clone());
        }
        self.outputs().await?.get(output).cloned().ok_or_else(|| {
            anyhow!(
                "stack {} has no output {output}: it was deployed by an older wsctl; run `wsctl deploy --stage {}`",
                self.app_stack,
                self.stage
            )
        })
    }

    /// The connections table.
    pub async fn connection_store(&self) -> Result<DynamoConnectionStore> {
        let table = self.name(&self.overrides.connections_table, output::CONNECTIONS_TABLE).await?;
        Ok(DynamoConnectionStore::new(dynamo::client(&self.sdk), table))
    }

    /// The API-keys table.
    pub async fn key_store(&self) -> Result<DynamoKeyStore> {
        let table = self.name(&self.overrides.api_keys_table, output::API_KEYS_TABLE).await?;
        Ok(DynamoKeyStore::new(dynamo::client(&self.sdk), table))
    }

    /// The management API (GetConnection, DeleteConnection).
    pub async fn sender(&self) -> Result<ManagementApiSender> {
        let endpoint = self.name(&self.overrides.management_endpoint, output::MANAGEMENT_ENDPOINT).await?;
        Ok(ManagementApiSender::new(&self.sdk, &endpoint, ManagementApiConfig::default()))
    }

    /// The `admin` function.
    pub async fn admin_function(&self) -> Result<LambdaFn> {
        self.function(contract::ADMIN).await
    }

    /// One of the six functions: the admin and publish overrides apply, else the app stack
    /// output `{Name}FunctionName`.
    pub async fn function(&self, function: Function) -> Result<LambdaFn> {
        let given = if function == contract::ADMIN {
            &self.overrides.admin_function
        } else if function == contract::PUBLISH {
            &self.overrides.publish_function
        } else {
            &None
        };
        let name = self.name(given, &function.output_key()).await?;
        Ok(LambdaFn::new(&self.sdk, name))
    }

    /// The stage's WebSocket URL: the custom domain's (`api.domain`, output
    /// DomainWebSocketUrl) when it has one, else the execute-api URL (WebSocketUrl).
    pub async fn websocket_url(&self) -> Result<String> {
        if self.overrides.websocket_url.is_some() {
            return self.name(&self.overrides.websocket_url, output::WEBSOCKET_URL).await;
        }
        match contract::client_url(self.outputs().await?) {
            Some(url) => Ok(url.clone()),
            None => self.name(&None, output::WEBSOCKET_URL).await,
        }
    }

    /// The `publish` function.
    pub async fn publish_function(&self) -> Result<LambdaFn> {
        self.function(contract::PUBLISH).await
    }
}

/// One Lambda function, invoked synchronously through its `live` alias.
pub struct LambdaFn {
    client: aws_sdk_lambda::Client,
    name: String,
}

impl LambdaFn {
    fn new(sdk: &SdkConfig, name: String) -> Self {
        LambdaFn { client: aws_sdk_lambda::Client::new(sdk), name }
    }

    /// The function's name (or ARN) as invoked.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Invokes the function with a raw event; returns the function error kind (when the
    /// function failed) and the payload, as Lambda returned them.
    pub async fn invoke_raw(&self, event: Vec<u8>) -> Result<(Option<String>, Vec<u8>)> {
        let mut call = self.client.invoke().function_name(&self.name).payload(event.into());
        if !self.name.contains(':') {
            call = call.qualifier(LIVE_ALIAS);
        }
        let out =
            call.send().await.map_err(|e| anyhow!("{}", aws_sdk_lambda::error::DisplayErrorContext(&e))).with_context(
                || format!("cannot invoke Lambda function {} (alias {LIVE_ALIAS}); is the stage deployed?", self.name),
            )?;
        let body = out.payload().map(|b| b.as_ref().to_vec()).unwrap_or_default();
        Ok((out.function_error().map(str::to_owned), body))
    }

    /// Invokes the function with `request` as its event and parses its reply.
    pub async fn invoke<Req: Serialize, Rep: DeserializeOwned>(&self, request: &Req) -> Result<Rep> {
        let payload = serde_json::to_vec(request)?;
        let mut call = self.client.invoke().function_name(&self.name).payload(payload.into());
        // A name that already carries a qualifier (`fn:alias`, or a full ARN) is used as is.
        if !self.name.contains(':') {
            call = call.qualifier(LIVE_ALIAS);
        }
        let out = call.send().await.map_err(crate::deploy::sdk_error).with_context(|| {
            format!("cannot invoke Lambda function {} (alias {LIVE_ALIAS}); is the stage deployed?", self.name)
        })?;
        let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
        if let Some(kind) = out.function_error() {
            bail!(
                "Lambda function {} failed ({kind}): {}; see its logs in CloudWatch",
                self.name,
                String::from_utf8_lossy(body).trim()
            );
        }
        serde_json::from_slice(body).with_context(|| {
            format!(
                "unexpected reply from Lambda function {}: {}; is it the same wsctl version? redeploy the stage",
                self.name,
                String::from_utf8_lossy(body).chars().take(300).collect::<String>()
            )
        })
    }
}

/// Where typed [`AdminRequest`]s go: the local gateway's `/@admin`, or the `admin` Lambda.
pub enum Admin<'a> {
    /// The running `wsctl dev`.
    Gateway(&'a AdminClient),
    /// A deployed stage's `admin` function.
    Lambda(LambdaFn),
}

/// Connections per `list_connections` page through the `admin` function: each one costs
/// the function a DynamoDB read, a Redis read and a GetConnection, and a page must finish
/// well within the function's timeout (10 s on the dev stage).
const LAMBDA_CONNECTION_PAGE: usize = 50;

/// An admin request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The stage answered with a typed refusal (the code of [`AdminReply::Error`]).
    #[error("{}", refusal(*.code, .message))]
    Refused {
        /// What kind of refusal: callers match on it (`ErrorCode::NotFound`), never on text.
        code: ErrorCode,
        /// What was wrong and what to do.
        message: String,
    },
    /// No answer: the stage could not be reached, the function failed, or the reply was unreadable.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl AdminError {
    /// A refusal with `code`.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> AdminError {
        AdminError::Refused { code, message: message.into() }
    }

    /// The stage says the connection, room or key does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, AdminError::Refused { code: ErrorCode::NotFound, .. })
    }
}

/// A refusal as the operator reads it: a missing thing says so plainly, anything else names its code.
fn refusal(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::NotFound => message.to_owned(),
        _ => format!("refused ({}): {message}", code.as_str()),
    }
}

impl Admin<'_> {
    /// Page size for `list_connections` through this channel.
    pub fn connection_page(&self) -> usize {
        match self {
            Admin::Gateway(_) => MAX_PAGE,
            Admin::Lambda(_) => LAMBDA_CONNECTION_PAGE,
        }
    }

    /// Sends one request; an [`AdminReply::Error`] becomes [`AdminError::Refused`].
    pub async fn call(&self, request: &AdminRequest) -> Result<AdminReply, AdminError> {
        let reply = match self {
            Admin::Gateway(client) => client.call(request).await?,
            Admin::Lambda(function) => function.invoke(request).await?,
        };
        match reply {
            AdminReply::Error { code, message } => Err(AdminError::Refused { code, message }),
            other => Ok(other),
        }
    }
}

/// The error for an [`AdminReply`] of the wrong kind.
pub fn unexpected(reply: &AdminReply) -> anyhow::Error {
    anyhow!("unexpected reply from the stage's admin endpoint: {reply:?}; are wsctl and the stage the same version?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_told_by_its_code_and_matched_by_its_code_alone() {
        let missing = AdminError::refused(ErrorCode::NotFound, "key key_1 not found");
        assert!(missing.is_not_found());
        assert_eq!(missing.to_string(), "key key_1 not found");
        // The words of a message never decide: only the code does.
        let forbidden = AdminError::refused(ErrorCode::Forbidden, "the scope publish was not found on this key");
        assert!(!forbidden.is_not_found());
        assert_eq!(forbidden.to_string(), "refused (forbidden): the scope publish was not found on this key");
        let failed = AdminError::from(anyhow!("connection c1 not found in the cache"));
        assert!(!failed.is_not_found());
    }

    #[test]
    fn a_deployed_stage_serves_keys_and_kicks_itself_and_the_rest_through_its_admin_function() {
        let direct = [
            AdminRequest::CreateKey {
                name: "n".into(),
                scopes: "publish".into(),
                max_connections: 0,
                room_prefix: None,
                expires_at: None,
            },
            AdminRequest::ListKeys,
            AdminRequest::RevokeKey { key_id: "key_1".into(), disconnect: true },
            AdminRequest::DeleteKey { key_id: "key_1".into() },
            AdminRequest::KickConnection { connection_id: "c1".into() },
        ];
        assert!(direct.iter().all(super::super::deployed::serves));
        let through_function = [
            AdminRequest::ShowConnection { connection_id: "c1".into() },
            AdminRequest::ListRooms { prefix: String::new(), cursor: None, limit: 10 },
            AdminRequest::ShowRoom { room: "r".into() },
            AdminRequest::Publish { room: "r".into(), data: serde_json::Value::Null },
            AdminRequest::ListConnections { key_id: None, room: Some("r".into()), cursor: None, limit: 10 },
        ];
        assert!(!through_function.iter().any(super::super::deployed::serves));
    }
}
