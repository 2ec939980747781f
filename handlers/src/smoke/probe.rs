//! The probe function: the smoke journey against the stage's public WebSocket URL, run by
//! an EventBridge schedule, its outcome written as one CloudWatch embedded-metric-format
//! (EMF) log line: `Success` and `Failure` (one of them 1) and each step's latency, in
//! namespace [`NAMESPACE`] with dimension `Stage`. The availability alarm and `wsctl
//! status` read those metrics.
//!
//! Its [`SmokeStage`] is the stage seen from inside AWS: the probe key goes into the
//! API-keys table, the publishes invoke the `publish` function's alias (the stage's own
//! publish path), GetConnection and DeleteConnection go to the management endpoint. The
//! function needs no VPC: it talks to Redis only through the stage's functions.

use super::{Budget, ConnectionShape, ProbeKey, SmokeConfig, SmokeReport, SmokeStage, StageCallError, StepStatus};

use crate::sender::{ManagementApiConfig, ManagementApiSender, Sender};
use crate::store::dynamo::{self, DynamoConnectionStore, DynamoKeyStore};
use crate::store::{now_ms, ConnectionStore, KeyStore};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// CloudWatch namespace of the probe's metrics.
pub const NAMESPACE: &str = "wsctl/probe";

/// The probe's configuration, from its environment (set by the app template).
#[derive(Debug, Clone)]
pub struct ProbeEnv {
    /// Stage name (`WSCTL_STAGE`), the metrics' `Stage` dimension.
    pub stage: String,
    /// The stage's public WebSocket URL (`PROBE_URL`).
    pub url: String,
    /// Connections table (`CONNECTIONS_TABLE`).
    pub connections_table: String,
    /// API-keys table (`API_KEYS_TABLE`).
    pub keys_table: String,
    /// The `publish` function's alias ARN (`PUBLISH_FUNCTION`).
    pub publish_function: String,
    /// Management endpoint (`WS_MANAGEMENT_ENDPOINT`).
    pub management_endpoint: String,
    /// Budgets (`PROBE_BUDGET`, the stage file's `smoke:` as JSON; defaults if unset).
    pub budget: Budget,
}

impl ProbeEnv {
    /// Reads the environment through `get` (std::env::var in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, crate::lambda::EnvError> {
        use crate::lambda::EnvError;
        let need = |name: &'static str| get(name).ok_or(EnvError { name, problem: "not set".into() });
        let budget = match get("PROBE_BUDGET") {
            Some(json) => {
                let b: Budget = serde_json::from_str(&json)
                    .map_err(|e| EnvError { name: "PROBE_BUDGET", problem: e.to_string() })?;
                b.validate()
                    .map_err(|(key, why)| EnvError { name: "PROBE_BUDGET", problem: format!("{key}: {why}") })?;
                b
            }
            None => Budget::default(),
        };
        Ok(ProbeEnv {
            stage: need("WSCTL_STAGE")?,
            url: need("PROBE_URL")?,
            connections_table: need("CONNECTIONS_TABLE")?,
            keys_table: need("API_KEYS_TABLE")?,
            publish_function: need("PUBLISH_FUNCTION")?,
            management_endpoint: need("WS_MANAGEMENT_ENDPOINT")?,
            budget,
        })
    }
}

/// The probe's state, built once per container.
pub struct Probe {
    env: ProbeEnv,
    stage: ProbeStage,
}

impl Probe {
    /// Builds the probe: `sdk` reaches DynamoDB and the management API, `lambda_sdk` the
    /// Lambda Invoke API (the same configuration in production).
    pub fn new(env: ProbeEnv, sdk: &aws_config::SdkConfig, lambda_sdk: &aws_config::SdkConfig) -> Probe {
        let stage = ProbeStage {
            keys: DynamoKeyStore::new(dynamo::client(sdk), env.keys_table.clone()),
            connections: DynamoConnectionStore::new(dynamo::client(sdk), env.connections_table.clone()),
            lambda: aws_sdk_lambda::Client::new(lambda_sdk),
            publish_function: env.publish_function.clone(),
            management: ManagementApiSender::new(sdk, &env.management_endpoint, ManagementApiConfig::default()),
        };
        Probe { env, stage }
    }
}

/// What one probe run returns (its full report is in the EMF log line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeOutcome {
    /// Every step passed within budget.
    pub ok: bool,
    /// The first failed step's name.
    pub failed_step: Option<String>,
    /// The run id (in the probe key's name).
    pub run_id: String,
}

/// One scheduled run: the journey, its EMF line on stdout, and a summary. A failed journey
/// is not a function error: it is measured (`Failure`), and an error would only make the
/// scheduler retry and count against the function's error alarm.
pub async fn probe(probe: Arc<Probe>, _event: serde_json::Value) -> Result<ProbeOutcome, lambda_runtime::Error> {
    let (report, metrics) = measure(&probe).await;
    println!("{metrics}");
    Ok(ProbeOutcome {
        ok: report.ok,
        failed_step: report.failed_step.map(|s| s.as_str().to_owned()),
        run_id: report.run_id,
    })
}

/// One journey and its EMF document.
pub async fn measure(probe: &Probe) -> (SmokeReport, serde_json::Value) {
    let run_id = {
        use rand::RngExt;
        format!("{:08x}", rand::rng().random::<u32>())
    };
    let config = SmokeConfig {
        url: probe.env.url.clone(),
        budget: probe.env.budget,
        hold: std::time::Duration::ZERO,
        run_id: run_id.clone(),
    };
    let report = super::run(&probe.stage, &config).await;
    let metrics = emf(&report, &probe.env.stage, now_ms());
    (report, metrics)
}

