//! `wsctl status`: the stage's stacks (status, outputs, last events), the API's routes,
//! Redis, and the functions' `live` aliases and versions. Each section reports its own
//! error instead of failing the whole command.

use super::clients::Clients;
use super::recovery::Recovery;
use super::render::StackKind;
use super::stacks::{self, sdk_error, StackInfo};
use super::wiring;
use crate::contract::{FUNCTIONS, LIVE_ALIAS};
use crate::stage::{RedisMode, Stage};
use anyhow::Context;
use serde::Serialize;

/// A section that could be read, or the reason it could not.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Section<T> {
    /// The data.
    pub value: Option<T>,
    /// Why the data is missing.
    pub error: Option<String>,
}

impl<T> Section<T> {
    fn from(result: anyhow::Result<T>) -> Section<T> {
        match result {
            Ok(v) => Section { value: Some(v), error: None },
            Err(e) => Section { value: None, error: Some(format!("{e:#}")) },
        }
    }
}

/// One stack.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackStatus {
    /// Which stack.
    pub kind: StackKind,
    /// Stack name.
    pub name: String,
    /// Its state; `None` when not deployed.
    pub stack: Option<StackInfo>,
    /// Newest events, newest first.
    pub last_events: Vec<String>,
    /// For a stack an interrupted or failed run left behind: what the next deploy does.
    pub next_deploy: Option<String>,
}

/// One API route.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// `$connect`, `$default`, …
    pub route_key: String,
    /// `integrations/ID`.
    pub target: Option<String>,
    /// `CUSTOM` for the authorizer, `NONE` otherwise.
    pub authorization: Option<String>,
}

/// Redis.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisStatus {
    /// Replication group id, or `external`.
    pub id: String,
    /// `available`, `creating`, …
    pub status: String,
    /// host:port.
    pub endpoint: Option<String>,
    /// Node type.
    pub node_type: Option<String>,
    /// Cluster mode.
    pub cluster_mode: Option<String>,
}

/// One function.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// Function name.
    pub name: String,
    /// `live` alias version (and canary weights).
    pub live: Section<String>,
    /// Published versions.
    pub versions: Vec<String>,
    /// SHA-256 (base64, as Lambda reports it) of `$LATEST`.
    pub code_sha256: Option<String>,
    /// Last update status.
    pub last_update_status: Option<String>,
}

/// The whole report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Stage.
    pub stage: String,
    /// Region.
    pub region: String,
    /// Where clients connect: the custom domain's URL when the stage has one (`api.domain`),
    /// else the execute-api URL; `None` before the app stack has outputs.
    pub websocket_url: Option<String>,
    /// The three stacks.
    pub stacks: Vec<StackStatus>,
    /// API routes.
    pub routes: Section<Vec<RouteStatus>>,
    /// Redis.
    pub redis: Section<RedisStatus>,
    /// Functions.
    pub functions: Vec<FunctionStatus>,
}

async fn last_events(clients: &Clients, stack: &str) -> Vec<String> {
    let Ok(out) = clients.cfn.describe_stack_events().stack_name(stack).send().await else { return Vec::new() };
    out.stack_events()
        .iter()
        .take(10)
        .map(|e| {
            format!(
                "{} {} {} {}",
                e.timestamp()
                    .and_then(|t| t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime).ok())
                    .unwrap_or_default(),
                e.resource_status().map(|s| s.as_str()).unwrap_or_default(),
                e.logical_resource_id().unwrap_or_default(),
                e.resource_status_reason().unwrap_or_default()
            )
            .trim_end()
            .to_owned()
        })
        .collect()
}

async fn routes(clients: &Clients, app_stack: &str) -> anyhow::Result<Vec<RouteStatus>> {
    let resources = stacks::stack_resources(&clients.cfn, app_stack).await?;
    let api = resources
        .get("Api")
        .and_then(|r| r.physical_id.clone())
        .with_context(|| format!("stack {app_stack} has no deployed Api resource"))?;
    let out = clients
        .apigw
        .get_routes()
        .api_id(&api)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("listing the routes of API {api}"))?;
    Ok(out
        .items()
        .iter()
        .map(|r| RouteStatus {
            route_key: r.route_key().unwrap_or_default().to_owned(),
            target: r.target().map(str::to_owned),
            authorization: r.authorization_type().map(|a| a.as_str().to_owned()),
        })
        .collect())
}

async fn redis(clients: &Clients, stage: &Stage) -> anyhow::Result<RedisStatus> {
    if stage.redis.mode == RedisMode::Existing {
        let (endpoint, _) = wiring::parse_redis_url(stage.redis.url.as_deref().unwrap_or_default())?;
        return Ok(RedisStatus {
            id: "external".into(),
            status: "not managed by wsctl".into(),
            endpoint: Some(endpoint),
            node_type: None,
            cluster_mode: None,
        });
    }
    let data_stack = StackKind::Data.stack_name(stage);
    let resources = stacks::stack_resources(&clients.cfn, &data_stack).await?;
    let id = resources
        .get("RedisReplicationGroup")
        .and_then(|r| r.physical_id.clone())
        .with_context(|| format!("stack {data_stack} has no RedisReplicationGroup"))?;
    let out = clients
        .elasticache
        .describe_replication_groups()
        .replication_group_id(&id)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("describing replication group {id}"))?;
    let rg = out.replication_groups().first().with_context(|| format!("no replication group {id}"))?;
    let endpoint = rg
        .configuration_endpoint()
        .or_else(|| rg.node_groups().first().and_then(|n| n.primary_endpoint()))
        .map(|e| format!("{}:{}", e.address().unwrap_or_default(), e.port().unwrap_or(6379)));
    Ok(RedisStatus {
        id,
        status: rg.status().unwrap_or_default().to_owned(),
        endpoint,
        node_type: rg.cache_node_type().map(str::to_owned),
        cluster_mode: rg.cluster_mode().map(|c| c.as_str().to_owned()),
    })
}

