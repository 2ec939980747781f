//! The command line of what [`wsctl::deploy::render`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::ValueEnum;

/// Which of the three stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StackKind {
    /// Artifact bucket and API Gateway CloudWatch role (per account and region).
    Bootstrap,
    /// VPC, Redis, tables (per stage, long-lived).
    Data,
    /// Functions and API (per stage, routine deploys).
    App,
    /// The stage's CI deploy role (`ci:`; created by `wsctl ci-role`).
    Ci,
}

impl From<StackKind> for wsctl::deploy::render::StackKind {
    fn from(a: StackKind) -> Self {
        match a {
            StackKind::Bootstrap => wsctl::deploy::render::StackKind::Bootstrap,
            StackKind::Data => wsctl::deploy::render::StackKind::Data,
            StackKind::App => wsctl::deploy::render::StackKind::App,
            StackKind::Ci => wsctl::deploy::render::StackKind::Ci,
        }
    }
}
