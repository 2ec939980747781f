//! Property tests (proptest) for the two grammars clients control: room names and
//! request frames.
//!
//! - Room names: generated valid names are accepted; a character outside the alphabet, an
//!   empty segment or an over-long name is refused; `room::validate` agrees, error for
//!   error, with a small left-to-right reference model written without regexes.
//! - Protocol: any generated request serialized to JSON parses back to the same action,
//!   room, since, id and data; arbitrary text never panics and every error it produces
//!   encodes as a valid error frame with a known code; `nesting_depth` equals the depth of
//!   the generated value; `MessageTemplate` output is valid JSON carrying the given seq
//!   for any room and data.
//!
//! Case counts are proptest's defaults (256 per property) unless `PROPTEST_CASES` says
//! otherwise; a failing case is shrunk and printed.

use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use wsctl_handlers::error::HandlerError;
use wsctl_handlers::protocol::{self, error_frame, nesting_depth, ErrorCode, MessageTemplate, Request, MAX_DEPTH};
use wsctl_handlers::room::{self, RoomName, RoomNameError};

// ---------------------------------------------------------------------------------------
// Room names

/// The documented segment alphabet, spelled out independently of `room.rs`.
const SEGMENT_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";

fn in_alphabet(c: char) -> bool {
    SEGMENT_ALPHABET.contains(c)
}

/// Reference model of the grammar: one left-to-right scan. Reports the same first error
/// as `room::validate` (empty, then too long, then the first bad segment in order).
fn model(name: &str, max_len: usize) -> Result<(), RoomNameError> {
    if name.is_empty() {
        return Err(RoomNameError::Empty);
    }
    let len = name.chars().count();
    if len > max_len {
        return Err(RoomNameError::TooLong { len, max: max_len });
    }
    let mut segment_len = 0usize;
    for c in name.chars() {
        if c == ':' {
            if segment_len == 0 {
                return Err(RoomNameError::EmptySegment);
            }
            segment_len = 0;
        } else if in_alphabet(c) {
            segment_len += 1;
        } else {
            return Err(RoomNameError::BadChar(c));
        }
    }
    if segment_len == 0 {
        return Err(RoomNameError::EmptySegment);
    }
    Ok(())
}

fn segment() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(SEGMENT_ALPHABET.chars().collect::<Vec<_>>()), 1..12)
        .prop_map(|cs| cs.into_iter().collect())
}

/// Valid names of at most 128 characters (the default limit).
fn valid_name() -> impl Strategy<Value = String> {
    proptest::collection::vec(segment(), 1..8)
        .prop_map(|segs| segs.join(":"))
        .prop_filter("within the default length", |n| n.chars().count() <= 128)
}

/// Characters outside the alphabet and not the separator: ASCII punctuation, controls,
/// braces (the Redis hash-tag risk), whitespace and any non-ASCII char.
fn bad_char() -> impl Strategy<Value = char> {
    prop_oneof![
        proptest::sample::select(vec![
            '{', '}', ' ', '\t', '\n', '\0', '/', '*', '?', '"', '\\', '#', '$', '%', '\u{7f}'
        ]),
        any::<char>(),
    ]
    .prop_filter("outside the alphabet", |c| !in_alphabet(*c) && *c != ':')
}

/// Strings that mix valid characters, separators and bad characters, so the model and
/// the implementation are compared on every kind of error, not only on noise.
fn roomish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => proptest::sample::select(SEGMENT_ALPHABET.chars().collect::<Vec<_>>()),
        2 => Just(':'),
        1 => any::<char>(),
    ];
    proptest::collection::vec(piece, 0..140).prop_map(|cs| cs.into_iter().collect())
}

