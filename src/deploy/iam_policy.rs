//! `wsctl iam-policy --stage S`: the least-privilege IAM policies for a stage, printed
//! instead of kept by hand in the docs.
//!
//! The **deployer** policy covers what `wsctl deploy|plan|status|destroy` call themselves
//! (checked by `tests/deploy_iam.rs`, which records every AWS call of a moto e2e run and
//! fails on one this policy does not grant) and what CloudFormation does on the deployer's
//! behalf when the stacks run without a service role (which moto cannot show; kept next
//! to the templates). The **operator** policy covers `keys`, `connections`, `rooms` and
//! `publish` on the deployed stage.

use crate::contract::{self, BOOTSTRAP_STACK, LIVE_ALIAS};
use crate::stage::Stage;
use serde_json::{json, Value};

/// What the policies are scoped to.
struct Scope {
    partition: &'static str,
    account: String,
    region: String,
    prefix: String,
    /// The app stack (`contract::app_stack`).
    app: String,
    /// The data stack (`contract::data_stack`).
    data: String,
    api_stage: String,
    /// `api.domain`: the custom domain name and the hosted zone of its records.
    domain: Option<(String, Option<String>)>,
    /// `alarms`: whether they are on, and whether the data stack creates their topic.
    alarms: Option<bool>,
}

impl Scope {
    fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:{}:{service}:{}:{}:{resource}", self.partition, self.region, self.account)
    }
}

fn statement(sid: &str, actions: &[&str], resources: Vec<String>) -> Value {
    json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources })
}

