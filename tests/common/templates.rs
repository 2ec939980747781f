//! Rendering stages with `wsctl template`, shared by the template tests: every stage file
//! of the repository, one stack as YAML text, or `--output json` as the parsed template
//! with its parameter values, and a resolver for the `!Ref`/`!If` the templates use.

use serde_norway::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's `stages/`.
pub fn repo_stages() -> PathBuf {
    super::repo_stages()
}

/// Every stage file in the repository's `stages/`, sorted.
pub fn stages() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_stages())
        .expect("stages/")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "yaml").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    assert!(names.len() >= 4, "expected local, dev, staging, prod: {names:?}");
    names
}

/// `wsctl --stages-dir DIR ARGS…`, never pointed at an AWS endpoint.
pub fn wsctl_in(stages_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .arg("--stages-dir")
        .arg(stages_dir)
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run wsctl")
}

/// One stack of a repository stage, as the YAML text `wsctl template` prints.
pub fn render(stage: &str, stack: &str) -> String {
    let out = wsctl_in(&repo_stages(), &["template", "--stage", stage, "--stack", stack]);
    assert!(out.status.success(), "template {stage}/{stack}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Parses a rendered template.
pub fn parse(text: &str) -> Value {
    serde_norway::from_str(text).expect("rendered template is YAML")
}

/// A stack rendered with `--output json`: the template and the parameter values.
pub fn render_json(stages_dir: &Path, stage: &str, stack: &str) -> (Value, serde_json::Value) {
    let out = wsctl_in(stages_dir, &["template", "--stage", stage, "--stack", stack, "--output", "json"]);
    assert!(out.status.success(), "template {stage}/{stack}: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    (parse(doc["template"].as_str().expect("template")), doc["parameters"].clone())
}

/// Resolves `!Ref` to a parameter and `!If` on a condition of the form
/// `!Equals [!Ref P, "true"]` with the rendered parameter values; anything else as is.
pub fn resolve(t: &Value, params: &serde_json::Value, v: &Value) -> Value {
    let Value::Tagged(tagged) = v else { return v.clone() };
    let param = |name: &str| params[name].as_str().map(Value::from);
    match tagged.tag.to_string().as_str() {
        "!Ref" => tagged.value.as_str().and_then(param).unwrap_or_else(|| v.clone()),
        "!If" => {
            let args = tagged.value.as_sequence().expect("!If [cond, a, b]");
            let cond = &t["Conditions"][args[0].as_str().expect("condition name")];
            let Value::Tagged(eq) = cond else { panic!("condition {:?} is not !Equals", args[0]) };
            let [lhs, rhs] = eq.value.as_sequence().expect("!Equals [a, b]").as_slice() else {
                panic!("!Equals takes two")
            };
            let holds = resolve(t, params, lhs) == resolve(t, params, rhs);
            resolve(t, params, &args[if holds { 1 } else { 2 }])
        }
        _ => v.clone(),
    }
}

/// The template as CloudFormation would create it with these parameter values: resources
/// and outputs whose `Condition` is false are gone, every `!If` is replaced by its chosen
/// branch, and a `!Ref AWS::NoValue` removes the entry that holds it. The conditions are
/// evaluated by wsctl's own evaluator (the one `plan` uses); other intrinsics stay as they
/// are.
pub fn effective(t: &Value, params: &serde_json::Value) -> Value {
    let text = serde_norway::to_string(t).expect("template serializes");
    let template = wsctl::deploy::Template::parse("rendered template", &text).expect("a template");
    let values = params
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    let conditions = template.evaluate_conditions(&values);
    let holds = |v: &Value| v.get("Condition").and_then(Value::as_str).is_none_or(|c| conditions[c]);
    let mut out = prune(t, &conditions).expect("the template itself is a value");
    for section in ["Resources", "Outputs"] {
        if let Some(m) = out.get_mut(section).and_then(Value::as_mapping_mut) {
            m.retain(|_, v| holds(v));
        }
    }
    out
}

/// `v` with every `!If` resolved; `None` where it is (or resolves to) `!Ref AWS::NoValue`.
fn prune(v: &Value, conditions: &std::collections::BTreeMap<String, bool>) -> Option<Value> {
    match v {
        Value::Tagged(t) if t.tag == "If" => {
            let args = t.value.as_sequence().expect("!If [condition, then, else]");
            let name = args[0].as_str().expect("condition name");
            let holds = *conditions.get(name).unwrap_or_else(|| panic!("no condition {name}"));
            prune(&args[if holds { 1 } else { 2 }], conditions)
        }
        Value::Tagged(t) if t.tag == "Ref" && t.value == "AWS::NoValue" => None,
        Value::Tagged(t) => {
            let mut t = t.clone();
            t.value = prune(&t.value, conditions)?;
            Some(Value::Tagged(t))
        }
        Value::Mapping(m) => {
            Some(Value::Mapping(m.iter().filter_map(|(k, v)| Some((k.clone(), prune(v, conditions)?))).collect()))
        }
        Value::Sequence(s) => Some(Value::Sequence(s.iter().filter_map(|v| prune(v, conditions)).collect())),
        other => Some(other.clone()),
    }
}
