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

use crate::aws::AwsTarget;
use crate::exit::Outcome;
use crate::ui::Ui;
use std::path::Path;

/// Runs `wsctl connections …`.
pub async fn connections(
    stages: &Path,
    aws: &AwsTarget,
    ui: &Ui,
    command: ConnectionsCommand,
) -> anyhow::Result<Outcome> {
    connections::run(stages, aws, ui, command).await
}

/// Runs `wsctl rooms …`.
pub async fn rooms(stages: &Path, aws: &AwsTarget, ui: &Ui, command: RoomsCommand) -> anyhow::Result<Outcome> {
    rooms::run(stages, aws, ui, command).await
}

/// Runs `wsctl keys …`.
pub async fn keys(stages: &Path, aws: &AwsTarget, ui: &Ui, command: KeysCommand) -> anyhow::Result<Outcome> {
    keys::run(stages, aws, ui, command).await
}
