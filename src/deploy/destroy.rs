//! `wsctl destroy`: deletes a stage's app stack, then its data stack. A protected stage
//! needs `--force` (which also lifts the data stack's termination protection). The shared
//! bootstrap stack is never deleted.

use super::clients::Clients;
use super::enis;
use super::events::{self, Failure, Watch};
use super::leftovers;
use super::render::StackKind;
use super::report::Timing;
use super::stacks::{self, sdk_error};
use crate::stage::{NetworkMode, Stage};
use crate::ui::Ui;
use anyhow::{bail, Context};
use serde::Serialize;

/// What `destroy` did to one stack (`action` in the JSON report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteAction {
    /// The stack was deleted.
    Deleted,
    /// There was no stack to delete.
    Absent,
    /// The deletion failed.
    Failed,
}

/// What happened to one stack.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedStack {
    /// Stack name.
    pub name: String,
    /// What was done to the stack.
    pub action: DeleteAction,
    /// Final status.
    pub status: Option<String>,
    /// Resources that failed to delete.
    pub failures: Vec<Failure>,
}

/// The result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestroyReport {
    /// Stage.
    pub stage: String,
    /// Stacks, in deletion order.
    pub stacks: Vec<DeletedStack>,
    /// Resources kept by their DeletionPolicy.
    pub retained: Vec<String>,
    /// Overall success (false also when declined).
    pub ok: bool,
    /// Log groups outside the stacks that were deleted (API Gateway's execution logs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_groups_deleted: Vec<String>,
    /// Lambda's network interfaces deleted once released, before the data stack.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_interfaces_deleted: Vec<String>,
    /// Where the run acted (stage, account, region, profile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::aws::TargetLine>,
}

/// Options of one destroy run.
#[derive(Debug, Clone, Copy)]
pub struct DestroyOptions {
    /// Skip the confirmation.
    pub yes: bool,
    /// Allowed on a protected stage.
    pub force: bool,
    /// Delete only the app stack.
    pub keep_data: bool,
}

