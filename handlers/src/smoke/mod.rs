//! The smoke journey: one synthetic user, run against a stage from outside, step by step
//! and timed. `wsctl smoke` runs it from an operator's machine or CI; the probe function
//! runs the same code every minute. What differs between the two — how a key is created
//! and revoked, how a message is published, how the management API is reached — sits
//! behind [`SmokeStage`]; the WebSocket side is the same public URL for both.
//!
//! The journey, in order (each a [`Step`]):
//! create a subscribe-only probe key limited to [`ROOM_PREFIX`]; a connect without a key
//! is refused; the probe key connects; it subscribes to the probe room; a subscribe
//! outside the prefix is refused; (optionally it is held, connected, for `hold`); a message published through the stage's publish path arrives with the seq the
//! publish reported; after the subscriber leaves, a second message is published; the
//! subscriber reconnects and `since` replays the missed one; GetConnection through the
//! management API answers in the shape AWS SDKs read; DeleteConnection closes the socket;
//! the probe key is revoked and then refused, and its record deleted. A failure skips what
//! depends on it, but the key is always revoked and deleted, and the refusal of the
//! revoked key is checked whenever the revocation went through, so a run leaves no key
//! behind. A run that dies midway (a probe function timing out) leaves a key that stops
//! connecting at its expiry, [`KEY_LIFETIME`] after the run's hold, and whose record the
//! keys table's TTL (or, locally, the next key created) removes.

mod journey;
pub mod probe;

pub use journey::run;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The room every run uses. One fixed room per stage: its history is bounded like any
/// room's, so a probe running every minute does not grow Redis; concurrent runs tell their
/// messages apart by the run id in the data and by the seq their publish returned.
pub const PROBE_ROOM: &str = "smoke:probe";

/// Prefix of the probe keys' names (`wsctl keys list` shows them).
pub const KEY_NAME_PREFIX: &str = "smoke:";

/// The rooms a probe key may name; [`PROBE_ROOM`] lies inside.
pub const ROOM_PREFIX: &str = "smoke:";

/// How long a probe key connects beyond the run's hold: far more than the steps can take
/// (each waits at most [`STEP_TIMEOUT`]), so only a run that died leaves a key to expire.
pub const KEY_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// A probe key: `subscribe` only, limited to [`ROOM_PREFIX`], expiring at `expires_at`
/// (epoch ms). Stages that write the keys table directly store its record.
pub fn probe_key(name: &str, expires_at: u64) -> crate::auth::NewKey {
    use crate::auth::{KeyLimits, Scope, Scopes};
    let limits =
        KeyLimits { max_connections: 0, room_prefix: Some(ROOM_PREFIX.to_owned()), expires_at: Some(expires_at) };
    crate::auth::generate(name, Scopes::new(vec![Scope::Subscribe]), limits, crate::store::now_ms())
}

/// Longest wait for any one reply, frame or close before a step fails as "nothing
/// arrived": long enough for a Lambda cold start, short enough for CI.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The latency budgets of a stage (`smoke:` in the stage file). A step with a budget
/// passes only if it also finished within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// A WebSocket handshake: accepted or refused (ms).
    pub connect_ms: u64,
    /// A request answered by the gateway: subscribe, and subscribe with `since` up to the
    /// replayed message (ms).
    pub route_ms: u64,
    /// From the start of a publish through the stage's publish path to the message at the
    /// subscriber (ms).
    pub delivery_ms: u64,
}

impl Default for Budget {
    /// The seed's targets: connect ≤ 100 ms, route ≤ 50 ms, delivery ≤ 500 ms.
    fn default() -> Self {
        Budget { connect_ms: 100, route_ms: 50, delivery_ms: 500 }
    }
}

/// Largest budget a stage file may set (ms): beyond [`STEP_TIMEOUT`] a step fails anyway.
pub const MAX_BUDGET_MS: u64 = 10_000;

