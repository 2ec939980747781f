//! Sending to connections, behind one trait: the API Gateway management API in Lambda
//! (also pointed at `wsctl dev`'s `@connections` endpoint), and the local gateway's
//! in-process queues (implemented beside the gateway).

use crate::protocol::Frame;
use crate::store::ConnId;
use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::primitives::{Blob, DateTime};
use aws_sdk_apigatewaymanagement::Client;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What happened to one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted for delivery.
    Delivered,
    /// The connection no longer exists (API Gateway 410): prune it.
    Gone,
    /// Any other failure, with its reason.
    Failed(String),
}

/// Totals of a fan-out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanoutReport {
    /// Sends accepted.
    pub delivered: usize,
    /// Connections found gone (to be pruned by the caller).
    #[serde(skip)]
    pub gone: Vec<ConnId>,
    /// Sends that failed otherwise.
    pub failed: usize,
}

/// What the management API knows of a live connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveInfo {
    /// Connect time, epoch ms.
    pub connected_at_ms: u64,
    /// Last activity, epoch ms.
    pub last_active_at_ms: u64,
    /// Client address.
    pub source_ip: String,
    /// Client user agent.
    pub user_agent: String,
    /// Frames received from the client (the local gateway counts them; API Gateway does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_in: Option<u64>,
    /// Frames sent to the client (local gateway only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_out: Option<u64>,
}

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
#[error("management API: {0}")]
pub struct SendError(pub String);

/// Delivers frames to connections and manages them.
#[async_trait]
pub trait Sender: Send + Sync {
    /// Sends one frame to one connection.
    async fn send(&self, conn: &str, frame: &Frame) -> SendOutcome;
    /// Sends one frame to many connections; gone ones are reported, not retried. The
    /// default sends one at a time; implementations override it to batch or parallelize.
    async fn send_many(&self, conns: &[ConnId], frame: &Frame) -> FanoutReport {
        let mut report = FanoutReport::default();
        for conn in conns {
            match self.send(conn, frame).await {
                SendOutcome::Delivered => report.delivered += 1,
                SendOutcome::Gone => report.gone.push(conn.clone()),
                SendOutcome::Failed(_) => report.failed += 1,
            }
        }
        report
    }
    /// Closes a connection; returns false if it was already gone.
    async fn disconnect(&self, conn: &str) -> Result<bool, SendError>;
    /// Live details of a connection, None if gone.
    async fn info(&self, conn: &str) -> Result<Option<LiveInfo>, SendError>;
}

/// Settings of the management-API sender.
#[derive(Debug, Clone)]
pub struct ManagementApiConfig {
    /// Concurrent PostToConnection calls per fan-out.
    pub concurrency: usize,
    /// Attempts for a throttled (429) send, with exponential backoff and full jitter. A 429
    /// means API Gateway did not take the message, so a retry cannot duplicate it.
    pub max_attempts: u32,
    /// Time after a send's first attempt within which a 429 is still retried; the send
    /// fails once either this or `max_attempts` is used up.
    pub throttle_budget: Duration,
}

impl Default for ManagementApiConfig {
    /// 64 sends in flight; a throttled send is retried for up to 4 s (API Gateway's bucket
    /// refills 10,000 a second, so a fan-out that overshoots it waits rather than drops).
    fn default() -> Self {
        ManagementApiConfig { concurrency: 64, max_attempts: 64, throttle_budget: Duration::from_secs(4) }
    }
}

/// [`Sender`] through the API Gateway management API (PostToConnection and friends).
pub struct ManagementApiSender {
    client: Client,
    config: ManagementApiConfig,
}

