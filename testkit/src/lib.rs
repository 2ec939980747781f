//! Test harness for wsctl (dev-dependency only, never published).
//!
//! Tests use real components, each started by the test itself on a free loopback port:
//!
//! - [`RedisServer`]: Debian's `redis-server` (`apt-get install -y redis-server`);
//! - [`RedisCluster`]: a Redis Cluster of such servers (N masters, R replicas each), formed
//!   with `redis-cli --cluster create`, whose masters a test can kill to force a failover;
//! - [`MotoServer`]: `moto_server` from PyPI `moto[server]` for the AWS APIs;
//! - [`TempDir`], [`wait_for`], [`free_port`] and a small [`http_request`] client;
//! - [`apigw_fixture`]: the API Gateway–shaped events of `tests/fixtures/apigw/`.
//!
//! Every service is killed when its handle drops. It is also spawned with
//! `PR_SET_PDEATHSIG` from a process-lifetime thread, so it dies with the test binary
//! even if the handle is never dropped (kept in a `static`) or the binary is killed.
//!
//! ```no_run
//! use wsctl_testkit::{MotoServer, RedisServer};
//!
//! let redis = RedisServer::start().expect("redis-server");
//! let moto = MotoServer::start().expect("moto_server");
//! let status = std::process::Command::new("wsctl")
//!     .args(["dev", "--redis-url", &redis.url(), "--dynamodb-endpoint", &moto.endpoint()])
//!     .envs(moto.aws_env())
//!     .status();
//! ```
//!
//! Environment overrides: `WSCTL_REDIS_SERVER`, `WSCTL_REDIS_CLI`, `WSCTL_MOTO_SERVER` and
//! `WSCTL_PYTHON3` name the programs to run instead of looking them up on `PATH`.

#![warn(missing_docs)]

mod error;
mod fixtures;
mod http;
mod moto;
mod process;
mod redis;
mod redis_cluster;
mod tempdir;
mod wait;

pub use error::TestkitError;
pub use fixtures::{apigw_fixture, apigw_fixture_with_key, apigw_fixtures_dir, KEY_PLACEHOLDER};
pub use http::{http_request, HttpResponse};
pub use moto::MotoServer;
pub use process::keep_coverage_profile;
pub use redis::{RedisServer, RespValue};
pub use redis_cluster::{
    AnnouncedEndpoint, ClusterNodeView, ClusterTls, ClusterTlsFiles, RedisCluster, NODE_TIMEOUT_MS, SLOTS,
};
pub use tempdir::TempDir;
pub use wait::{free_port, wait_for, PollOutcome};
