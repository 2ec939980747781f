//! Rendering the three embedded templates for a stage: the template text plus the
//! parameter values that carry the stage's settings into it.
//!
//! Stage values enter as CloudFormation parameters (and conditions on them). The few
//! things a parameter cannot express are structured edits of the YAML tree: per-stage
//! `DeletionPolicy`, Lambda versions and the API deployment named after a hash of what
//! they snapshot, tracing, the `alarms:` resources, and a Redis memory alarm per further
//! shard. The canary rollout is the template's own (condition `Canary`).

use super::alarms;
use super::cfn_yaml::{cfn_sub, references, CfnYamlError, Template};
use super::manifest::Manifest;
use super::xray;
use crate::contract::{self, FUNCTIONS, PROBE};
use crate::stage::{NetworkMode, RedisMode, RolloutStrategy, Stage};
use serde_norway::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The embedded templates.
pub const BOOTSTRAP_TEMPLATE: &str = include_str!("../../templates/bootstrap.yaml");
/// The data/network stack template.
pub const DATA_TEMPLATE: &str = include_str!("../../templates/data.yaml");
/// The app stack template.
pub const APP_TEMPLATE: &str = include_str!("../../templates/app.yaml");
/// The probe's resources, merged into the app stack when the stage sets `probe:`.
pub const PROBE_TEMPLATE: &str = include_str!("../../templates/probe.yaml");
/// The CI deploy role template (`wsctl ci-role`).
pub const CI_TEMPLATE: &str = include_str!("../../templates/ci.yaml");

/// CloudFormation refuses inline template bodies larger than this; bigger ones go via S3.
pub const INLINE_TEMPLATE_LIMIT: usize = 51_200;

/// Which of the three stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StackKind {
    /// Artifact bucket and API Gateway CloudWatch role (per account and region).
    Bootstrap,
    /// VPC, Redis, tables (per stage, long-lived).
    Data,
    /// Functions and API (per stage, routine deploys).
    App,
    /// The stage's CI deploy role (`wsctl ci-role`, never part of `deploy`).
    Ci,
}

impl StackKind {
    /// The stack's name for a stage.
    pub fn stack_name(self, stage: &Stage) -> String {
        match self {
            StackKind::Bootstrap => contract::BOOTSTRAP_STACK.to_owned(),
            StackKind::Data => contract::data_stack(stage),
            StackKind::App => contract::app_stack(stage),
            StackKind::Ci => contract::ci_stack(stage),
        }
    }

