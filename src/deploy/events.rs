//! Following a stack operation live: new stack events as they arrive, a progress bar on a
//! terminal (plain lines otherwise), and, at the end, each failed resource with its reason.

use super::stacks::{describe_stack, sdk_error};
use crate::ui::Ui;
use anyhow::Context;
use aws_sdk_cloudformation::Client;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

/// A resource that failed, with CloudFormation's reason.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Logical id.
    pub logical_id: String,
    /// Resource type.
    pub resource_type: String,
    /// e.g. `CREATE_FAILED`.
    pub status: String,
    /// CloudFormation's reason.
    pub reason: String,
}

impl Failure {
    /// A resource only cancelled because another one failed.
    pub fn collateral(&self) -> bool {
        self.reason.contains("cancelled")
    }
}

/// How a stack operation ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Final stack status (`DELETE_COMPLETE` once a deleted stack is gone).
    pub status: String,
    /// The operation reached its goal.
    pub success: bool,
    /// Failed resources, root causes first.
    pub failures: Vec<Failure>,
}

/// Ids of the events a stack already has, so that only new ones are shown.
pub async fn existing_event_ids(cfn: &Client, stack: &str) -> anyhow::Result<HashSet<String>> {
    let out = cfn.describe_stack_events().stack_name(stack).send().await.map_err(sdk_error);
    match out {
        Ok(out) => Ok(out.stack_events().iter().filter_map(|e| e.event_id().map(str::to_owned)).collect()),
        // A stack that does not exist yet has no events.
        Err(e) if e.to_string().contains("does not exist") => Ok(HashSet::new()),
        Err(e) => Err(e).with_context(|| format!("reading the events of stack {stack}")),
    }
}

/// What to watch.
pub struct Watch<'a> {
    /// Stack name or id (use the id for deletes: a deleted stack's name no longer resolves).
    pub stack: &'a str,
    /// Events that existed before the operation.
    pub seen: HashSet<String>,
    /// Resources the operation touches (progress total).
    pub total: usize,
    /// Statuses that mean success.
    pub success: &'a [&'a str],
    /// Poll interval.
    pub poll: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

/// Polls events and status until the stack leaves `*_IN_PROGRESS`.
pub async fn watch(cfn: &Client, ui: &Ui, mut w: Watch<'_>) -> anyhow::Result<Outcome> {
    let bar = if ui.stderr_tty {
        let bar = ProgressBar::new(w.total.max(1) as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {elapsed} {wide_msg}")
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .progress_chars("=> "),
        );
        bar.set_prefix(w.stack.rsplit('/').nth(1).unwrap_or(w.stack).to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut failures: Vec<Failure> = Vec::new();
    let stack_name_of_events = w.stack.rsplit('/').nth(1).unwrap_or(w.stack).to_owned();
    loop {
        let new_events = fetch_new_events(cfn, w.stack, &mut w.seen).await?;
        for e in new_events {
            let is_stack = e.logical_id == stack_name_of_events;
            let line = format!(
                "{} {:<28} {:<36} {}{}",
                e.time,
                e.status,
                e.resource_type,
                e.logical_id,
                if e.reason.is_empty() { String::new() } else { format!(" ({})", e.reason) }
            );
            if !is_stack && e.status.ends_with("_COMPLETE") {
                done.insert(e.logical_id.clone());
            }
            if !is_stack && e.status.ends_with("_FAILED") {
                failures.push(Failure {
                    logical_id: e.logical_id.clone(),
                    resource_type: e.resource_type.clone(),
                    status: e.status.clone(),
                    reason: e.reason.clone(),
                });
            }
            match &bar {
                Some(bar) => {
                    bar.set_position(done.len().min(w.total) as u64);
                    bar.set_message(format!("{} {}", e.status, e.logical_id));
                    if e.status.ends_with("_FAILED") {
                        bar.println(line);
                    }
                }
                None => ui.note(format!("  {line}")),
            }
        }
        let status = describe_stack(cfn, w.stack).await?;
        let (status, finished) = match &status {
            None => ("DELETE_COMPLETE".to_owned(), true),
            Some(s) => (s.status.clone(), !s.in_progress()),
        };
        if finished {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            failures.sort_by_key(Failure::collateral);
            let success = w.success.contains(&status.as_str());
            return Ok(Outcome { status, success, failures });
        }
        if started.elapsed() > w.timeout {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            anyhow::bail!(
                "stack {} is still {status} after {} minutes; follow it in the CloudFormation console or with `wsctl status`",
                w.stack,
                w.timeout.as_secs() / 60
            );
        }
        tokio::time::sleep(w.poll).await;
    }
}

struct EventLine {
    time: String,
    logical_id: String,
    resource_type: String,
    status: String,
    reason: String,
}

/// New events, oldest first. Events come newest first; stop at the first one seen before.
async fn fetch_new_events(cfn: &Client, stack: &str, seen: &mut HashSet<String>) -> anyhow::Result<Vec<EventLine>> {
    let mut fresh = Vec::new();
    let mut token: Option<String> = None;
    'pages: loop {
        let out =
            cfn.describe_stack_events().stack_name(stack).set_next_token(token.clone()).send().await.map_err(sdk_error);
        let out = match out {
            Ok(out) => out,
            Err(e) if e.to_string().contains("does not exist") => break,
            Err(e) => return Err(e).with_context(|| format!("reading the events of stack {stack}")),
        };
        for e in out.stack_events() {
            let id = e.event_id().unwrap_or_default().to_owned();
            if !seen.insert(id) {
                break 'pages;
            }
            fresh.push(EventLine {
                time: e
                    .timestamp()
                    .and_then(|t| t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime).ok())
                    .map(|t| t.get(11..19).unwrap_or(&t).to_owned())
                    .unwrap_or_default(),
                logical_id: e.logical_resource_id().unwrap_or_default().to_owned(),
                resource_type: e.resource_type().unwrap_or_default().to_owned(),
                status: e.resource_status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                reason: e.resource_status_reason().unwrap_or_default().to_owned(),
            });
        }
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    fresh.reverse();
    Ok(fresh)
}
