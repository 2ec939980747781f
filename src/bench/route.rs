//! The `route` scenario: request/reply round trips (`ping`, `subscribe`) on held
//! connections, open loop at a target rate spread evenly over the connections. Nothing is
//! published, so the delivery accounting expects nothing: any message is unexpected.

use super::client::{self, Frame, Ws};
use super::connect::{self, PhaseReport};
use super::report::{self, Meta, Progress, Summary};
use super::stats::{self, Delivery, Failures, Latency, LatencySummary, Ledger, Windows};
use super::Ctx;
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

/// Which requests `route` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// `ping` → `pong`.
    Ping,
    /// `subscribe` → `subscribed` (cycling over a few rooms per connection).
    Subscribe,
    /// Alternately one, then the other.
    Both,
}

/// `wsctl bench route`
#[derive(Debug, Clone)]
pub struct RouteArgs {
    /// Connections to hold and send on.
    pub connections: usize,
    /// Requests per second over all connections (stay under the server's per-connection
    /// rate limit: 100/s by default).
    pub rate: f64,
    /// How long to send, seconds.
    pub duration_s: f64,
    /// Requests to send.
    pub kind: RouteKind,
    /// Rooms the subscribes spread over.
    pub rooms: usize,
    /// Distinct rooms each connection subscribes to (cycled).
    pub rooms_per_conn: usize,
    /// Connection attempts per second while opening.
    pub connect_rate: f64,
    /// After the last request, wait at most this long for replies, ms.
    pub drain_ms: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Req {
    Ping,
    Subscribe,
}

#[derive(Default)]
struct Totals {
    sent: u64,
    answered: u64,
    lost: u64,
    closed_early: u64,
    errors: Failures,
    all: Latency,
    ping: Latency,
    subscribe: Latency,
    lag: Latency,
    subscribers: Vec<stats::Subscriber>,
}

struct Plan {
    start: Instant,
    end: Instant,
    drain_end: Instant,
    every: Duration,
    kind: RouteKind,
    room_prefix: String,
    rooms: usize,
    rooms_per_conn: usize,
    /// Stays empty: this scenario publishes nothing.
    ledger: Ledger,
}

async fn conn_loop(i: usize, mut ws: Ws, offset: Duration, plan: Arc<Plan>, tot: Arc<Mutex<Totals>>) {
    let mut outstanding: VecDeque<(u64, Req, Instant)> = VecDeque::new();
    let mut next = plan.start + offset;
    let mut k: u64 = 0;
    let mut closed = false;
    let mut windows = Windows::default();
    loop {
        let sending = next < plan.end;
        if !sending && outstanding.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()), if sending => {
                let req = match plan.kind {
                    RouteKind::Ping => Req::Ping,
                    RouteKind::Subscribe => Req::Subscribe,
                    RouteKind::Both if k.is_multiple_of(2) => Req::Ping,
                    RouteKind::Both => Req::Subscribe,
                };
                let frame = match req {
                    Req::Ping => client::ping_frame(k),
                    Req::Subscribe => {
                        let j = if plan.kind == RouteKind::Both { k / 2 } else { k } as usize;
                        let r = (i * plan.rooms_per_conn + j % plan.rooms_per_conn) % plan.rooms;
                        let room = format!("{}:{r}", plan.room_prefix);
                        windows.subscribing(&room);
                        client::subscribe_frame(&room, k, None)
                    }
                };
                let lag = next.elapsed();
                let sent_at = Instant::now();
                if client::send(&mut ws, frame).await.is_err() {
                    closed = true;
                    break;
                }
                outstanding.push_back((k, req, sent_at));
                {
                    let mut t = tot.lock().unwrap_or_else(|e| e.into_inner());
                    t.sent += 1;
                    t.lag.record_us(lag.as_micros() as u64);
                }
                k += 1;
                next += plan.every;
            }
            _ = tokio::time::sleep_until(plan.drain_end.into()), if !sending => break,
            m = ws.next() => match m {
                Some(Ok(Message::Text(s))) => {
                    let now = Instant::now();
                    let Some(f) = Frame::parse(s.as_str()) else { continue };
                    let want = match f.ty() {
                        "pong" => Some(Req::Ping),
                        "subscribed" => {
                            if let Some(room) = f.room.as_deref() {
                                windows.subscribed(room, f.seq.unwrap_or(0));
                            }
                            Some(Req::Subscribe)
                        }
                        "error" => None,
                        "message" => {
                            if let (Some(room), Some(seq)) = (f.room.as_deref(), f.seq) {
                                windows.message(room, seq);
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    // match by echoed id, else the oldest request of that kind (servers
                    // that do not echo ids answer in order)
                    let pos = match f.id {
                        Some(id) => outstanding.iter().position(|o| o.0 == id),
                        None => outstanding.iter().position(|o| want.is_none_or(|w| o.1 == w)),
                    };
                    let Some(pos) = pos else { continue };
                    let Some((_, req, sent_at)) = outstanding.remove(pos) else { continue };
                    let us = now.duration_since(sent_at).as_micros() as u64;
                    let mut t = tot.lock().unwrap_or_else(|e| e.into_inner());
                    t.answered += 1;
                    if want.is_none() {
                        t.errors.add(f.code.as_deref().unwrap_or("unknown").to_string());
                    } else {
                        t.all.record_us(us);
                        match req {
                            Req::Ping => t.ping.record_us(us),
                            Req::Subscribe => t.subscribe.record_us(us),
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    closed = true;
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    {
        let mut t = tot.lock().unwrap_or_else(|e| e.into_inner());
        t.lost += outstanding.len() as u64;
        t.closed_early += closed as u64;
        t.subscribers.push(windows.finish(&plan.ledger));
    }
    if !closed {
        client::close(ws).await;
    }
}

/// Report of `wsctl bench route`.
#[derive(Debug, Serialize)]
pub struct RouteReport {
    #[serde(flatten)]
    meta: Meta,
    /// Requests sent.
    pub kind: RouteKind,
    /// Target requests per second (all connections).
    pub rate_target: f64,
    /// Achieved requests per second.
    pub rate_achieved: f64,
    /// Target requests per second per connection.
    pub per_conn_rate: f64,
    /// Sending window, s.
    pub duration_s: f64,
    /// The connection phase.
    pub connections: PhaseReport,
    /// Requests sent.
    pub sent: u64,
    /// Replies received (success or error).
    pub answered: u64,
    /// Requests without a reply by the end of the drain.
    pub lost: u64,
    /// Error replies by code.
    pub errors: Failures,
    /// Connections the server closed during the run.
    pub closed_early: u64,
    /// Round trip of every successful request, ms.
    pub rtt_ms: LatencySummary,
    /// Round trip of `ping`, ms.
    pub ping_ms: LatencySummary,
    /// Round trip of `subscribe`, ms.
    pub subscribe_ms: LatencySummary,
    /// How late requests left against their schedule (bench-side lag), ms.
    pub send_lag_ms: LatencySummary,
    /// Delivery accounting of the subscribed connections (nothing is due: no publishes).
    pub delivery: Delivery,
}

/// Runs the `route` scenario.
pub async fn run(ctx: &Ctx, a: RouteArgs) -> anyhow::Result<RouteReport> {
    if a.connections == 0 || a.rate <= 0.0 || a.duration_s <= 0.0 {
        anyhow::bail!("route needs --connections, --rate and --duration-s above zero");
    }
    let per_conn_rate = a.rate / a.connections as f64;
    if per_conn_rate > 100.0 {
        tracing::warn!(
            "{per_conn_rate:.0} requests/s per connection: above the default per-connection \
             limit (100/s); expect rate_limited errors, or use more --connections"
        );
    }
    let _ = connect::warmup(ctx).await;
    let pb = Progress::new(ctx.progress(), a.connections as u64, "connect");
    let (phase, conns) =
        connect::open_many(ctx, &ctx.target, a.connections, a.connect_rate, 0, &pb, |_, ws| async move { Ok(ws) })
            .await;
    pb.finish();

    let every = Duration::from_secs_f64(1.0 / per_conn_rate);
    let start = Instant::now() + Duration::from_millis(50);
    let end = (start + Duration::from_secs_f64(a.duration_s)).min(ctx.deadline);
    let plan = Arc::new(Plan {
        start,
        end,
        drain_end: end + Duration::from_millis(a.drain_ms),
        every,
        kind: a.kind,
        room_prefix: ctx.room("route"),
        rooms: a.rooms.max(1),
        rooms_per_conn: a.rooms_per_conn.clamp(1, a.rooms.max(1)),
        ledger: Ledger::default(),
    });
    let tot = Arc::new(Mutex::new(Totals::default()));
    let n = conns.len().max(1);
    let total = (a.rate * a.duration_s) as u64;
    let pb = Progress::new(ctx.progress(), total, "route");
    let mut set = JoinSet::new();
    for (j, (i, ws)) in conns.into_iter().enumerate() {
        // stagger the connections evenly over one request interval
        let offset = every.mul_f64(j as f64 / n as f64);
        set.spawn(conn_loop(i, ws, offset, plan.clone(), tot.clone()));
    }
    let progress = {
        let (tot, pb) = (tot.clone(), pb.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                pb.set(tot.lock().map(|t| t.sent).unwrap_or(0));
            }
        })
    };
    let _ = tokio::time::timeout_at((plan.drain_end + Duration::from_secs(3)).into(), async {
        while set.join_next().await.is_some() {}
    })
    .await;
    set.abort_all();
    progress.abort();
    pb.finish();

    let t = std::mem::take(&mut *tot.lock().unwrap_or_else(|e| e.into_inner()));
    let window = end.saturating_duration_since(start).as_secs_f64();
    Ok(RouteReport {
        meta: ctx.meta.clone(),
        kind: a.kind,
        rate_target: a.rate,
        rate_achieved: if window > 0.0 { stats::round3(t.sent as f64 / window) } else { 0.0 },
        per_conn_rate: stats::round3(per_conn_rate),
        duration_s: stats::round3(window),
        connections: phase.report(),
        sent: t.sent,
        answered: t.answered,
        lost: t.lost,
        errors: t.errors,
        closed_early: t.closed_early,
        rtt_ms: t.all.summary(),
        ping_ms: t.ping.summary(),
        subscribe_ms: t.subscribe.summary(),
        send_lag_ms: t.lag.summary(),
        delivery: plan.ledger.tally(&t.subscribers),
    })
}

impl Summary for RouteReport {
    fn table(&self, o: &mut String) {
        report::header(o, &self.meta);
        let c = &self.connections;
        report::row(
            o,
            "connections",
            format!(
                "{} requested, {} connected, {} failed (connect p99 {} ms)",
                c.requested,
                c.connected,
                c.failed,
                c.connect_ms.p99.map_or("-".into(), |v| v.to_string())
            ),
        );
        report::row(
            o,
            "requests",
            format!(
                "{:?}: {} sent at {}/s (target {}/s, {}/s per connection) over {} s",
                self.kind, self.sent, self.rate_achieved, self.rate_target, self.per_conn_rate, self.duration_s
            ),
        );
        report::row(
            o,
            "replies",
            format!(
                "{} answered, {} errors, {} lost, {} connections closed early",
                self.answered,
                self.errors.total(),
                self.lost,
                self.closed_early
            ),
        );
        report::row(o, "rtt ms", report::lat(&self.rtt_ms));
        report::row(o, "ping ms", report::lat(&self.ping_ms));
        report::row(o, "subscribe ms", report::lat(&self.subscribe_ms));
        report::row(o, "send lag ms", report::lat(&self.send_lag_ms));
        report::row(o, "deliveries", self.delivery.line());
        if !self.errors.0.is_empty() {
            report::row(o, "errors", serde_json::to_string(&self.errors).unwrap_or_default());
        }
        if !c.failures.0.is_empty() {
            report::row(o, "conn failures", serde_json::to_string(&c.failures).unwrap_or_default());
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.connections.failed > 0 {
            v.push(format!("{} connections failed", self.connections.failed));
        }
        if self.errors.total() > 0 {
            v.push(format!(
                "{} error replies: {}",
                self.errors.total(),
                serde_json::to_string(&self.errors).unwrap_or_default()
            ));
        }
        if self.lost > 0 {
            v.push(format!("{} requests got no reply", self.lost));
        }
        if self.closed_early > 0 {
            v.push(format!("{} connections closed early", self.closed_early));
        }
        if let Some(p) = self.delivery.problem() {
            v.push(p);
        }
        v
    }
}
