//! Sharded fan-out for large rooms on Lambda.
//!
//! One invocation sending to every member of a 40,000-member room at API Gateway's latency
//! (~20 ms per `PostToConnection` from a VPC) would run for tens of seconds. With
//! `limits.fanout_shards` = N > 0 the publishing invocation instead splits the members into
//! N shards by a stable hash of the connection id ([`shard_of`]), hands each shard to a
//! [`Dispatch`] and is acknowledged once the dispatch is durable. Each shard is then
//! delivered by [`deliver`] (on AWS: the `publish` function, fed by an SQS FIFO queue).
//!
//! Why this keeps per-subscriber order and exactly-once delivery:
//! - a connection always falls in the same shard, and each shard is one FIFO message group,
//!   delivered one job at a time in queue order: message N to a subscriber is sent (or
//!   given up) before message N+1 to it is attempted;
//! - each job has a deduplication id (hash of the frame, shard and part), so a dispatch
//!   retried by the SDK is queued once;
//! - a throttled send (429) is retried by the management-API sender (API Gateway did not take
//!   it, so a retry cannot duplicate), and [`deliver`] never fails its job, so the queue
//!   never redelivers a job that was partly sent.

use crate::protocol::Frame;
use crate::sender::{FanoutReport, LiveInfo, SendError, SendOutcome, Sender};
use crate::service::Services;
use crate::store::ConnId;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest SQS message body a job may take (SQS allows 256 KiB; the rest is headroom for
/// JSON escaping of the frame and the attributes).
pub const MAX_JOB_BYTES: usize = 200 * 1024;

/// One shard's part of one message: the frame and the connections to send it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardJob {
    /// Shard index (`0..shards`): the ordering group.
    pub shard: u32,
    /// Part of the shard, when its connection list was split to fit one queue message.
    pub part: u32,
    /// The frame as sent to clients.
    pub frame: String,
    /// Connections of this shard (and part).
    pub conns: Vec<ConnId>,
}

impl ShardJob {
    /// The FIFO message group: one per shard, so a connection's messages stay in order.
    pub fn group_id(&self) -> String {
        format!("shard-{}", self.shard)
    }

    /// Deduplication id: the same job dispatched twice (an SDK retry) is queued once.
    pub fn dedup_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.frame.as_bytes());
        format!("{}-{}-{}", hex::encode(&digest[..24]), self.shard, self.part)
    }
}

/// The shard of a connection: FNV-1a of its id modulo `shards`, stable across processes
/// and releases (a connection must map to the same shard in every publishing invocation).
pub fn shard_of(conn: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in conn.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(shards.max(1))) as u32
}

/// Splits `conns` into jobs: by [`shard_of`], then each shard into parts of at most
/// `max_job_conns` connections whose JSON stays under `max_job_bytes` (so one invocation's
/// work is bounded whatever the room's size). Empty shards get no job; parts keep the
/// shard's order.
pub fn plan(conns: &[ConnId], frame: &Frame, shards: u32, max_job_conns: usize, max_job_bytes: usize) -> Vec<ShardJob> {
    let max_job_conns = max_job_conns.max(1);
    let shards = shards.max(1);
    let mut buckets: Vec<Vec<ConnId>> = vec![Vec::new(); shards as usize];
    for c in conns {
        buckets[shard_of(c, shards) as usize].push(c.clone());
    }
    // JSON of a job: the frame escaped (at most 6 bytes per byte for control characters,
    // in practice ~1.1x) plus `"id",` per connection.
    let frame_cost = frame.as_str().len() + frame.as_str().len() / 4 + 64;
    let budget = max_job_bytes.saturating_sub(frame_cost).max(64);
    let mut jobs = Vec::new();
    for (shard, members) in buckets.into_iter().enumerate() {
        let mut part = 0;
        let mut current: Vec<ConnId> = Vec::new();
        let mut used = 0;
        for c in members {
            let cost = c.len() + 3;
            if (used + cost > budget || current.len() == max_job_conns) && !current.is_empty() {
                jobs.push(job(shard as u32, part, frame, std::mem::take(&mut current)));
                part += 1;
                used = 0;
            }
            used += cost;
            current.push(c);
        }
        if !current.is_empty() {
            jobs.push(job(shard as u32, part, frame, current));
        }
    }
    jobs
}

fn job(shard: u32, part: u32, frame: &Frame, conns: Vec<ConnId>) -> ShardJob {
    ShardJob { shard, part, frame: frame.as_str().to_owned(), conns }
}

