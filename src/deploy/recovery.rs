//! Stacks left mid-way by an earlier run — a deploy interrupted (Ctrl-C, a cancelled CI
//! job, a killed runner) or failed — and what `deploy` does about them.
//!
//! Before a stack's change set is created, [`prepare`] reads the stack's status and, per
//! [`Recovery::for_status`], waits for an operation still running, continues a failed
//! rollback, or deletes a failed first create, saying which. When this run is itself
//! interrupted, [`stop_before_execution`] and [`stop_execution`] leave the stack unchanged,
//! rolled back or running to completion, and every report says what the next deploy does.

use super::events::{self, Failure, Outcome, Watch};
use super::render::{Rendered, StackKind};
use super::report::{Ctx, Mode, StackAction, StackReport};
use super::stacks::{self, sdk_error, ChangeRow, ChangeSet, StackInfo};
use anyhow::bail;

/// At most this many recovery steps (wait, continue rollback, delete) before a deploy gives up.
const MAX_STEPS: usize = 4;

/// How a deploy proceeds from a stack's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No stack: create it.
    Create,
    /// `REVIEW_IN_PROGRESS`: an empty stack made by a change set that never ran (an
    /// interrupted first deploy); delete it, with its change sets, then create it.
    DiscardReview,
    /// A settled stack: update it.
    Update,
    /// CloudFormation is still working on it: wait until it settles, then look again.
    Wait,
    /// `UPDATE_ROLLBACK_FAILED`: continue the rollback, then update.
    ContinueRollback,
    /// A failed first create: nothing of it is in use; delete it, then create it again.
    Recreate,
    /// Only an operator can move it on (`DELETE_FAILED`, a failed import rollback, a status
    /// this version of wsctl does not know).
    Blocked,
}

impl Recovery {
    /// The recovery for a stack status (`None`: no stack).
    pub fn for_status(status: Option<&str>) -> Recovery {
        let Some(status) = status else { return Recovery::Create };
        match status {
            "DELETE_COMPLETE" => Recovery::Create,
            "REVIEW_IN_PROGRESS" => Recovery::DiscardReview,
            "CREATE_COMPLETE"
            | "UPDATE_COMPLETE"
            | "UPDATE_ROLLBACK_COMPLETE"
            | "UPDATE_FAILED"
            | "IMPORT_COMPLETE"
            | "IMPORT_ROLLBACK_COMPLETE" => Recovery::Update,
            "UPDATE_ROLLBACK_FAILED" => Recovery::ContinueRollback,
            "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" | "CREATE_FAILED" => Recovery::Recreate,
            s if s.ends_with("_IN_PROGRESS") => Recovery::Wait,
            _ => Recovery::Blocked,
        }
    }

    /// A deploy finds nothing an earlier run left to deal with (no stack, or a stack that
    /// completed normally): no "next deploy" advice is due.
    pub fn settled(status: Option<&str>) -> bool {
        matches!(Recovery::for_status(status), Recovery::Create | Recovery::Update)
            && status != Some("UPDATE_ROLLBACK_COMPLETE")
    }

    /// What the next `wsctl deploy` does with a stack left in `status`.
    pub fn next_deploy(status: Option<&str>) -> String {
        let shown = status.unwrap_or("absent");
        match Recovery::for_status(status) {
            Recovery::Create => "creates the stack".into(),
            Recovery::DiscardReview => {
                "removes the empty stack its never-run change set made, then creates the stack".into()
            }
            Recovery::Update if shown == "UPDATE_ROLLBACK_COMPLETE" => {
                "applies the update again, over the previous version the stack was rolled back to".into()
            }
            Recovery::Update => format!("updates the stack from {shown}"),
            Recovery::Wait => {
                format!("waits for CloudFormation to finish ({shown} now), then deploys over the result")
            }
            Recovery::ContinueRollback => {
                "continues the failed rollback (ContinueUpdateRollback), then applies the update again".into()
            }
            Recovery::Recreate => "deletes the failed stack and creates it again".into(),
            Recovery::Blocked => format!("refuses: {}", blocked_advice(shown)),
        }
    }

    /// What `deploy` does first, for `plan` to report.
    fn planned_step(self) -> &'static str {
        match self {
            Recovery::Wait => "wait for the running operation to finish",
            Recovery::ContinueRollback => "continue the failed rollback (ContinueUpdateRollback)",
            Recovery::Recreate => "delete the failed stack and create it again",
            Recovery::DiscardReview => "remove the empty stack a never-run change set made, then create it",
            Recovery::Create | Recovery::Update | Recovery::Blocked => "deploy",
        }
    }
}