    /// Lower-case label.
    pub fn label(self) -> &'static str {
        match self {
            StackKind::Bootstrap => "bootstrap",
            StackKind::Data => "data",
            StackKind::App => "app",
            StackKind::Ci => "ci",
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
    /// The template `body` was written from: conditions and resources are read here,
    /// never by parsing `body` again.
    pub template: Template,
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

pub(super) fn tags(stage: &Stage) -> BTreeMap<String, String> {
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
        stack_name: contract::BOOTSTRAP_STACK.to_owned(),
        body: template.to_yaml()?,
        template,
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
    if r.cluster_enabled() {
        add_shard_memory_alarms(&mut template, r.shards)?;
    }
    if let Some(a) = &stage.alarms {
        alarms::add_data_alarms(&mut template, stage, a)?;
    }
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
    match parameter_group_family(&r.engine, &r.engine_version) {
        Some(family) => set("RedisParameterGroupFamily", family),
        // Only a created replication group uses the family; an existing Redis keeps the default.
        None if r.mode == RedisMode::Existing => {}
        None => {
            return Err(RenderError::Stage(format!(
                "stage '{}': redis.engine_version '{}' has no ElastiCache parameter group family wsctl knows for \
                 engine {}; use valkey 7.x or 8.x, or redis 4.0, 5.0, 6.x or 7.x",
                stage.name, r.engine_version, r.engine
            )))
        }
    }
    set("RedisMemoryAlarmPercent", r.memory_alarm_percent.to_string());
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
        template,
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
    set("FanoutSharded", (stage.limits.fanout_shards > 0).to_string());
    let canary = stage.rollout.strategy == RolloutStrategy::Canary;
    set("Canary", canary.to_string());
    if canary {
        // The canary section of app.yaml; a journey that fails during the bake rolls the
        // canary back too (docs/deploy.md).
        set("CanaryPercent", stage.rollout.canary_percent.to_string());
        set("CanaryBakeMinutes", stage.rollout.bake_minutes.to_string());
        set("CanaryErrorThreshold", stage.rollout.error_threshold.to_string());
        set("CanaryWatchesProbe", stage.probe.is_some().to_string());
    }
    set("ThrottleRate", stage.api.throttle_rate.to_string());
    set("ThrottleBurst", stage.api.throttle_burst.to_string());
    set(xray::MODE_PARAMETER, l.tracing.map(|m| m.lambda_name().to_owned()).unwrap_or_default());
    let domain = stage.api.domain.as_ref();
    set("DomainName", domain.map(|d| d.name.clone()).unwrap_or_default());
    set("DomainCertificateArn", domain.map(|d| d.certificate_arn.clone()).unwrap_or_default());
    set("DomainHostedZoneId", domain.and_then(|d| d.hosted_zone_id.clone()).unwrap_or_default());
    set("DomainBasePath", domain.and_then(|d| d.base_path.clone()).unwrap_or_default());
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
    if let Some(probe) = &stage.probe {
        template.merge(&Template::parse("probe.yaml", PROBE_TEMPLATE)?);
        set("ProbeBudgetJson", serde_json::to_string(&stage.smoke).map_err(RenderError::Limits)?);
        set("ProbeSloPercent", probe.slo_percent.to_string());
        set("ProbeWindowSeconds", (u64::from(probe.window_minutes) * 60).to_string());
        if let Some(manifest) = inputs.manifest {
            let artifact = manifest.functions.get(PROBE.name).ok_or_else(|| {
                RenderError::Stage(format!(
                    "stage '{}' sets `probe:`, but the manifest has no `probe` artifact (it was built by an older \
                     wsctl); rebuild with `wsctl build`",
                    stage.name
                ))
            })?;
            set("ProbeCodeKey", artifact.s3_key());
        }
    }

    if let Some(mode) = l.tracing {
        xray::add_tracing(&mut template, mode)?;
    }
    for f in FUNCTIONS {
        let hash = function_hash(&template, &format!("{}Function", f.logical), &p)?;
        let function = template.resource_mut(&format!("{}Function", f.logical))?;
        set_function_env(function, CONFIG_HASH_VARIABLE, &hash);
        template.rename_resource(&format!("{}Version", f.logical), &format!("{}Version{hash}", f.logical))?;
    }

    if let Some(a) = &stage.alarms {
        alarms::add_app_alarms(&mut template, stage, a)?;
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
        template,
        parameters: p,
        tags: tags(stage),
    })
}

/// Environment variable of every function holding [`function_hash`]: a function whose
/// Version is renamed always changes too, so Lambda has something new to publish.
pub const CONFIG_HASH_VARIABLE: &str = "WSCTL_CONFIG_HASH";

/// 12 hex digits of SHA-256 over one function's resource (its code key included) and the
/// values of exactly the parameters and conditions it refers to.
///
/// The function's Version is named after this hash: it changes if and only if the
/// function itself does. A hash over every parameter renamed all six Versions on a change
/// that touched none of them (`api.throttle_rate`), and CloudFormation then fails the
/// update: Lambda publishes nothing for an unchanged function ("A version for this Lambda
/// function exists").
pub fn function_hash(template: &Template, id: &str, params: &BTreeMap<String, String>) -> Result<String, RenderError> {
    let body = template.resource(id).ok_or_else(|| CfnYamlError::MissingResource(id.to_owned()))?;
    let refs = references(body);
    let conditions = template.evaluate_conditions(params);
    let mut h = Sha256::new();
    h.update(serde_norway::to_string(body).map_err(CfnYamlError::from)?.as_bytes());
    for name in &refs.names {
        if let Some(value) = params.get(name) {
            h.update(format!("\0param {name}={value}").as_bytes());
        }
    }
    for name in &refs.conditions {
        let value = conditions.get(name).copied().unwrap_or(true);
        h.update(format!("\0condition {name}={value}").as_bytes());
    }
    Ok(hex::encode(h.finalize())[..12].to_owned())
}

/// Sets one environment variable of a function resource.
fn set_function_env(function: &mut serde_norway::Mapping, name: &str, value: &str) {
    let properties = function.entry(Value::from("Properties")).or_insert_with(|| Value::Mapping(Default::default()));
    let Some(properties) = properties.as_mapping_mut() else { return };
    let environment =
        properties.entry(Value::from("Environment")).or_insert_with(|| Value::Mapping(Default::default()));
    let Some(environment) = environment.as_mapping_mut() else { return };
    let variables = environment.entry(Value::from("Variables")).or_insert_with(|| Value::Mapping(Default::default()));
    if let Some(variables) = variables.as_mapping_mut() {
        variables.insert(Value::from(name), Value::from(value));
    }
}

/// The ElastiCache parameter group family of an engine version (`valkey7`, `redis7`,
/// `redis6.x`, `redis5.0`), or `None` for a version wsctl does not know a family for.
pub fn parameter_group_family(engine: &str, version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let major = parts.next()?;
    let minor = parts.next();
    match (engine, major) {
        ("valkey", "7" | "8") => Some(format!("valkey{major}")),
        ("redis", "7") => Some("redis7".into()),
        ("redis", "6") => Some("redis6.x".into()),
        ("redis", "4" | "5") if minor == Some("0") => Some(format!("redis{major}.0")),
        _ => None,
    }
}

/// Cluster mode: copies the template's `RedisMemoryAlarm` (shard 1's first node) for the
/// first node of every further shard the group is created with (`<group>-000N-001`).
fn add_shard_memory_alarms(template: &mut Template, shards: u32) -> Result<(), RenderError> {
    let first = template
        .resource("RedisMemoryAlarm")
        .cloned()
        .ok_or_else(|| CfnYamlError::MissingResource("RedisMemoryAlarm".into()))?;
    for shard in 2..=shards {
        let mut alarm = first.clone();
        let dimension = cfn_sub(&format!("${{RedisReplicationGroup}}-{shard:04}-001"));
        alarm["Properties"]["Dimensions"][0]["Value"] = dimension;
        template.insert_resource(&format!("RedisMemoryAlarmShard{shard:04}"), alarm);
    }
    Ok(())
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
    fn parameter_group_families_follow_engine_and_version() {
        let family = |engine, version| parameter_group_family(engine, version);
        assert_eq!(family("valkey", "7.2").as_deref(), Some("valkey7"));
        assert_eq!(family("valkey", "8.0").as_deref(), Some("valkey8"));
        assert_eq!(family("redis", "7.1").as_deref(), Some("redis7"));
        assert_eq!(family("redis", "6.2").as_deref(), Some("redis6.x"));
        assert_eq!(family("redis", "6.0").as_deref(), Some("redis6.x"));
        assert_eq!(family("redis", "5.0.6").as_deref(), Some("redis5.0"));
        assert_eq!(family("redis", "4.0.10").as_deref(), Some("redis4.0"));
        assert_eq!(family("redis", "3.2.10"), None);
        assert_eq!(family("valkey", "6.2"), None);
        assert_eq!(family("valkey", "9"), None);
        assert_eq!(family("redis", ""), None);
    }

    #[test]
    fn a_created_redis_needs_a_known_family() {
        let stage = |redis: &str| Stage::parse(std::path::Path::new("stages/t.yaml"), "t", redis).unwrap();
        let err = render_data(&stage("redis:\n  engine: redis\n  engine_version: \"3.2\"\n")).unwrap_err().to_string();
        assert!(err.contains("redis.engine_version '3.2'") && err.contains("redis 4.0, 5.0, 6.x or 7.x"), "{err}");
        let existing = "redis:\n  mode: existing\n  url: redis://r:6379\n  engine: redis\n  engine_version: \"3.2\"\n";
        let rendered = render_data(&stage(existing)).unwrap();
        assert!(!rendered.parameters.contains_key("RedisParameterGroupFamily"), "the template's default stays");
    }

    #[test]
    fn every_family_is_allowed_by_the_data_template() {
        let t: Value = serde_norway::from_str(DATA_TEMPLATE).unwrap();
        let allowed = t["Parameters"]["RedisParameterGroupFamily"]["AllowedValues"].as_sequence().unwrap();
        for (engine, version) in [
            ("valkey", "7.2"),
            ("valkey", "8.0"),
            ("redis", "7.1"),
            ("redis", "6.2"),
            ("redis", "5.0.6"),
            ("redis", "4.0.10"),
        ] {
            let family = parameter_group_family(engine, version).unwrap();
            assert!(allowed.contains(&Value::from(family.as_str())), "{family} not in {allowed:?}");
        }
    }
}
