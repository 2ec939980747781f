//! Deployer: templates, build, deploy/plan/status/destroy, history/rollback.
//!
//! A stage is three CloudFormation stacks: the per-account/region bootstrap stack
//! (artifact bucket, API Gateway CloudWatch role), the stage's long-lived data stack (VPC,
//! Redis, tables) and its app stack (functions, API). See `docs/deploy.md`.
//!
//! Exit codes: 0 success (including "no changes"); 1 failure, refusal or declined
//! confirmation; 2 from `plan` when there are changes; 130 stopped by Ctrl-C or SIGTERM
//! (every stack left unchanged, rolled back, or running to completion, as reported).

mod alarms;
mod artifacts;
mod builder;
mod cfn_yaml;
mod ci_role;
mod clients;
mod cloudwatch;
mod destroy;
mod elf;
mod embedded;
mod engine;
mod enis;
mod events;
mod history;
mod iam_policy;
mod leftovers;
mod manifest;
mod package;
mod query_api;
mod recovery;
pub mod render;
mod report;
mod signals;
mod sources;
mod stacks;
pub use recovery::Recovery;
mod xray;
pub use cfn_yaml::Template;
pub use render::{APP_TEMPLATE, DATA_TEMPLATE};
pub use stacks::sdk_error;
mod status;
mod versions;
mod wiring;

use crate::aws::AwsTarget;
use crate::contract;
use crate::exit::Outcome;
use crate::output::print_json;
use crate::stage::{Arch, Stage};
use crate::ui::Ui;
use anyhow::Context;
use manifest::{Artifact, Manifest};
use render::{AppInputs, StackKind};
use report::{Ctx, Mode, Timing};
use serde_json::json;
use std::path::{Path, PathBuf};

/// `wsctl template`
#[derive(Debug)]
pub struct TemplateArgs {
    /// Stage name (stages/NAME.yaml).
    pub stage: String,
    /// Which stack's template to print.
    pub stack: StackKind,
    /// Build manifest whose artifacts name the Lambda versions (default: none).
    pub manifest: Option<PathBuf>,
}

/// `wsctl iam-policy`
#[derive(Debug)]
pub struct IamPolicyArgs {
    /// Stage name (stages/NAME.yaml; needs `account:` and `region:`).
    pub stage: String,
    /// Print only this policy document (ready for `aws iam put-role-policy`).
    pub role: Option<PolicyRole>,
}

/// Which of a stage's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRole {
    /// `deploy`, `plan`, `status`, `destroy` (and CloudFormation acting with its credentials).
    Deployer,
    /// `keys`, `connections`, `rooms`, `publish`.
    Operator,
}

/// `wsctl iam-policy --stage S`: the least-privilege deployer and operator policies.
pub async fn iam_policy(stages: &Path, args: IamPolicyArgs) -> anyhow::Result<Outcome> {
    let stage = Stage::load(stages, &args.stage)?;
    let all = iam_policy::policies(&stage)?;
    let doc = match args.role {
        Some(PolicyRole::Deployer) => all["deployer"].clone(),
        Some(PolicyRole::Operator) => all["operator"].clone(),
        None => all,
    };
    print_json(&doc)?;
    Ok(Outcome::Success)
}

/// `wsctl build`
#[derive(Debug)]
pub struct BuildArgs {
    /// Lambda architecture (default: arm64).
    pub arch: Arch,
    /// Directory for the zips and manifest.json.
    pub out: PathBuf,
    /// Cargo workspace holding the handlers package (default: `.` inside a wsctl checkout,
    /// else the handler sources shipped inside wsctl).
    pub workspace: Option<PathBuf>,
    /// Cargo package with one binary per function.
    pub package: String,
    /// Cargo profile to build with. Not `--profile`: that is the AWS profile (and
    /// `AWS_PROFILE`), which must never reach cargo.
    pub cargo_profile: String,
}

/// `wsctl deploy`
#[derive(Debug)]
pub struct DeployArgs {
    /// Stage name (stages/NAME.yaml).
    pub stage: String,
    /// Apply without asking (required when no terminal is attached).
    pub yes: bool,
    /// Deploy exactly the artifacts of an earlier `wsctl build` (default: build now into dist/).
    pub manifest: Option<PathBuf>,
    /// Give up waiting on one stack operation after this many minutes.
    pub timeout_minutes: u64,
    /// After a successful deploy, run the `wsctl smoke` journey against this target (the
    /// stage, reached as `wsctl smoke` would); exit 1 if a step fails (a gate between
    /// stages in CI).
    pub smoke: Option<crate::ops::target::TargetArgs>,
}