/// What an operator does about a stack no deploy can move on.
fn blocked_advice(status: &str) -> String {
    match status {
        "DELETE_FAILED" => "an earlier destroy could not delete every resource; fix what it reported and run \
                            `wsctl destroy` again (a DELETE_FAILED stack can only be deleted)"
            .into(),
        "IMPORT_ROLLBACK_FAILED" => "a resource import failed and so did its rollback; resolve it in the \
                                     CloudFormation console, then deploy again"
            .into(),
        other => format!("the stack is {other}, which wsctl does not know how to continue from; resolve it in the CloudFormation console"),
    }
}

/// The outcome of [`prepare`].
pub enum Prepared {
    /// Go on with a change set against the stack as it is now (`None`: create it).
    Ready(Option<StackInfo>),
    /// Stop at this stack: a plan of a recovery, a recovery that failed, or an interrupt.
    Stop(Box<StackReport>),
}

fn report(rendered: &Rendered, action: StackAction, status: Option<String>, message: String) -> Box<StackReport> {
    let mut r = StackReport::new(rendered, action);
    r.next_deploy = Some(Recovery::next_deploy(status.as_deref()));
    r.status = status;
    r.message = Some(message);
    Box::new(r)
}

/// Follows a stack operation until it settles, or until signal number `seen + 1`.
async fn follow(
    ctx: &Ctx<'_>,
    stack: &str,
    seen_events: std::collections::HashSet<String>,
    success: &[&str],
    seen_signals: u32,
) -> anyhow::Result<Option<Outcome>> {
    let total = stacks::stack_resources(&ctx.clients.cfn, stack).await.map(|r| r.len()).unwrap_or(1);
    let watch = events::watch(
        &ctx.clients.cfn,
        &ctx.ui,
        Watch { stack, seen: seen_events, total, success, poll: ctx.timing.poll, timeout: ctx.timing.timeout },
    );
    ctx.interrupt.guard_after(seen_signals, watch).await.transpose()
}

