//! Deployer: templates, build, deploy/plan/status/destroy. (Being built: issue 3.)

use crate::cli::Global;
use clap::Args;
use std::process::ExitCode;

/// `wsctl template`
#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
}
/// `wsctl build`
#[derive(Debug, Args)]
pub struct BuildArgs {}
/// `wsctl deploy`
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
}
/// `wsctl plan`
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
}
/// `wsctl status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
}
/// `wsctl destroy`
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Stage name (stages/NAME.yaml).
    #[arg(long)]
    pub stage: String,
}

fn not_yet() -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
pub async fn template(_: &Global, _: TemplateArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
pub async fn build(_: &Global, _: BuildArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
pub async fn deploy(_: &Global, _: DeployArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
pub async fn plan(_: &Global, _: PlanArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
pub async fn status(_: &Global, _: StatusArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
pub async fn destroy(_: &Global, _: DestroyArgs) -> anyhow::Result<ExitCode> {
    not_yet()
}