impl Budget {
    /// Checks every value; returns the key of the first bad one and what is allowed.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, ms) in
            [("connect_ms", self.connect_ms), ("route_ms", self.route_ms), ("delivery_ms", self.delivery_ms)]
        {
            if !(1..=MAX_BUDGET_MS).contains(&ms) {
                return Err((
                    key.to_owned(),
                    format!(
                        "{ms} must be within 1..={MAX_BUDGET_MS} (milliseconds; a step waits at most {} s); \
                         remove the key for the default",
                        STEP_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The budget of a step, if it has one.
    pub fn of(&self, step: Step) -> Option<Duration> {
        let ms = match step.kind() {
            BudgetKind::Connect => self.connect_ms,
            BudgetKind::Route => self.route_ms,
            BudgetKind::Delivery => self.delivery_ms,
            BudgetKind::None => return None,
        };
        Some(Duration::from_millis(ms))
    }
}

/// [`Budget`] as reports print it (camelCase, as every JSON document of wsctl; the stage
/// file's keys are snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportBudget {
    /// `connect_ms`.
    pub connect_ms: u64,
    /// `route_ms`.
    pub route_ms: u64,
    /// `delivery_ms`.
    pub delivery_ms: u64,
}

impl From<Budget> for ReportBudget {
    fn from(b: Budget) -> Self {
        ReportBudget { connect_ms: b.connect_ms, route_ms: b.route_ms, delivery_ms: b.delivery_ms }
    }
}

/// Which budget a step is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetKind {
    /// `connect_ms`.
    Connect,
    /// `route_ms`.
    Route,
    /// `delivery_ms`.
    Delivery,
    /// Timed, but only has to succeed (operator calls, the hold).
    None,
}

/// One step of the journey, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Create the subscribe-only probe key.
    CreateKey,
    /// A connect without a key is refused (401 locally, 403 on AWS).
    RejectNoKey,
    /// The probe key connects.
    Connect,
    /// Subscribe to the probe room.
    Subscribe,
    /// A subscribe outside [`ROOM_PREFIX`] is refused (`forbidden`, naming the prefix).
    RejectOutsidePrefix,
    /// Stay connected for `--hold` before publishing.
    Hold,
    /// Publish through the stage's publish path.
    Publish,
    /// The published message reaches the subscriber with the publish's seq.
    Deliver,
    /// The subscriber leaves; a second message is published meanwhile.
    PublishWhileAway,
    /// The probe key connects again.
    Reconnect,
    /// Subscribe with `since` replays the missed message.
    Replay,
    /// GetConnection answers in the shape AWS SDKs read.
    GetConnection,
    /// DeleteConnection closes the socket.
    Kick,
    /// Revoke the probe key (always runs once the key exists).
    RevokeKey,
    /// The revoked key is refused (403).
    RejectRevokedKey,
    /// Delete the probe key's record (always runs once the key exists).
    DeleteKey,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 16] = [
        Step::CreateKey,
        Step::RejectNoKey,
        Step::Connect,
        Step::Subscribe,
        Step::RejectOutsidePrefix,
        Step::Hold,
        Step::Publish,
        Step::Deliver,
        Step::PublishWhileAway,
        Step::Reconnect,
        Step::Replay,
        Step::GetConnection,
        Step::Kick,
        Step::RevokeKey,
        Step::RejectRevokedKey,
        Step::DeleteKey,
    ];

    /// The step's name in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CreateKey => "create-key",
            Step::RejectNoKey => "reject-no-key",
            Step::Connect => "connect",
            Step::Subscribe => "subscribe",
            Step::RejectOutsidePrefix => "reject-outside-prefix",
            Step::Hold => "hold",
            Step::Publish => "publish",
            Step::Deliver => "deliver",
            Step::PublishWhileAway => "publish-while-away",
            Step::Reconnect => "reconnect",
            Step::Replay => "replay",
            Step::GetConnection => "get-connection",
            Step::Kick => "kick",
            Step::RevokeKey => "revoke-key",
            Step::RejectRevokedKey => "reject-revoked-key",
            Step::DeleteKey => "delete-key",
        }
    }

    /// The budget the step is held to.
    pub fn kind(self) -> BudgetKind {
        match self {
            Step::RejectNoKey | Step::Connect | Step::Reconnect | Step::RejectRevokedKey => BudgetKind::Connect,
            Step::Subscribe | Step::RejectOutsidePrefix | Step::Replay => BudgetKind::Route,
            Step::Deliver => BudgetKind::Delivery,
            _ => BudgetKind::None,
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Did what was expected, within its budget.
    Passed,
    /// Did something else, or took longer than its budget.
    Failed,
    /// Not run: an earlier step it depends on failed.
    Skipped,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// Which step.
    pub step: Step,
    /// How it ended.
    pub status: StepStatus,
    /// How long it took (ms, fractional); None when skipped.
    pub elapsed_ms: Option<f64>,
    /// Its budget (ms), if it has one.
    pub budget_ms: Option<u64>,
    /// What the step expects.
    pub expected: String,
    /// What happened (None when skipped).
    pub got: Option<String>,
}

/// The verdict on one timed step: failed if it did not do what was expected, or if it
/// took longer than its budget (a budget of 0 fails every step that takes any time).
pub fn verdict(outcome: &Result<String, String>, elapsed: Duration, budget: Option<Duration>) -> StepStatus {
    match (outcome, budget) {
        (Err(_), _) => StepStatus::Failed,
        (Ok(_), Some(b)) if elapsed > b => StepStatus::Failed,
        (Ok(_), _) => StepStatus::Passed,
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmokeReport {
    /// The WebSocket URL the journey connected to (without key).
    pub url: String,
    /// The probe room.
    pub room: String,
    /// This run's id (in the key's name and the published data).
    pub run_id: String,
    /// True when every step passed within its budget.
    pub ok: bool,
    /// The first step that failed.
    pub failed_step: Option<Step>,
    /// When the run started, epoch ms.
    pub started_at: u64,
    /// How long the subscriber was held before the first publish (ms).
    pub hold_ms: u64,
    /// The budgets applied.
    pub budget: ReportBudget,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
}

impl SmokeReport {
    /// The first failed step's report.
    pub fn failure(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.status == StepStatus::Failed)
    }
}

/// What a run needs besides the stage.
#[derive(Debug, Clone)]
pub struct SmokeConfig {
    /// The stage's public WebSocket URL (ws:// or wss://, without key).
    pub url: String,
    /// Budgets.
    pub budget: Budget,
    /// Keep the subscriber connected this long before the first publish.
    pub hold: Duration,
    /// Identifies the run (key name, published data, user agent).
    pub run_id: String,
}

/// A probe key as created: the raw key is used to connect and never logged.
#[derive(Clone)]
pub struct ProbeKey {
    /// Public id (key_…).
    pub key_id: String,
    /// The raw key.
    pub raw: String,
}

impl std::fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeKey").field("key_id", &self.key_id).field("raw", &"<redacted>").finish()
    }
}

