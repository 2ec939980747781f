//! The production sections of a stage file (issue 14): `api.domain` (a custom domain in
//! front of the WebSocket API) and `ci` (a deploy role for GitHub Actions), kept out of
//! `stage.rs` so each section is read and validated in one place. Compiled as part of `stage.rs` (`#[path]`), also by the
//! `stage_file` fuzz target: std, serde and serde_norway only.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A dotted key and what is wrong with its value (as `Stage::validate` reports it).
pub type Invalid = (String, String);

fn bad<T>(key: &str, why: String) -> Result<T, Invalid> {
    Err((key.to_owned(), why))
}

/// `api.domain`: a regional custom domain name in front of the stage's API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSettings {
    /// The host name clients connect to, e.g. `ws.example.com` (lower case).
    pub name: String,
    /// ACM certificate covering `name`, in the stage's own region (a REGIONAL endpoint
    /// cannot use a us-east-1 certificate meant for CloudFront).
    pub certificate_arn: String,
    /// Route 53 hosted zone to create the alias records (A and AAAA) in; without it, point
    /// your DNS at the `DomainTarget` output yourself.
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    /// The hosted zone's name (e.g. `example.com`), so that `name` can be checked to lie in
    /// it before anything is deployed.
    #[serde(default)]
    pub hosted_zone_name: Option<String>,
    /// Path segment the stage is mapped under (`wss://name/base_path`); none maps it at the
    /// root.
    #[serde(default)]
    pub base_path: Option<String>,
}

/// A lower-case DNS name of at least two labels (no wildcard, no trailing dot).
fn valid_host(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// The region of an ACM certificate ARN (`arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID`).
pub fn certificate_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [arn_, partition, service, region, account, resource] = parts.as_slice() else { return None };
    let ok = *arn_ == "arn"
        && partition.starts_with("aws")
        && *service == "acm"
        && !region.is_empty()
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && resource.strip_prefix("certificate/").is_some_and(|id| !id.is_empty());
    ok.then_some(*region)
}

impl DomainSettings {
    /// The URL clients connect to through the domain: `wss://name[/base_path]`.
    pub fn websocket_url(&self) -> String {
        match &self.base_path {
            Some(path) => format!("wss://{}/{path}", self.name),
            None => format!("wss://{}", self.name),
        }
    }

    /// Checks the section on its own; `region` is the stage's `region:`.
    pub fn validate(&self, region: Option<&str>) -> Result<(), Invalid> {
        if !valid_host(&self.name) {
            return bad(
                "api.domain.name",
                format!(
                    "'{}' must be a lower-case DNS name of at least two labels, e.g. ws.example.com \
                     (no wildcard, no trailing dot)",
                    self.name
                ),
            );
        }
        let Some(cert_region) = certificate_region(&self.certificate_arn) else {
            return bad(
                "api.domain.certificate_arn",
                format!(
                    "'{}' is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)",
                    self.certificate_arn
                ),
            );
        };
        let Some(region) = region else {
            return bad("api.domain", "needs the stage's `region:` (the certificate must be in it)".into());
        };
        if cert_region != region {
            return bad(
                "api.domain.certificate_arn",
                format!(
                    "the certificate is in {cert_region} but the stage deploys to {region}: a regional API Gateway \
                     domain needs an ACM certificate in its own region (us-east-1 certificates are for CloudFront); \
                     request or import one for {} in {region}",
                    self.name
                ),
            );
        }
        if let Some(zone) = &self.hosted_zone_id {
            let ok = !zone.is_empty()
                && zone.len() <= 32
                && zone.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if !ok {
                return bad(
                    "api.domain.hosted_zone_id",
                    format!("'{zone}' is not a Route 53 hosted zone id (upper-case letters and digits, e.g. Z0123456789ABCDEFGHIJ)"),
                );
            }
        }
        if let Some(zone) = &self.hosted_zone_name {
            if self.hosted_zone_id.is_none() {
                return bad(
                    "api.domain.hosted_zone_name",
                    "is only used with `hosted_zone_id` (the zone the records go to); add it or remove this key".into(),
                );
            }
            let zone = zone.trim_end_matches('.').to_ascii_lowercase();
            if !valid_host(&zone) {
                return bad("api.domain.hosted_zone_name", format!("'{zone}' must be a DNS name such as example.com"));
            }
            if self.name != zone && !self.name.ends_with(&format!(".{zone}")) {
                return bad(
                    "api.domain.name",
                    format!(
                        "'{}' is outside the hosted zone {zone}: Route 53 refuses records outside their zone; \
                         use a name ending in .{zone}, or the zone that holds {}",
                        self.name, self.name
                    ),
                );
            }
        }
        if let Some(path) = &self.base_path {
            let ok = !path.is_empty()
                && path.len() <= 128
                && path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return bad(
                    "api.domain.base_path",
                    format!("'{path}' must be one path segment of letters, digits, '-', '_' or '.' (no '/')"),
                );
            }
        }
        Ok(())
    }
}

