//! The `fanout` scenario: S subscribers in one room, P messages published over a separate
//! publisher connection. Also the publisher loop that `mixed` reuses.
//!
//! Each message carries `{"ts":<wall µs>,"k":<index>}` in its data. A subscriber matches
//! deliveries on `k` (checked against the `ts` actually sent) for publish → delivery
//! latency and publish → last delivery per message. What each subscriber had to receive
//! is accounted by `seq` ([`stats::Ledger`]): every publish the server acknowledged with a
//! `seq` above the subscriber's `subscribed` reply.

use super::client::{self, Frame, Ws};
use super::connect::{self, PhaseReport};
use super::publisher::{publish_cmds, publish_loop, PubPlan, PubStats, PublisherReport};
use super::report::{self, Meta, Progress, Summary};
use super::stats::{self, Delivery, Latency, LatencySummary, Ledger, ValueSummary, Windows};
use super::Ctx;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

/// `wsctl bench fanout`
#[derive(Debug, Clone)]
pub struct FanoutArgs {
    /// Subscribers (connections) in the room.
    pub subscribers: usize,
    /// Messages to publish.
    pub messages: usize,
    /// Interval between publishes, ms.
    pub interval_ms: u64,
    /// Subscriber connection attempts per second.
    pub connect_rate: f64,
    /// Room (default: bench:fanout:<run id>, fresh for every run).
    pub room: Option<String>,
    /// Padding bytes added to each message's data.
    pub payload_bytes: usize,
    /// Pause between the last subscribe and the first publish, ms.
    pub settle_ms: u64,
    /// After the last publish, wait at most this long for outstanding deliveries, ms.
    pub drain_ms: u64,
    /// Publish by running this shell command once per message instead of over a
    /// WebSocket, e.g. `wsctl --output json publish --stage local --room {room} '{data}'`;
    /// {room} and {data} (the message's JSON data, without single quotes) are substituted.
    /// The command must print a JSON object with the message's `seq` (what the delivery
    /// accounting checks against). Delivery latency then includes the command's start-up.
    pub publish_cmd: Option<String>,
    /// Bound on one --publish-cmd run, ms.
    pub cmd_timeout_ms: u64,
}

// ---------------------------------------------------------------------------------------
// publisher (shared with `mixed`)

// ---------------------------------------------------------------------------------------
// subscribers

struct Shared {
    /// ts sent for message k (0: not sent).
    pub_ts: Vec<AtomicU64>,
    /// deliveries of message k.
    count: Vec<AtomicU64>,
    /// latest receive time of message k, wall µs.
    last: Vec<AtomicU64>,
    /// seq + 1 that message k arrived with (0: not seen), for servers that do not
    /// acknowledge publishes.
    seq_of: Vec<AtomicU64>,
    delivered: AtomicU64,
    latency: Mutex<Latency>,
}

struct SubResult {
    delivery: stats::Subscriber,
    closed_early: bool,
}

