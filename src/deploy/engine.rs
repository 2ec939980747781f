//! The deploy engine: takes one rendered stack through a change set (create, show,
//! confirm, execute, follow), and runs the three stacks of a stage in order for `deploy`
//! and `plan`.

use super::artifacts::{self, ArtifactReport};
use super::clients::Clients;
use super::events::{self, Failure, Watch};
use super::manifest::Manifest;
use super::recovery::{self, Prepared, Recovery};
use super::render::{self, AppInputs, Rendered, StackKind, INLINE_TEMPLATE_LIMIT};
use super::signals::Interrupt;
use super::stacks::{self, sdk_error, ChangeRow, ChangeSetRequest, TemplateSource};
use super::wiring;
use crate::stage::Stage;
use crate::ui::Ui;
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
    /// `created`, `updated`, `unchanged`, `planned`, `declined`, `failed` or `interrupted`.
    pub action: String,
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
    pub fn new(r: &Rendered, action: &str) -> StackReport {
        StackReport {
            kind: r.kind,
            stack_name: r.stack_name.clone(),
            action: action.to_owned(),
            status: None,
            changes: Vec::new(),
            failures: Vec::new(),
            message: None,
            next_deploy: None,
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

    /// A signal stopped the operation.
    pub fn interrupted(&self) -> bool {
        self.action == "interrupted"
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
            _ if c.action == "Remove" && c.resource_type == "AWS::Lambda::Version" => {
                "  (leaves the stack; the version itself is kept for rollback, within lambda.keep_versions)"
            }
            _ => "",
        };
        ui.line(format!("  {mark} {:<8} {:<40} {}{replace}", c.action, c.resource_type, c.logical_id));
    }
}

/// Asks for confirmation without blocking the runtime: the prompt reads stdin on a thread
/// of its own, so a Ctrl-C at the prompt is seen (`None`) instead of waiting for a line.
async fn confirm(ctx: &Ctx<'_>, question: String, yes: bool) -> Option<anyhow::Result<bool>> {
    if yes || !ctx.ui.interactive {
        return Some(ctx.ui.confirm(&question, yes));
    }
    let ui = ctx.ui;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread, not `spawn_blocking`: a read left blocked by Ctrl-C must not keep
    // the runtime from shutting down.
    std::thread::spawn(move || {
        let _ = tx.send(ui.confirm(&question, false));
    });
    let answer = ctx.interrupt.guard(rx).await;
    if answer.is_none() {
        // End the prompt's line: the terminal echoed ^C after the question.
        eprintln!();
    }
    answer.map(|answer| answer.unwrap_or_else(|_| Err(anyhow::anyhow!("the prompt failed"))))
}