/// `wsctl rollback`
#[derive(Debug)]
pub struct RollbackArgs {
    /// Stage name (stages/NAME.yaml).
    pub stage: String,
    /// Apply without asking (required when no terminal is attached).
    pub yes: bool,
    /// The history entry to deploy again (default: the newest one before the live entry
    /// with other artifacts).
    pub to: Option<u64>,
    /// The entry whose manifest hash starts with this.
    pub manifest: Option<String>,
    /// Give up waiting on one stack operation after this many minutes.
    pub timeout_minutes: u64,
}

/// `wsctl history`
#[derive(Debug)]
pub struct HistoryArgs {
    /// Stage name (stages/NAME.yaml).
    pub stage: String,
}

/// `wsctl plan`
#[derive(Debug)]
pub struct PlanArgs {
    /// Stage name (stages/NAME.yaml).
    pub stage: String,
    /// Plan with the artifacts of an earlier `wsctl build` (default: dist/manifest.json
    /// while the handler sources are unchanged since it was built, else a fresh build).
    pub manifest: Option<PathBuf>,
    /// Build the handlers even when dist/manifest.json matches the sources.
    pub build: bool,
    /// Plan the infrastructure without building: with the code the stage runs now (its
    /// live history entry), or without code on a stage never deployed.
    pub no_build: bool,
}

/// `wsctl status`
#[derive(Debug)]
pub struct StatusArgs {
    /// Stage name (stages/NAME.yaml).
    pub stage: String,
}

/// `wsctl ci-role`
#[derive(Debug)]
pub struct CiRoleArgs {
    /// Stage name (stages/NAME.yaml, with a `ci:` section).
    pub stage: String,
    /// Apply without asking (required when no terminal is attached).
    pub yes: bool,
    /// Give up waiting on the stack operation after this many minutes.
    pub timeout_minutes: u64,
}

/// `wsctl ci-role --stage S`: creates or updates the stage's CI deploy role (see
/// `ci_role.rs` for why it is its own stack, run with administrator credentials), and
/// prints its ARN.
pub async fn ci_role(stages: &Path, aws: &AwsTarget, ui: &Ui, args: CiRoleArgs) -> anyhow::Result<Outcome> {
    let stage = Stage::load(stages, &args.stage)?;
    let rendered = ci_role::render_ci(&stage)?;
    let region = stage.require_region().map_err(anyhow::Error::msg)?.to_owned();
    let expected = stage.require_account().map_err(anyhow::Error::msg)?.to_owned();
    let clients = clients::Clients::new(aws, &stage.name, &region).await?;
    let target = clients.guard_account(&expected, &stage.name).await?;
    let interrupt = signals::Interrupt::install();
    let ctx =
        Ctx { clients: &clients, ui: *ui, timing: Timing::from_env(args.timeout_minutes), bucket: None, interrupt };
    let stack = engine::apply_stack(&ctx, &rendered, Mode::Apply { yes: args.yes }).await?;
    let ok = !stack.failed() && !stack.interrupted() && stack.action != report::StackAction::Declined;
    let role = if ok {
        stacks::describe_stack(&clients.cfn, &rendered.stack_name)
            .await?
            .and_then(|s| s.outputs.get(crate::contract::output::DEPLOY_ROLE_ARN).cloned())
    } else {
        None
    };
    if ui.json() {
        print_json(&json!({ "ok": ok, "target": target, "stack": stack, "deployRoleArn": role }))?;
    } else if let Some(role) = &role {
        println!("{} = {role}", crate::contract::output::DEPLOY_ROLE_ARN);
    }
    Ok(if stack.interrupted() { Outcome::Interrupted } else { Outcome::success_if(ok) })
}

/// `wsctl destroy`
#[derive(Debug)]
pub struct DestroyArgs {
    /// Stage name (stages/NAME.yaml).
    pub stage: String,
    /// Delete without asking (required when no terminal is attached).
    pub yes: bool,
    /// Allow destroying a protected stage (and lift the data stack's termination protection).
    pub force: bool,
    /// Delete only the app stack; keep the VPC, Redis and tables.
    pub keep_data: bool,
    /// Give up waiting on one stack deletion after this many minutes.
    pub timeout_minutes: u64,
}

