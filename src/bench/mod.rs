//! `wsctl bench`: a load generator for a stage's WebSocket API (the local gateway or a
//! deployed stage). Four scenarios, each bounded in count and time:
//! - `connect`: open N connections at R/s and hold them (latency, failures, server RSS);
//! - `route`: request/reply round trips (`ping`, `subscribe`) at a target rate;
//! - `fanout`: S subscribers in one room, P publishes (publish → last delivery, loss);
//! - `mixed`: churn, many rooms and publishes for a duration: a soak.
//!
//! Every scenario that subscribes accounts for each subscriber's deliveries
//! ([`stats::Ledger`]): what the server acknowledged into its rooms between its
//! `subscribed` reply and its leave must arrive once and in order; anything missing,
//! duplicated or reordered fails the run.
//!
//! The bench runs on its own Tokio runtime (one worker thread by default, leaving the
//! rest of the machine to a server on the same host), raises its open-file limit,
//! pre-grows its fd table, and spreads source addresses over 127.0.0.x when one address's
//! ephemeral ports would not do.

pub mod client;
pub mod connect;
pub mod fanout;
pub mod mixed;
pub mod publisher;
mod report;
pub mod route;
mod stats;

use crate::exit::Outcome;
use crate::ui::Ui;
use client::{KeyVia, Target};
use report::{BenchSetup, Meta};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `wsctl bench`
#[derive(Debug)]
pub struct BenchArgs {
    /// Options of every scenario.
    pub common: Common,
    /// What to measure.
    pub scenario: Scenario,
}

/// Options of every scenario (accepted before or after the scenario name).
#[derive(Debug, Clone)]
pub struct Common {
    /// WebSocket URL of the stage: ws://127.0.0.1:8080/local, or a deployed stage's wss:// URL.
    pub url: Option<String>,
    /// API key; fanout and mixed also publish with it unless --publish-key is given.
    pub key: Option<String>,
    /// API key with the publish scope, for the publisher connections.
    pub publish_key: Option<String>,
    /// WebSocket URL for the publisher connections (default: --url): another gateway
    /// process on the same Redis, so every delivery crosses processes.
    pub publish_url: Option<String>,
    /// Send the key as the apiKey query parameter or the x-api-key header.
    pub key_via: KeyVia,
    /// PID of the server when it runs on this host: its RSS (and CPU) is sampled from /proc.
    pub server_pid: Option<u32>,
    /// Spread connections over this many 127.0.0.x source addresses (0: one per 25,000
    /// connections).
    pub sources: u32,
    /// WebSocket read buffer per connection, bytes (tungstenite zero-fills it on every
    /// read, so small is fast; frames here are a few hundred bytes).
    pub read_buf: usize,
    /// Tokio worker threads of the bench (1 leaves the most CPU to a local server).
    pub threads: usize,
    /// Deadline for one connection's TCP connect + upgrade (+ first subscribe), ms.
    pub connect_timeout_ms: u64,
    /// Connection attempts in flight at once.
    pub max_inflight: usize,
    /// Hard bound on the whole run, seconds; what is done by then is reported.
    pub max_seconds: u64,
    /// Before measuring, warm the server up: this many connections subscribe to a side
    /// room, receive 5 messages and close (0: none).
    pub warmup: usize,
    /// Free-text label copied into the report.
    pub label: Option<String>,
    /// No progress bar.
    pub quiet: bool,
}

/// A load scenario and its own options.
#[derive(Debug)]
pub enum Scenario {
    /// Open N connections at R/s and hold them: connect latency, failures by cause, server
    /// RSS per held connection (with --server-pid).
    Connect(connect::ConnectArgs),
    /// Request/reply round trips (ping, subscribe) on M held connections at a target rate.
    Route(route::RouteArgs),
    /// S subscribers in one room, P messages published over a separate connection:
    /// publish→last delivery, deliveries/s, per-subscriber delivery accounting.
    Fanout(fanout::FanoutArgs),
    /// A soak: connection churn (lifetimes from a range), subscriptions over many rooms,
    /// publishes, for a duration; per-subscriber delivery accounting, server RSS over time.
    Mixed(mixed::MixedArgs),
}

impl Scenario {
    fn connections(&self) -> usize {
        match self {
            Scenario::Connect(a) => a.connections,
            Scenario::Route(a) => a.connections,
            Scenario::Fanout(a) => a.subscribers + 1,
            Scenario::Mixed(a) => a.connections + a.publishers.unwrap_or(8),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Scenario::Connect(_) => "connect",
            Scenario::Route(_) => "route",
            Scenario::Fanout(_) => "fanout",
            Scenario::Mixed(_) => "mixed",
        }
    }
}

