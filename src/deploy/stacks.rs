//! Thin, typed wrappers over the CloudFormation calls the deployer makes: stack lookup,
//! resources, outputs, change sets.

use anyhow::{bail, Context};
use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::types::{Capability, ChangeSetStatus, ChangeSetType, Parameter, Stack, Tag};
use aws_sdk_cloudformation::Client;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Turns an SDK error into an error carrying the service's code and message (or, when
/// the response could not be parsed, its HTTP status and body).
pub fn sdk_error<E>(err: SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if err.code().is_some() || err.message().is_some() {
        return anyhow::anyhow!(crate::aws::explain(err.code(), err.message(), &err));
    }
    if let Some(raw) = err.raw_response() {
        if let Some(body) = raw.body().bytes().filter(|b| !b.is_empty()) {
            let text: String = String::from_utf8_lossy(body).chars().take(600).collect();
            return anyhow::anyhow!("HTTP {}: {text}", raw.status().as_u16());
        }
    }
    anyhow::anyhow!(crate::aws::explain(None, None, &err))
}

/// A deployed stack's state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackInfo {
    /// Stack name.
    pub name: String,
    /// Stack id (ARN).
    pub id: String,
    /// Status, e.g. `UPDATE_COMPLETE`.
    pub status: String,
    /// Reason CloudFormation gives for the status, if any.
    pub status_reason: Option<String>,
    /// Outputs by key.
    pub outputs: BTreeMap<String, String>,
    /// Termination protection on.
    pub termination_protection: bool,
}

impl StackInfo {
    fn from_sdk(s: &Stack) -> StackInfo {
        StackInfo {
            name: s.stack_name().unwrap_or_default().to_owned(),
            id: s.stack_id().unwrap_or_default().to_owned(),
            status: s.stack_status().map(|x| x.as_str().to_owned()).unwrap_or_default(),
            status_reason: s.stack_status_reason().map(str::to_owned),
            outputs: s
                .outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
                .collect(),
            termination_protection: s.enable_termination_protection().unwrap_or(false),
        }
    }

    /// Still being worked on by CloudFormation.
    pub fn in_progress(&self) -> bool {
        self.status.ends_with("_IN_PROGRESS")
    }

    /// Created by a change set that was never executed (or a create that never started).
    pub fn in_review(&self) -> bool {
        self.status == "REVIEW_IN_PROGRESS"
    }

    /// A failed first create; such a stack can only be deleted.
    pub fn failed_create(&self) -> bool {
        matches!(self.status.as_str(), "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" | "CREATE_FAILED")
    }
}

/// Describes a stack; `None` when it does not exist (or is deleted).
pub async fn describe_stack(cfn: &Client, name: &str) -> anyhow::Result<Option<StackInfo>> {
    match cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out.stacks().first().map(StackInfo::from_sdk).filter(|s| s.status != "DELETE_COMPLETE")),
        Err(err) => {
            let text = sdk_error(err).to_string();
            if text.contains("does not exist") {
                Ok(None)
            } else {
                Err(anyhow::anyhow!(text)).with_context(|| format!("describing stack {name}"))
            }
        }
    }
}

/// A resource of a stack.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// Logical id in the template.
    pub logical_id: String,
    /// Physical id (name, ARN or id, depending on the type).
    pub physical_id: Option<String>,
    /// Resource type.
    pub resource_type: String,
    /// Status.
    pub status: String,
}

/// Lists a stack's resources by logical id.
pub async fn stack_resources(cfn: &Client, name: &str) -> anyhow::Result<BTreeMap<String, ResourceInfo>> {
    let out = cfn
        .describe_stack_resources()
        .stack_name(name)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("listing the resources of stack {name}"))?;
    Ok(out
        .stack_resources()
        .iter()
        .filter_map(|r| {
            let logical_id = r.logical_resource_id()?.to_owned();
            Some((
                logical_id.clone(),
                ResourceInfo {
                    logical_id,
                    physical_id: r.physical_resource_id().map(str::to_owned),
                    resource_type: r.resource_type().unwrap_or_default().to_owned(),
                    status: r.resource_status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                },
            ))
        })
        .collect())
}

/// One line of a change set.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRow {
    /// `Add`, `Modify`, `Remove`, …
    pub action: String,
    /// Logical id.
    pub logical_id: String,
    /// Resource type.
    pub resource_type: String,
    /// `True`, `False` or `Conditional` for modifications.
    pub replacement: Option<String>,
}

