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

/// The opt-in seventh function (`probe:` in the stage file): always built and packaged, so
/// one manifest promotes to every stage whichever of them enable it; deployed only where
/// the stage sets `probe:` (`templates/probe.yaml`). It has no alias: its schedule invokes
/// the latest code.
pub const PROBE: Function = Function { name: "probe", logical: "Probe" };

/// Every function a build packages: the six, then the probe.
pub fn packaged() -> impl Iterator<Item = Function> {
    FUNCTIONS.into_iter().chain([PROBE])
}

/// The alias every integration, permission and invoker targets.
pub const LIVE_ALIAS: &str = "live";
