//! `wsctl invoke --stage S FUNCTION [EVENT]`: invokes one of a deployed stage's six
//! functions through its `live` alias with a raw event and prints what it returned.

use super::publish::read_data;
use super::target::{Target, TargetArgs};
use crate::aws::AwsTarget;
use crate::contract::{Function, FUNCTIONS};
use crate::exit::Outcome;
use crate::ui::Ui;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;

/// `wsctl invoke`
#[derive(Debug)]
pub struct InvokeArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// authorizer, connect, disconnect, message, publish or admin.
    pub function: String,
    /// The event: JSON, @FILE, or - to read stdin (default: {}).
    pub event: Option<String>,
}

/// Runs `wsctl invoke`; exits 1 when the function reports an error.
pub async fn run(stages: &Path, aws: &AwsTarget, ui: &Ui, args: InvokeArgs) -> Result<Outcome> {
    let Some(function) = Function::named(&args.function) else {
        bail!("unknown function `{}`: pick one of {}", args.function, FUNCTIONS.map(|f| f.name).join(", "));
    };
    let event = match &args.event {
        Some(arg) => read_data(arg)?,
        None => json!({}),
    };
    let target = Target::resolve(stages, aws, &args.target).await?;
    let Target::Deployed(d) = &target else {
        bail!(
            "--stage local runs the handlers inside `wsctl dev`, not as functions; connect a client, or use \
             `wsctl publish` / `wsctl keys` there"
        );
    };
    let function = d.function(function).await?;
    let (error, payload) = function.invoke_raw(serde_json::to_vec(&event)?).await?;
    let parsed: Value =
        serde_json::from_slice(&payload).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&payload).into()));
    ui.emit(
        &json!({
            "stage": d.stage,
            "function": args.function,
            "functionName": function.name(),
            "functionError": error,
            "payload": parsed,
        }),
        || {
            let pretty = serde_json::to_string_pretty(&parsed)?;
            match &error {
                Some(kind) => eprintln!("{} failed ({kind}):\n{pretty}", function.name()),
                None => println!("{pretty}"),
            }
            Ok(())
        },
    )?;
    Ok(Outcome::success_if(error.is_none()))
}
