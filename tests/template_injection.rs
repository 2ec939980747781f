//! Stage values cannot change a rendered template's structure.
//!
//! Every free-text value of a stage file (tags, `lambda.log_level`,
//! `redis.engine_version`, `redis.node_type`, the stage name itself) is set, one at a
//! time, to payloads full of YAML and CloudFormation syntax: quotes, newlines, `{{…}}`
//! dynamic references, `!Ref`, `${…}`, `: `, `#`, `---` documents, anchors. Each stage is
//! rendered with `wsctl template --stage S --stack data|app --output json` and compared
//! with a clean render of the same stage: the same resources (logical ids and types, with
//! the content-hash suffixes of versions and deployments masked), parameters, conditions
//! and outputs, and the same YAML skeleton (every key, tag and list length). A value
//! either travels as data (a parameter, a stack tag) and reaches it verbatim, or the stage
//! is refused with an error naming the key; it never becomes template structure.

use serde_json::Value as Json;
use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use wsctl_testkit::TempDir;

/// Values an attacker (or a careless copy-paste) could put in a stage file.
const PAYLOADS: &[&str] = &[
    "it's \"quoted\" `back`",
    "line1\nline2: injected\n  Type: AWS::IAM::User",
    "{{resolve:ssm:/wsctl/secret}}",
    "{{resolve:secretsmanager:arn:aws:secretsmanager:eu-west-1:111111111111:secret:x}}",
    "!Ref AWS::AccountId",
    "${AWS::AccountId}",
    "key: value",
    "# comment",
    "- item\n- other",
    "*alias &anchor",
    "---\nResources:\n  Evil:\n    Type: AWS::IAM::User\n...",
    "]}\"'\\",
    "Fn::GetAtt: [Api, ApiEndpoint]",
    "{\"Fn::Sub\": \"${AWS::AccountId}\"}",
    "\u{2028}tab\there\r\n",
];

/// Stages of the repository that render AWS stacks (every network/redis/rollout shape).
const BASES: [&str; 3] = ["dev", "staging", "prod"];

fn repo_stage(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("stages").join(format!("{name}.yaml"));
    serde_norway::from_str(&std::fs::read_to_string(&path).expect("stage file")).expect("stage YAML")
}

/// One `wsctl template` run: Ok(JSON document) or Err(stderr).
fn render(dir: &Path, stage: &str, stack: &str) -> Result<Json, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .arg("--stages-dir")
        .arg(dir)
        .args(["--output", "json", "template", "--stage", stage, "--stack", stack])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run wsctl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("template --output json is one JSON document"))
}

