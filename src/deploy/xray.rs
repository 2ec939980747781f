//! `lambda.tracing`: X-Ray tracing of the six functions.
//!
//! The permission is declared in `templates/app.yaml` (`XRayTracingPolicy`, under the
//! `Tracing` condition). Each function's `TracingConfig` is added here, and only when the
//! stage turns tracing on, so a stage without tracing renders its functions exactly as
//! before: their Versions keep their names and nothing is republished. With tracing on, the
//! setting is part of every function's hash, so turning it on or off publishes new
//! versions (an alias serves a version's configuration, not `$LATEST`'s).

use super::cfn_yaml::{CfnYamlError, Template};
use crate::contract::FUNCTIONS;
use crate::stage::TracingMode;
use serde_norway::{Mapping, Value};

/// The app template's policy granting the X-Ray actions to the functions' roles.
pub const POLICY: &str = "XRayTracingPolicy";
/// The app template's parameter holding `TracingConfig.Mode` (or "" for off), which the
/// policy's `Tracing` condition tests.
pub const MODE_PARAMETER: &str = "TracingMode";

/// Makes [`POLICY`] unconditional and adds `TracingConfig: {Mode: MODE}` to every function (the value itself: cfn-lint checks a
/// `!Ref` against the parameter's default, ""), and makes each wait for [`POLICY`] so its
/// first invocations can already send their segments.
pub fn add_tracing(template: &mut Template, mode: TracingMode) -> Result<(), CfnYamlError> {
    // The policy's `Tracing` condition holds: drop it, so that cfn-lint, which evaluates
    // conditions on the parameters' defaults, sees the functions' DependsOn on an
    // unconditional resource.
    template.resource_mut(POLICY)?.remove("Condition");
    for f in FUNCTIONS {
        let function = template.resource_mut(&format!("{}Function", f.logical))?;
        let mut config = Mapping::new();
        config.insert(Value::from("Mode"), Value::from(mode.lambda_name()));
        if let Some(properties) = function.get_mut("Properties").and_then(Value::as_mapping_mut) {
            properties.insert(Value::from("TracingConfig"), Value::Mapping(config));
        }
        let mut depends = match function.remove("DependsOn") {
            Some(Value::Sequence(items)) => items,
            Some(one) => vec![one],
            None => Vec::new(),
        };
        depends.push(Value::from(POLICY));
        function.insert(Value::from("DependsOn"), Value::Sequence(depends));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::APP_TEMPLATE;

    #[test]
    fn every_function_gets_the_mode_and_waits_for_the_policy() {
        let mut t = Template::parse("app.yaml", APP_TEMPLATE).unwrap();
        add_tracing(&mut t, TracingMode::PassThrough).unwrap();
        for f in FUNCTIONS {
            let body = t.resource(&format!("{}Function", f.logical)).unwrap();
            assert_eq!(body["Properties"]["TracingConfig"]["Mode"], Value::from("PassThrough"), "{}", f.name);
            let depends = body["DependsOn"].as_sequence().unwrap();
            assert!(depends.contains(&Value::from(POLICY)), "{}: {depends:?}", f.name);
            assert!(depends.contains(&Value::from(format!("{}LogGroup", f.logical))), "{}: {depends:?}", f.name);
        }
        assert!(t.resource(POLICY).unwrap().get("Condition").is_none());
    }
}