async fn subscriber(
    mut ws: Ws,
    room: Arc<str>,
    base_seq: u64,
    sh: Arc<Shared>,
    ledger: Arc<Ledger>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let p = sh.pub_ts.len();
    let mut seen = vec![0u64; p.div_ceil(64)];
    let mut windows = Windows::default();
    windows.subscribing(&room);
    windows.subscribed(&room, base_seq);
    let mut closed_early = false;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            m = ws.next() => match m {
                Some(Ok(Message::Text(s))) => {
                    let recv = stats::now_us();
                    let Some(f) = Frame::parse(s.as_str()) else { continue };
                    if f.ty() != "message" {
                        continue;
                    }
                    let (Some(r), Some(seq)) = (f.room.as_deref(), f.seq) else { continue };
                    windows.message(r, seq);
                    // latency: the first receipt of message k, matched on the ts sent
                    let d = f.data.unwrap_or_default();
                    let (Some(k), Some(ts)) = (d.k, d.ts) else { continue };
                    let k = k as usize;
                    if r != &*room || k >= p || ts == 0 || sh.pub_ts[k].load(Relaxed) != ts {
                        continue;
                    }
                    let (w, b) = (k / 64, 1u64 << (k % 64));
                    if seen[w] & b != 0 {
                        continue;
                    }
                    seen[w] |= b;
                    sh.count[k].fetch_add(1, Relaxed);
                    sh.seq_of[k].store(seq + 1, Relaxed);
                    sh.last[k].fetch_max(recv, Relaxed);
                    sh.delivered.fetch_add(1, Relaxed);
                    sh.latency
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record_us(recv.saturating_sub(ts));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    closed_early = true;
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    // the window closes at the stop: every publish acknowledged by then was due
    let delivery = windows.finish(&ledger);
    if !closed_early {
        client::close(ws).await;
    }
    SubResult { delivery, closed_early }
}

// ---------------------------------------------------------------------------------------
// report

/// One message's fan-out.
#[derive(Debug, Serialize)]
pub struct PerMessage {
    /// Message index (from 1).
    pub msg: usize,
    /// Publish → last subscriber's receipt, ms.
    pub publish_to_last_ms: Option<f64>,
    /// Subscribers that received it.
    pub delivered: u64,
}

/// Server CPU during the publish window.
#[derive(Debug, Serialize)]
pub struct ServerCpu {
    /// PID sampled.
    pub pid: u32,
    /// CPU seconds the server used in the window.
    pub cpu_s: Option<f64>,
    /// Window, s.
    pub window_s: f64,
    /// VmRSS at the end, KiB.
    pub rss_kib: Option<u64>,
}

/// Report of `wsctl bench fanout`.
#[derive(Debug, Serialize)]
pub struct FanoutReport {
    #[serde(flatten)]
    meta: Meta,
    /// Room used.
    pub room: String,
    /// Subscriber connections requested.
    pub subscribers_requested: usize,
    /// Subscribed.
    pub subscribed: usize,
    /// Subscribe phase (connect + subscribe latency, failures).
    pub subscribe_phase: PhaseReport,
    /// Messages requested.
    pub messages_requested: usize,
    /// Interval between publishes, ms.
    pub interval_ms: u64,
    /// Padding bytes per message.
    pub payload_bytes: usize,
    /// `ws` (a publisher connection) or `cmd` (--publish-cmd).
    pub publish_via: &'static str,
    /// Where the messages' `seq`s came from: `acks` (the `published` replies or the
    /// command's output) or `deliveries` (a server that does not acknowledge publishes).
    pub seqs_from: &'static str,
    /// The publisher connection (or command runs).
    pub publisher: PublisherReport,
    /// Per-subscriber accounting: the acknowledged publishes after each subscriber's
    /// `subscribed` reply (subscribed × acknowledged on a clean run) against what arrived.
    pub delivery: Delivery,
    /// Subscribers the server closed during the run.
    pub closed_early: u64,
    /// Messages every subscriber received.
    pub messages_complete: usize,
    /// Publish → delivery, every delivery, ms.
    pub delivery_latency_ms: LatencySummary,
    /// Publish → last delivery, per message, ms.
    pub publish_to_last_ms: LatencySummary,
    /// Per message: deliveries ÷ publish→last time.
    pub burst_deliveries_per_s: ValueSummary,
    /// Deliveries ÷ (last receipt − first publish).
    pub deliveries_per_s: f64,
    /// Bench CPU seconds during the publish window.
    pub bench_cpu_s: f64,
    /// Server CPU/RSS (with --server-pid).
    pub server: Option<ServerCpu>,
    /// Warm-up (with --warmup).
    pub warmup: Option<connect::WarmupReport>,
    /// Each message.
    pub per_message: Vec<PerMessage>,
}

/// Runs the `fanout` scenario.
pub async fn run(ctx: &Ctx, a: FanoutArgs) -> anyhow::Result<FanoutReport> {
    if a.messages == 0 || a.subscribers == 0 {
        anyhow::bail!("fanout needs --subscribers and --messages above zero");
    }
    let warm = connect::warmup(ctx).await;
    let room: Arc<str> = a.room.clone().unwrap_or_else(|| ctx.room("fanout")).into();
    let pb = Progress::new(ctx.progress(), a.subscribers as u64, "subscribe");
    let r2 = room.clone();
    let (phase, subs) =
        connect::open_many(ctx, &ctx.target, a.subscribers, a.connect_rate, 0, &pb, move |i, mut ws| {
            let room = r2.clone();
            async move {
                let seq = client::subscribe(&mut ws, &room, i as u64).await?;
                Ok((ws, seq))
            }
        })
        .await;
    pb.finish();
    let subscribed = subs.len();

    let p = a.messages;
    let sh = Arc::new(Shared {
        pub_ts: (0..p).map(|_| AtomicU64::new(0)).collect(),
        seq_of: (0..p).map(|_| AtomicU64::new(0)).collect(),
        count: (0..p).map(|_| AtomicU64::new(0)).collect(),
        last: (0..p).map(|_| AtomicU64::new(0)).collect(),
        delivered: AtomicU64::new(0),
        latency: Mutex::new(Latency::default()),
    });
    let ledger = Arc::new(Ledger::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for (_, (ws, seq)) in subs {
        tasks.spawn(subscriber(ws, room.clone(), seq, sh.clone(), ledger.clone(), stop_rx.clone()));
    }

    let publisher = match &a.publish_cmd {
        Some(_) => None,
        None => Some(
            client::open(&ctx.pub_target, a.subscribers)
                .await
                .map_err(|e| anyhow::anyhow!("the publisher connection failed: {e}"))?,
        ),
    };
    tokio::time::sleep(Duration::from_millis(a.settle_ms)).await;

    let pid = ctx.common.server_pid;
    let cpu0 = (pid.and_then(stats::proc_cpu_s), stats::self_cpu_s());
    let first = Instant::now() + Duration::from_millis(5);
    let plan = PubPlan {
        rooms: Arc::new(vec![room.to_string()]),
        first,
        every: Duration::from_millis(a.interval_ms),
        count: p as u64,
        end: ctx.deadline,
        k_base: 0,
        k_step: 1,
        pad: "x".repeat(a.payload_bytes),
        ledger: ledger.clone(),
    };
    let pb = Progress::new(ctx.progress(), (subscribed * p) as u64, "deliveries");
    let progress = {
        let (sh, pb) = (sh.clone(), pb.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                pb.set(sh.delivered.load(Relaxed));
            }
        })
    };
    let sh2 = sh.clone();
    let on_send = move |k: u64, ts: u64| {
        if let Some(slot) = sh2.pub_ts.get(k as usize) {
            slot.store(ts, Relaxed);
        }
    };
    let pubstats = match (publisher, &a.publish_cmd) {
        (Some(p), _) => publish_loop(p.ws, plan, on_send).await,
        (None, Some(tpl)) => publish_cmds(tpl, plan, Duration::from_millis(a.cmd_timeout_ms), on_send).await,
        (None, None) => PubStats::default(),
    };
    // A server that never acknowledges publishes (the rawfan reference) leaves the ledger
    // empty: then the seq of each message is taken from the deliveries, and a message that
    // nobody received is missing at every subscriber.
    let acks = pubstats.acked > 0 || a.publish_cmd.is_some();
    // what the drain waits for; the accounting below decides what was due
    let expected = subscribed as u64 * if acks { ledger.acknowledged() } else { pubstats.sent };
    let drain_end = (Instant::now() + Duration::from_millis(a.drain_ms)).min(ctx.deadline);
    while sh.delivered.load(Relaxed) < expected && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut unseen = 0;
    if !acks {
        for k in 0..p {
            match (sh.pub_ts[k].load(Relaxed), sh.seq_of[k].load(Relaxed)) {
                (0, _) => {}
                (_, 0) => unseen += 1,
                (_, s1) => ledger.acked(&room, s1 - 1),
            }
        }
    }
    let cpu1 = (pid.and_then(stats::proc_cpu_s), stats::self_cpu_s());
    let first_ts = sh.pub_ts.first().map(|t| t.load(Relaxed)).unwrap_or(0);
    let window_s = stats::now_us().saturating_sub(first_ts) as f64 / 1e6;
    progress.abort();
    pb.finish();
    let _ = stop_tx.send(true);
    let mut results = Vec::with_capacity(subscribed);
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
    })
    .await;
    tasks.abort_all();

    // aggregate
    let closed = results.iter().filter(|r| r.closed_early).count() as u64;
    let subs: Vec<stats::Subscriber> = results.into_iter().map(|r| r.delivery).collect();
    let mut delivery = ledger.tally(&subs);
    // a subscriber whose task never reported is missing everything it was due
    let unreported = (subscribed - subs.len()) as u64;
    delivery.subscribers += unreported;
    delivery.subscribers_affected += unreported;
    delivery.expected += unreported * ledger.acknowledged();
    delivery.missing += unreported * ledger.acknowledged();
    if unseen > 0 {
        delivery.expected += unseen * subscribed as u64;
        delivery.missing += unseen * subscribed as u64;
        delivery.subscribers_affected = delivery.subscribers;
    }
    let mut p2l = Latency::default();
    let mut bursts = Vec::new();
    let mut per_message = Vec::with_capacity(p);
    let mut last_any = 0;
    let mut complete = 0;
    for k in 0..p {
        let ts = sh.pub_ts[k].load(Relaxed);
        let n = sh.count[k].load(Relaxed);
        let last = sh.last[k].load(Relaxed);
        let mut ms = None;
        if n > 0 && ts > 0 {
            let span = last.saturating_sub(ts).max(1);
            p2l.record_us(span);
            bursts.push(n as f64 * 1e6 / span as f64);
            ms = Some(stats::round3(span as f64 / 1000.0));
            last_any = last_any.max(last);
        }
        if ts > 0 && n == subscribed as u64 && n > 0 {
            complete += 1;
        }
        per_message.push(PerMessage { msg: k + 1, publish_to_last_ms: ms, delivered: n });
    }
    let unique = sh.delivered.load(Relaxed);
    let span_s = last_any.saturating_sub(first_ts) as f64 / 1e6;
    let latency = sh.latency.lock().unwrap_or_else(|e| e.into_inner()).summary();
    let server = pid.map(|pid| ServerCpu {
        pid,
        cpu_s: match (cpu0.0, cpu1.0) {
            (Some(a), Some(b)) => Some(stats::round3(b - a)),
            _ => None,
        },
        window_s: stats::round3(window_s),
        rss_kib: stats::proc_rss_kib(pid).map(|r| r.0),
    });
    Ok(FanoutReport {
        meta: ctx.meta.clone(),
        room: room.to_string(),
        subscribers_requested: a.subscribers,
        subscribed,
        subscribe_phase: phase.report(),
        messages_requested: p,
        interval_ms: a.interval_ms,
        payload_bytes: a.payload_bytes,
        publish_via: if a.publish_cmd.is_some() { "cmd" } else { "ws" },
        seqs_from: if acks { "acks" } else { "deliveries" },
        publisher: PublisherReport::of(&pubstats),
        delivery,
        closed_early: closed,
        messages_complete: complete,
        delivery_latency_ms: latency,
        publish_to_last_ms: p2l.summary(),
        burst_deliveries_per_s: ValueSummary::of(&bursts),
        deliveries_per_s: if span_s > 0.0 { (unique as f64 / span_s).round() } else { 0.0 },
        bench_cpu_s: stats::round3(cpu1.1 - cpu0.1),
        server,
        warmup: warm,
        per_message,
    })
}