/// The run as one EMF document: `Success`/`Failure` counts and `<step>Ms` latencies of the
/// steps that ran, dimension `Stage`; the failed step and what it got ride along as
/// properties for Logs Insights.
pub fn emf(report: &SmokeReport, stage: &str, timestamp_ms: u64) -> serde_json::Value {
    let mut doc = serde_json::Map::new();
    let mut defs = vec![serde_json::json!({"Name": "Success", "Unit": "Count"})];
    defs.push(serde_json::json!({"Name": "Failure", "Unit": "Count"}));
    doc.insert("Success".into(), u8::from(report.ok).into());
    doc.insert("Failure".into(), u8::from(!report.ok).into());
    for s in &report.steps {
        if let (Some(ms), StepStatus::Passed | StepStatus::Failed) = (s.elapsed_ms, s.status) {
            let name = format!("{}Ms", s.step.as_str());
            defs.push(serde_json::json!({"Name": name, "Unit": "Milliseconds"}));
            doc.insert(name, ms.into());
        }
    }
    doc.insert("Stage".into(), stage.into());
    doc.insert("runId".into(), report.run_id.clone().into());
    let failure = report.failure();
    doc.insert("failedStep".into(), failure.map(|f| f.step.as_str()).into());
    doc.insert("expected".into(), failure.map(|f| f.expected.clone()).into());
    doc.insert("got".into(), failure.and_then(|f| f.got.clone()).into());
    doc.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Stage"]], "Metrics": defs}]
        }),
    );
    serde_json::Value::Object(doc)
}

/// The Lambda entry point of the `probe` binary.
pub async fn run_probe() -> Result<(), lambda_runtime::Error> {
    crate::lambda::init_logging();
    let env = ProbeEnv::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let probe = Arc::new(Probe::new(env, &sdk, &sdk));
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
        let probe = probe.clone();
        async move { self::probe(probe, event.payload).await }
    }))
    .await
}

/// The stage as the probe reaches it (see the module comment).
struct ProbeStage {
    keys: DynamoKeyStore,
    connections: DynamoConnectionStore,
    lambda: aws_sdk_lambda::Client,
    publish_function: String,
    management: ManagementApiSender,
}

fn failed(what: &str, e: impl std::fmt::Display) -> StageCallError {
    StageCallError(format!("{what}: {e}"))
}

#[async_trait]
impl SmokeStage for ProbeStage {
    async fn create_key(&self, name: &str, expires_at: u64) -> Result<ProbeKey, StageCallError> {
        let new = super::probe_key(name, expires_at);
        self.keys.create(&new.record).await.map_err(|e| failed("cannot write the API-keys table", e))?;
        Ok(ProbeKey { key_id: new.record.key_id, raw: new.raw })
    }

    async fn revoke_key(&self, key_id: &str) -> Result<(), StageCallError> {
        match self.keys.revoke(key_id, now_ms()).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StageCallError(format!("key {key_id} not found"))),
            Err(e) => Err(failed("cannot update the API-keys table", e)),
        }
    }

    async fn delete_key(&self, key_id: &str) -> Result<(), StageCallError> {
        match self.keys.delete(key_id).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StageCallError(format!("key {key_id} not found"))),
            Err(e) => Err(failed("cannot delete from the API-keys table", e)),
        }
    }

    async fn publish(&self, room: &str, data: &serde_json::Value) -> Result<u64, StageCallError> {
        let event = serde_json::json!({ "room": room, "data": data });
        let out = self
            .lambda
            .invoke()
            .function_name(&self.publish_function)
            .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
            .send()
            .await
            .map_err(|e| {
                failed(
                    &format!("cannot invoke {}", self.publish_function),
                    aws_sdk_lambda::error::DisplayErrorContext(e),
                )
            })?;
        let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
        if let Some(kind) = out.function_error() {
            return Err(StageCallError(format!(
                "{} failed ({kind}): {}",
                self.publish_function,
                String::from_utf8_lossy(body)
            )));
        }
        match serde_json::from_slice::<crate::lambda::PublishResult>(body) {
            Ok(crate::lambda::PublishResult::Ok(report)) => Ok(report.seq),
            Ok(crate::lambda::PublishResult::Err { code, message }) => {
                Err(StageCallError(format!("publish refused ({}): {message}", code.as_str())))
            }
            Err(e) => Err(failed("unexpected reply from the publish function", e)),
        }
    }

    async fn connections_of_key(&self, key_id: &str) -> Result<Vec<(String, String)>, StageCallError> {
        let page = self
            .connections
            .list_by_key(key_id, None, 100)
            .await
            .map_err(|e| failed("cannot read the connections table", e))?;
        Ok(page.items.into_iter().map(|r| (r.connection_id, r.user_agent)).collect())
    }

    async fn get_connection(&self, connection_id: &str) -> Result<Option<ConnectionShape>, StageCallError> {
        let out = self.management.get_connection(connection_id).await.map_err(|e| StageCallError(e.to_string()))?;
        Ok(out.as_ref().map(ConnectionShape::from_sdk))
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<bool, StageCallError> {
        self.management.disconnect(connection_id).await.map_err(|e| StageCallError(e.to_string()))
    }
}
