//! Fuzzes the client frame parser and router (`protocol::parse`) and `nesting_depth`.
//!
//! Any input (invalid UTF-8 is replaced, as a frame is text) must not panic; an accepted
//! request must be a JSON object no deeper than `MAX_DEPTH` and, written out again, must
//! parse back to the same action, room, since, data and id; every refusal must encode as
//! an error frame that is valid JSON with `type: error` and its code.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use wsctl_handlers::protocol::{error_frame, nesting_depth, parse, Request, MAX_DEPTH};

/// A request written back out; raw parts are copied verbatim.
#[derive(Serialize)]
struct Out<'a> {
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
}

/// The fields of an error frame this target checks; the rest (`id`, `message`) is only
/// parsed for syntax.
#[derive(Deserialize)]
struct ErrorFrame {
    #[serde(rename = "type")]
    kind: String,
    code: String,
    #[serde(rename = "requestId")]
    request_id: String,
}

/// (action, room, since, raw data) of a request, for comparison.
fn parts(r: &Request<'_>) -> (&'static str, Option<String>, Option<u64>, Option<String>) {
    match r {
        Request::Subscribe { room, since } => ("subscribe", Some(room.to_string()), *since, None),
        Request::Unsubscribe { room } => ("unsubscribe", Some(room.to_string()), None, None),
        Request::Ping => ("ping", None, None, None),
        Request::Rooms => ("rooms", None, None, None),
        Request::Publish { room, data } => ("publish", Some(room.to_string()), None, Some(data.get().to_owned())),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let depth = nesting_depth(&text);
    let inbound = parse(&text);
    match &inbound.request {
        Ok(request) => {
            assert!(depth <= MAX_DEPTH, "accepted a frame nested {depth} deep");
            assert!(text.trim_start().starts_with('{'), "accepted a non-object: {text:?}");
            let (action, room, since, data) = parts(request);
            let data_raw = data.as_deref().map(|d| serde_json::from_str::<&RawValue>(d).expect("raw data re-reads"));
            let out = Out { action, room: room.as_deref(), since, data: data_raw, id: inbound.id };
            let again_text = serde_json::to_string(&out).expect("serializes");
            let again = parse(&again_text);
            let again_request = again.request.as_ref().unwrap_or_else(|e| panic!("{again_text} refused: {e:?}"));
            assert_eq!(parts(again_request), (action, room, since, data), "round trip of {text:?}");
            assert_eq!(again.id.map(RawValue::get), inbound.id.map(RawValue::get));
        }
        Err(err) => {
            // Syntax only: the echoed `id` is the client's own JSON, verbatim, and may hold a
            // number no f64 holds (valid JSON; JavaScript reads it as Infinity).
            let frame = error_frame(err, Some("fuzz"), inbound.id);
            let v: ErrorFrame = serde_json::from_str(frame.as_str()).expect("error frame is JSON");
            assert_eq!(v.kind, "error");
            assert_eq!(v.code, err.code.as_str());
            assert_eq!(v.request_id, "fuzz");
        }
    }
});
