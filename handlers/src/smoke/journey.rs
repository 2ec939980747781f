//! The journey itself: the WebSocket client side, the order of the steps, their timing and
//! their verdicts. Everything stage-specific goes through [`SmokeStage`].

use super::{
    verdict, Budget, ProbeKey, SmokeConfig, SmokeReport, SmokeStage, Step, StepReport, StepStatus, KEY_LIFETIME,
    PROBE_ROOM, ROOM_PREFIX, STEP_TIMEOUT,
};
use crate::store::now_ms;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A room just outside [`ROOM_PREFIX`] (it shares the prefix's first letters, not the
/// prefix), which the probe key must not enter.
const OUTSIDE_ROOM: &str = "smoke-outside:probe";

/// How far `connectedAt` may be from this host's clock before it is called wrong (clock
/// skew between a CI runner and AWS is seconds; a unit mix-up is years).
const CLOCK_SLACK_MS: i64 = 5 * 60 * 1000;

/// Runs the journey against `stage`; never fails as a whole: every problem is a step's
/// `got`. The probe key is revoked and deleted whenever it was created.
pub async fn run(stage: &dyn SmokeStage, config: &SmokeConfig) -> SmokeReport {
    let started_at = now_ms();
    let mut j = Journey { budget: config.budget, steps: Vec::new() };
    let url = config.url.as_str();
    let marker = config.run_id.as_str();
    let agent = |n: u8| format!("wsctl-smoke/{marker}-{n}");

    // create-key
    let t = Instant::now();
    let name = format!("{}{marker}", super::KEY_NAME_PREFIX);
    let expires_at = started_at.saturating_add((config.hold + KEY_LIFETIME).as_millis() as u64);
    let outcome = stage
        .create_key(&name, expires_at)
        .await
        .map(|k| {
            let got = format!("{} (subscribe only, rooms {ROOM_PREFIX}*)", k.key_id);
            (k, got)
        })
        .map_err(|e| e.to_string());
    let expected = format!("a new subscribe-only probe key limited to rooms {ROOM_PREFIX}*");
    let key: Option<ProbeKey> = j.record(Step::CreateKey, expected, outcome, t.elapsed());

    // reject-no-key
    if j.gate(Step::RejectNoKey, "HTTP 401 or 403") {
        let t = Instant::now();
        let outcome = match handshake(url, None, &agent(0)).await {
            Handshake::Refused(401 | 403, status) => Ok(((), status)),
            Handshake::Refused(_, status) => Err(status),
            Handshake::Open(mut ws) => {
                ws_close(&mut ws).await;
                Err("HTTP 101: the gateway accepted a connection without a key".into())
            }
            Handshake::Failed(e) => Err(e),
        };
        let elapsed = t.elapsed();
        j.record(Step::RejectNoKey, "HTTP 401 or 403".into(), outcome, elapsed);
    }

    // connect
    let expected = "HTTP 101 with the probe key".to_owned();
    let mut ws = None;
    if let (true, Some(k)) = (j.gate(Step::Connect, &expected), key.as_ref()) {
        let t = Instant::now();
        let outcome = open(url, &k.raw, &agent(1)).await;
        ws = j.record(Step::Connect, expected, outcome, t.elapsed());
    }

    // subscribe
    let expected = format!("`subscribed` to {PROBE_ROOM}");
    let mut subscribed_seq = None;
    if let (true, Some(ws)) = (j.gate(Step::Subscribe, &expected), ws.as_mut()) {
        let t = Instant::now();
        let outcome = subscribe(ws, None).await.map(|reply| {
            let seq = reply["seq"].as_u64().unwrap_or(0);
            (seq, format!("subscribed at seq {seq}"))
        });
        subscribed_seq = j.record(Step::Subscribe, expected, outcome, t.elapsed());
    }

    // reject-outside-prefix
    let expected = format!("`forbidden` for {OUTSIDE_ROOM}, naming {ROOM_PREFIX:?}");
    if let (true, Some(ws)) = (j.gate(Step::RejectOutsidePrefix, &expected), ws.as_mut()) {
        let t = Instant::now();
        let outcome = subscribe_outside(ws).await.map(|message| ((), message));
        j.record::<()>(Step::RejectOutsidePrefix, expected, outcome, t.elapsed());
    }

    // hold
    if !config.hold.is_zero() {
        let expected = format!("still connected after {} s", config.hold.as_secs_f64());
        if let (true, Some(ws)) = (j.gate(Step::Hold, &expected), ws.as_mut()) {
            let t = Instant::now();
            let outcome = hold(ws, config.hold).await.map(|()| ((), "still connected".to_owned()));
            j.record::<()>(Step::Hold, expected, outcome, t.elapsed());
        }
    }

    // publish
    let data = |n: u8| json!({ "smoke": marker, "n": n });
    let expected = format!("a seq after {}", subscribed_seq.map_or("the subscribe's".into(), |s| s.to_string()));
    let mut first = None;
    if let (true, Some(after)) = (j.gate(Step::Publish, &expected), subscribed_seq) {
        let t = Instant::now();
        let outcome = match stage.publish(PROBE_ROOM, &data(1)).await {
            Ok(seq) if seq > after => Ok(((seq, t), format!("seq {seq}"))),
            Ok(seq) => Err(format!("seq {seq}, not after the subscribe's {after}")),
            Err(e) => Err(e.to_string()),
        };
        first = j.record(Step::Publish, expected, outcome, t.elapsed());
    }

    // deliver: timed from the start of the publish
    let expected =
        first.map_or_else(|| "the message with the publish's seq".into(), |(seq, _)| format!("message seq {seq}"));
    let mut delivered = None;
    if let (true, Some(ws), Some((seq, since))) = (j.gate(Step::Deliver, &expected), ws.as_mut(), first) {
        let outcome = wait_message(ws, seq, marker).await.map(|()| (seq, format!("message seq {seq}")));
        delivered = j.record(Step::Deliver, expected, outcome, since.elapsed());
    }

    // publish-while-away
    let expected = first.map_or_else(|| "a later seq".into(), |(seq, _)| format!("a seq after {seq}"));
    let mut second = None;
    if let (true, Some(seq1)) = (j.gate(Step::PublishWhileAway, &expected), delivered) {
        if let Some(ws) = ws.as_mut() {
            ws_close(ws).await;
        }
        let t = Instant::now();
        let outcome = match stage.publish(PROBE_ROOM, &data(2)).await {
            Ok(seq) if seq > seq1 => Ok((seq, format!("seq {seq}"))),
            Ok(seq) => Err(format!("seq {seq}, not after {seq1}")),
            Err(e) => Err(e.to_string()),
        };
        second = j.record(Step::PublishWhileAway, expected, outcome, t.elapsed());
    }
    drop(ws);

    // reconnect
    let expected = "HTTP 101 with the probe key".to_owned();
    let mut ws2 = None;
    if let (true, Some(k)) = (j.gate(Step::Reconnect, &expected), key.as_ref()) {
        let t = Instant::now();
        let outcome = open(url, &k.raw, &agent(2)).await;
        ws2 = j.record(Step::Reconnect, expected, outcome, t.elapsed());
    }

    // replay: subscribe since the first message, up to the missed one
    let expected = second.map_or_else(
        || "`subscribed` with replayed ≥ 1, then the missed message".into(),
        |seq2| format!("`subscribed` with replayed ≥ 1, then message seq {seq2}"),
    );
    if let (true, Some(ws), Some(seq1), Some(seq2)) = (j.gate(Step::Replay, &expected), ws2.as_mut(), delivered, second)
    {
        let t = Instant::now();
        let outcome = async {
            let reply = subscribe(ws, Some(seq1)).await?;
            let count = reply["replayed"].as_u64().unwrap_or(0);
            if count == 0 {
                return Err(format!("subscribed with replayed {count}: {reply}"));
            }
            wait_message(ws, seq2, marker).await?;
            Ok(((), format!("replayed {count}, message seq {seq2}")))
        }
        .await;
        j.record(Step::Replay, expected, outcome, t.elapsed());
    }

    // get-connection
    let ua = agent(2);
    let expected = format!("connectedAt, lastActiveAt, identity.sourceIp, identity.userAgent {ua:?}");
    let mut connection = None;
    if let (true, Some(k)) = (j.gate(Step::GetConnection, &expected), key.as_ref()) {
        let t = Instant::now();
        let outcome = get_connection(stage, &k.key_id, &ua, started_at).await;
        connection = j.record(Step::GetConnection, expected, outcome, t.elapsed());
    }

    // kick
    let expected = "DeleteConnection accepted and the socket closed".to_owned();
    if let (true, Some(id), Some(ws)) = (j.gate(Step::Kick, &expected), connection.as_deref(), ws2.as_mut()) {
        let t = Instant::now();
        let outcome = match stage.delete_connection(id).await {
            Ok(true) => wait_close(ws).await.map(|how| ((), format!("accepted; {how}"))),
            Ok(false) => Err(format!("GoneException (410) for live connection {id}")),
            Err(e) => Err(e.to_string()),
        };
        j.record::<()>(Step::Kick, expected, outcome, t.elapsed());
    }
    drop(ws2);

    // revoke-key and reject-revoked-key: always, once the key exists.
    let expected = "the probe key revoked".to_owned();
    let mut revoked = None;
    match &key {
        Some(k) => {
            let t = Instant::now();
            let outcome = stage.revoke_key(&k.key_id).await.map(|()| (k, format!("revoked {}", k.key_id)));
            revoked = j.record(Step::RevokeKey, expected, outcome.map_err(|e| e.to_string()), t.elapsed());
        }
        None => j.skip(Step::RevokeKey, expected),
    }
    let expected = "HTTP 403".to_owned();
    match revoked {
        Some(k) => {
            let t = Instant::now();
            let outcome = match handshake(url, Some(&k.raw), &agent(3)).await {
                Handshake::Refused(403, status) => Ok(((), status)),
                Handshake::Refused(_, status) => Err(status),
                Handshake::Open(mut ws) => {
                    ws_close(&mut ws).await;
                    Err("HTTP 101: the revoked key still connects".into())
                }
                Handshake::Failed(e) => Err(e),
            };
            let elapsed = t.elapsed();
            j.record(Step::RejectRevokedKey, expected, outcome, elapsed);
        }
        None => j.skip(Step::RejectRevokedKey, expected),
    }

    // delete-key: always, once the key exists (also when the revocation failed).
    let expected = "the probe key's record deleted".to_owned();
    match &key {
        Some(k) => {
            let t = Instant::now();
            let outcome = stage.delete_key(&k.key_id).await.map(|()| ((), format!("deleted {}", k.key_id)));
            j.record::<()>(Step::DeleteKey, expected, outcome.map_err(|e| e.to_string()), t.elapsed());
        }
        None => j.skip(Step::DeleteKey, expected),
    }

    let failed_step = j.steps.iter().find(|s| s.status == StepStatus::Failed).map(|s| s.step);
    SmokeReport {
        url: config.url.clone(),
        room: PROBE_ROOM.to_owned(),
        run_id: config.run_id.clone(),
        ok: failed_step.is_none(),
        failed_step,
        started_at,
        hold_ms: config.hold.as_millis() as u64,
        budget: config.budget.into(),
        steps: j.steps,
    }
}

/// The steps so far.
struct Journey {
    budget: Budget,
    steps: Vec<StepReport>,
}

impl Journey {
    fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.status == StepStatus::Failed)
    }

    /// Whether `step` runs: once a step failed, the ones after it are recorded as skipped
    /// (revoking the key is not gated).
    fn gate(&mut self, step: Step, expected: &str) -> bool {
        if self.failed() {
            self.skip(step, expected.to_owned());
            return false;
        }
        true
    }

    fn skip(&mut self, step: Step, expected: String) {
        self.steps.push(StepReport {
            step,
            status: StepStatus::Skipped,
            elapsed_ms: None,
            budget_ms: self.budget.of(step).map(|b| b.as_millis() as u64),
            expected,
            got: None,
        });
    }

    /// Records a step's outcome (what it got, or why it failed) and time; returns its value
    /// if it passed within its budget.
    fn record<T>(
        &mut self,
        step: Step,
        expected: String,
        outcome: Result<(T, String), String>,
        elapsed: Duration,
    ) -> Option<T> {
        let budget = self.budget.of(step);
        let (value, got) = match outcome {
            Ok((v, got)) => (Some(v), Ok(got)),
            Err(e) => (None, Err(e)),
        };
        let status = verdict(&got, elapsed, budget);
        let got = match (&got, status) {
            (Ok(g), StepStatus::Failed) => format!(
                "{g}, but in {:.1} ms, over its budget of {} ms",
                elapsed.as_secs_f64() * 1000.0,
                budget.map_or(0, |b| b.as_millis())
            ),
            (Ok(g) | Err(g), _) => g.clone(),
        };
        tracing::debug!(step = step.as_str(), ?status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, %got, "smoke step");
        self.steps.push(StepReport {
            step,
            status,
            elapsed_ms: Some((elapsed.as_secs_f64() * 1e6).round() / 1e3),
            budget_ms: budget.map(|b| b.as_millis() as u64),
            expected,
            got: Some(got),
        });
        value.filter(|_| status == StepStatus::Passed)
    }
}