/// Default case count (or `PROPTEST_CASES`), without writing regression files into the
/// source tree: a failure prints its minimal input, which belongs in a unit test.
fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_names_are_accepted(name in valid_name()) {
        prop_assert_eq!(room::validate(&name, 128), Ok(()));
        let parsed = RoomName::parse(&name, 128).expect("valid");
        prop_assert_eq!(parsed.as_str(), name.as_str());
    }

    #[test]
    fn a_char_outside_the_alphabet_is_refused(name in valid_name(), c in bad_char(), at in any::<prop::sample::Index>()) {
        let mut chars: Vec<char> = name.chars().collect();
        let i = at.index(chars.len() + 1);
        chars.insert(i, c);
        let bad: String = chars.into_iter().collect();
        prop_assert_eq!(room::validate(&bad, 255), Err(RoomNameError::BadChar(c)));
    }

    #[test]
    fn an_empty_segment_is_refused(segs in proptest::collection::vec(segment(), 1..6), at in any::<prop::sample::Index>()) {
        // Put an empty segment anywhere: first, last or between two.
        let mut segs = segs;
        let i = at.index(segs.len() + 1);
        segs.insert(i, String::new());
        let bad = segs.join(":");
        prop_assert_eq!(room::validate(&bad, 255), Err(RoomNameError::EmptySegment));
    }

    #[test]
    fn over_length_names_are_refused(name in valid_name(), max in 1usize..128) {
        let len = name.chars().count();
        let result = room::validate(&name, max);
        if len > max {
            prop_assert_eq!(result, Err(RoomNameError::TooLong { len, max }));
        } else {
            prop_assert_eq!(result, Ok(()));
        }
    }

    #[test]
    fn validation_agrees_with_the_reference_model(name in roomish(), max in 1usize..=255) {
        prop_assert_eq!(room::validate(&name, max), model(&name, max));
    }

    #[test]
    fn validation_agrees_on_arbitrary_strings(name in any::<String>(), max in 1usize..=255) {
        prop_assert_eq!(room::validate(&name, max), model(&name, max));
    }
}

// ---------------------------------------------------------------------------------------
// Protocol

/// Arbitrary JSON values of bounded depth. Floats are multiples of 1/1024 so they are
/// exact in any JSON parser.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i32>().prop_map(|i| Value::from(f64::from(i) / 1024.0)),
        any::<String>().prop_map(Value::from),
        // Strings full of JSON syntax, which `nesting_depth` must skip.
        "[\\[\\]{}\"\\\\:,]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Nesting depth of a value, the reference for `nesting_depth`.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A request as a client would build it.
#[derive(Debug, Clone)]
struct GenRequest {
    action: &'static str,
    room: String,
    since: Option<u64>,
    id: Option<Value>,
    data: Value,
    extra: Option<(String, Value)>,
}

fn gen_request() -> impl Strategy<Value = GenRequest> {
    (
        proptest::sample::select(vec!["subscribe", "unsubscribe", "ping", "rooms", "publish"]),
        prop_oneof![valid_name(), any::<String>()],
        proptest::option::of(any::<u64>()),
        proptest::option::of(json_value()),
        json_value(),
        proptest::option::of((any::<String>(), json_value())),
    )
        .prop_map(|(action, room, since, id, data, extra)| GenRequest { action, room, since, id, data, extra })
}

impl GenRequest {
    fn to_json(&self) -> String {
        let mut m = Map::new();
        // Unknown fields are ignored by the parser; add one first so a known one wins.
        if let Some((k, v)) = &self.extra {
            m.insert(k.clone(), v.clone());
        }
        m.insert("action".into(), Value::from(self.action));
        if self.action != "ping" && self.action != "rooms" {
            m.insert("room".into(), Value::from(self.room.clone()));
        }
        if self.action == "subscribe" {
            m.insert("since".into(), self.since.map(Value::from).unwrap_or(Value::Null));
        }
        if self.action == "publish" {
            m.insert("data".into(), self.data.clone());
        }
        match &self.id {
            Some(id) => m.insert("id".into(), id.clone()),
            None => m.remove("id"),
        };
        Value::Object(m).to_string()
    }
}