/// Why a dispatch failed: nothing of it may be assumed queued.
#[derive(Debug, thiserror::Error)]
#[error("fan-out dispatch: {0}")]
pub struct DispatchError(pub String);

/// Hands shard jobs to whatever delivers them, durably and in order per shard.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Queues `jobs` (in order within each shard); returns once they are durable.
    async fn dispatch(&self, jobs: Vec<ShardJob>) -> Result<(), DispatchError>;
}

/// A [`Sender`] whose fan-outs are split into shards and dispatched; single sends (replies,
/// replays) and connection management go straight to `direct`.
pub struct ShardedSender {
    direct: Arc<dyn Sender>,
    dispatch: Arc<dyn Dispatch>,
    shards: u32,
    max_job_conns: usize,
}

impl ShardedSender {
    /// Shards fan-outs over `shards` groups through `dispatch`, at most `max_job_conns`
    /// connections per job (`limits.fanout_shards`, `limits.fanout_job_connections`).
    pub fn new(direct: Arc<dyn Sender>, dispatch: Arc<dyn Dispatch>, shards: u32, max_job_conns: usize) -> Self {
        ShardedSender { direct, dispatch, shards: shards.max(1), max_job_conns: max_job_conns.max(1) }
    }
}

#[async_trait]
impl Sender for ShardedSender {
    async fn send(&self, conn: &str, frame: &Frame) -> SendOutcome {
        self.direct.send(conn, frame).await
    }

    /// `delivered` counts the sends handed to the shards (their delivery is reported by
    /// [`deliver`]); if the dispatch fails, every send counts as failed.
    async fn send_many(&self, conns: &[ConnId], frame: &Frame) -> FanoutReport {
        if conns.is_empty() {
            return FanoutReport::default();
        }
        let jobs = plan(conns, frame, self.shards, self.max_job_conns, MAX_JOB_BYTES);
        match self.dispatch.dispatch(jobs).await {
            Ok(()) => FanoutReport { delivered: conns.len(), ..Default::default() },
            Err(e) => {
                tracing::error!(error = %e, members = conns.len(), "fan-out dispatch failed; nothing was sent");
                FanoutReport { failed: conns.len(), ..Default::default() }
            }
        }
    }

    async fn disconnect(&self, conn: &str) -> Result<bool, SendError> {
        self.direct.disconnect(conn).await
    }

    async fn info(&self, conn: &str) -> Result<Option<LiveInfo>, SendError> {
        self.direct.info(conn).await
    }
}

/// Delivers one shard job with `svc`'s sender (which must send directly, not shard again)
/// and prunes the connections found gone. Never fails: a job is not redelivered.
pub async fn deliver(svc: &Services, job: &ShardJob) -> FanoutReport {
    let frame = Frame::from(job.frame.clone());
    let report = svc.sender.send_many(&job.conns, &frame).await;
    svc.metrics.deliveries.fetch_add(report.delivered as u64, Relaxed);
    svc.metrics.delivery_failures.fetch_add(report.failed as u64, Relaxed);
    if !report.gone.is_empty() {
        svc.prune(&report.gone, None).await;
    }
    report
}

/// Totals of the jobs an [`InProcessDispatch`] delivered.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Jobs delivered.
    pub jobs: AtomicU64,
    /// Sends accepted.
    pub delivered: AtomicU64,
    /// Connections found gone.
    pub gone: AtomicU64,
    /// Sends that failed.
    pub failed: AtomicU64,
    /// Longest single job, microseconds (what one invocation would run).
    pub longest_job_us: AtomicU64,
}

/// Runs [`deliver`] in this process: one worker per shard takes that shard's jobs in order,
/// as the FIFO queue's message groups do on AWS (`wsctl dev`, benches and tests).
pub struct InProcessDispatch {
    queues: Vec<tokio::sync::mpsc::UnboundedSender<ShardJob>>,
    /// What the workers did.
    pub stats: Arc<DeliveryStats>,
}

impl InProcessDispatch {
    /// `shards` workers delivering with `svc` (whose sender must send directly).
    pub fn new(svc: Arc<Services>, shards: u32) -> Self {
        let stats = Arc::new(DeliveryStats::default());
        let queues = (0..shards.max(1))
            .map(|_| {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ShardJob>();
                let (svc, stats) = (svc.clone(), stats.clone());
                tokio::spawn(async move {
                    while let Some(job) = rx.recv().await {
                        let started = Instant::now();
                        let r = deliver(&svc, &job).await;
                        let us = started.elapsed().as_micros() as u64;
                        stats.jobs.fetch_add(1, Relaxed);
                        stats.delivered.fetch_add(r.delivered as u64, Relaxed);
                        stats.gone.fetch_add(r.gone.len() as u64, Relaxed);
                        stats.failed.fetch_add(r.failed as u64, Relaxed);
                        stats.longest_job_us.fetch_max(us, Relaxed);
                    }
                });
                tx
            })
            .collect();
        InProcessDispatch { queues, stats }
    }

