//! Stage files: `stages/NAME.yaml`, one per stage (local, dev, staging, prod).
//!
//! Parsed strictly: unknown keys and bad values are errors that name the file, the key and
//! what is allowed. Every section except `limits` is only needed by stages that deploy to
//! AWS; `wsctl dev` reads `limits` alone (see `stages/local.yaml`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wsctl_handlers::limits::Limits;

// The production sections (issue 14). `#[path]` keeps the file beside this one for both
// the CLI and the stage_file fuzz target, which compiles this file with `#[path]` too.
#[path = "stage_production.rs"]
mod production;
pub use production::{AlarmSettings, CiSettings, DomainSettings, GitHubSettings, GITHUB_OIDC_HOST};

/// A parsed, validated stage file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Stage name; must match the file name.
    #[serde(skip)]
    pub name: String,
    /// AWS region of the stage (unused by `local`).
    #[serde(default)]
    pub region: Option<String>,
    /// The 12-digit AWS account the stage lives in; `deploy` refuses any other account.
    #[serde(default)]
    pub account: Option<String>,
    /// Prefix of the stage's stacks (`NAME-data`, `NAME-app`); defaults to `wsctl-STAGE`.
    #[serde(default)]
    pub stack_name: Option<String>,
    /// A protected stage keeps its tables and Redis on delete, and `destroy` needs `--force`.
    #[serde(default)]
    pub protected: bool,
    /// Lambda settings shared by the six functions.
    #[serde(default)]
    pub lambda: LambdaSettings,
    /// The Redis (ElastiCache) replication group.
    #[serde(default)]
    pub redis: RedisSettings,
    /// Where the Lambdas and Redis live.
    #[serde(default)]
    pub network: NetworkSettings,
    /// DynamoDB table settings.
    #[serde(default)]
    pub tables: TableSettings,
    /// API Gateway stage settings.
    #[serde(default)]
    pub api: ApiSettings,
    /// How new handler versions reach traffic.
    #[serde(default)]
    pub rollout: RolloutSettings,
    /// CloudWatch alarms (optionally to SNS) and a dashboard for the stage.
    #[serde(default)]
    pub alarms: Option<AlarmSettings>,
    /// A deploy role for CI (GitHub Actions through OIDC), created by `wsctl ci-role`.
    #[serde(default)]
    pub ci: Option<CiSettings>,
    /// Tags put on both stacks (and so on every resource that supports tags).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Per-connection and node limits (the connection record's TTL is
    /// `max_lifetime_secs + record_ttl_margin_secs`).
    #[serde(default)]
    pub limits: Limits,
    /// Latency budgets of `wsctl smoke` (connect, route, delivery; ms).
    #[serde(default)]
    pub smoke: wsctl_handlers::smoke::Budget,
    /// The opt-in probe: the smoke journey every minute, and an availability alarm.
    #[serde(default)]
    pub probe: Option<ProbeSettings>,
}

/// `probe:`: a seventh function runs the `wsctl smoke` journey against the stage's public
/// URL every minute; an alarm compares the share of passing runs with the SLO.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSettings {
    /// Availability target, percent of runs that pass, above 0 and at most 100.
    pub slo_percent: f64,
    /// The alarm's window in minutes, 5..=1440 (60 runs an hour: on a 60-minute window one
    /// failed run is 98.3%).
    pub window_minutes: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings { slo_percent: 99.9, window_minutes: 60 }
    }
}

/// CPU architecture of the Lambda functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// AWS Graviton (cheaper, the default).
    #[default]
    #[serde(rename = "arm64")]
    Arm64,
    /// Intel/AMD.
    #[serde(rename = "x86_64")]
    X86_64,
}

impl Arch {
    /// The name Lambda uses (`arm64`, `x86_64`).
    pub fn lambda_name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The Rust target triple for `provided.al2023`.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }
}

