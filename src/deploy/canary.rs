//! Canary rollout on the `live` aliases, done by CloudFormation and CodeDeploy.
//!
//! With `rollout.strategy: canary`, every alias gets a `CodeDeployLambdaAliasUpdate`
//! update policy: when a deploy publishes a new version, CodeDeploy moves
//! `canary_percent` of the alias's traffic to it, waits `bake_minutes` while watching the
//! alias's error alarm, then shifts the rest, or rolls the alias back by itself when the
//! alarm fires. The stack update only completes once the shift has, so `wsctl deploy`
//! reports the outcome.

use super::alarms::{emf_stat, sum_of, EMF_EMITTERS};
use super::cfn_yaml::{cfn_getatt, cfn_ref, cfn_sub, CfnYamlError, Template};
use crate::contract::{FUNCTIONS, LIVE_ALIAS};
use crate::stage::RolloutSettings;
use serde_norway::{Mapping, Value};

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::from(k), v);
    }
    Value::Mapping(m)
}

fn seq(items: Vec<Value>) -> Value {
    Value::Sequence(items)
}

/// Adds alarm `alarm` (a resource of the template) to every deployment group's alarms and
/// lets the CodeDeploy role describe it: CodeDeploy then rolls back when it fires during a
/// bake. Call after [`add_canary`].
pub fn also_watch(template: &mut Template, alarm: &str) -> Result<(), CfnYamlError> {
    for f in FUNCTIONS {
        let group = template.resource_mut(&format!("{}DeploymentGroup", f.logical))?;
        let alarms = group
            .get_mut("Properties")
            .and_then(|p| p.get_mut("AlarmConfiguration"))
            .and_then(|c| c.get_mut("Alarms"))
            .and_then(Value::as_sequence_mut)
            .ok_or_else(|| CfnYamlError::MissingResource(format!("{}DeploymentGroup alarms", f.logical)))?;
        alarms.push(map(vec![("Name", cfn_ref(alarm))]));
    }
    let statements = template
        .resource_mut("CodeDeployRole")?
        .get_mut("Properties")
        .and_then(|p| p.get_mut("Policies"))
        .and_then(|p| p.get_mut(0))
        .and_then(|p| p.get_mut("PolicyDocument"))
        .and_then(|d| d.get_mut("Statement"))
        .and_then(Value::as_sequence_mut)
        .ok_or_else(|| CfnYamlError::MissingResource("CodeDeployRole policy".into()))?;
    let describe = statements
        .iter_mut()
        .find(|s| s.get("Action") == Some(&Value::from("cloudwatch:DescribeAlarms")))
        .and_then(|s| s.get_mut("Resource"))
        .and_then(Value::as_sequence_mut)
        .ok_or_else(|| CfnYamlError::MissingResource("CodeDeployRole DescribeAlarms statement".into()))?;
    describe.push(cfn_getatt(alarm, "Arn"));
    Ok(())
}

/// The rollback alarm on failures the handlers answer themselves: `unavailable` (a store
/// down) and `internal` replies are not function errors, so the `Errors` alarms never see
/// them. Rejections (no key, bad key, revoked key, a key at its cap, rate limits, bad
/// requests) count in neither: a scanner cannot roll a release back.
pub const HANDLED_ERRORS_ALARM: &str = "HandledErrorsAlarm";

/// The handlers' error codes that mean the service failed, not the caller (EMF
/// `errors_<code>`, handlers/src/metrics.rs).
const SERVICE_ERROR_CODES: [&str; 2] = ["unavailable", "internal"];

