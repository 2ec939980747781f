//! `wsctl subscribe ROOM…`: a WebSocket client that speaks the service's protocol. It
//! connects with an API key, subscribes, prints each message, and after a dropped
//! connection reconnects and resubscribes with `since` (the last seq it printed per room),
//! so nothing the rooms' history still holds is missed; it says so on stderr.

use crate::aws::AwsTarget;
use crate::exit::Outcome;
use crate::local::LocalState;
use crate::ops::TargetArgs;
use crate::ui::Ui;
use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// `wsctl subscribe`
#[derive(Debug)]
pub struct SubscribeArgs {
    /// Rooms to subscribe to, e.g. tvl:protocol:aave price:coingecko:bitcoin.
    pub rooms: Vec<String>,
    /// Where the command acts.
    pub target: TargetArgs,
    /// Connect here (ws:// or wss://) instead of the stage's WebSocket URL.
    pub url: Option<String>,
    /// API key with the subscribe scope (on --stage local: the gateway's dev key).
    pub key: Option<String>,
    /// Replay what each room's history still holds after this seq (0: all of it).
    pub since: Option<u64>,
    /// Exit after printing this many messages.
    pub count: Option<u64>,
}

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A ping this often keeps the connection inside the gateway's 10-minute idle timeout.
const PING_EVERY: Duration = Duration::from_secs(300);

/// How a session ended.
enum End {
    /// `--count` messages printed.
    Done,
    /// The connection dropped (or could not be made); retry.
    Dropped(String),
}

