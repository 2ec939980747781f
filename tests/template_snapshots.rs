//! Snapshots of every rendered CloudFormation template: `wsctl template --stage S --stack X`
//! for each stage file in `stages/` and each stack, compared with the committed files in
//! `tests/snapshots/`. A change to a template, a stage file or the renderer shows up as a
//! diff of these files, reviewed with the change.
//!
//! A mismatch (or a stage with no snapshot yet) fails the test. To accept the new output,
//! run `INSTA_UPDATE=always cargo test --test integration template_snapshots::` (or
//! `cargo insta review` with cargo-insta installed) and commit the changed `.snap` files. CI never writes them
//! (`.ci/run` sets `INSTA_UPDATE=no`; insta also refuses when `CI` is set).

use std::path::PathBuf;
use std::process::Command;

const STACKS: [&str; 3] = ["bootstrap", "data", "app"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every stage file in the repository's `stages/`, sorted.
fn stages() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("stages"))
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

fn render(stage: &str, stack: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .arg("--stages-dir")
        .arg(repo().join("stages"))
        .args(["template", "--stage", stage, "--stack", stack])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run wsctl");
    assert!(out.status.success(), "template {stage}/{stack}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn every_stage_and_stack_renders_as_its_snapshot() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    // Every pair is compared (and its diff printed) before the test fails.
    let mut differ = Vec::new();
    for stage in stages() {
        for stack in STACKS {
            let body = render(&stage, stack);
            let mut settings = settings.clone();
            settings.set_description(format!("wsctl template --stage {stage} --stack {stack}"));
            let compared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                settings.bind(|| insta::assert_snapshot!(format!("{stage}-{stack}"), body));
            }));
            if compared.is_err() {
                differ.push(format!("{stage}/{stack}"));
            }
        }
    }
    assert!(differ.is_empty(), "rendered templates differ from tests/snapshots/: {differ:?} (see the module docs)");
}