/// Lambda settings shared by the six functions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaSettings {
    /// `arm64` (default) or `x86_64`.
    pub architecture: Arch,
    /// Memory in MB, 128..=10240.
    pub memory_mb: u32,
    /// Timeout in seconds, 1..=900 (API Gateway waits at most 29 s for a route).
    pub timeout_secs: u32,
    /// Days CloudWatch keeps the functions' and the API's logs (a CloudWatch-allowed value).
    pub log_retention_days: u32,
    /// `RUST_LOG` of the functions.
    pub log_level: String,
    /// Published versions each function keeps after a deploy (for rollback), besides the
    /// ones in use; older ones are deleted (they count against the code-storage quota).
    pub keep_versions: u32,
    /// AWS X-Ray tracing of the functions (`active` or `passthrough`); off when absent.
    pub tracing: Option<TracingMode>,
}

/// Lambda's X-Ray tracing mode (`TracingConfig.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TracingMode {
    /// Lambda samples requests and traces them itself (X-Ray's default sampling rule:
    /// the first request each second and 5% of the rest), and the function may add segments.
    Active,
    /// Only requests that arrive with a sampled trace header are traced.
    #[serde(rename = "passthrough")]
    PassThrough,
}

impl TracingMode {
    /// The value of `TracingConfig.Mode` (`Active`, `PassThrough`).
    pub fn lambda_name(self) -> &'static str {
        match self {
            TracingMode::Active => "Active",
            TracingMode::PassThrough => "PassThrough",
        }
    }
}

impl Default for LambdaSettings {
    fn default() -> Self {
        Self {
            architecture: Arch::Arm64,
            memory_mb: 256,
            timeout_secs: 10,
            log_retention_days: 14,
            log_level: "info".into(),
            keep_versions: 10,
            tracing: None,
        }
    }
}

/// Whether the data stack creates the Redis replication group or uses one given by URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    /// An ElastiCache replication group in the stage's private subnets.
    #[default]
    Create,
    /// A Redis the stage does not own, reached at `redis.url`.
    Existing,
}

/// The Redis (ElastiCache) replication group.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `create` (default) or `existing`.
    pub mode: RedisMode,
    /// `redis` or `valkey`.
    pub engine: String,
    /// Engine version, e.g. `7.1`.
    pub engine_version: String,
    /// ElastiCache node type, e.g. `cache.t4g.small`.
    pub node_type: String,
    /// Shards (node groups); more than 1 turns cluster mode on.
    pub shards: u32,
    /// Replicas per shard (0..=5); at least 1 enables Multi-AZ automatic failover.
    pub replicas_per_shard: u32,
    /// Force cluster mode on even with one shard (so shards can be added online later).
    pub cluster_mode: bool,
    /// TLS in transit (the URL becomes `rediss://`).
    pub tls: bool,
    /// Require an AUTH token (generated into Secrets Manager; needs `tls`).
    pub auth_token: bool,
    /// Days of daily snapshots kept (0 disables).
    pub snapshot_retention_days: u32,
    /// Percent of `maxmemory` (1..=100) at which the data stack's memory alarm fires.
    pub memory_alarm_percent: u32,
    /// `redis://` or `rediss://` URL of an existing Redis (only with `mode: existing`).
    pub url: Option<String>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            mode: RedisMode::Create,
            engine: "valkey".into(),
            engine_version: "7.2".into(),
            node_type: "cache.t4g.micro".into(),
            shards: 1,
            replicas_per_shard: 0,
            cluster_mode: false,
            tls: true,
            auth_token: false,
            snapshot_retention_days: 0,
            memory_alarm_percent: 80,
            url: None,
        }
    }
}

impl RedisSettings {
    /// Cluster mode is on with more than one shard or when asked for.
    pub fn cluster_enabled(&self) -> bool {
        self.cluster_mode || self.shards > 1
    }
}

/// Whether the data stack creates a VPC or uses the given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// A VPC with two private subnets, NAT egress and a DynamoDB gateway endpoint.
    #[default]
    Create,
    /// Existing VPC, private subnets and Lambda security group (egress is the owner's job).
    Existing,
}

