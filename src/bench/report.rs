//! What a bench run prints: the common header of every report, the human table helpers,
//! the JSON document, and the progress bar shown on a terminal.

use super::stats::{LatencySummary, ValueSummary};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::fmt::Write;
use std::io::IsTerminal;

/// Fields every scenario's report starts with.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// `connect`, `route`, `fanout` or `mixed`.
    pub scenario: &'static str,
    /// Target URL, key masked.
    pub url: String,
    /// Free-text label from `--label`.
    pub label: Option<String>,
    /// Identifier of this run (also part of the room names it uses).
    pub run_id: String,
    /// Start of the run, wall-clock ms since the epoch.
    pub started_ms: u64,
    /// How the client ran.
    pub bench: BenchSetup,
}

/// How the load generator itself was set up.
#[derive(Debug, Clone, Serialize)]
pub struct BenchSetup {
    /// Tokio worker threads of the bench.
    pub threads: usize,
    /// 127.0.0.x source addresses connections were spread over.
    pub sources: u8,
    /// tungstenite read buffer per connection, bytes.
    pub read_buf: usize,
    /// Open-file soft limit after raising it.
    pub nofile: u64,
    /// Server PID sampled from /proc, if given.
    pub server_pid: Option<u32>,
}

/// A finished report: JSON-serialisable, printable as a table, with its own verdict.
pub trait Summary: Serialize {
    /// The human-readable table.
    fn table(&self, out: &mut String);
    /// What went wrong (failures, loss, reordering); empty when the run was clean.
    fn problems(&self) -> Vec<String>;
}

/// The JSON document printed with `--output json`: the report plus its verdict.
#[derive(Serialize)]
pub struct Document<'a, R: Serialize> {
    /// The scenario's report (flattened into the top level).
    #[serde(flatten)]
    pub report: &'a R,
    /// True when `problems` is empty.
    pub ok: bool,
    /// Failures, loss and reordering found by the run.
    pub problems: Vec<String>,
}

/// Renders the header line of a table.
pub fn header(out: &mut String, m: &Meta) {
    let label = m.label.as_deref().map(|l| format!("  [{l}]")).unwrap_or_default();
    let _ = writeln!(
        out,
        "wsctl bench {}  {}{label}  (run {}, {} thread(s), {} source address(es))",
        m.scenario, m.url, m.run_id, m.bench.threads, m.bench.sources
    );
}

fn opt(x: Option<f64>) -> String {
    match x {
        Some(v) => format!("{v}"),
        None => "-".into(),
    }
}

/// `p50 … p90 … p99 … p99.9 … max …` of a latency summary (ms).
pub fn lat(s: &LatencySummary) -> String {
    if s.count == 0 {
        return "(no samples)".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
        opt(s.p50),
        opt(s.p90),
        opt(s.p99),
        opt(s.p999),
        opt(s.max),
        s.count
    )
}

/// `p50 … (min …, max …)` of a value summary.
pub fn vals(s: &ValueSummary) -> String {
    if s.count == 0 {
        return "-".into();
    }
    format!("p50 {} (min {}, max {})", opt(s.p50), opt(s.min), opt(s.max))
}

/// One `  name  value` row.
pub fn row(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "  {name:<16}{value}");
}

/// Prints a report as text or as one JSON document; returns its problems.
pub fn emit<R: Summary>(r: &R, json: bool) -> anyhow::Result<Vec<String>> {
    let problems = r.problems();
    if json {
        crate::output::print_json(&Document { report: r, ok: problems.is_empty(), problems: problems.clone() })?;
    } else {
        let mut s = String::new();
        r.table(&mut s);
        if problems.is_empty() {
            s.push_str("  verdict         ok\n");
        } else {
            for p in &problems {
                let _ = writeln!(s, "  PROBLEM         {p}");
            }
        }
        print!("{s}");
    }
    Ok(problems)
}

/// A progress bar on stderr when it is a terminal (hidden otherwise or with `--quiet`).
#[derive(Clone)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar of `len` steps labelled `msg`.
    pub fn new(enabled: bool, len: u64, msg: &str) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})")
        {
            pb.set_style(style);
        }
        pb.set_message(msg.to_string());
        Progress(Some(pb))
    }

    /// Advances by `n`.
    pub fn inc(&self, n: u64) {
        if let Some(p) = &self.0 {
            p.inc(n);
        }
    }

    /// Sets the absolute position.
    pub fn set(&self, pos: u64) {
        if let Some(p) = &self.0 {
            p.set_position(pos);
        }
    }

    /// Replaces the label.
    pub fn message(&self, msg: String) {
        if let Some(p) = &self.0 {
            p.set_message(msg);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(p) = &self.0 {
            p.finish_and_clear();
        }
    }
}
