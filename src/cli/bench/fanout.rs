//! The command line of what [`wsctl::bench::fanout`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::Args;

/// `wsctl bench fanout`
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Subscribers (connections) in the room.
    #[arg(short = 's', long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages to publish.
    #[arg(short = 'm', long, default_value_t = 20)]
    pub messages: usize,
    /// Interval between publishes, ms.
    #[arg(long, default_value_t = 200)]
    pub interval_ms: u64,
    /// Subscriber connection attempts per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Room (default: bench:fanout:<run id>, fresh for every run).
    #[arg(long)]
    pub room: Option<String>,
    /// Padding bytes added to each message's data.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Pause between the last subscribe and the first publish, ms.
    #[arg(long, default_value_t = 500)]
    pub settle_ms: u64,
    /// After the last publish, wait at most this long for outstanding deliveries, ms.
    #[arg(long, default_value_t = 5000)]
    pub drain_ms: u64,
    /// Publish by running this shell command once per message instead of over a
    /// WebSocket, e.g. `wsctl --output json publish --stage local --room {room} '{data}'`;
    /// {room} and {data} (the message's JSON data, without single quotes) are substituted.
    /// The command must print a JSON object with the message's `seq` (what the delivery
    /// accounting checks against). Delivery latency then includes the command's start-up.
    #[arg(long)]
    pub publish_cmd: Option<String>,
    /// Bound on one --publish-cmd run, ms.
    #[arg(long, default_value_t = 10_000)]
    pub cmd_timeout_ms: u64,
}

impl From<FanoutArgs> for wsctl::bench::fanout::FanoutArgs {
    fn from(a: FanoutArgs) -> Self {
        wsctl::bench::fanout::FanoutArgs {
            subscribers: a.subscribers,
            messages: a.messages,
            interval_ms: a.interval_ms,
            connect_rate: a.connect_rate,
            room: a.room,
            payload_bytes: a.payload_bytes,
            settle_ms: a.settle_ms,
            drain_ms: a.drain_ms,
            publish_cmd: a.publish_cmd,
            cmd_timeout_ms: a.cmd_timeout_ms,
        }
    }
}
