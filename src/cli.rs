//! Command-line surface: global options and the subcommand tree, and the one place that
//! turns the global options into what the library's commands take (an [`AwsTarget`], a
//! [`Ui`], the stages directory). Each subcommand's arguments live in the module under
//! `src/cli/` that mirrors its library module (`cli/ops/keys.rs` for `wsctl::ops::keys`),
//! with the help texts, and convert into the library's plain option structs; no module of
//! the library imports clap.

pub mod bench;
pub mod deploy;
pub mod gateway;
pub mod init;
pub mod logs;
pub mod manuals;
pub mod ops;
pub mod smoke;
pub mod stage;
pub mod subscribe;
pub mod usage;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use wsctl::aws::AwsTarget;
use wsctl::exit::Outcome;
use wsctl::ui::{OutputFormat, Ui};

/// Provision, ship, roll out and operate a real-time WebSocket API on AWS.
///
/// Exit codes: 0 success; 1 failure; 2 `plan` found changes; 64 the command line is wrong;
/// 130 interrupted. See docs/cli.md.
#[derive(Debug, Parser)]
#[command(name = "wsctl", version, about, long_about, propagate_version = true)]
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
    #[arg(long, global = true, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
    /// Directory holding the stage files (NAME.yaml).
    #[arg(long, global = true, env = "WSCTL_STAGES_DIR", default_value = "stages")]
    pub stages_dir: PathBuf,
    /// AWS region, for stages whose file names none; a stage file's `region:` always wins
    /// (AWS_REGION and AWS_DEFAULT_REGION never override it) and --region may only repeat it.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS shared-config profile to use (not a cargo profile: see `build --cargo-profile`).
    #[arg(long, id = "aws_profile", value_name = "PROFILE", global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// Send every AWS API call to this endpoint (e.g. a local moto_server).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--output`: how a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// Human-readable text.
    Text,
    /// One JSON document on stdout; logs stay on stderr.
    Json,
}

impl From<OutputArg> for OutputFormat {
    fn from(arg: OutputArg) -> OutputFormat {
        match arg {
            OutputArg::Text => OutputFormat::Text,
            OutputArg::Json => OutputFormat::Json,
        }
    }
}

impl Global {
    /// Where AWS calls go.
    pub fn aws(&self) -> AwsTarget {
        AwsTarget {
            region: self.region.clone(),
            profile: self.profile.clone(),
            endpoint_url: self.endpoint_url.clone(),
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write stages/{local,dev,staging,prod}.yaml (with comments) into this repository; never overwrites.
    Init(init::InitArgs),
    /// Run the whole service locally: an API Gateway-like WebSocket gateway running the handlers in-process.
    Dev(gateway::DevArgs),
    /// Connect, subscribe to rooms and print their messages (reconnects with `since` after a drop).
    Subscribe(subscribe::SubscribeArgs),
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
    /// List a stage's recorded deploys, newest first, and which one is live.
    History(deploy::HistoryArgs),
    /// Deploy an earlier recorded build again (default: the one before the live one).
    ///
    /// Goes through the same change sets, rollout and checks as `deploy`, with the
    /// artifacts already in the bucket; applies the current stage file.
    Rollback(deploy::RollbackArgs),
    /// Delete a stage's stacks.
    Destroy(deploy::DestroyArgs),
    /// Print the least-privilege IAM policies (deployer, operator) of a stage.
    IamPolicy(deploy::IamPolicyArgs),
    /// Create or update a stage's CI deploy role (GitHub Actions OIDC; run as an administrator).
    CiRole(deploy::CiRoleArgs),
    /// Invoke one of a deployed stage's functions with an event and print its reply.
    Invoke(ops::invoke::InvokeArgs),
    /// Print (and with --follow, tail) the functions' logs, or the local gateway's own log.
    Logs(logs::LogsArgs),
    /// Load-test a gateway: connect, route, fanout and mixed scenarios.
    Bench(bench::BenchArgs),
    /// Run one timed user journey against a stage (exit 0 only if every step passed within budget).
    Smoke(smoke::SmokeArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(manuals::CompletionsArgs),
    /// Print the man page (or write one per command with --out DIR).
    Man(manuals::ManArgs),
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    let g = cli.global;
    let (aws, ui, stages) = (g.aws(), Ui::detect(g.output.into()), g.stages_dir.as_path());
    match cli.command {
        Command::Init(a) => wsctl::init::run(stages, &ui, a.into()).await,
        Command::Dev(a) => wsctl::gateway::run_dev(stages, &aws, &ui, a.into()).await,
        Command::Subscribe(a) => wsctl::subscribe::run(stages, &aws, &ui, a.into()).await,
        Command::Publish(a) => wsctl::ops::publish(stages, &aws, &ui, a.into()).await,
        Command::Connections(c) => wsctl::ops::connections(stages, &aws, &ui, c.into()).await,
        Command::Rooms(c) => wsctl::ops::rooms(stages, &aws, &ui, c.into()).await,
        Command::Keys(c) => wsctl::ops::keys(stages, &aws, &ui, c.into()).await,
        Command::Template(a) => wsctl::deploy::template(stages, &ui, a.into()).await,
        Command::Build(a) => wsctl::deploy::build(&ui, a.into()).await,
        Command::Deploy(a) => wsctl::deploy::deploy(stages, &aws, &ui, a.into_lib()?).await,
        Command::Plan(a) => wsctl::deploy::plan(stages, &aws, &ui, a.into()).await,
        Command::Status(a) => wsctl::deploy::status(stages, &aws, &ui, a.into()).await,
        Command::History(a) => wsctl::deploy::history(stages, &aws, &ui, a.into()).await,
        Command::Rollback(a) => wsctl::deploy::rollback(stages, &aws, &ui, a.into()).await,
        Command::Destroy(a) => wsctl::deploy::destroy(stages, &aws, &ui, a.into()).await,
        Command::IamPolicy(a) => wsctl::deploy::iam_policy(stages, a.into()).await,
        Command::CiRole(a) => wsctl::deploy::ci_role(stages, &aws, &ui, a.into()).await,
        Command::Invoke(a) => wsctl::ops::invoke::run(stages, &aws, &ui, a.into()).await,
        Command::Logs(a) => wsctl::logs::run(stages, &aws, &ui, a.into()).await,
        Command::Bench(a) => wsctl::bench::run(&ui, a.into()).await,
        Command::Smoke(a) => wsctl::smoke::run(stages, &aws, &ui, a.into()).await,
        Command::Completions(a) => manuals::completions(a),
        Command::Man(a) => manuals::man(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_profile_never_reaches_the_cargo_profile() {
        // AWS_PROFILE fills the global --profile; build's cargo profile is its own flag.
        let cli = Cli::try_parse_from(["wsctl", "--profile", "prod", "build"]).expect("parses");
        assert_eq!(cli.global.profile.as_deref(), Some("prod"));
        let Command::Build(build) = cli.command else { panic!("build") };
        assert_eq!(build.cargo_profile, "lambda");
        let cli = Cli::try_parse_from(["wsctl", "build", "--cargo-profile", "release"]).expect("parses");
        assert_eq!(cli.global.profile, None);
        let Command::Build(build) = cli.command else { panic!("build") };
        assert_eq!(build.cargo_profile, "release");
    }

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
