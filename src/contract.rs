//! The contract between `deploy` and everything that operates a deployed stage: stack
//! names, the app stack's output keys, the data stack's resources the app stack is wired
//! from, the six functions and the `live` alias they are reached through. Deploy writes
//! these (through `templates/*.yaml`), the operator commands, `logs`, `status` and `invoke`
//! read them; both sides name them only here. The tests below check every name against
//! the templates.

use crate::stage::Stage;

/// Name of the per-account/region bootstrap stack.
pub const BOOTSTRAP_STACK: &str = "wsctl-bootstrap";

/// The stage's data stack (VPC, Redis, tables).
pub fn data_stack(stage: &Stage) -> String {
    format!("{}-data", stage.stack_prefix())
}

/// The stage's app stack (functions, API).
pub fn app_stack(stage: &Stage) -> String {
    format!("{}-app", stage.stack_prefix())
}

/// The stage's CI stack (`wsctl ci-role`): its GitHub deploy role. Named outside the
/// stage's `PREFIX-*` so the deployer policy it carries does not cover it (nor the role it
/// creates, `wsctl-ci-PREFIX-DeployRole-…`): CI cannot change its own trust or policy.
pub fn ci_stack(stage: &Stage) -> String {
    format!("wsctl-ci-{}", stage.stack_prefix())
}

/// The alias every integration, permission and invoker targets; canary rollouts shift it.
pub const LIVE_ALIAS: &str = "live";

/// Keys of the app stack's outputs that wsctl reads (besides each function's
/// [`Function::output_key`]).
pub mod output {
    /// `wss://…/{stage}`: where clients connect.
    pub const WEBSOCKET_URL: &str = "WebSocketUrl";
    /// `https://…/{stage}`: the management API (`@connections`).
    pub const MANAGEMENT_ENDPOINT: &str = "ManagementEndpoint";
    /// The connections table.
    pub const CONNECTIONS_TABLE: &str = "ConnectionsTableName";
    /// The API-keys table.
    pub const API_KEYS_TABLE: &str = "ApiKeysTableName";
    /// The CI stack's deploy role (`role-to-assume` in a GitHub workflow).
    pub const DEPLOY_ROLE_ARN: &str = "DeployRoleArn";
    /// `wss://{api.domain.name}[/{base_path}]`, only with a custom domain: where clients
    /// connect when present (see [`client_url`](super::client_url)).
    pub const DOMAIN_WEBSOCKET_URL: &str = "DomainWebSocketUrl";
}

/// The URL clients should connect to, from the app stack's outputs: the custom domain's
/// when the stage has one, else the execute-api URL.
pub fn client_url(outputs: &std::collections::BTreeMap<String, String>) -> Option<&String> {
    outputs.get(output::DOMAIN_WEBSOCKET_URL).or_else(|| outputs.get(output::WEBSOCKET_URL))
}

/// Logical ids of the data stack's resources whose physical ids the app stack is wired
/// from (`deploy/wiring.rs`).
pub mod data_resource {
    /// First private subnet (when the stage creates its VPC).
    pub const PRIVATE_SUBNET_A: &str = "PrivateSubnetA";
    /// Second private subnet.
    pub const PRIVATE_SUBNET_B: &str = "PrivateSubnetB";
    /// The functions' security group.
    pub const LAMBDA_SECURITY_GROUP: &str = "LambdaSecurityGroup";
    /// The Redis replication group (when the stage creates Redis).
    pub const REDIS_REPLICATION_GROUP: &str = "RedisReplicationGroup";
    /// The Redis AUTH token secret (with `redis.auth_token`).
    pub const REDIS_AUTH_SECRET: &str = "RedisAuthSecret";
    /// The connections table.
    pub const CONNECTIONS_TABLE: &str = "ConnectionsTable";
    /// The API-keys table.
    pub const API_KEYS_TABLE: &str = "ApiKeysTable";
}

/// One handler binary of package `wsctl-handlers` and its resources in the app template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Binary name (`cargo build -p wsctl-handlers --bin NAME`) and function-name suffix.
    pub name: &'static str,
    /// Prefix of its logical ids in `templates/app.yaml` (`ConnectFunction`, `ConnectAlias`…).
    pub logical: &'static str,
}

/// Every function, in template order.
pub const FUNCTIONS: [Function; 6] = [
    Function { name: "authorizer", logical: "Authorizer" },
    Function { name: "connect", logical: "Connect" },
    Function { name: "disconnect", logical: "Disconnect" },
    Function { name: "message", logical: "Message" },
    Function { name: "publish", logical: "Publish" },
    Function { name: "admin", logical: "Admin" },
];

