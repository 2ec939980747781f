//! `wsctl` as a library: everything the command line runs, with no command-line types (no
//! clap: each command takes plain option structs).
//! The binary (`main.rs` and `cli.rs`) parses the arguments, turns the global options into
//! an [`aws::AwsTarget`] and a [`ui::Ui`], calls one command here, and maps its
//! [`exit::Outcome`] to the process's exit code.

pub mod aws;
pub mod bench;
pub mod builtin_stages;
pub mod contract;
pub mod deploy;
pub mod exit;
pub mod gateway;
pub mod init;
pub mod local;
pub mod logs;
pub mod ops;
pub mod output;
pub mod smoke;
pub mod stage;
pub mod subscribe;
pub mod ui;
