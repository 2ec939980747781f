//! The command line of what [`wsctl::subscribe`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use crate::cli::ops::target::TargetArgs;
use clap::Args;

/// `wsctl subscribe`
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Rooms to subscribe to, e.g. tvl:protocol:aave price:coingecko:bitcoin.
    #[arg(required = true, value_name = "ROOM")]
    rooms: Vec<String>,
    #[command(flatten)]
    target: TargetArgs,
    /// Connect here (ws:// or wss://) instead of the stage's WebSocket URL.
    #[arg(long)]
    url: Option<String>,
    /// API key with the subscribe scope (on --stage local: the gateway's dev key).
    #[arg(long, env = "WSCTL_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Replay what each room's history still holds after this seq (0: all of it).
    #[arg(long)]
    since: Option<u64>,
    /// Exit after printing this many messages.
    #[arg(long)]
    count: Option<u64>,
}

impl From<SubscribeArgs> for wsctl::subscribe::SubscribeArgs {
    fn from(a: SubscribeArgs) -> Self {
        wsctl::subscribe::SubscribeArgs {
            rooms: a.rooms,
            target: a.target.into(),
            url: a.url,
            key: a.key,
            since: a.since,
            count: a.count,
        }
    }
}