impl ChangeRow {
    /// Whether the change replaces (deletes and recreates) the resource.
    pub fn replaces(&self) -> bool {
        matches!(self.replacement.as_deref(), Some("True") | Some("Conditional"))
    }
}

/// A created change set.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    /// Change set ARN.
    pub id: String,
    /// Whether it creates the stack.
    pub creates_stack: bool,
    /// Its changes; empty with `empty == true` when CloudFormation found nothing to do.
    pub changes: Vec<ChangeRow>,
    /// CloudFormation reported that the submitted template and parameters change nothing.
    pub empty: bool,
}

/// What to submit.
pub struct ChangeSetRequest<'a> {
    /// Stack name.
    pub stack: &'a str,
    /// Change set name, from [`new_change_set_name`] (known before the call, so that an
    /// interrupted run can delete a change set whose creation it never saw complete).
    pub name: &'a str,
    /// Template inline or by S3 URL.
    pub template: TemplateSource,
    /// Parameters.
    pub parameters: &'a BTreeMap<String, String>,
    /// Stack tags.
    pub tags: &'a BTreeMap<String, String>,
    /// `CREATE` (stack absent or in review) or `UPDATE`.
    pub create: bool,
    /// How often to poll.
    pub poll: Duration,
}

/// Where the template comes from.
#[derive(Debug, Clone)]
pub enum TemplateSource {
    /// Inline body (at most 51,200 bytes).
    Body(String),
    /// An S3 URL (any size up to 1 MB).
    Url(String),
}

/// Prefix of the names of the change sets wsctl creates.
pub const CHANGE_SET_PREFIX: &str = "wsctl-";

/// A fresh change set name: `wsctl-<unix milliseconds>`.
pub fn new_change_set_name() -> String {
    let millis =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    format!("{CHANGE_SET_PREFIX}{millis}")
}

/// Creates a change set and waits until CloudFormation has computed it.
pub async fn create_change_set(cfn: &Client, req: ChangeSetRequest<'_>) -> anyhow::Result<ChangeSet> {
    let name = req.name;
    let params: Vec<Parameter> =
        req.parameters.iter().map(|(k, v)| Parameter::builder().parameter_key(k).parameter_value(v).build()).collect();
    let tags: Vec<Tag> = req.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
    let mut call = cfn
        .create_change_set()
        .stack_name(req.stack)
        .change_set_name(name)
        .change_set_type(if req.create { ChangeSetType::Create } else { ChangeSetType::Update })
        .set_parameters(Some(params))
        .set_tags(Some(tags))
        .capabilities(Capability::CapabilityIam)
        .description("created by wsctl");
    call = match &req.template {
        TemplateSource::Body(body) => call.template_body(body),
        TemplateSource::Url(url) => call.template_url(url),
    };
    let created = call
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("creating a change set for stack {}", req.stack))?;
    let id = created.id().unwrap_or(name).to_owned();

    loop {
        let mut changes = Vec::new();
        let mut token: Option<String> = None;
        let (status, reason) = loop {
            let out = cfn
                .describe_change_set()
                .change_set_name(&id)
                .stack_name(req.stack)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("describing change set {id}"))?;
            for c in out.changes() {
                if let Some(rc) = c.resource_change() {
                    changes.push(ChangeRow {
                        action: rc.action().map(|a| a.as_str().to_owned()).unwrap_or_default(),
                        logical_id: rc.logical_resource_id().unwrap_or_default().to_owned(),
                        resource_type: rc.resource_type().unwrap_or_default().to_owned(),
                        replacement: rc.replacement().map(|r| r.as_str().to_owned()),
                    });
                }
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break (out.status().cloned(), out.status_reason().map(str::to_owned));
            }
        };
        match status {
            Some(ChangeSetStatus::CreateComplete) => {
                return Ok(ChangeSet { id, creates_stack: req.create, changes, empty: false })
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = reason.unwrap_or_default();
                if reason.contains("didn't contain changes") || reason.contains("No updates are to be performed") {
                    // An empty change set stays around as FAILED; remove it.
                    let _ = cfn.delete_change_set().change_set_name(&id).stack_name(req.stack).send().await;
                    return Ok(ChangeSet { id, creates_stack: req.create, changes: Vec::new(), empty: true });
                }
                bail!("CloudFormation could not compute the change set for stack {}: {reason}", req.stack);
            }
            _ => tokio::time::sleep(req.poll).await,
        }
    }
}

