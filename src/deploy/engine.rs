//! The deploy engine: takes one rendered stack through a change set (create, show,
//! confirm, execute, follow), and runs the three stacks of a stage in order for `deploy`
//! and `plan`.

use super::artifacts;
use super::clients::Clients;
use super::events::{self, Failure, Watch};
use super::manifest::Manifest;
use super::recovery::{self, Prepared, Recovery};
use super::render::{self, AppInputs, Rendered, StackKind, INLINE_TEMPLATE_LIMIT};
use super::report::{Ctx, Mode, StackAction, StackReport, StageReport};
use super::stacks::{self, sdk_error, ChangeRow, ChangeSetRequest, TemplateSource};
use super::wiring;
use crate::stage::Stage;
use crate::ui::Ui;
use anyhow::Context;
use std::path::Path;
use std::time::Duration;

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
    let name = &rendered.stack_name;
    let existing = match recovery::prepare(ctx, rendered, mode).await? {
        Prepared::Ready(existing) => existing,
        Prepared::Stop(report) => return Ok(*report),
    };
    let create = existing.as_ref().is_none_or(|s| s.in_review());

    let template = template_source(ctx, rendered).await?;
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
    let cs = without_inactive_resources(rendered, cs?);
    let mut report = StackReport::new(rendered, StackAction::Unchanged);
    report.status = existing.as_ref().map(|s| s.status.clone());
    if cs.empty {
        ctx.ui.line(format!("{name}: no changes"));
        return Ok(report);
    }
    report.changes = cs.changes.clone();
    show_changes(&ctx.ui, name, &cs.changes);

    let Mode::Apply { yes } = mode else {
        stacks::discard_change_set(cfn, name, &cs.id, cs.creates_stack).await?;
        report.action = StackAction::Planned;
        return Ok(report);
    };
    match confirm_execution(ctx, rendered, &cs, create, yes).await? {
        None => return recovery::stop_before_execution(ctx, rendered, &cs.id, cs.creates_stack).await,
        Some(false) => {
            report.action = StackAction::Declined;
            return Ok(report);
        }
        Some(true) => {}
    }
    remove_leftover_change_sets(ctx, name, &cs).await?;
    execute_and_follow(ctx, rendered, &cs, &cs_name, create, report).await
}