/// How a WebSocket handshake ended.
enum Handshake {
    Open(Box<Ws>),
    /// Refused with this HTTP status (and its text for the report).
    Refused(u16, String),
    Failed(String),
}

async fn handshake(url: &str, key: Option<&str>, agent: &str) -> Handshake {
    let mut request = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return Handshake::Failed(format!("bad WebSocket URL {url}: {e}")),
    };
    let headers = request.headers_mut();
    if let Some(key) = key {
        match key.parse() {
            Ok(v) => headers.insert("x-api-key", v),
            Err(_) => return Handshake::Failed("the probe key is not a valid header value".into()),
        };
    }
    if let Ok(v) = agent.parse() {
        headers.insert("user-agent", v);
    }
    match tokio::time::timeout(STEP_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => Handshake::Failed(format!("no handshake within {} s", STEP_TIMEOUT.as_secs())),
        Ok(Ok((ws, _))) => Handshake::Open(Box::new(ws)),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let code = resp.status().as_u16();
            Handshake::Refused(code, format!("HTTP {}", resp.status()))
        }
        Ok(Err(e)) => Handshake::Failed(format!("cannot connect to {url}: {e}")),
    }
}

/// A connect that must succeed.
async fn open(url: &str, key: &str, agent: &str) -> Result<(Box<Ws>, String), String> {
    match handshake(url, Some(key), agent).await {
        Handshake::Open(ws) => Ok((ws, "HTTP 101".into())),
        Handshake::Refused(_, status) => Err(format!("refused: {status}")),
        Handshake::Failed(e) => Err(e),
    }
}

