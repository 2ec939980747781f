//! `wsctl`: provision, ship, roll out and operate a real-time WebSocket API on AWS.

mod aws;
mod bench;
mod cli;
mod deploy;
mod gateway;
mod local;
mod ops;
mod output;
mod stage;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(output::EXIT_FAILURE);
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(output::EXIT_FAILURE)
        }
    }
}
