//! Operator commands: publish, connections, rooms, keys — on `--stage local` (through the
//! running `wsctl dev`) and on deployed stages.

mod publish;

pub use publish::{publish, PublishArgs};

use crate::cli::Global;
use clap::Subcommand;
use std::process::ExitCode;

/// `wsctl connections …`
#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {}
/// `wsctl rooms …`
#[derive(Debug, Subcommand)]
pub enum RoomsCommand {}
/// `wsctl keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {}

pub async fn connections(_: &Global, c: ConnectionsCommand) -> anyhow::Result<ExitCode> {
    match c {}
}
pub async fn rooms(_: &Global, c: RoomsCommand) -> anyhow::Result<ExitCode> {
    match c {}
}
pub async fn keys(_: &Global, c: KeysCommand) -> anyhow::Result<ExitCode> {
    match c {}
}
