//! A Lambda version is published exactly when its function changes (issue 11).
//!
//! Every `AWS::Lambda::Version` of the app stack is named after a hash. If a change to the
//! stage renames the Version of a function that did not change, CloudFormation creates a
//! new Version, Lambda publishes nothing (the function equals its last version) and the
//! update fails: "A version for this Lambda function exists … Modify the function to create
//! a new version". If a function changes and its Version keeps its name, no version is
//! published and the `live` alias keeps running the old one.
//!
//! The generated test renders every deployable stage in `stages/`, changes each stage key
//! in turn (the keys of the file plus a few it leaves at their defaults), and checks per
//! function: the Version's logical id changes if and only if the function's resource,
//! with the stage's parameter values substituted, changes. The function also carries the
//! hash (`WSCTL_CONFIG_HASH`), so a renamed Version always has a changed `$LATEST` to
//! publish.

use serde_norway::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use wsctl_testkit::TempDir;

const FUNCTIONS: [&str; 6] = ["Authorizer", "Connect", "Disconnect", "Message", "Publish", "Admin"];
const HASH_VARIABLE: &str = "WSCTL_CONFIG_HASH";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Stage files that name a region (the deployable ones), as YAML trees.
fn deployable_stages() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("stages")).expect("stages/") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let doc: Value = serde_norway::from_str(&std::fs::read_to_string(&path).expect("read")).expect("stage yaml");
        if doc.get("region").is_some() {
            out.push((path.file_stem().unwrap().to_str().unwrap().to_owned(), doc));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "expected dev, staging, prod: {:?}", out.iter().map(|s| &s.0).collect::<Vec<_>>());
    out
}