const KNOWN_CODES: [&str; 12] = [
    "bad_json",
    "bad_request",
    "unknown_action",
    "invalid_room",
    "too_many_rooms",
    "forbidden",
    "rate_limited",
    "message_too_large",
    "unsupported_frame",
    "unavailable",
    "not_found",
    "internal",
];

/// Checks that an error frame is a JSON object with type=error, a known code, the
/// matching `retryable`, and the echoed ids.
fn check_error_frame(err: &HandlerError, request_id: Option<&str>, id: Option<&RawValue>) -> Result<(), TestCaseError> {
    let frame = error_frame(err, request_id, id);
    let v: Value = serde_json::from_str(frame.as_str())
        .map_err(|e| TestCaseError::fail(format!("error frame is not JSON ({e}): {}", frame.as_str())))?;
    prop_assert_eq!(&v["type"], "error");
    let code = v["code"].as_str().unwrap_or_default();
    prop_assert!(KNOWN_CODES.contains(&code), "unknown code {:?}", code);
    prop_assert_eq!(code, err.code.as_str());
    prop_assert_eq!(v["retryable"].as_bool(), Some(err.code.retryable()));
    prop_assert_eq!(v["message"].as_str(), Some(err.message.as_str()));
    prop_assert_eq!(v.get("requestId").and_then(Value::as_str), request_id);
    match id {
        Some(id) => prop_assert_eq!(&v["id"], &serde_json::from_str::<Value>(id.get()).unwrap()),
        None => prop_assert!(v.get("id").is_none()),
    }
    Ok(())
}

/// Text that looks like requests: JSON tokens, known actions and field names, so the
/// parser's deeper paths are reached, not only the `bad_json` one.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        proptest::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "\"",
            "\\",
            "\"action\"",
            "\"room\"",
            "\"since\"",
            "\"data\"",
            "\"id\"",
            "\"subscribe\"",
            "\"unsubscribe\"",
            "\"ping\"",
            "\"rooms\"",
            "\"publish\"",
            "\"tvl:protocol:aave\"",
            "null",
            "true",
            "-1",
            "0",
            "18446744073709551616",
            "1e400",
            "\"\\u0000\"",
            "\"\\ud800\"",
            " ",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

fn check_parse_never_panics(body: &str) -> Result<(), TestCaseError> {
    let inbound = protocol::parse(body);
    match inbound.request {
        Ok(request) => {
            // Only a JSON object with a string action is a request.
            let v: Value = serde_json::from_str(body)
                .map_err(|e| TestCaseError::fail(format!("accepted a frame that is not JSON ({e})")))?;
            prop_assert!(v.is_object());
            let action = v["action"].as_str().unwrap_or_default();
            let expected = match request {
                Request::Subscribe { .. } => "subscribe",
                Request::Unsubscribe { .. } => "unsubscribe",
                Request::Ping => "ping",
                Request::Rooms => "rooms",
                Request::Publish { .. } => "publish",
            };
            prop_assert_eq!(action, expected);
            prop_assert!(nesting_depth(body) <= MAX_DEPTH);
        }
        Err(err) => check_error_frame(&err, Some("req-1"), inbound.id)?,
    }
    Ok(())
}