/// GetConnection's answer as an AWS SDK read it: each field is None when the answer did
/// not carry it under the name the service model gives (`connectedAt`, `lastActiveAt`,
/// `identity.sourceIp`, `identity.userAgent`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionShape {
    /// `connectedAt`, epoch ms.
    pub connected_at_ms: Option<i64>,
    /// `lastActiveAt`, epoch ms.
    pub last_active_at_ms: Option<i64>,
    /// `identity.sourceIp`.
    pub source_ip: Option<String>,
    /// `identity.userAgent`.
    pub user_agent: Option<String>,
}

impl ConnectionShape {
    /// Reads the SDK's output.
    pub fn from_sdk(out: &aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionOutput) -> Self {
        let ms = |t: Option<&aws_sdk_apigatewaymanagement::primitives::DateTime>| t.and_then(|t| t.to_millis().ok());
        ConnectionShape {
            connected_at_ms: ms(out.connected_at()),
            last_active_at_ms: ms(out.last_active_at()),
            // The SDK may fill a missing member of `identity` with "" (its client-side error
            // correction for required members), so "" reads as missing here.
            source_ip: out.identity().and_then(|i| i.source_ip()).filter(|s| !s.is_empty()).map(str::to_owned),
            user_agent: out.identity().and_then(|i| i.user_agent()).filter(|s| !s.is_empty()).map(str::to_owned),
        }
    }
}

/// A call to the stage failed; the message says what and where.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StageCallError(pub String);

/// What the journey asks of the stage besides its WebSocket URL. `wsctl smoke`
/// implements it over the local gateway's admin endpoint or a deployed stage's tables and
/// functions; the probe function over its own stage's tables and `publish` function.
#[async_trait]
pub trait SmokeStage: Send + Sync {
    /// Creates a [`probe_key`] named `name` that expires at `expires_at` (epoch ms).
    async fn create_key(&self, name: &str, expires_at: u64) -> Result<ProbeKey, StageCallError>;
    /// Revokes a key.
    async fn revoke_key(&self, key_id: &str) -> Result<(), StageCallError>;
    /// Deletes a key's record.
    async fn delete_key(&self, key_id: &str) -> Result<(), StageCallError>;
    /// Publishes `data` to `room` through the stage's publish path; returns the seq.
    async fn publish(&self, room: &str, data: &serde_json::Value) -> Result<u64, StageCallError>;
    /// The stage's connection records of `key_id`: (connection id, user agent).
    async fn connections_of_key(&self, key_id: &str) -> Result<Vec<(String, String)>, StageCallError>;
    /// GetConnection through the management API; None if the connection is gone (410).
    async fn get_connection(&self, connection_id: &str) -> Result<Option<ConnectionShape>, StageCallError>;
    /// DeleteConnection through the management API; false if it was already gone.
    async fn delete_connection(&self, connection_id: &str) -> Result<bool, StageCallError>;
}