/// `wsctl template --stage S [--stack bootstrap|data|app]`: prints a rendered template.
pub async fn template(stages: &Path, ui: &Ui, args: TemplateArgs) -> anyhow::Result<Outcome> {
    let stage = Stage::load(stages, &args.stage)?;
    let manifest = args.manifest.as_deref().map(Manifest::load).transpose()?;
    let rendered = match args.stack {
        StackKind::Bootstrap => render::render_bootstrap()?,
        StackKind::Data => render::render_data(&stage)?,
        StackKind::App => {
            render::render_app(&stage, &AppInputs { wiring: None, artifact_bucket: None, manifest: manifest.as_ref() })?
        }
        StackKind::Ci => ci_role::render_ci(&stage)?,
    };
    if ui.json() {
        print_json(&json!({
            "stage": stage.name,
            "stack": rendered.kind,
            "stackName": rendered.stack_name,
            "parameters": rendered.parameters,
            "tags": rendered.tags,
            "bytes": rendered.body.len(),
            "template": rendered.body,
        }))?;
    } else {
        print!("{}", rendered.body);
    }
    Ok(Outcome::Success)
}

/// `wsctl build`: cross-compiles, zips and writes the manifest.
pub async fn build(ui: &Ui, args: BuildArgs) -> anyhow::Result<Outcome> {
    let workspace = match args.workspace {
        Some(dir) => dir,
        None => handlers_workspace(ui)?,
    };
    let plan = builder::BuildPlan {
        arch: args.arch,
        out_dir: args.out,
        workspace,
        package: args.package,
        profile: args.cargo_profile,
    };
    let result =
        tokio::task::spawn_blocking(move || builder::build(&plan)).await.context("the build task panicked")??;
    if ui.json() {
        print_json(&result)?;
    } else {
        for (name, a) in &result.manifest.functions {
            println!("{name:<11} {}  {:>9} bytes  {}", a.sha256, a.size, a.file);
        }
        println!(
            "manifest: {} ({}, glibc <= {})",
            result.manifest_path.display(),
            result.manifest.target,
            result.glibc.as_deref().unwrap_or("none")
        );
    }
    Ok(Outcome::Success)
}

/// Where the handlers are built: this directory inside a wsctl checkout (its own
/// `handlers/`), else the sources shipped inside wsctl, extracted into the cache.
fn handlers_workspace(ui: &Ui) -> anyhow::Result<PathBuf> {
    if std::path::Path::new("handlers/Cargo.toml").is_file() {
        return Ok(PathBuf::from("."));
    }
    let dir = embedded::workspace()?;
    ui.note(format!("using the handler sources shipped with wsctl {} ({})", env!("CARGO_PKG_VERSION"), dir.display()));
    Ok(dir)
}

/// When `plan`/`deploy` build the handlers (without `--manifest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BuildChoice {
    /// Always build (deploy, `plan --build`).
    Always,
    /// Reuse dist/manifest.json while the handler sources are unchanged since it was built.
    IfChanged,
}

/// Refuses a manifest (named by `what`) built for another architecture than the stage runs.
fn check_architecture(stage: &Stage, manifest: &Manifest, what: &str) -> anyhow::Result<()> {
    let wanted = stage.lambda.architecture.lambda_name();
    if manifest.architecture != wanted {
        anyhow::bail!(
            "{what} was built for {} but stage '{}' runs lambda.architecture {wanted}; rebuild with `wsctl build --arch {wanted}`",
            manifest.architecture,
            stage.name
        );
    }
    Ok(())
}

