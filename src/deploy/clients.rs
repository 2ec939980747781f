//! The AWS clients of the deploy commands, all built from one SDK configuration (so
//! `--endpoint-url`, `--region` and `--profile` apply to every one), and the account guard.

use super::stacks::sdk_error;
use crate::aws::AwsTarget;
use anyhow::{bail, Context};

/// Every client the deployer uses.
pub struct Clients {
    /// CloudFormation.
    pub cfn: aws_sdk_cloudformation::Client,
    /// S3 (artifacts, large templates).
    pub s3: aws_sdk_s3::Client,
    /// STS (account guard).
    pub sts: aws_sdk_sts::Client,
    /// ElastiCache (Redis endpoint and status).
    pub elasticache: aws_sdk_elasticache::Client,
    /// Lambda (versions, aliases).
    pub lambda: aws_sdk_lambda::Client,
    /// API Gateway v2 (routes).
    pub apigw: aws_sdk_apigatewayv2::Client,
    /// CloudWatch Logs (API Gateway's execution-log group, at destroy).
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// The region in use.
    pub region: String,
    /// The shared-config profile in use, if any.
    pub profile: Option<String>,
    /// The SDK configuration every client was built from (for the signed Query API calls:
    /// EC2 in `destroy`, CloudWatch in `status`; see [`super::query_api`]).
    pub sdk: aws_types::SdkConfig,
}

impl Clients {
    /// Builds the clients for a stage's region (`--region` may only repeat it).
    pub async fn new(aws: &AwsTarget, stage: &str, stage_region: &str) -> anyhow::Result<Clients> {
        let config = crate::aws::sdk_config(aws, stage, Some(stage_region)).await?;
        let region = config.region().map(|r| r.as_ref().to_owned()).unwrap_or_else(|| stage_region.to_owned());
        // moto and other local endpoints serve S3 on a path, not on bucket subdomains.
        let s3_config = aws_sdk_s3::config::Builder::from(&config).force_path_style(aws.endpoint_url.is_some()).build();
        Ok(Clients {
            cfn: aws_sdk_cloudformation::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sts: aws_sdk_sts::Client::new(&config),
            elasticache: aws_sdk_elasticache::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            apigw: aws_sdk_apigatewayv2::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            region,
            profile: aws.profile.clone(),
            sdk: config,
        })
    }

    /// The caller's account and where the command acts; an error when the account is not
    /// `expected`. Prints the target line on stderr before anything is changed.
    pub async fn guard_account(&self, expected: &str, stage: &str) -> anyhow::Result<crate::aws::TargetLine> {
        let me = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(sdk_error)
            .context("asking STS which account these credentials belong to")?;
        let account = me.account().unwrap_or_default().to_owned();
        if account != expected {
            bail!(
                "refusing to touch stage '{stage}': the credentials belong to account {account} ({}), \
                 but stages/{stage}.yaml says `account: \"{expected}\"`; switch profile (--profile) or fix the stage file",
                me.arn().unwrap_or("unknown identity")
            );
        }
        let target = crate::aws::TargetLine {
            stage: stage.to_owned(),
            account,
            region: self.region.clone(),
            profile: self.profile.clone(),
            caller: me.arn().map(str::to_owned),
        };
        target.announce();
        Ok(target)
    }
}
