//! `wsctl init`: writes the shipped stage files (local, dev, staging, prod, with their
//! comments) into the user's repository. It never overwrites a file and never asks: a file
//! that exists is kept and reported, so running it twice, or in CI, is safe.

use crate::builtin_stages::STAGES;
use crate::exit::Outcome;
use crate::ui::Ui;
use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

/// `wsctl init`
#[derive(Debug)]
pub struct InitArgs {}

/// One stage file and what `init` did with it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Written {
    stage: &'static str,
    path: PathBuf,
    /// `created`, or `kept` when the file already existed (it is never overwritten).
    action: &'static str,
}

/// Runs `wsctl init`.
pub async fn run(stages: &Path, ui: &Ui, _args: InitArgs) -> Result<Outcome> {
    let dir = stages;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for (stage, text) in STAGES {
        let path = dir.join(format!("{stage}.yaml"));
        let action = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
                "created"
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => "kept",
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        };
        files.push(Written { stage, path, action });
    }
    ui.emit(&serde_json::json!({ "stagesDir": dir, "files": files }), || {
        for f in &files {
            let note = if f.action == "kept" { "  (exists; left as it is)" } else { "" };
            println!("{:<8} {}{note}", f.action, f.path.display());
        }
        println!();
        println!("Next:");
        println!("  wsctl dev                         # the local gateway, on stages/local.yaml");
        println!("  edit {}  # set account: and region: to yours", dir.join("dev.yaml").display());
        println!("  wsctl plan --stage dev            # what a deploy would create");
        Ok(())
    })?;
    Ok(Outcome::Success)
}