    /// The longest job so far.
    pub fn longest_job(&self) -> Duration {
        Duration::from_micros(self.stats.longest_job_us.load(Relaxed))
    }
}

#[async_trait]
impl Dispatch for InProcessDispatch {
    async fn dispatch(&self, jobs: Vec<ShardJob>) -> Result<(), DispatchError> {
        for job in jobs {
            let queue = &self.queues[job.shard as usize % self.queues.len()];
            queue.send(job).map_err(|_| DispatchError("the shard workers have stopped".into()))?;
        }
        Ok(())
    }
}

/// Queues jobs on an SQS FIFO queue (group = shard, deduplicated per job): what the
/// `publish` and `message` functions use when `FANOUT_QUEUE_URL` is set.
pub struct SqsDispatch {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDispatch {
    /// A dispatcher to the FIFO queue at `queue_url`.
    pub fn new(sdk: &aws_config::SdkConfig, queue_url: &str) -> Self {
        SqsDispatch { client: aws_sdk_sqs::Client::new(sdk), queue_url: queue_url.to_owned() }
    }
}

#[async_trait]
impl Dispatch for SqsDispatch {
    async fn dispatch(&self, jobs: Vec<ShardJob>) -> Result<(), DispatchError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        // Batches of 10 (the SQS maximum) within 256 KiB in all; entries of one shard stay
        // in order because batches are sent one after another.
        let mut batches: Vec<Vec<SendMessageBatchRequestEntry>> = vec![Vec::new()];
        let mut bytes = 0;
        for (i, job) in jobs.iter().enumerate() {
            let body = serde_json::to_string(job).map_err(|e| DispatchError(e.to_string()))?;
            let current = batches.last().map_or(0, Vec::len);
            if current == 10 || (current > 0 && bytes + body.len() > 250 * 1024) {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += body.len();
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .message_group_id(job.group_id())
                .message_deduplication_id(job.dedup_id())
                .build()
                .map_err(|e| DispatchError(e.to_string()))?;
            if let Some(b) = batches.last_mut() {
                b.push(entry);
            }
        }
        for batch in batches.into_iter().filter(|b| !b.is_empty()) {
            self.send_batch(batch).await?;
        }
        Ok(())
    }
}

impl SqsDispatch {
    /// Receives up to `max` jobs (1..=10) as the event source mapping does, with their
    /// receipt handles (for [`SqsDispatch::delete`]): for local runs and tests of the path.
    pub async fn receive(&self, max: i32) -> Result<(SqsEvent, Vec<String>), DispatchError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .send()
            .await
            .map_err(|e| DispatchError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        let mut records = Vec::new();
        let mut receipts = Vec::new();
        for m in out.messages() {
            records.push(SqsRecord {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
            });
            receipts.extend(m.receipt_handle().map(str::to_owned));
        }
        Ok((SqsEvent { records }, receipts))
    }

