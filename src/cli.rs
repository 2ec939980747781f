//! Command-line surface: global options and the subcommand tree. Each subcommand's own
//! arguments live beside its implementation.

use crate::{bench, deploy, gateway, ops, output::OutputFormat};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Provision, ship, roll out and operate a real-time WebSocket API on AWS.
#[derive(Debug, Parser)]
#[command(name = "wsctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Output format: human-readable text, or one JSON document on stdout for CI.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Directory holding the stage files (NAME.yaml).
    #[arg(long, global = true, env = "WSCTL_STAGES_DIR", default_value = "stages")]
    pub stages_dir: PathBuf,
    /// AWS region, for stages whose file names none; a stage file's `region:` always wins
    /// (AWS_REGION and AWS_DEFAULT_REGION never override it) and --region may only repeat it.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS shared-config profile to use.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// Send every AWS API call to this endpoint (e.g. a local moto_server).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole service locally: an API Gateway-like WebSocket gateway running the handlers in-process.
    Dev(gateway::DevArgs),
    /// Publish a message to a room (local gateway or a deployed stage's publish function).
    Publish(ops::PublishArgs),
    /// List, inspect and kick live connections.
    #[command(subcommand)]
    Connections(ops::ConnectionsCommand),
    /// List rooms and their members.
    #[command(subcommand)]
    Rooms(ops::RoomsCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(ops::KeysCommand),
    /// Print a stage's rendered CloudFormation templates.
    Template(deploy::TemplateArgs),
    /// Build the Lambda handler binaries and zip them reproducibly.
    Build(deploy::BuildArgs),
    /// Deploy a stage: upload artifacts, create and execute change sets.
    ///
    /// Safe to interrupt: Ctrl-C or SIGTERM leaves each stack unchanged, rolled back or
    /// finishing inside CloudFormation, says which, and exits 130; the next deploy carries
    /// on from there (waits, continues a rollback, or cleans up what a killed run left).
    Deploy(deploy::DeployArgs),
    /// Show what a deploy would change (exit 0: no changes, 2: changes).
    Plan(deploy::PlanArgs),
    /// Show a deployed stage: stacks, outputs, routes, functions, Redis.
    Status(deploy::StatusArgs),
    /// Delete a stage's stacks.
    Destroy(deploy::DestroyArgs),
    /// Print the least-privilege IAM policies (deployer, operator) of a stage.
    IamPolicy(deploy::IamPolicyArgs),
    /// Load-test a gateway: connect, route, fanout and mixed scenarios.
    Bench(bench::BenchArgs),
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Dev(a) => gateway::run_dev(&g, a).await,
        Command::Publish(a) => ops::publish(&g, a).await,
        Command::Connections(c) => ops::connections(&g, c).await,
        Command::Rooms(c) => ops::rooms(&g, c).await,
        Command::Keys(c) => ops::keys(&g, c).await,
        Command::Template(a) => deploy::template(&g, a).await,
        Command::Build(a) => deploy::build(&g, a).await,
        Command::Deploy(a) => deploy::deploy(&g, a).await,
        Command::Plan(a) => deploy::plan(&g, a).await,
        Command::Status(a) => deploy::status(&g, a).await,
        Command::Destroy(a) => deploy::destroy(&g, a).await,
        Command::IamPolicy(a) => deploy::iam_policy(&g, a).await,
        Command::Bench(a) => bench::run(&g, a).await,
    }
}