/// Where the Lambdas and Redis live.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSettings {
    /// `create` (default) or `existing`.
    pub mode: NetworkMode,
    /// CIDR of the created VPC (a /16../24 block).
    pub cidr: String,
    /// One NAT gateway per AZ (true, for HA) or a single shared one (false, cheaper).
    pub nat_per_az: bool,
    /// Existing VPC id (`mode: existing`).
    pub vpc_id: Option<String>,
    /// Existing private subnet ids, at least two in different AZs (`mode: existing`).
    pub subnet_ids: Vec<String>,
    /// Existing security group for the Lambdas (`mode: existing`).
    pub security_group_id: Option<String>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            mode: NetworkMode::Create,
            cidr: "10.40.0.0/16".into(),
            nat_per_az: false,
            vpc_id: None,
            subnet_ids: Vec::new(),
            security_group_id: None,
        }
    }
}

/// DynamoDB table settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableSettings {
    /// Point-in-time recovery on both tables.
    pub point_in_time_recovery: bool,
    /// Keep the tables (and the Redis snapshot) when the stack is deleted; defaults to `protected`.
    pub retain: Option<bool>,
}

impl Default for TableSettings {
    fn default() -> Self {
        Self { point_in_time_recovery: true, retain: None }
    }
}

/// API Gateway stage settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// API Gateway stage name (part of every URL).
    pub stage_name: String,
    /// Steady-state requests per second across all routes of the stage.
    pub throttle_rate: f64,
    /// Burst of requests above the rate.
    pub throttle_burst: u32,
    /// A custom domain name in front of the stage (none: only the execute-api URL).
    pub domain: Option<DomainSettings>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self { stage_name: "live".into(), throttle_rate: 1000.0, throttle_burst: 500, domain: None }
    }
}

/// How a new version of the handlers reaches the `live` alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStrategy {
    /// The alias moves to the new version in one step.
    #[default]
    AllAtOnce,
    /// CodeDeploy shifts `canary_percent` of traffic, bakes, then completes or rolls back
    /// on the error alarm.
    Canary,
}

/// Rollout settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSettings {
    /// `all_at_once` (default) or `canary`.
    pub strategy: RolloutStrategy,
    /// Share of traffic the new version gets during the bake, 1..=50.
    pub canary_percent: u32,
    /// Minutes the canary bakes before the rest of the traffic moves, 1..=60.
    pub bake_minutes: u32,
    /// Function errors during the bake that trigger an automatic rollback.
    pub error_threshold: u32,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        Self { strategy: RolloutStrategy::AllAtOnce, canary_percent: 10, bake_minutes: 5, error_threshold: 1 }
    }
}

/// Why a stage file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The file does not exist.
    #[error("stage '{name}' not found: no file {path} ({hint})")]
    NotFound { name: String, path: PathBuf, hint: String },
    /// The file could not be read.
    #[error("cannot read stage file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The YAML is malformed or has unknown/mistyped keys.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Longest stack-name prefix: function names (`PREFIX-app-disconnect`) must fit Lambda's 64.
pub const MAX_STACK_PREFIX: usize = 40;

