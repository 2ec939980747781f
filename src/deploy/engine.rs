//! The deploy engine: takes one rendered stack through a change set (create, show,
//! confirm, execute, follow), and runs the three stacks of a stage in order for `deploy`
//! and `plan`.

use super::artifacts::{self, ArtifactReport};
use super::clients::Clients;
use super::events::{self, Failure, Watch};
use super::manifest::Manifest;
use super::render::{self, AppInputs, Rendered, StackKind, INLINE_TEMPLATE_LIMIT};
use super::stacks::{self, sdk_error, ChangeRow, ChangeSetRequest, TemplateSource};
use super::ui::Ui;
use super::wiring;
use crate::stage::Stage;
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
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

/// What happened to one stack.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackReport {
    /// Which stack.
    pub kind: StackKind,
    /// Stack name.
    pub stack_name: String,
    /// `created`, `updated`, `unchanged`, `planned`, `declined` or `failed`.
    pub action: String,
    /// Final stack status, when the stack exists.
    pub status: Option<String>,
    /// The change set's changes.
    pub changes: Vec<ChangeRow>,
    /// Failed resources with reasons.
    pub failures: Vec<Failure>,
    /// Extra explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StackReport {
    fn new(r: &Rendered, action: &str) -> StackReport {
        StackReport {
            kind: r.kind,
            stack_name: r.stack_name.clone(),
            action: action.to_owned(),
            status: None,
            changes: Vec::new(),
            failures: Vec::new(),
            message: None,
        }
    }

    /// The stack changed or would change.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || matches!(self.action.as_str(), "created" | "updated" | "planned")
    }

    /// The operation failed.
    pub fn failed(&self) -> bool {
        self.action == "failed"
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
}

fn show_changes(ui: &Ui, stack: &str, changes: &[ChangeRow]) {
    ui.line(format!("{stack}: {} change(s)", changes.len()));
    for c in changes {
        let mark = match c.action.as_str() {
            "Add" => "+",
            "Remove" => "-",
            "Modify" => "~",
            _ => "?",
        };
        let stateful = matches!(
            c.resource_type.as_str(),
            "AWS::DynamoDB::Table" | "AWS::ElastiCache::ReplicationGroup" | "AWS::EC2::VPC"
        );
        let replace = match (c.replaces(), stateful) {
            (true, true) => "  (REPLACEMENT: the existing resource and its data are replaced)",
            (true, false) => "  (REPLACEMENT)",
            _ => "",
        };
        ui.line(format!("  {mark} {:<8} {:<40} {}{replace}", c.action, c.resource_type, c.logical_id));
    }
}