impl ManagementApiSender {
    /// A sender for the management endpoint `endpoint`
    /// (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`; never derived from
    /// the event's domain name, which may be a custom domain).
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str, config: ManagementApiConfig) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5))
            .build();
        let conf = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .timeout_config(timeouts)
            // 429s are retried here with our own backoff; other errors are final.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            // Posts are at most 128 KiB: a per-request body timer only costs CPU.
            .stalled_stream_protection(aws_sdk_apigatewaymanagement::config::StalledStreamProtectionConfig::disabled())
            .build();
        ManagementApiSender { client: Client::from_conf(conf), config }
    }

    /// GetConnection as the SDK reads it, every field optional: for callers that check the
    /// answer's shape (the smoke journey) rather than default what is missing, as
    /// [`Sender::info`] does. `None` when the connection is gone (410).
    pub async fn get_connection(
        &self,
        conn: &str,
    ) -> Result<Option<aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionOutput>, SendError> {
        match self.client.get_connection().connection_id(conn).send().await {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(410) => Ok(None),
            Err(e) => Err(SendError(aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string())),
        }
    }

    async fn post(&self, conn: &str, data: &[u8]) -> SendOutcome {
        let started = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = self.client.post_to_connection().connection_id(conn).data(Blob::new(data.to_vec())).send().await;
            let status = match &res {
                Ok(_) => return SendOutcome::Delivered,
                Err(e) => e.raw_response().map(|r| r.status().as_u16()),
            };
            match status {
                // 410 bodies are often empty, so key on the status, not the error code.
                Some(410) => return SendOutcome::Gone,
                Some(429) if attempt < self.config.max_attempts && started.elapsed() < self.config.throttle_budget => {
                    backoff(attempt).await
                }
                _ => {
                    let detail =
                        res.err().map(|e| aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string());
                    return SendOutcome::Failed(detail.unwrap_or_default());
                }
            }
        }
    }
}

/// Sleeps up to `10 ms * 2^attempt` (full jitter), capped at 320 ms: short enough that a
/// send retried in a refilling bucket is not left idle long after tokens are back.
async fn backoff(attempt: u32) {
    use rand::RngExt;
    let cap = (10u64 << attempt.min(5)).min(320);
    let ms = rand::rng().random_range(0..=cap);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn epoch_ms(t: Option<&DateTime>) -> u64 {
    t.and_then(|t| t.to_millis().ok()).map_or(0, |v| v.max(0) as u64)
}

#[async_trait]
impl Sender for ManagementApiSender {
    async fn send(&self, conn: &str, frame: &Frame) -> SendOutcome {
        self.post(conn, frame.as_bytes()).await
    }

    async fn send_many(&self, conns: &[ConnId], frame: &Frame) -> FanoutReport {
        let data = frame.as_bytes();
        let outcomes: Vec<(ConnId, SendOutcome)> = stream::iter(conns.iter().cloned())
            .map(|c| async move {
                let o = self.post(&c, data).await;
                (c, o)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut report = FanoutReport::default();
        for (conn, outcome) in outcomes {
            match outcome {
                SendOutcome::Delivered => report.delivered += 1,
                SendOutcome::Gone => report.gone.push(conn),
                SendOutcome::Failed(why) => {
                    tracing::warn!(connection_id = %conn, error = %why, "send failed");
                    report.failed += 1;
                }
            }
        }
        report
    }

    async fn disconnect(&self, conn: &str) -> Result<bool, SendError> {
        match self.client.delete_connection().connection_id(conn).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(410) => Ok(false),
            Err(e) => Err(SendError(aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string())),
        }
    }

    async fn info(&self, conn: &str) -> Result<Option<LiveInfo>, SendError> {
        match self.client.get_connection().connection_id(conn).send().await {
            Ok(out) => Ok(Some(LiveInfo {
                connected_at_ms: epoch_ms(out.connected_at()),
                last_active_at_ms: epoch_ms(out.last_active_at()),
                source_ip: out.identity().and_then(|i| i.source_ip()).unwrap_or_default().to_owned(),
                user_agent: out.identity().and_then(|i| i.user_agent()).unwrap_or_default().to_owned(),
                messages_in: None,
                messages_out: None,
            })),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(410) => Ok(None),
            Err(e) => Err(SendError(aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string())),
        }
    }
}