/// The rendered app template and its parameter values, or wsctl's error.
fn render(dir: &Path, stage: &str, yaml: &Value) -> Result<(Value, BTreeMap<String, String>), String> {
    std::fs::write(dir.join(format!("{stage}.yaml")), serde_norway::to_string(yaml).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .arg("--stages-dir")
        .arg(dir)
        .args(["template", "--stage", stage, "--stack", "app", "--output", "json"])
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_REGION")
        .output()
        .expect("run wsctl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let template: Value = serde_norway::from_str(doc["template"].as_str().expect("template")).expect("yaml");
    let params = doc["parameters"]
        .as_object()
        .expect("parameters")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    Ok((template, params))
}

/// Parameter value: the rendered one, else the template's default.
fn param(t: &Value, params: &BTreeMap<String, String>, name: &str) -> Option<String> {
    params.get(name).cloned().or_else(|| match &t["Parameters"][name]["Default"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn condition(t: &Value, params: &BTreeMap<String, String>, expr: &Value) -> bool {
    let Value::Tagged(tagged) = expr else { panic!("condition {expr:?} is not a short-form intrinsic") };
    let args = tagged.value.as_sequence();
    match tagged.tag.to_string().as_str() {
        "!Equals" => {
            let [a, b] = args.expect("!Equals [a, b]").as_slice() else { panic!("!Equals takes two") };
            resolve(t, params, a) == resolve(t, params, b)
        }
        "!Not" => !condition(t, params, &args.expect("!Not [c]")[0]),
        "!And" => args.expect("!And").iter().all(|c| condition(t, params, c)),
        "!Or" => args.expect("!Or").iter().any(|c| condition(t, params, c)),
        "!Condition" => condition(t, params, &t["Conditions"][tagged.value.as_str().unwrap()]),
        other => panic!("condition function {other} not handled by this test"),
    }
}

/// Substitutes parameter values into `!Ref`, `!Sub` and `!If`; resource references stay.
fn resolve(t: &Value, params: &BTreeMap<String, String>, v: &Value) -> Value {
    match v {
        Value::Tagged(tagged) => match tagged.tag.to_string().as_str() {
            "!Ref" => {
                let name = tagged.value.as_str().unwrap();
                param(t, params, name).map_or_else(|| v.clone(), Value::from)
            }
            "!Sub" => {
                let text = tagged.value.as_str().expect("!Sub with a string");
                let mut out = String::new();
                let mut rest = text;
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..].find('}').unwrap() + start;
                    let name = &rest[start + 2..end];
                    out.push_str(&param(t, params, name).unwrap_or_else(|| format!("${{{name}}}")));
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                Value::from(out)
            }
            "!If" => {
                let args = tagged.value.as_sequence().expect("!If [cond, a, b]");
                let holds = condition(t, params, &t["Conditions"][args[0].as_str().unwrap()]);
                resolve(t, params, &args[if holds { 1 } else { 2 }])
            }
            _ => Value::Tagged(Box::new(serde_norway::value::TaggedValue {
                tag: tagged.tag.clone(),
                value: resolve(t, params, &tagged.value),
            })),
        },
        Value::Mapping(m) => Value::Mapping(m.iter().map(|(k, v)| (k.clone(), resolve(t, params, v))).collect()),
        Value::Sequence(s) => Value::Sequence(s.iter().map(|v| resolve(t, params, v)).collect()),
        _ => v.clone(),
    }
}

/// Per function: the Version's logical id, the hash variable, and the function resource
/// as deployed (parameters substituted, the hash variable left out).
struct Function {
    version_id: String,
    hash: Option<String>,
    resolved: Value,
}

fn functions(t: &Value, params: &BTreeMap<String, String>) -> BTreeMap<&'static str, Function> {
    let resources = t["Resources"].as_mapping().expect("Resources");
    FUNCTIONS
        .into_iter()
        .map(|f| {
            let version_id = resources
                .iter()
                .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Lambda::Version"))
                .map(|(id, _)| id.as_str().unwrap().to_owned())
                .find(|id| id.strip_prefix(f).is_some_and(|rest| rest.starts_with("Version")))
                .unwrap_or_else(|| panic!("no Version of {f}"));
            let mut resolved = resolve(t, params, &t["Resources"][format!("{f}Function").as_str()]);
            let variables = resolved["Properties"]["Environment"]["Variables"]
                .as_mapping_mut()
                .unwrap_or_else(|| panic!("{f}Function has environment variables"));
            let hash = variables.remove(HASH_VARIABLE).and_then(|v| v.as_str().map(str::to_owned));
            (f, Function { version_id, hash, resolved })
        })
        .collect()
}

/// Leaf keys of a stage file, as paths.
fn leaves(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                prefix.push(k.as_str().unwrap().to_owned());
                leaves(v, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn set(doc: &mut Value, path: &[String], value: Value) {
    let mut node = doc;
    for key in &path[..path.len() - 1] {
        let map = node.as_mapping_mut().unwrap();
        node = map.entry(Value::from(key.as_str())).or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    node.as_mapping_mut().unwrap().insert(Value::from(path[path.len() - 1].as_str()), value);
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |node, key| node.get(key.as_str()))
}

/// Other values to try for a key, most likely valid first.
fn candidates(current: Option<&Value>) -> Vec<Value> {
    const STRINGS: [&str; 16] = [
        "active",
        "passthrough",
        "x86_64",
        "eu-west-2",
        "redis",
        "7.1",
        "cache.t4g.small",
        "10.41.0.0/16",
        "canary",
        "all_at_once",
        "debug",
        "v1",
        "444444444444",
        "changed",
        "existing",
        "create",
    ];
    match current {
        Some(Value::Bool(b)) => vec![Value::from(!b)],
        Some(Value::Number(n)) if n.is_f64() => vec![Value::from(n.as_f64().unwrap() + 1.0)],
        Some(Value::Number(n)) => {
            let n = n.as_u64().unwrap();
            [n + 1, n * 2, n + 7, 14, 30, 1, 3].into_iter().filter(|c| *c != n).map(Value::from).collect()
        }
        Some(Value::String(s)) => {
            let mut v: Vec<Value> = STRINGS.iter().filter(|c| **c != s).map(|c| Value::from(*c)).collect();
            v.insert(0, Value::from(format!("{s}x")));
            v
        }
        Some(Value::Sequence(_)) => vec![Value::Sequence(vec![Value::from("changed")])],
        _ => vec![],
    }
}

/// Keys the stage files leave at their defaults, with a value to set.
fn defaults_to_change() -> Vec<(Vec<String>, Value)> {
    [
        ("lambda.keep_versions", Value::from(7)),
        ("lambda.tracing", Value::from("active")),
        ("limits.max_connections", Value::from(1234)),
        ("limits.room_history", Value::from(33)),
        ("limits.max_message_bytes", Value::from(4096)),
        ("rollout.bake_minutes", Value::from(3)),
        ("redis.memory_alarm_percent", Value::from(70)),
        ("stack_name", Value::from("other-prefix")),
    ]
    .into_iter()
    .map(|(k, v)| (k.split('.').map(str::to_owned).collect(), v))
    .collect()
}

#[test]
fn a_version_is_renamed_exactly_when_its_function_changes() {
    let dir = TempDir::new("wsctl-version-ids").unwrap();
    let mut checked = 0;
    let mut changed_none = Vec::new();
    let mut changed_all = Vec::new();
    let mut unchangeable = Vec::new();
    for (stage, doc) in deployable_stages() {
        let (t0, p0) = render(dir.path(), &stage, &doc).unwrap_or_else(|e| panic!("{stage}: {e}"));
        let before = functions(&t0, &p0);
        assert_eq!(
            functions(&render(dir.path(), &stage, &doc).unwrap().0, &p0)
                .values()
                .map(|f| &f.version_id)
                .collect::<Vec<_>>(),
            before.values().map(|f| &f.version_id).collect::<Vec<_>>(),
            "{stage}: rendering is deterministic"
        );
        let mut keys = Vec::new();
        leaves(&doc, &mut Vec::new(), &mut keys);
        let mut tries: Vec<(Vec<String>, Vec<Value>)> =
            keys.into_iter().map(|k| (k.clone(), candidates(get(&doc, &k)))).collect();
        for (k, v) in defaults_to_change() {
            if get(&doc, &k).is_none() {
                tries.push((k, vec![v]));
            }
        }
        for (key, values) in tries {
            let shown = format!("{stage}: {}", key.join("."));
            let Some((t1, p1)) = values.into_iter().find_map(|v| {
                let mut changed = doc.clone();
                set(&mut changed, &key, v);
                render(dir.path(), &stage, &changed).ok()
            }) else {
                unchangeable.push(shown);
                continue;
            };
            let after = functions(&t1, &p1);
            let mut renamed = Vec::new();
            for f in FUNCTIONS {
                let (a, b) = (&before[f], &after[f]);
                let function_changed = a.resolved != b.resolved;
                let id_changed = a.version_id != b.version_id;
                assert_eq!(
                    id_changed,
                    function_changed,
                    "{shown}: {f}Function {} but its Version went {} -> {}",
                    if function_changed { "changed" } else { "did not change" },
                    a.version_id,
                    b.version_id
                );
                assert!(
                    b.hash.is_some(),
                    "{f}Function has no {HASH_VARIABLE}: a renamed Version may have nothing to publish"
                );
                assert_eq!(id_changed, a.hash != b.hash, "{shown}: {f}: {HASH_VARIABLE} follows the Version id");
                if id_changed {
                    renamed.push(f);
                }
            }
            checked += 1;
            match renamed.len() {
                0 => changed_none.push(shown),
                6 => changed_all.push(shown),
                _ => {}
            }
        }
    }
    eprintln!(
        "{checked} stage-key changes: {} renamed no Version, {} renamed all six; not changeable: {unchangeable:?}",
        changed_none.len(),
        changed_all.len()
    );
    // The cases, and the test exercised both sides of the "if and only if".
    for key in ["api.throttle_rate", "lambda.log_retention_days", "api.throttle_burst"] {
        for stage in ["dev", "staging", "prod"] {
            let shown = format!("{stage}: {key}");
            assert!(changed_none.contains(&shown), "{shown} renames no Version: {changed_none:?}");
        }
    }
    assert!(changed_all.iter().any(|k| k.ends_with("lambda.memory_mb")), "{changed_all:?}");
    assert!(changed_all.iter().any(|k| k.ends_with("lambda.log_level")), "{changed_all:?}");
    // Tracing is part of each function's configuration that a version freezes.
    for stage in ["dev", "prod"] {
        let shown = format!("{stage}: lambda.tracing");
        assert!(changed_all.contains(&shown), "{shown} renames every Version: {changed_all:?}");
    }
    assert!(checked >= 60, "only {checked} stage-key changes rendered; not changeable: {unchangeable:?}");
}

/// Writes a manifest with one zip per function whose bytes come from `body`.
fn manifest(dir: &Path, body: impl Fn(&str) -> String) -> PathBuf {
    use sha2::{Digest, Sha256};
    std::fs::create_dir_all(dir).unwrap();
    let mut functions = serde_json::Map::new();
    for f in ["authorizer", "connect", "disconnect", "message", "publish", "admin"] {
        let bytes = body(f).into_bytes();
        std::fs::write(dir.join(format!("{f}.zip")), &bytes).unwrap();
        let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        functions.insert(f.into(), serde_json::json!({"file": format!("{f}.zip"), "sha256": sha, "size": bytes.len()}));
    }
    let path = dir.join("manifest.json");
    let m = serde_json::json!({"version": 1, "architecture": "arm64", "target": "aarch64-unknown-linux-gnu.2.34", "functions": functions});
    std::fs::write(&path, m.to_string()).unwrap();
    path
}

#[test]
fn a_code_change_renames_only_that_functions_version_and_changes_its_hash() {
    let dir = TempDir::new("wsctl-version-code").unwrap();
    let stages = dir.join("stages");
    std::fs::create_dir_all(&stages).unwrap();
    std::fs::copy(repo().join("stages/dev.yaml"), stages.join("dev.yaml")).unwrap();
    let render_with = |m: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_wsctl"))
            .arg("--stages-dir")
            .arg(&stages)
            .args(["template", "--stage", "dev", "--stack", "app", "--output", "json", "--manifest"])
            .arg(m)
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .expect("run wsctl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let t: Value = serde_norway::from_str(doc["template"].as_str().unwrap()).unwrap();
        let p: BTreeMap<String, String> = doc["parameters"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        functions(&t, &p)
    };
    let a = render_with(&manifest(&dir.join("m1"), |f| format!("{f} v1")));
    let b =
        render_with(&manifest(
            &dir.join("m2"),
            |f| if f == "connect" { "connect v2".into() } else { format!("{f} v1") },
        ));
    for f in FUNCTIONS {
        let renamed = a[f].version_id != b[f].version_id;
        assert_eq!(renamed, f == "Connect", "{f}: {} -> {}", a[f].version_id, b[f].version_id);
        assert!(a[f].hash.is_some(), "{f}Function has no {HASH_VARIABLE}");
        assert_eq!(a[f].hash != b[f].hash, f == "Connect", "{f}");
    }
}

#[test]
fn replaced_versions_and_the_artifact_bucket_do_not_outlive_a_rolled_back_create() {
    // Retain would keep a Version (or the fixed-name bucket) created by an operation that
    // rolls back; the retry then fails ("A version for this Lambda function exists",
    // "wsctl-artifacts-… already exists"). RetainExceptOnCreate deletes what the failed
    // operation created and keeps everything older.
    let dir = TempDir::new("wsctl-retain").unwrap();
    for (stage, doc) in deployable_stages() {
        let (t, _) = render(dir.path(), &stage, &doc).unwrap();
        for (id, r) in t["Resources"].as_mapping().unwrap() {
            if r["Type"].as_str() == Some("AWS::Lambda::Version") {
                assert_eq!(r["DeletionPolicy"].as_str(), Some("RetainExceptOnCreate"), "{stage}: {id:?}");
                assert_eq!(r["UpdateReplacePolicy"].as_str(), Some("Retain"), "{stage}: {id:?}");
            }
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .arg("--stages-dir")
        .arg(repo().join("stages"))
        .args(["template", "--stage", "dev", "--stack", "bootstrap"])
        .output()
        .expect("run wsctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t: Value = serde_norway::from_slice(&out.stdout).unwrap();
    assert_eq!(t["Resources"]["ArtifactBucket"]["DeletionPolicy"].as_str(), Some("RetainExceptOnCreate"));
}