/// The next JSON text frame before `deadline`; a close or a timeout is an error naming it.
async fn next_json(ws: &mut Ws, deadline: tokio::time::Instant) -> Result<Value, String> {
    loop {
        let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(format!("nothing within {} s", STEP_TIMEOUT.as_secs())),
            Ok(None) => return Err("the connection ended".into()),
            Ok(Some(Err(e))) => return Err(format!("the connection failed ({e})")),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            Message::Text(text) => match serde_json::from_str(text.as_str()) {
                Ok(v) => return Ok(v),
                Err(_) => return Err(format!("a frame that is not JSON: {}", text.as_str())),
            },
            Message::Close(c) => {
                return Err(c.map_or_else(
                    || "the connection closed".into(),
                    |c| format!("the connection closed ({} {})", c.code, c.reason),
                ))
            }
            _ => continue,
        }
    }
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + STEP_TIMEOUT
}

/// Sends a subscribe to the probe room and waits for its `subscribed` reply (messages of
/// earlier subscriptions are passed over).
async fn subscribe(ws: &mut Ws, since: Option<u64>) -> Result<Value, String> {
    let mut request = json!({ "action": "subscribe", "room": PROBE_ROOM });
    if let Some(s) = since {
        request["since"] = json!(s);
    }
    ws.send(Message::text(request.to_string())).await.map_err(|e| format!("cannot send the subscribe ({e})"))?;
    let until = deadline();
    loop {
        let frame = next_json(ws, until).await?;
        match frame["type"].as_str() {
            Some("subscribed") if frame["room"] == PROBE_ROOM => return Ok(frame),
            Some("error") => return Err(format!("error reply: {frame}")),
            _ => {}
        }
    }
}

