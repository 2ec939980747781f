//! The command line of what [`wsctl::stage`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::ValueEnum;

/// CPU architecture of the Lambda functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    /// AWS Graviton (cheaper, the default).
    #[value(name = "arm64")]
    Arm64,
    /// Intel/AMD.
    #[value(name = "x86_64")]
    X86_64,
}

impl From<Arch> for wsctl::stage::Arch {
    fn from(a: Arch) -> Self {
        match a {
            Arch::Arm64 => wsctl::stage::Arch::Arm64,
            Arch::X86_64 => wsctl::stage::Arch::X86_64,
        }
    }
}
