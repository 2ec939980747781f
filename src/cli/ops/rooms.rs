//! The command line of what [`wsctl::ops::rooms`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use crate::cli::ops::target::TargetArgs;
use crate::cli::ops::watch::WatchArgs;
use clap::{Args, Subcommand};

/// `wsctl rooms …`
#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// List rooms: subscribers, last publish, seq.
    List(ListArgs),
    /// One room and its members.
    Show(ShowArgs),
}

/// `wsctl rooms list`
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Only rooms whose name starts with this, e.g. `tvl:protocol:`.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Fetch at most N rooms (default: all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    #[command(flatten)]
    watch: WatchArgs,
}

/// `wsctl rooms show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Room name.
    #[arg(allow_hyphen_values = true)]
    room: String,
}

impl From<RoomsCommand> for wsctl::ops::rooms::RoomsCommand {
    fn from(a: RoomsCommand) -> Self {
        match a {
            RoomsCommand::List(x) => wsctl::ops::rooms::RoomsCommand::List(x.into()),
            RoomsCommand::Show(x) => wsctl::ops::rooms::RoomsCommand::Show(x.into()),
        }
    }
}

impl From<ListArgs> for wsctl::ops::rooms::ListArgs {
    fn from(a: ListArgs) -> Self {
        wsctl::ops::rooms::ListArgs { target: a.target.into(), prefix: a.prefix, limit: a.limit, watch: a.watch.into() }
    }
}

impl From<ShowArgs> for wsctl::ops::rooms::ShowArgs {
    fn from(a: ShowArgs) -> Self {
        wsctl::ops::rooms::ShowArgs { target: a.target.into(), room: a.room }
    }
}