/// `ci`: a deploy role that GitHub Actions assumes through OIDC (`wsctl ci-role`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CiSettings {
    /// The repository and the refs whose workflows may deploy this stage.
    pub github: GitHubSettings,
    /// The account's existing GitHub OIDC provider; without it the CI stack creates one
    /// (an account holds one provider per URL, so a second stage of the account names it).
    #[serde(default)]
    pub oidc_provider_arn: Option<String>,
}

/// `ci.github`: who may assume the stage's deploy role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubSettings {
    /// `OWNER/REPO`.
    pub repository: String,
    /// Branches whose workflow runs may deploy (`main`, or a pattern such as `release/*`).
    #[serde(default)]
    pub branches: Vec<String>,
    /// GitHub environments whose jobs may deploy (a job with `environment:` presents the
    /// environment, not the branch).
    #[serde(default)]
    pub environments: Vec<String>,
}

/// The host of GitHub Actions' OIDC tokens (the provider URL and the condition keys' prefix).
pub const GITHUB_OIDC_HOST: &str = "token.actions.githubusercontent.com";

impl CiSettings {
    /// The `sub` claims allowed to assume the role: `repo:OWNER/REPO:ref:refs/heads/BRANCH`
    /// per branch and `repo:OWNER/REPO:environment:ENV` per environment.
    pub fn subjects(&self) -> Vec<String> {
        let repo = &self.github.repository;
        let branches = self.github.branches.iter().map(|b| format!("repo:{repo}:ref:refs/heads/{b}"));
        let environments = self.github.environments.iter().map(|e| format!("repo:{repo}:environment:{e}"));
        branches.chain(environments).collect()
    }

    /// Checks the section; `account` is the stage's `account:`.
    pub fn validate(&self, account: Option<&str>) -> Result<(), Invalid> {
        let Some(account) = account else {
            return bad("ci", "needs the stage's `account:` (the role and its provider live there)".into());
        };
        let g = &self.github;
        let name_ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        let repo_ok = g.repository.split_once('/').is_some_and(|(owner, name)| name_ok(owner) && name_ok(name));
        if !repo_ok {
            return bad("ci.github.repository", format!("'{}' must be OWNER/REPO, e.g. acme/realtime", g.repository));
        }
        if g.branches.is_empty() && g.environments.is_empty() {
            return bad(
                "ci.github",
                "names no `branches` and no `environments`: the role would trust no workflow; list the branches \
                 (e.g. [main]) or the GitHub environments (e.g. [prod]) that may deploy this stage"
                    .into(),
            );
        }
        // Refs and environment names: no characters that change an IAM StringLike
        // pattern's meaning beyond the `*` glob, and never a bare `*` (any ref).
        let ref_ok = |s: &str| {
            !s.is_empty()
                && s != "*"
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '*'))
        };
        for (key, values) in [("ci.github.branches", &g.branches), ("ci.github.environments", &g.environments)] {
            if let Some(v) = values.iter().find(|v| !ref_ok(v)) {
                return bad(
                    key,
                    format!(
                        "'{v}' must be a name of letters, digits, '-', '_', '.', '/' (a `*` may stand for part of it, \
                         never for all of it)"
                    ),
                );
            }
        }
        if let Some(arn) = &self.oidc_provider_arn {
            let expected = format!(":iam::{account}:oidc-provider/{GITHUB_OIDC_HOST}");
            let ok =
                arn.starts_with("arn:aws") && arn.split_once(':').is_some_and(|(_, rest)| rest.ends_with(&expected));
            if !ok {
                return bad(
                    "ci.oidc_provider_arn",
                    format!("'{arn}' must be the GitHub provider of the stage's account: arn:aws:iam::{account}:oidc-provider/{GITHUB_OIDC_HOST}"),
                );
            }
        }
        Ok(())
    }
}

