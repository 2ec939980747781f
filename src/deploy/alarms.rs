//! `alarms:`: CloudWatch alarms on a stage's SLA signals and one dashboard, added to the
//! rendered templates only when the stage asks for them (a stage without the section
//! renders exactly as before, and pays nothing).
//!
//! The data stack gets what watches its own resources: the SNS topic for `alarms.email`,
//! DynamoDB throttles and system errors per table, and, when it creates Redis, engine CPU,
//! evictions and replication lag per shard (memory has its own alarm, `redis.memory_alarm_percent`)
//! — and every data-stack alarm, the memory ones included, notifies the topic. The app stack
//! gets the functions' errors, throttles and p99 duration, the API's errors, client errors
//! and stalled connects, the handlers' EMF counters, and the dashboard; with `probe:` the
//! probe's availability and failed-run alarms notify the topic too. Both stacks name the
//! topic by its ARN (given, or `PREFIX-alarms` built from the region and account), so no
//! export couples them.
//!
//! Every alarm this module adds has an id starting with `Alarm`; `wsctl status` lists all
//! of a stack's alarms by CloudFormation's name prefix (`STACK-LogicalId-…`).

use super::cfn_yaml::{cfn_ref, cfn_sub, tagged, CfnYamlError, Template};
use crate::contract::FUNCTIONS;
use crate::stage::{AlarmSettings, RedisMode, Stage};
use serde_json::json;
use serde_norway::{Mapping, Value};

/// Logical id prefix of every alarm this module adds.
pub const ALARM_PREFIX: &str = "Alarm";
/// Period of every alarm, seconds.
const PERIOD: u32 = 300;
/// The handlers' EMF namespace (handlers/src/lambda.rs).
const EMF_NAMESPACE: &str = "wsctl";

/// The functions that answer requests themselves and count their replies in EMF (the
/// `function` dimension, the binary's name).
const EMF_EMITTERS: [&str; 4] = ["message", "publish", "admin", "connect"];

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::from(k), v);
    }
    Value::Mapping(m)
}

fn dims(entries: Vec<(&str, Value)>) -> Value {
    Value::Sequence(entries.into_iter().map(|(k, v)| map(vec![("Name", k.into()), ("Value", v)])).collect())
}

/// The topic the alarms notify, as a template value; `None` without one.
fn topic(stage: &Stage, a: &AlarmSettings) -> Option<Value> {
    match (&a.topic_arn, &a.email) {
        (Some(arn), _) => Some(Value::from(arn.as_str())),
        (None, Some(_)) => Some(cfn_sub(&format!(
            "arn:${{AWS::Partition}}:sns:${{AWS::Region}}:${{AWS::AccountId}}:{}",
            topic_name(stage)
        ))),
        (None, None) => None,
    }
}

/// Name of the topic the data stack creates for `alarms.email`.
pub fn topic_name(stage: &Stage) -> String {
    format!("{}-alarms", stage.stack_prefix())
}

/// One alarm's common properties; `metric` holds the metric (or `Metrics`) entries.
fn alarm(
    description: &str,
    metric: Vec<(&str, Value)>,
    threshold: f64,
    evaluations: u32,
    topic: &Option<Value>,
) -> Value {
    let mut props = vec![("AlarmDescription", cfn_sub(&format!("wsctl ${{StageName}}: {description}")))];
    props.extend(metric);
    props.extend([
        ("EvaluationPeriods", Value::from(evaluations)),
        ("ComparisonOperator", Value::from("GreaterThanOrEqualToThreshold")),
        ("Threshold", Value::from(threshold)),
        // No datapoint means no errors (and no traffic): not an alarm.
        ("TreatMissingData", Value::from("notBreaching")),
    ]);
    if let Some(t) = topic {
        props.push(("AlarmActions", Value::Sequence(vec![t.clone()])));
        props.push(("OKActions", Value::Sequence(vec![t.clone()])));
    }
    map(vec![("Type", "AWS::CloudWatch::Alarm".into()), ("Properties", map(props))])
}

