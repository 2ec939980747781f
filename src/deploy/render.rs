//! Rendering the three embedded templates for a stage: the template text plus the
//! parameter values that carry the stage's settings into it.
//!
//! Stage values enter as CloudFormation parameters (and conditions on them). The few
//! things a parameter cannot express are structured edits of the YAML tree: per-stage
//! `DeletionPolicy`, hash-named Lambda versions and API deployment, and the canary
//! resources.

use super::canary;
use super::cfn_yaml::{hex, CfnYamlError, Template};
use super::functions::FUNCTIONS;
use super::manifest::Manifest;
use crate::stage::{NetworkMode, RedisMode, RolloutStrategy, Stage};
use serde_yaml::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The embedded templates.
pub const BOOTSTRAP_TEMPLATE: &str = include_str!("../../templates/bootstrap.yaml");
/// The data/network stack template.
pub const DATA_TEMPLATE: &str = include_str!("../../templates/data.yaml");
/// The app stack template.
pub const APP_TEMPLATE: &str = include_str!("../../templates/app.yaml");

/// Name of the per-account/region bootstrap stack.
pub const BOOTSTRAP_STACK: &str = "wsctl-bootstrap";

/// CloudFormation refuses inline template bodies larger than this; bigger ones go via S3.
pub const INLINE_TEMPLATE_LIMIT: usize = 51_200;

/// Which of the three stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StackKind {
    /// Artifact bucket and API Gateway CloudWatch role (per account and region).
    Bootstrap,
    /// VPC, Redis, tables (per stage, long-lived).
    Data,
    /// Functions and API (per stage, routine deploys).
    App,
}

impl StackKind {
    /// The stack's name for a stage.
    pub fn stack_name(self, stage: &Stage) -> String {
        match self {
            StackKind::Bootstrap => BOOTSTRAP_STACK.to_owned(),
            StackKind::Data => format!("{}-data", stage.stack_prefix()),
            StackKind::App => format!("{}-app", stage.stack_prefix()),
        }
    }

    /// Lower-case label.
    pub fn label(self) -> &'static str {
        match self {
            StackKind::Bootstrap => "bootstrap",
            StackKind::Data => "data",
            StackKind::App => "app",
        }
    }
}

/// A rendered stack: what to hand to CloudFormation.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Which stack.
    pub kind: StackKind,
    /// CloudFormation stack name.
    pub stack_name: String,
    /// Template YAML.
    pub body: String,
    /// Parameter values, by name.
    pub parameters: BTreeMap<String, String>,
    /// Stack tags.
    pub tags: BTreeMap<String, String>,
}

/// How the app stack reaches the data stack's resources (read from the deployed data
/// stack, or from the stage when they are not the stage's own).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DataWiring {
    /// Connections table name.
    pub connections_table: String,
    /// API-keys table name.
    pub api_keys_table: String,
    /// Private subnets of the VPC functions.
    pub subnet_ids: Vec<String>,
    /// Security group of the VPC functions.
    pub lambda_security_group: String,
    /// Redis `host:port`.
    pub redis_endpoint: String,
    /// Redis speaks TLS.
    pub redis_tls: bool,
    /// Redis runs in cluster mode.
    pub redis_cluster: bool,
    /// Secrets Manager ARN of the Redis AUTH token, if any.
    pub redis_auth_secret_arn: Option<String>,
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template tree could not be edited.
    #[error(transparent)]
    Yaml(#[from] CfnYamlError),
    /// The stage's limits could not be serialized.
    #[error("cannot serialize the stage's limits: {0}")]
    Limits(serde_json::Error),
    /// The stage lacks something this stack needs.
    #[error("{0}")]
    Stage(String),
}

fn tags(stage: &Stage) -> BTreeMap<String, String> {
    let mut tags = stage.tags.clone();
    tags.insert("wsctl:stage".into(), stage.name.clone());
    tags
}

fn flag(b: bool) -> String {
    b.to_string()
}

/// The bootstrap stack (no parameters).
pub fn render_bootstrap() -> Result<Rendered, RenderError> {
    let template = Template::parse("bootstrap.yaml", BOOTSTRAP_TEMPLATE)?;
    Ok(Rendered {
        kind: StackKind::Bootstrap,
        stack_name: BOOTSTRAP_STACK.to_owned(),
        body: template.to_yaml()?,
        parameters: BTreeMap::new(),
        tags: BTreeMap::from([("wsctl:bootstrap".to_owned(), "true".to_owned())]),
    })
}

