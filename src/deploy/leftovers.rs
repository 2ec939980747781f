//! What a stage leaves outside its stacks, and `destroy` cleans up: **API Gateway's
//! execution-log group** (`API-Gateway-Execution-Logs_{apiId}/{stage}`)
//! is created by API Gateway itself on the first error it logs, outside every stack and
//! without retention. `destroy` notes the API's id before deleting the app stack and
//! deletes the group after it.
//!
//! (Lambda's VPC network interfaces, which outlive the functions by minutes and make the
//! data stack's subnets fail with `DependencyViolation`, are not handled yet: that needs
//! the EC2 SDK, left out for its build cost; see docs/deploy.md, "Known traps".)

use super::clients::Clients;
use super::stacks::{self, sdk_error};
use anyhow::Context;

/// The API's id, from the app stack (or, when the stack no longer lists it, the API
/// named after the stack).
pub async fn api_id(clients: &Clients, app_stack: &str) -> anyhow::Result<Option<String>> {
    if let Ok(resources) = stacks::stack_resources(&clients.cfn, app_stack).await {
        if let Some(id) = resources.values().find(|r| r.logical_id == "Api").and_then(|r| r.physical_id.clone()) {
            return Ok(Some(id));
        }
    }
    let apis = clients.apigw.get_apis().send().await.map_err(sdk_error).context("listing the APIs")?;
    Ok(apis.items().iter().find(|a| a.name() == Some(app_stack)).and_then(|a| a.api_id().map(str::to_owned)))
}

/// Deletes API Gateway's execution-log group of the API's stage; the group's name when
/// there was one.
pub async fn delete_execution_logs(clients: &Clients, api_id: &str, api_stage: &str) -> anyhow::Result<Option<String>> {
    let name = format!("API-Gateway-Execution-Logs_{api_id}/{api_stage}");
    match clients.logs.delete_log_group().log_group_name(&name).send().await {
        Ok(_) => Ok(Some(name)),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
        Err(e) => Err(sdk_error(e)).with_context(|| format!("deleting the execution-log group {name}")),
    }
}
