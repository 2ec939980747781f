//! The command line of what [`wsctl::gateway::http`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::Args;

/// `wsctl dev` options that make `@connections` answer like API Gateway seen from a Lambda
/// in a VPC (all off by default: the endpoint answers at once and never throttles).
#[derive(Debug, Clone, Default, Args)]
pub struct ManagementEmulationArgs {
    /// Added latency of every `@connections` call, ms (20 is typical from a VPC Lambda through NAT).
    #[arg(long, default_value_t = 0)]
    pub management_latency_ms: u64,
    /// Uniform jitter around the latency, ms: each call waits latency ± jitter.
    #[arg(long, default_value_t = 0, requires = "management_latency_ms")]
    pub management_jitter_ms: u64,
    /// `@connections` requests per second before 429 `LimitExceededException` (token bucket;
    /// API Gateway's account default is 10000). 0: no limit.
    #[arg(long, default_value_t = 0)]
    pub management_rate_limit: u32,
    /// Bucket size of --management-rate-limit (default: half the rate, as API Gateway's 10,000/5,000).
    #[arg(long, requires = "management_rate_limit")]
    pub management_burst: Option<u32>,
}

impl From<ManagementEmulationArgs> for wsctl::gateway::http::ManagementEmulationArgs {
    fn from(a: ManagementEmulationArgs) -> Self {
        wsctl::gateway::http::ManagementEmulationArgs {
            management_latency_ms: a.management_latency_ms,
            management_jitter_ms: a.management_jitter_ms,
            management_rate_limit: a.management_rate_limit,
            management_burst: a.management_burst,
        }
    }
}
