//! A new user's first ten minutes, from an empty directory, against moto: `wsctl init`,
//! `wsctl dev` with a `subscribe` client seeing a `publish`, then `wsctl plan`, which
//! checks the account and a given manifest's architecture before it would build anything,
//! and builds from the handler sources shipped inside wsctl when there are none here.

use crate::deploy_support::{text, Harness};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use wsctl_testkit::free_port;

/// The handler sources' fingerprint as `wsctl build` records it in the manifest: SHA-256
/// over each file's relative path, a NUL, its length (u64 LE) and its bytes, in path order,
/// for every file under `handlers/` plus `Cargo.toml` and `Cargo.lock`.
fn sources_hash(workspace: &Path) -> String {
    use sha2::{Digest, Sha256};
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read dir").flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&workspace.join("handlers"), &mut files);
    files.extend(["Cargo.toml", "Cargo.lock"].map(|f| workspace.join(f)));
    files.sort();
    let mut hash = Sha256::new();
    for f in files {
        let bytes = std::fs::read(&f).expect("read");
        hash.update(f.strip_prefix(workspace).expect("inside").to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The moto-ready stage: the shipped dev.yaml with moto's account and region, and an
/// existing Redis (moto skips ElastiCache).
fn point_dev_at_moto(h: &Harness) {
    let path = h.dir.join("stages/dev.yaml");
    let shipped = std::fs::read_to_string(&path).expect("init wrote dev.yaml");
    assert!(shipped.contains("account: \"111111111111\""), "the shipped dev.yaml names a placeholder account");
    let edited = shipped.replace("\"111111111111\"", "\"123456789012\"").replace("eu-west-1", "us-east-1");
    std::fs::write(&path, edited).expect("write dev.yaml");
}

#[test]
fn init_dev_subscribe_publish_and_plan_from_an_empty_directory() {
    let h = Harness::new("dev", "");
    std::fs::remove_dir_all(h.dir.join("stages")).expect("start empty");

    // 1. init
    let init = h.wsctl(&["init"]);
    assert!(init.status.success(), "{}", text(&init));
    for stage in ["local", "dev", "staging", "prod"] {
        assert!(h.dir.join(format!("stages/{stage}.yaml")).is_file(), "{stage}");
    }

    // 2. dev, and a subscriber that sees a publish.
    let port = free_port().to_string();
    let mut dev =
        h.command(&["dev", "--port", &port]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn dev");
    let mut banner = BufReader::new(dev.stdout.take().expect("stdout")).lines();
    let ready = banner.by_ref().map_while(Result::ok).find(|l| l.contains("WebSocket"));
    assert!(ready.is_some_and(|l| l.contains(&format!("ws://127.0.0.1:{port}/local"))), "dev is up");
    let mut sub = h
        .command(&["--output", "json", "subscribe", "tvl:protocol:first", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn subscribe");
    let mut sub_err = BufReader::new(sub.stderr.take().expect("stderr")).lines();
    assert!(sub_err.by_ref().map_while(Result::ok).any(|l| l.contains("connected to")), "subscribe connected");
    // The subscribe frame follows the connect line; publish until the subscriber has it.
    let mut delivered = false;
    for _ in 0..50 {
        let out = h.wsctl(&["--output", "json", "publish", "--room", "tvl:protocol:first", r#"{"tvl":1}"#]);
        assert!(out.status.success(), "{}", text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).expect("publish JSON");
        if report["delivered"] == 1 {
            delivered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(delivered, "the subscriber was counted as a delivery");
    let out = sub.wait_with_output().expect("subscribe exits after --count 1");
    assert!(out.status.success());
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!((line["room"].as_str(), line["data"]["tvl"].as_u64()), (Some("tvl:protocol:first"), Some(1)));
    let _ = dev.kill();
    let _ = dev.wait();

    // 3. plan. The shipped account placeholder is refused before any build is attempted.
    let refused = h.wsctl(&["plan", "--stage", "dev"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(err.contains("refusing to touch stage 'dev'") && err.contains("123456789012"), "{err}");
    assert!(!err.contains("building the handlers"), "checked the account before building: {err}");

    point_dev_at_moto(&h);
    // A manifest for the wrong architecture is refused before any AWS call (the endpoint
    // here is unreachable, so reaching AWS would fail differently).
    let x86 = h.manifest("dist-x86", |f| format!("{f} x86"));
    let text_x86 = std::fs::read_to_string(&x86).expect("manifest").replace("\"arm64\"", "\"x86_64\"");
    std::fs::write(&x86, text_x86).expect("write");
    let out = h
        .command(&["plan", "--stage", "dev", "--manifest", x86.to_str().expect("utf-8")])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .expect("plan");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("was built for x86_64 but stage 'dev' runs lambda.architecture arm64"), "{err}");

    // Outside the source tree, without --manifest: the handler sources shipped inside wsctl
    // are extracted into the cache and built there (here the build stops at once: PATH has
    // no cargo-zigbuild, so the test does not spend minutes compiling).
    let cache = h.dir.join("cache");
    let out = h
        .command(&["plan", "--stage", "dev"])
        .env("XDG_CACHE_HOME", &cache)
        .env("PATH", "/nonexistent")
        .output()
        .expect("plan");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("using the handler sources shipped with wsctl"), "{err}");
    assert!(err.contains("building the handlers") && err.contains("cargo-zigbuild is not installed"), "{err}");
    let extracted: Vec<_> = std::fs::read_dir(cache.join("wsctl")).expect("cache dir").flatten().collect();
    assert_eq!(extracted.len(), 1, "one extracted workspace");
    let ws = extracted[0].path();
    assert!(ws.join("handlers/src/bin/message.rs").is_file() && ws.join("Cargo.lock").is_file(), "{}", ws.display());

    // plan builds nothing while dist/manifest.json matches the sources it would build (the
    // manifest records their hash), and builds again with --build.
    let built = h.manifest("dist", |f| format!("{f} build 0"));
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&built).expect("manifest")).expect("json");
    doc["source_hash"] = Value::String(sources_hash(&ws));
    std::fs::write(&built, doc.to_string()).expect("write manifest");
    let plan = h
        .command(&["--output", "json", "plan", "--stage", "dev"])
        .env("XDG_CACHE_HOME", &cache)
        .env("PATH", "/nonexistent")
        .output()
        .expect("plan");
    let err = String::from_utf8_lossy(&plan.stderr);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(err.contains("handlers unchanged since dist/manifest.json was built"), "{err}");
    assert!(!err.contains("building the handlers"), "{err}");
    let rebuilt = h
        .command(&["plan", "--stage", "dev", "--build"])
        .env("XDG_CACHE_HOME", &cache)
        .env("PATH", "/nonexistent")
        .output()
        .expect("plan --build");
    assert!(String::from_utf8_lossy(&rebuilt.stderr).contains("building the handlers"), "{}", text(&rebuilt));
    // An edited source is a changed build.
    std::fs::write(ws.join("handlers/src/lib.rs"), "// edited\n").expect("edit");
    let changed = h
        .command(&["plan", "--stage", "dev"])
        .env("XDG_CACHE_HOME", &cache)
        .env("PATH", "/nonexistent")
        .output()
        .expect("plan");
    assert!(String::from_utf8_lossy(&changed.stderr).contains("building the handlers"), "{}", text(&changed));

    // With a build's manifest: the plan against moto, exit 2 with changes.
    let manifest = h.manifest("dist", |f| format!("{f} build 1"));
    let plan =
        h.wsctl(&["--output", "json", "plan", "--stage", "dev", "--manifest", manifest.to_str().expect("utf-8")]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let doc: Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    assert_eq!(doc["changes"], true, "{doc:#}");
}
