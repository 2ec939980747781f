//! Structured edits of a CloudFormation template held as a YAML tree.
//!
//! Templates are parsed into `serde_norway::Value` (short-form intrinsics such as `!Ref` stay
//! tagged values), edited as data, and serialized again: stage values never enter a
//! template by string pasting.

use serde_norway::value::{Tag, TaggedValue};
use serde_norway::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A template that could not be parsed or edited.
#[derive(Debug, thiserror::Error)]
pub enum CfnYamlError {
    /// The embedded template is not valid YAML.
    #[error("template {name} is not valid YAML: {source}")]
    Parse { name: &'static str, source: serde_norway::Error },
    /// The YAML is not a mapping with a `Resources` mapping.
    #[error("{0} is not a CloudFormation template (a mapping with a `Resources` mapping)")]
    NotATemplate(&'static str),
    /// A resource the renderer expects is missing from the template.
    #[error("template has no resource {0}")]
    MissingResource(String),
    /// Serializing the edited tree failed.
    #[error("cannot serialize the template: {0}")]
    Serialize(#[from] serde_norway::Error),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
}

impl Template {
    /// Parses an embedded template; `name` is only used in errors.
    pub fn parse(name: &'static str, text: &str) -> Result<Template, CfnYamlError> {
        let root: Value = serde_norway::from_str(text).map_err(|source| CfnYamlError::Parse { name, source })?;
        let resources_ok = root.get("Resources").is_none_or(Value::is_mapping);
        if !root.is_mapping() || !resources_ok {
            return Err(CfnYamlError::NotATemplate(name));
        }
        Ok(Template { root })
    }

    /// The `Resources` mapping.
    pub fn resources(&self) -> Option<&Mapping> {
        self.root.get("Resources")?.as_mapping()
    }

    fn resources_mut(&mut self) -> &mut Mapping {
        let root = self.root.as_mapping_mut().expect("Template::parse checked the root is a mapping");
        root.entry(Value::from("Resources"))
            .or_insert_with(|| Value::Mapping(Mapping::new()))
            .as_mapping_mut()
            .expect("Template::parse checked Resources is a mapping")
    }

    /// One resource by logical id.
    pub fn resource(&self, id: &str) -> Option<&Value> {
        self.resources()?.get(id)
    }

    /// Mutable access to one resource.
    pub fn resource_mut(&mut self, id: &str) -> Result<&mut Mapping, CfnYamlError> {
        self.resources_mut()
            .get_mut(id)
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| CfnYamlError::MissingResource(id.to_owned()))
    }

    /// Adds (or replaces) a resource.
    pub fn insert_resource(&mut self, id: &str, body: Value) {
        self.resources_mut().insert(Value::from(id), body);
    }

    /// Sets a resource attribute such as `DeletionPolicy` or `UpdatePolicy`.
    pub fn set_attribute(&mut self, id: &str, attribute: &str, value: Value) -> Result<(), CfnYamlError> {
        self.resource_mut(id)?.insert(Value::from(attribute), value);
        Ok(())
    }

    /// Logical ids of the resources of the given type, in template order.
    pub fn ids_of_type(&self, resource_type: &str) -> Vec<String> {
        self.resources()
            .into_iter()
            .flatten()
            .filter(|(_, body)| body.get("Type").and_then(Value::as_str) == Some(resource_type))
            .filter_map(|(id, _)| id.as_str().map(str::to_owned))
            .collect()
    }

    /// Renames a resource and every reference to it (`Ref`, `GetAtt`, `DependsOn`,
    /// `${Id}` / `${Id.Attr}` inside `Sub`).
    pub fn rename_resource(&mut self, old: &str, new: &str) -> Result<(), CfnYamlError> {
        let resources = self.resources_mut();
        if !resources.contains_key(old) {
            return Err(CfnYamlError::MissingResource(old.to_owned()));
        }
        // Rebuild the mapping so the renamed resource keeps its place in the template.
        let renamed: Mapping = std::mem::take(resources)
            .into_iter()
            .map(|(k, v)| if k.as_str() == Some(old) { (Value::from(new), v) } else { (k, v) })
            .collect();
        *resources = renamed;
        rewrite_references(&mut self.root, old, new);
        Ok(())
    }

    /// Evaluates the template's `Conditions` for the given parameter values (parameters
    /// missing from `params` take their `Default`). Supports `Equals`, `And`, `Or`, `Not`,
    /// `Condition` and `Ref` to parameters, in short or long form; an expression it cannot
    /// evaluate counts as true (the resource is kept).
    pub fn evaluate_conditions(&self, params: &BTreeMap<String, String>) -> BTreeMap<String, bool> {
        let mut values: BTreeMap<String, String> = self
            .root
            .get("Parameters")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar(v.get("Default")?)?)))
            .collect();
        values.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let conditions = self.root.get("Conditions").and_then(Value::as_mapping).cloned().unwrap_or_default();
        let mut out = BTreeMap::new();
        for (name, _) in &conditions {
            if let Some(name) = name.as_str() {
                let v = eval_condition(name, &conditions, &values, 0).unwrap_or(true);
                out.insert(name.to_owned(), v);
            }
        }
        out
    }

    /// The resource's `Condition`, if it has one.
    pub fn resource_condition(&self, id: &str) -> Option<&str> {
        self.resource(id)?.get("Condition")?.as_str()
    }

    /// SHA-256 (hex) of the canonical serialization of the given resources.
    pub fn hash_resources(&self, ids: &[String]) -> Result<String, CfnYamlError> {
        let mut hasher = Sha256::new();
        for id in ids {
            let body = self.resource(id).ok_or_else(|| CfnYamlError::MissingResource(id.clone()))?;
            hasher.update(id.as_bytes());
            hasher.update(serde_norway::to_string(body)?.as_bytes());
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Adds every parameter, condition, resource and output of `fragment` (a partial
    /// template such as `probe.yaml`); an entry of the same name is replaced.
    pub fn merge(&mut self, fragment: &Template) {
        let Some(root) = self.root.as_mapping_mut() else { return };
        for section in ["Parameters", "Conditions", "Resources", "Outputs"] {
            let Some(entries) = fragment.root.get(section).and_then(Value::as_mapping) else { continue };
            let target = root.entry(Value::from(section)).or_insert_with(|| Value::Mapping(Mapping::new()));
            if let Some(target) = target.as_mapping_mut() {
                for (k, v) in entries {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// The template as YAML text.
    pub fn to_yaml(&self) -> Result<String, CfnYamlError> {
        Ok(serde_norway::to_string(&self.root)?)
    }
}

/// What a piece of a template refers to: parameters and resources (`Ref`, `GetAtt`,
/// `${Name}` and `${Name.Attr}` inside `Sub`) and conditions (`If`, `Condition`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    /// Referenced parameter or resource names (pseudo parameters such as `AWS::Region` included).
    pub names: std::collections::BTreeSet<String>,
    /// Conditions chosen on.
    pub conditions: std::collections::BTreeSet<String>,
}

/// Collects everything `value` refers to (see [`References`]).
pub fn references(value: &Value) -> References {
    let mut out = References::default();
    collect_references(value, &mut out);
    out
}

fn sub_names(text: &str, out: &mut References) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = &after[..end];
        // `${!Literal}` is an escaped literal, not a reference.
        if !inner.starts_with('!') {
            out.names.insert(inner.split('.').next().unwrap_or(inner).to_owned());
        }
        rest = &after[end + 1..];
    }
}

fn collect_references(value: &Value, out: &mut References) {
    if let Some((f, arg)) = intrinsic(value) {
        match (f.as_str(), arg) {
            ("Ref", Value::String(s)) => {
                out.names.insert(s.clone());
                return;
            }
            ("GetAtt", Value::String(s)) => {
                out.names.insert(s.split('.').next().unwrap_or(s).to_owned());
                return;
            }
            ("GetAtt", Value::Sequence(seq)) => {
                out.names.extend(seq.first().and_then(Value::as_str).map(str::to_owned));
                return;
            }
            ("Sub", Value::String(s)) => {
                sub_names(s, out);
                return;
            }
            ("Sub", Value::Sequence(seq)) => {
                if let Some(s) = seq.first().and_then(Value::as_str) {
                    sub_names(s, out);
                }
                seq.iter().skip(1).for_each(|v| collect_references(v, out));
                return;
            }
            ("Condition", Value::String(s)) => {
                out.conditions.insert(s.clone());
                return;
            }
            ("If", Value::Sequence(seq)) => {
                out.conditions.extend(seq.first().and_then(Value::as_str).map(str::to_owned));
                seq.iter().skip(1).for_each(|v| collect_references(v, out));
                return;
            }
            _ => {}
        }
    }
    match value {
        Value::Tagged(t) => collect_references(&t.value, out),
        Value::Mapping(m) => m.values().for_each(|v| collect_references(v, out)),
        Value::Sequence(seq) => seq.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

fn rewrite_references(value: &mut Value, old: &str, new: &str) {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            match (tag.as_str(), &mut tagged.value) {
                ("!Ref", Value::String(s)) if s == old => *s = new.to_owned(),
                ("!GetAtt", Value::String(s)) => rename_getatt_string(s, old, new),
                ("!Sub", Value::String(s)) => *s = rename_in_sub(s, old, new),
                ("!Sub", Value::Sequence(seq)) => {
                    if let Some(Value::String(s)) = seq.first_mut() {
                        *s = rename_in_sub(s, old, new);
                    }
                    for v in seq.iter_mut().skip(1) {
                        rewrite_references(v, old, new);
                    }
                }
                _ => rewrite_references(&mut tagged.value, old, new),
            }
            if tag == "!GetAtt" {
                if let Value::Sequence(seq) = &mut tagged.value {
                    if let Some(Value::String(s)) = seq.first_mut() {
                        if s == old {
                            *s = new.to_owned();
                        }
                    }
                }
            }
        }
        Value::Mapping(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    Some("Ref") => {
                        if v.as_str() == Some(old) {
                            *v = Value::from(new);
                        }
                    }
                    Some("DependsOn") => match v {
                        Value::String(s) if s == old => *s = new.to_owned(),
                        Value::Sequence(seq) => {
                            for item in seq {
                                if item.as_str() == Some(old) {
                                    *item = Value::from(new);
                                }
                            }
                        }
                        _ => {}
                    },
                    Some("Fn::GetAtt") => {
                        if let Value::Sequence(seq) = v {
                            if let Some(first) = seq.first_mut() {
                                if first.as_str() == Some(old) {
                                    *first = Value::from(new);
                                }
                            }
                        }
                    }
                    Some("Fn::Sub") => match v {
                        Value::String(s) => *s = rename_in_sub(s, old, new),
                        Value::Sequence(seq) => {
                            if let Some(Value::String(s)) = seq.first_mut() {
                                *s = rename_in_sub(s, old, new);
                            }
                        }
                        _ => {}
                    },
                    _ => rewrite_references(v, old, new),
                }
            }
        }
        Value::Sequence(seq) => {
            for v in seq {
                rewrite_references(v, old, new);
            }
        }
        _ => {}
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Splits an intrinsic into its function name (`Equals`, `Ref`, …) and argument.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_owned(), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            Some((k.strip_prefix("Fn::").unwrap_or(k).to_owned(), arg))
        }
        _ => None,
    }
}

