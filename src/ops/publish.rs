//! `wsctl publish --stage S --room R DATA`: publishes through the local gateway or a
//! deployed stage's `publish` function and reports delivered / pruned / failed.

use crate::cli::Global;
use crate::local::LocalState;
use crate::output::{print_json, OutputFormat};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use wsctl_handlers::admin::{AdminReply, AdminRequest};

/// `wsctl publish`
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Stage to publish on (`local` = the running `wsctl dev`).
    #[arg(long, default_value = "local")]
    pub stage: String,
    /// Room name, e.g. tvl:protocol:aave.
    #[arg(long)]
    pub room: String,
    /// The message data: JSON (quote strings: '"hello"'), or @FILE to read it from a file.
    pub data: String,
    /// State directory of the local gateway.
    #[arg(long, env = "WSCTL_STATE_DIR", default_value = ".wsctl")]
    pub state_dir: PathBuf,
}

/// Reads DATA: inline JSON or `@file`.
pub fn read_data(arg: &str) -> Result<serde_json::Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read data file {path}"))?,
        None => arg.to_owned(),
    };
    serde_json::from_str::<serde_json::Value>(text.trim()).map_err(|e| {
        anyhow::anyhow!("DATA must be JSON ({e}); quote plain strings like '\"hello\"', or pass @file.json")
    })
}

/// Runs `wsctl publish`.
pub async fn publish(global: &Global, args: PublishArgs) -> Result<ExitCode> {
    let data = read_data(&args.data)?;
    if args.stage != "local" {
        bail!("publishing to deployed stages is not available yet; use --stage local");
    }
    let client = LocalState::existing(&args.state_dir)?.admin_client()?;
    match client.call(&AdminRequest::Publish { room: args.room.clone(), data }).await? {
        AdminReply::Published { report } => {
            match global.output {
                OutputFormat::Json => print_json(&report)?,
                OutputFormat::Text => println!(
                    "published to {} as seq {}: {} delivered, {} pruned as gone, {} failed",
                    report.room, report.seq, report.delivered, report.pruned, report.failed
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        AdminReply::Error { code, message } => bail!("publish refused ({}): {message}", code.as_str()),
        other => bail!("unexpected reply from the gateway: {other:?}"),
    }
}