/// What every scenario gets: targets, bounds, and the report header.
pub struct Ctx {
    /// Connections for subscribers and requests.
    pub target: Arc<Target>,
    /// Connections for publishers (the publish key).
    pub pub_target: Arc<Target>,
    /// Common options.
    pub common: Common,
    /// Nothing runs past this.
    pub deadline: Instant,
    /// Report header.
    pub meta: Meta,
}

impl Ctx {
    /// A room name unique to this run: `bench:<what>:<run id>`.
    pub fn room(&self, what: &str) -> String {
        format!("bench:{what}:{}", self.meta.run_id)
    }

    /// Whether to show progress bars.
    pub fn progress(&self) -> bool {
        !self.common.quiet
    }
}

/// Runs `wsctl bench`; exits non-zero when the run found problems (failures, missing,
/// duplicated or reordered deliveries).
pub async fn run(ui: &Ui, a: BenchArgs) -> anyhow::Result<Outcome> {
    let c = a.common;
    let url =
        c.url.clone().ok_or_else(|| anyhow::anyhow!("--url is required, e.g. --url ws://127.0.0.1:8080/local"))?;
    let conns = a.scenario.connections();
    // Growing the fd table later, with threads running, stalls every thread for 12–30 ms
    // (which would show up as connect-latency tails that belong to the client).
    let nofile = crate::gateway::fdlimit::raise_and_pregrow(conns + 192).unwrap_or(1024);
    if conns as u64 + 64 > nofile {
        tracing::warn!("the open-file limit {nofile} is below {conns} connections + a margin");
    }
    let timeout = Duration::from_millis(c.connect_timeout_ms.max(1));
    let target = Target::new(&url, c.key.as_deref(), c.key_via, conns, c.sources, c.read_buf, timeout)?;
    let pub_key = c.publish_key.as_deref().or(c.key.as_deref());
    let pub_url = c.publish_url.as_deref().unwrap_or(&url);
    let pub_target = Target::new(pub_url, pub_key, c.key_via, conns, c.sources, c.read_buf, timeout)?;
    let started_ms = stats::now_us() / 1000;
    let meta = Meta {
        scenario: a.scenario.name(),
        url: target.display_url.clone(),
        label: c.label.clone(),
        run_id: format!("{:x}{:04x}", started_ms, std::process::id() & 0xffff),
        started_ms,
        bench: BenchSetup {
            threads: c.threads.max(1),
            sources: target.sources,
            read_buf: c.read_buf,
            nofile,
            server_pid: c.server_pid,
        },
    };
    let threads = c.threads.max(1);
    let ctx = Ctx {
        target: Arc::new(target),
        pub_target: Arc::new(pub_target),
        deadline: Instant::now() + Duration::from_secs(c.max_seconds.max(1)),
        common: c,
        meta,
    };
    let json = ui.json();
    let scenario = a.scenario;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("wsctl-bench".into()).spawn(move || {
        // multi_thread even for one worker: measured here, a current_thread runtime adds
        // ~3 ms to the connect p99 at 1,000 connections/s (fanbench uses the same set-up)
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("wsctl-bench-worker")
            .enable_all()
            .build();
        let r = match rt {
            Ok(rt) => {
                let r = rt.block_on(run_scenario(ctx, scenario, json));
                rt.shutdown_timeout(Duration::from_secs(2));
                r
            }
            Err(e) => Err(anyhow::anyhow!("cannot start the bench runtime: {e}")),
        };
        let _ = tx.send(r);
    })?;
    let problems = rx.await.map_err(|_| anyhow::anyhow!("the bench thread ended without a report"))??;
    Ok(Outcome::success_if(problems.is_empty()))
}

async fn run_scenario(ctx: Ctx, s: Scenario, json: bool) -> anyhow::Result<Vec<String>> {
    match s {
        Scenario::Connect(a) => report::emit(&connect::run(&ctx, a).await?, json),
        Scenario::Route(a) => report::emit(&route::run(&ctx, a).await?, json),
        Scenario::Fanout(a) => report::emit(&fanout::run(&ctx, a).await?, json),
        Scenario::Mixed(a) => report::emit(&mixed::run(&ctx, a).await?, json),
    }
}
