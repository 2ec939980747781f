//! The command line of what [`wsctl::deploy`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

pub mod render;

use crate::cli::deploy::render::StackKind;
use crate::cli::stage::Arch;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// `wsctl template`
#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
    /// Which stack's template to print.
    #[arg(long, value_enum, default_value_t = StackKind::App)]
    pub stack: StackKind,
    /// Build manifest whose artifacts name the Lambda versions (default: none).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

/// `wsctl iam-policy`
#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// Stage name (stages/NAME.yaml; needs `account:` and `region:`).
    #[arg(long)]
    pub stage: String,
    /// Print only this policy document (ready for `aws iam put-role-policy`).
    #[arg(long, value_enum)]
    pub role: Option<PolicyRole>,
}

/// Which of a stage's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyRole {
    /// `deploy`, `plan`, `status`, `destroy` (and CloudFormation acting with its credentials).
    Deployer,
    /// `keys`, `connections`, `rooms`, `publish`.
    Operator,
}

/// `wsctl build`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Lambda architecture (default: arm64).
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub arch: Arch,
    /// Directory for the zips and manifest.json.
    #[arg(long, default_value = "dist")]
    pub out: PathBuf,
    /// Cargo workspace holding the handlers package (default: `.` inside a wsctl checkout,
    /// else the handler sources shipped inside wsctl).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Cargo package with one binary per function.
    #[arg(long, default_value = "wsctl-handlers")]
    pub package: String,
    /// Cargo profile to build with. Not `--profile`: that is the AWS profile (and
    /// `AWS_PROFILE`), which must never reach cargo.
    #[arg(long = "cargo-profile", id = "cargo_profile", default_value = "lambda")]
    pub cargo_profile: String,
}

/// `wsctl deploy`
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
    /// Apply without asking (required when no terminal is attached).
    #[arg(long)]
    pub yes: bool,
    /// Deploy exactly the artifacts of an earlier `wsctl build` (default: build now into dist/).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Give up waiting on one stack operation after this many minutes.
    #[arg(long, default_value_t = 90)]
    pub timeout_minutes: u64,
    /// After a successful deploy, run the `wsctl smoke` journey against the stage; exit 1
    /// if a step fails (a gate between stages in CI).
    #[arg(long)]
    pub smoke: bool,
}

/// `wsctl rollback`
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
    /// Apply without asking (required when no terminal is attached).
    #[arg(long)]
    pub yes: bool,
    /// Deploy this history entry again (its number in `wsctl history`; default: the newest
    /// entry before the live one with other artifacts).
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    /// Deploy the entry whose manifest hash starts with HASH again.
    #[arg(long, value_name = "HASH", conflicts_with = "to")]
    pub manifest: Option<String>,
    /// Give up waiting on one stack operation after this many minutes.
    #[arg(long, default_value_t = 90)]
    pub timeout_minutes: u64,
}

impl From<RollbackArgs> for wsctl::deploy::RollbackArgs {
    fn from(a: RollbackArgs) -> Self {
        wsctl::deploy::RollbackArgs {
            stage: a.stage,
            yes: a.yes,
            to: a.to,
            manifest: a.manifest,
            timeout_minutes: a.timeout_minutes,
        }
    }
}

/// `wsctl history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
}

impl From<HistoryArgs> for wsctl::deploy::HistoryArgs {
    fn from(a: HistoryArgs) -> Self {
        wsctl::deploy::HistoryArgs { stage: a.stage }
    }
}

/// `wsctl plan`
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
    /// Plan with the artifacts of an earlier `wsctl build` (default: dist/manifest.json
    /// while the handler sources are unchanged since it was built, else a fresh build).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Build the handlers even when dist/manifest.json matches the sources.
    #[arg(long, conflicts_with = "manifest")]
    pub build: bool,
    /// Plan the stacks without building the handlers: with the code the stage runs now (its
    /// live `wsctl history` entry), or without code on a stage never deployed
    #[arg(long, conflicts_with_all = ["manifest", "build"])]
    pub no_build: bool,
}