fn policy(statements: Vec<Value>) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The deployer policy of a stage.
fn deployer(s: &Scope) -> Value {
    let p = s.partition;
    let stacks = vec![
        s.arn("cloudformation", &format!("stack/{}-*/*", s.prefix)),
        s.arn("cloudformation", &format!("stack/{BOOTSTRAP_STACK}/*")),
    ];
    let bucket = format!("wsctl-artifacts-{}-{}", s.account, s.region);
    let functions = s.arn("lambda", &format!("function:{}-*", s.app));
    let roles = format!("arn:{p}:iam::{}:role/{}-*", s.account, s.prefix);
    let bootstrap_roles = format!("arn:{p}:iam::{}:role/{BOOTSTRAP_STACK}-*", s.account);
    let mut statements = vec![
        // --- what wsctl calls itself
        statement("WhoAmI", &["sts:GetCallerIdentity"], vec!["*".into()]),
        statement(
            "Stacks",
            &[
                "cloudformation:CreateChangeSet",
                "cloudformation:DescribeChangeSet",
                "cloudformation:ExecuteChangeSet",
                "cloudformation:DeleteChangeSet",
                "cloudformation:ListChangeSets",
                "cloudformation:DescribeStacks",
                "cloudformation:DescribeStackEvents",
                "cloudformation:DescribeStackResources",
                "cloudformation:DeleteStack",
                "cloudformation:UpdateTerminationProtection",
                "cloudformation:CancelUpdateStack",
                "cloudformation:ContinueUpdateRollback",
            ],
            stacks,
        ),
        // Templates above the inline limit are read by CloudFormation from the bucket with
        // the caller's credentials.
        statement(
            "Artifacts",
            &["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
            vec![format!("arn:{p}:s3:::{bucket}"), format!("arn:{p}:s3:::{bucket}/*")],
        ),
        statement(
            "StatusAndVersions",
            &[
                "lambda:GetFunction",
                "lambda:GetFunctionConfiguration",
                "lambda:GetAlias",
                "lambda:ListAliases",
                "lambda:ListVersionsByFunction",
                "lambda:DeleteFunction",
            ],
            vec![functions.clone(), format!("{functions}:*")],
        ),
        statement(
            "RedisStatus",
            &["elasticache:DescribeReplicationGroups"],
            vec![s.arn("elasticache", &format!("replicationgroup:{}-*", s.prefix))],
        ),
        statement(
            "ApiStatus",
            &["apigateway:GET"],
            vec![
                format!("arn:{p}:apigateway:{}::/apis", s.region),
                format!("arn:{p}:apigateway:{}::/apis/*", s.region),
            ],
        ),
        // destroy: API Gateway's execution-log group.
        statement(
            "DestroyExecutionLogs",
            &["logs:DeleteLogGroup"],
            vec![s.arn("logs", "log-group:API-Gateway-Execution-Logs_*")],
        ),
        // --- what CloudFormation does with the deployer's credentials (no service role)
        statement(
            "CfnBootstrap",
            &[
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:PutBucketVersioning",
                "s3:PutEncryptionConfiguration",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutBucketOwnershipControls",
                "s3:PutLifecycleConfiguration",
                "s3:PutBucketTagging",
                "s3:GetBucketLocation",
            ],
            vec![format!("arn:{p}:s3:::{bucket}")],
        ),
        // The account's API Gateway CloudWatch role (AWS::ApiGateway::Account) and the API.
        statement(
            "CfnApiGateway",
            &["apigateway:GET", "apigateway:PATCH", "apigateway:POST", "apigateway:PUT", "apigateway:DELETE"],
            vec![
                format!("arn:{p}:apigateway:{}::/account", s.region),
                format!("arn:{p}:apigateway:{}::/apis", s.region),
                format!("arn:{p}:apigateway:{}::/apis/*", s.region),
                format!("arn:{p}:apigateway:{}::/tags/*", s.region),
            ],
        ),
    ];
    if let Some((name, zone)) = &s.domain {
        // api.domain: the domain name and its API mapping (AWS::ApiGatewayV2::DomainName,
        // ApiMapping), and the alias records in the stage's hosted zone only.
        statements.push(statement(
            "CfnCustomDomain",
            &["apigateway:GET", "apigateway:POST", "apigateway:PATCH", "apigateway:DELETE"],
            vec![
                format!("arn:{p}:apigateway:{}::/domainnames", s.region),
                format!("arn:{p}:apigateway:{}::/domainnames/{name}", s.region),
                format!("arn:{p}:apigateway:{}::/domainnames/{name}/*", s.region),
            ],
        ));
        if let Some(zone) = zone {
            statements.push(statement(
                "CfnDomainRecords",
                &["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets", "route53:GetHostedZone"],
                vec![format!("arn:{p}:route53:::hostedzone/{zone}")],
            ));
            statements.push(statement(
                "CfnDomainRecordsChange",
                &["route53:GetChange"],
                vec![format!("arn:{p}:route53:::change/*")],
            ));
        }
    }
    if let Some(creates_topic) = s.alarms {
        // alarms: the stage's dashboard (its ARN has no region), and the email topic.
        statements.push(statement(
            "CfnDashboard",
            &["cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"],
            vec![format!("arn:{p}:cloudwatch::{}:dashboard/{}-*", s.account, s.prefix)],
        ));
        if creates_topic {
            let topic = s.arn("sns", &format!("{}-alarms", s.prefix));
            statements.push(statement(
                "CfnAlarmTopic",
                &[
                    "sns:CreateTopic",
                    "sns:DeleteTopic",
                    "sns:GetTopicAttributes",
                    "sns:SetTopicAttributes",
                    "sns:Subscribe",
                    "sns:Unsubscribe",
                    "sns:ListSubscriptionsByTopic",
                    "sns:TagResource",
                ],
                vec![topic.clone(), format!("{topic}:*")],
            ));
        }
    }
    statements.extend([
        statement(
            "CfnRoles",
            &[
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:UpdateRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:PassRole",
            ],
            vec![roles, bootstrap_roles],
        ),
        // ElastiCache's first use in an account creates its service-linked role.
        json!({
            "Sid": "CfnElastiCacheServiceLinkedRole",
            "Effect": "Allow",
            "Action": ["iam:CreateServiceLinkedRole"],
            "Resource": [format!("arn:{p}:iam::{}:role/aws-service-role/elasticache.amazonaws.com/*", s.account)],
            "Condition": { "StringLike": { "iam:AWSServiceName": "elasticache.amazonaws.com" } }
        }),
        statement(
            "CfnFunctions",
            &[
                "lambda:CreateFunction",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:PublishVersion",
                "lambda:CreateAlias",
                "lambda:UpdateAlias",
                "lambda:DeleteAlias",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:ListTags",
                // The probe (`probe:`): its schedule's permission and its async-invoke settings.
                "lambda:AddPermission",
                "lambda:RemovePermission",
                "lambda:PutFunctionEventInvokeConfig",
                "lambda:UpdateFunctionEventInvokeConfig",
                "lambda:DeleteFunctionEventInvokeConfig",
                "lambda:GetFunctionEventInvokeConfig",
            ],
            vec![functions.clone(), format!("{functions}:*")],
        ),
        statement(
            "CfnProbeSchedule",
            &[
                "events:PutRule",
                "events:DeleteRule",
                "events:DescribeRule",
                "events:PutTargets",
                "events:RemoveTargets",
            ],
            vec![s.arn("events", &format!("rule/{}-app-*", s.prefix))],
        ),
        statement(
            "CfnTables",
            &[
                "dynamodb:CreateTable",
                "dynamodb:UpdateTable",
                "dynamodb:DeleteTable",
                "dynamodb:DescribeTable",
                "dynamodb:DescribeTimeToLive",
                "dynamodb:UpdateTimeToLive",
                "dynamodb:DescribeContinuousBackups",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:TagResource",
                "dynamodb:UntagResource",
                "dynamodb:ListTagsOfResource",
            ],
            vec![s.arn("dynamodb", &format!("table/{}-*", s.prefix))],
        ),
        statement(
            "CfnLogs",
            &[
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:PutRetentionPolicy",
                "logs:DeleteRetentionPolicy",
                "logs:TagResource",
                "logs:TagLogGroup",
                "logs:DescribeLogGroups",
            ],
            vec![
                s.arn("logs", &format!("log-group:/aws/lambda/{}-*", s.app)),
                s.arn("logs", &format!("log-group:/aws/apigateway/{}*", s.app)),
                s.arn("logs", "log-group:API-Gateway-Execution-Logs_*"),
            ],
        ),
        statement(
            "CfnRedisToken",
            &[
                "secretsmanager:CreateSecret",
                "secretsmanager:DeleteSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetRandomPassword",
                "secretsmanager:GetSecretValue",
                "secretsmanager:TagResource",
            ],
            vec![s.arn("secretsmanager", "secret:*")],
        ),
        // EC2 and ElastiCache creation and the CloudWatch and CodeDeploy actions support no
        // useful resource-level scoping before the resources exist.
        statement(
            "CfnNetworkRedisAlarmsRollout",
            &[
                "ec2:Describe*",
                "ec2:CreateVpc",
                "ec2:DeleteVpc",
                "ec2:ModifyVpcAttribute",
                "ec2:CreateSubnet",
                "ec2:DeleteSubnet",
                "ec2:CreateInternetGateway",
                "ec2:DeleteInternetGateway",
                "ec2:AttachInternetGateway",
                "ec2:DetachInternetGateway",
                "ec2:AllocateAddress",
                "ec2:ReleaseAddress",
                "ec2:CreateNatGateway",
                "ec2:DeleteNatGateway",
                "ec2:CreateRouteTable",
                "ec2:DeleteRouteTable",
                "ec2:CreateRoute",
                "ec2:DeleteRoute",
                "ec2:AssociateRouteTable",
                "ec2:DisassociateRouteTable",
                "ec2:CreateSecurityGroup",
                "ec2:DeleteSecurityGroup",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupEgress",
                "ec2:CreateVpcEndpoint",
                "ec2:DeleteVpcEndpoints",
                "ec2:CreateTags",
                "ec2:DeleteTags",
                "ec2:DeleteNetworkInterface",
                "elasticache:CreateReplicationGroup",
                "elasticache:ModifyReplicationGroup",
                "elasticache:DeleteReplicationGroup",
                "elasticache:CreateCacheSubnetGroup",
                "elasticache:DeleteCacheSubnetGroup",
                "elasticache:CreateCacheParameterGroup",
                "elasticache:ModifyCacheParameterGroup",
                "elasticache:DeleteCacheParameterGroup",
                "elasticache:Describe*",
                "elasticache:AddTagsToResource",
                "elasticache:ListTagsForResource",
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:DeleteAlarms",
                // `status`: the probe's last run and the month's availability.
                "cloudwatch:GetMetricData",
                "codedeploy:CreateApplication",
                "codedeploy:DeleteApplication",
                "codedeploy:CreateDeploymentConfig",
                "codedeploy:DeleteDeploymentConfig",
                "codedeploy:CreateDeploymentGroup",
                "codedeploy:UpdateDeploymentGroup",
                "codedeploy:DeleteDeploymentGroup",
                "codedeploy:CreateDeployment",
                "codedeploy:GetDeployment",
                "codedeploy:GetDeploymentConfig",
                "codedeploy:RegisterApplicationRevision",
            ],
            vec!["*".into()],
        ),
    ]);
    policy(statements)
}

/// The operator policy of a stage (`keys`, `connections`, `rooms`, `publish`).
fn operator(s: &Scope) -> Value {
    let tables = s.arn("dynamodb", &format!("table/{}-*", s.data));
    policy(vec![
        statement("WhoAmI", &["sts:GetCallerIdentity"], vec!["*".into()]),
        statement(
            "StackOutputs",
            &["cloudformation:DescribeStacks"],
            vec![s.arn("cloudformation", &format!("stack/{}/*", s.app))],
        ),
        statement(
            "RecordsAndKeys",
            &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
                "dynamodb:Scan",
            ],
            vec![tables.clone(), format!("{tables}/index/*")],
        ),
        statement(
            "LiveConnections",
            &["execute-api:ManageConnections"],
            vec![s.arn("execute-api", &format!("*/{}/*/@connections/*", s.api_stage))],
        ),
        statement(
            "AdminAndPublish",
            &["lambda:InvokeFunction"],
            vec![
                s.arn("lambda", &format!("function:{}:{LIVE_ALIAS}", contract::ADMIN.deployed_name(&s.app))),
                s.arn("lambda", &format!("function:{}:{LIVE_ALIAS}", contract::PUBLISH.deployed_name(&s.app))),
            ],
        ),
    ])
}