/// The handled-errors alarm: one metric-math sum of `errors_unavailable` and
/// `errors_internal` of the functions that answer requests themselves
/// ([`EMF_EMITTERS`]) in this stage, at the stage's `error_threshold` per minute.
fn handled_errors_alarm(rollout: &RolloutSettings) -> Value {
    let mut metrics = Vec::new();
    let mut ids = Vec::new();
    for (i, function) in EMF_EMITTERS.iter().enumerate() {
        for (j, code) in SERVICE_ERROR_CODES.iter().enumerate() {
            let id = format!("e{i}{j}");
            metrics.push(emf_stat(&id, &format!("errors_{code}"), function, 60));
            ids.push(id);
        }
    }
    metrics.push(map(vec![
        ("Id", "handled".into()),
        ("Expression", sum_of(&ids).into()),
        ("Label", "unavailable and internal replies".into()),
        ("ReturnData", true.into()),
    ]));
    map(vec![
        ("Type", "AWS::CloudWatch::Alarm".into()),
        (
            "Properties",
            map(vec![
                (
                    "AlarmDescription",
                    cfn_sub("wsctl canary ${StageName}: unavailable and internal replies of the handlers"),
                ),
                ("Metrics", seq(metrics)),
                ("EvaluationPeriods", Value::from(1)),
                ("Threshold", Value::from(rollout.error_threshold)),
                ("ComparisonOperator", "GreaterThanOrEqualToThreshold".into()),
                ("TreatMissingData", "notBreaching".into()),
            ]),
        ),
    ])
}

