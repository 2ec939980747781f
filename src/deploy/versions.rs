//! Old Lambda versions. Every deploy of new code or configuration publishes a version per
//! function, and the app template retains the ones it replaces (`DeletionPolicy: RetainExceptOnCreate`,
//! for rollback). Left alone they pile up against the region's code-storage quota (75 GB),
//! and a CI pipeline deploying a few times a day reaches it within months. After a
//! successful deploy, each function keeps its newest `lambda.keep_versions` versions and
//! every version still in use; the rest are deleted.

use super::stacks::{self, sdk_error};
use crate::contract::FUNCTIONS;
use anyhow::Context;
use aws_sdk_lambda::Client;
use serde::Serialize;
use std::collections::BTreeSet;

/// What pruning did to one function.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrunedFunction {
    /// Function name.
    pub function: String,
    /// Versions deleted.
    pub deleted: Vec<String>,
    /// Versions kept.
    pub kept: Vec<String>,
    /// Versions that could not be deleted, with the reason (tried again next deploy).
    pub errors: Vec<String>,
}

/// The versions to delete: all but the newest `keep` and those `in_use`, oldest first.
pub fn to_delete(published: &[u64], in_use: &BTreeSet<u64>, keep: usize) -> Vec<u64> {
    let mut newest_first: Vec<u64> = published.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    newest_first.dedup();
    let mut doomed: Vec<u64> = newest_first.into_iter().skip(keep).filter(|v| !in_use.contains(v)).collect();
    doomed.reverse();
    doomed
}

/// Published version numbers of a function (without `$LATEST`), every page.
async fn published(lambda: &Client, function: &str) -> anyhow::Result<Vec<u64>> {
    let versions: Vec<_> = lambda
        .list_versions_by_function()
        .function_name(function)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("listing the versions of {function}"))?;
    Ok(versions.iter().filter_map(|v| v.version()?.parse::<u64>().ok()).collect())
}

/// Versions an alias routes to (its version and a canary's additional one), every page.
async fn aliased(lambda: &Client, function: &str) -> anyhow::Result<BTreeSet<u64>> {
    let aliases: Vec<_> = lambda
        .list_aliases()
        .function_name(function)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("listing the aliases of {function}"))?;
    let mut versions = BTreeSet::new();
    for alias in &aliases {
        versions.extend(alias.function_version().and_then(|v| v.parse::<u64>().ok()));
        if let Some(weights) = alias.routing_config().and_then(|r| r.additional_version_weights()) {
            versions.extend(weights.keys().filter_map(|v| v.parse::<u64>().ok()));
        }
    }
    Ok(versions)
}

/// The version number at the end of a version ARN (`…:function:NAME:7`).
fn version_of_arn(arn: &str) -> Option<u64> {
    arn.rsplit(':').next()?.parse().ok()
}

/// Deletes each function's versions beyond the newest `keep`, sparing every version the
/// app stack holds or an alias routes to.
pub async fn prune(
    lambda: &Client,
    cfn: &aws_sdk_cloudformation::Client,
    app_stack: &str,
    keep: usize,
) -> anyhow::Result<Vec<PrunedFunction>> {
    let resources = stacks::stack_resources(cfn, app_stack).await?;
    let mut report = Vec::new();
    for f in FUNCTIONS {
        let function = format!("{app_stack}-{}", f.name);
        let mut in_use = aliased(lambda, &function).await?;
        in_use.extend(
            resources
                .values()
                .filter(|r| r.resource_type == "AWS::Lambda::Version" && r.logical_id.starts_with(f.logical))
                .filter_map(|r| r.physical_id.as_deref().and_then(version_of_arn)),
        );
        let versions = published(lambda, &function).await?;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        // One version that cannot go (throttled, in use by something unseen) must not
        // keep the others: each is tried, and what failed is reported.
        for v in to_delete(&versions, &in_use, keep) {
            match lambda.delete_function().function_name(&function).qualifier(v.to_string()).send().await {
                Ok(_) => deleted.push(v),
                Err(e) => errors.push(format!("version {v}: {}", sdk_error(e))),
            }
        }
        let mut kept: Vec<u64> = versions.into_iter().filter(|v| !deleted.contains(v)).collect();
        kept.sort_unstable();
        report.push(PrunedFunction {
            function,
            deleted: deleted.iter().map(u64::to_string).collect(),
            kept: kept.iter().map(u64::to_string).collect(),
            errors,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_whatever_is_in_use() {
        let in_use: BTreeSet<u64> = [2, 9].into();
        assert_eq!(to_delete(&[1, 2, 3, 4, 5, 6, 7, 8, 9], &in_use, 3), vec![1, 3, 4, 5, 6]);
        assert_eq!(to_delete(&[3, 1, 2], &BTreeSet::new(), 5), Vec::<u64>::new());
        assert_eq!(to_delete(&[5, 4, 4], &BTreeSet::new(), 1), vec![4]);
        assert_eq!(version_of_arn("arn:aws:lambda:us-east-1:123456789012:function:wsctl-dev-app-connect:12"), Some(12));
        assert_eq!(version_of_arn("arn:aws:lambda:us-east-1:123456789012:function:wsctl-dev-app-connect"), None);
    }
}