fn eval_value(v: &Value, params: &BTreeMap<String, String>) -> Option<String> {
    match intrinsic(v) {
        Some((f, arg)) if f == "Ref" => params.get(arg.as_str()?).cloned(),
        Some(_) => None,
        None => scalar(v),
    }
}

fn eval_condition(name: &str, conditions: &Mapping, params: &BTreeMap<String, String>, depth: usize) -> Option<bool> {
    eval_expr(conditions.get(name)?, conditions, params, depth + 1)
}

fn eval_expr(expr: &Value, conditions: &Mapping, params: &BTreeMap<String, String>, depth: usize) -> Option<bool> {
    if depth > 32 {
        return None;
    }
    let (f, arg) = intrinsic(expr)?;
    let items = || arg.as_sequence().cloned().unwrap_or_default();
    match f.as_str() {
        "Equals" => {
            let items = items();
            Some(eval_value(items.first()?, params)? == eval_value(items.get(1)?, params)?)
        }
        "And" => {
            items().iter().map(|e| eval_expr(e, conditions, params, depth + 1)).try_fold(true, |acc, v| Some(acc && v?))
        }
        "Or" => items()
            .iter()
            .map(|e| eval_expr(e, conditions, params, depth + 1))
            .try_fold(false, |acc, v| Some(acc || v?)),
        "Not" => Some(!eval_expr(items().first()?, conditions, params, depth + 1)?),
        "Condition" => eval_condition(arg.as_str()?, conditions, params, depth),
        _ => None,
    }
}