/// The `admin` function: the operator commands' way into a deployed stage.
pub const ADMIN: Function = FUNCTIONS[5];
/// The `publish` function: producers' way to publish.
pub const PUBLISH: Function = FUNCTIONS[4];

/// The opt-in seventh function (`probe:` in the stage file): always built and packaged, so
/// one manifest promotes to every stage whichever of them enable it; deployed only where
/// the stage sets `probe:` (`templates/probe.yaml`). It has no alias: its schedule invokes
/// the latest code.
pub const PROBE: Function = Function { name: "probe", logical: "Probe" };

/// Every function a build packages: the six, then the probe.
pub fn packaged() -> impl Iterator<Item = Function> {
    FUNCTIONS.into_iter().chain([PROBE])
}

impl Function {
    /// The function by its binary name.
    pub fn named(name: &str) -> Option<Function> {
        FUNCTIONS.into_iter().find(|f| f.name == name)
    }

    /// The app stack output holding the deployed function's name (`ConnectFunctionName`).
    pub fn output_key(self) -> String {
        format!("{}FunctionName", self.logical)
    }

    /// The function's name in the app stack `app_stack` (`FunctionName: ${AWS::StackName}-NAME`),
    /// and so its log group's last part.
    pub fn deployed_name(self, app_stack: &str) -> String {
        format!("{app_stack}-{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{APP_TEMPLATE, DATA_TEMPLATE};
    use serde_norway::Value;

    fn section(template: &str, name: &str) -> Vec<String> {
        let root: Value = serde_norway::from_str(template).expect("the template parses");
        let map = root.get(name).and_then(Value::as_mapping).unwrap_or_else(|| panic!("no {name} section"));
        map.keys().filter_map(Value::as_str).map(str::to_owned).collect()
    }

    #[test]
    fn every_output_key_wsctl_reads_is_an_output_of_the_app_template() {
        let outputs = section(APP_TEMPLATE, "Outputs");
        let read = [
            output::WEBSOCKET_URL,
            output::MANAGEMENT_ENDPOINT,
            output::CONNECTIONS_TABLE,
            output::API_KEYS_TABLE,
            output::DOMAIN_WEBSOCKET_URL,
        ]
        .map(str::to_owned)
        .into_iter()
        .chain(FUNCTIONS.map(Function::output_key));
        for key in read {
            assert!(outputs.contains(&key), "templates/app.yaml has no output {key}: {outputs:?}");
        }
    }

    #[test]
    fn every_data_resource_the_app_is_wired_from_is_in_the_data_template() {
        let resources = section(DATA_TEMPLATE, "Resources");
        for id in [
            data_resource::PRIVATE_SUBNET_A,
            data_resource::PRIVATE_SUBNET_B,
            data_resource::LAMBDA_SECURITY_GROUP,
            data_resource::REDIS_REPLICATION_GROUP,
            data_resource::REDIS_AUTH_SECRET,
            data_resource::CONNECTIONS_TABLE,
            data_resource::API_KEYS_TABLE,
        ] {
            assert!(resources.iter().any(|r| r == id), "templates/data.yaml has no resource {id}");
        }
    }

    #[test]
    fn every_function_is_declared_as_the_contract_names_it() {
        let root: Value = serde_norway::from_str(APP_TEMPLATE).expect("the template parses");
        let resources = &root["Resources"];
        for f in FUNCTIONS {
            let function = &resources[format!("{}Function", f.logical).as_str()];
            let name = serde_norway::to_string(&function["Properties"]["FunctionName"]).expect("serializes");
            assert!(name.contains(&format!("${{AWS::StackName}}-{}", f.name)), "{}Function is named {name}", f.logical);
            let alias = &resources[format!("{}Alias", f.logical).as_str()]["Properties"]["Name"];
            assert_eq!(alias.as_str(), Some(LIVE_ALIAS), "{}Alias", f.logical);
        }
        assert_eq!(Function::named("admin"), Some(ADMIN));
        assert_eq!(Function::named("publish"), Some(PUBLISH));
        assert_eq!(ADMIN.output_key(), "AdminFunctionName");
    }

    #[test]
    fn clients_are_sent_to_the_custom_domain_when_there_is_one() {
        let mut outputs = std::collections::BTreeMap::new();
        assert_eq!(client_url(&outputs), None);
        outputs.insert(output::WEBSOCKET_URL.to_owned(), "wss://a.execute-api/live".to_owned());
        assert_eq!(client_url(&outputs).map(String::as_str), Some("wss://a.execute-api/live"));
        outputs.insert(output::DOMAIN_WEBSOCKET_URL.to_owned(), "wss://ws.example.com".to_owned());
        assert_eq!(client_url(&outputs).map(String::as_str), Some("wss://ws.example.com"));
    }
}
