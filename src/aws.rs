//! Where AWS calls go ([`AwsTarget`]: region, profile, endpoint override) and the one place
//! that builds the AWS SDK configuration for every client wsctl creates, so the region,
//! profile and endpoint override (`--endpoint-url`, e.g. a local moto_server) apply to all
//! of them alike; where a command is about to act ([`TargetLine`]); and how an AWS
//! error is told to the operator ([`explain`]).

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde::Serialize;
use std::time::Duration;

/// Where a command's AWS calls go, as the operator asked (`--region`, `--profile`/
/// `AWS_PROFILE`, `--endpoint-url`/`AWS_ENDPOINT_URL`); a stage file's `region:` still wins
/// over `region` (see [`choose_region`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsTarget {
    /// The region for stages whose file names none.
    pub region: Option<String>,
    /// The shared-config profile.
    pub profile: Option<String>,
    /// One endpoint for every AWS service (e.g. a local moto_server).
    pub endpoint_url: Option<String>,
}

impl AwsTarget {
    /// This target with every call sent to `endpoint`, in `region` unless one is already
    /// chosen (the local gateway's DynamoDB endpoint).
    pub fn at_endpoint(&self, endpoint: &str, region: &str) -> AwsTarget {
        AwsTarget {
            region: self.region.clone().or_else(|| Some(region.to_owned())),
            profile: self.profile.clone(),
            endpoint_url: Some(endpoint.to_owned()),
        }
    }
}

/// A region that contradicts the stage file.
#[derive(Debug, thiserror::Error)]
#[error(
    "--region {given} is not where stage '{stage}' lives: stages/{stage}.yaml says `region: {pinned}`; \
     drop --region (the stage file decides), or change the stage file's region"
)]
pub struct RegionConflict {
    /// Stage name.
    pub stage: String,
    /// `--region`.
    pub given: String,
    /// The stage file's region.
    pub pinned: String,
}

/// The region a stage's commands use: the stage file's `region:` whenever it has one
/// (ambient `AWS_REGION`/`AWS_DEFAULT_REGION` never override it), `--region` only when it
/// names the same region or the stage names none.
pub fn choose_region(
    flag: Option<&str>,
    stage: &str,
    stage_region: Option<&str>,
) -> Result<Option<String>, RegionConflict> {
    match (flag, stage_region) {
        (Some(given), Some(pinned)) if given != pinned => {
            Err(RegionConflict { stage: stage.to_owned(), given: given.to_owned(), pinned: pinned.to_owned() })
        }
        (_, Some(pinned)) => Ok(Some(pinned.to_owned())),
        (given, None) => Ok(given.map(str::to_owned)),
    }
}

/// Loads the SDK configuration for a stage: its region (see [`choose_region`]), the
/// `--profile` if given, and `--endpoint-url`/`AWS_ENDPOINT_URL` for every service.
/// A stalled connection fails instead of hanging the command: 10 s to connect, 5 minutes
/// per attempt (room for a handler zip on a slow uplink).
pub async fn sdk_config(
    target: &AwsTarget,
    stage: &str,
    stage_region: Option<&str>,
) -> Result<SdkConfig, RegionConflict> {
    let region = choose_region(target.region.as_deref(), stage, stage_region)?;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(300))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &target.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    Ok(loader.load().await)
}

/// Where a command that changes a deployed stage is about to act, printed on stderr and
/// included in its JSON before it does anything: `stage prod → account 333333333333/eu-west-1
/// (profile ops)`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetLine {
    /// Stage name.
    pub stage: String,
    /// The account the credentials belong to (STS GetCallerIdentity).
    pub account: String,
    /// The region every call goes to.
    pub region: String,
    /// The shared-config profile (`--profile`/`AWS_PROFILE`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Who the credentials are (the caller's ARN), recorded in the deploy history.
    #[serde(skip)]
    pub caller: Option<String>,
}

impl std::fmt::Display for TargetLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage {} → account {}/{}", self.stage, self.account, self.region)?;
        match &self.profile {
            Some(p) => write!(f, " (profile {p})"),
            None => write!(f, " (credentials from the environment, no profile)"),
        }
    }
}

impl TargetLine {
    /// Prints the line on stderr.
    pub fn announce(&self) {
        eprintln!("{self}");
    }
}