/// The manifest to plan or deploy when none was given: dist/manifest.json if the sources
/// are unchanged since it was built (`IfChanged`), else a fresh build for the stage's
/// architecture.
async fn manifest_for(stage: &Stage, choice: BuildChoice, ui: &Ui) -> anyhow::Result<(PathBuf, Manifest)> {
    let workspace = handlers_workspace(ui)?;
    let Some(current) = sources::handler_sources_hash(&workspace) else {
        anyhow::bail!(
            "no handler sources in {}: pass --manifest DIR/manifest.json from an earlier `wsctl build`",
            workspace.display()
        );
    };
    let existing = PathBuf::from("dist/manifest.json");
    if choice == BuildChoice::IfChanged {
        if let Ok(m) = Manifest::load(&existing) {
            let same_arch = m.architecture == stage.lambda.architecture.lambda_name();
            if same_arch && m.source_hash.as_deref() == Some(current.as_str()) {
                ui.note(format!(
                    "handlers unchanged since {} was built: using it (pass --build to rebuild)",
                    existing.display()
                ));
                return Ok((existing, m));
            }
        }
    }
    ui.note(format!(
        "building the handlers for {} (pass --manifest to use an earlier build)",
        stage.lambda.architecture.lambda_name()
    ));
    let plan = builder::BuildPlan {
        arch: stage.lambda.architecture,
        out_dir: PathBuf::from("dist"),
        workspace,
        package: "wsctl-handlers".into(),
        profile: "lambda".into(),
    };
    let result =
        tokio::task::spawn_blocking(move || builder::build(&plan)).await.context("the build task panicked")??;
    Ok((result.manifest_path, result.manifest))
}

async fn run(
    aws: &AwsTarget,
    ui: &Ui,
    stage: &Stage,
    manifest: Option<PathBuf>,
    choice: BuildChoice,
    mode: Mode,
    timeout_minutes: u64,
) -> anyhow::Result<report::StageReport> {
    let region = stage.require_region().map_err(anyhow::Error::msg)?.to_owned();
    let expected = stage.require_account().map_err(anyhow::Error::msg)?.to_owned();
    // Everything that can fail without a build fails first: a given manifest and its
    // architecture, then the credentials, account and region. A build takes minutes.
    let given = match manifest {
        Some(path) => {
            let m = Manifest::load(&path)?;
            check_architecture(stage, &m, &path.display().to_string())?;
            Some((path, m))
        }
        None => None,
    };
    let clients = clients::Clients::new(aws, &stage.name, &region).await?;
    let target = clients.guard_account(&expected, &stage.name).await?;
    let (manifest_path, manifest) = match given {
        Some(given) => given,
        None => manifest_for(stage, choice, ui).await?,
    };
    let origin = history::Origin {
        commit: history::current_commit(Path::new(".")),
        deployed_by: target.caller.clone(),
        rollback: None,
    };
    let run = Run { clients: &clients, ui, stage, mode, timeout_minutes };
    run.execute(target, engine::Source::Built(&manifest_path), &manifest, &origin).await
}

/// A deploy, plan or rollback about to run the stage's steps.
struct Run<'a> {
    clients: &'a clients::Clients,
    ui: &'a Ui,
    stage: &'a Stage,
    mode: Mode,
    timeout_minutes: u64,
}

impl Run<'_> {
    /// Runs the stage's steps and, after a successful apply, records it in the stage's
    /// history. A deploy that succeeded but could not be recorded only warns: its stacks are
    /// what they are, and the next deploy records it (the newest entry then differs).
    async fn execute(
        &self,
        target: crate::aws::TargetLine,
        source: engine::Source<'_>,
        manifest: &Manifest,
        origin: &history::Origin,
    ) -> anyhow::Result<report::StageReport> {
        let (clients, ui) = (self.clients, self.ui);
        // From here on a Ctrl-C or SIGTERM no longer kills the process: the engine leaves each
        // stack in a state the next deploy can continue from, and says which.
        let interrupt = signals::Interrupt::install();
        let timing = Timing::from_env(self.timeout_minutes);
        let mut ctx = Ctx { clients, ui: *ui, timing, bucket: None, interrupt };
        let mut report = engine::run_stage(&mut ctx, self.stage, &target.account, source, manifest, self.mode).await?;
        if let (Mode::Apply { .. }, true, false, Some(bucket)) = (self.mode, report.ok, report.interrupted, &ctx.bucket)
        {
            // A change set executed with nothing left to show (moto lists resources whose
            // Condition is false) is no change.
            let changed = report.stacks.iter().any(|s| !s.changes.is_empty());
            match history::record(&clients.s3, bucket, self.stage, manifest, origin, changed).await {
                Ok(Some(entry)) => {
                    ui.line(format!(
                        "history: recorded as entry {} (manifest {})",
                        entry.number,
                        history::short(&entry.manifest_hash)
                    ));
                    report.history_entry = Some(entry.number);
                }
                Ok(None) => {}
                Err(e) => ui.note(format!(
                    "warning: the deploy succeeded but is not in the stage's history ({e:#}); the next deploy records it"
                )),
            }
        }
        report.target = Some(target);
        Ok(report)
    }
}

