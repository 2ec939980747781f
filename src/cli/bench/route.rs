//! The command line of what [`wsctl::bench::route`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::{Args, ValueEnum};

/// Which requests `route` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouteKind {
    /// `ping` → `pong`.
    Ping,
    /// `subscribe` → `subscribed` (cycling over a few rooms per connection).
    Subscribe,
    /// Alternately one, then the other.
    Both,
}

/// `wsctl bench route`
#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// Connections to hold and send on.
    #[arg(short = 'n', long, default_value_t = 200)]
    pub connections: usize,
    /// Requests per second over all connections (stay under the server's per-connection
    /// rate limit: 100/s by default).
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// How long to send, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Requests to send.
    #[arg(long, value_enum, default_value_t = RouteKind::Both)]
    pub kind: RouteKind,
    /// Rooms the subscribes spread over.
    #[arg(long, default_value_t = 64)]
    pub rooms: usize,
    /// Distinct rooms each connection subscribes to (cycled).
    #[arg(long, default_value_t = 4)]
    pub rooms_per_conn: usize,
    /// Connection attempts per second while opening.
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    /// After the last request, wait at most this long for replies, ms.
    #[arg(long, default_value_t = 3000)]
    pub drain_ms: u64,
}

impl From<RouteKind> for wsctl::bench::route::RouteKind {
    fn from(a: RouteKind) -> Self {
        match a {
            RouteKind::Ping => wsctl::bench::route::RouteKind::Ping,
            RouteKind::Subscribe => wsctl::bench::route::RouteKind::Subscribe,
            RouteKind::Both => wsctl::bench::route::RouteKind::Both,
        }
    }
}

impl From<RouteArgs> for wsctl::bench::route::RouteArgs {
    fn from(a: RouteArgs) -> Self {
        wsctl::bench::route::RouteArgs {
            connections: a.connections,
            rate: a.rate,
            duration_s: a.duration_s,
            kind: a.kind.into(),
            rooms: a.rooms,
            rooms_per_conn: a.rooms_per_conn,
            connect_rate: a.connect_rate,
            drain_ms: a.drain_ms,
        }
    }
}
