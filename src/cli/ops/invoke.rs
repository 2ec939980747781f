//! The command line of what [`wsctl::ops::invoke`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use crate::cli::ops::target::TargetArgs;
use clap::Args;

/// `wsctl invoke`
#[derive(Debug, Args)]
pub struct InvokeArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// authorizer, connect, disconnect, message, publish or admin.
    function: String,
    /// The event: JSON, @FILE, or - to read stdin (default: {}).
    #[arg(allow_hyphen_values = true)]
    event: Option<String>,
}

impl From<InvokeArgs> for wsctl::ops::invoke::InvokeArgs {
    fn from(a: InvokeArgs) -> Self {
        wsctl::ops::invoke::InvokeArgs { target: a.target.into(), function: a.function, event: a.event }
    }
}