/// The closing line of a deploy or rollback in text mode.
fn print_result(report: &report::StageReport, done: &str, what: &str) {
    if report.ok {
        for (k, v) in &report.outputs {
            println!("{k} = {v}");
        }
        let changed = report.stacks.iter().any(|s| s.has_changes());
        println!("stage {}: {}", report.stage, if changed { done } else { "no changes" });
    } else if report.interrupted {
        println!("stage {}: {what} interrupted", report.stage);
    } else {
        println!("stage {}: {what} did not complete", report.stage);
    }
}

/// `wsctl deploy --stage S`.
pub async fn deploy(stages: &Path, aws: &AwsTarget, ui: &Ui, args: DeployArgs) -> anyhow::Result<Outcome> {
    let apply = Mode::Apply { yes: args.yes };
    let report = run(
        aws,
        ui,
        &Stage::load(stages, &args.stage)?,
        args.manifest,
        BuildChoice::Always,
        apply,
        args.timeout_minutes,
    )
    .await?;
    let smoke = match &args.smoke {
        Some(target) if report.ok && !report.interrupted => Some(crate::smoke::after_deploy(stages, aws, target).await),
        _ => None,
    };
    if ui.json() {
        print_json(&crate::smoke::with_smoke(&report, smoke.as_ref())?)?;
    } else {
        print_result(&report, "deployed", "deploy");
    }
    if let (false, Some(outcome)) = (ui.json(), &smoke) {
        crate::smoke::print_after_deploy(&report.stage, outcome);
    }
    let smoke_failed = smoke.as_ref().is_some_and(|s| !s.as_ref().is_ok_and(|r| r.ok));
    Ok(if report.interrupted { Outcome::Interrupted } else { Outcome::success_if(report.ok && !smoke_failed) })
}

/// `wsctl rollback --stage S [--to N | --manifest HASH]`: deploys a recorded manifest again
/// through the same steps as `deploy` (change sets, rollout, code check), with the artifacts
/// already in the bucket. Everything that can refuse (no history, no such entry, artifacts
/// gone) refuses before any stack is touched.
pub async fn rollback(stages: &Path, aws: &AwsTarget, ui: &Ui, args: RollbackArgs) -> anyhow::Result<Outcome> {
    let stage = Stage::load(stages, &args.stage)?;
    let region = stage.require_region().map_err(anyhow::Error::msg)?.to_owned();
    let expected = stage.require_account().map_err(anyhow::Error::msg)?.to_owned();
    let clients = clients::Clients::new(aws, &stage.name, &region).await?;
    let target = clients.guard_account(&expected, &stage.name).await?;
    let never = || format!("stage '{}' has no deploy history: nothing to roll back to", stage.name);
    let bucket = history::artifact_bucket(&clients.cfn).await?.with_context(never)?;
    let entries = history::list(&clients.s3, &bucket, &stage).await?;
    let live = history::live(&entries, &history::running_code(&clients.lambda, &stage).await);
    let pick = match (args.to, args.manifest.as_deref()) {
        (Some(n), _) => history::Pick::Number(n),
        (None, Some(hash)) => history::Pick::Hash(hash),
        (None, None) => history::Pick::Previous,
    };
    let chosen = history::choose(&entries, live, pick, &stage.name).map_err(anyhow::Error::msg)?;
    let live_entry = live.and_then(|n| entries.iter().find(|e| e.number == n));
    if let Some(current) = live_entry.filter(|e| e.manifest_hash == chosen.manifest_hash) {
        let message = format!(
            "stage {}: entry {}'s artifacts are live already (entry {}): nothing to roll back",
            stage.name, chosen.number, current.number
        );
        if ui.json() {
            print_json(&json!({ "ok": true, "stage": stage.name, "rollback": null, "message": message }))?;
        } else {
            println!("{message}");
        }
        return Ok(Outcome::Success);
    }
    check_architecture(&stage, &chosen.manifest, &format!("history entry {}", chosen.number))?;
    artifacts::recorded(&clients.s3, &bucket, &chosen.manifest).await?;
    ui.note(format!(
        "rolling stage {} back to entry {} (manifest {}, deployed {}{})",
        stage.name,
        chosen.number,
        history::short(&chosen.manifest_hash),
        chosen.deployed_at,
        chosen.commit.as_deref().map(|c| format!(" from {c}")).unwrap_or_default()
    ));
    let rollback = history::RollbackOf { to: chosen.number, from: live };
    let origin = history::Origin {
        commit: history::current_commit(Path::new(".")),
        deployed_by: target.caller.clone(),
        rollback: Some(rollback),
    };
    let run = Run {
        clients: &clients,
        ui,
        stage: &stage,
        mode: Mode::Apply { yes: args.yes },
        timeout_minutes: args.timeout_minutes,
    };
    let report = run.execute(target, engine::Source::Recorded, &chosen.manifest, &origin).await?;
    if ui.json() {
        let mut doc = serde_json::to_value(&report)?;
        doc["rollback"] = serde_json::to_value(rollback)?;
        print_json(&doc)?;
    } else {
        print_result(&report, &format!("rolled back to entry {}", chosen.number), "rollback");
    }
    Ok(if report.interrupted { Outcome::Interrupted } else { Outcome::success_if(report.ok) })
}

