//! The command line of what [`wsctl::init`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::Args;

/// `wsctl init`
#[derive(Debug, Args)]
pub struct InitArgs {}

impl From<InitArgs> for wsctl::init::InitArgs {
    fn from(_: InitArgs) -> Self {
        wsctl::init::InitArgs {}
    }
}
