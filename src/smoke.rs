//! `wsctl smoke --stage S`: the smoke journey (`wsctl_handlers::smoke`) against a stage,
//! from outside, with the stage's own paths: on `local` the running `wsctl dev` (keys and
//! publishes through its `/@admin` endpoint, the management API at its `@connections`);
//! on a deployed stage its API-keys and connections tables, its `publish` function and
//! its management endpoint. Exit 0 only when every step passed within the stage's
//! `smoke:` budgets.

use crate::aws::AwsTarget;
use crate::exit::Outcome;
use crate::local::LocalState;
use crate::ops::target::{Target, TargetArgs};
use crate::stage::Stage;
use crate::ui::Ui;
use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use std::path::Path;
use std::time::Duration;
use wsctl_handlers::admin::{AdminReply, AdminRequest};
use wsctl_handlers::auth::Scope;
use wsctl_handlers::lambda::PublishResult;
use wsctl_handlers::sender::{ManagementApiConfig, ManagementApiSender, Sender};
use wsctl_handlers::smoke::{
    self, ConnectionShape, ProbeKey, SmokeConfig, SmokeReport, SmokeStage, StageCallError, StepStatus,
};
use wsctl_handlers::store::{now_ms, ConnectionStore, KeyStore};

/// `wsctl smoke`
#[derive(Debug)]
pub struct SmokeArgs {
    /// The stage and how to reach it.
    pub target: TargetArgs,
    /// Connect here (ws:// or wss://, e.g. the stage's custom domain) instead of the
    /// stage's WebSocket URL.
    pub url: Option<String>,
    /// Keep the subscriber connected this long before publishing, so the journey outlives
    /// the platform's timers.
    pub hold: Duration,
}

/// Runs `wsctl smoke`.
pub async fn run(stages: &Path, aws: &AwsTarget, ui: &Ui, args: SmokeArgs) -> Result<Outcome> {
    let budget = Stage::load(stages, &args.target.stage)?.smoke;
    let report = journey(stages, aws, &args.target, args.url.as_deref(), args.hold, budget).await?;
    ui.emit(&document(&args.target.stage, &report)?, || {
        print!("{}", render(&args.target.stage, &report));
        Ok(())
    })?;
    Ok(Outcome::success_if(report.ok))
}

/// `deploy --smoke`: the journey against the stage just deployed, reached through
/// `target` as `wsctl smoke --stage S` would reach it; an error when it could not run at
/// all.
pub async fn after_deploy(stages: &Path, aws: &AwsTarget, target: &TargetArgs) -> Result<SmokeReport> {
    let budget = Stage::load(stages, &target.stage)?.smoke;
    journey(stages, aws, target, None, Duration::ZERO, budget).await.context("cannot run the smoke journey")
}

/// The deploy document with `smoke` (the journey's report, or null when it did not run)
/// and `smokeError` (why it could not run, or null).
pub fn with_smoke<T: serde::Serialize>(deploy: &T, smoke: Option<&Result<SmokeReport>>) -> Result<serde_json::Value> {
    let mut doc = serde_json::to_value(deploy)?;
    if let Some(map) = doc.as_object_mut() {
        let (report, error) = match smoke {
            Some(Ok(r)) => (serde_json::to_value(r)?, serde_json::Value::Null),
            Some(Err(e)) => (serde_json::Value::Null, serde_json::Value::from(format!("{e:#}"))),
            None => (serde_json::Value::Null, serde_json::Value::Null),
        };
        map.insert("smoke".into(), report);
        map.insert("smokeError".into(), error);
    }
    Ok(doc)
}

/// The text of `deploy --smoke`'s journey (stdout), or why it could not run (stderr).
pub fn print_after_deploy(stage: &str, outcome: &Result<SmokeReport>) {
    match outcome {
        Ok(report) => print!("{}", render(stage, report)),
        Err(e) => eprintln!("error: stage {stage} deployed, but {e:#}"),
    }
}

/// The JSON document: the report with the stage's name.
pub fn document(stage: &str, report: &SmokeReport) -> Result<serde_json::Value> {
    let mut doc = serde_json::to_value(report)?;
    if let Some(map) = doc.as_object_mut() {
        map.insert("stage".into(), serde_json::Value::from(stage));
    }
    Ok(doc)
}

