//! The six Lambda functions wsctl deploys, by binary name and template logical-id prefix.

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

/// The alias every integration, permission and invoker targets.
pub const LIVE_ALIAS: &str = "live";
