//! The handlers library's integration tests, one test binary; run one module with
//! `cargo test -p wsctl-handlers --test integration NAME::`.

mod admin_fixtures;
mod fixtures_parse;
mod handler_fixtures;
mod lambda_binaries;
mod lambda_rate_limits;
mod moto_sdk;
mod proptests;
mod races;
mod redis_auth_secret;
mod redis_cluster;
mod redis_cluster_tls;
mod store_bounds;
