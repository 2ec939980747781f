//! `wsctl logs`: the functions' logs of a deployed stage (CloudWatch Logs
//! `FilterLogEvents` on `/aws/lambda/{stack}-{function}`, the groups the app template
//! creates), or the running `wsctl dev`'s own log (`gateway.log` in its state directory).
//! Readable lines by default, one JSON object per event with `--output json`; `--follow`
//! keeps polling.

use crate::cli::Global;
use crate::deploy::functions::FUNCTIONS;
use crate::output::{rfc3339_ms, OutputFormat};
use crate::stage::Stage;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `wsctl logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Stage: `local` (the running `wsctl dev`'s own log) or a deployed stage.
    #[arg(long, env = "WSCTL_STAGE", default_value = "local")]
    stage: String,
    /// State directory of the local gateway (--stage local).
    #[arg(long, env = "WSCTL_STATE_DIR", default_value = ".wsctl")]
    state_dir: PathBuf,
    /// Function: authorizer, connect, disconnect, message, publish, admin, or all.
    #[arg(long, default_value = "all")]
    function: String,
    /// How far back to start: 30s, 10m, 2h, 1d.
    #[arg(long, default_value = "10m", value_parser = parse_since)]
    since: Duration,
    /// Keep printing new events until Ctrl-C.
    #[arg(short, long)]
    follow: bool,
    /// Only events whose message contains this text.
    #[arg(long)]
    filter: Option<String>,
}

/// How often `--follow` asks again.
const POLL: Duration = Duration::from_secs(2);

/// Parses `30s`, `10m`, `2h`, `1d` (a bare number is seconds).
pub(crate) fn parse_since(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is not a duration like 30s, 10m, 2h or 1d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit in `{text}`: use s, m, h or d (e.g. 10m)")),
    };
    Ok(Duration::from_secs(secs))
}

/// One log event.
struct Event {
    function: String,
    at_ms: u64,
    message: String,
}

fn print(event: &Event, format: OutputFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let message = event.message.trim_end();
    let written = match format {
        OutputFormat::Json => writeln!(
            out,
            "{}",
            serde_json::json!({ "function": event.function, "loggedAt": rfc3339_ms(event.at_ms), "message": message })
        ),
        OutputFormat::Text => writeln!(out, "{} {:<10} {message}", rfc3339_ms(event.at_ms), event.function),
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}

fn now_ms() -> u64 {
    wsctl_handlers::store::now_ms()
}

/// Runs `wsctl logs`.
pub async fn run(global: &Global, args: LogsArgs) -> Result<ExitCode> {
    if args.stage == "local" {
        return local(global, &args).await;
    }
    let functions: Vec<&str> = match args.function.as_str() {
        "all" => FUNCTIONS.iter().map(|f| f.name).collect(),
        name => match FUNCTIONS.iter().find(|f| f.name == name) {
            Some(f) => vec![f.name],
            None => bail!("--function {name}: unknown; pick one of {}, or all", FUNCTIONS.map(|f| f.name).join(", ")),
        },
    };
    let stage = Stage::load(&global.stages_dir, &args.stage)?;
    let region = stage.require_region().map_err(anyhow::Error::msg)?.to_owned();
    let sdk = crate::aws::sdk_config(global, &stage.name, Some(&region)).await?;
    let client = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let app_stack = format!("{}-app", stage.stack_prefix());
    let mut start = now_ms().saturating_sub(args.since.as_millis() as u64);
    // Events at the newest timestamp already printed: the next poll starts there again.
    let mut seen_at_start: HashSet<String> = HashSet::new();
    let mut found_any_group = false;
    loop {
        let mut batch = Vec::new();
        for f in &functions {
            let group = format!("/aws/lambda/{app_stack}-{f}");
            if let Ok(events) = fetch(&client, &group, start, args.filter.as_deref()).await? {
                found_any_group = true;
                let function = (*f).to_owned();
                batch.extend(
                    events
                        .into_iter()
                        .map(|(id, at_ms, message)| (id, Event { function: function.clone(), at_ms, message })),
                );
            }
        }
        if !found_any_group {
            bail!(
                "no log groups for stage '{}' in {region} (looked for /aws/lambda/{app_stack}-{}): is it deployed \
                 (`wsctl status --stage {}`)? A function's group appears when the stage is deployed",
                stage.name,
                if functions.len() == 1 { functions[0] } else { "<function>" },
                stage.name
            );
        }
        batch.sort_by_key(|(_, e)| e.at_ms);
        let newest = batch.last().map(|(_, e)| e.at_ms);
        let mut at_newest = HashSet::new();
        for (id, event) in &batch {
            if seen_at_start.contains(id) {
                continue;
            }
            if args.filter.as_deref().is_some_and(|f| !event.message.contains(f)) {
                continue;
            }
            print(event, global.output)?;
            if Some(event.at_ms) == newest {
                at_newest.insert(id.clone());
            }
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(newest) = newest {
            if newest == start {
                seen_at_start.extend(at_newest);
            } else {
                start = newest;
                seen_at_start = at_newest;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A log group that does not exist (the function never ran, or the stage is not deployed).
struct Missing;

/// Every event of one group from `start_ms` on, as (event id, timestamp, message).
async fn fetch(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    start_ms: u64,
    filter: Option<&str>,
) -> Result<Result<Vec<(String, u64, String)>, Missing>> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut call = client.filter_log_events().log_group_name(group).start_time(start_ms as i64);
        if let Some(text) = filter {
            // A quoted term: CloudWatch matches the exact phrase.
            call = call.filter_pattern(format!("\"{}\"", text.replace('"', "")));
        }
        if let Some(t) = &token {
            call = call.next_token(t);
        }
        let out = match call.send().await {
            Ok(out) => out,
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) {
                    return Ok(Err(Missing));
                }
                return Err(anyhow!("{}", aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)))
                    .with_context(|| format!("cannot read log group {group}"));
            }
        };
        for e in out.events() {
            let id = e.event_id().unwrap_or_default().to_owned();
            let at = e.timestamp().unwrap_or_default().max(0) as u64;
            events.push((id, at, e.message().unwrap_or_default().to_owned()));
        }
        match out.next_token() {
            Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_owned()),
            _ => return Ok(Ok(events)),
        }
    }
}

/// `--stage local`: the gateway's own log, `gateway.log` in its state directory.
async fn local(global: &Global, args: &LogsArgs) -> Result<ExitCode> {
    let path = args.state_dir.join(crate::local::GATEWAY_LOG);
    let file = std::fs::File::open(&path).map_err(|_| {
        anyhow!("no gateway log at {}: start the gateway with `wsctl dev` (or pass --state-dir)", path.display())
    })?;
    let since = now_ms().saturating_sub(args.since.as_millis() as u64);
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 || !line.ends_with('\n') {
            if !args.follow {
                return Ok(ExitCode::SUCCESS);
            }
            // A partial line: read it again once the rest is written.
            if n > 0 {
                let back = i64::try_from(n).unwrap_or(0);
                reader.seek_relative(-back)?;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let at_ms = line_time_ms(&line);
        if at_ms.is_some_and(|t| t < since) {
            continue;
        }
        if args.filter.as_deref().is_some_and(|f| !line.contains(f)) {
            continue;
        }
        let event = Event {
            function: "gateway".into(),
            at_ms: at_ms.unwrap_or_else(now_ms),
            message: strip_time(&line).to_owned(),
        };
        print(&event, global.output)?;
    }
}

/// The leading RFC 3339 timestamp of a gateway log line, in epoch ms.
fn line_time_ms(line: &str) -> Option<u64> {
    let stamp = line.split_whitespace().next()?;
    let t = aws_sdk_cloudformation::primitives::DateTime::from_str(
        stamp,
        aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime,
    )
    .ok()?;
    u64::try_from(t.to_millis().ok()?).ok()
}

/// The line without its leading timestamp (printed in the one time format instead).
fn strip_time(line: &str) -> &str {
    match line_time_ms(line) {
        Some(_) => line.split_once(char::is_whitespace).map_or(line, |(_, rest)| rest.trim_start()),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_seconds_minutes_hours_days() {
        assert_eq!(parse_since("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_since("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_since("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_since("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_since("45"), Ok(Duration::from_secs(45)));
        assert!(parse_since("10 minutes").is_err());
        assert!(parse_since("m").is_err());
    }

    #[test]
    fn gateway_lines_give_their_time() {
        let line = "2026-12-04T02:30:00.123456Z  INFO connect refused peer=127.0.0.1:5\n";
        assert_eq!(line_time_ms(line), Some(1_796_351_400_123));
        assert_eq!(strip_time(line), "INFO connect refused peer=127.0.0.1:5\n");
        assert_eq!(line_time_ms("no time here"), None);
    }
}
