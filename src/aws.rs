//! One place that builds the AWS SDK configuration for every client wsctl creates, so the
//! region, profile and endpoint override (`--endpoint-url`, e.g. a local moto_server) apply
//! to all of them alike.

use crate::cli::Global;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::time::Duration;

/// Loads the SDK configuration: the stage's region unless `--region` overrides it, the
/// `--profile` if given, and `--endpoint-url`/`AWS_ENDPOINT_URL` for every service.
/// A stalled connection fails instead of hanging the command: 10 s to connect, 5 minutes
/// per attempt (room for a handler zip on a slow uplink).
pub async fn sdk_config(global: &Global, stage_region: Option<&str>) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(300))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(region) = global.region.as_deref().or(stage_region) {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(profile) = &global.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &global.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
