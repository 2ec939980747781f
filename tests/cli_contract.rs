//! What scripts and CI rely on: exit codes (usage errors 64, never `plan`'s 2), a JSON
//! error document under `--output json`, quiet exit on a closed pipe, and snapshots of the
//! help texts and of the errors of common mistakes (a change to them is a reviewed diff).

use crate::common::wsctl;
use serde_json::Value;
use std::process::{Command, Stdio};
use wsctl_testkit::TempDir;

/// `wsctl` with a clean environment: no AWS_*/WSCTL_* variables (help texts show env
/// values), no colour.
fn clean() -> Command {
    let mut cmd = wsctl();
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("NO_COLOR", "1");
    wsctl_testkit::keep_coverage_profile(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run wsctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_64_never_2() {
    for args in [
        &["--no-such-flag"][..],
        &["deplyo", "--stage", "dev"],
        &["plan"],
        &["plan", "--stage", "dev", "--bogus"],
        &["dev", "--port", "not-a-port"],
        &["completions", "tcsh"],
    ] {
        let (code, _, err) = run(clean().args(args));
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(err.starts_with("error:"), "{args:?}: {err}");
    }
    for args in [&["--help"][..], &["--version"], &["plan", "--help"]] {
        let (code, out, _) = run(clean().args(args));
        assert_eq!(code, 0, "{args:?}");
        assert!(!out.is_empty(), "{args:?}");
    }
}

#[test]
fn a_usage_error_under_output_json_prints_the_error_document() {
    let (code, out, _) = run(clean().args(["--output", "json", "plan", "--stage", "dev", "--bogus"]));
    assert_eq!(code, 64);
    let doc: Value = serde_json::from_str(&out).expect("stdout is one JSON document");
    assert_eq!(doc["exitCode"], 64);
    assert_eq!(doc["error"]["kind"], "usage");
    assert!(doc["error"]["message"].as_str().expect("message").contains("--bogus"), "{doc}");
    assert_eq!(doc["error"]["causes"], serde_json::json!([]));
}

#[test]
fn a_failed_command_under_output_json_prints_the_error_document() {
    let empty = TempDir::new("wsctl-empty-stages").expect("temp dir");
    let (code, out, err) =
        run(clean().arg("--stages-dir").arg(empty.path()).args(["--output", "json", "template", "--stage", "nope"]));
    assert_eq!(code, 1, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("stdout is one JSON document");
    assert_eq!(doc["exitCode"], 1);
    assert_eq!(doc["error"]["kind"], "failed");
    let message = doc["error"]["message"].as_str().expect("message");
    assert!(message.contains("stage 'nope' not found") && message.contains("wsctl init"), "{doc}");
    assert!(doc["error"]["causes"].is_array(), "{doc}");
    assert!(err.contains("error: stage 'nope' not found"), "the human line stays on stderr: {err}");
}

#[test]
fn a_closed_pipe_ends_quietly_with_exit_0() {
    // `wsctl template --stage prod --output json | head -c 0`: the reader is gone before
    // wsctl writes.
    let mut child = clean()
        .arg("--stages-dir")
        .arg(crate::common::repo_stages())
        .args(["template", "--stage", "prod", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn completions_and_man_page_cover_every_command() {
    let (code, bash, _) = run(clean().args(["completions", "bash"]));
    assert_eq!(code, 0);
    for cmd in ["subscribe", "init", "dev", "plan", "keys"] {
        assert!(bash.contains(cmd), "bash completion lacks {cmd}");
    }
    let (code, man, _) = run(clean().arg("man"));
    assert_eq!(code, 0);
    assert!(man.starts_with(".ie") || man.contains(".TH wsctl"), "{}", &man[..man.len().min(200)]);
    assert!(man.contains("subscribe"));
    let dir = TempDir::new("wsctl-man").expect("temp dir");
    let (code, _, err) = run(clean().args(["man", "--out"]).arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert!(dir.join("wsctl-subscribe.1").is_file() && dir.join("wsctl.1").is_file());
}

/// Help texts, pinned: `cargo insta review` shows a change as a diff.
#[test]
fn help_texts_are_pinned() {
    for args in [
        &["--help"][..],
        &["init", "--help"],
        &["dev", "--help"],
        &["subscribe", "--help"],
        &["publish", "--help"],
        &["build", "--help"],
        &["plan", "--help"],
        &["deploy", "--help"],
        &["rollback", "--help"],
    ] {
        let (code, out, _) = run(clean().args(args));
        assert_eq!(code, 0, "{args:?}");
        let name = format!("help_{}", args[..args.len() - 1].join("_"));
        insta::assert_snapshot!(name.trim_end_matches('_').to_owned(), out);
    }
}

/// The errors of common mistakes, pinned (temporary paths replaced by `[DIR]`).
#[test]
fn error_texts_of_common_mistakes_are_pinned() {
    let empty = TempDir::new("wsctl-mistakes").expect("temp dir");
    let cases: [(&str, &[&str]); 6] = [
        ("misspelled_command", &["deplyo"]),
        ("missing_stage", &["plan"]),
        ("unknown_stage", &["plan", "--stage", "prdo"]),
        ("publish_not_json", &["publish", "--room", "r", "hello"]),
        ("dev_on_all_interfaces", &["dev", "--host", "0.0.0.0"]),
        ("publish_without_gateway", &["publish", "--room", "r", "1"]),
    ];
    for (name, args) in cases {
        let (code, _, err) = run(clean().current_dir(empty.path()).arg("--stages-dir").arg(empty.path()).args(args));
        assert_ne!(code, 0, "{name}");
        let err = err.replace(&empty.path().display().to_string(), "[DIR]");
        insta::assert_snapshot!(format!("mistake_{name}"), format!("exit {code}\n{err}"));
    }
}

/// The AWS profile (`--profile`/`AWS_PROFILE`) and Cargo's build profile (`build
/// --cargo-profile`) are separate options: `AWS_PROFILE=prod wsctl build` once failed with
/// "profile `prod` is not defined" from cargo. The build here stops at cargo's own check
/// of the profile it was given, before compiling anything.
#[test]
fn the_aws_profile_never_reaches_cargo() {
    let dir = TempDir::new("wsctl-profiles").expect("temp dir");
    let (code, _, err) = run(wsctl()
        .args(["build", "--cargo-profile", "no-such-cargo-profile", "--out"])
        .arg(dir.join("dist"))
        .current_dir(dir.path())
        .env("AWS_PROFILE", "prod")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null()));
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("profile `no-such-cargo-profile` is not defined"), "cargo got --cargo-profile: {err}");
    assert!(!err.contains("`prod`"), "the AWS profile leaked into cargo: {err}");
}
