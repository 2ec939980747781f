//! The command line of what [`wsctl::bench::mixed`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::Args;

/// `wsctl bench mixed`
#[derive(Debug, Clone, Args)]
pub struct MixedArgs {
    /// Concurrent subscriber connections (slots; each is replaced when it closes).
    #[arg(short = 'n', long, default_value_t = 200)]
    pub connections: usize,
    /// How long the soak runs, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration_s: f64,
    /// Rooms the subscriptions and publishes spread over.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Rooms each connection subscribes to.
    #[arg(long, default_value_t = 4)]
    pub rooms_per_conn: usize,
    /// Connections closed and replaced per second, over all slots (0: no churn); each
    /// lifetime is drawn around connections ÷ this rate. Default 20 (without
    /// --lifetime-min-s/--lifetime-max-s).
    #[arg(long, conflicts_with_all = ["lifetime_min_s", "lifetime_max_s"])]
    pub churn_rate: Option<f64>,
    /// Shortest connection lifetime, seconds: lifetimes are drawn uniformly from
    /// [--lifetime-min-s, --lifetime-max-s] (the churn rate follows from them).
    #[arg(long, requires = "lifetime_max_s")]
    pub lifetime_min_s: Option<f64>,
    /// Longest connection lifetime, seconds.
    #[arg(long, requires = "lifetime_min_s")]
    pub lifetime_max_s: Option<f64>,
    /// After the last publish, connections still open stay this long (ms) before they
    /// close, so that the last publishes are due too.
    #[arg(long, default_value_t = 2000)]
    pub drain_ms: u64,
    /// Publishes per second, over all publishers.
    #[arg(long, default_value_t = 100.0)]
    pub publish_rate: f64,
    /// Publisher connections (default: one per 50 publishes/s, under the per-connection
    /// rate limit).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Connection attempts per second while ramping up.
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    /// Each connection pings this often, seconds (keep-alive; 0: never).
    #[arg(long, default_value_t = 30.0)]
    pub ping_s: f64,
    /// Sample the server's RSS this often, ms (with --server-pid).
    #[arg(long, default_value_t = 1000)]
    pub sample_ms: u64,
    /// Padding bytes added to each message's data.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
}

impl From<MixedArgs> for wsctl::bench::mixed::MixedArgs {
    fn from(a: MixedArgs) -> Self {
        wsctl::bench::mixed::MixedArgs {
            connections: a.connections,
            duration_s: a.duration_s,
            rooms: a.rooms,
            rooms_per_conn: a.rooms_per_conn,
            churn_rate: a.churn_rate,
            lifetime_min_s: a.lifetime_min_s,
            lifetime_max_s: a.lifetime_max_s,
            drain_ms: a.drain_ms,
            publish_rate: a.publish_rate,
            publishers: a.publishers,
            connect_rate: a.connect_rate,
            ping_s: a.ping_s,
            sample_ms: a.sample_ms,
            payload_bytes: a.payload_bytes,
        }
    }
}