/// Subscribes to [`OUTSIDE_ROOM`]; Ok with the error's message when it is refused as
/// `forbidden` naming [`ROOM_PREFIX`].
async fn subscribe_outside(ws: &mut Ws) -> Result<String, String> {
    let request = json!({ "action": "subscribe", "room": OUTSIDE_ROOM });
    ws.send(Message::text(request.to_string())).await.map_err(|e| format!("cannot send the subscribe ({e})"))?;
    let until = deadline();
    loop {
        let frame = next_json(ws, until).await?;
        match frame["type"].as_str() {
            Some("subscribed") if frame["room"] == OUTSIDE_ROOM => {
                return Err(format!("subscribed to {OUTSIDE_ROOM}: the key's room prefix is not enforced"))
            }
            Some("error") => {
                let message = frame["message"].as_str().unwrap_or_default();
                return match frame["code"].as_str() {
                    Some("forbidden") if message.contains(ROOM_PREFIX) => Ok(format!("forbidden: {message}")),
                    _ => Err(format!("error reply other than `forbidden` naming the prefix: {frame}")),
                };
            }
            _ => {}
        }
    }
}

/// Waits for the probe room's message `seq` carrying this run's marker. A later seq first
/// means this one was lost (a room's messages arrive in seq order).
async fn wait_message(ws: &mut Ws, seq: u64, marker: &str) -> Result<(), String> {
    let until = deadline();
    loop {
        let frame = next_json(ws, until).await.map_err(|e| format!("no message seq {seq}: {e}"))?;
        if frame["type"] != "message" || frame["room"] != PROBE_ROOM {
            continue;
        }
        match frame["seq"].as_u64() {
            Some(s) if s == seq && frame["data"]["smoke"] == marker => return Ok(()),
            Some(s) if s == seq => return Err(format!("message seq {seq} with another run's data: {}", frame["data"])),
            Some(s) if s > seq => return Err(format!("message seq {s} before seq {seq}: {seq} was lost")),
            _ => {}
        }
    }
}