/// Takes one stack through a change set: recovers what an earlier run left mid-way,
/// creates the change set, shows it, confirms, executes and follows it. A Ctrl-C at any
/// point leaves the stack unchanged, rolled back or running to completion, and the
/// report says which (`action: interrupted`).
pub async fn apply_stack(ctx: &Ctx<'_>, rendered: &Rendered, mode: Mode) -> anyhow::Result<StackReport> {
    let cfn = &ctx.clients.cfn;
    let ui = &ctx.ui;
    let name = &rendered.stack_name;
    let existing = match recovery::prepare(ctx, rendered, mode).await? {
        Prepared::Ready(existing) => existing,
        Prepared::Stop(report) => return Ok(*report),
    };
    let create = existing.as_ref().is_none_or(|s| s.in_review());

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
    let cs_name = stacks::new_change_set_name();
    let request = ChangeSetRequest {
        stack: name,
        name: &cs_name,
        template,
        parameters: &rendered.parameters,
        tags: &rendered.tags,
        create,
        poll: ctx.timing.poll.min(Duration::from_secs(2)),
    };
    let Some(cs) = ctx.interrupt.guard(stacks::create_change_set(cfn, request)).await else {
        return recovery::stop_before_execution(ctx, rendered, &cs_name, create).await;
    };
    let cs = cs?;
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
        stacks::discard_change_set(cfn, name, &cs.id, cs.creates_stack).await?;
        report.action = "planned".into();
        return Ok(report);
    }
    let Mode::Apply { yes } = mode else { unreachable!("plan returned above") };
    let verb = if create { "Create" } else { "Update" };
    let confirmed = match confirm(ctx, format!("{verb} stack {name}?"), yes).await {
        None => return recovery::stop_before_execution(ctx, rendered, &cs.id, cs.creates_stack).await,
        Some(Ok(answer)) => answer,
        Some(Err(e)) => {
            stacks::discard_change_set(cfn, name, &cs.id, cs.creates_stack).await?;
            return Err(e);
        }
    };
    if !confirmed {
        stacks::discard_change_set(cfn, name, &cs.id, cs.creates_stack).await?;
        ui.line(format!("{name}: not applied (declined)"));
        report.action = "declined".into();
        return Ok(report);
    }
    if ctx.interrupt.fired() {
        return recovery::stop_before_execution(ctx, rendered, &cs.id, cs.creates_stack).await;
    }
    // Executing ours would make CloudFormation delete them anyway; say what they were.
    let leftovers = stacks::change_sets(cfn, name).await?.into_iter().filter(|c| c.leftover() && c.id != cs.id);
    for old in leftovers {
        ui.note(format!(
            "{name}: removing change set {} (created {}, never executed) left by an interrupted deploy",
            old.name, old.created
        ));
        stacks::discard_change_set(cfn, name, &old.id, false).await?;
    }

    let seen = events::existing_event_ids(cfn, name).await?;
    let execute = async {
        // The change set's name as the request token: a retried call cannot run it twice.
        let executed = cfn
            .execute_change_set()
            .change_set_name(&cs.id)
            .stack_name(name)
            .client_request_token(&cs_name)
            .send()
            .await;
        if let Err(err) = executed {
            return anyhow::Ok(Err(sdk_error(err)));
        }
        let watch = Watch {
            stack: name,
            seen,
            total: cs.changes.len(),
            success: &["CREATE_COMPLETE", "UPDATE_COMPLETE"],
            poll: ctx.timing.poll,
            timeout: ctx.timing.timeout,
        };
        events::watch(cfn, ui, watch).await.map(Ok)
    };
    let outcome = match ctx.interrupt.guard(execute).await {
        None => return recovery::stop_execution(ctx, rendered, &cs).await,
        Some(result) => result?,
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) => return execution_refused(ctx, rendered, &cs, err).await,
    };
    report.status = Some(outcome.status.clone());
    report.failures = outcome.failures;
    report.action = if !outcome.success {
        report.next_deploy = Some(Recovery::next_deploy(Some(&outcome.status)));
        "failed".into()
    } else if create {
        "created".into()
    } else {
        "updated".into()
    };
    Ok(report)
}

/// The service refused or failed the execution outright (no stack events to follow):
/// names the change set's resources that did not complete.
async fn execution_refused(
    ctx: &Ctx<'_>,
    rendered: &Rendered,
    cs: &stacks::ChangeSet,
    err: anyhow::Error,
) -> anyhow::Result<StackReport> {
    let cfn = &ctx.clients.cfn;
    let name = &rendered.stack_name;
    let resources = stacks::stack_resources(cfn, name).await.unwrap_or_default();
    let unfinished: Vec<&ChangeRow> = cs
        .changes
        .iter()
        .filter(|c| c.action != "Remove")
        .filter(|c| resources.get(&c.logical_id).is_none_or(|r| !r.status.ends_with("_COMPLETE")))
        .collect();
    let mut report = StackReport::new(rendered, "failed");
    report.changes = cs.changes.clone();
    report.status = stacks::describe_stack(cfn, name).await.ok().flatten().map(|s| s.status);
    report.next_deploy = Some(Recovery::next_deploy(report.status.as_deref()));
    for (i, c) in unfinished.iter().enumerate() {
        report.failures.push(Failure {
            logical_id: c.logical_id.clone(),
            resource_type: c.resource_type.clone(),
            status: if i == 0 { "FAILED".into() } else { "NOT_REACHED".into() },
            reason: if i == 0 { err.to_string() } else { "not reached: cancelled after the failure".into() },
        });
    }
    report.message = Some(format!("ExecuteChangeSet failed: {err}"));
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
    /// Stopped by Ctrl-C or SIGTERM.
    pub interrupted: bool,
    /// Old Lambda versions deleted after the deploy (`lambda.keep_versions`).
    pub pruned_versions: Vec<super::versions::PrunedFunction>,
    /// How the run ended when it stopped between stacks.
    pub message: Option<String>,
    /// Where the run acted (stage, account, region, profile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::aws::TargetLine>,
}

impl StageReport {
    /// Records one stack's report and prints what went wrong with it; true when the stage
    /// stops here (failed, interrupted or declined).
    fn record(&mut self, ui: &Ui, r: StackReport) -> bool {
        let stop = r.failed() || r.interrupted() || r.action == "declined";
        if r.failed() || r.interrupted() {
            print_outcome(ui, &r);
        }
        self.interrupted |= r.interrupted();
        self.stacks.push(r);
        stop
    }

