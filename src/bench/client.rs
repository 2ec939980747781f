//! The load generator's WebSocket client: where to connect (URL, key, source addresses),
//! opening a connection with its timings, failure causes, and the protocol's frames.

use futures_util::{SinkExt, StreamExt};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Request, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One client connection (plain for ws://, TLS with the system's roots for wss://).
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connections per source address before another 127.0.0.x is used (the ephemeral port
/// range holds about 28k ports per destination).
pub const CONNS_PER_SOURCE: usize = 25_000;

/// How the API key reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVia {
    /// The `apiKey` query parameter.
    Query,
    /// The `x-api-key` header.
    Header,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL connected to (with the key when it travels in the query).
    url: String,
    /// The URL with the key masked, for reports.
    pub display_url: String,
    /// The key for the `x-api-key` header, when it travels there.
    header_key: Option<String>,
    /// The server's address.
    pub addr: SocketAddr,
    /// Number of 127.0.0.x source addresses connections are spread over (1: no binding).
    pub sources: u8,
    /// WebSocket settings (small read buffer).
    pub cfg: WebSocketConfig,
    /// Deadline for TCP connect + upgrade.
    pub connect_timeout: Duration,
}

impl Target {
    /// Parses `url` (ws:// only), adds the key, resolves the address and picks the number of
    /// source addresses for `conns` connections (`sources` 0 = automatic).
    pub fn new(
        url: &str,
        key: Option<&str>,
        via: KeyVia,
        conns: usize,
        sources: u32,
        read_buf: usize,
        connect_timeout: Duration,
    ) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().map_err(|e| anyhow::anyhow!("--url {url:?} is not a URL: {e}"))?;
        let default_port = match uri.scheme_str() {
            Some("ws") => 80,
            Some("wss") => 443,
            _ => anyhow::bail!("--url {url}: expected ws://HOST:PORT/STAGE or wss://HOST/STAGE"),
        };
        let host = uri.host().ok_or_else(|| anyhow::anyhow!("--url {url}: no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(default_port);
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!("cannot resolve {host}:{port}: {e}"))?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| anyhow::anyhow!("no IPv4 address for {host}:{port}"))?;
        let has_key_param = uri.query().is_some_and(|q| q.split('&').any(|p| p.starts_with("apiKey=")));
        let (url, header_key) = match (key, via) {
            (Some(k), KeyVia::Query) if !has_key_param => {
                let sep = if uri.query().is_some() { '&' } else { '?' };
                (format!("{url}{sep}apiKey={}", encode_query(k)), None)
            }
            (Some(k), KeyVia::Header) => (url.to_string(), Some(k.to_string())),
            _ => (url.to_string(), None),
        };
        let display_url = mask_key(&url);
        let sources = if sources > 0 { sources } else { conns.div_ceil(CONNS_PER_SOURCE).max(1) as u32 };
        if sources > 1 && !addr.ip().is_loopback() {
            anyhow::bail!("spreading over {sources} source addresses needs a 127.0.0.0/8 target");
        }
        if sources > 254 {
            anyhow::bail!("--sources {sources}: at most 254 (127.0.0.1 .. 127.0.0.254)");
        }
        let cfg = WebSocketConfig::default().read_buffer_size(read_buf.max(256));
        Ok(Target { url, display_url, header_key, addr, sources: sources as u8, cfg, connect_timeout })
    }

    fn request(&self) -> Result<Request<()>, String> {
        let mut req = self.url.as_str().into_client_request().map_err(|e| ws_cause(&e))?;
        if let Some(k) = &self.header_key {
            let v = HeaderValue::from_str(k).map_err(|_| "bad_key_header".to_string())?;
            req.headers_mut().insert("x-api-key", v);
        }
        Ok(req)
    }
}

