//! `wsctl status`: the stage's stacks (status, outputs, last events), the API's routes,
//! Redis, the functions' `live` aliases and versions, the stage's alarms and, with
//! `probe:`, the probe's last run and the month's availability. Each section reports its
//! own error instead of failing the whole command.

use super::clients::Clients;
use super::cloudwatch::{CloudWatch, MetricQuery, Series};
use super::recovery::Recovery;
use super::render::StackKind;
use super::stacks::{self, sdk_error, StackInfo};
use super::wiring;
use crate::contract::{FUNCTIONS, LIVE_ALIAS};
use crate::output::rfc3339;
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

/// One CloudWatch alarm of the stage's stacks (`alarms:`, the Redis memory, canary and
/// probe alarms).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmStatus {
    /// Which stack holds it.
    pub stack: StackKind,
    /// Logical id in that stack.
    pub logical_id: String,
    /// Alarm name (the physical id).
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`, as CloudWatch reports it.
    pub state: String,
    /// CloudWatch's reason for the state.
    pub reason: Option<String>,
}

/// The probe's measurements (`probe:`), from its metrics (namespace `wsctl/probe`,
/// dimension `Stage`, `Success` and `Failure` counts per run).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeStatus {
    /// `probe.slo_percent` of the stage file.
    pub slo_percent: f64,
    /// The newest minute with a run in the last 24 hours; `None` without one.
    pub last_run: Option<ProbeRun>,
    /// The calendar month (UTC) so far.
    pub month: Availability,
}

/// The newest minute the probe ran in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeRun {
    /// The minute, RFC 3339.
    pub at: String,
    /// Every run of that minute passed.
    pub passed: bool,
}

/// Passing runs over all runs since `since`.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    /// Start of the month, RFC 3339.
    pub since: String,
    /// Runs recorded (passed and failed).
    pub runs: u64,
    /// Runs that passed.
    pub passed: u64,
    /// `100 * passed / runs`; `None` without runs (no number is made up).
    pub percent: Option<f64>,
    /// Whether `percent` is at least the SLO; `None` without runs.
    pub meets_slo: Option<bool>,
}

impl Availability {
    fn of(since: String, passed: f64, failed: f64, slo_percent: f64) -> Availability {
        // Counts are sums of 0/1 datapoints, whole numbers.
        let (passed, failed) = (passed.round() as u64, failed.round() as u64);
        let runs = passed + failed;
        let percent = (runs > 0).then(|| 100.0 * passed as f64 / runs as f64);
        Availability { since, runs, passed, percent, meets_slo: percent.map(|p| p >= slo_percent) }
    }
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
    /// Every alarm of the data and app stacks, with its state.
    pub alarms: Section<Vec<AlarmStatus>>,
    /// The probe's last run and the month's availability; `None` without `probe:`.
    pub probe: Option<Section<ProbeStatus>>,
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

/// The logical id in a CloudFormation-generated alarm name of `stack`
/// (`STACK-LogicalId-SUFFIX`); `None` for any other name that merely shares the prefix
/// (another stage's stack `STACK-data-…`, an alarm named by hand).
fn logical_id_of<'a>(stack: &str, alarm_name: &'a str) -> Option<&'a str> {
    let rest = alarm_name.strip_prefix(stack)?.strip_prefix('-')?;
    let (logical, suffix) = rest.rsplit_once('-')?;
    let alphanumeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    (alphanumeric(logical) && alphanumeric(suffix)).then_some(logical)
}

/// The alarms of the deployed data and app stacks and their states: DescribeAlarms by
/// each stack's name prefix (CloudFormation names an alarm `STACK-LogicalId-SUFFIX`).
async fn alarms(cloudwatch: &CloudWatch, stage: &Stage, deployed: &[StackKind]) -> anyhow::Result<Vec<AlarmStatus>> {
    let mut found = Vec::new();
    for kind in [StackKind::Data, StackKind::App] {
        if !deployed.contains(&kind) {
            continue;
        }
        let stack = kind.stack_name(stage);
        let listed = cloudwatch
            .alarms_named(&format!("{stack}-"))
            .await
            .with_context(|| format!("reading the alarms of stack {stack}"))?;
        for a in listed {
            if let Some(logical_id) = logical_id_of(&stack, &a.name) {
                let logical_id = logical_id.to_owned();
                found.push(AlarmStatus { stack: kind, logical_id, name: a.name, state: a.state, reason: a.reason });
            }
        }
    }
    Ok(found)
}

/// Start of the calendar month (UTC) of `now`, epoch seconds.
fn month_start(now: i64) -> anyhow::Result<i64> {
    let t = time::OffsetDateTime::from_unix_timestamp(now).context("the clock")?;
    Ok(t.replace_day(1).context("the month's first day")?.replace_time(time::Time::MIDNIGHT).unix_timestamp())
}

/// The probe's `Success` and `Failure` sums per `period_secs` between `start` and `end`.
async fn probe_counts(
    cloudwatch: &CloudWatch,
    stage: &str,
    period_secs: u32,
    start: i64,
    end: i64,
) -> anyhow::Result<(Series, Series)> {
    let dimensions = [("Stage", stage)];
    let query = |id, metric| MetricQuery {
        id,
        namespace: wsctl_handlers::smoke::probe::NAMESPACE,
        metric,
        dimensions: &dimensions,
        period_secs,
        stat: "Sum",
    };
    let mut data = cloudwatch
        .metric_data(&[query("success", "Success"), query("failure", "Failure")], start, end)
        .await
        .context("reading the probe's metrics (cloudwatch:GetMetricData)")?;
    Ok((data.remove("success").unwrap_or_default(), data.remove("failure").unwrap_or_default()))
}

/// The newest minute in which the probe ran, from per-minute sums.
fn last_run(success: &Series, failure: &Series) -> Option<ProbeRun> {
    let newest = success.iter().chain(failure).filter(|(_, v)| *v > 0.0).map(|(t, _)| *t).max()?;
    let failed = failure.iter().any(|(t, v)| *t == newest && *v > 0.0);
    Some(ProbeRun { at: rfc3339(newest), passed: !failed })
}

/// The probe's last run (per-minute sums over the last 24 hours) and the availability of
/// the month so far (hourly sums: a month of them is one GetMetricData page).
async fn probe(cloudwatch: &CloudWatch, stage: &Stage, slo_percent: f64) -> anyhow::Result<ProbeStatus> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (success, failure) = probe_counts(cloudwatch, &stage.name, 60, now - 24 * 3600, now).await?;
    let last_run = last_run(&success, &failure);
    let since = month_start(now)?;
    let (success, failure) = probe_counts(cloudwatch, &stage.name, 3600, since, now.max(since + 60)).await?;
    let sum = |s: &Series| s.iter().map(|(_, v)| v).sum::<f64>();
    let month = Availability::of(rfc3339(since), sum(&success), sum(&failure), slo_percent);
    Ok(ProbeStatus { slo_percent, last_run, month })
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
    let deployed: Vec<StackKind> = stack_reports.iter().filter(|s| s.stack.is_some()).map(|s| s.kind).collect();
    let (alarms, probe) = match CloudWatch::new(&clients.sdk) {
        Ok(cloudwatch) => {
            let alarms = Section::from(alarms(&cloudwatch, stage, &deployed).await);
            // The probe's metrics, once the app stack (and so the probe) exists.
            let probe = match &stage.probe {
                Some(p) if deployed.contains(&StackKind::App) => {
                    Some(Section::from(probe(&cloudwatch, stage, p.slo_percent).await))
                }
                _ => None,
            };
            (alarms, probe)
        }
        Err(e) => (
            Section { value: None, error: Some(format!("{e:#}")) },
            stage.probe.as_ref().map(|_| Section { value: None, error: Some(format!("{e:#}")) }),
        ),
    };
    let websocket_url = stack_reports[2].stack.as_ref().and_then(|s| crate::contract::client_url(&s.outputs)).cloned();
    Ok(StatusReport {
        stage: stage.name.clone(),
        region: clients.region.clone(),
        websocket_url,
        stacks: stack_reports,
        routes: Section::from(routes(clients, &app_stack).await),
        redis: Section::from(redis(clients, stage).await),
        functions,
        alarms,
        probe,
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
    match (&report.alarms.value, &report.alarms.error) {
        (Some(alarms), _) if !alarms.is_empty() => {
            println!("\nalarms:");
            for a in alarms {
                println!(
                    "  {:<18} {:<40} {}",
                    a.state,
                    a.logical_id,
                    a.reason.as_deref().map(|r| r.lines().next().unwrap_or(r)).unwrap_or("")
                );
            }
        }
        (None, Some(e)) => println!("\nalarms: unavailable: {e}"),
        _ => {}
    }
    if let Some(section) = &report.probe {
        print_probe(section);
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

fn print_probe(section: &Section<ProbeStatus>) {
    let p = match (&section.value, &section.error) {
        (Some(p), _) => p,
        (None, Some(e)) => return println!("\nprobe: unavailable: {e}"),
        _ => return,
    };
    println!("\nprobe (SLO {}%):", p.slo_percent);
    match &p.last_run {
        Some(r) => println!("  last run: {} at {}", if r.passed { "passed" } else { "failed" }, r.at),
        None => println!("  last run: none in the last 24 hours"),
    }
    let m = &p.month;
    match (m.percent, m.meets_slo) {
        (Some(percent), Some(meets)) => println!(
            "  this month (since {}): {percent:.2}% available ({} of {} runs passed), {} the SLO",
            m.since,
            m.passed,
            m.runs,
            if meets { "meets" } else { "below" }
        ),
        _ => println!("  this month (since {}): no probe runs recorded this month", m.since),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cloudformation_names_of_the_stack_are_its_alarms() {
        assert_eq!(logical_id_of("wsctl-x-app", "wsctl-x-app-AlarmConnectErrors-1A2B3C"), Some("AlarmConnectErrors"));
        // Stage `x-app`'s data stack shares the prefix.
        assert_eq!(logical_id_of("wsctl-x-app", "wsctl-x-app-data-AlarmConnectionsTableThrottles-9Z"), None);
        assert_eq!(logical_id_of("wsctl-x-app", "wsctl-x-app-Alarm-With-Dashes"), None);
        assert_eq!(logical_id_of("wsctl-x-app", "wsctl-x-appAlarm-1"), None);
        assert_eq!(logical_id_of("wsctl-x-app", "wsctl-x-app-Alarm"), None);
    }

    #[test]
    fn availability_is_passed_over_runs_and_none_without_runs() {
        let a = Availability::of("m".into(), 9.0, 1.0, 99.9);
        assert_eq!((a.runs, a.passed, a.percent, a.meets_slo), (10, 9, Some(90.0), Some(false)));
        let a = Availability::of("m".into(), 1000.0, 0.0, 99.9);
        assert_eq!((a.percent, a.meets_slo), (Some(100.0), Some(true)));
        let none = Availability::of("m".into(), 0.0, 0.0, 99.9);
        assert_eq!((none.runs, none.percent, none.meets_slo), (0, None, None));
    }

    #[test]
    fn the_last_run_is_the_newest_minute_with_one() {
        assert!(last_run(&vec![(60, 0.0)], &vec![]).is_none());
        let run = last_run(&vec![(120, 1.0), (60, 1.0)], &vec![(180, 1.0)]).unwrap();
        assert_eq!((run.at.as_str(), run.passed), ("1970-01-01T00:03:00Z", false));
        let run = last_run(&vec![(240, 1.0)], &vec![(180, 1.0)]).unwrap();
        assert_eq!((run.at.as_str(), run.passed), ("1970-01-01T00:04:00Z", true));
    }

    #[test]
    fn the_month_starts_at_midnight_on_the_first() {
        let dec4 = 1_796_342_400 + 11 * 3600; // 2026-12-04T11:00:00Z
        assert_eq!(rfc3339(month_start(dec4).unwrap()), "2026-12-01T00:00:00Z");
    }
}