/// The data/network stack of a stage.
pub fn render_data(stage: &Stage) -> Result<Rendered, RenderError> {
    let mut template = Template::parse("data.yaml", DATA_TEMPLATE)?;
    let retain = stage.retain_data();
    for table in ["ConnectionsTable", "ApiKeysTable"] {
        let policy = if retain { "Retain" } else { "Delete" };
        template.set_attribute(table, "DeletionPolicy", Value::from(policy))?;
    }
    let redis_policy = if retain { "Snapshot" } else { "Delete" };
    template.set_attribute("RedisReplicationGroup", "DeletionPolicy", Value::from(redis_policy))?;

    let n = &stage.network;
    let r = &stage.redis;
    let create_vpc = n.mode == NetworkMode::Create;
    let cidrs = if create_vpc {
        carve_subnets(&n.cidr)
            .ok_or_else(|| RenderError::Stage(format!("network.cidr '{}' cannot be split into four subnets", n.cidr)))?
    } else {
        // Unused without a created VPC, but CloudFormation still wants four values.
        vec!["10.0.0.0/24".into(); 4]
    };
    let mut p = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    set("StageName", stage.name.clone());
    set("CreateVpc", flag(create_vpc));
    set("VpcCidr", n.cidr.clone());
    set("SubnetCidrs", cidrs.join(","));
    set("NatPerAz", flag(n.nat_per_az));
    set("ExistingVpcId", n.vpc_id.clone().unwrap_or_default());
    set("ExistingSubnetIds", n.subnet_ids.join(","));
    set("ExistingLambdaSecurityGroupId", n.security_group_id.clone().unwrap_or_default());
    set("CreateRedis", flag(r.mode == RedisMode::Create));
    set("RedisEngine", r.engine.clone());
    set("RedisEngineVersion", r.engine_version.clone());
    set("RedisNodeType", r.node_type.clone());
    set("RedisClusterMode", flag(r.cluster_enabled()));
    set("RedisClusterParameterGroup", cluster_parameter_group(&r.engine, &r.engine_version));
    set("RedisShards", r.shards.to_string());
    set("RedisReplicasPerShard", r.replicas_per_shard.to_string());
    set("RedisNodeCount", (r.replicas_per_shard + 1).to_string());
    set("RedisTls", flag(r.tls));
    set("RedisAuthToken", flag(r.auth_token));
    set("RedisSnapshotRetentionDays", r.snapshot_retention_days.to_string());
    set("PointInTimeRecovery", flag(stage.tables.point_in_time_recovery));
    Ok(Rendered {
        kind: StackKind::Data,
        stack_name: StackKind::Data.stack_name(stage),
        body: template.to_yaml()?,
        parameters: p,
        tags: tags(stage),
    })
}

/// Inputs of the app stack that come from outside the stage file.
#[derive(Debug, Clone, Default)]
pub struct AppInputs<'a> {
    /// The data stack's resources; `None` renders the template alone (`wsctl template`).
    pub wiring: Option<&'a DataWiring>,
    /// The artifact bucket.
    pub artifact_bucket: Option<&'a str>,
    /// The artifacts to deploy.
    pub manifest: Option<&'a Manifest>,
}