    /// Deletes received messages (what the event source mapping does after a success).
    pub async fn delete(&self, receipts: &[String]) -> Result<(), DispatchError> {
        for r in receipts {
            self.client
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(r)
                .send()
                .await
                .map_err(|e| DispatchError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        }
        Ok(())
    }

    /// Sends one batch; entries SQS refused are sent again (their deduplication ids make a
    /// repeat harmless) up to three times.
    async fn send_batch(
        &self,
        mut batch: Vec<aws_sdk_sqs::types::SendMessageBatchRequestEntry>,
    ) -> Result<(), DispatchError> {
        for attempt in 1..=3 {
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(batch.clone()))
                .send()
                .await
                .map_err(|e| DispatchError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
            let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
            if failed.is_empty() {
                return Ok(());
            }
            if attempt == 3 {
                let why: Vec<String> =
                    out.failed().iter().map(|f| format!("{}: {}", f.code(), f.message().unwrap_or(""))).collect();
                return Err(DispatchError(format!("SQS refused {} job(s): {}", why.len(), why.join("; "))));
            }
            batch.retain(|e| failed.contains(&e.id()));
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Ok(())
    }
}

/// The part of an SQS event the `publish` function reads (the `Records` of an event source
/// mapping; one FIFO message group's records arrive in order).
#[derive(Debug, Serialize, Deserialize)]
pub struct SqsEvent {
    /// The messages.
    #[serde(rename = "Records")]
    pub records: Vec<SqsRecord>,
}

/// One SQS message of an [`SqsEvent`].
#[derive(Debug, Serialize, Deserialize)]
pub struct SqsRecord {
    /// SQS message id.
    #[serde(rename = "messageId", default)]
    pub message_id: String,
    /// The job as JSON.
    pub body: String,
}

/// Delivers every job of an SQS event in order (a batch of a FIFO queue holds one group's
/// messages in order). A record that is not a job is logged and skipped: retrying it
/// could never succeed and would block its shard.
pub async fn deliver_event(svc: &Services, event: &SqsEvent) -> FanoutReport {
    let mut total = FanoutReport::default();
    for record in &event.records {
        match serde_json::from_str::<ShardJob>(&record.body) {
            Ok(job) => {
                let r = deliver(svc, &job).await;
                total.delivered += r.delivered;
                total.failed += r.failed;
                total.gone.extend(r.gone);
            }
            Err(e) => tracing::error!(message_id = %record.message_id, error = %e, "not a fan-out job; skipped"),
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<ConnId> {
        (0..n).map(|i| ConnId::from(format!("conn-{i:06}"))).collect()
    }

    #[test]
    fn every_connection_lands_in_exactly_one_job_of_its_stable_shard() {
        let frame = Frame::from(r#"{"type":"message","seq":1}"#.to_owned());
        let conns = ids(5000);
        let jobs = plan(&conns, &frame, 16, usize::MAX, MAX_JOB_BYTES);
        let mut seen: Vec<&ConnId> = jobs.iter().flat_map(|j| j.conns.iter()).collect();
        seen.sort();
        assert_eq!(seen.len(), conns.len());
        seen.dedup();
        assert_eq!(seen.len(), conns.len(), "a connection is in two jobs");
        for j in &jobs {
            assert!(j.conns.iter().all(|c| shard_of(c, 16) == j.shard));
        }
        // same input, same plan (another invocation shards alike)
        assert_eq!(plan(&conns, &frame, 16, usize::MAX, MAX_JOB_BYTES), jobs);
        // all 16 shards used, roughly evenly
        let mut per = [0usize; 16];
        for j in &jobs {
            per[j.shard as usize] += j.conns.len();
        }
        assert!(per.iter().all(|&n| (200..=430).contains(&n)), "uneven shards: {per:?}");
    }

    #[test]
    fn big_shards_are_split_into_parts_that_fit_one_queue_message() {
        let frame = Frame::from(format!(r#"{{"data":"{}"}}"#, "x".repeat(100 * 1024)));
        let jobs = plan(&ids(40_000), &frame, 4, usize::MAX, MAX_JOB_BYTES);
        assert!(jobs.iter().any(|j| j.part > 0), "no shard was split");
        for j in &jobs {
            let len = serde_json::to_string(j).unwrap().len();
            assert!(len <= MAX_JOB_BYTES, "job of {len} bytes");
        }
        let dedup: std::collections::HashSet<String> = jobs.iter().map(ShardJob::dedup_id).collect();
        assert_eq!(dedup.len(), jobs.len(), "two jobs share a deduplication id");
        assert_eq!(jobs.iter().map(|j| j.conns.len()).sum::<usize>(), 40_000);
    }

    #[test]
    fn no_job_holds_more_than_the_job_size_and_parts_keep_the_shard_in_order() {
        let frame = Frame::from(r#"{"seq":1}"#.to_owned());
        let conns = ids(10_000);
        let jobs = plan(&conns, &frame, 8, 300, MAX_JOB_BYTES);
        assert!(jobs.iter().all(|j| j.conns.len() <= 300));
        for shard in 0..8 {
            let parts: Vec<&ShardJob> = jobs.iter().filter(|j| j.shard == shard).collect();
            let numbers: Vec<u32> = parts.iter().map(|j| j.part).collect();
            assert_eq!(numbers, (0..parts.len() as u32).collect::<Vec<_>>(), "shard {shard}'s parts out of order");
            let joined: Vec<&ConnId> = parts.iter().flat_map(|j| j.conns.iter()).collect();
            let expected: Vec<&ConnId> = conns.iter().filter(|c| shard_of(c, 8) == shard).collect();
            assert_eq!(joined, expected);
        }
    }
}
