//! Fuzzes stage-file parsing: the real `Stage::parse` of `src/stage.rs` (compiled into
//! this target with `#[path]`, so the CLI exposes nothing new), and the `limits:` section
//! alone as `wsctl dev` and the Lambdas read it (`Limits` through serde_norway/serde_json).
//!
//! No input may panic. A stage that parses must re-parse from its own serialization to
//! the same stage, and its limits must validate and yield usable durations and TTLs.

#![no_main]

// Compiled as is from the CLI (with the built-in stages it falls back to); their lints are
// the CLI crate's business.
#[allow(dead_code, clippy::all)]
#[path = "../../src/stage.rs"]
mod stage;
#[allow(dead_code, clippy::all)]
#[path = "../../src/builtin_stages.rs"]
mod builtin_stages;

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use wsctl_handlers::limits::Limits;

/// What the runtime computes from limits: none of it may overflow or panic.
fn use_limits(l: &Limits) {
    let _ = l.idle_timeout();
    let _ = l.max_lifetime();
    // A connection record's DynamoDB `ttl` at connect (service::connect).
    let now_secs = 1_800_000_000u64;
    let _ = now_secs + l.record_ttl_secs();
    // The Lambdas receive the limits as JSON (WSCTL_LIMITS) and must read them back.
    let json = serde_json::to_string(l).expect("limits serialize");
    let back: Limits = serde_json::from_str(&json).expect("limits JSON re-reads");
    assert_eq!(&back, l);
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let path = Path::new("stages/fuzz.yaml");
    if let Ok(stage) = stage::Stage::parse(path, "fuzz", text) {
        use_limits(&stage.limits);
        // Values become CloudFormation parameters: a Number parameter cannot be `inf`.
        assert!(stage.api.throttle_rate.is_finite(), "api.throttle_rate {} accepted", stage.api.throttle_rate);
        let yaml = serde_norway::to_string(&stage).expect("a parsed stage serializes");
        let again = stage::Stage::parse(path, "fuzz", &yaml).unwrap_or_else(|e| panic!("re-parse of {yaml}: {e}"));
        assert_eq!(serde_norway::to_string(&again).expect("serializes"), yaml);
    }
    if let Ok(limits) = serde_norway::from_str::<Limits>(text) {
        if limits.validate().is_ok() {
            use_limits(&limits);
        }
    }
});