/// `alarms`: CloudWatch alarms on the stage's SLA signals and one dashboard. Every count
/// threshold is per 5-minute period; an alarm fires at or above it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmSettings {
    /// An existing SNS topic the alarms notify (ALARM and OK).
    pub topic_arn: Option<String>,
    /// An address subscribed to a topic the stage creates (`PREFIX-alarms`); AWS mails a
    /// confirmation link first.
    pub email: Option<String>,
    /// Function errors (internal failures; refusals are not errors), per function.
    pub lambda_errors: u32,
    /// Throttled invocations, per function.
    pub lambda_throttles: u32,
    /// p99 duration as a percentage of `lambda.timeout_secs`, per function.
    pub lambda_duration_p99_percent: u32,
    /// API Gateway integration plus execution errors (5xx-class) of the stage.
    pub api_errors: u32,
    /// API Gateway client errors (4xx, refused connects among them) of the stage.
    pub api_client_errors: u32,
    /// Minutes with messages flowing but no new connection before the connect alarm fires.
    pub connect_stall_minutes: u32,
    /// Redis engine CPU percentage, per shard (only when the stage creates Redis).
    pub redis_cpu_percent: u32,
    /// Redis evictions (with noeviction any eviction is wrong), per shard.
    pub redis_evictions: u32,
    /// Seconds a Redis replica may lag its primary, per shard with replicas.
    pub redis_replication_lag_secs: u32,
    /// DynamoDB read plus write throttle events, per table.
    pub dynamodb_throttles: u32,
    /// DynamoDB system errors (5xx), per table.
    pub dynamodb_system_errors: u32,
    /// The handlers' failed deliveries (EMF `delivery_failures`).
    pub fanout_failures: u32,
    /// The handlers' pruned (gone) connections (EMF `prunes`).
    pub pruned_connections: u32,
    /// The handlers' `unavailable` replies (EMF `errors_unavailable`).
    pub unavailable_replies: u32,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        Self {
            topic_arn: None,
            email: None,
            lambda_errors: 5,
            lambda_throttles: 1,
            lambda_duration_p99_percent: 80,
            api_errors: 5,
            api_client_errors: 500,
            connect_stall_minutes: 15,
            redis_cpu_percent: 80,
            redis_evictions: 1,
            redis_replication_lag_secs: 10,
            dynamodb_throttles: 1,
            dynamodb_system_errors: 1,
            fanout_failures: 10,
            pruned_connections: 1000,
            unavailable_replies: 10,
        }
    }
}

