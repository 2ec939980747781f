//! The command line of what [`wsctl::bench::connect`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::Args;

/// `wsctl bench connect`
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Connections to open.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub connections: usize,
    /// Connection attempts per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Hold every connection this long after the last attempt (then sample the server's
    /// RSS and close them), ms.
    #[arg(long, default_value_t = 2000)]
    pub hold_ms: u64,
    /// Also subscribe each connection to one room (latency then includes the reply).
    #[arg(long)]
    pub subscribe: bool,
}

impl From<ConnectArgs> for wsctl::bench::connect::ConnectArgs {
    fn from(a: ConnectArgs) -> Self {
        wsctl::bench::connect::ConnectArgs {
            connections: a.connections,
            rate: a.rate,
            hold_ms: a.hold_ms,
            subscribe: a.subscribe,
        }
    }
}
