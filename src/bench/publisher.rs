//! The publishing side of the `fanout` and `mixed` scenarios: a publisher connection (or a
//! command run per message) that publishes on a schedule, matches each `published` reply
//! to its publish, and records every acknowledged `seq` in the [`Ledger`] the subscribers
//! are accounted against.

use super::client::{self, Frame, Ws};
use super::stats::{self, Failures, Latency, LatencySummary, Ledger};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What a publisher connection does: `count` publishes `every` apart from `first`
/// (none at or after `end`); publish j carries `k = k_base + j * k_step` and goes to
/// `rooms[k % rooms.len()]`.
pub struct PubPlan {
    /// Rooms to publish into.
    pub rooms: Arc<Vec<String>>,
    /// First publish.
    pub first: Instant,
    /// Interval.
    pub every: Duration,
    /// Publishes at most.
    pub count: u64,
    /// No publish at or after this.
    pub end: Instant,
    /// k of the first publish.
    pub k_base: u64,
    /// k step between publishes.
    pub k_step: u64,
    /// Padding in each message's data.
    pub pad: String,
    /// Where acknowledged publishes are recorded.
    pub ledger: Arc<Ledger>,
}

/// What a publisher saw.
#[derive(Default)]
pub struct PubStats {
    /// Publishes sent.
    pub sent: u64,
    /// `published` replies.
    pub acked: u64,
    /// Sum of `delivered` over the replies.
    pub delivered: u64,
    /// Error replies by code (and `send_failed`, `closed`, `ack_without_seq`).
    pub errors: Failures,
    /// Publish → `published` reply, µs.
    pub ack: Latency,
}

impl PubStats {
    /// Adds another publisher's counts.
    pub fn merge(&mut self, o: &PubStats) {
        self.sent += o.sent;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.errors.merge(&o.errors);
        self.ack.merge(&o.ack);
    }
}

fn handle_reply(s: &str, out: &mut VecDeque<(u64, Instant)>, st: &mut PubStats, ledger: &Ledger) {
    let Some(f) = Frame::parse(s) else { return };
    let ok = match f.ty() {
        "published" => true,
        "error" => false,
        _ => return,
    };
    let pos = match f.id {
        Some(id) => out.iter().position(|o| o.0 == id),
        None if out.is_empty() => None,
        None => Some(0),
    };
    let sent_at = pos.and_then(|p| out.remove(p)).map(|o| o.1);
    if ok {
        st.acked += 1;
        st.delivered += f.delivered.unwrap_or(0);
        match (f.room.as_deref(), f.seq) {
            (Some(room), Some(seq)) => ledger.acked(room, seq),
            _ => st.errors.add("ack_without_seq"),
        }
        if let Some(t) = sent_at {
            st.ack.record_us(t.elapsed().as_micros() as u64);
        }
    } else {
        st.errors.add(format!("error_{}", f.code.as_deref().unwrap_or("unknown")));
    }
}