/// Brings a stack an earlier run left mid-way to a state a change set can be made against.
pub async fn prepare(ctx: &Ctx<'_>, rendered: &Rendered, mode: Mode) -> anyhow::Result<Prepared> {
    let cfn = &ctx.clients.cfn;
    let ui = &ctx.ui;
    let name = &rendered.stack_name;
    for _ in 0..MAX_STEPS {
        let Some(info) = stacks::describe_stack(cfn, name).await? else { return Ok(Prepared::Ready(None)) };
        let status = info.status.clone();
        let recovery = Recovery::for_status(Some(&status));
        match recovery {
            Recovery::Create | Recovery::Update => {
                match status.as_str() {
                    "UPDATE_ROLLBACK_COMPLETE" => ui.note(format!(
                        "{name}: the last update was rolled back (UPDATE_ROLLBACK_COMPLETE); deploying over the previous version"
                    )),
                    "UPDATE_FAILED" => ui.note(format!(
                        "{name}: the last update failed with rollback disabled (UPDATE_FAILED); deploying from there"
                    )),
                    _ => {}
                }
                return Ok(Prepared::Ready(Some(info)));
            }
            Recovery::Blocked => bail!("stack {name} is {status}: {}", blocked_advice(&status)),
            _ if mode == Mode::Plan => {
                let message = format!("{name} is {status}: deploy will first {}", recovery.planned_step());
                ui.line(&message);
                return Ok(Prepared::Stop(report(rendered, StackAction::Planned, Some(status), message)));
            }
            Recovery::Wait => {
                ui.line(format!(
                    "{name} is {status}: an earlier operation (an interrupted deploy, or another one) is still running; \
                     waiting for it to finish before deploying (Ctrl-C stops waiting and leaves it running)"
                ));
                let seen = events::existing_event_ids(cfn, &info.id).await?;
                if follow(ctx, &info.id, seen, &[], 0).await?.is_none() {
                    let now = stacks::describe_stack(cfn, &info.id).await?.map(|s| s.status);
                    let shown = now.clone().unwrap_or_else(|| "gone".into());
                    let message = format!("stopped waiting: {name} is still {shown}, left running");
                    return Ok(Prepared::Stop(report(rendered, StackAction::Interrupted, now, message)));
                }
            }
            Recovery::ContinueRollback => {
                ui.line(format!(
                    "{name} is UPDATE_ROLLBACK_FAILED: an earlier update failed and so did its rollback; continuing the \
                     rollback (ContinueUpdateRollback), then deploying"
                ));
                let seen = events::existing_event_ids(cfn, &info.id).await?;
                if let Err(e) = cfn.continue_update_rollback().stack_name(&info.id).send().await {
                    let message = format!("ContinueUpdateRollback failed: {}", sdk_error(e));
                    return Ok(Prepared::Stop(report(rendered, StackAction::Failed, Some(status), message)));
                }
                let Some(outcome) = follow(ctx, &info.id, seen, &["UPDATE_ROLLBACK_COMPLETE"], 0).await? else {
                    let now = stacks::describe_stack(cfn, &info.id).await?.map(|s| s.status);
                    let message = format!("stopped waiting: the rollback of {name} goes on by itself");
                    return Ok(Prepared::Stop(report(rendered, StackAction::Interrupted, now, message)));
                };
                if !outcome.success {
                    let skip: Vec<&str> = outcome.failures.iter().map(|f| f.logical_id.as_str()).collect();
                    let message = format!(
                        "the rollback failed again ({}); fix the resources below, or skip them with \
                         `aws cloudformation continue-update-rollback --stack-name {name} --resources-to-skip {}`, \
                         then deploy again",
                        outcome.status,
                        skip.join(" ")
                    );
                    let mut r = report(rendered, StackAction::Failed, Some(outcome.status), message);
                    r.failures = outcome.failures;
                    return Ok(Prepared::Stop(r));
                }
            }
            Recovery::DiscardReview if stacks::change_sets(cfn, &info.id).await?.iter().any(|c| c.busy()) => {
                // Another run is computing or has just started executing its change set.
                ui.line(format!(
                    "{name} is REVIEW_IN_PROGRESS with a change set being computed or executed (another deploy?); \
                     waiting for it (Ctrl-C stops waiting)"
                ));
                let pause = ctx.timing.poll.max(std::time::Duration::from_millis(200));
                if ctx.interrupt.guard(tokio::time::sleep(pause)).await.is_none() {
                    let message = format!("stopped waiting: {name} is still REVIEW_IN_PROGRESS, left alone");
                    return Ok(Prepared::Stop(report(rendered, StackAction::Interrupted, Some(status), message)));
                }
            }
            Recovery::Recreate | Recovery::DiscardReview => {
                if recovery == Recovery::Recreate {
                    ui.line(format!(
                        "{name} is {status} after a failed first create; deleting it before creating it again"
                    ));
                } else {
                    ui.line(format!(
                        "{name} is REVIEW_IN_PROGRESS: an empty stack made by a change set that never ran (an interrupted \
                         deploy); removing it and its change sets before creating it"
                    ));
                }
                let seen = events::existing_event_ids(cfn, &info.id).await?;
                cfn.delete_stack().stack_name(&info.id).send().await.map_err(sdk_error)?;
                let Some(outcome) = follow(ctx, &info.id, seen, &["DELETE_COMPLETE"], 0).await? else {
                    let now = stacks::describe_stack(cfn, &info.id).await?.map(|s| s.status);
                    let message = format!("stopped waiting: the deletion of {name} ({status}) goes on by itself");
                    return Ok(Prepared::Stop(report(rendered, StackAction::Interrupted, now, message)));
                };
                if !outcome.success {
                    let mut r = report(
                        rendered,
                        StackAction::Failed,
                        Some(outcome.status.clone()),
                        format!("could not delete {name} ({status}): it is now {}", outcome.status),
                    );
                    r.failures = outcome.failures;
                    return Ok(Prepared::Stop(r));
                }
            }
        }
    }
    bail!("stack {name} did not settle after {MAX_STEPS} recovery steps; see `wsctl status` and the CloudFormation console")
}

/// How often the stop paths look again, and for how long at most.
const STOP_POLL: std::time::Duration = std::time::Duration::from_secs(1);
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Sleeps one stop-path poll interval; false when a second signal asks to stop waiting.
async fn pause(ctx: &Ctx<'_>) -> bool {
    let interval = ctx.timing.poll.min(STOP_POLL);
    ctx.interrupt.guard_after(1, tokio::time::sleep(interval)).await.is_some()
}

/// Waits until CloudFormation has finished computing a change set, which it refuses to
/// delete before, or until one whose creation call was cut short has had a moment to
/// appear. `None`: it does not exist (or the wait was cut short).
async fn settle_change_set(ctx: &Ctx<'_>, stack: &str, change_set: &str) -> Option<stacks::ChangeSetState> {
    let deadline = std::time::Instant::now() + STOP_WAIT;
    let mut absent = 0;
    loop {
        match stacks::change_set_state(&ctx.clients.cfn, stack, change_set).await {
            Ok(Some(state)) if !state.computing() => return Some(state),
            Ok(Some(_)) => {}
            Ok(None) if absent >= 2 => return None,
            Ok(None) => absent += 1,
            Err(_) => return None,
        }
        if std::time::Instant::now() > deadline || !pause(ctx).await {
            return None;
        }
    }
}

