//! The command line of what [`wsctl::ops::connections`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use crate::cli::ops::target::TargetArgs;
use crate::cli::ops::watch::WatchArgs;
use clap::{Args, Subcommand, ValueEnum};

/// `wsctl connections …`
#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List live connections: id, key id, source IP, user agent, connected, last active, rooms.
    List(ListArgs),
    /// Everything known about one connection.
    Show(ShowArgs),
    /// Close a connection (DeleteConnection); the client sees a close and its $disconnect cleanup runs.
    Kick(KickArgs),
}

/// `wsctl connections list`
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Only members of this room.
    #[arg(long)]
    room: Option<String>,
    /// Only connections of this key id (key_…, never the key itself).
    #[arg(long = "key", value_name = "KEY_ID")]
    key: Option<String>,
    /// Fetch at most N connections (default: every connection, over as many pages as it takes).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Sort order.
    #[arg(long, value_enum, default_value_t = SortBy::Connected)]
    sort: SortBy,
    /// Deployed stages: skip GetConnection for each connection (much faster on very large
    /// stages; state and last activity are then not shown).
    #[arg(long)]
    no_live: bool,
    #[command(flatten)]
    watch: WatchArgs,
}

/// Sort orders of `connections list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// Oldest connection first.
    Connected,
    /// Most recently active first.
    LastActive,
    /// By key id, then oldest first.
    Key,
    /// By connection id.
    Id,
}

/// `wsctl connections show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Connection id.
    #[arg(allow_hyphen_values = true)]
    id: String,
}

/// `wsctl connections kick`
#[derive(Debug, Args)]
pub struct KickArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Connection id.
    #[arg(allow_hyphen_values = true)]
    id: String,
    /// Why (recorded in wsctl's output and log; API Gateway's DeleteConnection carries no reason to the client).
    #[arg(long)]
    reason: Option<String>,
}

impl From<ConnectionsCommand> for wsctl::ops::connections::ConnectionsCommand {
    fn from(a: ConnectionsCommand) -> Self {
        match a {
            ConnectionsCommand::List(x) => wsctl::ops::connections::ConnectionsCommand::List(x.into()),
            ConnectionsCommand::Show(x) => wsctl::ops::connections::ConnectionsCommand::Show(x.into()),
            ConnectionsCommand::Kick(x) => wsctl::ops::connections::ConnectionsCommand::Kick(x.into()),
        }
    }
}

impl From<ListArgs> for wsctl::ops::connections::ListArgs {
    fn from(a: ListArgs) -> Self {
        wsctl::ops::connections::ListArgs {
            target: a.target.into(),
            room: a.room,
            key: a.key,
            limit: a.limit,
            sort: a.sort.into(),
            no_live: a.no_live,
            watch: a.watch.into(),
        }
    }
}

impl From<SortBy> for wsctl::ops::connections::SortBy {
    fn from(a: SortBy) -> Self {
        match a {
            SortBy::Connected => wsctl::ops::connections::SortBy::Connected,
            SortBy::LastActive => wsctl::ops::connections::SortBy::LastActive,
            SortBy::Key => wsctl::ops::connections::SortBy::Key,
            SortBy::Id => wsctl::ops::connections::SortBy::Id,
        }
    }
}

impl From<ShowArgs> for wsctl::ops::connections::ShowArgs {
    fn from(a: ShowArgs) -> Self {
        wsctl::ops::connections::ShowArgs { target: a.target.into(), id: a.id }
    }
}

impl From<KickArgs> for wsctl::ops::connections::KickArgs {
    fn from(a: KickArgs) -> Self {
        wsctl::ops::connections::KickArgs { target: a.target.into(), id: a.id, reason: a.reason }
    }
}
