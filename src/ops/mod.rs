//! Operator commands: publish, connections, rooms, keys — on `--stage local` (through the
//! running `wsctl dev`) and on deployed stages (DynamoDB, the management API and the
//! stage's Lambda functions). Every command runs one code path over a [`target::Target`]:
//! it sends an `AdminRequest` with [`target::Target::call`] and renders the reply; refusals
//! are [`target::AdminError`]s matched by their code. What a deployed stage serves without
//! its `admin` function (keys, kicks) is in `deployed.rs`. Two reads of a deployed stage
//! stay outside the admin requests, both in `connections.rs`: `connections list`'s bulk
//! read of the connections table (an optimisation over paging through the function 50
//! connections at a time), and `connections show`'s record and live state, read directly
//! so they show, with a warning, when the function cannot answer.

pub mod connections;
mod deployed;
pub mod invoke;
pub mod keys;
pub mod publish;
pub mod rooms;
mod table;
pub mod target;
pub mod watch;

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
