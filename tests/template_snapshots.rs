//! Snapshots of every rendered CloudFormation template: `wsctl template --stage S --stack X`
//! for each stage file in `stages/` and each stack, compared with the committed files in
//! `tests/snapshots/`. A change to a template, a stage file or the renderer shows up as a
//! diff of these files, reviewed with the change.
//!
//! A mismatch (or a stage with no snapshot yet) fails the test. To accept the new output,
//! run `INSTA_UPDATE=always cargo test --test integration template_snapshots::` (or
//! `cargo insta review` with cargo-insta installed) and commit the changed `.snap` files. CI never writes them
//! (`.ci/run` sets `INSTA_UPDATE=no`; insta also refuses when `CI` is set).

use crate::common::templates::{render, stages};

const STACKS: [&str; 3] = ["bootstrap", "data", "app"];

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