/// Interrupted before the change set ran (while CloudFormation computed it, or at the
/// prompt): deletes it, and the empty stack a first create made. The stack is unchanged.
/// If the execution started after all (the call to execute it was in flight), hands over
/// to [`stop_execution`]'s handling of a started one.
pub async fn stop_before_execution(
    ctx: &Ctx<'_>,
    rendered: &Rendered,
    change_set: &str,
    creates_stack: bool,
) -> anyhow::Result<StackReport> {
    let cfn = &ctx.clients.cfn;
    let name = &rendered.stack_name;
    let settled = settle_change_set(ctx, name, change_set).await;
    if settled.as_ref().is_some_and(stacks::ChangeSetState::started) {
        return stop_started_execution(ctx, rendered, change_set, &[]).await;
    }
    let discarded = stacks::discard_change_set(cfn, name, change_set, creates_stack).await;
    if discarded.is_err() {
        if let Ok(Some(state)) = stacks::change_set_state(cfn, name, change_set).await {
            if state.started() {
                return stop_started_execution(ctx, rendered, change_set, &[]).await;
            }
        }
    }
    let status = stacks::describe_stack(cfn, name).await?.map(|s| s.status);
    let message = match discarded {
        Ok(()) if creates_stack => {
            "interrupted before its change set ran: change set deleted, nothing created".to_owned()
        }
        Ok(()) => "interrupted before its change set ran: change set deleted, stack unchanged".to_owned(),
        Err(e) => format!(
            "interrupted before its change set ran; the stack is unchanged, but the change set could not be deleted \
             ({e:#}): it is left unexecuted, and the next deploy removes it"
        ),
    };
    Ok(*report(rendered, StackAction::Interrupted, status, message))
}

/// Interrupted while the change set executed (or while the call to execute it was in
/// flight). A change set that never started is deleted; an update is cancelled, so
/// CloudFormation rolls it back to the previous version; a create, which CloudFormation
/// can only delete, not cancel, is left to finish.
pub async fn stop_execution(ctx: &Ctx<'_>, rendered: &Rendered, cs: &ChangeSet) -> anyhow::Result<StackReport> {
    let state = stacks::change_set_state(&ctx.clients.cfn, &rendered.stack_name, &cs.id).await?;
    if state.is_some_and(|s| s.runnable()) {
        let mut r = stop_before_execution(ctx, rendered, &cs.id, cs.creates_stack).await?;
        r.changes = cs.changes.clone();
        return Ok(r);
    }
    stop_started_execution(ctx, rendered, &cs.id, &cs.changes).await
}

/// The stack's status once a started execution shows in it: right after ExecuteChangeSet
/// the stack can still read `REVIEW_IN_PROGRESS` or its previous `*_COMPLETE`.
async fn status_once_started(ctx: &Ctx<'_>, stack: &str, change_set: &str) -> anyhow::Result<Option<String>> {
    let cfn = &ctx.clients.cfn;
    let deadline = std::time::Instant::now() + STOP_WAIT;
    loop {
        let status = stacks::describe_stack(cfn, stack).await?.map(|s| s.status);
        let showing = status.as_deref().is_some_and(|s| s.ends_with("_IN_PROGRESS") && s != "REVIEW_IN_PROGRESS");
        let state = stacks::change_set_state(cfn, stack, change_set).await?;
        let finished = !state.is_some_and(|s| s.runnable() || s.execution == "EXECUTE_IN_PROGRESS");
        if showing || finished || std::time::Instant::now() > deadline || !pause(ctx).await {
            return Ok(status);
        }
    }
}

