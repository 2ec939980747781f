//! Operator commands: publish, connections, rooms, keys — on `--stage local` (through the
//! running `wsctl dev`) and on deployed stages (DynamoDB, the management API and the
//! stage's Lambda functions). Every command runs one code path over a [`target::Target`].

mod connections;
pub mod invoke;
mod keys;
mod publish;
mod rooms;
mod table;
mod target;
mod watch;

pub use connections::ConnectionsCommand;
pub use keys::KeysCommand;
pub use publish::{publish, PublishArgs};
pub use rooms::RoomsCommand;
pub use target::{Target, TargetArgs};

use crate::cli::Global;
use std::process::ExitCode;

/// Runs `wsctl connections …`.
pub async fn connections(global: &Global, command: ConnectionsCommand) -> anyhow::Result<ExitCode> {
    connections::run(global, command).await
}

/// Runs `wsctl rooms …`.
pub async fn rooms(global: &Global, command: RoomsCommand) -> anyhow::Result<ExitCode> {
    rooms::run(global, command).await
}

/// Runs `wsctl keys …`.
pub async fn keys(global: &Global, command: KeysCommand) -> anyhow::Result<ExitCode> {
    keys::run(global, command).await
}