/// Runs the journey against `target` (also what `deploy --smoke` calls); an error only
/// when the stage cannot be reached at all, a failed step is in the report.
pub async fn journey(
    stages: &Path,
    aws: &AwsTarget,
    target_args: &TargetArgs,
    url: Option<&str>,
    hold: Duration,
    budget: smoke::Budget,
) -> Result<SmokeReport> {
    let target = Target::resolve(stages, aws, target_args).await?;
    // The journey creates and revokes a key and publishes: a write, so the account guard runs.
    target.guard_write().await?;
    let (url, management) = match &target {
        Target::Local(_) => {
            let info = LocalState::existing(&target_args.state_dir)?.gateway()?;
            let endpoint =
                target_args.overrides.management_endpoint.clone().unwrap_or_else(|| info.management_endpoint.clone());
            let url = url.map_or(info.url, str::to_owned);
            (url, ManagementApiSender::new(&local_sdk().await, &endpoint, ManagementApiConfig::default()))
        }
        Target::Deployed(d) => {
            let url = match url {
                Some(u) => u.to_owned(),
                None => d.websocket_url().await?,
            };
            (url, d.sender().await?)
        }
    };
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        bail!("--url must start with ws:// or wss:// (got {url})");
    }
    let run_id = {
        use rand::RngExt;
        format!("{:08x}", rand::rng().random::<u32>())
    };
    let config = SmokeConfig { url, budget, hold, run_id };
    let stage = CliStage { target: &target, management };
    Ok(smoke::run(&stage, &config).await)
}

/// The local gateway accepts any SigV4 signature on `@connections` (and refuses unsigned
/// calls, as AWS does), so the local management client signs with fixed dummy credentials.
async fn local_sdk() -> aws_config::SdkConfig {
    use aws_sdk_apigatewaymanagement::config::{Credentials, Region};
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "wsctl-smoke"))
        .load()
        .await
}

/// The stage as the CLI reaches it (see the module comment).
struct CliStage<'a> {
    target: &'a Target,
    management: ManagementApiSender,
}

fn unexpected(reply: &AdminReply) -> anyhow::Error {
    anyhow!("unexpected reply from the local gateway: {reply:?}; are wsctl and `wsctl dev` the same version?")
}

fn call_error(e: anyhow::Error) -> StageCallError {
    StageCallError(format!("{e:#}"))
}

impl CliStage<'_> {
    async fn admin(&self, request: AdminRequest) -> Result<AdminReply> {
        Ok(self.target.admin().await?.call(&request).await?)
    }
}