/// `wsctl status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
}

/// `wsctl ci-role`
#[derive(Debug, Args)]
pub struct CiRoleArgs {
    /// Stage name (stages/NAME.yaml, with a `ci:` section).
    #[arg(long)]
    pub stage: String,
    /// Apply without asking (required when no terminal is attached).
    #[arg(long)]
    pub yes: bool,
    /// Give up waiting on the stack operation after this many minutes.
    #[arg(long, default_value_t = 30)]
    pub timeout_minutes: u64,
}

impl From<CiRoleArgs> for wsctl::deploy::CiRoleArgs {
    fn from(a: CiRoleArgs) -> Self {
        wsctl::deploy::CiRoleArgs { stage: a.stage, yes: a.yes, timeout_minutes: a.timeout_minutes }
    }
}

/// `wsctl destroy`
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
    /// Delete without asking (required when no terminal is attached).
    #[arg(long)]
    pub yes: bool,
    /// Allow destroying a protected stage (and lift the data stack's termination protection).
    #[arg(long)]
    pub force: bool,
    /// Delete only the app stack; keep the VPC, Redis and tables.
    #[arg(long)]
    pub keep_data: bool,
    /// Give up waiting on one stack deletion after this many minutes.
    #[arg(long, default_value_t = 90)]
    pub timeout_minutes: u64,
}

impl From<TemplateArgs> for wsctl::deploy::TemplateArgs {
    fn from(a: TemplateArgs) -> Self {
        wsctl::deploy::TemplateArgs { stage: a.stage, stack: a.stack.into(), manifest: a.manifest }
    }
}

impl From<IamPolicyArgs> for wsctl::deploy::IamPolicyArgs {
    fn from(a: IamPolicyArgs) -> Self {
        wsctl::deploy::IamPolicyArgs { stage: a.stage, role: a.role.map(Into::into) }
    }
}

impl From<PolicyRole> for wsctl::deploy::PolicyRole {
    fn from(a: PolicyRole) -> Self {
        match a {
            PolicyRole::Deployer => wsctl::deploy::PolicyRole::Deployer,
            PolicyRole::Operator => wsctl::deploy::PolicyRole::Operator,
        }
    }
}

impl From<BuildArgs> for wsctl::deploy::BuildArgs {
    fn from(a: BuildArgs) -> Self {
        wsctl::deploy::BuildArgs {
            arch: a.arch.into(),
            out: a.out,
            workspace: a.workspace,
            package: a.package,
            cargo_profile: a.cargo_profile,
        }
    }
}

impl DeployArgs {
    /// The library's options; with `--smoke`, the journey's target as `wsctl smoke
    /// --stage S` would read it (its `WSCTL_*` overrides from the environment).
    pub fn into_lib(self) -> anyhow::Result<wsctl::deploy::DeployArgs> {
        let smoke = if self.smoke { Some(super::smoke::deploy_target(&self.stage)?) } else { None };
        Ok(wsctl::deploy::DeployArgs {
            stage: self.stage,
            yes: self.yes,
            manifest: self.manifest,
            timeout_minutes: self.timeout_minutes,
            smoke,
        })
    }
}

impl From<PlanArgs> for wsctl::deploy::PlanArgs {
    fn from(a: PlanArgs) -> Self {
        wsctl::deploy::PlanArgs { stage: a.stage, manifest: a.manifest, build: a.build, no_build: a.no_build }
    }
}

impl From<StatusArgs> for wsctl::deploy::StatusArgs {
    fn from(a: StatusArgs) -> Self {
        wsctl::deploy::StatusArgs { stage: a.stage }
    }
}

impl From<DestroyArgs> for wsctl::deploy::DestroyArgs {
    fn from(a: DestroyArgs) -> Self {
        wsctl::deploy::DestroyArgs {
            stage: a.stage,
            yes: a.yes,
            force: a.force,
            keep_data: a.keep_data,
            timeout_minutes: a.timeout_minutes,
        }
    }
}