/// Log retention values CloudWatch Logs accepts.
pub const LOG_RETENTION_DAYS: [u32; 22] =
    [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

impl Stage {
    /// Loads and validates `dir/NAME.yaml`.
    pub fn load(dir: &Path, name: &str) -> Result<Stage, StageError> {
        let path = dir.join(format!("{name}.yaml"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // `wsctl dev` works in any directory: `local` has a built-in default.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "local" => {
                return Self::parse(Path::new("<built-in local stage>"), name, crate::builtin_stages::local());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let available = available_stages(dir);
                let hint = if available.is_empty() {
                    format!(
                        "no stage files in {}: run `wsctl init` to write local, dev, staging and prod there, \
                         or point --stages-dir at yours",
                        dir.display()
                    )
                } else {
                    format!("create it, or pick one of: {}", available.join(", "))
                };
                return Err(StageError::NotFound { name: name.to_owned(), hint, path });
            }
            Err(source) => return Err(StageError::Io { path, source }),
        };
        let stage = Self::parse(&path, name, &text)?;
        if let Some(domain) = &stage.api.domain {
            // One name maps to one API stage: a second stage claiming it would fail to
            // deploy ("already exists") or, across accounts, fight over the DNS record.
            if let Some(other) = production::domain_claimed_elsewhere(dir, &path, &domain.name) {
                return Err(StageError::Invalid {
                    message: format!(
                        "api.domain.name: '{}' is also claimed by {}; a domain name can front one stage only: \
                         give each stage its own (e.g. {}.{})",
                        domain.name,
                        other.display(),
                        name,
                        domain.name
                    ),
                    path,
                });
            }
        }
        Ok(stage)
    }

    /// Parses stage YAML; `path` is only used in error messages.
    pub fn parse(path: &Path, name: &str, text: &str) -> Result<Stage, StageError> {
        let invalid = |message: String| StageError::Invalid { path: path.to_owned(), message };
        let mut stage: Stage = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
        stage.name = name.to_owned();
        stage.limits.validate().map_err(|(key, why)| invalid(format!("limits.{key}: {why}")))?;
        stage.smoke.validate().map_err(|(key, why)| invalid(format!("smoke.{key}: {why}")))?;
        stage.validate().map_err(|(key, why)| invalid(format!("{key}: {why}")))?;
        Ok(stage)
    }

    /// Prefix of this stage's stack names.
    pub fn stack_prefix(&self) -> String {
        self.stack_name.clone().unwrap_or_else(|| format!("wsctl-{}", self.name))
    }

    /// Whether tables and the Redis snapshot survive a stack delete.
    pub fn retain_data(&self) -> bool {
        self.tables.retain.unwrap_or(self.protected)
    }

    /// The region, or an error saying which key to add.
    pub fn require_region(&self) -> Result<&str, String> {
        self.region.as_deref().ok_or_else(|| {
            format!("stage '{}' has no `region:` key; add e.g. `region: eu-west-1` to deploy it", self.name)
        })
    }

    /// The expected account id, or an error saying which key to add.
    pub fn require_account(&self) -> Result<&str, String> {
        self.account.as_deref().ok_or_else(|| {
            format!(
                "stage '{}' has no `account:` key; add the 12-digit AWS account id (quoted) so \
                 deploys cannot reach another account",
                self.name
            )
        })
    }

    /// Checks every value; returns the dotted key of the first bad one and what is allowed.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, why: String| Err((key.to_owned(), why));
        if let Some(region) = &self.region {
            let ok = region.split('-').count() >= 3
                && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return bad("region", format!("'{region}' is not an AWS region name (e.g. eu-west-1)"));
            }
        }
        if let Some(account) = &self.account {
            if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
                return bad("account", format!("'{account}' must be a 12-digit account id, quoted"));
            }
        }
        let stack = self.stack_prefix();
        let ok = !stack.is_empty()
            && stack.len() <= MAX_STACK_PREFIX
            && stack.starts_with(|c: char| c.is_ascii_alphabetic())
            && stack.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            let what =
                if self.stack_name.is_some() { "" } else { " (the default, from the stage name; set `stack_name:`)" };
            return bad(
                "stack_name",
                format!(
                    "'{stack}'{what} must start with a letter and hold only letters, digits and '-' (at most {MAX_STACK_PREFIX})"
                ),
            );
        }
        let l = &self.lambda;
        if !(128..=10240).contains(&l.memory_mb) {
            return bad("lambda.memory_mb", format!("{} must be within 128..=10240", l.memory_mb));
        }
        if !(1..=900).contains(&l.timeout_secs) {
            return bad("lambda.timeout_secs", format!("{} must be within 1..=900", l.timeout_secs));
        }
        if self.limits.fanout_shards > 0 && l.timeout_secs > 30 {
            return bad(
                "lambda.timeout_secs",
                format!(
                    "{} is over 30 with limits.fanout_shards set: the fan-out queue's visibility timeout (180 s) \
                     must be at least 6x the function timeout; lower the timeout or set fanout_shards to 0",
                    l.timeout_secs
                ),
            );
        }
        if !LOG_RETENTION_DAYS.contains(&l.log_retention_days) {
            return bad(
                "lambda.log_retention_days",
                format!("{} is not a CloudWatch retention; use one of {LOG_RETENTION_DAYS:?}", l.log_retention_days),
            );
        }
        if !(1..=1000).contains(&l.keep_versions) {
            return bad("lambda.keep_versions", format!("{} must be within 1..=1000", l.keep_versions));
        }
        if l.log_level.trim().is_empty() {
            return bad("lambda.log_level", "must be a RUST_LOG filter such as `info`".into());
        }
        let r = &self.redis;
        if !matches!(r.engine.as_str(), "redis" | "valkey") {
            return bad("redis.engine", format!("'{}' must be `redis` or `valkey`", r.engine));
        }
        if !r.node_type.starts_with("cache.") {
            return bad(
                "redis.node_type",
                format!("'{}' must be an ElastiCache node type such as cache.t4g.small", r.node_type),
            );
        }
        if !(1..=500).contains(&r.shards) {
            return bad("redis.shards", format!("{} must be within 1..=500", r.shards));
        }
        if r.replicas_per_shard > 5 {
            return bad("redis.replicas_per_shard", format!("{} must be within 0..=5", r.replicas_per_shard));
        }
        if r.auth_token && !r.tls {
            return bad("redis.auth_token", "needs `redis.tls: true` (ElastiCache sends AUTH only over TLS)".into());
        }
        if r.snapshot_retention_days > 35 {
            return bad(
                "redis.snapshot_retention_days",
                format!("{} must be within 0..=35", r.snapshot_retention_days),
            );
        }
        if !(1..=100).contains(&r.memory_alarm_percent) {
            return bad(
                "redis.memory_alarm_percent",
                format!(
                    "{} must be within 1..=100 (percent of the node's maxmemory at which the memory alarm fires; \
                     remove the key for the default, 80)",
                    r.memory_alarm_percent
                ),
            );
        }
        match (r.mode, &r.url) {
            (RedisMode::Existing, None) => {
                return bad(
                    "redis.url",
                    "is required with `redis.mode: existing` (redis://host:6379 or rediss://…)".into(),
                )
            }
            (RedisMode::Existing, Some(url)) if !(url.starts_with("redis://") || url.starts_with("rediss://")) => {
                return bad("redis.url", format!("'{url}' must start with redis:// or rediss://"))
            }
            (RedisMode::Create, Some(_)) => {
                return bad(
                    "redis.url",
                    "is only allowed with `redis.mode: existing`; remove it or set the mode".into(),
                )
            }
            _ => {}
        }
        let n = &self.network;
        match n.mode {
            NetworkMode::Create => {
                if !valid_cidr(&n.cidr) {
                    return bad("network.cidr", format!("'{}' must be an IPv4 CIDR from /16 to /24", n.cidr));
                }
                if n.vpc_id.is_some() || !n.subnet_ids.is_empty() || n.security_group_id.is_some() {
                    return bad(
                        "network.mode",
                        "is `create` but vpc_id/subnet_ids/security_group_id are set; use `mode: existing` or remove them".into(),
                    );
                }
            }
            NetworkMode::Existing => {
                if !n.vpc_id.as_deref().is_some_and(|v| v.starts_with("vpc-")) {
                    return bad("network.vpc_id", "is required with `network.mode: existing` (vpc-…)".into());
                }
                if n.subnet_ids.len() < 2 || !n.subnet_ids.iter().all(|s| s.starts_with("subnet-")) {
                    return bad(
                        "network.subnet_ids",
                        "needs at least two private subnet ids (subnet-…) in different AZs".into(),
                    );
                }
                if !n.security_group_id.as_deref().is_some_and(|v| v.starts_with("sg-")) {
                    return bad("network.security_group_id", "is required with `network.mode: existing` (sg-…)".into());
                }
            }
        }
        let a = &self.api;
        let stage_ok = !a.stage_name.is_empty()
            && a.stage_name.len() <= 128
            && a.stage_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !stage_ok || a.stage_name.starts_with('$') {
            return bad("api.stage_name", format!("'{}' must be 1..128 letters, digits, '-' or '_'", a.stage_name));
        }
        if !a.throttle_rate.is_finite() || a.throttle_rate <= 0.0 {
            return bad("api.throttle_rate", "must be a finite number greater than 0".into());
        }
        if a.throttle_burst == 0 {
            return bad("api.throttle_burst", "must be greater than 0".into());
        }
        if let Some(domain) = &a.domain {
            domain.validate(self.region.as_deref())?;
        }
        if let Some(ci) = &self.ci {
            ci.validate(self.account.as_deref())?;
        }
        if let Some(alarms) = &self.alarms {
            alarms.validate(self.region.as_deref(), self.account.as_deref())?;
        }
        let ro = &self.rollout;
        if !(1..=50).contains(&ro.canary_percent) {
            return bad("rollout.canary_percent", format!("{} must be within 1..=50", ro.canary_percent));
        }
        if !(1..=60).contains(&ro.bake_minutes) {
            return bad("rollout.bake_minutes", format!("{} must be within 1..=60", ro.bake_minutes));
        }
        if ro.error_threshold == 0 {
            return bad("rollout.error_threshold", "must be at least 1".into());
        }
        if let Some(p) = &self.probe {
            if !(p.slo_percent > 0.0 && p.slo_percent <= 100.0) {
                return bad(
                    "probe.slo_percent",
                    format!("{} must be above 0 and at most 100 (e.g. 99.9)", p.slo_percent),
                );
            }
            if !(5..=1440).contains(&p.window_minutes) {
                return bad(
                    "probe.window_minutes",
                    format!("{} must be within 5..=1440 (the alarm's window, minutes)", p.window_minutes),
                );
            }
        }
        if self.tags.len() > 40 {
            return bad("tags", "at most 40 tags (CloudFormation propagates at most 50; wsctl adds its own)".into());
        }
        for (k, v) in &self.tags {
            if k.is_empty() || k.len() > 128 || k.starts_with("aws:") {
                return bad(&format!("tags.{k}"), "keys must be 1..128 characters and not start with `aws:`".into());
            }
            if v.len() > 256 {
                return bad(&format!("tags.{k}"), "values must be at most 256 characters".into());
            }
        }
        Ok(())
    }
}