#[async_trait]
impl SmokeStage for CliStage<'_> {
    async fn create_key(&self, name: &str, expires_at: u64) -> Result<ProbeKey, StageCallError> {
        async {
            match self.target {
                Target::Local(_) => {
                    let request = AdminRequest::CreateKey {
                        name: name.to_owned(),
                        scopes: Scope::Subscribe.as_str().to_owned(),
                        max_connections: 0,
                        room_prefix: Some(smoke::ROOM_PREFIX.to_owned()),
                        expires_at: Some(expires_at),
                    };
                    match self.admin(request).await? {
                        AdminReply::KeyCreated { key, record } => Ok(ProbeKey { key_id: record.key_id, raw: key }),
                        other => Err(unexpected(&other)),
                    }
                }
                Target::Deployed(d) => {
                    let new = smoke::probe_key(name, expires_at);
                    d.key_store().await?.create(&new.record).await.context("cannot write the API-keys table")?;
                    Ok(ProbeKey { key_id: new.record.key_id, raw: new.raw })
                }
            }
        }
        .await
        .map_err(call_error)
    }

    async fn revoke_key(&self, key_id: &str) -> Result<(), StageCallError> {
        async {
            match self.target {
                Target::Local(_) => {
                    match self.admin(AdminRequest::RevokeKey { key_id: key_id.to_owned(), disconnect: true }).await? {
                        AdminReply::KeyRevoked { .. } => Ok(()),
                        other => Err(unexpected(&other)),
                    }
                }
                Target::Deployed(d) => {
                    let store = d.key_store().await?;
                    let revoked = store.revoke(key_id, now_ms()).await.context("cannot update the API-keys table")?;
                    revoked.map(|_| ()).ok_or_else(|| anyhow!("key {key_id} not found"))
                }
            }
        }
        .await
        .map_err(call_error)
    }

    async fn delete_key(&self, key_id: &str) -> Result<(), StageCallError> {
        async {
            match self.target {
                Target::Local(_) => match self.admin(AdminRequest::DeleteKey { key_id: key_id.to_owned() }).await? {
                    AdminReply::KeyDeleted { .. } => Ok(()),
                    other => Err(unexpected(&other)),
                },
                Target::Deployed(d) => {
                    let store = d.key_store().await?;
                    let deleted = store.delete(key_id).await.context("cannot delete from the API-keys table")?;
                    deleted.map(|_| ()).ok_or_else(|| anyhow!("key {key_id} not found"))
                }
            }
        }
        .await
        .map_err(call_error)
    }

    async fn publish(&self, room: &str, data: &serde_json::Value) -> Result<u64, StageCallError> {
        async {
            match self.target {
                Target::Local(_) => {
                    match self.admin(AdminRequest::Publish { room: room.to_owned(), data: data.clone() }).await? {
                        AdminReply::Published { report } => Ok(report.seq),
                        other => Err(unexpected(&other)),
                    }
                }
                Target::Deployed(d) => {
                    let event = serde_json::json!({ "room": room, "data": data });
                    match d.publish_function().await?.invoke::<_, PublishResult>(&event).await? {
                        PublishResult::Ok(report) => Ok(report.seq),
                        PublishResult::Err { code, message } => {
                            Err(anyhow!("publish refused ({}): {message}", code.as_str()))
                        }
                    }
                }
            }
        }
        .await
        .map_err(call_error)
    }

    async fn connections_of_key(&self, key_id: &str) -> Result<Vec<(String, String)>, StageCallError> {
        async {
            let records = match self.target {
                Target::Local(_) => {
                    let request = AdminRequest::ListConnections {
                        key_id: Some(key_id.to_owned()),
                        room: None,
                        cursor: None,
                        limit: 100,
                    };
                    match self.admin(request).await? {
                        AdminReply::Connections { page } => page.items.into_iter().map(|d| d.record).collect(),
                        other => return Err(unexpected(&other)),
                    }
                }
                Target::Deployed(d) => {
                    let store = d.connection_store().await?;
                    store.list_by_key(key_id, None, 100).await.context("cannot read the connections table")?.items
                }
            };
            Ok(records.into_iter().map(|r| (r.connection_id, r.user_agent)).collect())
        }
        .await
        .map_err(call_error)
    }

    async fn get_connection(&self, connection_id: &str) -> Result<Option<ConnectionShape>, StageCallError> {
        let out = self.management.get_connection(connection_id).await.map_err(|e| StageCallError(e.to_string()))?;
        Ok(out.as_ref().map(ConnectionShape::from_sdk))
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<bool, StageCallError> {
        self.management.disconnect(connection_id).await.map_err(|e| StageCallError(e.to_string()))
    }
}

/// The text report: one line per step, then the verdict naming the failed step.
pub fn render(stage: &str, report: &SmokeReport) -> String {
    use std::fmt::Write as _;
    let mut out = format!("smoke: stage {stage} at {}, room {}, run {}\n", report.url, report.room, report.run_id);
    let width = report.steps.iter().map(|s| s.step.as_str().len()).max().unwrap_or(0);
    for s in &report.steps {
        let status = match s.status {
            StepStatus::Passed => "ok  ",
            StepStatus::Failed => "FAIL",
            StepStatus::Skipped => "skip",
        };
        let elapsed = s.elapsed_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        let budget = s.budget_ms.map_or_else(String::new, |b| format!("≤ {b} ms"));
        let detail = match (&s.got, s.status) {
            (Some(got), StepStatus::Failed) => format!("expected {}; got {got}", s.expected),
            (Some(got), _) => got.clone(),
            (None, _) => format!("(expected {})", s.expected),
        };
        let _ = writeln!(out, "  {status} {:<width$}  {elapsed:>10}  {budget:<10}  {detail}", s.step.as_str());
    }
    match report.failure() {
        None => {
            let _ = writeln!(out, "smoke: ok, {} steps passed within budget", report.steps.len());
        }
        Some(f) => {
            let _ = writeln!(
                out,
                "smoke: FAILED at {}: expected {}; got {}",
                f.step.as_str(),
                f.expected,
                f.got.as_deref().unwrap_or("nothing")
            );
        }
    }
    out
}
