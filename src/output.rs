//! Output formats, exit codes and logging set-up shared by every command.

use clap::ValueEnum;
use serde::Serialize;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for any failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of `plan` when the stage has changes to apply.
pub const EXIT_CHANGES: u8 = 2;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON document on stdout; logs stay on stderr.
    Json,
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Logs go to stderr, as text; `RUST_LOG` overrides the level chosen by `-v`. Colour only
/// when stderr is a terminal and `NO_COLOR` is unset (no escape codes in files and pipes).
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        // The SDK's credential-chain warnings ("failed to load credentials from …", one per
        // provider tried) stay behind -v: a missing credential is reported once, as an error.
        0 => "warn,wsctl=info,wsctl_handlers=info,aws_config=error,aws_runtime=error,aws_smithy_runtime=error",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour)
        .try_init();
}
