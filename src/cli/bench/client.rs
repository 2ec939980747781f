//! The command line of what [`wsctl::bench::client`] runs: its clap arguments, with their help
//! texts, and their conversion into the library's plain options.

use clap::ValueEnum;

/// How the API key reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyVia {
    /// The `apiKey` query parameter.
    Query,
    /// The `x-api-key` header.
    Header,
}

impl From<KeyVia> for wsctl::bench::client::KeyVia {
    fn from(a: KeyVia) -> Self {
        match a {
            KeyVia::Query => wsctl::bench::client::KeyVia::Query,
            KeyVia::Header => wsctl::bench::client::KeyVia::Header,
        }
    }
}