/// Takes one stack through a change set.
pub async fn apply_stack(ctx: &Ctx<'_>, rendered: &Rendered, mode: Mode) -> anyhow::Result<StackReport> {
    let cfn = &ctx.clients.cfn;
    let ui = &ctx.ui;
    let name = &rendered.stack_name;
    let mut existing = stacks::describe_stack(cfn, name).await?;
    if let Some(info) = &existing {
        if info.in_progress() && !info.in_review() {
            anyhow::bail!("stack {name} is busy ({}); wait for it to finish (`wsctl status`) and retry", info.status);
        }
        if info.failed_create() {
            match mode {
                Mode::Plan => {
                    ui.note(format!(
                        "{name}: {} after a failed first create; deploy deletes and recreates it",
                        info.status
                    ));
                }
                Mode::Apply { .. } => {
                    ui.note(format!(
                        "{name}: {} after a failed first create; deleting it before creating it again",
                        info.status
                    ));
                    let seen = events::existing_event_ids(cfn, &info.id).await?;
                    cfn.delete_stack().stack_name(&info.id).send().await.map_err(sdk_error)?;
                    let outcome = events::watch(
                        cfn,
                        ui,
                        Watch {
                            stack: &info.id,
                            seen,
                            total: 1,
                            success: &["DELETE_COMPLETE"],
                            poll: ctx.timing.poll,
                            timeout: ctx.timing.timeout,
                        },
                    )
                    .await?;
                    if !outcome.success {
                        anyhow::bail!("could not delete the failed stack {name}: {}", outcome.status);
                    }
                    existing = None;
                }
            }
        }
    }
    let create = existing.as_ref().is_none_or(|s| s.in_review() || s.failed_create());

    // `WSCTL_INLINE_TEMPLATE_LIMIT` lowers the limit (tests use it to exercise the S3 path).
    let inline_limit = std::env::var("WSCTL_INLINE_TEMPLATE_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(INLINE_TEMPLATE_LIMIT, |v: usize| v.min(INLINE_TEMPLATE_LIMIT));
    let template = if rendered.body.len() > inline_limit {
        let bucket = ctx.bucket.as_deref().with_context(|| {
            format!("the {name} template is {} bytes, over CloudFormation's inline limit, and no artifact bucket exists yet", rendered.body.len())
        })?;
        TemplateSource::Url(
            artifacts::upload_template(&ctx.clients.s3, bucket, &ctx.clients.region, &rendered.body).await?,
        )
    } else {
        TemplateSource::Body(rendered.body.clone())
    };
    let cs = stacks::create_change_set(
        cfn,
        ChangeSetRequest {
            stack: name,
            template,
            parameters: &rendered.parameters,
            tags: &rendered.tags,
            create,
            poll: ctx.timing.poll.min(Duration::from_secs(2)),
        },
    )
    .await?;
    // Resources whose Condition is false are not part of the stack (some emulators list
    // them anyway).
    let parsed = super::cfn_yaml::Template::parse("rendered", &rendered.body)?;
    let conditions = parsed.evaluate_conditions(&rendered.parameters);
    let cs = stacks::ChangeSet {
        changes: cs
            .changes
            .into_iter()
            .filter(|c| {
                c.action != "Add"
                    || parsed
                        .resource_condition(&c.logical_id)
                        .is_none_or(|cond| conditions.get(cond).copied().unwrap_or(true))
            })
            .collect(),
        ..cs
    };
    let mut report = StackReport::new(rendered, "unchanged");
    report.status = existing.as_ref().map(|s| s.status.clone());
    if cs.empty {
        ui.line(format!("{name}: no changes"));
        return Ok(report);
    }
    report.changes = cs.changes.clone();
    show_changes(ui, name, &cs.changes);

    if mode == Mode::Plan {
        stacks::discard_change_set(cfn, name, &cs).await?;
        report.action = "planned".into();
        return Ok(report);
    }
    let Mode::Apply { yes } = mode else { unreachable!("plan returned above") };
    let verb = if create { "Create" } else { "Update" };
    let confirmed = match ui.confirm(&format!("{verb} stack {name}?"), yes) {
        Ok(answer) => answer,
        Err(e) => {
            stacks::discard_change_set(cfn, name, &cs).await?;
            return Err(e);
        }
    };
    if !confirmed {
        stacks::discard_change_set(cfn, name, &cs).await?;
        ui.line(format!("{name}: not applied (declined)"));
        report.action = "declined".into();
        return Ok(report);
    }

    let seen = events::existing_event_ids(cfn, name).await?;
    if let Err(err) = cfn.execute_change_set().change_set_name(&cs.id).stack_name(name).send().await {
        // The service refused or failed the execution outright (no stack events to follow):
        // name the change set's resources that did not complete.
        let err = sdk_error(err);
        let resources = stacks::stack_resources(cfn, name).await.unwrap_or_default();
        let unfinished: Vec<&ChangeRow> = cs
            .changes
            .iter()
            .filter(|c| c.action != "Remove")
            .filter(|c| resources.get(&c.logical_id).is_none_or(|r| !r.status.ends_with("_COMPLETE")))
            .collect();
        report.action = "failed".into();
        report.status = stacks::describe_stack(cfn, name).await.ok().flatten().map(|s| s.status);
        for (i, c) in unfinished.iter().enumerate() {
            report.failures.push(Failure {
                logical_id: c.logical_id.clone(),
                resource_type: c.resource_type.clone(),
                status: if i == 0 { "FAILED".into() } else { "NOT_REACHED".into() },
                reason: if i == 0 { err.to_string() } else { "not reached: cancelled after the failure".into() },
            });
        }
        report.message = Some(format!("ExecuteChangeSet failed: {err}"));
        return Ok(report);
    }
    let outcome = events::watch(
        cfn,
        ui,
        Watch {
            stack: name,
            seen,
            total: cs.changes.len(),
            success: &["CREATE_COMPLETE", "UPDATE_COMPLETE"],
            poll: ctx.timing.poll,
            timeout: ctx.timing.timeout,
        },
    )
    .await?;
    report.status = Some(outcome.status.clone());
    report.failures = outcome.failures;
    report.action = if !outcome.success {
        "failed".into()
    } else if create {
        "created".into()
    } else {
        "updated".into()
    };
    Ok(report)
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
}

fn print_failures(ui: &Ui, report: &StackReport) {
    ui.line(format!("{}: FAILED ({})", report.stack_name, report.status.as_deref().unwrap_or("no status")));
    if let Some(m) = &report.message {
        ui.line(format!("  {m}"));
    }
    for f in &report.failures {
        ui.line(format!("  {} {} ({}): {}", f.status, f.logical_id, f.resource_type, f.reason));
    }
}

/// Deploys (or plans) the bootstrap, data and app stacks of a stage, in order, stopping
/// at the first failure.
pub async fn run_stage(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    account: &str,
    manifest_path: &Path,
    manifest: &Manifest,
    mode: Mode,
) -> anyhow::Result<StageReport> {
    let clients = ctx.clients;
    let mut report = StageReport {
        stage: stage.name.clone(),
        account: account.to_owned(),
        region: clients.region.clone(),
        artifacts: Vec::new(),
        stacks: Vec::new(),
        outputs: BTreeMap::new(),
        ok: false,
    };

    // 1. Bootstrap: the artifact bucket.
    let bootstrap = render::render_bootstrap()?;
    let r = apply_stack(ctx, &bootstrap, mode).await?;
    let failed = r.failed();
    if failed {
        print_failures(&ctx.ui, &r);
    }
    report.stacks.push(r);
    if failed || report.stacks[0].action == "declined" {
        return Ok(report);
    }
    let bootstrap_exists = stacks::describe_stack(&clients.cfn, &bootstrap.stack_name).await?.is_some();
    let bucket = if bootstrap_exists {
        let resources = stacks::stack_resources(&clients.cfn, &bootstrap.stack_name).await?;
        resources
            .get("ArtifactBucket")
            .and_then(|r| r.physical_id.clone())
            .context("the bootstrap stack has no ArtifactBucket")?
    } else {
        format!("wsctl-artifacts-{account}-{}", clients.region)
    };
    ctx.bucket = bootstrap_exists.then(|| bucket.clone());

    // 2. Artifacts: upload only what the bucket lacks.
    report.artifacts = if bootstrap_exists {
        artifacts::sync(&clients.s3, &bucket, manifest_path, manifest, mode == Mode::Plan).await?
    } else {
        artifacts::sync_report_all_missing(manifest)
    };
    let missing: Vec<&str> = report.artifacts.iter().filter(|a| a.uploaded).map(|a| a.function.as_str()).collect();
    let verb = if mode == Mode::Plan { "to upload" } else { "uploaded" };
    if missing.is_empty() {
        ctx.ui.line("artifacts: all already in the bucket, nothing uploaded");
    } else {
        ctx.ui.line(format!("artifacts {verb}: {}", missing.join(", ")));
    }

    // 3. Data stack.
    let data = render::render_data(stage)?;
    let r = apply_stack(ctx, &data, mode).await?;
    let stop = r.failed() || r.action == "declined";
    if r.failed() {
        print_failures(&ctx.ui, &r);
    }
    report.stacks.push(r);
    if stop {
        return Ok(report);
    }
    if let (Mode::Apply { .. }, true) = (mode, stage.protected) {
        let info = stacks::describe_stack(&clients.cfn, &data.stack_name).await?;
        if info.is_some_and(|i| !i.termination_protection) {
            clients
                .cfn
                .update_termination_protection()
                .stack_name(&data.stack_name)
                .enable_termination_protection(true)
                .send()
                .await
                .map_err(sdk_error)
                .context("enabling termination protection on the data stack")?;
        }
    }

    // 4. App stack.
    let data_deployed = stacks::describe_stack(&clients.cfn, &data.stack_name)
        .await?
        .is_some_and(|s| !s.in_review() && !s.failed_create());
    if !data_deployed {
        // Plan of a first deploy: the app's wiring does not exist yet.
        let app = render::render_app(
            stage,
            &AppInputs { wiring: None, artifact_bucket: Some(&bucket), manifest: Some(manifest) },
        )?;
        let mut r = StackReport::new(&app, "planned");
        let template = super::cfn_yaml::Template::parse("app", &app.body)?;
        let conditions = template.evaluate_conditions(&app.parameters);
        r.changes = template
            .resources()
            .into_iter()
            .flatten()
            .filter(|(_, body)| {
                body.get("Condition")
                    .and_then(|c| c.as_str())
                    .is_none_or(|c| conditions.get(c).copied().unwrap_or(true))
            })
            .filter_map(|(id, body)| {
                Some(ChangeRow {
                    action: "Add".into(),
                    logical_id: id.as_str()?.to_owned(),
                    resource_type: body.get("Type")?.as_str()?.to_owned(),
                    replacement: None,
                })
            })
            .collect();
        r.message = Some("created after the data stack; its parameters depend on the data stack's resources".into());
        show_changes(&ctx.ui, &app.stack_name, &r.changes);
        report.stacks.push(r);
        report.ok = true;
        return Ok(report);
    }
    let wiring = wiring::resolve(&clients.cfn, &clients.elasticache, stage).await?;
    let app = render::render_app(
        stage,
        &AppInputs { wiring: Some(&wiring), artifact_bucket: Some(&bucket), manifest: Some(manifest) },
    )?;
    let r = apply_stack(ctx, &app, mode).await?;
    let failed = r.failed();
    if failed {
        print_failures(&ctx.ui, &r);
    }
    let declined = r.action == "declined";
    report.stacks.push(r);
    if failed || declined {
        return Ok(report);
    }
    if mode != Mode::Plan {
        if let Some(info) = stacks::describe_stack(&clients.cfn, &app.stack_name).await? {
            report.outputs = info.outputs;
        }
        let mismatches = verify_deployed_code(clients, &app.stack_name, manifest).await?;
        if !mismatches.is_empty() {
            for m in &mismatches {
                ctx.ui.line(format!("  CODE MISMATCH {m}"));
            }
            if let Some(last) = report.stacks.last_mut() {
                last.message = Some(format!("deployed code differs from the manifest: {}", mismatches.join("; ")));
            }
            return Ok(report);
        }
    }
    report.ok = true;
    Ok(report)
}

/// Compares the code each function runs (Lambda's own SHA-256 of the zip it fetched) with
/// the manifest; returns one line per mismatch. Catches an artifact replaced in the
/// bucket under its content-addressed key.
pub async fn verify_deployed_code(
    clients: &Clients,
    app_stack: &str,
    manifest: &Manifest,
) -> anyhow::Result<Vec<String>> {
    let mut mismatches = Vec::new();
    for f in super::functions::FUNCTIONS {
        let Some(artifact) = manifest.functions.get(f.name) else { continue };
        let expected = artifacts::hex_to_base64(&artifact.sha256)
            .with_context(|| format!("manifest: `{}` has a malformed sha256", f.name))?;
        let name = format!("{app_stack}-{}", f.name);
        let config = clients
            .lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("reading the code hash of {name}"))?;
        let actual = config.code_sha256().unwrap_or_default();
        if actual != expected {
            mismatches.push(format!("{name}: runs {actual}, the manifest has {expected} ({})", artifact.file));
        }
    }
    Ok(mismatches)
}