fn encode_query(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// The URL with the value of `apiKey` replaced by `***`.
pub fn mask_key(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let q: Vec<String> = query
        .split('&')
        .map(|p| if p.starts_with("apiKey=") { "apiKey=***".to_string() } else { p.to_string() })
        .collect();
    format!("{base}?{}", q.join("&"))
}

/// An open connection and how long its phases took.
pub struct Opened {
    /// The WebSocket.
    pub ws: Ws,
    /// TCP connect time, µs.
    pub tcp_us: u64,
    /// TCP connect + upgrade time, µs.
    pub upgrade_us: u64,
}

/// A short failure cause for an I/O error.
pub fn io_cause(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match (e.raw_os_error(), e.kind()) {
        (Some(libc::EMFILE), _) | (Some(libc::ENFILE), _) => "emfile".into(),
        (Some(libc::EADDRNOTAVAIL), _) => "no_ephemeral_port".into(),
        (_, K::ConnectionRefused) => "refused".into(),
        (_, K::ConnectionReset) => "reset".into(),
        (_, K::TimedOut) => "timeout".into(),
        (_, K::UnexpectedEof) | (_, K::BrokenPipe) | (_, K::ConnectionAborted) => "closed".into(),
        (_, k) => format!("io_{k:?}").to_lowercase(),
    }
}

/// A short failure cause for a WebSocket error (`http_401`, `http_503`, `reset`, …).
pub fn ws_cause(e: &WsError) -> String {
    match e {
        WsError::Io(io) => io_cause(io),
        WsError::Http(r) => format!("http_{}", r.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed".into(),
        WsError::Protocol(_) => "ws_protocol".into(),
        WsError::Capacity(_) => "ws_capacity".into(),
        WsError::Url(_) => "bad_url".into(),
        WsError::Tls(_) => "tls".into(),
        _ => "ws_other".into(),
    }
}

/// TCP connect (from 127.0.0.x when spreading sources) and WebSocket upgrade, bounded by
/// the target's connect timeout. `idx` picks the source address.
pub async fn open(t: &Target, idx: usize) -> Result<Opened, String> {
    match tokio::time::timeout(t.connect_timeout, open_inner(t, idx)).await {
        Ok(r) => r,
        Err(_) => Err("timeout".into()),
    }
}

async fn open_inner(t: &Target, idx: usize) -> Result<Opened, String> {
    let start = Instant::now();
    let sock = TcpSocket::new_v4().map_err(|e| io_cause(&e))?;
    if t.sources > 1 {
        bind_source(&sock, idx, t.sources)?;
    }
    let stream = sock.connect(t.addr).await.map_err(|e| io_cause(&e))?;
    let tcp_us = start.elapsed().as_micros() as u64;
    let _ = stream.set_nodelay(true);
    let req = t.request()?;
    // for wss:// the TLS handshake is part of the upgrade time
    let (ws, _resp) = tokio_tungstenite::client_async_tls_with_config(req, stream, Some(t.cfg), None)
        .await
        .map_err(|e| ws_cause(&e))?;
    let upgrade_us = start.elapsed().as_micros() as u64;
    Ok(Opened { ws, tcp_us, upgrade_us })
}

fn bind_source(sock: &TcpSocket, idx: usize, sources: u8) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect() per 4-tuple, so each
    // source address gets the whole ephemeral range.
    // SAFETY: valid fd, option value points to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let ip = Ipv4Addr::new(127, 0, 0, 1 + (idx % sources as usize) as u8);
    sock.bind(SocketAddr::new(ip.into(), 0)).map_err(|e| io_cause(&e))
}

/// Sends one text frame.
pub async fn send(ws: &mut Ws, frame: String) -> Result<(), String> {
    ws.send(Message::text(frame)).await.map_err(|e| ws_cause(&e))
}

/// Sends a close frame and waits (briefly) for the server's close.
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `{"action":"subscribe","room":R,"id":ID[,"since":N]}`
pub fn subscribe_frame(room: &str, id: u64, since: Option<u64>) -> String {
    match since {
        Some(n) => format!(r#"{{"action":"subscribe","room":{},"id":{id},"since":{n}}}"#, json_str(room)),
        None => format!(r#"{{"action":"subscribe","room":{},"id":{id}}}"#, json_str(room)),
    }
}

/// `{"action":"unsubscribe","room":R,"id":ID}`
pub fn unsubscribe_frame(room: &str, id: u64) -> String {
    format!(r#"{{"action":"unsubscribe","room":{},"id":{id}}}"#, json_str(room))
}

/// `{"action":"ping","id":ID}`
pub fn ping_frame(id: u64) -> String {
    format!(r#"{{"action":"ping","id":{id}}}"#)
}

/// `{"action":"publish","room":R,"data":{"ts":TS,"k":K[,"pad":"x…"]},"id":ID}`
pub fn publish_frame(room: &str, ts: u64, k: u64, pad: &str, id: u64) -> String {
    let pad = if pad.is_empty() { String::new() } else { format!(r#","pad":"{pad}""#) };
    format!(r#"{{"action":"publish","room":{},"data":{{"ts":{ts},"k":{k}{pad}}},"id":{id}}}"#, json_str(room))
}

/// The parts of a server frame the bench looks at (borrowed; everything else is skipped).
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    /// `message`, `subscribed`, `pong`, `published`, `error`, …
    #[serde(rename = "type", borrow, default)]
    pub ty: Option<Cow<'a, str>>,
    /// Room of `message`, `subscribed`, `unsubscribed`, `published`.
    #[serde(borrow, default)]
    pub room: Option<Cow<'a, str>>,
    /// Per-room sequence number.
    #[serde(default)]
    pub seq: Option<u64>,
    /// Echoed request id (the bench only sends integers).
    #[serde(default)]
    pub id: Option<u64>,
    /// Error code.
    #[serde(borrow, default)]
    pub code: Option<Cow<'a, str>>,
    /// `data.ts` and `data.k` of a message published by the bench.
    #[serde(default)]
    pub data: Option<BenchData>,
    /// `delivered` of a `published` reply.
    #[serde(default)]
    pub delivered: Option<u64>,
}

impl<'a> Frame<'a> {
    /// Parses a text frame (None when it is not a JSON object of this shape).
    pub fn parse(s: &'a str) -> Option<Frame<'a>> {
        serde_json::from_str(s).ok()
    }

    /// The frame's type, or "".
    pub fn ty(&self) -> &str {
        self.ty.as_deref().unwrap_or("")
    }
}

/// `ts` (wall µs at publish) and `k` (message index) from a message's data; both absent
/// when the data is not an object the bench wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct BenchData {
    /// Publish wall-clock time, µs.
    pub ts: Option<u64>,
    /// Index of the message within the run.
    pub k: Option<u64>,
}

impl<'de> Deserialize<'de> for BenchData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BenchData;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<BenchData, A::Error> {
                let mut out = BenchData::default();
                while let Some(key) = m.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "ts" => out.ts = m.next_value::<Option<f64>>()?.map(|x| x as u64),
                        "k" => out.k = m.next_value::<Option<f64>>()?.map(|x| x as u64),
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<BenchData, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(BenchData::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<BenchData, E> {
                Ok(BenchData::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<BenchData, E> {
                Ok(BenchData::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<BenchData, E> {
                Ok(BenchData::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<BenchData, E> {
                Ok(BenchData::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<BenchData, E> {
                Ok(BenchData::default())
            }
            fn visit_unit<E>(self) -> Result<BenchData, E> {
                Ok(BenchData::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads frames until a reply of type `want` (or an `error`) arrives; other frames are
/// passed to `other`. Returns the reply's `seq`.
pub async fn await_reply(ws: &mut Ws, want: &str, mut other: impl FnMut(&Frame<'_>)) -> Result<Option<u64>, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let Some(f) = Frame::parse(t.as_str()) else {
                    continue;
                };
                if f.ty() == want {
                    return Ok(f.seq);
                }
                if f.ty() == "error" {
                    return Err(format!("error_{}", f.code.as_deref().unwrap_or("unknown")));
                }
                other(&f);
            }
            Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
            Some(Err(e)) => return Err(ws_cause(&e)),
            Some(Ok(_)) => {}
        }
    }
}

/// Subscribes to `room` and waits for the `subscribed` reply; returns its `seq` (0 when
/// the server sends none).
pub async fn subscribe(ws: &mut Ws, room: &str, id: u64) -> Result<u64, String> {
    send(ws, subscribe_frame(room, id, None)).await?;
    let seq = await_reply(ws, "subscribed", |_| {}).await.map_err(|e| format!("subscribe_{e}"))?;
    Ok(seq.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames() {
        let f = Frame::parse(
            r#"{"type":"message","room":"r:1","data":{"ts":1700000000000001,"k":3,"x":[1]},"seq":7,"ts":1700000000000}"#,
        )
        .expect("frame");
        assert_eq!(f.ty(), "message");
        assert_eq!(f.room.as_deref(), Some("r:1"));
        assert_eq!(f.seq, Some(7));
        let d = f.data.expect("data");
        assert_eq!((d.ts, d.k), (Some(1700000000000001), Some(3)));
        let f = Frame::parse(r#"{"type":"message","room":"r","data":"plain","seq":2}"#).expect("f");
        assert!(f.data.is_some_and(|d| d.ts.is_none()));
        let f = Frame::parse(r#"{"type":"subscribed","room":"r","seq":4,"latest":{"type":"message","seq":4},"id":9}"#)
            .expect("f");
        assert_eq!((f.ty(), f.seq, f.id), ("subscribed", Some(4), Some(9)));
        let f = Frame::parse(r#"{"type":"error","code":"rate_limited","message":"m"}"#).expect("f");
        assert_eq!(f.code.as_deref(), Some("rate_limited"));
        assert!(Frame::parse("not json").is_none());
    }

    #[test]
    fn frames_and_urls() {
        assert_eq!(
            publish_frame("a:b", 5, 1, "", 2),
            r#"{"action":"publish","room":"a:b","data":{"ts":5,"k":1},"id":2}"#
        );
        assert_eq!(subscribe_frame("a", 1, Some(3)), r#"{"action":"subscribe","room":"a","id":1,"since":3}"#);
        let t = Target::new("ws://127.0.0.1:9/local", Some("k y"), KeyVia::Query, 10, 0, 2048, Duration::from_secs(1))
            .expect("target");
        assert_eq!(t.url, "ws://127.0.0.1:9/local?apiKey=k%20y");
        assert_eq!(t.display_url, "ws://127.0.0.1:9/local?apiKey=***");
        assert_eq!(t.sources, 1);
        let t =
            Target::new("ws://127.0.0.1:9/?a=1", Some("k"), KeyVia::Header, 60_000, 0, 2048, Duration::from_secs(1))
                .expect("target");
        assert_eq!((t.sources, t.header_key.as_deref()), (3, Some("k")));
        assert!(Target::new("http://x/", None, KeyVia::Query, 1, 0, 0, Duration::ZERO).is_err());
    }
}
