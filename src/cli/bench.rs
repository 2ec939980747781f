//! The command line of what [`wsctl::bench`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

pub mod client;
pub mod connect;
pub mod fanout;
pub mod mixed;
pub mod route;

use crate::cli::bench::client::KeyVia;
use crate::cli::bench::connect::ConnectArgs;
use crate::cli::bench::fanout::FanoutArgs;
use crate::cli::bench::mixed::MixedArgs;
use crate::cli::bench::route::RouteArgs;
use clap::{Args, Subcommand};

/// `wsctl bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

/// Options of every scenario (accepted before or after the scenario name).
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// WebSocket URL of the stage: ws://127.0.0.1:8080/local, or a deployed stage's wss:// URL.
    #[arg(long, global = true, env = "WSCTL_BENCH_URL")]
    url: Option<String>,
    /// API key; fanout and mixed also publish with it unless --publish-key is given.
    #[arg(long, global = true, env = "WSCTL_BENCH_KEY", hide_env_values = true)]
    key: Option<String>,
    /// API key with the publish scope, for the publisher connections.
    #[arg(long, global = true, hide_env_values = true)]
    publish_key: Option<String>,
    /// WebSocket URL for the publisher connections (default: --url): another gateway
    /// process on the same Redis, so every delivery crosses processes.
    #[arg(long, global = true)]
    publish_url: Option<String>,
    /// Send the key as the apiKey query parameter or the x-api-key header.
    #[arg(long, global = true, value_enum, default_value_t = KeyVia::Query)]
    key_via: KeyVia,
    /// PID of the server when it runs on this host: its RSS (and CPU) is sampled from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Spread connections over this many 127.0.0.x source addresses (0: one per 25,000
    /// connections).
    #[arg(long, global = true, default_value_t = 0)]
    sources: u32,
    /// WebSocket read buffer per connection, bytes (tungstenite zero-fills it on every
    /// read, so small is fast; frames here are a few hundred bytes).
    #[arg(long, global = true, default_value_t = 2048)]
    read_buf: usize,
    /// Tokio worker threads of the bench (1 leaves the most CPU to a local server).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Deadline for one connection's TCP connect + upgrade (+ first subscribe), ms.
    #[arg(long, global = true, default_value_t = 10_000)]
    connect_timeout_ms: u64,
    /// Connection attempts in flight at once.
    #[arg(long, global = true, default_value_t = 512)]
    max_inflight: usize,
    /// Hard bound on the whole run, seconds; what is done by then is reported.
    #[arg(long, global = true, default_value_t = 600)]
    max_seconds: u64,
    /// Before measuring, warm the server up: this many connections subscribe to a side
    /// room, receive 5 messages and close (0: none).
    #[arg(long, global = true, default_value_t = 0)]
    warmup: usize,
    /// Free-text label copied into the report.
    #[arg(long, global = true)]
    label: Option<String>,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Open N connections at R/s and hold them: connect latency, failures by cause, server
    /// RSS per held connection (with --server-pid).
    Connect(ConnectArgs),
    /// Request/reply round trips (ping, subscribe) on M held connections at a target rate.
    Route(RouteArgs),
    /// S subscribers in one room, P messages published over a separate connection:
    /// publish→last delivery, deliveries/s, per-subscriber delivery accounting.
    Fanout(FanoutArgs),
    /// A soak: connection churn (lifetimes from a range), subscriptions over many rooms,
    /// publishes, for a duration; per-subscriber delivery accounting, server RSS over time.
    Mixed(MixedArgs),
}

impl From<BenchArgs> for wsctl::bench::BenchArgs {
    fn from(a: BenchArgs) -> Self {
        wsctl::bench::BenchArgs { common: a.common.into(), scenario: a.scenario.into() }
    }
}

impl From<Common> for wsctl::bench::Common {
    fn from(a: Common) -> Self {
        wsctl::bench::Common {
            url: a.url,
            key: a.key,
            publish_key: a.publish_key,
            publish_url: a.publish_url,
            key_via: a.key_via.into(),
            server_pid: a.server_pid,
            sources: a.sources,
            read_buf: a.read_buf,
            threads: a.threads,
            connect_timeout_ms: a.connect_timeout_ms,
            max_inflight: a.max_inflight,
            max_seconds: a.max_seconds,
            warmup: a.warmup,
            label: a.label,
            quiet: a.quiet,
        }
    }
}

impl From<Scenario> for wsctl::bench::Scenario {
    fn from(a: Scenario) -> Self {
        match a {
            Scenario::Connect(x) => wsctl::bench::Scenario::Connect(x.into()),
            Scenario::Route(x) => wsctl::bench::Scenario::Route(x.into()),
            Scenario::Fanout(x) => wsctl::bench::Scenario::Fanout(x.into()),
            Scenario::Mixed(x) => wsctl::bench::Scenario::Mixed(x.into()),
        }
    }
}