/// Runs `wsctl subscribe`.
pub async fn run(stages: &Path, aws: &AwsTarget, ui: &Ui, args: SubscribeArgs) -> Result<Outcome> {
    let (url, key) = endpoint(stages, aws, &args).await?;
    let mut last: BTreeMap<String, Option<u64>> = args.rooms.iter().map(|r| (r.clone(), args.since)).collect();
    let mut printed = 0u64;
    let mut backoff = Duration::from_millis(250);
    let mut connected_once = false;
    loop {
        match session(&url, &key, &mut last, &mut printed, args.count, ui, &mut connected_once).await? {
            End::Done => return Ok(Outcome::Success),
            End::Dropped(why) => {
                let resume: Vec<String> = last
                    .iter()
                    .map(|(r, s)| format!("{r} since {}", s.map_or("-".into(), |s| s.to_string())))
                    .collect();
                eprintln!("subscribe: {why}; reconnecting in {backoff:?} ({})", resume.join(", "));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The URL (without key) and the key to connect with.
async fn endpoint(stages: &Path, aws: &AwsTarget, args: &SubscribeArgs) -> Result<(String, String)> {
    let local = args.target.stage == "local";
    let state = || LocalState::existing(&args.target.state_dir);
    let key = match (&args.key, local) {
        (Some(k), _) => k.clone(),
        (None, true) => state()?.dev_key().ok_or_else(|| {
            anyhow!("no dev key in {}: start `wsctl dev` first, or pass --key", args.target.state_dir.display())
        })?,
        (None, false) => {
            bail!(
                "--key (or WSCTL_API_KEY) is needed for stage '{}': create one with `wsctl keys create`",
                args.target.stage
            )
        }
    };
    let url = match (&args.url, local) {
        (Some(u), _) => u.clone(),
        (None, true) => state()?.gateway()?.url,
        (None, false) => match crate::ops::Target::resolve(stages, aws, &args.target).await? {
            crate::ops::Target::Deployed(d) => d.websocket_url().await?,
            crate::ops::Target::Local(_) => unreachable!("stage is not local"),
        },
    };
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        bail!("--url must start with ws:// or wss:// (got {url})");
    }
    Ok((url, key))
}

/// One connection: subscribe every room, print messages until the count is reached or the
/// connection drops. Errors that a retry cannot fix (a refused key, a bad room) end the command.
async fn session(
    url: &str,
    key: &str,
    last: &mut BTreeMap<String, Option<u64>>,
    printed: &mut u64,
    count: Option<u64>,
    ui: &Ui,
    connected_once: &mut bool,
) -> Result<End> {
    let mut request = url.into_client_request().with_context(|| format!("bad WebSocket URL {url}"))?;
    request.headers_mut().insert("x-api-key", key.parse().context("the API key is not a valid header value")?);
    let mut ws = match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(resp)) if matches!(resp.status().as_u16(), 401 | 403) => {
            bail!("{url} refused the key (HTTP {}): check --key, or whether it was revoked", resp.status())
        }
        Err(e) if !*connected_once => return Err(anyhow!(e)).with_context(|| format!("cannot connect to {url}")),
        Err(e) => return Ok(End::Dropped(format!("cannot connect to {url} ({e})"))),
    };
    if *connected_once {
        eprintln!("subscribe: reconnected to {url}; resubscribing with since");
    } else {
        eprintln!("subscribe: connected to {url}");
    }
    *connected_once = true;
    for (room, since) in last.iter() {
        let mut req = json!({ "action": "subscribe", "room": room });
        if let Some(s) = since {
            req["since"] = json!(s);
        }
        if ws.send(Message::text(req.to_string())).await.is_err() {
            return Ok(End::Dropped("connection lost while subscribing".into()));
        }
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = ping.tick() => {
                let _ = ws.send(Message::text(r#"{"action":"ping"}"#)).await;
                continue;
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                let why = c
                    .map_or_else(|| "closed".to_owned(), |c| format!("closed by the server ({} {})", c.code, c.reason));
                return Ok(End::Dropped(why));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Ok(End::Dropped(format!("connection lost ({e})"))),
            None => return Ok(End::Dropped("connection lost".into())),
        };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
        match frame["type"].as_str() {
            Some("subscribed") => {
                let room = frame["room"].as_str().unwrap_or_default().to_owned();
                let resumed = last.get(&room).copied().flatten().is_some();
                if frame["truncated"].as_bool() == Some(true) {
                    eprintln!("subscribe: {room}: the room's history no longer holds every message since the last one seen; some were missed");
                }
                if !resumed {
                    // A fresh subscribe: the room's current value, then everything after it.
                    if frame["latest"].is_object() && print(&frame["latest"], ui, printed, count)? {
                        return Ok(End::Done);
                    }
                    last.insert(room, frame["seq"].as_u64());
                }
            }
            Some("message") => {
                let room = frame["room"].as_str().unwrap_or_default().to_owned();
                let seq = frame["seq"].as_u64();
                let seen = last.get(&room).copied().flatten();
                if seq.is_some() && seen.is_some() && seq <= seen {
                    continue; // already printed before a reconnect
                }
                last.insert(room, seq);
                if print(&frame, ui, printed, count)? {
                    return Ok(End::Done);
                }
            }
            Some("error") => {
                let code = frame["code"].as_str().unwrap_or("error");
                let message = frame["message"].as_str().unwrap_or_default();
                if frame["retryable"].as_bool() == Some(true) {
                    eprintln!("subscribe: server error {code}: {message}");
                } else {
                    bail!("the server refused ({code}): {message}");
                }
            }
            _ => {}
        }
    }
}

/// Prints one message; true once `count` messages were printed. A reader that closed the
/// pipe (`wsctl subscribe R | head -1`) ends the command quietly with exit 0.
fn print(frame: &Value, ui: &Ui, printed: &mut u64, count: Option<u64>) -> Result<bool> {
    ui.record(frame, || {
        format!(
            "{} #{} {}",
            frame["room"].as_str().unwrap_or_default(),
            frame["seq"].as_u64().unwrap_or_default(),
            frame["data"]
        )
    })?;
    *printed += 1;
    Ok(count.is_some_and(|c| *printed >= c))
}