impl Summary for FanoutReport {
    fn table(&self, o: &mut String) {
        report::header(o, &self.meta);
        let s = &self.subscribe_phase;
        report::row(
            o,
            "subscribers",
            format!(
                "{} requested, {} subscribed, {} failed in {} s (connect+subscribe p50 {} p99 {} ms)",
                self.subscribers_requested,
                self.subscribed,
                s.failed,
                s.phase_s,
                s.connect_ms.p50.map_or("-".into(), |v| v.to_string()),
                s.connect_ms.p99.map_or("-".into(), |v| v.to_string()),
            ),
        );
        if !s.failures.0.is_empty() {
            report::row(o, "failures", serde_json::to_string(&s.failures).unwrap_or_default());
        }
        let pb = &self.publisher;
        report::row(
            o,
            "messages",
            format!(
                "{} published every {} ms via {} into {} ({} acked, server says {} delivered, {} errors)",
                pb.sent,
                self.interval_ms,
                self.publish_via,
                self.room,
                pb.acked,
                pb.server_delivered,
                pb.errors.total()
            ),
        );
        report::row(o, "deliveries", self.delivery.line());
        if self.closed_early > 0 {
            report::row(o, "closed early", self.closed_early);
        }
        report::row(o, "delivery ms", report::lat(&self.delivery_latency_ms));
        report::row(o, "publish->last", report::lat(&self.publish_to_last_ms));
        report::row(
            o,
            "throughput",
            format!(
                "{} deliveries/s overall; burst deliveries/s {}",
                self.deliveries_per_s,
                report::vals(&self.burst_deliveries_per_s)
            ),
        );
        report::row(o, "publish ack ms", report::lat(&pb.ack_ms));
        if let Some(sv) = &self.server {
            report::row(
                o,
                "cpu",
                format!(
                    "server {} s, bench {} s over a {} s window; server rss {} KiB",
                    sv.cpu_s.map_or("-".into(), |v| v.to_string()),
                    self.bench_cpu_s,
                    sv.window_s,
                    sv.rss_kib.map_or("-".into(), |v| v.to_string())
                ),
            );
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.subscribe_phase.failed > 0 {
            v.push(format!("{} subscribers failed", self.subscribe_phase.failed));
        }
        if self.publisher.sent < self.messages_requested as u64 {
            v.push(format!("only {} of {} messages were published", self.publisher.sent, self.messages_requested));
        }
        if self.publisher.errors.total() > 0 {
            v.push(format!("publish errors: {}", serde_json::to_string(&self.publisher.errors).unwrap_or_default()));
        }
        if let Some(p) = self.delivery.problem() {
            v.push(p);
        }
        if self.publisher.sent > 0 && self.delivery.expected == 0 {
            v.push("nothing was due: no publish was acknowledged with a seq".into());
        }
        if self.publisher.acked > 0 && self.publisher.acked < self.publisher.sent {
            v.push(format!("only {} of {} publishes were acknowledged", self.publisher.acked, self.publisher.sent));
        }
        if self.closed_early > 0 {
            v.push(format!("{} subscribers closed early", self.closed_early));
        }
        v
    }
}
