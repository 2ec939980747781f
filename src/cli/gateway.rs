//! The command line of what [`wsctl::gateway`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

pub mod http;

use crate::cli::gateway::http::ManagementEmulationArgs;
use clap::Args;
use std::path::PathBuf;

/// `wsctl dev`
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Stage file whose limits apply.
    #[arg(long, default_value = "local")]
    pub stage: String,
    /// Address to listen on (anything but loopback needs --allow-remote).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Allow a non-loopback --host: @connections and /metrics have no authentication.
    #[arg(long)]
    pub allow_remote: bool,
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Keep rooms in this Redis (`redis://` or `rediss://`) instead of in memory.
    #[arg(long, env = "WSCTL_REDIS_URL")]
    pub redis_url: Option<String>,
    /// The Redis is in cluster mode.
    #[arg(long, requires = "redis_url")]
    pub redis_cluster: bool,
    /// Keep connection records and API keys in DynamoDB at this endpoint (e.g. moto_server).
    #[arg(long)]
    pub dynamodb_endpoint: Option<String>,
    /// Table names used with --dynamodb-endpoint (created if missing).
    #[arg(long, default_value = "wsctl-local-connections")]
    pub connections_table: String,
    /// API-keys table used with --dynamodb-endpoint (created if missing).
    #[arg(long, default_value = "wsctl-local-api-keys")]
    pub api_keys_table: String,
    /// Directory for the dev key, key records and the admin token.
    #[arg(long, env = "WSCTL_STATE_DIR", default_value = ".wsctl")]
    pub state_dir: PathBuf,
    /// WebSocket read buffer per connection, in bytes (small keeps memory per connection low:
    /// 2,048 holds 19,000 connections at 7.6 KiB each, 4,096 at 9.6; BENCHMARKS.md).
    #[arg(long, default_value_t = 2048)]
    pub read_buffer: usize,
    /// Latency and throttling of the `@connections` endpoint (AWS-like; off by default).
    #[command(flatten)]
    pub management: ManagementEmulationArgs,
}

impl From<DevArgs> for wsctl::gateway::DevArgs {
    fn from(a: DevArgs) -> Self {
        wsctl::gateway::DevArgs {
            stage: a.stage,
            host: a.host,
            allow_remote: a.allow_remote,
            port: a.port,
            redis_url: a.redis_url,
            redis_cluster: a.redis_cluster,
            dynamodb_endpoint: a.dynamodb_endpoint,
            connections_table: a.connections_table,
            api_keys_table: a.api_keys_table,
            state_dir: a.state_dir,
            read_buffer: a.read_buffer,
            management: a.management.into(),
        }
    }
}
