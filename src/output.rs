//! JSON documents, the error document, and logging set-up shared by every command.
//! `docs/cli.md` is the contract written down: exit codes and the JSON style.

use crate::exit::Outcome;
use crate::ui::OutputFormat;
use serde::Serialize;

/// Prints `value` as pretty JSON on stdout, in the one style of every command
/// (docs/cli.md): a time is a field named `…At`, written as an RFC 3339 UTC string with
/// milliseconds; the domain types keep epoch milliseconds, and this is the one place that
/// turns them into that string.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(value)?;
    times_as_rfc3339(&mut value);
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Rewrites every `…At` field holding epoch milliseconds as an RFC 3339 UTC string (for
/// documents printed one per line, which do not go through [`print_json`]).
pub fn times_as_rfc3339(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                match field.as_u64() {
                    Some(ms) if key.ends_with("At") => *field = serde_json::Value::String(rfc3339_ms(ms)),
                    _ => times_as_rfc3339(field),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(times_as_rfc3339),
        _ => {}
    }
}

/// `2026-12-04T02:30:00Z`, from epoch seconds.
pub fn rfc3339(secs: i64) -> String {
    let t = aws_sdk_cloudformation::primitives::DateTime::from_secs(secs);
    t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime).unwrap_or_default()
}

/// `2026-12-04T02:30:00.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let millis = (ms % 1000) as u32;
    format!("{}.{millis:03}Z", rfc3339((ms / 1000) as i64).trim_end_matches('Z'))
}

/// The document printed on stdout under `--output json` when a command fails, so a script
/// always gets JSON: `{"error":{"kind","message","causes"},"exitCode"}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDocument {
    /// What failed and why.
    pub error: ErrorBody,
    /// The process's exit code.
    pub exit_code: u8,
}

/// The body of an [`ErrorDocument`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// `usage` (the command line did not parse) or `failed` (the command ran and failed).
    pub kind: &'static str,
    /// The outermost message.
    pub message: String,
    /// The chain of causes under it, outermost first (empty when there are none).
    pub causes: Vec<String>,
}

/// Reports a failed command: `error: …` on stderr, and the JSON error document on stdout
/// under `--output json`. Returns the exit code.
pub fn report_failure(format: OutputFormat, err: &anyhow::Error) -> u8 {
    eprintln!("error: {err:#}");
    if format == OutputFormat::Json {
        let mut chain = err.chain().map(ToString::to_string);
        let message = chain.next().unwrap_or_default();
        let doc = ErrorDocument {
            error: ErrorBody { kind: "failed", message, causes: chain.collect() },
            exit_code: Outcome::Failure.code(),
        };
        let _ = print_json(&doc);
    }
    Outcome::Failure.code()
}

/// A reader that closes the pipe (`wsctl … | head`) ends the command quietly with exit 0,
/// as `cat` and `grep` do: Rust ignores SIGPIPE, so the next `println!` panics with
/// "failed printing to stdout: Broken pipe"; this hook turns that one panic into an exit.
pub fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(i32::from(Outcome::Success.code()));
        }
        default(info);
    }));
}

/// True when colour may be used on a stream: it is a terminal and `NO_COLOR` is unset or
/// empty (<https://no-color.org>).
pub fn colour_allowed(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Logs go to stderr, as text; `RUST_LOG` overrides the level chosen by `-v`. Colour only
/// when stderr is a terminal and `NO_COLOR` is unset (no escape codes in files and pipes).
/// With `also_to`, every line is appended to that file as well, without colour (`wsctl
/// dev` keeps its log in its state directory for `wsctl logs --stage local`).
pub fn init_logging(verbose: u8, also_to: Option<std::path::PathBuf>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
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
    let colour = colour_allowed(std::io::stderr().is_terminal());
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(colour);
    let file = also_to.map(|path| {
        tracing_subscriber::fmt::layer()
            .with_writer(LogFile { path, file: std::sync::Mutex::new(None) })
            .with_target(false)
            .with_ansi(false)
    });
    let _ = tracing_subscriber::registry().with(filter).with(stderr).with(file).try_init();
}

/// A log file opened on the first line written (its directory may not exist yet when
/// logging starts; a line that cannot be written is dropped, stderr still has it).
struct LogFile {
    path: std::path::PathBuf,
    file: std::sync::Mutex<Option<std::fs::File>>,
}

impl std::io::Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut guard = self.file.lock().map_err(|_| std::io::Error::other("log file lock poisoned"))?;
        if guard.is_none() {
            *guard = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).ok();
        }
        match guard.as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogFile {
    type Writer = &'a LogFile;
    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_with_milliseconds_everywhere_in_the_document() {
        let mut doc = serde_json::json!({
            "createdAt": 1_764_815_400_123_u64,
            "keys": [{ "revokedAt": 1_764_815_400_000_u64, "revokedBy": 5, "maxConnections": 3 }],
            "lastActiveAt": null,
            "at": 7,
        });
        times_as_rfc3339(&mut doc);
        assert_eq!(doc["createdAt"], "2025-12-04T02:30:00.123Z");
        assert_eq!(doc["keys"][0]["revokedAt"], "2025-12-04T02:30:00.000Z");
        assert_eq!(doc["keys"][0]["revokedBy"], 5, "only …At fields are times");
        assert_eq!(doc["keys"][0]["maxConnections"], 3);
        assert!(doc["lastActiveAt"].is_null(), "absent stays null");
        assert_eq!(doc["at"], 7);
    }
}