/// The app stack of a stage.
pub fn render_app(stage: &Stage, inputs: &AppInputs<'_>) -> Result<Rendered, RenderError> {
    let mut template = Template::parse("app.yaml", APP_TEMPLATE)?;
    let l = &stage.lambda;
    let limits_json = serde_json::to_string(&stage.limits).map_err(RenderError::Limits)?;
    let mut p = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    set("StageName", stage.name.clone());
    set("ApiStageName", stage.api.stage_name.clone());
    set("Architecture", l.architecture.lambda_name().to_owned());
    set("MemorySize", l.memory_mb.to_string());
    set("Timeout", l.timeout_secs.to_string());
    set("LogRetentionDays", l.log_retention_days.to_string());
    set("RustLog", l.log_level.clone());
    set("LimitsJson", limits_json);
    set("ThrottleRate", stage.api.throttle_rate.to_string());
    set("ThrottleBurst", stage.api.throttle_burst.to_string());
    if let Some(w) = inputs.wiring {
        set("ConnectionsTableName", w.connections_table.clone());
        set("ApiKeysTableName", w.api_keys_table.clone());
        set("SubnetIds", w.subnet_ids.join(","));
        set("LambdaSecurityGroupId", w.lambda_security_group.clone());
        set("RedisEndpoint", w.redis_endpoint.clone());
        set("RedisTls", flag(w.redis_tls));
        set("RedisCluster", flag(w.redis_cluster));
        set("RedisAuthSecretArn", w.redis_auth_secret_arn.clone().unwrap_or_default());
    }
    if let Some(bucket) = inputs.artifact_bucket {
        set("ArtifactBucket", bucket.to_owned());
    }
    if let Some(manifest) = inputs.manifest {
        if manifest.architecture != l.architecture.lambda_name() {
            return Err(RenderError::Stage(format!(
                "the manifest was built for {} but stage '{}' runs lambda.architecture {}; rebuild with `wsctl build --arch {}`",
                manifest.architecture,
                stage.name,
                l.architecture.lambda_name(),
                l.architecture.lambda_name()
            )));
        }
        for f in FUNCTIONS {
            if let Some(a) = manifest.functions.get(f.name) {
                set(&format!("{}CodeKey", f.logical), a.s3_key());
            }
        }
    }

    // Configuration every version depends on: all parameters except the code keys.
    let config: Vec<(&String, &String)> = p.iter().filter(|(k, _)| !k.ends_with("CodeKey")).collect();
    let config_json = serde_json::to_string(&config).map_err(RenderError::Limits)?;
    for f in FUNCTIONS {
        let code = p.get(&format!("{}CodeKey", f.logical)).cloned().unwrap_or_default();
        let function_body = template
            .resource(&format!("{}Function", f.logical))
            .map(serde_yaml::to_string)
            .transpose()
            .map_err(CfnYamlError::from)?
            .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(code.as_bytes());
        h.update(config_json.as_bytes());
        h.update(function_body.as_bytes());
        let id = format!("{}Version{}", f.logical, &hex(&h.finalize())[..12]);
        template.rename_resource(&format!("{}Version", f.logical), &id)?;
    }

    if stage.rollout.strategy == RolloutStrategy::Canary {
        canary::add_canary(&mut template, &stage.rollout)?;
    }

    // The API deployment is named after a hash of everything it snapshots, so a change to
    // routes, integrations or the authorizer always creates (and points the stage at) a
    // fresh deployment.
    let mut api_ids = Vec::new();
    for ty in [
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Authorizer",
        "AWS::ApiGatewayV2::Integration",
        "AWS::ApiGatewayV2::Route",
        "AWS::ApiGatewayV2::RouteResponse",
    ] {
        api_ids.extend(template.ids_of_type(ty));
    }
    let api_hash = template.hash_resources(&api_ids)?;
    template.rename_resource("Deployment", &format!("Deployment{}", &api_hash[..12]))?;

    Ok(Rendered {
        kind: StackKind::App,
        stack_name: StackKind::App.stack_name(stage),
        body: template.to_yaml()?,
        parameters: p,
        tags: tags(stage),
    })
}

/// The default ElastiCache parameter group with cluster mode on for an engine version.
pub fn cluster_parameter_group(engine: &str, version: &str) -> String {
    let major = version.split('.').next().unwrap_or(version);
    if engine == "redis" && major == "6" {
        "default.redis6.x.cluster.on".into()
    } else {
        format!("default.{engine}{major}.cluster.on")
    }
}

/// Splits an IPv4 CIDR into four equal subnets (two public, two private).
pub fn carve_subnets(cidr: &str) -> Option<Vec<String>> {
    let (ip, bits) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if bits > 26 {
        return None;
    }
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    let base = u32::from(ip) & mask;
    let size = 1u32 << (32 - bits - 2);
    Some((0..4).map(|i| format!("{}/{}", std::net::Ipv4Addr::from(base + i * size), bits + 2)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_four_quarters() {
        assert_eq!(
            carve_subnets("10.40.0.0/16").unwrap(),
            vec!["10.40.0.0/18", "10.40.64.0/18", "10.40.128.0/18", "10.40.192.0/18"]
        );
        assert_eq!(carve_subnets("10.1.2.0/24").unwrap()[3], "10.1.2.192/26");
    }

    #[test]
    fn parameter_groups_follow_the_engine_family() {
        assert_eq!(cluster_parameter_group("valkey", "7.2"), "default.valkey7.cluster.on");
        assert_eq!(cluster_parameter_group("redis", "6.2"), "default.redis6.x.cluster.on");
        assert_eq!(cluster_parameter_group("redis", "7.1"), "default.redis7.cluster.on");
    }
}