async fn function(clients: &Clients, name: String) -> FunctionStatus {
    let live = Section::from(
        clients.lambda.get_alias().function_name(&name).name(LIVE_ALIAS).send().await.map_err(sdk_error).map(|a| {
            let mut text = a.function_version().unwrap_or_default().to_owned();
            if let Some(weights) = a.routing_config().and_then(|r| r.additional_version_weights()) {
                for (v, w) in weights {
                    text.push_str(&format!(" (+ version {v} at {:.0}%)", w * 100.0));
                }
            }
            text
        }),
    );
    let versions = clients
        .lambda
        .list_versions_by_function()
        .function_name(&name)
        .send()
        .await
        .map(|o| {
            o.versions().iter().filter_map(|v| v.version().map(str::to_owned)).filter(|v| v != "$LATEST").collect()
        })
        .unwrap_or_default();
    let config = clients.lambda.get_function_configuration().function_name(&name).send().await.ok();
    FunctionStatus {
        live,
        versions,
        code_sha256: config.as_ref().and_then(|c| c.code_sha256().map(str::to_owned)),
        last_update_status: config.as_ref().and_then(|c| c.last_update_status().map(|s| s.as_str().to_owned())),
        name,
    }
}

/// Gathers the report.
pub async fn gather(clients: &Clients, stage: &Stage) -> anyhow::Result<StatusReport> {
    let mut stack_reports = Vec::new();
    for kind in [StackKind::Bootstrap, StackKind::Data, StackKind::App] {
        let name = kind.stack_name(stage);
        let stack = stacks::describe_stack(&clients.cfn, &name).await?;
        let last_events = if stack.is_some() { last_events(clients, &name).await } else { Vec::new() };
        let status = stack.as_ref().map(|s| s.status.as_str());
        let next_deploy = (!Recovery::settled(status)).then(|| Recovery::next_deploy(status));
        stack_reports.push(StackStatus { kind, name, stack, last_events, next_deploy });
    }
    let app_stack = StackKind::App.stack_name(stage);
    let app_deployed = stack_reports[2].stack.is_some();
    let mut functions = Vec::new();
    if app_deployed {
        for f in FUNCTIONS {
            functions.push(function(clients, f.deployed_name(&app_stack)).await);
        }
    }
    let websocket_url = stack_reports[2].stack.as_ref().and_then(|s| crate::contract::client_url(&s.outputs)).cloned();
    Ok(StatusReport {
        stage: stage.name.clone(),
        region: clients.region.clone(),
        websocket_url,
        stacks: stack_reports,
        routes: Section::from(routes(clients, &app_stack).await),
        redis: Section::from(redis(clients, stage).await),
        functions,
    })
}

/// Prints the report as text.
pub fn print_text(report: &StatusReport) {
    println!("stage {} ({})", report.stage, report.region);
    if let Some(url) = &report.websocket_url {
        println!("clients connect at {url}");
    }
    for s in &report.stacks {
        match &s.stack {
            None => println!("\n{} stack {}: not deployed", s.kind.label(), s.name),
            Some(info) => {
                println!(
                    "\n{} stack {}: {}{}",
                    s.kind.label(),
                    s.name,
                    info.status,
                    if info.termination_protection { " (termination protection on)" } else { "" }
                );
                if let Some(next) = &s.next_deploy {
                    println!("  next deploy: {next}");
                }
                for (k, v) in &info.outputs {
                    println!("  {k} = {v}");
                }
                if !s.last_events.is_empty() {
                    println!("  last events:");
                    for e in s.last_events.iter().take(5) {
                        println!("    {e}");
                    }
                }
            }
        }
    }
    println!("\nroutes:");
    match (&report.routes.value, &report.routes.error) {
        (Some(routes), _) => {
            for r in routes {
                println!(
                    "  {:<12} {} auth={}",
                    r.route_key,
                    r.target.as_deref().unwrap_or("-"),
                    r.authorization.as_deref().unwrap_or("NONE")
                );
            }
        }
        (None, Some(e)) => println!("  unavailable: {e}"),
        _ => {}
    }
    println!("\nredis:");
    match (&report.redis.value, &report.redis.error) {
        (Some(r), _) => println!(
            "  {} {} {} {}",
            r.id,
            r.status,
            r.endpoint.as_deref().unwrap_or("-"),
            r.node_type.as_deref().unwrap_or("")
        ),
        (None, Some(e)) => println!("  unavailable: {e}"),
        _ => {}
    }
    if !report.functions.is_empty() {
        println!("\nfunctions:");
        for f in &report.functions {
            let live = match (&f.live.value, &f.live.error) {
                (Some(v), _) => format!("live -> {v}"),
                (None, Some(e)) => format!("live alias unavailable ({})", e.lines().next().unwrap_or(e)),
                _ => String::new(),
            };
            println!(
                "  {:<28} {live}; versions [{}]; {}",
                f.name,
                f.versions.join(","),
                f.last_update_status.as_deref().unwrap_or("")
            );
        }
    }
}