/// A single-metric alarm's metric entries.
fn single(
    namespace: &str,
    name: &str,
    dimensions: Value,
    statistic: (&'static str, &str),
) -> Vec<(&'static str, Value)> {
    vec![
        ("Namespace", namespace.into()),
        ("MetricName", name.into()),
        ("Dimensions", dimensions),
        (statistic.0, statistic.1.into()),
        ("Period", Value::from(PERIOD)),
    ]
}

fn stat(id: &str, namespace: &str, name: &str, dimensions: Value) -> Value {
    stat_every(id, namespace, name, dimensions, PERIOD)
}

/// One `Sum` of a metric over `period` seconds, as a metric-math input (not returned).
fn stat_every(id: &str, namespace: &str, name: &str, dimensions: Value, period: u32) -> Value {
    map(vec![
        ("Id", id.into()),
        ("ReturnData", false.into()),
        (
            "MetricStat",
            map(vec![
                (
                    "Metric",
                    map(vec![("Namespace", namespace.into()), ("MetricName", name.into()), ("Dimensions", dimensions)]),
                ),
                ("Period", Value::from(period)),
                ("Stat", "Sum".into()),
            ]),
        ),
    ])
}

/// The handlers' EMF counter `metric` of `function` in this stage (dimensions `function`
/// and `stage`), summed over `period` seconds, as a metric-math input named `id`.
fn emf_stat(id: &str, metric: &str, function: &str, period: u32) -> Value {
    let dimensions = dims(vec![("function", function.into()), ("stage", cfn_ref("StageName"))]);
    stat_every(id, EMF_NAMESPACE, metric, dimensions, period)
}

/// A metric-math alarm's entries: the `stats` and one returned expression.
fn math(stats: Vec<Value>, expression: &str) -> Vec<(&'static str, Value)> {
    let mut metrics = stats;
    metrics.push(map(vec![("Id", "result".into()), ("Expression", expression.into()), ("ReturnData", true.into())]));
    vec![("Metrics", Value::Sequence(metrics))]
}

/// `FILL(m1,0)+FILL(m2,0)+…` over the ids.
fn sum_of(ids: &[String]) -> String {
    ids.iter().map(|id| format!("FILL({id},0)")).collect::<Vec<_>>().join("+")
}

/// Adds the data stack's topic, DynamoDB and Redis alarms, and actions on the memory alarms.
pub fn add_data_alarms(template: &mut Template, stage: &Stage, a: &AlarmSettings) -> Result<(), CfnYamlError> {
    let topic = topic(stage, a);
    if let Some(email) = &a.email {
        template.insert_resource(
            "AlarmTopic",
            map(vec![
                ("Type", "AWS::SNS::Topic".into()),
                (
                    "Properties",
                    map(vec![
                        ("TopicName", Value::from(topic_name(stage))),
                        ("KmsMasterKeyId", "alias/aws/sns".into()),
                        (
                            "Subscription",
                            Value::Sequence(vec![map(vec![
                                ("Protocol", "email".into()),
                                ("Endpoint", email.as_str().into()),
                            ])]),
                        ),
                    ]),
                ),
            ]),
        );
    }
    for table in ["ConnectionsTable", "ApiKeysTable"] {
        let d = || dims(vec![("TableName", cfn_ref(table))]);
        template.insert_resource(
            &format!("{ALARM_PREFIX}{table}Throttles"),
            alarm(
                &format!("DynamoDB {table} read+write throttle events"),
                math(
                    vec![
                        stat("reads", "AWS/DynamoDB", "ReadThrottleEvents", d()),
                        stat("writes", "AWS/DynamoDB", "WriteThrottleEvents", d()),
                    ],
                    "FILL(reads,0)+FILL(writes,0)",
                ),
                a.dynamodb_throttles.into(),
                1,
                &topic,
            ),
        );
        // SystemErrors is published per operation: the operations the handlers use.
        let ops = ["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"];
        let ids: Vec<String> = ops.iter().map(|o| o.to_ascii_lowercase()).collect();
        let stats = ops
            .iter()
            .zip(&ids)
            .map(|(op, id)| {
                stat(
                    id,
                    "AWS/DynamoDB",
                    "SystemErrors",
                    dims(vec![("TableName", cfn_ref(table)), ("Operation", (*op).into())]),
                )
            })
            .collect();
        template.insert_resource(
            &format!("{ALARM_PREFIX}{table}SystemErrors"),
            alarm(
                &format!("DynamoDB {table} system errors (5xx)"),
                math(stats, &sum_of(&ids)),
                a.dynamodb_system_errors.into(),
                1,
                &topic,
            ),
        );
    }
    let r = &stage.redis;
    if r.mode == RedisMode::Create {
        let node = |shard: u32, node: u32| {
            if r.cluster_enabled() {
                cfn_sub(&format!("${{RedisReplicationGroup}}-{shard:04}-{node:03}"))
            } else {
                cfn_sub(&format!("${{RedisReplicationGroup}}-{node:03}"))
            }
        };
        let shards = if r.cluster_enabled() { r.shards } else { 1 };
        for shard in 1..=shards {
            let primary = || dims(vec![("CacheClusterId", node(shard, 1))]);
            let mut add = |id: String, body: Value| {
                let mut body = body;
                body["Condition"] = "CreateRedis".into();
                template.insert_resource(&id, body);
            };
            add(
                format!("{ALARM_PREFIX}RedisCpuShard{shard:04}"),
                alarm(
                    &format!("Redis shard {shard} engine CPU"),
                    single("AWS/ElastiCache", "EngineCPUUtilization", primary(), ("Statistic", "Average")),
                    a.redis_cpu_percent.into(),
                    3,
                    &topic,
                ),
            );
            add(
                format!("{ALARM_PREFIX}RedisEvictionsShard{shard:04}"),
                alarm(
                    &format!("Redis shard {shard} evictions (the policy is noeviction)"),
                    single("AWS/ElastiCache", "Evictions", primary(), ("Statistic", "Sum")),
                    a.redis_evictions.into(),
                    1,
                    &topic,
                ),
            );
            if r.replicas_per_shard > 0 {
                add(
                    format!("{ALARM_PREFIX}RedisReplicationLagShard{shard:04}"),
                    alarm(
                        &format!("Redis shard {shard} replica lag, seconds"),
                        single(
                            "AWS/ElastiCache",
                            "ReplicationLag",
                            dims(vec![("CacheClusterId", node(shard, 2))]),
                            ("Statistic", "Maximum"),
                        ),
                        a.redis_replication_lag_secs.into(),
                        3,
                        &topic,
                    ),
                );
            }
        }
        // The memory alarms (redis.memory_alarm_percent) notify the topic too.
        notify_existing(template, "RedisMemoryAlarm", &topic)?;
    }
    Ok(())
}

/// Points the template's alarms whose ids start with `prefix` (declared elsewhere, without
/// actions) at the topic.
fn notify_existing(template: &mut Template, prefix: &str, topic: &Option<Value>) -> Result<(), CfnYamlError> {
    let Some(t) = topic else { return Ok(()) };
    for id in template.ids_of_type("AWS::CloudWatch::Alarm") {
        if id.starts_with(prefix) {
            let body = template.resource_mut(&id)?;
            if let Some(p) = body.get_mut("Properties").and_then(Value::as_mapping_mut) {
                p.insert("AlarmActions".into(), Value::Sequence(vec![t.clone()]));
                p.insert("OKActions".into(), Value::Sequence(vec![t.clone()]));
            }
        }
    }
    Ok(())
}

/// Adds the app stack's function, API and EMF alarms and the dashboard.
pub fn add_app_alarms(template: &mut Template, stage: &Stage, a: &AlarmSettings) -> Result<(), CfnYamlError> {
    let topic = topic(stage, a);
    let p99_ms = f64::from(stage.lambda.timeout_secs) * 1000.0 * f64::from(a.lambda_duration_p99_percent) / 100.0;
    for f in FUNCTIONS {
        let function = || dims(vec![("FunctionName", cfn_ref(&format!("{}Function", f.logical)))]);
        template.insert_resource(
            &format!("{ALARM_PREFIX}{}Errors", f.logical),
            alarm(
                &format!("{} function errors (internal failures)", f.name),
                single("AWS/Lambda", "Errors", function(), ("Statistic", "Sum")),
                a.lambda_errors.into(),
                1,
                &topic,
            ),
        );
        template.insert_resource(
            &format!("{ALARM_PREFIX}{}Throttles", f.logical),
            alarm(
                &format!("{} throttled invocations", f.name),
                single("AWS/Lambda", "Throttles", function(), ("Statistic", "Sum")),
                a.lambda_throttles.into(),
                1,
                &topic,
            ),
        );
        template.insert_resource(
            &format!("{ALARM_PREFIX}{}DurationP99", f.logical),
            alarm(
                &format!("{} p99 duration near the timeout", f.name),
                single("AWS/Lambda", "Duration", function(), ("ExtendedStatistic", "p99")),
                p99_ms.round(),
                3,
                &topic,
            ),
        );
    }
    let api = || dims(vec![("ApiId", cfn_ref("Api")), ("Stage", cfn_ref("ApiStageName"))]);
    template.insert_resource(
        &format!("{ALARM_PREFIX}ApiErrors"),
        alarm(
            "API integration and execution errors (5xx)",
            math(
                vec![
                    stat("integration", "AWS/ApiGateway", "IntegrationError", api()),
                    stat("execution", "AWS/ApiGateway", "ExecutionError", api()),
                ],
                "FILL(integration,0)+FILL(execution,0)",
            ),
            a.api_errors.into(),
            1,
            &topic,
        ),
    );
    template.insert_resource(
        &format!("{ALARM_PREFIX}ApiClientErrors"),
        alarm(
            "API client errors (4xx, refused connects among them)",
            single("AWS/ApiGateway", "ClientError", api(), ("Statistic", "Sum")),
            a.api_client_errors.into(),
            1,
            &topic,
        ),
    );
    // New connections stopped while messages still flow on the open ones: $connect is
    // broken (authorizer, connect function, a bad deploy), not traffic gone.
    template.insert_resource(
        &format!("{ALARM_PREFIX}ConnectStalled"),
        alarm(
            "no new connections while messages flow ($connect broken?)",
            math(
                vec![
                    stat("connects", "AWS/ApiGateway", "ConnectCount", api()),
                    stat("messages", "AWS/ApiGateway", "MessageCount", api()),
                ],
                "IF(FILL(messages,0) > 0 AND FILL(connects,0) == 0, 1, 0)",
            ),
            1.0,
            a.connect_stall_minutes.div_ceil(5),
            &topic,
        ),
    );
    // The handlers' EMF counters (namespace wsctl, dimensions function = the binary's name
    // and stage).
    for (id, metric, threshold, what) in [
        ("FanoutFailures", "delivery_failures", a.fanout_failures, "failed deliveries"),
        ("PrunedConnections", "prunes", a.pruned_connections, "gone connections pruned"),
        (
            "UnavailableReplies",
            "errors_unavailable",
            a.unavailable_replies,
            "`unavailable` replies (Redis or DynamoDB down)",
        ),
    ] {
        let ids: Vec<String> = EMF_EMITTERS.iter().map(|e| format!("m_{e}")).collect();
        let stats = EMF_EMITTERS.iter().zip(&ids).map(|(e, i)| emf_stat(i, metric, e, PERIOD)).collect();
        template.insert_resource(
            &format!("{ALARM_PREFIX}{id}"),
            alarm(&format!("handlers: {what}"), math(stats, &sum_of(&ids)), threshold.into(), 1, &topic),
        );
    }
    // The probe's availability and failed-run alarms (`probe:`) are the SLA's own.
    notify_existing(template, "Probe", &topic)?;
    template.insert_resource("Dashboard", dashboard(stage));
    Ok(())
}

/// One dashboard: API traffic and errors, per-function errors/throttles/p99, the EMF
/// counters and, with `probe:`, the probe's passed and failed runs. Redis and DynamoDB live
/// in the data stack; their alarms show their metrics.
fn dashboard(stage: &Stage) -> Value {
    let api = |m: &str| json!(["AWS/ApiGateway", m, "ApiId", "${Api}", "Stage", "${ApiStageName}"]);
    let per_function = |m: &str| -> Vec<serde_json::Value> {
        FUNCTIONS
            .iter()
            .map(|f| json!(["AWS/Lambda", m, "FunctionName", format!("${{{}Function}}", f.logical)]))
            .collect()
    };
    let emf = |m: &str| -> Vec<serde_json::Value> {
        EMF_EMITTERS.iter().map(|f| json!([EMF_NAMESPACE, m, "function", f, "stage", "${StageName}"])).collect()
    };
    let widget = |title: &str, metrics: Vec<serde_json::Value>, stat: &str, x: u32, y: u32| {
        json!({
            "type": "metric", "x": x, "y": y, "width": 12, "height": 6,
            "properties": { "title": title, "region": "${AWS::Region}", "stat": stat, "period": 60, "metrics": metrics }
        })
    };
    let mut body = json!({ "widgets": [
        widget("Connections and messages", vec![api("ConnectCount"), api("MessageCount")], "Sum", 0, 0),
        widget("API errors", vec![api("IntegrationError"), api("ExecutionError"), api("ClientError")], "Sum", 12, 0),
        widget("Function errors", per_function("Errors"), "Sum", 0, 6),
        widget("Function throttles", per_function("Throttles"), "Sum", 12, 6),
        widget("Function duration p99 (ms)", per_function("Duration"), "p99", 0, 12),
        widget("Integration latency p99 (ms)", vec![api("IntegrationLatency")], "p99", 12, 12),
        widget("Failed deliveries", emf("delivery_failures"), "Sum", 0, 18),
        widget("Pruned connections / unavailable replies",
            emf("prunes").into_iter().chain(emf("errors_unavailable")).collect(), "Sum", 12, 18),
    ]});
    if stage.probe.is_some() {
        let probe = |m: &str| json!([wsctl_handlers::smoke::probe::NAMESPACE, m, "Stage", "${StageName}"]);
        let runs = widget("Probe runs: passed and failed", vec![probe("Success"), probe("Failure")], "Sum", 0, 24);
        body["widgets"].as_array_mut().expect("widgets").push(runs);
    }
    map(vec![
        ("Type", "AWS::CloudWatch::Dashboard".into()),
        (
            "Properties",
            map(vec![
                (
                    "DashboardName",
                    Value::from(format!("{}-{}", stage.stack_prefix(), stage.region.as_deref().unwrap_or("region"))),
                ),
                ("DashboardBody", tagged("!Sub", Value::from(body.to_string()))),
            ]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// app.yaml declares the canary's `HandledErrorsAlarm` itself: it must watch the EMF
    /// counters of exactly the functions that emit them, in their namespace.
    #[test]
    fn the_canary_alarm_of_app_yaml_watches_every_emf_emitter() {
        let t = Template::parse("app.yaml", super::super::render::APP_TEMPLATE).expect("app.yaml");
        let alarm = t.resource("HandledErrorsAlarm").expect("HandledErrorsAlarm");
        let metrics: Vec<&Value> = alarm["Properties"]["Metrics"]
            .as_sequence()
            .expect("metric math")
            .iter()
            .filter_map(|m| m.get("MetricStat"))
            .map(|s| &s["Metric"])
            .collect();
        assert!(metrics.iter().all(|m| m["Namespace"] == EMF_NAMESPACE), "{metrics:?}");
        let mut functions: Vec<&str> = metrics
            .iter()
            .flat_map(|m| m["Dimensions"].as_sequence().into_iter().flatten())
            .filter(|d| d["Name"] == "function")
            .filter_map(|d| d["Value"].as_str())
            .collect();
        functions.sort_unstable();
        functions.dedup();
        let mut emitters = EMF_EMITTERS.to_vec();
        emitters.sort_unstable();
        assert_eq!(functions, emitters);
    }
}
