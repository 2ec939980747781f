//! The command line of what [`wsctl::ops::publish`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use crate::cli::ops::target::TargetArgs;
use clap::Args;

/// `wsctl publish`
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Room name, e.g. tvl:protocol:aave.
    #[arg(long)]
    pub room: String,
    /// The message data: JSON (quote strings: '"hello"'), @FILE to read it from a file, or -
    /// to read it from stdin.
    #[arg(allow_hyphen_values = true)]
    pub data: String,
}

impl From<PublishArgs> for wsctl::ops::publish::PublishArgs {
    fn from(a: PublishArgs) -> Self {
        wsctl::ops::publish::PublishArgs { target: a.target.into(), room: a.room, data: a.data }
    }
}
