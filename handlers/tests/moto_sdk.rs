//! The SDK configuration the handlers' tests reach moto with (region, endpoint, dummy
//! credentials), in one place.

use wsctl_testkit::MotoServer;

/// Every SDK client built from this talks to `moto`.
pub async fn moto_sdk(moto: &MotoServer) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}