fn valid_cidr(cidr: &str) -> bool {
    let Some((ip, bits)) = cidr.split_once('/') else { return false };
    let Ok(bits) = bits.parse::<u8>() else { return false };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && (16..=24).contains(&bits)
}

/// Names of the stage files present in `dir`, sorted.
pub fn available_stages(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "yaml").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Stage, StageError> {
        Stage::parse(Path::new("stages/t.yaml"), "t", text)
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse("lambda:\n  memroy_mb: 3\n").unwrap_err().to_string();
        assert!(err.contains("stages/t.yaml"), "{err}");
        assert!(err.contains("memroy_mb"), "{err}");
        assert!(err.contains("memory_mb"), "{err}");
    }

    #[test]
    fn bad_value_names_key_and_allowed_values() {
        let err = parse("lambda:\n  log_retention_days: 10\n").unwrap_err().to_string();
        assert!(err.contains("lambda.log_retention_days"), "{err}");
        assert!(err.contains("14"), "{err}");
        let err = parse("lambda:\n  keep_versions: 0\n").unwrap_err().to_string();
        assert!(err.contains("lambda.keep_versions") && err.contains("1..=1000"), "{err}");
        let err = parse("account: 12\n").unwrap_err().to_string();
        assert!(err.contains("account"), "{err}");
        let err = parse("redis:\n  mode: existing\n").unwrap_err().to_string();
        assert!(err.contains("redis.url"), "{err}");
    }

    #[test]
    fn memory_alarm_percent_is_a_percentage() {
        for bad in ["0", "101"] {
            let err = parse(&format!("redis:\n  memory_alarm_percent: {bad}\n")).unwrap_err().to_string();
            assert!(err.contains("stages/t.yaml"), "{err}");
            assert!(err.contains("redis.memory_alarm_percent") && err.contains("1..=100"), "{err}");
        }
        assert_eq!(parse("redis:\n  memory_alarm_percent: 100\n").unwrap().redis.memory_alarm_percent, 100);
        assert_eq!(parse("limits: {}\n").unwrap().redis.memory_alarm_percent, 80);
    }

    #[test]
    fn minimal_local_stage_parses() {
        let s = parse("limits:\n  idle_timeout_secs: 600\n").unwrap();
        assert_eq!(s.stack_prefix(), "wsctl-t");
        assert!(s.require_account().is_err());
    }
}