/// `wsctl history --stage S`: the stage's recorded deploys, newest first, with the one
/// whose code the functions run marked live.
pub async fn history(stages: &Path, aws: &AwsTarget, ui: &Ui, args: HistoryArgs) -> anyhow::Result<Outcome> {
    let stage = Stage::load(stages, &args.stage)?;
    let region = stage.require_region().map_err(anyhow::Error::msg)?.to_owned();
    let clients = clients::Clients::new(aws, &stage.name, &region).await?;
    let bucket = history::artifact_bucket(&clients.cfn).await?;
    let entries = match &bucket {
        Some(bucket) => history::list(&clients.s3, bucket, &stage).await?,
        None => Vec::new(),
    };
    let live = if entries.is_empty() {
        None
    } else {
        history::live(&entries, &history::running_code(&clients.lambda, &stage).await)
    };
    let place = bucket.as_deref().map(|b| format!("s3://{b}/{}", history::prefix(&stage)));
    if ui.json() {
        let listed: Vec<serde_json::Value> = entries
            .iter()
            .rev()
            .map(|e| {
                let mut v = serde_json::to_value(e)?;
                v["live"] = json!(live == Some(e.number));
                Ok(v)
            })
            .collect::<anyhow::Result<_>>()?;
        print_json(&json!({ "stage": stage.name, "location": place, "live": live, "entries": listed }))?;
    } else if entries.is_empty() {
        let where_ = place
            .map(|p| format!(" (nothing under {p})"))
            .unwrap_or_else(|| " (no artifact bucket in this account and region yet)".into());
        println!("stage {}: no deploy history{where_}; `wsctl deploy --stage {}` records one", stage.name, stage.name);
    } else {
        history::print_text(&stage.name, place.as_deref().unwrap_or_default(), &entries, live);
    }
    Ok(Outcome::Success)
}

/// `wsctl plan --stage S`: exit 0 without changes, 2 with changes.
pub async fn plan(stages: &Path, aws: &AwsTarget, ui: &Ui, args: PlanArgs) -> anyhow::Result<Outcome> {
    let stage = Stage::load(stages, &args.stage)?;
    let report = if args.no_build {
        plan_without_build(aws, ui, &stage).await?
    } else {
        let choice = if args.build { BuildChoice::Always } else { BuildChoice::IfChanged };
        run(aws, ui, &stage, args.manifest, choice, Mode::Plan, 90).await?
    };
    let changes = report.stacks.iter().any(|s| s.has_changes()) || report.artifacts.iter().any(|a| a.uploaded);
    if ui.json() {
        print_json(&json!({ "changes": changes, "plan": report }))?;
    } else if report.interrupted {
        println!("stage {}: plan interrupted", report.stage);
    } else {
        println!("stage {}: {}", report.stage, if changes { "changes pending" } else { "no changes" });
    }
    Ok(if report.interrupted {
        Outcome::Interrupted
    } else if !report.ok {
        Outcome::Failure
    } else if changes {
        Outcome::ChangesPending
    } else {
        Outcome::Success
    })
}