/// What an AWS error code means for the operator, if wsctl knows.
pub fn hint(code: &str, message: &str) -> Option<String> {
    let code_l = code.to_ascii_lowercase();
    if code_l.contains("throttl") || code_l.contains("toomanyrequests") || code_l == "requestlimitexceeded" {
        return Some("AWS is throttling these calls; wait a minute and run the command again".into());
    }
    if matches!(
        code,
        "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "InvalidAccessKeyId"
            | "InvalidSignatureException"
            | "MissingAuthenticationToken"
    ) {
        return Some(
            "the credentials are missing, expired or wrong: renew them (`aws sso login`, --profile NAME or \
             AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
                .into(),
        );
    }
    if code_l.contains("accessdenied") || code_l.contains("unauthorizedoperation") || code == "AuthorizationError" {
        let action = missing_action(message);
        return Some(match action {
            Some(a) => format!(
                "the credentials may not call {a}; grant it (`wsctl iam-policy --stage STAGE` prints the policy the \
                 deployer needs)"
            ),
            None => "the credentials lack a permission; `wsctl iam-policy --stage STAGE` prints the policy the \
                     deployer needs"
                .into(),
        });
    }
    None
}

/// The IAM action named in an AccessDenied message (`… is not authorized to perform:
/// cloudformation:CreateChangeSet on resource …`).
pub fn missing_action(message: &str) -> Option<String> {
    let rest = message.split("perform: ").nth(1)?;
    let action: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == ':' || *c == '-').collect();
    action.contains(':').then_some(action)
}

/// An SDK error rendered as `Code: message` plus a hint, never a Debug dump. Errors
/// without a service response (no credentials, no network) are told by their cause.
pub fn explain(code: Option<&str>, message: Option<&str>, source: &(dyn std::error::Error + 'static)) -> String {
    if let (Some(code), message) = (code, message) {
        let message = message.unwrap_or("(no message)");
        return match hint(code, message) {
            Some(h) => format!("{code}: {message} ({h})"),
            None => format!("{code}: {message}"),
        };
    }
    // Walk to the innermost cause: the SDK's outer layers say only "dispatch failure".
    let mut chain = Vec::new();
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(err) = e {
        let text = err.to_string();
        if !chain.contains(&text) {
            chain.push(text);
        }
        e = err.source();
    }
    let all = chain.join(": ");
    let lower = all.to_ascii_lowercase();
    let why = chain.last().cloned().unwrap_or_default();
    if lower.contains("credential") {
        format!(
            "no AWS credentials: {why} (configure them: --profile NAME or AWS_PROFILE, `aws sso login`, or \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    } else if lower.contains("dispatch")
        || lower.contains("connect")
        || lower.contains("dns")
        || lower.contains("timed out")
    {
        format!("cannot reach AWS: {why} (check the network, a proxy, or --endpoint-url)")
    } else {
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_file_decides_the_region() {
        assert_eq!(choose_region(None, "prod", Some("eu-west-1")).unwrap().as_deref(), Some("eu-west-1"));
        assert_eq!(choose_region(Some("eu-west-1"), "prod", Some("eu-west-1")).unwrap().as_deref(), Some("eu-west-1"));
        let err = choose_region(Some("us-east-1"), "prod", Some("eu-west-1")).unwrap_err().to_string();
        assert!(err.contains("--region us-east-1") && err.contains("`region: eu-west-1`"), "{err}");
        assert_eq!(choose_region(Some("us-east-1"), "x", None).unwrap().as_deref(), Some("us-east-1"));
        assert_eq!(choose_region(None, "x", None).unwrap(), None);
    }

    #[test]
    fn access_denied_names_the_missing_action() {
        let m =
            "User: arn:aws:iam::1:user/ci is not authorized to perform: cloudformation:CreateChangeSet on resource: x";
        assert_eq!(missing_action(m).as_deref(), Some("cloudformation:CreateChangeSet"));
        let h = hint("AccessDenied", m).unwrap();
        assert!(h.contains("cloudformation:CreateChangeSet") && h.contains("wsctl iam-policy"), "{h}");
        assert!(hint("ThrottlingException", "Rate exceeded").unwrap().contains("throttling"));
        assert!(hint("ExpiredToken", "expired").unwrap().contains("aws sso login"));
        assert_eq!(hint("ValidationError", "bad"), None);
        let line = TargetLine {
            stage: "prod".into(),
            account: "3".into(),
            region: "eu-west-1".into(),
            profile: Some("ops".into()),
            caller: None,
        };
        assert_eq!(line.to_string(), "stage prod → account 3/eu-west-1 (profile ops)");
    }
}
