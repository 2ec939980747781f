//! The command line of what [`wsctl::ops::target`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::Args;
use std::path::PathBuf;

/// Which stage a command acts on.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Stage: `local` (the running `wsctl dev`) or a deployed stage (stages/NAME.yaml).
    #[arg(long, env = "WSCTL_STAGE", default_value = "local")]
    pub stage: String,
    /// State directory of the local gateway (`--stage local`).
    #[arg(long, env = "WSCTL_STATE_DIR", default_value = ".wsctl")]
    pub state_dir: PathBuf,
    /// Overrides of the deployed stage's stack outputs.
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Names normally read from a deployed stage's app stack outputs. When every name a
/// command needs is given, wsctl does not call CloudFormation at all.
#[derive(Debug, Clone, Default, Args)]
pub struct Overrides {
    /// Connections table (default: app stack output ConnectionsTableName).
    #[arg(long, env = "WSCTL_CONNECTIONS_TABLE", help_heading = "Deployed-stage overrides")]
    pub connections_table: Option<String>,
    /// API-keys table (default: app stack output ApiKeysTableName).
    #[arg(long, env = "WSCTL_API_KEYS_TABLE", help_heading = "Deployed-stage overrides")]
    pub api_keys_table: Option<String>,
    /// Management API endpoint, https://{api}.execute-api.{region}.amazonaws.com/{stage}
    /// (default: app stack output ManagementEndpoint).
    #[arg(long, env = "WSCTL_MANAGEMENT_ENDPOINT", help_heading = "Deployed-stage overrides")]
    pub management_endpoint: Option<String>,
    /// `admin` Lambda function, invoked through its `live` alias (default: app stack output AdminFunctionName).
    #[arg(long, env = "WSCTL_ADMIN_FUNCTION", help_heading = "Deployed-stage overrides")]
    pub admin_function: Option<String>,
    /// `publish` Lambda function, invoked through its `live` alias (default: app stack output PublishFunctionName).
    #[arg(long, env = "WSCTL_PUBLISH_FUNCTION", help_heading = "Deployed-stage overrides")]
    pub publish_function: Option<String>,
    /// WebSocket URL, wss://… (default: app stack output WebSocketUrl).
    #[arg(long, env = "WSCTL_WEBSOCKET_URL", help_heading = "Deployed-stage overrides")]
    pub websocket_url: Option<String>,
}

impl From<TargetArgs> for wsctl::ops::target::TargetArgs {
    fn from(a: TargetArgs) -> Self {
        wsctl::ops::target::TargetArgs { stage: a.stage, state_dir: a.state_dir, overrides: a.overrides.into() }
    }
}

impl From<Overrides> for wsctl::ops::target::Overrides {
    fn from(a: Overrides) -> Self {
        wsctl::ops::target::Overrides {
            connections_table: a.connections_table,
            api_keys_table: a.api_keys_table,
            management_endpoint: a.management_endpoint,
            admin_function: a.admin_function,
            publish_function: a.publish_function,
            websocket_url: a.websocket_url,
        }
    }
}
