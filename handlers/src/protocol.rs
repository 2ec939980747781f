//! The client protocol: JSON text frames in, JSON text frames out.
//!
//! Requests are objects with an `action` (the route selection key, as API Gateway's
//! `$request.body.action`) and an optional `id` that is echoed in the reply. Parsing keeps
//! the `id` even when the rest of the request is wrong, so every error can be matched to
//! its request.

use crate::error::HandlerError;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// Machine-readable error codes sent in `{"type":"error","code":…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    BadJson,
    /// The JSON is valid but not a well-formed request (missing or mistyped field).
    BadRequest,
    /// `action` names no known route.
    UnknownAction,
    /// The room name breaks the grammar.
    InvalidRoom,
    /// The connection is already in as many rooms as the stage allows.
    TooManyRooms,
    /// The API key lacks the scope this action needs.
    Forbidden,
    /// The connection sends faster than its rate limit.
    RateLimited,
    /// The message or its data is larger than allowed.
    MessageTooLarge,
    /// A binary frame or other unsupported frame type.
    UnsupportedFrame,
    /// A backing store is down; nothing was changed; retry later.
    Unavailable,
    /// The named connection, room or key does not exist.
    NotFound,
    /// An unexpected server-side failure.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::UnsupportedFrame => "unsupported_frame",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the same request may succeed if retried later.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::Internal)
    }

    /// Every code, for metrics.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadJson,
        ErrorCode::BadRequest,
        ErrorCode::UnknownAction,
        ErrorCode::InvalidRoom,
        ErrorCode::TooManyRooms,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnsupportedFrame,
        ErrorCode::Unavailable,
        ErrorCode::NotFound,
        ErrorCode::Internal,
    ];
}

/// The actions a client may send.
pub const ACTIONS: &str = "subscribe, unsubscribe, ping, rooms, publish";

/// A parsed client request.
#[derive(Debug)]
pub enum Request<'a> {
    /// Join a room; `since` asks for a replay of what history holds after that seq.
    Subscribe { room: Cow<'a, str>, since: Option<u64> },
    /// Leave a room.
    Unsubscribe { room: Cow<'a, str> },
    /// Liveness check.
    Ping,
    /// List the caller's rooms.
    Rooms,
    /// Publish `data` to a room (needs the `publish` scope).
    Publish { room: Cow<'a, str>, data: &'a RawValue },
}

/// One inbound frame: the echoed `id` (if any could be read) and the request or why it is bad.
#[derive(Debug)]
pub struct Inbound<'a> {
    /// The request's `id`, echoed verbatim in the reply.
    pub id: Option<&'a RawValue>,
    /// The request, or the error to send back.
    pub request: Result<Request<'a>, HandlerError>,
}

/// Deepest nesting of arrays/objects a frame may have; subscribers' JSON parsers often
/// stop near 1000, so deeper data is refused before it is forwarded.
pub const MAX_DEPTH: usize = 64;

/// Maximum nesting depth of `json` (a linear scan that skips string contents).
pub fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for b in json.bytes() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses one text frame.
pub fn parse(body: &str) -> Inbound<'_> {
    if nesting_depth(body) > MAX_DEPTH {
        return Inbound {
            id: None,
            request: Err(bad(ErrorCode::BadRequest, format!("frame nests deeper than {MAX_DEPTH} levels"))),
        };
    }
    let fields: HashMap<Cow<'_, str>, &RawValue> = match serde_json::from_str(body) {
        Ok(f) => f,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Inbound { id: None, request: Err(bad(ErrorCode::BadJson, format!("frame is not valid JSON: {e}"))) }
        }
        Err(_) => {
            return Inbound {
                id: None,
                request: Err(bad(ErrorCode::BadRequest, r#"a request is a JSON object such as {"action":"ping"}"#)),
            }
        }
    };
    let id = fields.get("id").copied();
    Inbound { id, request: route(&fields) }
}

fn bad(code: ErrorCode, message: impl Into<String>) -> HandlerError {
    HandlerError::new(code, message)
}

