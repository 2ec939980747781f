//! Terminal interaction of the deploy commands: where human lines go, whether a TTY is
//! attached, and the confirmation prompt (never shown without a TTY).

use crate::output::OutputFormat;
use std::io::{BufRead, IsTerminal, Write};

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