impl AlarmSettings {
    /// Checks the section; `region` and `account` are the stage's.
    pub fn validate(&self, region: Option<&str>, account: Option<&str>) -> Result<(), Invalid> {
        if self.topic_arn.is_some() && self.email.is_some() {
            return bad(
                "alarms.email",
                "and alarms.topic_arn both set: give one (subscribe the address to your topic yourself)".into(),
            );
        }
        if let Some(arn) = &self.topic_arn {
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            let ok = parts.len() == 6
                && parts[0] == "arn"
                && parts[1].starts_with("aws")
                && parts[2] == "sns"
                && Some(parts[3]) == region
                && Some(parts[4]) == account
                && !parts[5].is_empty();
            if !ok {
                return bad(
                    "alarms.topic_arn",
                    format!(
                        "'{arn}' must be an SNS topic ARN in the stage's region and account \
                         (arn:aws:sns:{}:{}:NAME): CloudWatch notifies topics of its own region",
                        region.unwrap_or("REGION"),
                        account.unwrap_or("ACCOUNT")
                    ),
                );
            }
        }
        if let Some(email) = &self.email {
            let ok = email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
                && !email.chars().any(char::is_whitespace);
            if !ok {
                return bad("alarms.email", format!("'{email}' is not an email address"));
            }
        }
        for (key, value, range) in [
            ("alarms.lambda_duration_p99_percent", self.lambda_duration_p99_percent, 1..=100),
            ("alarms.redis_cpu_percent", self.redis_cpu_percent, 1..=100),
            ("alarms.connect_stall_minutes", self.connect_stall_minutes, 5..=1440),
        ] {
            if !range.contains(&value) {
                return bad(key, format!("{value} must be within {}..={}", range.start(), range.end()));
            }
        }
        for (key, value) in [
            ("alarms.lambda_errors", self.lambda_errors),
            ("alarms.lambda_throttles", self.lambda_throttles),
            ("alarms.api_errors", self.api_errors),
            ("alarms.api_client_errors", self.api_client_errors),
            ("alarms.redis_evictions", self.redis_evictions),
            ("alarms.redis_replication_lag_secs", self.redis_replication_lag_secs),
            ("alarms.dynamodb_throttles", self.dynamodb_throttles),
            ("alarms.dynamodb_system_errors", self.dynamodb_system_errors),
            ("alarms.fanout_failures", self.fanout_failures),
            ("alarms.pruned_connections", self.pruned_connections),
            ("alarms.unavailable_replies", self.unavailable_replies),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1 (an alarm at 0 would always fire)".into());
            }
        }
        Ok(())
    }
}