/// Masks a 12-hex-digit content hash after `Version` or `Deployment` (hash-named ids).
fn mask(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    'outer: while !rest.is_empty() {
        for marker in ["Version", "Deployment"] {
            if let Some(after) = rest.strip_prefix(marker) {
                let hex =
                    after.get(..12).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                if hex.is_some() {
                    out.push_str(marker);
                    out.push_str("#HASH");
                    rest = &after[12..];
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The template's shape: every key, tag and list length; scalars (data) are erased, so
/// a stage value carried as data cannot differ, while one that became structure does.
fn skeleton(v: &Value) -> String {
    match v {
        Value::Mapping(m) => {
            let mut keys: Vec<String> =
                m.iter().map(|(k, v)| format!("{}=>{}", mask(&scalar(k)), skeleton(v))).collect();
            keys.sort();
            format!("{{{}}}", keys.join(","))
        }
        Value::Sequence(s) => format!("[{}]", s.iter().map(skeleton).collect::<Vec<_>>().join(",")),
        Value::Tagged(t) => format!("!{}({})", t.tag, skeleton(&t.value)),
        _ => "_".into(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other).unwrap_or_default().trim().to_owned(),
    }
}

/// What must not change: resources (masked id, type), section keys, and the skeleton.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    resources: BTreeSet<(String, String)>,
    parameters: BTreeSet<String>,
    conditions: BTreeSet<String>,
    outputs: BTreeSet<String>,
    top_level: BTreeSet<String>,
    skeleton: String,
}

fn keys(t: &Value, section: &str) -> BTreeSet<String> {
    t.get(section).and_then(Value::as_mapping).into_iter().flatten().map(|(k, _)| mask(&scalar(k))).collect()
}

fn shape(body: &str) -> Shape {
    // A second YAML document (`---`) would make this fail: one template, one document.
    let t: Value =
        serde_norway::from_str(body).unwrap_or_else(|e| panic!("rendered template is one YAML document: {e}"));
    let resources = t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .map(|(id, r)| (mask(&scalar(id)), r["Type"].as_str().unwrap_or("<no Type>").to_owned()))
        .collect();
    Shape {
        resources,
        parameters: keys(&t, "Parameters"),
        conditions: keys(&t, "Conditions"),
        outputs: keys(&t, "Outputs"),
        top_level: t.as_mapping().expect("a mapping").iter().map(|(k, _)| scalar(k)).collect(),
        skeleton: skeleton(&t),
    }
}

/// Where a payload goes in a stage, and where it must arrive as data.
struct Field {
    /// Dotted key, as a refusal would name it.
    key: &'static str,
    set: fn(&mut Value, &str),
    /// (stack, parameter) that carries the value, or None for stack tags.
    carried_by: Option<(&'static str, &'static str)>,
    /// The value as it must arrive.
    arrives_as: fn(&str) -> String,
}

fn set_in(stage: &mut Value, section: &str, key: &str, value: &str) {
    let m = stage.as_mapping_mut().expect("stage is a mapping");
    let s = m.entry(Value::from(section)).or_insert_with(|| Value::Mapping(Default::default()));
    s.as_mapping_mut().expect("section is a mapping").insert(Value::from(key), Value::from(value));
}

const FIELDS: [Field; 5] = [
    Field { key: "tags", set: |s, p| set_in(s, "tags", "injected", p), carried_by: None, arrives_as: |p| p.to_owned() },
    Field {
        key: "tags",
        set: |s, p| set_in(s, "tags", &format!("k{}", p.chars().take(100).collect::<String>()), "v"),
        carried_by: None,
        arrives_as: |_| "v".to_owned(),
    },
    Field {
        key: "lambda.log_level",
        set: |s, p| set_in(s, "lambda", "log_level", p),
        carried_by: Some(("app", "RustLog")),
        arrives_as: |p| p.to_owned(),
    },
    Field {
        key: "redis.engine_version",
        set: |s, p| set_in(s, "redis", "engine_version", p),
        carried_by: Some(("data", "RedisEngineVersion")),
        arrives_as: |p| p.to_owned(),
    },
    Field {
        key: "redis.node_type",
        set: |s, p| set_in(s, "redis", "node_type", &format!("cache.{p}")),
        carried_by: Some(("data", "RedisNodeType")),
        arrives_as: |p| format!("cache.{p}"),
    },
];

#[test]
fn stage_values_cannot_change_template_structure() {
    let dir = TempDir::new("wsctl-injection").expect("temp dir");
    let mut rendered = 0;
    let mut refused = Vec::new();
    for base in BASES {
        let clean_name = format!("clean-{base}");
        let mut stage = repo_stage(base);
        // All copies share one directory, where two stages may not claim one custom domain
        // name; its values are validated to DNS characters, so none carries a payload.
        if let Some(api) = stage.get_mut("api").and_then(Value::as_mapping_mut) {
            api.remove("domain");
        }
        std::fs::write(dir.join(format!("{clean_name}.yaml")), serde_norway::to_string(&stage).unwrap()).unwrap();
        let clean: Vec<(&str, Json)> = ["data", "app"]
            .into_iter()
            .map(|stack| (stack, render(dir.path(), &clean_name, stack).unwrap_or_else(|e| panic!("{base}: {e}"))))
            .collect();
        for (fi, field) in FIELDS.iter().enumerate() {
            for (pi, payload) in PAYLOADS.iter().enumerate() {
                let name = format!("evil-{base}-{fi}-{pi}");
                let mut evil = stage.clone();
                (field.set)(&mut evil, payload);
                std::fs::write(dir.join(format!("{name}.yaml")), serde_norway::to_string(&evil).unwrap()).unwrap();
                for (stack, clean_doc) in &clean {
                    let doc = match render(dir.path(), &name, stack) {
                        Ok(doc) => doc,
                        Err(stderr) => {
                            // Refusing the value is safe, but only with an error that names it.
                            let top = field.key.split('.').next().unwrap();
                            assert!(
                                stderr.contains(top),
                                "{name} ({payload:?}) refused without naming {}: {stderr}",
                                field.key
                            );
                            refused.push(format!("{}={payload:?}", field.key));
                            continue;
                        }
                    };
                    rendered += 1;
                    let body = doc["template"].as_str().expect("template");
                    let clean_body = clean_doc["template"].as_str().expect("template");
                    assert_eq!(
                        shape(body),
                        shape(clean_body),
                        "{name}: {} = {payload:?} changed the {stack} template",
                        field.key
                    );
                    // The value reached the stack as data, verbatim.
                    let expected = (field.arrives_as)(payload);
                    match field.carried_by {
                        Some((s, param)) if s == *stack => {
                            assert_eq!(doc["parameters"][param].as_str(), Some(expected.as_str()), "{name}: {param}");
                        }
                        Some(_) => {}
                        None => assert!(
                            doc["tags"]
                                .as_object()
                                .expect("tags")
                                .values()
                                .any(|v| v.as_str() == Some(expected.as_str())),
                            "{name}: the tag did not reach the stack tags"
                        ),
                    }
                }
            }
        }
    }
    refused.sort();
    refused.dedup();
    eprintln!("rendered {rendered} injected templates; refused by the stage parser: {refused:?}");
    assert!(rendered > 0, "every injected stage was refused; nothing was compared");
}

#[test]
fn stage_name_with_yaml_syntax_cannot_change_template_structure() {
    let dir = TempDir::new("wsctl-injection-name").expect("temp dir");
    let stage = serde_norway::to_string(&repo_stage("dev")).unwrap();
    std::fs::write(dir.join("clean.yaml"), &stage).unwrap();
    // A file name may hold anything but '/' and NUL.
    for (i, name) in
        ["a: b", "x #{{resolve:ssm:p}}", "it's \"q\"", "!Ref Api", "${AWS::AccountId}", "- [x]"].into_iter().enumerate()
    {
        std::fs::write(dir.join(format!("{name}.yaml")), &stage).unwrap();
        for stack in ["data", "app"] {
            let clean = render(dir.path(), "clean", stack).expect("clean render");
            match render(dir.path(), name, stack) {
                Ok(doc) => {
                    let body = doc["template"].as_str().unwrap();
                    assert_eq!(shape(body), shape(clean["template"].as_str().unwrap()), "stage name {name:?} ({i})");
                    assert_eq!(
                        doc["parameters"]["StageName"].as_str(),
                        Some(name),
                        "carried as the StageName parameter"
                    );
                }
                Err(stderr) => {
                    assert!(stderr.contains("stage"), "stage name {name:?} refused without saying why: {stderr}")
                }
            }
        }
    }
}

#[test]
fn the_shape_comparison_sees_an_injected_resource() {
    // The check above must be able to fail: a template with one more resource, or a
    // value turned into a tagged node, has another shape.
    let base = "Resources:\n  A:\n    Type: AWS::SNS::Topic\n    Properties:\n      TopicName: x\n";
    let more = format!("{base}  Evil:\n    Type: AWS::IAM::User\n");
    let tagged = base.replace("TopicName: x", "TopicName: !Ref AWS::AccountId");
    let keyed = base.replace("TopicName: x", "TopicName: x\n      Extra: y");
    assert_ne!(shape(base), shape(&more));
    assert_ne!(shape(base), shape(&tagged));
    assert_ne!(shape(base), shape(&keyed));
    assert_eq!(shape(base), shape(&base.replace("TopicName: x", "TopicName: \"y: z\"")));
    let hashed = "Resources:\n  MessageVersion0123456789ab:\n    Type: AWS::Lambda::Version\n";
    assert_eq!(shape(hashed), shape(&hashed.replace("0123456789ab", "ba9876543210")));
}
