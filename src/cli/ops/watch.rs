//! The command line of what [`wsctl::ops::watch`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::Args;

/// Options of listings that can be watched.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Refresh the listing every --interval seconds until Ctrl-C (redrawn in place on a terminal).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0, requires = "watch")]
    pub interval: f64,
    /// Stop after this many refreshes (default: until Ctrl-C).
    #[arg(long, requires = "watch")]
    pub iterations: Option<u64>,
}

impl From<WatchArgs> for wsctl::ops::watch::WatchArgs {
    fn from(a: WatchArgs) -> Self {
        wsctl::ops::watch::WatchArgs { watch: a.watch, interval: a.interval, iterations: a.iterations }
    }
}
