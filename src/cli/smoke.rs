//! The command line of [`wsctl::smoke`]: its clap arguments and their conversion into the
//! library's plain options; also the smoke target of `deploy --smoke`.

use super::ops::target::TargetArgs;
use clap::Args;
use std::time::Duration;

/// `wsctl smoke`
#[derive(Debug, Args)]
pub struct SmokeArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Connect here (ws:// or wss://, e.g. the stage's custom domain) instead of the
    /// stage's WebSocket URL.
    #[arg(long)]
    url: Option<String>,
    /// Keep the subscriber connected this long before publishing (30s, 2m, …), so the
    /// journey outlives the platform's timers.
    #[arg(long, default_value = "0s", value_parser = wsctl::logs::parse_since)]
    hold: Duration,
}

impl From<SmokeArgs> for wsctl::smoke::SmokeArgs {
    fn from(a: SmokeArgs) -> Self {
        wsctl::smoke::SmokeArgs { target: a.target.into(), url: a.url, hold: a.hold }
    }
}

/// The target `deploy --smoke` runs the journey against: `--stage STAGE` with the
/// `WSCTL_*` overrides from the environment, exactly as `wsctl smoke --stage STAGE` reads
/// them.
pub fn deploy_target(stage: &str) -> anyhow::Result<wsctl::ops::target::TargetArgs> {
    use anyhow::Context;
    use clap::FromArgMatches;
    let matches = TargetArgs::augment_args(clap::Command::new("smoke"))
        .try_get_matches_from(["smoke", "--stage", stage])
        .context("reading the smoke target's overrides")?;
    Ok(TargetArgs::from_arg_matches(&matches)?.into())
}
