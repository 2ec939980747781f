//! What the deploy engine and its recovery share: a run's context and timing, and the
//! reports of one stack and of a stage (the JSON of `deploy` and `plan`).

use super::artifacts::ArtifactReport;
use super::clients::Clients;
use super::events::Failure;
use super::render::{Rendered, StackKind};
use super::signals::Interrupt;
use super::stacks::ChangeRow;
use super::versions::PrunedFunction;
use crate::ui::Ui;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Timing knobs (tests shorten the poll interval with `WSCTL_POLL_MS`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Interval between CloudFormation polls.
    pub poll: Duration,
    /// Longest wait for one stack operation.
    pub timeout: Duration,
}

impl Timing {
    /// Poll every `WSCTL_POLL_MS` milliseconds (default 5000); give up after `timeout_minutes`.
    pub fn from_env(timeout_minutes: u64) -> Timing {
        let ms = std::env::var("WSCTL_POLL_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
        Timing { poll: Duration::from_millis(ms), timeout: Duration::from_secs(timeout_minutes * 60) }
    }
}

/// Apply the change set, or only compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Execute (after confirmation unless `yes`).
    Apply { yes: bool },
    /// Compute, show and discard.
    Plan,
}

/// What a `deploy` or `plan` did to one stack (`action` in the JSON report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StackAction {
    /// The stack was created.
    Created,
    /// The stack was updated.
    Updated,
    /// The change set was empty.
    Unchanged,
    /// `plan`: the changes were computed and discarded (or a recovery would run).
    Planned,
    /// The operator answered no at the prompt.
    Declined,
    /// The operation failed; `nextDeploy` says what the next deploy does.
    Failed,
    /// A signal stopped the operation; `nextDeploy` says what the next deploy does.
    Interrupted,
}

impl StackAction {
    /// The word of the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            StackAction::Created => "created",
            StackAction::Updated => "updated",
            StackAction::Unchanged => "unchanged",
            StackAction::Planned => "planned",
            StackAction::Declined => "declined",
            StackAction::Failed => "failed",
            StackAction::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for StackAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one stack.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackReport {
    /// Which stack.
    pub kind: StackKind,
    /// Stack name.
    pub stack_name: String,
    /// What was done to the stack.
    pub action: StackAction,
    /// Final stack status, when the stack exists.
    pub status: Option<String>,
    /// The change set's changes.
    pub changes: Vec<ChangeRow>,
    /// Failed resources with reasons.
    pub failures: Vec<Failure>,
    /// Extra explanation.
    pub message: Option<String>,
    /// After a failure or an interrupt: what the next `wsctl deploy` does with the stack.
    pub next_deploy: Option<String>,
}

impl StackReport {
    /// An empty report of `action` for a rendered stack.
    pub fn new(r: &Rendered, action: StackAction) -> StackReport {
        StackReport {
            kind: r.kind,
            stack_name: r.stack_name.clone(),
            action,
            status: None,
            changes: Vec::new(),
            failures: Vec::new(),
            message: None,
            next_deploy: None,
        }
    }

    /// The stack changed or would change.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
            || matches!(self.action, StackAction::Created | StackAction::Updated | StackAction::Planned)
    }

    /// The operation failed.
    pub fn failed(&self) -> bool {
        self.action == StackAction::Failed
    }

    /// A signal stopped the operation.
    pub fn interrupted(&self) -> bool {
        self.action == StackAction::Interrupted
    }
}

/// Everything one command run needs.
pub struct Ctx<'a> {
    /// AWS clients.
    pub clients: &'a Clients,
    /// Terminal.
    pub ui: Ui,
    /// Timing.
    pub timing: Timing,
    /// Artifact bucket, once known (for templates over the inline limit).
    pub bucket: Option<String>,
    /// Ctrl-C / SIGTERM received so far.
    pub interrupt: Interrupt,
}

/// The result of `deploy` or `plan` for a stage.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageReport {
    /// Stage name.
    pub stage: String,
    /// Account the stage was checked against.
    pub account: String,
    /// Region.
    pub region: String,
    /// Artifacts (for `plan`, `uploaded` means "would upload").
    pub artifacts: Vec<ArtifactReport>,
    /// One entry per stack, in order.
    pub stacks: Vec<StackReport>,
    /// The app stack's outputs (wss URL, management endpoint, tables, functions).
    pub outputs: BTreeMap<String, String>,
    /// Overall success.
    pub ok: bool,
    /// Stopped by Ctrl-C or SIGTERM.
    pub interrupted: bool,
    /// Old Lambda versions deleted after the deploy (`lambda.keep_versions`).
    pub pruned_versions: Vec<PrunedFunction>,
    /// How the run ended when it stopped between stacks.
    pub message: Option<String>,
    /// Where the run acted (stage, account, region, profile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::aws::TargetLine>,
    /// The stage history entry this deploy was recorded as (none for a plan, a failed or
    /// repeated deploy, or when recording failed, which is warned about).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_entry: Option<u64>,
}

impl StageReport {
    /// An empty report for a stage about to run.
    pub fn new(stage: &crate::stage::Stage, account: &str, region: &str) -> StageReport {
        StageReport {
            stage: stage.name.clone(),
            account: account.to_owned(),
            region: region.to_owned(),
            artifacts: Vec::new(),
            stacks: Vec::new(),
            outputs: BTreeMap::new(),
            ok: false,
            interrupted: false,
            pruned_versions: Vec::new(),
            message: None,
            target: None,
            history_entry: None,
        }
    }

    /// Records one stack's report and prints what went wrong with it; true when the stage
    /// stops here (failed, interrupted or declined).
    pub fn record(&mut self, ui: &Ui, r: StackReport) -> bool {
        let stop = r.failed() || r.interrupted() || r.action == StackAction::Declined;
        if r.failed() || r.interrupted() {
            print_outcome(ui, &r);
        }
        self.interrupted |= r.interrupted();
        self.stacks.push(r);
        stop
    }

    /// A signal arrived between two stacks: stop before `next`, say where things stand.
    pub fn stop_between(&mut self, ui: &Ui, next: &[&str]) {
        let done: Vec<String> = self.stacks.iter().map(|s| format!("{} {}", s.stack_name, s.action)).collect();
        let message = format!(
            "interrupted between stacks ({}); not started: {}. The next deploy resumes with them",
            if done.is_empty() { "none deployed yet".to_owned() } else { done.join(", ") },
            next.join(", ")
        );
        ui.line(&message);
        self.interrupted = true;
        self.message = Some(message);
    }
}

fn print_outcome(ui: &Ui, report: &StackReport) {
    let label = if report.interrupted() { "INTERRUPTED" } else { "FAILED" };
    ui.line(format!("{}: {label} ({})", report.stack_name, report.status.as_deref().unwrap_or("no stack")));
    if let Some(m) = &report.message {
        ui.line(format!("  {m}"));
    }
    for f in &report.failures {
        ui.line(format!("  {} {} ({}): {}", f.status, f.logical_id, f.resource_type, f.reason));
    }
    if let Some(next) = &report.next_deploy {
        ui.line(format!("  next deploy: {next}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_the_words_of_the_json_report() {
        let all = [
            StackAction::Created,
            StackAction::Updated,
            StackAction::Unchanged,
            StackAction::Planned,
            StackAction::Declined,
            StackAction::Failed,
            StackAction::Interrupted,
        ];
        for a in all {
            assert_eq!(serde_json::to_value(a).expect("serializes"), a.as_str());
        }
        assert_eq!(
            all.map(StackAction::as_str).join(","),
            "created,updated,unchanged,planned,declined,failed,interrupted"
        );
    }
}