/// Keeps the connection open for `hold`, reading (and so answering pings); a close fails.
async fn hold(ws: &mut Ws, hold: Duration) -> Result<(), String> {
    let until = tokio::time::Instant::now() + hold;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return Ok(()),
            Ok(None) => return Err("the connection ended during the hold".into()),
            Ok(Some(Err(e))) => return Err(format!("the connection failed during the hold ({e})")),
            Ok(Some(Ok(Message::Close(c)))) => {
                return Err(c.map_or_else(
                    || "closed during the hold".into(),
                    |c| format!("closed during the hold ({} {})", c.code, c.reason),
                ))
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Closes our side and waits briefly for the server's close.
async fn ws_close(ws: &mut Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

/// Waits for the server to close the socket.
async fn wait_close(ws: &mut Ws) -> Result<String, String> {
    let until = deadline();
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return Err(format!("the socket stayed open for {} s", STEP_TIMEOUT.as_secs())),
            Ok(None) | Ok(Some(Err(_))) => return Ok("the connection ended".into()),
            Ok(Some(Ok(Message::Close(c)))) => {
                return Ok(c.map_or_else(|| "closed".into(), |c| format!("closed ({})", c.code)))
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Finds the reconnected socket's id (by key and user agent) and checks GetConnection's
/// answer field by field.
async fn get_connection(
    stage: &dyn SmokeStage,
    key_id: &str,
    agent: &str,
    started_at: u64,
) -> Result<(String, String), String> {
    let records = stage.connections_of_key(key_id).await.map_err(|e| e.to_string())?;
    let ids: Vec<&String> = records.iter().filter(|(_, ua)| ua == agent).map(|(id, _)| id).collect();
    let id = match ids.as_slice() {
        [id] => (*id).clone(),
        _ => return Err(format!("{} connection record(s) of {key_id} with user agent {agent:?}", ids.len())),
    };
    let shape = stage
        .get_connection(&id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("GoneException (410) for live connection {id}"))?;
    let now = now_ms() as i64;
    let earliest = started_at as i64 - CLOCK_SLACK_MS;
    let mut wrong = Vec::new();
    match shape.connected_at_ms {
        None => wrong.push("connectedAt missing".to_owned()),
        Some(at) if at < earliest || at > now + CLOCK_SLACK_MS => {
            wrong.push(format!("connectedAt {at} ms is not around now ({now} ms)"))
        }
        Some(_) => {}
    }
    match (shape.last_active_at_ms, shape.connected_at_ms) {
        (None, _) => wrong.push("lastActiveAt missing".to_owned()),
        (Some(last), Some(at)) if last < at => wrong.push(format!("lastActiveAt {last} before connectedAt {at}")),
        _ => {}
    }
    if shape.source_ip.is_none() {
        wrong.push("identity.sourceIp missing".to_owned());
    }
    match shape.user_agent.as_deref() {
        None => wrong.push("identity.userAgent missing".to_owned()),
        Some(ua) if ua != agent => wrong.push(format!("identity.userAgent {ua:?}")),
        Some(_) => {}
    }
    if wrong.is_empty() {
        Ok((id.clone(), format!("{id}: all four fields, userAgent {agent:?}")))
    } else {
        Err(format!("{id}: {}", wrong.join(", ")))
    }
}
