//! `wsctl publish --stage S --room R DATA`: publishes through the local gateway or a
//! deployed stage's `publish` function and reports delivered / pruned / failed.

use super::target::{with_target, AdminError, Target, TargetArgs};
use crate::aws::AwsTarget;
use crate::exit::Outcome;
use crate::ui::Ui;
use anyhow::{anyhow, Context, Result};
use std::path::Path;

/// `wsctl publish`
#[derive(Debug)]
pub struct PublishArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Room name, e.g. tvl:protocol:aave.
    pub room: String,
    /// The message data: JSON (quote strings: '"hello"'), @FILE to read it from a file, or -
    /// to read it from stdin.
    pub data: String,
}

/// Reads DATA: inline JSON, `@file`, or `-` for stdin.
pub fn read_data(arg: &str) -> Result<serde_json::Value> {
    let text = if arg == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the data from stdin")?
    } else {
        match arg.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read data file {path}"))?,
            None => arg.to_owned(),
        }
    };
    let from = if arg == "-" { "stdin" } else { "DATA" };
    serde_json::from_str::<serde_json::Value>(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{from} must be JSON ({e}); quote plain strings like '\"hello\"', pass @file.json, or - to read stdin"
        )
    })
}

/// Runs `wsctl publish`.
pub async fn publish(stages: &Path, aws: &AwsTarget, ui: &Ui, args: PublishArgs) -> Result<Outcome> {
    let data = read_data(&args.data)?;
    let target = Target::resolve(stages, aws, &args.target).await?;
    let written_to = target.guard_write().await?;
    let report = target.publish(&args.room, data).await.map_err(|e| match e {
        AdminError::Refused { code, message } => anyhow!("publish refused ({}): {message}", code.as_str()),
        AdminError::Failed(e) => e,
    })?;
    ui.emit(&with_target(&report, &written_to)?, || {
        println!(
            "published to {} on stage {} as seq {}: {} subscriber(s), {} delivered, {} pruned as gone, {} failed",
            report.room,
            target.stage_name(),
            report.seq,
            report.subscribers,
            report.delivered,
            report.pruned,
            report.failed
        );
        Ok(())
    })?;
    Ok(Outcome::Success)
}
