//! The command line of what [`wsctl::logs`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use wsctl::logs::parse_since;

/// `wsctl logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Stage: `local` (the running `wsctl dev`'s own log) or a deployed stage.
    #[arg(long, env = "WSCTL_STAGE", default_value = "local")]
    stage: String,
    /// State directory of the local gateway (--stage local).
    #[arg(long, env = "WSCTL_STATE_DIR", default_value = ".wsctl")]
    state_dir: PathBuf,
    /// Function: authorizer, connect, disconnect, message, publish, admin, or all.
    #[arg(long, default_value = "all")]
    function: String,
    /// How far back to start: 30s, 10m, 2h, 1d.
    #[arg(long, default_value = "10m", value_parser = parse_since)]
    since: Duration,
    /// Keep printing new events until Ctrl-C.
    #[arg(short, long)]
    follow: bool,
    /// Only events whose message contains this text.
    #[arg(long)]
    filter: Option<String>,
}

impl From<LogsArgs> for wsctl::logs::LogsArgs {
    fn from(a: LogsArgs) -> Self {
        wsctl::logs::LogsArgs {
            stage: a.stage,
            state_dir: a.state_dir,
            function: a.function,
            since: a.since,
            follow: a.follow,
            filter: a.filter,
        }
    }
}