fn route<'a>(fields: &HashMap<Cow<'a, str>, &'a RawValue>) -> Result<Request<'a>, HandlerError> {
    let action: Cow<'a, str> = match fields.get("action") {
        None => return Err(bad(ErrorCode::BadRequest, format!("missing \"action\"; one of: {ACTIONS}"))),
        Some(raw) => serde_json::from_str(raw.get())
            .map_err(|_| bad(ErrorCode::BadRequest, format!("\"action\" must be a string; one of: {ACTIONS}")))?,
    };
    match action.as_ref() {
        "subscribe" => Ok(Request::Subscribe { room: room_field(fields)?, since: since_field(fields)? }),
        "unsubscribe" => Ok(Request::Unsubscribe { room: room_field(fields)? }),
        "ping" => Ok(Request::Ping),
        "rooms" => Ok(Request::Rooms),
        "publish" => {
            let room = room_field(fields)?;
            let data = fields
                .get("data")
                .copied()
                .ok_or_else(|| bad(ErrorCode::BadRequest, "publish needs \"data\" (any JSON value)"))?;
            Ok(Request::Publish { room, data })
        }
        other => {
            Err(bad(ErrorCode::UnknownAction, format!("unknown action {:?}; one of: {ACTIONS}", truncate(other, 64))))
        }
    }
}

fn room_field<'a>(fields: &HashMap<Cow<'a, str>, &'a RawValue>) -> Result<Cow<'a, str>, HandlerError> {
    let raw = fields
        .get("room")
        .ok_or_else(|| bad(ErrorCode::BadRequest, "missing \"room\" (e.g. \"tvl:protocol:aave\")"))?;
    serde_json::from_str(raw.get()).map_err(|_| bad(ErrorCode::BadRequest, "\"room\" must be a string"))
}