/// Publishes per `plan` (calling `on_send(k, ts)` just before each frame goes out), reads
/// the replies, then waits briefly for outstanding ones and closes the connection.
pub async fn publish_loop(mut ws: Ws, plan: PubPlan, mut on_send: impl FnMut(u64, u64)) -> PubStats {
    let mut st = PubStats::default();
    let mut out: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut last_ts = 0;
    let mut closed = false;
    'outer: for j in 0..plan.count {
        let at = plan.first + plan.every.mul_f64(j as f64);
        if at >= plan.end {
            break;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => break,
                m = ws.next() => match m {
                    Some(Ok(Message::Text(s))) => handle_reply(s.as_str(), &mut out, &mut st, &plan.ledger),
                    Some(Ok(_)) => {}
                    _ => { closed = true; break 'outer; }
                }
            }
        }
        let k = plan.k_base + j * plan.k_step;
        let room = &plan.rooms[(k % plan.rooms.len() as u64) as usize];
        let ts = stats::now_us().max(last_ts + 1);
        last_ts = ts;
        on_send(k, ts);
        let sent_at = Instant::now();
        if client::send(&mut ws, client::publish_frame(room, ts, k, &plan.pad, k)).await.is_err() {
            st.errors.add("send_failed");
            closed = true;
            break;
        }
        st.sent += 1;
        out.push_back((k, sent_at));
    }
    if !closed {
        // servers that acknowledge publishes do so within this; the others never do
        let drain_end = Instant::now() + Duration::from_secs(3);
        let quiet_end = Instant::now() + Duration::from_millis(300);
        while !out.is_empty() {
            if st.acked == 0 && st.errors.total() == 0 && Instant::now() >= quiet_end {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(drain_end.into()) => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                m = ws.next() => match m {
                    Some(Ok(Message::Text(s))) => handle_reply(s.as_str(), &mut out, &mut st, &plan.ledger),
                    Some(Ok(_)) => {}
                    _ => { closed = true; break; }
                }
            }
        }
    }
    if closed {
        st.errors.add("closed");
    } else {
        client::close(ws).await;
    }
    st
}

/// Publishes per `plan` by running `tpl` once per message (sequentially); a successful exit
/// that printed the message's `seq` (a JSON object with `seq`) counts as the
/// acknowledgement, and its duration as the ack time.
pub async fn publish_cmds(tpl: &str, plan: PubPlan, timeout: Duration, mut on_send: impl FnMut(u64, u64)) -> PubStats {
    let mut st = PubStats::default();
    let mut last_ts = 0;
    let pad = if plan.pad.is_empty() { String::new() } else { format!(r#","pad":"{}""#, plan.pad) };
    for j in 0..plan.count {
        let at = plan.first + plan.every.mul_f64(j as f64);
        if at >= plan.end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let k = plan.k_base + j * plan.k_step;
        let room = &plan.rooms[(k % plan.rooms.len() as u64) as usize];
        let ts = stats::now_us().max(last_ts + 1);
        last_ts = ts;
        let data = format!(r#"{{"ts":{ts},"k":{k}{pad}}}"#);
        let cmd = tpl.replace("{room}", room).replace("{data}", &data);
        on_send(k, ts);
        let started = Instant::now();
        let r = tokio::time::timeout(
            timeout,
            tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await;
        st.sent += 1;
        match r {
            Ok(Ok(o)) if o.status.success() => {
                let seq = serde_json::from_slice::<serde_json::Value>(&o.stdout).ok().and_then(|v| v["seq"].as_u64());
                match seq {
                    Some(seq) => {
                        plan.ledger.acked(room, seq);
                        st.acked += 1;
                        st.ack.record_us(started.elapsed().as_micros() as u64);
                    }
                    None => st.errors.add("cmd_no_seq"),
                }
            }
            Ok(Ok(o)) => st.errors.add(format!("cmd_exit_{}", o.status.code().unwrap_or(-1))),
            Ok(Err(_)) => st.errors.add("cmd_spawn"),
            Err(_) => st.errors.add("cmd_timeout"),
        }
    }
    st
}

/// Publisher side of the run.
#[derive(Debug, Serialize)]
pub struct PublisherReport {
    /// Publishes sent.
    pub sent: u64,
    /// `published` replies.
    pub acked: u64,
    /// Sum of `delivered` in the replies (what the server says it fanned out to).
    pub server_delivered: u64,
    /// Error replies by code.
    pub errors: Failures,
    /// Publish → `published` reply, ms.
    pub ack_ms: LatencySummary,
}

impl PublisherReport {
    /// The reportable form of publisher counts.
    pub fn of(p: &PubStats) -> Self {
        PublisherReport {
            sent: p.sent,
            acked: p.acked,
            server_delivered: p.delivered,
            errors: p.errors.clone(),
            ack_ms: p.ack.summary(),
        }
    }
}
