//! `wsctl`: provision, ship, roll out and operate a real-time WebSocket API on AWS.

mod aws;
mod bench;
mod builtin_stages;
mod cli;
mod deploy;
mod gateway;
mod init;
mod local;
mod logs;
mod manuals;
mod ops;
mod output;
mod smoke;
mod stage;
mod subscribe;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    output::exit_quietly_on_broken_pipe();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => return ExitCode::from(output::report_usage(&err, &args)),
    };
    let gateway_log = match &cli.command {
        cli::Command::Dev(dev) => Some(dev.state_dir.join(local::GATEWAY_LOG)),
        _ => None,
    };
    output::init_logging(cli.global.verbose, gateway_log);
    let format = cli.global.output;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let err = anyhow::Error::new(e).context("cannot start the async runtime");
            return ExitCode::from(output::report_failure(format, &err));
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(code) => code,
        Err(err) => ExitCode::from(output::report_failure(format, &err)),
    }
}
