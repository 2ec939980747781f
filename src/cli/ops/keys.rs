//! The command line of what [`wsctl::ops::keys`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use crate::cli::ops::target::TargetArgs;
use clap::{Args, Subcommand};

/// `wsctl keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; the key is printed once (only its hash is stored).
    Create(CreateArgs),
    /// List keys (ids, names, scopes, caps; never the keys).
    List(ListArgs),
    /// Revoke a key: it can no longer connect (`--disconnect` also closes its live connections).
    Revoke(RevokeArgs),
    /// Delete a key's record: it can no longer connect, and it leaves the list (its live
    /// connections stay open until they end; revoke with `--disconnect` first to close them).
    Delete(DeleteArgs),
}

/// `wsctl keys create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Label, e.g. the customer or service using the key.
    #[arg(long)]
    name: String,
    /// Comma-separated scopes: subscribe, publish.
    #[arg(long, default_value = "subscribe")]
    scopes: String,
    /// Live connections the key may hold at once (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    max_connections: u32,
    /// Limit the key to rooms whose name starts with this, e.g. `tenant-a:` (subscribe,
    /// unsubscribe and publish elsewhere are refused as `forbidden`).
    #[arg(long, value_name = "PREFIX")]
    room_prefix: Option<String>,
    /// The key stops working this long after now, e.g. `30d`, `12h`, `15m` (a minute to ten
    /// years); without it the key never expires.
    #[arg(long, value_name = "LIFETIME", value_parser = wsctl::ops::keys::parse_lifetime)]
    expires_in: Option<std::time::Duration>,
}

/// `wsctl keys delete`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Key id (key_…).
    id: String,
}

/// `wsctl keys list`
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Hide revoked keys.
    #[arg(long)]
    active: bool,
}

/// `wsctl keys revoke`
#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Key id (key_…).
    id: String,
    /// Also close the key's live connections now.
    #[arg(long)]
    disconnect: bool,
}

impl From<KeysCommand> for wsctl::ops::keys::KeysCommand {
    fn from(a: KeysCommand) -> Self {
        match a {
            KeysCommand::Create(x) => wsctl::ops::keys::KeysCommand::Create(x.into()),
            KeysCommand::List(x) => wsctl::ops::keys::KeysCommand::List(x.into()),
            KeysCommand::Revoke(x) => wsctl::ops::keys::KeysCommand::Revoke(x.into()),
            KeysCommand::Delete(x) => wsctl::ops::keys::KeysCommand::Delete(x.into()),
        }
    }
}

impl From<CreateArgs> for wsctl::ops::keys::CreateArgs {
    fn from(a: CreateArgs) -> Self {
        wsctl::ops::keys::CreateArgs {
            target: a.target.into(),
            name: a.name,
            scopes: a.scopes,
            max_connections: a.max_connections,
            room_prefix: a.room_prefix,
            expires_in: a.expires_in,
        }
    }
}

impl From<ListArgs> for wsctl::ops::keys::ListArgs {
    fn from(a: ListArgs) -> Self {
        wsctl::ops::keys::ListArgs { target: a.target.into(), active: a.active }
    }
}

impl From<RevokeArgs> for wsctl::ops::keys::RevokeArgs {
    fn from(a: RevokeArgs) -> Self {
        wsctl::ops::keys::RevokeArgs { target: a.target.into(), id: a.id, disconnect: a.disconnect }
    }
}

impl From<DeleteArgs> for wsctl::ops::keys::DeleteArgs {
    fn from(a: DeleteArgs) -> Self {
        wsctl::ops::keys::DeleteArgs { target: a.target.into(), id: a.id }
    }
}