/// `wsctl plan --no-build`: the stacks' changes without a build (a first look at a stage,
/// a review of a stage-file change in CI). A deployed stage is planned with the code it
/// runs now, from its live history entry, so only the infrastructure shows; a stage never
/// deployed is planned with placeholder artifacts (its functions appear as created either
/// way). A deployed stage whose running code no history entry has is refused: planning it
/// with other code would show function changes a deploy would not make.
async fn plan_without_build(aws: &AwsTarget, ui: &Ui, stage: &Stage) -> anyhow::Result<report::StageReport> {
    let region = stage.require_region().map_err(anyhow::Error::msg)?.to_owned();
    let expected = stage.require_account().map_err(anyhow::Error::msg)?.to_owned();
    let clients = clients::Clients::new(aws, &stage.name, &region).await?;
    let target = clients.guard_account(&expected, &stage.name).await?;
    let running = history::running_code(&clients.lambda, stage).await;
    let (source, manifest) = if running.is_empty() {
        ui.note(format!(
            "stage {} runs no functions yet: planning without code (--no-build); a deploy builds the handlers or \
             takes --manifest",
            stage.name
        ));
        (engine::Source::Unbuilt, unbuilt_manifest(stage))
    } else {
        let bucket = history::artifact_bucket(&clients.cfn).await?;
        let entries = match &bucket {
            Some(bucket) => history::list(&clients.s3, bucket, stage).await?,
            None => Vec::new(),
        };
        let live = history::live(&entries, &running);
        let Some(entry) = live.and_then(|n| entries.into_iter().find(|e| e.number == n)) else {
            anyhow::bail!(
                "stage {} runs code that no entry of its deploy history has (deployed before history was kept, or \
                 changed outside wsctl), so --no-build cannot plan with it; plan with --manifest DIR/manifest.json \
                 or without --no-build",
                stage.name
            );
        };
        check_architecture(stage, &entry.manifest, &format!("history entry {}", entry.number))?;
        ui.note(format!(
            "planning with the code stage {} runs now: history entry {} (manifest {}) (--no-build)",
            stage.name,
            entry.number,
            history::short(&entry.manifest_hash)
        ));
        (engine::Source::Recorded, entry.manifest)
    };
    let origin = history::Origin { commit: None, deployed_by: target.caller.clone(), rollback: None };
    let run = Run { clients: &clients, ui, stage, mode: Mode::Plan, timeout_minutes: 90 };
    run.execute(target, source, &manifest, &origin).await
}

/// A manifest of placeholder artifacts (no zip exists) for the stage's architecture.
fn unbuilt_manifest(stage: &Stage) -> Manifest {
    let placeholder = Artifact { file: String::new(), sha256: "0".repeat(64), size: 0 };
    Manifest {
        version: manifest::MANIFEST_VERSION,
        architecture: stage.lambda.architecture.lambda_name().to_owned(),
        target: String::new(),
        functions: contract::packaged().map(|f| (f.name.to_owned(), placeholder.clone())).collect(),
        source_hash: None,
    }
}

/// `wsctl status --stage S`.
pub async fn status(stages: &Path, aws: &AwsTarget, ui: &Ui, args: StatusArgs) -> anyhow::Result<Outcome> {
    let stage = Stage::load(stages, &args.stage)?;
    let region = stage.require_region().map_err(anyhow::Error::msg)?.to_owned();
    let clients = clients::Clients::new(aws, &stage.name, &region).await?;
    let report = status::gather(&clients, &stage).await?;
    if ui.json() {
        print_json(&report)?;
    } else {
        status::print_text(&report);
    }
    Ok(Outcome::Success)
}

/// `wsctl destroy --stage S`.
pub async fn destroy(stages: &Path, aws: &AwsTarget, ui: &Ui, args: DestroyArgs) -> anyhow::Result<Outcome> {
    let stage = Stage::load(stages, &args.stage)?;
    let region = stage.require_region().map_err(anyhow::Error::msg)?.to_owned();
    let expected = stage.require_account().map_err(anyhow::Error::msg)?.to_owned();
    let clients = clients::Clients::new(aws, &stage.name, &region).await?;
    let target = clients.guard_account(&expected, &stage.name).await?;
    let mut report = destroy::destroy(
        &clients,
        ui,
        Timing::from_env(args.timeout_minutes),
        &stage,
        destroy::DestroyOptions { yes: args.yes, force: args.force, keep_data: args.keep_data },
    )
    .await?;
    report.target = Some(target);
    if ui.json() {
        print_json(&report)?;
    }
    Ok(Outcome::success_if(report.ok))
}