/// Deletes a change set that will not be executed (a missing one is fine: its creation
/// may never have reached CloudFormation); removes the stack too when the change set
/// would have created it (CloudFormation leaves it in `REVIEW_IN_PROGRESS`).
pub async fn discard_change_set(
    cfn: &Client,
    stack: &str,
    change_set: &str,
    creates_stack: bool,
) -> anyhow::Result<()> {
    if let Err(err) = cfn.delete_change_set().change_set_name(change_set).stack_name(stack).send().await {
        let err = sdk_error(err);
        if !err.to_string().contains("does not exist") {
            return Err(err).with_context(|| format!("deleting change set {change_set}"));
        }
    }
    if creates_stack {
        if let Some(info) = describe_stack(cfn, stack).await? {
            if info.in_review() {
                cfn.delete_stack()
                    .stack_name(stack)
                    .send()
                    .await
                    .map_err(sdk_error)
                    .with_context(|| format!("removing the empty stack {stack}"))?;
            }
        }
    }
    Ok(())
}

/// A change set's state: its status (`CREATE_PENDING`, `CREATE_IN_PROGRESS`,
/// `CREATE_COMPLETE`, `FAILED`, …) and execution status (`AVAILABLE`: never run;
/// `EXECUTE_IN_PROGRESS`, `EXECUTE_COMPLETE`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSetState {
    /// Status of its computation.
    pub status: String,
    /// Execution status.
    pub execution: String,
}

impl ChangeSetState {
    /// CloudFormation is still computing it (it can be neither executed nor deleted yet).
    pub fn computing(&self) -> bool {
        matches!(self.status.as_str(), "CREATE_PENDING" | "CREATE_IN_PROGRESS")
    }

    /// Never executed and still executable.
    pub fn runnable(&self) -> bool {
        self.execution == "AVAILABLE"
    }

    /// Its execution has begun (or ended): neither runnable nor unusable.
    pub fn started(&self) -> bool {
        !matches!(self.execution.as_str(), "AVAILABLE" | "UNAVAILABLE")
    }
}

/// A change set's state; `None` when it does not exist.
pub async fn change_set_state(cfn: &Client, stack: &str, change_set: &str) -> anyhow::Result<Option<ChangeSetState>> {
    match cfn.describe_change_set().change_set_name(change_set).stack_name(stack).send().await {
        Ok(out) => Ok(Some(ChangeSetState {
            status: out.status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            execution: out.execution_status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        })),
        Err(err) => {
            let err = sdk_error(err);
            if err.to_string().contains("does not exist") {
                Ok(None)
            } else {
                Err(err).with_context(|| format!("describing change set {change_set}"))
            }
        }
    }
}

/// A change set of a stack, as listed.
#[derive(Debug, Clone)]
pub struct ChangeSetSummary {
    /// Change set name.
    pub name: String,
    /// Change set ARN.
    pub id: String,
    /// Its state.
    pub state: ChangeSetState,
    /// When it was created (ISO 8601).
    pub created: String,
}

impl ChangeSetSummary {
    /// Being computed or executed: someone (another run, or the one just interrupted) is
    /// working with it.
    pub fn busy(&self) -> bool {
        self.state.computing() || self.state.execution == "EXECUTE_IN_PROGRESS"
    }

    /// Created by wsctl and never executed.
    pub fn leftover(&self) -> bool {
        self.name.starts_with(CHANGE_SET_PREFIX) && self.state.runnable()
    }
}

/// The change sets of `stack`.
pub async fn change_sets(cfn: &Client, stack: &str) -> anyhow::Result<Vec<ChangeSetSummary>> {
    let listed: Vec<_> = cfn
        .list_change_sets()
        .stack_name(stack)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("listing the change sets of stack {stack}"))?;
    Ok(listed
        .iter()
        // Some emulators ignore the StackName filter.
        .filter(|cs| cs.stack_name().is_none_or(|s| s == stack))
        .filter_map(|cs| {
            Some(ChangeSetSummary {
                name: cs.change_set_name()?.to_owned(),
                id: cs.change_set_id()?.to_owned(),
                state: ChangeSetState {
                    status: cs.status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                    execution: cs.execution_status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                },
                created: cs
                    .creation_time()
                    .and_then(|t| t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime).ok())
                    .unwrap_or_default(),
            })
        })
        .collect())
}