fn since_field(fields: &HashMap<Cow<'_, str>, &RawValue>) -> Result<Option<u64>, HandlerError> {
    match fields.get("since") {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|_| bad(ErrorCode::BadRequest, "\"since\" must be a non-negative integer seq")),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An encoded outbound frame (UTF-8 JSON text), shared cheaply between many receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// The frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The frame's text.
    pub fn as_str(&self) -> &str {
        // Frames are only ever built from `String`s, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The shared buffer (cloning it does not copy).
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Frame {
    fn from(s: String) -> Self {
        Frame(Bytes::from(s))
    }
}

/// The parts of a `message` frame around its `seq`, so a store can assign the seq
/// atomically (e.g. inside a Redis script) and splice it in.
#[derive(Debug, Clone)]
pub struct MessageTemplate {
    /// Everything up to and including `"seq":`.
    pub prefix: String,
    /// Everything after the seq digits.
    pub suffix: String,
}

impl MessageTemplate {
    /// `{"type":"message","room":R,"data":D,"seq":` … `,"ts":T}`
    pub fn new(room: &str, data: &RawValue, ts_ms: u64) -> Self {
        let room = serde_json::to_string(room).unwrap_or_else(|_| "\"\"".into());
        MessageTemplate {
            prefix: format!(r#"{{"type":"message","room":{room},"data":{},"seq":"#, data.get()),
            suffix: format!(r#","ts":{ts_ms}}}"#),
        }
    }

    /// The frame with `seq` filled in.
    pub fn render(&self, seq: u64) -> Frame {
        let mut s = String::with_capacity(self.prefix.len() + self.suffix.len() + 20);
        s.push_str(&self.prefix);
        s.push_str(itoa_u64(seq).as_str());
        s.push_str(&self.suffix);
        Frame::from(s)
    }
}

fn itoa_u64(v: u64) -> String {
    v.to_string()
}

/// Replies to requests. Each variant serializes to `{"type":…, …, "id"?:…}`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Reply<'a> {
    /// Subscribed; `latest` is the room's last message, replayed messages follow as frames.
    Subscribed {
        /// The room.
        room: &'a str,
        /// The room's current seq (0 if nothing was ever published).
        seq: u64,
        /// The room's last message, if any and if no `since` was given.
        latest: Option<&'a RawValue>,
        /// How many messages are replayed after this reply (only with `since`).
        #[serde(skip_serializing_if = "Option::is_none")]
        replayed: Option<usize>,
        /// True when the replay is not everything after `since` (a gap): history no
        /// longer reaches back, or the replay was cut to its newest `max_replay_bytes`.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        /// Echoed request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    /// Unsubscribed (also when the connection was not in the room).
    Unsubscribed {
        /// The room.
        room: &'a str,
        /// Echoed request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    /// Answer to `ping`.
    Pong {
        /// Echoed request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    /// The caller's rooms.
    Rooms {
        /// Room names, sorted.
        rooms: &'a [String],
        /// Echoed request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    /// A publish was accepted and fanned out.
    Published {
        /// The room.
        room: &'a str,
        /// The seq the message got.
        seq: u64,
        /// Subscribers it reached.
        delivered: usize,
        /// Echoed request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    /// A failure; the connection stays open.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// What was wrong and what to do.
        message: &'a str,
        /// Whether retrying later may succeed.
        retryable: bool,
        /// Request id of the gateway/API Gateway request, for support.
        #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
        /// Echoed request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
}

impl Reply<'_> {
    /// Encodes the reply as a frame.
    pub fn encode(&self) -> Frame {
        // Serializing these plain structs cannot fail.
        Frame::from(serde_json::to_string(self).unwrap_or_default())
    }
}

/// Encodes an error reply.
pub fn error_frame(err: &HandlerError, request_id: Option<&str>, id: Option<&RawValue>) -> Frame {
    Reply::Error { code: err.code, message: &err.message, retryable: err.code.retryable(), request_id, id }.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> ErrorCode {
        parse(body).request.unwrap_err().code
    }

    #[test]
    fn parses_each_action() {
        let p = parse(r#"{"action":"subscribe","room":"tvl:protocol:aave","since":3,"id":"a1"}"#);
        assert_eq!(p.id.map(|r| r.get()), Some(r#""a1""#));
        assert!(
            matches!(p.request.unwrap(), Request::Subscribe { room, since: Some(3) } if room == "tvl:protocol:aave")
        );
        assert!(matches!(parse(r#"{"action":"ping"}"#).request.unwrap(), Request::Ping));
        assert!(matches!(parse(r#"{"action":"rooms","id":7}"#).request.unwrap(), Request::Rooms));
        assert!(matches!(
            parse(r#"{"action":"unsubscribe","room":"x"}"#).request.unwrap(),
            Request::Unsubscribe { room } if room == "x"
        ));
        match parse(r#"{"action":"publish","room":"x","data":{"v":1}}"#).request.unwrap() {
            Request::Publish { room, data } => assert_eq!((room.as_ref(), data.get()), ("x", r#"{"v":1}"#)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classifies_bad_frames() {
        assert_eq!(code("{nope"), ErrorCode::BadJson);
        assert_eq!(code(""), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"room":"x"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"action":5}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"action":"dance"}"#), ErrorCode::UnknownAction);
        assert_eq!(code(r#"{"action":"subscribe"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"action":"subscribe","room":"x","since":-1}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"action":"publish","room":"x"}"#), ErrorCode::BadRequest);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(&deep), ErrorCode::BadRequest);
        let deep_obj = format!(r#"{{"action":"ping","x":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(&deep_obj), ErrorCode::BadRequest);
        let ok =
            format!(r#"{{"action":"ping","x":{}1{},"s":"[[[[\"{}"}}"#, "[".repeat(63), "]".repeat(63), "[".repeat(100));
        assert!(matches!(parse(&ok).request, Ok(Request::Ping)), "strings do not count as nesting");
    }

    #[test]
    fn id_is_echoed_even_on_errors() {
        let p = parse(r#"{"action":"dance","id":{"n":1}}"#);
        assert_eq!(p.id.map(|r| r.get()), Some(r#"{"n":1}"#));
        let f = error_frame(&p.request.unwrap_err(), Some("r1"), p.id);
        let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "unknown_action");
        assert_eq!(v["id"]["n"], 1);
        assert_eq!(v["requestId"], "r1");
    }

    #[test]
    fn message_template_renders_valid_json() {
        let data = serde_json::from_str::<&RawValue>(r#"{"tvl":1.5}"#).unwrap();
        let f = MessageTemplate::new("tvl:chain:ethereum", data, 1700).render(42);
        let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["room"], "tvl:chain:ethereum");
        assert_eq!(v["seq"], 42);
        assert_eq!(v["ts"], 1700);
        assert_eq!(v["data"]["tvl"], 1.5);
    }
}
