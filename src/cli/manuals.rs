//! `wsctl completions SHELL` and `wsctl man`: generated from the clap command tree, so
//! they can never disagree with `--help`.

use super::Cli;
use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::path::PathBuf;
use wsctl::exit::Outcome;

/// `wsctl completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to complete for, e.g. `wsctl completions bash > ~/.local/share/bash-completion/completions/wsctl`.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `wsctl man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (wsctl.1, wsctl-dev.1, …) into this directory instead of
    /// printing wsctl.1 on stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Prints the completion script for a shell.
pub fn completions(args: CompletionsArgs) -> Result<Outcome> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "wsctl", &mut std::io::stdout());
    Ok(Outcome::Success)
}

/// Prints (or writes) the man pages.
pub fn man(args: ManArgs) -> Result<Outcome> {
    let cmd = Cli::command();
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            println!("man pages written to {} (try: man -l {}/wsctl.1)", dir.display(), dir.display());
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page).context("cannot render the man page")?;
            use std::io::Write;
            std::io::stdout().write_all(&page)?;
        }
    }
    Ok(Outcome::Success)
}