    /// A signal arrived between two stacks: stop before `next`, say where things stand.
    fn stop_between(&mut self, ui: &Ui, next: &[&str]) {
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
        interrupted: false,
        pruned_versions: Vec::new(),
        message: None,
        target: None,
    };

    // 1. Bootstrap: the artifact bucket.
    let bootstrap = render::render_bootstrap()?;
    let data_name = StackKind::Data.stack_name(stage);
    let app_name = StackKind::App.stack_name(stage);
    let r = apply_stack(ctx, &bootstrap, mode).await?;
    if report.record(&ctx.ui, r) {
        return Ok(report);
    }
    // A plan can find the bootstrap stack absent, in review, failed or still being
    // created: then there is no bucket yet and every artifact would be uploaded.
    let usable = stacks::describe_stack(&clients.cfn, &bootstrap.stack_name)
        .await?
        .is_some_and(|s| !s.in_review() && !s.failed_create());
    let bucket_in_stack = if usable {
        let resources = stacks::stack_resources(&clients.cfn, &bootstrap.stack_name).await?;
        resources.get("ArtifactBucket").and_then(|r| r.physical_id.clone())
    } else {
        None
    };
    if bucket_in_stack.is_none() && mode != Mode::Plan {
        anyhow::bail!("the bootstrap stack {} has no ArtifactBucket", bootstrap.stack_name);
    }
    let bootstrap_exists = bucket_in_stack.is_some();
    let bucket = bucket_in_stack.unwrap_or_else(|| format!("wsctl-artifacts-{account}-{}", clients.region));
    ctx.bucket = bootstrap_exists.then(|| bucket.clone());

    // 2. Artifacts: upload only what the bucket lacks. Each is one PutObject under its
    // hash, so an interrupted upload leaves nothing half-written.
    report.artifacts = if bootstrap_exists {
        let sync = artifacts::sync(&clients.s3, &bucket, manifest_path, manifest, mode == Mode::Plan);
        match ctx.interrupt.guard(sync).await {
            Some(result) => result?,
            None => {
                report.stop_between(&ctx.ui, &[&data_name, &app_name]);
                return Ok(report);
            }
        }
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
    if ctx.interrupt.fired() {
        report.stop_between(&ctx.ui, &[&data_name, &app_name]);
        return Ok(report);
    }

    // 3. Data stack.
    let data = render::render_data(stage)?;
    let r = apply_stack(ctx, &data, mode).await?;
    if report.record(&ctx.ui, r) {
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
    // (A plan can find the data stack absent, failed, or still being worked on.)
    let data_deployed = stacks::describe_stack(&clients.cfn, &data.stack_name)
        .await?
        .is_some_and(|s| !s.in_progress() && !s.failed_create());
    if !data_deployed {
        // Plan before the data stack is in place: the app's wiring cannot be read yet.
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
    if ctx.interrupt.fired() {
        report.stop_between(&ctx.ui, &[&app_name]);
        return Ok(report);
    }
    let wiring = wiring::resolve(&clients.cfn, &clients.elasticache, stage).await?;
    let app = render::render_app(
        stage,
        &AppInputs { wiring: Some(&wiring), artifact_bucket: Some(&bucket), manifest: Some(manifest) },
    )?;
    let r = apply_stack(ctx, &app, mode).await?;
    if report.record(&ctx.ui, r) {
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
        // The deploy is done; a failure to tidy up only warns.
        let keep = stage.lambda.keep_versions as usize;
        match super::versions::prune(&clients.lambda, &clients.cfn, &app.stack_name, keep).await {
            Ok(pruned) => {
                let deleted: Vec<String> = pruned
                    .iter()
                    .filter(|p| !p.deleted.is_empty())
                    .map(|p| format!("{} {}", p.function, p.deleted.join(",")))
                    .collect();
                if !deleted.is_empty() {
                    ctx.ui.line(format!("old versions deleted (keeping {keep} per function): {}", deleted.join("; ")));
                }
                for p in pruned.iter().filter(|p| !p.errors.is_empty()) {
                    ctx.ui.note(format!("warning: {}: {}", p.function, p.errors.join("; ")));
                }
                report.pruned_versions = pruned;
            }
            Err(e) => ctx.ui.note(format!("warning: old Lambda versions were not pruned: {e:#}")),
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
    for f in crate::contract::FUNCTIONS {
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
