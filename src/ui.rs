//! How a command talks to the operator: the one place that knows text from JSON output,
//! where human lines go, whether a TTY is attached, and the confirmation prompt (never
//! shown without a TTY).

use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON document on stdout; logs stay on stderr.
    Json,
}

/// How the current command talks to the operator.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// Text or JSON output.
    pub format: OutputFormat,
    /// stderr is a terminal (progress bars instead of plain lines).
    pub stderr_tty: bool,
    /// stdin and stderr are terminals (a prompt can be answered).
    pub interactive: bool,
}

impl Ui {
    /// Detects the terminal for the given output format.
    pub fn detect(format: OutputFormat) -> Ui {
        let stderr_tty = std::io::stderr().is_terminal();
        Ui { format, stderr_tty, interactive: stderr_tty && std::io::stdin().is_terminal() }
    }

    /// True when the result is printed as one JSON document.
    pub fn json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints the result: `doc` as the one JSON document under `--output json`, else
    /// whatever `text` prints.
    pub fn emit<T: Serialize>(&self, doc: &T, text: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => crate::output::print_json(doc),
            OutputFormat::Text => text(),
        }
    }

    /// Prints one record of a stream (`dev`'s ready banner, `subscribe`'s messages, `logs`'
    /// events): `doc` as one compact JSON object per line under `--output json`, else the
    /// text. A reader that closed the pipe (`… | head -1`) ends the command quietly with
    /// exit 0.
    pub fn record<T: Serialize>(&self, doc: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
        let line = match self.format {
            OutputFormat::Json => serde_json::to_string(doc)?,
            OutputFormat::Text => text(),
        };
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                std::process::exit(i32::from(crate::exit::Outcome::Success.code()))
            }
            other => Ok(other?),
        }
    }

    /// A human line: stdout in text mode, stderr in JSON mode (stdout holds only JSON).
    pub fn line(&self, text: impl AsRef<str>) {
        if self.json() {
            eprintln!("{}", text.as_ref());
        } else {
            println!("{}", text.as_ref());
        }
    }

    /// A progress/log line, always on stderr.
    pub fn note(&self, text: impl AsRef<str>) {
        eprintln!("{}", text.as_ref());
    }

    /// Asks a yes/no question. `Ok(true)` only on an explicit yes; without a TTY it
    /// returns an error instead of waiting for input that can never come.
    pub fn confirm(&self, question: &str, yes_flag: bool) -> anyhow::Result<bool> {
        if yes_flag {
            return Ok(true);
        }
        if !self.interactive {
            anyhow::bail!(
                "{question} needs confirmation, but no terminal is attached (CI?); re-run with --yes to proceed"
            );
        }
        eprint!("{question} [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
    }
}