fn rename_getatt_string(s: &mut String, old: &str, new: &str) {
    if let Some(rest) = s.strip_prefix(old).and_then(|r| r.strip_prefix('.')) {
        *s = format!("{new}.{rest}");
    }
}

fn rename_in_sub(s: &str, old: &str, new: &str) -> String {
    s.replace(&format!("${{{old}}}"), &format!("${{{new}}}")).replace(&format!("${{{old}."), &format!("${{{new}."))
}

/// A short-form intrinsic such as `!Ref X`.
pub fn tagged(tag: &str, value: Value) -> Value {
    Value::Tagged(Box::new(TaggedValue { tag: Tag::new(tag), value }))
}

/// `!Ref id`.
pub fn cfn_ref(id: &str) -> Value {
    tagged("!Ref", Value::from(id))
}

/// `!Sub text`.
pub fn cfn_sub(text: &str) -> Value {
    tagged("!Sub", Value::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"
Resources:
  V:
    Type: AWS::Lambda::Version
  A:
    Type: AWS::Lambda::Alias
    DependsOn: [V]
    Properties:
      FunctionVersion: !GetAtt V.Version
      Other: !Ref V
      Long: {"Fn::GetAtt": [V, Version]}
      S: !Sub "${V} ${V.Version} ${VV}"
"#;

    #[test]
    fn conditions_follow_parameters() {
        let t = Template::parse(
            "t",
            r#"
Parameters:
  A: {Type: String, Default: "true"}
  B: {Type: String}
Conditions:
  IsA: !Equals [!Ref A, "true"]
  IsB: !Equals [!Ref B, "x"]
  Both: !And [!Condition IsA, !Condition IsB]
  NotB: {"Fn::Not": [{"Condition": IsB}]}
"#,
        )
        .unwrap();
        let c = t.evaluate_conditions(&BTreeMap::from([("B".to_owned(), "y".to_owned())]));
        assert!(c["IsA"]);
        assert!(!c["IsB"]);
        assert!(!c["Both"]);
        assert!(c["NotB"]);
    }

    #[test]
    fn references_name_parameters_resources_and_conditions() {
        let t = Template::parse(
            "t",
            r#"
Resources:
  F:
    Properties:
      A: !Ref P1
      B: !Sub "x-${P2}-${R.Arn}-${!Literal}-${AWS::Region}"
      C: !If [Cond, !Ref P3, {"Fn::GetAtt": [R2, Arn]}]
      D: {"Fn::Sub": ["${X}", {X: !Ref P4}]}
      E: !GetAtt R3.Arn
"#,
        )
        .unwrap();
        let r = references(t.resource("F").unwrap());
        let names: Vec<&str> = r.names.iter().map(String::as_str).collect();
        assert_eq!(names, ["AWS::Region", "P1", "P2", "P3", "P4", "R", "R2", "R3", "X"]);
        assert_eq!(r.conditions.iter().collect::<Vec<_>>(), ["Cond"]);
    }

    #[test]
    fn rename_rewrites_every_reference_form() {
        let mut t = Template::parse("t", T).unwrap();
        t.rename_resource("V", "Vabc").unwrap();
        let y = t.to_yaml().unwrap();
        assert!(y.contains("Vabc:"), "{y}");
        assert!(y.contains("!GetAtt Vabc.Version"), "{y}");
        assert!(y.contains("!Ref Vabc"), "{y}");
        assert!(y.contains("- Vabc"), "{y}");
        assert!(y.contains("${Vabc} ${Vabc.Version} ${VV}"), "{y}");
        assert!(!y.contains(" V:"), "{y}");
    }
}