async fn stop_started_execution(
    ctx: &Ctx<'_>,
    rendered: &Rendered,
    change_set: &str,
    changes: &[ChangeRow],
) -> anyhow::Result<StackReport> {
    let cfn = &ctx.clients.cfn;
    let name = &rendered.stack_name;
    let status = status_once_started(ctx, name, change_set).await?;
    let mut failures: Vec<Failure> = Vec::new();
    let message = match status.as_deref() {
        Some("UPDATE_IN_PROGRESS") => {
            ctx.ui.line(format!(
                "{name}: interrupted during the update; cancelling it, CloudFormation rolls the stack back to its \
                 previous version (Ctrl-C again stops waiting; the rollback goes on regardless)"
            ));
            let seen = events::existing_event_ids(cfn, name).await?;
            match cfn.cancel_update_stack().stack_name(name).send().await {
                Err(e) => format!(
                    "interrupted during the update, which could not be cancelled ({}); CloudFormation finishes it by itself",
                    sdk_error(e)
                ),
                Ok(_) => match follow(ctx, name, seen, &["UPDATE_ROLLBACK_COMPLETE"], 1).await? {
                    Some(outcome) if outcome.success => {
                        "interrupted: update cancelled and rolled back to the previous version".to_owned()
                    }
                    Some(outcome) => {
                        failures = outcome.failures;
                        format!("interrupted: update cancelled, but the rollback ended {}", outcome.status)
                    }
                    None => "interrupted: update cancelled; stopped waiting for the rollback, which goes on by itself"
                        .to_owned(),
                },
            }
        }
        Some(s) if s == "CREATE_IN_PROGRESS" && rendered.kind != StackKind::Bootstrap => format!(
            "interrupted while {s}: left running, since CloudFormation can delete a stack being created but not \
             cancel it (`wsctl destroy` deletes it)"
        ),
        Some(s) if s.ends_with("_IN_PROGRESS") => format!("interrupted while {s}: left running"),
        Some(s) => format!("interrupted after its change set had run: the stack is {s}"),
        None => "interrupted: the stack no longer exists".to_owned(),
    };
    let status = stacks::describe_stack(cfn, name).await?.map(|s| s.status);
    let mut r = *report(rendered, StackAction::Interrupted, status, message);
    r.changes = changes.to_vec();
    r.failures = failures;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudformation::types::StackStatus;

    #[test]
    fn every_cloudformation_status_has_a_deliberate_recovery() {
        for status in StackStatus::values() {
            let recovery = Recovery::for_status(Some(status));
            let expected = match *status {
                "CREATE_COMPLETE"
                | "UPDATE_COMPLETE"
                | "UPDATE_ROLLBACK_COMPLETE"
                | "UPDATE_FAILED"
                | "IMPORT_COMPLETE"
                | "IMPORT_ROLLBACK_COMPLETE" => Recovery::Update,
                "REVIEW_IN_PROGRESS" => Recovery::DiscardReview,
                "DELETE_COMPLETE" => Recovery::Create,
                "UPDATE_ROLLBACK_FAILED" => Recovery::ContinueRollback,
                "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" | "CREATE_FAILED" => Recovery::Recreate,
                "DELETE_FAILED" | "IMPORT_ROLLBACK_FAILED" => Recovery::Blocked,
                "CREATE_IN_PROGRESS"
                | "UPDATE_IN_PROGRESS"
                | "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"
                | "UPDATE_ROLLBACK_IN_PROGRESS"
                | "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"
                | "ROLLBACK_IN_PROGRESS"
                | "DELETE_IN_PROGRESS"
                | "IMPORT_IN_PROGRESS"
                | "IMPORT_ROLLBACK_IN_PROGRESS" => Recovery::Wait,
                other => panic!("CloudFormation status {other} is new: decide what deploy does with it"),
            };
            assert_eq!(recovery, expected, "{status}");
        }
        assert_eq!(Recovery::for_status(None), Recovery::Create);
        assert_eq!(Recovery::for_status(Some("SOMETHING_NEW")), Recovery::Blocked);
    }

    #[test]
    fn the_next_deploy_is_spelled_out_for_every_state_a_run_can_leave() {
        let cases = [
            (None, "creates the stack"),
            (Some("UPDATE_ROLLBACK_COMPLETE"), "applies the update again"),
            (Some("UPDATE_IN_PROGRESS"), "waits for CloudFormation to finish (UPDATE_IN_PROGRESS now)"),
            (Some("CREATE_IN_PROGRESS"), "waits for CloudFormation to finish"),
            (Some("UPDATE_ROLLBACK_FAILED"), "continues the failed rollback"),
            (Some("ROLLBACK_COMPLETE"), "deletes the failed stack and creates it again"),
            (Some("UPDATE_COMPLETE"), "updates the stack from UPDATE_COMPLETE"),
            (Some("DELETE_FAILED"), "refuses: an earlier destroy"),
            (Some("REVIEW_IN_PROGRESS"), "removes the empty stack"),
        ];
        for (status, expected) in cases {
            let text = Recovery::next_deploy(status);
            assert!(text.contains(expected), "{status:?}: {text}");
        }
    }
}