/// Deletes the stage's stacks.
pub async fn destroy(
    clients: &Clients,
    ui: &Ui,
    timing: Timing,
    stage: &Stage,
    opts: DestroyOptions,
) -> anyhow::Result<DestroyReport> {
    if stage.protected && !opts.force {
        bail!("stage '{}' is protected (`protected: true` in its stage file); destroying it needs --force", stage.name);
    }
    let mut kinds = vec![StackKind::App];
    if !opts.keep_data {
        kinds.push(StackKind::Data);
    }
    let mut present = Vec::new();
    for kind in &kinds {
        let name = kind.stack_name(stage);
        if let Some(info) = stacks::describe_stack(&clients.cfn, &name).await? {
            present.push((*kind, info));
        }
    }
    let mut report = DestroyReport {
        stage: stage.name.clone(),
        stacks: Vec::new(),
        retained: Vec::new(),
        ok: false,
        log_groups_deleted: Vec::new(),
        network_interfaces_deleted: Vec::new(),
        target: None,
    };
    if present.is_empty() {
        ui.line(format!("stage '{}' has no stacks to delete", stage.name));
        for kind in kinds {
            report.stacks.push(DeletedStack {
                name: kind.stack_name(stage),
                action: DeleteAction::Absent,
                status: None,
                failures: Vec::new(),
            });
        }
        report.ok = true;
        return Ok(report);
    }
    if present.iter().any(|(kind, _)| *kind == StackKind::Data) && stage.retain_data() {
        report.retained = vec!["ConnectionsTable".into(), "ApiKeysTable".into()];
        if stage.redis.mode == crate::stage::RedisMode::Create {
            report.retained.push("RedisReplicationGroup (final snapshot)".into());
        }
    }
    let names: Vec<&str> = present.iter().map(|(_, i)| i.name.as_str()).collect();
    ui.line(format!("will delete: {}", names.join(", ")));
    if !report.retained.is_empty() {
        ui.line(format!("kept by DeletionPolicy: {}", report.retained.join(", ")));
    }
    if !ui.confirm(&format!("Delete {} of stage '{}'?", names.join(" and "), stage.name), opts.yes)? {
        ui.line("nothing deleted (declined)");
        return Ok(report);
    }
    let app_stack = StackKind::App.stack_name(stage);
    // Read before the app stack (and with it the API) is gone.
    let api_id = leftovers::api_id(clients, &app_stack).await.unwrap_or_else(|e| {
        ui.note(format!("cannot find the API of {app_stack}, so its execution-log group is left: {e:#}"));
        None
    });
    for (kind, info) in present {
        if info.termination_protection {
            if !opts.force {
                bail!("stack {} has termination protection on; pass --force to lift it and delete", info.name);
            }
            clients
                .cfn
                .update_termination_protection()
                .stack_name(&info.id)
                .enable_termination_protection(false)
                .send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("lifting termination protection of {}", info.name))?;
        }
        if kind == StackKind::Data && stage.network.mode == NetworkMode::Create {
            release_network_interfaces(clients, ui, timing, &info, &mut report).await?;
        }
        let resources = stacks::stack_resources(&clients.cfn, &info.id).await.map(|r| r.len()).unwrap_or(1);
        // CloudFormation deletes a stack in review, being created (cancelling the create) or
        // already being deleted, but refuses one being updated or rolled back: wait for that.
        if info.in_progress()
            && !matches!(info.status.as_str(), "CREATE_IN_PROGRESS" | "DELETE_IN_PROGRESS" | "REVIEW_IN_PROGRESS")
        {
            ui.line(format!("{} is {}: waiting for it to finish before deleting it", info.name, info.status));
            let seen = events::existing_event_ids(&clients.cfn, &info.id).await?;
            let watch = Watch {
                stack: &info.id,
                seen,
                total: resources,
                success: &[],
                poll: timing.poll,
                timeout: timing.timeout,
            };
            events::watch(&clients.cfn, ui, watch).await?;
        }
        let seen = events::existing_event_ids(&clients.cfn, &info.id).await?;
        clients
            .cfn
            .delete_stack()
            .stack_name(&info.id)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("deleting stack {}", info.name))?;
        let outcome = events::watch(
            &clients.cfn,
            ui,
            Watch {
                stack: &info.id,
                seen,
                total: resources,
                success: &["DELETE_COMPLETE"],
                poll: timing.poll,
                timeout: timing.timeout,
            },
        )
        .await?;
        let failed = !outcome.success;
        if failed {
            ui.line(format!("{}: delete FAILED ({})", info.name, outcome.status));
            for f in &outcome.failures {
                ui.line(format!("  {} {} ({}): {}", f.status, f.logical_id, f.resource_type, f.reason));
            }
        } else {
            ui.line(format!("{}: deleted", info.name));
        }
        report.stacks.push(DeletedStack {
            name: info.name.clone(),
            action: if failed { DeleteAction::Failed } else { DeleteAction::Deleted },
            status: Some(outcome.status),
            failures: outcome.failures,
        });
        if failed {
            return Ok(report);
        }
        if let (StackKind::App, Some(api)) = (kind, api_id.as_deref()) {
            if let Some(group) = leftovers::delete_execution_logs(clients, api, &stage.api.stage_name).await? {
                ui.line(format!("deleted API Gateway's execution-log group {group}"));
                report.log_groups_deleted.push(group);
            }
        }
    }
    report.ok = true;
    Ok(report)
}

/// Before the data stack (its subnets and security group) is deleted: deletes the network
/// interfaces Lambda has released and waits for the rest, so the delete does not fail on
/// `DependencyViolation`. An error leaves the data stack untouched.
async fn release_network_interfaces(
    clients: &Clients,
    ui: &Ui,
    timing: Timing,
    data: &stacks::StackInfo,
    report: &mut DestroyReport,
) -> anyhow::Result<()> {
    let resources = stacks::stack_resources(&clients.cfn, &data.id).await?;
    let Some(group) =
        resources.get(crate::contract::data_resource::LAMBDA_SECURITY_GROUP).and_then(|r| r.physical_id.as_deref())
    else {
        return Ok(());
    };
    let ec2 = enis::Ec2::new(&clients.sdk)?;
    let poll = timing.poll.max(std::time::Duration::from_millis(200));
    report.network_interfaces_deleted = enis::release_lambda_interfaces(&ec2, ui, group, poll, timing.timeout)
        .await
        .with_context(|| format!("releasing Lambda's network interfaces before deleting {}", data.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_actions_are_the_words_of_the_json_report() {
        let words = [DeleteAction::Deleted, DeleteAction::Absent, DeleteAction::Failed]
            .map(|a| serde_json::to_value(a).expect("serializes"));
        assert_eq!(words, ["deleted", "absent", "failed"]);
    }
}