/// Both policies of a stage, `{stage, account, region, deployer, operator}`.
pub fn policies(stage: &Stage) -> anyhow::Result<Value> {
    let account = stage.require_account().map_err(anyhow::Error::msg)?.to_owned();
    let region = stage.require_region().map_err(anyhow::Error::msg)?.to_owned();
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    let scope = Scope {
        partition,
        account,
        region,
        prefix: stage.stack_prefix(),
        app: contract::app_stack(stage),
        data: contract::data_stack(stage),
        api_stage: stage.api.stage_name.clone(),
        domain: stage.api.domain.as_ref().map(|d| (d.name.clone(), d.hosted_zone_id.clone())),
        alarms: stage.alarms.as_ref().map(|a| a.email.is_some()),
    };
    Ok(json!({
        "stage": stage.name,
        "account": scope.account,
        "region": scope.region,
        "deployer": deployer(&scope),
        "operator": operator(&scope),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn deployer_of(yaml: &str) -> Value {
        let text = format!("region: eu-west-1\naccount: \"111111111111\"\n{yaml}");
        let stage = Stage::parse(Path::new("stages/t.yaml"), "t", &text).expect("stage");
        policies(&stage).expect("policies")["deployer"].clone()
    }

    fn sids(policy: &Value) -> Vec<String> {
        policy["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn a_custom_domain_adds_its_domain_name_and_only_its_hosted_zone() {
        assert!(!sids(&deployer_of("")).iter().any(|s| s.contains("Domain")));
        let policy = deployer_of(
            "api:\n  domain:\n    name: ws.example.com\n    certificate_arn: arn:aws:acm:eu-west-1:111111111111:certificate/x\n    hosted_zone_id: Z0ZONE\n",
        );
        let records = policy["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "CfnDomainRecords").unwrap();
        assert_eq!(records["Resource"], json!(["arn:aws:route53:::hostedzone/Z0ZONE"]));
        let domain = policy["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "CfnCustomDomain").unwrap();
        assert!(domain["Resource"].to_string().contains("/domainnames/ws.example.com"), "{domain}");
        let no_zone = deployer_of(
            "api:\n  domain:\n    name: ws.example.com\n    certificate_arn: arn:aws:acm:eu-west-1:111111111111:certificate/x\n",
        );
        assert!(sids(&no_zone).contains(&"CfnCustomDomain".to_owned()));
        assert!(!sids(&no_zone).contains(&"CfnDomainRecords".to_owned()), "no zone, no Route 53 grant");
    }

    #[test]
    fn alarms_add_the_dashboard_and_only_an_email_stage_its_topic() {
        assert!(!sids(&deployer_of("")).iter().any(|s| s == "CfnDashboard"));
        let topic = deployer_of("alarms:\n  topic_arn: arn:aws:sns:eu-west-1:111111111111:x\n");
        assert!(sids(&topic).contains(&"CfnDashboard".to_owned()));
        assert!(!sids(&topic).contains(&"CfnAlarmTopic".to_owned()), "a given topic is not the stage's to create");
        let email = deployer_of("alarms:\n  email: ops@example.com\n");
        let st = email["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "CfnAlarmTopic").unwrap();
        assert_eq!(st["Resource"][0], "arn:aws:sns:eu-west-1:111111111111:wsctl-t-alarms");
    }
}