/// The template inline, or through the artifact bucket when it is over CloudFormation's
/// inline limit (`WSCTL_INLINE_TEMPLATE_LIMIT` lowers the limit: tests use it to exercise
/// the S3 path).
async fn template_source(ctx: &Ctx<'_>, rendered: &Rendered) -> anyhow::Result<TemplateSource> {
    let inline_limit = std::env::var("WSCTL_INLINE_TEMPLATE_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(INLINE_TEMPLATE_LIMIT, |v: usize| v.min(INLINE_TEMPLATE_LIMIT));
    if rendered.body.len() <= inline_limit {
        return Ok(TemplateSource::Body(rendered.body.clone()));
    }
    let bucket = ctx.bucket.as_deref().with_context(|| {
        format!(
            "the {} template is {} bytes, over CloudFormation's inline limit, and no artifact bucket exists yet",
            rendered.stack_name,
            rendered.body.len()
        )
    })?;
    let url = artifacts::upload_template(&ctx.clients.s3, bucket, &ctx.clients.region, &rendered.body).await?;
    Ok(TemplateSource::Url(url))
}

/// The change set without the additions of resources whose Condition is false: they are
/// not part of the stack (some emulators list them anyway).
fn without_inactive_resources(rendered: &Rendered, cs: stacks::ChangeSet) -> stacks::ChangeSet {
    let conditions = rendered.template.evaluate_conditions(&rendered.parameters);
    let active = |c: &ChangeRow| {
        c.action != "Add"
            || rendered
                .template
                .resource_condition(&c.logical_id)
                .is_none_or(|cond| conditions.get(cond).copied().unwrap_or(true))
    };
    stacks::ChangeSet { changes: cs.changes.into_iter().filter(|c| active(c)).collect(), ..cs }
}

/// Asks whether to execute the change set (`--yes` answers for the operator). `Some(false)`:
/// declined, and the change set is discarded; `None`: a signal came first.
async fn confirm_execution(
    ctx: &Ctx<'_>,
    rendered: &Rendered,
    cs: &stacks::ChangeSet,
    create: bool,
    yes: bool,
) -> anyhow::Result<Option<bool>> {
    let (cfn, name) = (&ctx.clients.cfn, &rendered.stack_name);
    let verb = if create { "Create" } else { "Update" };
    match confirm(ctx, format!("{verb} stack {name}?"), yes).await {
        None => Ok(None),
        Some(Ok(true)) if ctx.interrupt.fired() => Ok(None),
        Some(Ok(true)) => Ok(Some(true)),
        Some(Ok(false)) => {
            stacks::discard_change_set(cfn, name, &cs.id, cs.creates_stack).await?;
            ctx.ui.line(format!("{name}: not applied (declined)"));
            Ok(Some(false))
        }
        Some(Err(e)) => {
            stacks::discard_change_set(cfn, name, &cs.id, cs.creates_stack).await?;
            Err(e)
        }
    }
}

/// Removes change sets an interrupted deploy left (never executed): executing ours would
/// make CloudFormation delete them anyway; this says what they were.
async fn remove_leftover_change_sets(ctx: &Ctx<'_>, name: &str, ours: &stacks::ChangeSet) -> anyhow::Result<()> {
    let cfn = &ctx.clients.cfn;
    let leftovers = stacks::change_sets(cfn, name).await?.into_iter().filter(|c| c.leftover() && c.id != ours.id);
    for old in leftovers {
        ctx.ui.note(format!(
            "{name}: removing change set {} (created {}, never executed) left by an interrupted deploy",
            old.name, old.created
        ));
        stacks::discard_change_set(cfn, name, &old.id, false).await?;
    }
    Ok(())
}

/// Executes the change set and follows the stack's events until it settles; fills in
/// `report` with the outcome.
async fn execute_and_follow(
    ctx: &Ctx<'_>,
    rendered: &Rendered,
    cs: &stacks::ChangeSet,
    cs_name: &str,
    create: bool,
    mut report: StackReport,
) -> anyhow::Result<StackReport> {
    let (cfn, name) = (&ctx.clients.cfn, &rendered.stack_name);
    let seen = events::existing_event_ids(cfn, name).await?;
    let execute = async {
        // The change set's name as the request token: a retried call cannot run it twice.
        let executed = cfn
            .execute_change_set()
            .change_set_name(&cs.id)
            .stack_name(name)
            .client_request_token(cs_name)
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
        events::watch(cfn, &ctx.ui, watch).await.map(Ok)
    };
    let outcome = match ctx.interrupt.guard(execute).await {
        None => return recovery::stop_execution(ctx, rendered, cs).await,
        Some(result) => result?,
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) => return execution_refused(ctx, rendered, cs, err).await,
    };
    report.status = Some(outcome.status.clone());
    report.failures = outcome.failures;
    report.action = if !outcome.success {
        report.next_deploy = Some(Recovery::next_deploy(Some(&outcome.status)));
        StackAction::Failed
    } else if create {
        StackAction::Created
    } else {
        StackAction::Updated
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
    let mut report = StackReport::new(rendered, StackAction::Failed);
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

/// Where the zips of a deploy come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A `wsctl build`: the zips beside this manifest file, uploaded when the bucket lacks them.
    Built(&'a Path),
    /// A history entry (`wsctl rollback`, `plan --no-build` of a deployed stage): the zips
    /// must be in the bucket already.
    Recorded,
    /// No code at all (`plan --no-build` of a stage never deployed): the manifest names
    /// placeholder artifacts, nothing is uploaded or checked, and only `plan` accepts it.
    Unbuilt,
}

/// Deploys (or plans) the bootstrap, data and app stacks of a stage, in order, stopping
/// at the first failure. Each step returns `None` when the stage stops there, with the
/// report saying why.
pub async fn run_stage(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    account: &str,
    source: Source<'_>,
    manifest: &Manifest,
    mode: Mode,
) -> anyhow::Result<StageReport> {
    let mut report = StageReport::new(stage, account, &ctx.clients.region);
    let later = [StackKind::Data.stack_name(stage), StackKind::App.stack_name(stage)];
    // 1. Bootstrap: the artifact bucket.
    let Some(bucket) = bootstrap(ctx, &mut report, account, mode).await? else { return Ok(report) };
    ctx.bucket = bucket.exists.then(|| bucket.name.clone());
    // 2. Artifacts: upload only what the bucket lacks.
    if upload_artifacts(ctx, &mut report, &bucket, source, manifest, mode, &later).await?.is_none() {
        return Ok(report);
    }
    // 3. Data stack.
    let Some(data) = data_stack(ctx, &mut report, stage, mode).await? else { return Ok(report) };
    // 4. App stack (a plan before the data stack exists lists what it would create).
    let Some(app) = app_stack(ctx, &mut report, stage, &data, &bucket.name, manifest, mode).await? else {
        return Ok(report);
    };
    // 5. After a deploy: outputs, the code Lambda runs, old versions.
    if mode != Mode::Plan && after_deploy(ctx, &mut report, stage, &app, manifest).await?.is_none() {
        return Ok(report);
    }
    report.ok = true;
    Ok(report)
}

/// Where the artifacts go.
struct ArtifactBucket {
    /// The bucket (named as the bootstrap stack will name it when it does not exist yet).
    name: String,
    /// The bootstrap stack holds it already.
    exists: bool,
}

/// Step 1: the bootstrap stack and its artifact bucket.
async fn bootstrap(
    ctx: &Ctx<'_>,
    report: &mut StageReport,
    account: &str,
    mode: Mode,
) -> anyhow::Result<Option<ArtifactBucket>> {
    let clients = ctx.clients;
    let bootstrap = render::render_bootstrap()?;
    let r = apply_stack(ctx, &bootstrap, mode).await?;
    if report.record(&ctx.ui, r) {
        return Ok(None);
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
    let exists = bucket_in_stack.is_some();
    let name = bucket_in_stack.unwrap_or_else(|| format!("wsctl-artifacts-{account}-{}", clients.region));
    Ok(Some(ArtifactBucket { name, exists }))
}

/// Step 2: uploads the artifacts the bucket lacks (`plan`: says which it would). Each is
/// one PutObject under its hash, so an interrupted upload leaves nothing half-written. A
/// recorded manifest uploads nothing: its artifacts must all be in the bucket.
async fn upload_artifacts(
    ctx: &Ctx<'_>,
    report: &mut StageReport,
    bucket: &ArtifactBucket,
    source: Source<'_>,
    manifest: &Manifest,
    mode: Mode,
    later: &[String],
) -> anyhow::Result<Option<()>> {
    let later: Vec<&str> = later.iter().map(String::as_str).collect();
    let s3 = &ctx.clients.s3;
    if matches!(source, Source::Unbuilt) {
        anyhow::ensure!(mode == Mode::Plan, "only `plan` runs without built handlers");
        report.artifacts = Vec::new();
        return Ok(Some(()));
    }
    report.artifacts = if bucket.exists {
        let checked = async {
            match source {
                Source::Built(path) => artifacts::sync(s3, &bucket.name, path, manifest, mode == Mode::Plan).await,
                Source::Recorded => artifacts::recorded(s3, &bucket.name, manifest).await,
                Source::Unbuilt => Ok(Vec::new()),
            }
        };
        match ctx.interrupt.guard(checked).await {
            Some(result) => result?,
            None => {
                report.stop_between(&ctx.ui, &later);
                return Ok(None);
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
        report.stop_between(&ctx.ui, &later);
        return Ok(None);
    }
    Ok(Some(()))
}

/// Step 3: the data stack, termination-protected on a protected stage.
async fn data_stack(
    ctx: &Ctx<'_>,
    report: &mut StageReport,
    stage: &Stage,
    mode: Mode,
) -> anyhow::Result<Option<Rendered>> {
    let clients = ctx.clients;
    let data = render::render_data(stage)?;
    let r = apply_stack(ctx, &data, mode).await?;
    if report.record(&ctx.ui, r) {
        return Ok(None);
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
    Ok(Some(data))
}

/// Step 4: the app stack, wired to the deployed data stack. A plan that finds the data
/// stack absent, failed or still being worked on cannot read the wiring yet: it lists
/// every resource the app stack would create, and the stage ends there successfully.
async fn app_stack(
    ctx: &Ctx<'_>,
    report: &mut StageReport,
    stage: &Stage,
    data: &Rendered,
    bucket: &str,
    manifest: &Manifest,
    mode: Mode,
) -> anyhow::Result<Option<Rendered>> {
    let clients = ctx.clients;
    let data_deployed = stacks::describe_stack(&clients.cfn, &data.stack_name)
        .await?
        .is_some_and(|s| !s.in_progress() && !s.failed_create());
    if !data_deployed {
        let app = render::render_app(
            stage,
            &AppInputs { wiring: None, artifact_bucket: Some(bucket), manifest: Some(manifest) },
        )?;
        let r = planned_before_data(&app);
        show_changes(&ctx.ui, &app.stack_name, &r.changes);
        report.stacks.push(r);
        report.ok = true;
        return Ok(None);
    }
    if ctx.interrupt.fired() {
        report.stop_between(&ctx.ui, &[&StackKind::App.stack_name(stage)]);
        return Ok(None);
    }
    let wiring = wiring::resolve(&clients.cfn, &clients.elasticache, stage).await?;
    let app = render::render_app(
        stage,
        &AppInputs { wiring: Some(&wiring), artifact_bucket: Some(bucket), manifest: Some(manifest) },
    )?;
    let r = apply_stack(ctx, &app, mode).await?;
    if report.record(&ctx.ui, r) {
        return Ok(None);
    }
    Ok(Some(app))
}

/// The app stack's plan while its parameters cannot be known: every resource whose
/// Condition holds, as an addition.
fn planned_before_data(app: &Rendered) -> StackReport {
    let mut r = StackReport::new(app, StackAction::Planned);
    let conditions = app.template.evaluate_conditions(&app.parameters);
    r.changes = app
        .template
        .resources()
        .into_iter()
        .flatten()
        .filter(|(_, body)| {
            body.get("Condition").and_then(|c| c.as_str()).is_none_or(|c| conditions.get(c).copied().unwrap_or(true))
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
    r
}

/// Step 5, after a deploy: records the app stack's outputs, checks the code each function
/// runs against the manifest (a mismatch stops the stage as not ok) and prunes old
/// versions (a failure to tidy up only warns).
async fn after_deploy(
    ctx: &Ctx<'_>,
    report: &mut StageReport,
    stage: &Stage,
    app: &Rendered,
    manifest: &Manifest,
) -> anyhow::Result<Option<()>> {
    let clients = ctx.clients;
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
        return Ok(None);
    }
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
    Ok(Some(()))
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