/// The `api.domain.name` another stage file in `dir` already claims (its path), if any.
/// Files that do not parse as YAML are skipped: they fail on their own when used.
pub fn domain_claimed_elsewhere(dir: &Path, this: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
    entries.sort();
    entries.into_iter().find(|path| {
        path.extension().is_some_and(|e| e == "yaml")
            && path.file_name() != this.file_name()
            && std::fs::read_to_string(path)
                .ok()
                .and_then(|text| serde_norway::from_str::<serde_norway::Value>(&text).ok())
                .and_then(|doc| doc.get("api")?.get("domain")?.get("name")?.as_str().map(str::to_ascii_lowercase))
                .is_some_and(|other| other.trim_end_matches('.') == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str, cert_region: &str) -> DomainSettings {
        DomainSettings {
            name: name.into(),
            certificate_arn: format!("arn:aws:acm:{cert_region}:111111111111:certificate/abc"),
            hosted_zone_id: Some("Z0123456789ABC".into()),
            hosted_zone_name: Some("example.com".into()),
            base_path: None,
        }
    }

    #[test]
    fn a_domain_in_its_zone_with_a_certificate_of_the_stage_region_passes() {
        domain("ws.example.com", "eu-west-1").validate(Some("eu-west-1")).unwrap();
        domain("example.com", "eu-west-1").validate(Some("eu-west-1")).unwrap();
        assert_eq!(domain("ws.example.com", "eu-west-1").websocket_url(), "wss://ws.example.com");
        let d = DomainSettings { base_path: Some("v1".into()), ..domain("ws.example.com", "eu-west-1") };
        assert_eq!(d.websocket_url(), "wss://ws.example.com/v1");
    }

    #[test]
    fn a_certificate_of_another_region_is_refused_naming_both() {
        let (key, why) = domain("ws.example.com", "us-east-1").validate(Some("eu-west-1")).unwrap_err();
        assert_eq!(key, "api.domain.certificate_arn");
        assert!(why.contains("us-east-1") && why.contains("eu-west-1"), "{why}");
    }

    #[test]
    fn a_name_outside_the_zone_is_refused() {
        for name in ["ws.example.org", "ws.notexample.com", "com"] {
            let err = domain(name, "eu-west-1").validate(Some("eu-west-1")).unwrap_err();
            assert!(err.0 == "api.domain.name", "{name}: {err:?}");
        }
        let no_id = DomainSettings { hosted_zone_id: None, ..domain("ws.example.com", "eu-west-1") };
        assert_eq!(no_id.validate(Some("eu-west-1")).unwrap_err().0, "api.domain.hosted_zone_name");
    }

    fn ci(branches: &[&str], environments: &[&str]) -> CiSettings {
        CiSettings {
            github: GitHubSettings {
                repository: "acme/realtime".into(),
                branches: branches.iter().map(|s| s.to_string()).collect(),
                environments: environments.iter().map(|s| s.to_string()).collect(),
            },
            oidc_provider_arn: None,
        }
    }

    #[test]
    fn ci_subjects_name_the_repository_and_each_branch_or_environment() {
        assert_eq!(
            ci(&["main", "release/*"], &["prod"]).subjects(),
            [
                "repo:acme/realtime:ref:refs/heads/main",
                "repo:acme/realtime:ref:refs/heads/release/*",
                "repo:acme/realtime:environment:prod"
            ]
        );
        ci(&["main"], &[]).validate(Some("111111111111")).unwrap();
    }

    #[test]
    fn ci_refuses_a_role_open_to_any_ref_or_a_foreign_provider() {
        assert_eq!(ci(&[], &[]).validate(Some("111111111111")).unwrap_err().0, "ci.github");
        assert_eq!(ci(&["*"], &[]).validate(Some("111111111111")).unwrap_err().0, "ci.github.branches");
        assert_eq!(ci(&[], &["a b"]).validate(Some("111111111111")).unwrap_err().0, "ci.github.environments");
        let mut bad_repo = ci(&["main"], &[]);
        bad_repo.github.repository = "acme".into();
        assert_eq!(bad_repo.validate(Some("111111111111")).unwrap_err().0, "ci.github.repository");
        let mut other = ci(&["main"], &[]);
        other.oidc_provider_arn = Some(format!("arn:aws:iam::222222222222:oidc-provider/{GITHUB_OIDC_HOST}"));
        assert_eq!(other.validate(Some("111111111111")).unwrap_err().0, "ci.oidc_provider_arn");
        other.oidc_provider_arn = Some(format!("arn:aws:iam::111111111111:oidc-provider/{GITHUB_OIDC_HOST}"));
        other.validate(Some("111111111111")).unwrap();
        assert!(ci(&["main"], &[]).validate(None).is_err());
    }

    #[test]
    fn alarms_refuse_a_foreign_topic_two_targets_and_zero_thresholds() {
        let ok =
            AlarmSettings { topic_arn: Some("arn:aws:sns:eu-west-1:111111111111:oncall".into()), ..Default::default() };
        ok.validate(Some("eu-west-1"), Some("111111111111")).unwrap();
        let err = ok.validate(Some("us-east-1"), Some("111111111111")).unwrap_err();
        assert!(err.0 == "alarms.topic_arn" && err.1.contains("us-east-1"), "{err:?}");
        assert_eq!(ok.validate(Some("eu-west-1"), Some("222222222222")).unwrap_err().0, "alarms.topic_arn");
        let both = AlarmSettings { email: Some("a@example.com".into()), ..ok.clone() };
        assert_eq!(both.validate(Some("eu-west-1"), Some("111111111111")).unwrap_err().0, "alarms.email");
        let bad_mail = AlarmSettings { email: Some("nobody".into()), ..Default::default() };
        assert_eq!(bad_mail.validate(None, None).unwrap_err().0, "alarms.email");
        let zero = AlarmSettings { lambda_errors: 0, ..Default::default() };
        assert_eq!(zero.validate(None, None).unwrap_err().0, "alarms.lambda_errors");
        let pct = AlarmSettings { redis_cpu_percent: 101, ..Default::default() };
        assert_eq!(pct.validate(None, None).unwrap_err().0, "alarms.redis_cpu_percent");
        AlarmSettings::default().validate(None, None).unwrap();
    }

    #[test]
    fn malformed_values_are_refused() {
        let base = domain("ws.example.com", "eu-west-1");
        for d in [
            DomainSettings { name: "WS.example.com".into(), ..base.clone() },
            DomainSettings { name: "*.example.com".into(), ..base.clone() },
            DomainSettings { certificate_arn: "arn:aws:iam::111111111111:role/x".into(), ..base.clone() },
            DomainSettings { hosted_zone_id: Some("/hostedzone/Z1".into()), ..base.clone() },
            DomainSettings { base_path: Some("a/b".into()), ..base.clone() },
        ] {
            assert!(d.validate(Some("eu-west-1")).is_err(), "{d:?}");
        }
        assert!(base.validate(None).is_err(), "no region to compare the certificate with");
    }
}