/// Adds the CodeDeploy application, role, deployment config, per function an error
/// alarm, a deployment group and the alias update policy, and the handled-errors alarm
/// ([`HANDLED_ERRORS_ALARM`]) every group also watches.
pub fn add_canary(template: &mut Template, rollout: &RolloutSettings) -> Result<(), CfnYamlError> {
    template.insert_resource(
        "CodeDeployApplication",
        map(vec![
            ("Type", "AWS::CodeDeploy::Application".into()),
            ("Properties", map(vec![("ComputePlatform", "Lambda".into())])),
        ]),
    );
    template.insert_resource(
        "CanaryDeploymentConfig",
        map(vec![
            ("Type", "AWS::CodeDeploy::DeploymentConfig".into()),
            (
                "Properties",
                map(vec![
                    ("ComputePlatform", "Lambda".into()),
                    (
                        "TrafficRoutingConfig",
                        map(vec![
                            ("Type", "TimeBasedCanary".into()),
                            (
                                "TimeBasedCanary",
                                map(vec![
                                    ("CanaryPercentage", Value::from(rollout.canary_percent)),
                                    ("CanaryInterval", Value::from(rollout.bake_minutes)),
                                ]),
                            ),
                        ]),
                    ),
                ]),
            ),
        ]),
    );

    let alias_arns: Vec<Value> =
        FUNCTIONS.iter().map(|f| cfn_sub(&format!("${{{}Function.Arn}}:{LIVE_ALIAS}", f.logical))).collect();
    let function_arns: Vec<Value> =
        FUNCTIONS.iter().map(|f| cfn_getatt(&format!("{}Function", f.logical), "Arn")).collect();
    let alarm_arns: Vec<Value> =
        FUNCTIONS.iter().map(|f| cfn_getatt(&format!("{}ErrorsAlarm", f.logical), "Arn")).collect();
    let mut lambda_resources = alias_arns;
    lambda_resources.extend(function_arns);
    template.insert_resource(
        "CodeDeployRole",
        map(vec![
            ("Type", "AWS::IAM::Role".into()),
            (
                "Properties",
                map(vec![
                    ("Description", "CodeDeploy shifts the live aliases (wsctl canary)".into()),
                    (
                        "AssumeRolePolicyDocument",
                        map(vec![
                            ("Version", "2012-10-17".into()),
                            (
                                "Statement",
                                seq(vec![map(vec![
                                    ("Effect", "Allow".into()),
                                    ("Principal", map(vec![("Service", "codedeploy.amazonaws.com".into())])),
                                    ("Action", "sts:AssumeRole".into()),
                                ])]),
                            ),
                        ]),
                    ),
                    (
                        "Policies",
                        seq(vec![map(vec![
                            ("PolicyName", "shift-live-aliases".into()),
                            (
                                "PolicyDocument",
                                map(vec![
                                    ("Version", "2012-10-17".into()),
                                    (
                                        "Statement",
                                        seq(vec![
                                            map(vec![
                                                ("Effect", "Allow".into()),
                                                (
                                                    "Action",
                                                    seq(vec![
                                                        "lambda:GetAlias".into(),
                                                        "lambda:UpdateAlias".into(),
                                                        "lambda:GetFunction".into(),
                                                        "lambda:GetProvisionedConcurrencyConfig".into(),
                                                    ]),
                                                ),
                                                ("Resource", seq(lambda_resources)),
                                            ]),
                                            map(vec![
                                                ("Effect", "Allow".into()),
                                                ("Action", "cloudwatch:DescribeAlarms".into()),
                                                ("Resource", seq(alarm_arns)),
                                            ]),
                                        ]),
                                    ),
                                ]),
                            ),
                        ])]),
                    ),
                ]),
            ),
        ]),
    );

    for f in FUNCTIONS {
        let alarm = format!("{}ErrorsAlarm", f.logical);
        let group = format!("{}DeploymentGroup", f.logical);
        let function = format!("{}Function", f.logical);
        template.insert_resource(
            &alarm,
            map(vec![
                ("Type", "AWS::CloudWatch::Alarm".into()),
                (
                    "Properties",
                    map(vec![
                        ("AlarmDescription", format!("wsctl canary: errors of the {} live alias", f.name).into()),
                        ("Namespace", "AWS/Lambda".into()),
                        ("MetricName", "Errors".into()),
                        (
                            "Dimensions",
                            seq(vec![
                                map(vec![("Name", "FunctionName".into()), ("Value", cfn_ref(&function))]),
                                map(vec![
                                    ("Name", "Resource".into()),
                                    ("Value", cfn_sub(&format!("${{{function}}}:{LIVE_ALIAS}"))),
                                ]),
                            ]),
                        ),
                        ("Statistic", "Sum".into()),
                        ("Period", Value::from(60)),
                        ("EvaluationPeriods", Value::from(1)),
                        ("Threshold", Value::from(rollout.error_threshold)),
                        ("ComparisonOperator", "GreaterThanOrEqualToThreshold".into()),
                        ("TreatMissingData", "notBreaching".into()),
                    ]),
                ),
            ]),
        );
        template.insert_resource(
            &group,
            map(vec![
                ("Type", "AWS::CodeDeploy::DeploymentGroup".into()),
                (
                    "Properties",
                    map(vec![
                        ("ApplicationName", cfn_ref("CodeDeployApplication")),
                        ("ServiceRoleArn", cfn_getatt("CodeDeployRole", "Arn")),
                        ("DeploymentConfigName", cfn_ref("CanaryDeploymentConfig")),
                        (
                            "DeploymentStyle",
                            map(vec![
                                ("DeploymentType", "BLUE_GREEN".into()),
                                ("DeploymentOption", "WITH_TRAFFIC_CONTROL".into()),
                            ]),
                        ),
                        (
                            "AlarmConfiguration",
                            map(vec![
                                ("Enabled", Value::from(true)),
                                ("Alarms", seq(vec![map(vec![("Name", cfn_ref(&alarm))])])),
                            ]),
                        ),
                        (
                            "AutoRollbackConfiguration",
                            map(vec![
                                ("Enabled", Value::from(true)),
                                ("Events", seq(vec!["DEPLOYMENT_FAILURE".into(), "DEPLOYMENT_STOP_ON_ALARM".into()])),
                            ]),
                        ),
                    ]),
                ),
            ]),
        );
        template.set_attribute(
            &format!("{}Alias", f.logical),
            "UpdatePolicy",
            map(vec![(
                "CodeDeployLambdaAliasUpdate",
                map(vec![
                    ("ApplicationName", cfn_ref("CodeDeployApplication")),
                    ("DeploymentGroupName", cfn_ref(&group)),
                ]),
            )]),
        )?;
    }
    template.insert_resource(HANDLED_ERRORS_ALARM, handled_errors_alarm(rollout));
    also_watch(template, HANDLED_ERRORS_ALARM)
}