/// The raw text of one top-level field of a JSON object.
fn raw_field(json: &str, field: &str) -> String {
    let fields: HashMap<String, &RawValue> = serde_json::from_str(json).expect("a JSON object");
    fields.get(field).map(|r| r.get().to_owned()).unwrap_or_default()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_requests_round_trip(req in gen_request()) {
        let body = req.to_json();
        let inbound = protocol::parse(&body);
        let id = inbound.id.map(|r| r.get().to_owned());
        prop_assert_eq!(id, req.id.as_ref().map(Value::to_string));
        let request = inbound.request.map_err(|e| TestCaseError::fail(format!("{body} refused: {e:?}")))?;
        match (req.action, request) {
            ("subscribe", Request::Subscribe { room, since }) => {
                prop_assert_eq!(room.as_ref(), req.room.as_str());
                prop_assert_eq!(since, req.since);
            }
            ("unsubscribe", Request::Unsubscribe { room }) => prop_assert_eq!(room.as_ref(), req.room.as_str()),
            ("ping", Request::Ping) | ("rooms", Request::Rooms) => {}
            ("publish", Request::Publish { room, data }) => {
                prop_assert_eq!(room.as_ref(), req.room.as_str());
                // The raw data is forwarded byte for byte as the client wrote it.
                prop_assert_eq!(data.get(), req.data.to_string());
            }
            (action, other) => prop_assert!(false, "{} parsed as {:?}", action, other),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(body in any::<String>()) {
        check_parse_never_panics(&body)?;
    }

    #[test]
    fn request_like_text_never_panics(body in jsonish()) {
        check_parse_never_panics(&body)?;
    }

    #[test]
    fn nesting_depth_matches_the_value(v in json_value()) {
        let text = v.to_string();
        prop_assert_eq!(nesting_depth(&text), depth(&v));
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        prop_assert_eq!(nesting_depth(&pretty), depth(&v));
    }

    #[test]
    fn frames_deeper_than_the_limit_are_bad_requests(extra in 1usize..200, inner in json_value()) {
        let d = depth(&inner);
        // Wrap `inner` in enough arrays to pass MAX_DEPTH by `extra`.
        let wraps = (MAX_DEPTH + extra).saturating_sub(d).max(1);
        let data = format!("{}{}{}", "[".repeat(wraps), inner, "]".repeat(wraps));
        let body = format!(r#"{{"action":"publish","room":"a","data":{data}}}"#);
        let err = protocol::parse(&body).request.expect_err("too deep");
        prop_assert_eq!(err.code, ErrorCode::BadRequest);
    }

    #[test]
    fn every_error_frame_is_valid_json(
        code in proptest::sample::select(ErrorCode::ALL.to_vec()),
        message in any::<String>(),
        request_id in proptest::option::of(any::<String>()),
        id in proptest::option::of(json_value()),
    ) {
        let err = HandlerError::new(code, message);
        let id_text = id.map(|v| v.to_string());
        let raw = id_text.as_deref().map(|t| serde_json::from_str::<&RawValue>(t).unwrap());
        check_error_frame(&err, request_id.as_deref(), raw)?;
    }

    #[test]
    fn message_template_is_valid_json_with_the_seq(
        room in any::<String>(),
        data in json_value(),
        seq in any::<u64>(),
        ts in any::<u64>(),
    ) {
        let data_text = data.to_string();
        let raw = serde_json::from_str::<&RawValue>(&data_text).unwrap();
        let template = MessageTemplate::new(&room, raw, ts);
        let frame = template.render(seq);
        let v: Value = serde_json::from_str(frame.as_str())
            .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {}", frame.as_str())))?;
        prop_assert_eq!(&v["type"], "message");
        prop_assert_eq!(v["room"].as_str(), Some(room.as_str()));
        // The data is spliced in byte for byte (compared as text: serde_json's default
        // float parsing is not exact, the text is).
        prop_assert_eq!(raw_field(frame.as_str(), "data"), data_text.clone());
        prop_assert_eq!(v["seq"].as_u64(), Some(seq));
        prop_assert_eq!(v["ts"].as_u64(), Some(ts));
        // Rendering again with another seq changes only the seq.
        let other: Value = serde_json::from_str(template.render(seq ^ 1).as_str()).unwrap();
        prop_assert_eq!(other["seq"].as_u64(), Some(seq ^ 1));
        prop_assert_eq!(raw_field(template.render(seq ^ 1).as_str(), "data"), data_text);
    }
}
