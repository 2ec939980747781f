//! A WebSocket client whose frames are read by a background task, so a test can keep
//! sending while it records every message, reply and the close (code and time).

use super::Ws;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What a reader task saw on one connection.
#[derive(Default)]
pub struct Seen {
    /// `seq` of every `message` frame, in arrival order.
    pub seqs: Vec<u64>,
    /// Every other text frame.
    pub replies: Vec<Value>,
    /// Close code (None: no close frame) and when it arrived, since the test started.
    pub closed: Option<(Option<u16>, Duration)>,
}

/// A client whose frames are read by a background task, so the test can keep sending.
pub struct Client {
    tx: SplitSink<Ws, Message>,
    seen: Arc<Mutex<Seen>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Starts reading `ws`; close times are measured from `start`.
    pub fn new(ws: Ws, start: Instant) -> Client {
        let (tx, rx) = ws.split();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let reader = tokio::spawn(read_all(rx, seen.clone(), start));
        Client { tx, seen, reader }
    }

    /// Sends a JSON text frame.
    pub async fn send(&mut self, v: Value) {
        self.tx.send(Message::text(v.to_string())).await.expect("send");
    }

    /// The `seq` of every message so far, in arrival order.
    pub fn seqs(&self) -> Vec<u64> {
        self.seen.lock().unwrap().seqs.clone()
    }

    /// Every non-message frame so far.
    pub fn replies(&self) -> Vec<Value> {
        self.seen.lock().unwrap().replies.clone()
    }

    /// The close, once it came.
    pub fn closed(&self) -> Option<(Option<u16>, Duration)> {
        self.seen.lock().unwrap().closed
    }

    /// Waits up to `within` for the server's close; returns its code and time.
    pub async fn wait_closed(&self, within: Duration) -> (Option<u16>, Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(c) = self.closed() {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("not closed within {within:?}");
    }

    /// Waits up to 10 s for a reply of `kind` and returns it.
    pub async fn reply(&self, kind: &str) -> Value {
        for _ in 0..500 {
            if let Some(r) = self.replies().into_iter().rev().find(|r| r["type"] == kind) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {kind} reply; got {:?}", self.replies());
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_all(mut rx: SplitStream<Ws>, seen: Arc<Mutex<Seen>>, start: Instant) {
    while let Some(msg) = rx.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("frame is JSON");
                let mut s = seen.lock().unwrap();
                if v["type"] == "message" {
                    s.seqs.push(v["seq"].as_u64().expect("seq"));
                } else {
                    s.replies.push(v);
                }
            }
            Ok(Message::Close(frame)) => {
                seen.lock().unwrap().closed = Some((frame.map(|f| u16::from(f.code)), start.elapsed()));
                return;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let mut s = seen.lock().unwrap();
    if s.closed.is_none() {
        s.closed = Some((None, start.elapsed()));
    }
}
