//! Reads what the app stack needs from the deployed data stack: table names, subnets and
//! security group (physical ids of its resources) and the Redis endpoint (from ElastiCache,
//! or from the stage when Redis is not the stage's own).

use super::render::{DataWiring, StackKind};
use super::stacks::{sdk_error, stack_resources, ResourceInfo};
use crate::contract::data_resource;
use crate::stage::{NetworkMode, RedisMode, Stage};
use anyhow::{bail, Context};
use std::collections::BTreeMap;

fn physical(resources: &BTreeMap<String, ResourceInfo>, id: &str, stack: &str) -> anyhow::Result<String> {
    resources
        .get(id)
        .and_then(|r| r.physical_id.clone())
        .with_context(|| format!("stack {stack} has no resource {id}; deploy the data stack first (`wsctl deploy`)"))
}

/// Splits `redis://host:port` into (`host:port`, tls).
pub fn parse_redis_url(url: &str) -> anyhow::Result<(String, bool)> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("rediss://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("redis://") {
        (false, rest)
    } else {
        bail!("redis.url '{url}' must start with redis:// or rediss://");
    };
    let host_port = rest.rsplit('@').next().unwrap_or(rest).split('/').next().unwrap_or(rest);
    if host_port.is_empty() {
        bail!("redis.url '{url}' has no host");
    }
    let endpoint = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:6379") };
    Ok((endpoint, tls))
}

/// Resolves the wiring of a deployed data stack.
pub async fn resolve(
    cfn: &aws_sdk_cloudformation::Client,
    elasticache: &aws_sdk_elasticache::Client,
    stage: &Stage,
) -> anyhow::Result<DataWiring> {
    let stack = StackKind::Data.stack_name(stage);
    let resources = stack_resources(cfn, &stack).await?;
    let (subnet_ids, lambda_security_group) = match stage.network.mode {
        NetworkMode::Create => (
            vec![
                physical(&resources, data_resource::PRIVATE_SUBNET_A, &stack)?,
                physical(&resources, data_resource::PRIVATE_SUBNET_B, &stack)?,
            ],
            physical(&resources, data_resource::LAMBDA_SECURITY_GROUP, &stack)?,
        ),
        NetworkMode::Existing => {
            (stage.network.subnet_ids.clone(), stage.network.security_group_id.clone().unwrap_or_default())
        }
    };
    let (redis_endpoint, redis_tls, redis_auth_secret_arn) = match stage.redis.mode {
        RedisMode::Existing => {
            let url = stage.redis.url.as_deref().unwrap_or_default();
            let (endpoint, tls) = parse_redis_url(url)?;
            (endpoint, tls, None)
        }
        RedisMode::Create => {
            let group = physical(&resources, data_resource::REDIS_REPLICATION_GROUP, &stack)?;
            let endpoint = redis_endpoint(elasticache, &group).await?;
            let secret = if stage.redis.auth_token {
                Some(physical(&resources, data_resource::REDIS_AUTH_SECRET, &stack)?)
            } else {
                None
            };
            (endpoint, stage.redis.tls, secret)
        }
    };
    Ok(DataWiring {
        connections_table: physical(&resources, data_resource::CONNECTIONS_TABLE, &stack)?,
        api_keys_table: physical(&resources, data_resource::API_KEYS_TABLE, &stack)?,
        subnet_ids,
        lambda_security_group,
        redis_endpoint,
        redis_tls,
        redis_cluster: stage.redis.cluster_enabled(),
        redis_auth_secret_arn,
    })
}

/// `host:port` of a replication group: the configuration endpoint in cluster mode, the
/// primary endpoint otherwise.
pub async fn redis_endpoint(elasticache: &aws_sdk_elasticache::Client, group: &str) -> anyhow::Result<String> {
    let out = elasticache
        .describe_replication_groups()
        .replication_group_id(group)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("describing ElastiCache replication group {group}"))?;
    let rg =
        out.replication_groups().first().with_context(|| format!("ElastiCache has no replication group {group}"))?;
    let endpoint = rg
        .configuration_endpoint()
        .or_else(|| rg.node_groups().first().and_then(|ng| ng.primary_endpoint()))
        .with_context(|| format!("replication group {group} has no endpoint yet (status {:?})", rg.status()))?;
    Ok(format!("{}:{}", endpoint.address().unwrap_or_default(), endpoint.port().unwrap_or(6379)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_split_into_endpoint_and_tls() {
        assert_eq!(parse_redis_url("rediss://h.example:6380").unwrap(), ("h.example:6380".into(), true));
        assert_eq!(parse_redis_url("redis://h").unwrap(), ("h:6379".into(), false));
        assert_eq!(parse_redis_url("redis://:pw@h:1/0").unwrap(), ("h:1".into(), false));
        assert!(parse_redis_url("http://h").is_err());
    }
}
