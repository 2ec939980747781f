//! The `mixed` scenario, a soak: N connection slots that each connect, subscribe to a few
//! of many rooms, swap one room half-way through their life, ping, and close (gracefully
//! or abruptly) to be replaced, while publishers publish into the rooms at a steady rate.
//! Every subscriber accounts for its deliveries ([`stats::Ledger`]): each publish the
//! server acknowledged into one of its rooms between its `subscribed` reply and its leave
//! must arrive once and in order. Before a planned close a connection makes one last
//! round trip (`ping`) and waits (up to 2 s) until everything due has arrived; a
//! connection that silently stopped receiving shows as missing. The server's RSS is sampled over
//! time to show whether memory stays flat.

use super::client::{self, Frame, Ws};
use super::connect;
use super::publisher::{self, PubPlan, PubStats, PublisherReport};
use super::report::{self, Meta, Progress, Summary};
use super::stats::{self, Delivery, Failures, Latency, LatencySummary, Ledger, ValueSummary, Windows};
use super::Ctx;
use futures_util::StreamExt;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

/// `wsctl bench mixed`
#[derive(Debug, Clone)]
pub struct MixedArgs {
    /// Concurrent subscriber connections (slots; each is replaced when it closes).
    pub connections: usize,
    /// How long the soak runs, seconds.
    pub duration_s: f64,
    /// Rooms the subscriptions and publishes spread over.
    pub rooms: usize,
    /// Rooms each connection subscribes to.
    pub rooms_per_conn: usize,
    /// Connections closed and replaced per second, over all slots (0: no churn); each
    /// lifetime is drawn around connections ÷ this rate. Default 20 (without
    /// --lifetime-min-s/--lifetime-max-s).
    pub churn_rate: Option<f64>,
    /// Shortest connection lifetime, seconds: lifetimes are drawn uniformly from
    /// [--lifetime-min-s, --lifetime-max-s] (the churn rate follows from them).
    pub lifetime_min_s: Option<f64>,
    /// Longest connection lifetime, seconds.
    pub lifetime_max_s: Option<f64>,
    /// After the last publish, connections still open stay this long (ms) before they
    /// close, so that the last publishes are due too.
    pub drain_ms: u64,
    /// Publishes per second, over all publishers.
    pub publish_rate: f64,
    /// Publisher connections (default: one per 50 publishes/s, under the per-connection
    /// rate limit).
    pub publishers: Option<usize>,
    /// Connection attempts per second while ramping up.
    pub connect_rate: f64,
    /// Each connection pings this often, seconds (keep-alive; 0: never).
    pub ping_s: f64,
    /// Sample the server's RSS this often, ms (with --server-pid).
    pub sample_ms: u64,
    /// Padding bytes added to each message's data.
    pub payload_bytes: usize,
}

/// Lifetimes and room picks: reproducible from the run's seed, not cryptographic.
type Rng = rand::rngs::SmallRng;

#[derive(Default)]
struct Totals {
    connects_ok: u64,
    connect_failures: Failures,
    connect: Latency,
    closed_graceful: u64,
    closed_abrupt: u64,
    closed_by_server: u64,
    subscribes_sent: u64,
    subscribed: u64,
    unsubscribes: u64,
    pings: u64,
    pongs: u64,
    unanswered: u64,
    errors: Failures,
    deliveries: u64,
    latency: Latency,
    subscribers: Vec<stats::Subscriber>,
    lived_s: Vec<f64>,
}

/// How long each connection lives.
#[derive(Debug, Clone, Copy)]
enum Lifetime {
    /// Around this mean (0.5–1.5×; the first generation 0.1–1.5×, to spread the churn).
    Mean(Duration),
    /// Uniform in [min, max].
    Range(Duration, Duration),
    /// Until the end of the soak (no churn).
    Whole,
}

impl Lifetime {
    fn draw(self, rng: &mut Rng, generation: u64) -> Option<Duration> {
        match self {
            Lifetime::Mean(m) if generation == 0 => Some(m.mul_f64(0.1 + 1.4 * rng.random::<f64>())),
            Lifetime::Mean(m) => Some(m.mul_f64(0.5 + rng.random::<f64>())),
            Lifetime::Range(lo, hi) => Some(lo + (hi.saturating_sub(lo)).mul_f64(rng.random::<f64>())),
            Lifetime::Whole => None,
        }
    }

    /// Mean lifetime, s (None: the whole soak).
    fn mean_s(self) -> Option<f64> {
        match self {
            Lifetime::Mean(m) => Some(m.as_secs_f64()),
            Lifetime::Range(lo, hi) => Some((lo + hi).as_secs_f64() / 2.0),
            Lifetime::Whole => None,
        }
    }
}

struct Plan {
    rooms: Arc<Vec<String>>,
    rooms_per_conn: usize,
    /// No new connection after this; publishers stop here.
    end: Instant,
    /// Connections still open close by this (end + drain).
    last_close: Instant,
    lifetime: Lifetime,
    ping_every: Option<Duration>,
    ledger: Arc<Ledger>,
}

struct Live {
    ws: Ws,
    rooms: Vec<String>,
    windows: Windows,
    next_id: u64,
    /// Requests sent and not answered yet.
    awaiting: u64,
}

impl Live {
    async fn subscribe(&mut self, room: String, tot: &Mutex<Totals>) -> Result<(), String> {
        self.windows.subscribing(&room);
        self.next_id += 1;
        client::send(&mut self.ws, client::subscribe_frame(&room, self.next_id, None)).await?;
        self.awaiting += 1;
        self.rooms.push(room);
        lock(tot).subscribes_sent += 1;
        Ok(())
    }

    fn on_frame(&mut self, s: &str, tot: &Mutex<Totals>, ledger: &Ledger) {
        let Some(f) = Frame::parse(s) else { return };
        match f.ty() {
            "message" => {
                let recv = stats::now_us();
                let Some(room) = f.room.as_deref() else { return };
                if let Some(seq) = f.seq {
                    self.windows.message(room, seq);
                }
                let mut t = lock(tot);
                t.deliveries += 1;
                if let Some(ts) = f.data.and_then(|d| d.ts) {
                    t.latency.record_us(recv.saturating_sub(ts));
                }
            }
            "subscribed" => {
                self.awaiting = self.awaiting.saturating_sub(1);
                if let Some(room) = f.room.as_deref() {
                    self.windows.subscribed(room, f.seq.unwrap_or(0));
                }
                lock(tot).subscribed += 1;
            }
            "unsubscribed" => {
                self.awaiting = self.awaiting.saturating_sub(1);
                if let Some(room) = f.room.as_deref() {
                    self.windows.left(room, ledger);
                }
                lock(tot).unsubscribes += 1
            }
            "pong" => {
                self.awaiting = self.awaiting.saturating_sub(1);
                lock(tot).pongs += 1
            }
            "error" => {
                self.awaiting = self.awaiting.saturating_sub(1);
                lock(tot).errors.add(f.code.as_deref().unwrap_or("unknown").to_string())
            }
            _ => {}
        }
    }
}

fn lock(m: &Mutex<Totals>) -> std::sync::MutexGuard<'_, Totals> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One slot: connect, live, close, replace, until the end.
async fn slot(
    i: usize,
    first_at: Instant,
    target: Arc<client::Target>,
    plan: Arc<Plan>,
    tot: Arc<Mutex<Totals>>,
    live_n: Arc<AtomicU64>,
    seed: u64,
) {
    let mut rng = Rng::seed_from_u64(seed ^ (i as u64 + 1));
    tokio::time::sleep_until(first_at.into()).await;
    let mut generation: u64 = 0;
    while Instant::now() < plan.end {
        let life = plan.lifetime.draw(&mut rng, generation);
        let born = Instant::now();
        let die = life.map_or(plan.last_close, |l| (born + l).min(plan.last_close));
        generation += 1;
        let ws = match client::open(&target, i).await {
            Ok(o) => {
                let mut t = lock(&tot);
                t.connects_ok += 1;
                t.connect.record_us(born.elapsed().as_micros() as u64);
                o.ws
            }
            Err(cause) => {
                lock(&tot).connect_failures.add(cause);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        live_n.fetch_add(1, Relaxed);
        let mut c = Live { ws, rooms: Vec::new(), windows: Windows::default(), next_id: 0, awaiting: 0 };
        let n_rooms = plan.rooms.len();
        let mut ok = true;
        let start_room = rng.random::<u64>() as usize;
        for j in 0..plan.rooms_per_conn.min(n_rooms) {
            let room = plan.rooms[(start_room + j) % n_rooms].clone();
            if c.subscribe(room, &tot).await.is_err() {
                ok = false;
                break;
            }
        }
        let swap_at = born + (die - born) / 2;
        let mut swapped = false;
        let mut next_ping = plan.ping_every.map(|p| born + p);
        let mut by_server = !ok;
        while !by_server {
            let wake = match next_ping {
                Some(p) if p < die => p,
                _ => die,
            };
            let wake = if swapped { wake } else { wake.min(swap_at) };
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if now >= die {
                        break;
                    }
                    if !swapped && now >= swap_at {
                        swapped = true;
                        // leave the oldest room, join one not yet joined
                        if !c.rooms.is_empty() && n_rooms > c.rooms.len() {
                            let old = c.rooms.remove(0);
                            c.windows.leaving(&old, &plan.ledger);
                            c.next_id += 1;
                            let f = client::unsubscribe_frame(&old, c.next_id);
                            if client::send(&mut c.ws, f).await.is_err() {
                                by_server = true;
                                break;
                            }
                            c.awaiting += 1;
                            let mut room = plan.rooms[rng.random::<u64>() as usize % n_rooms].clone();
                            while c.rooms.contains(&room) || room == old {
                                room = plan.rooms[rng.random::<u64>() as usize % n_rooms].clone();
                            }
                            if c.subscribe(room, &tot).await.is_err() {
                                by_server = true;
                                break;
                            }
                        }
                    }
                    if let (Some(p), Some(every)) = (next_ping, plan.ping_every) {
                        if now >= p {
                            next_ping = Some(p + every);
                            c.next_id += 1;
                            if client::send(&mut c.ws, client::ping_frame(c.next_id)).await.is_err() {
                                by_server = true;
                                break;
                            }
                            c.awaiting += 1;
                            lock(&tot).pings += 1;
                        }
                    }
                }
                m = c.ws.next() => match m {
                    Some(Ok(Message::Text(s))) => c.on_frame(s.as_str(), &tot, &plan.ledger),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        by_server = true;
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
        // The subscriber leaves every room now: what was acknowledged so far is due. A last
        // round trip makes sure it has arrived (one gateway process queued those messages to
        // this connection before it acknowledged them, so before this ping's pong; from
        // another process they may come later, and are waited for below).
        c.windows.leaving_all(&plan.ledger);
        if !by_server {
            c.next_id += 1;
            if client::send(&mut c.ws, client::ping_frame(c.next_id)).await.is_err() {
                by_server = true;
            } else {
                c.awaiting += 1;
                lock(&tot).pings += 1;
            }
        }
        if !by_server && (c.awaiting > 0 || !c.windows.all_due_arrived(&plan.ledger)) {
            // A planned close: let the replies still in flight arrive first, and every
            // message still due (from another gateway process it crosses the node bus, and
            // may arrive after this process's pong). One that never comes is missing.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while c.awaiting > 0 || !c.windows.all_due_arrived(&plan.ledger) {
                    match c.ws.next().await {
                        Some(Ok(Message::Text(s))) => c.on_frame(s.as_str(), &tot, &plan.ledger),
                        Some(Ok(_)) => {}
                        _ => {
                            by_server = true;
                            break;
                        }
                    }
                }
            })
            .await;
        }
        live_n.fetch_sub(1, Relaxed);
        let delivery = std::mem::take(&mut c.windows).finish(&plan.ledger);
        {
            let mut t = lock(&tot);
            t.unanswered += c.awaiting;
            t.subscribers.push(delivery);
            t.lived_s.push(born.elapsed().as_secs_f64());
            if by_server {
                t.closed_by_server += 1;
            } else if generation.is_multiple_of(2) {
                t.closed_abrupt += 1;
            } else {
                t.closed_graceful += 1;
            }
        }
        if !by_server {
            if generation.is_multiple_of(2) {
                drop(c.ws); // abrupt: TCP close without a close frame
            } else {
                client::close(c.ws).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One RSS sample.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the start of the soak.
    pub t_s: f64,
    /// Server VmRSS, KiB.
    pub rss_kib: u64,
    /// Bench connections open at that moment.
    pub live: u64,
}

/// Server memory over the soak.
#[derive(Debug, Serialize)]
pub struct ServerMemory {
    /// PID sampled.
    pub pid: u32,
    /// First sample, KiB.
    pub rss_start_kib: Option<u64>,
    /// Last sample, KiB.
    pub rss_end_kib: Option<u64>,
    /// Largest sample, KiB.
    pub rss_max_kib: Option<u64>,
    /// Least-squares slope over the second half of the soak, KiB per minute (flat memory:
    /// near zero).
    pub rss_growth_kib_per_min_second_half: Option<f64>,
    /// Every sample.
    pub samples: Vec<Sample>,
}

/// Connection churn totals.
#[derive(Debug, Serialize)]
pub struct Churn {
    /// Connections opened.
    pub connects_ok: u64,
    /// Connection failures by cause.
    pub connect_failures: Failures,
    /// Connect latency, ms.
    pub connect_ms: LatencySummary,
    /// Closed by the bench with a close frame.
    pub closed_graceful: u64,
    /// Closed by the bench without a close frame.
    pub closed_abrupt: u64,
    /// Closed by the server (or failed while sending).
    pub closed_by_server: u64,
    /// How long the connections lived, s.
    pub lived_s: ValueSummary,
    /// Connections that lived 10 s or more (past the gateway's idle and sweep timers).
    pub lived_10s_or_more: u64,
}

/// Report of `wsctl bench mixed`.
#[derive(Debug, Serialize)]
pub struct MixedReport {
    #[serde(flatten)]
    meta: Meta,
    /// Soak length, s.
    pub duration_s: f64,
    /// Connection slots.
    pub connections: usize,
    /// Rooms.
    pub rooms: usize,
    /// Rooms per connection.
    pub rooms_per_conn: usize,
    /// Target replacements per second (connections ÷ mean lifetime).
    pub churn_rate: f64,
    /// Lifetime range, s (with --lifetime-min-s/--lifetime-max-s).
    pub lifetime_s: Option<[f64; 2]>,
    /// Target publishes per second.
    pub publish_rate: f64,
    /// Publisher connections.
    pub publishers: usize,
    /// Connection churn.
    pub churn: Churn,
    /// Subscribes sent.
    pub subscribes_sent: u64,
    /// `subscribed` replies.
    pub subscribed: u64,
    /// `unsubscribed` replies.
    pub unsubscribed: u64,
    /// Pings sent.
    pub pings: u64,
    /// Pongs received.
    pub pongs: u64,
    /// Requests without a reply when their connection closed.
    pub unanswered: u64,
    /// Error replies to subscribers, by code.
    pub errors: Failures,
    /// Publishers.
    pub publisher: PublisherReport,
    /// Messages received by subscribers.
    pub deliveries: u64,
    /// Deliveries per second over the soak.
    pub deliveries_per_s: f64,
    /// Publish → delivery, ms.
    pub delivery_latency_ms: LatencySummary,
    /// Per-subscriber delivery accounting (missing, duplicated and reordered must be zero).
    pub delivery: Delivery,
    /// Server memory over time (with --server-pid).
    pub server: Option<ServerMemory>,
}

/// Runs the `mixed` scenario.
pub async fn run(ctx: &Ctx, a: MixedArgs) -> anyhow::Result<MixedReport> {
    if a.connections == 0 || a.rooms == 0 || a.duration_s <= 0.0 {
        anyhow::bail!("mixed needs --connections, --rooms and --duration-s above zero");
    }
    let _ = connect::warmup(ctx).await;
    let prefix = ctx.room("mixed");
    let rooms: Arc<Vec<String>> = Arc::new((0..a.rooms).map(|r| format!("{prefix}:{r}")).collect());
    let lifetime = match (a.lifetime_min_s, a.lifetime_max_s, a.churn_rate.unwrap_or(20.0)) {
        (Some(lo), Some(hi), _) => {
            if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
                anyhow::bail!("--lifetime-min-s must be above zero and at most --lifetime-max-s");
            }
            Lifetime::Range(Duration::from_secs_f64(lo), Duration::from_secs_f64(hi))
        }
        (_, _, r) if r > 0.0 => Lifetime::Mean(Duration::from_secs_f64(a.connections as f64 / r)),
        _ => Lifetime::Whole,
    };
    let t0 = Instant::now();
    let end = (t0 + Duration::from_secs_f64(a.duration_s)).min(ctx.deadline);
    // leave time for the closes' last round trip and the report before the hard bound
    let last_close = (end + Duration::from_millis(a.drain_ms)).min(ctx.deadline.max(end));
    let ledger = Arc::new(Ledger::default());
    let plan = Arc::new(Plan {
        rooms: rooms.clone(),
        rooms_per_conn: a.rooms_per_conn.max(1),
        end,
        last_close,
        lifetime,
        ping_every: (a.ping_s > 0.0).then(|| Duration::from_secs_f64(a.ping_s)),
        ledger: ledger.clone(),
    });
    let tot = Arc::new(Mutex::new(Totals::default()));
    let live = Arc::new(AtomicU64::new(0));
    let seed = stats::now_us();

    // RSS sampler
    let sampler = ctx.common.server_pid.map(|pid| {
        let (live, every) = (live.clone(), Duration::from_millis(a.sample_ms.max(10)));
        tokio::spawn(async move {
            let mut v = Vec::new();
            loop {
                if let Some((rss, _)) = stats::proc_rss_kib(pid) {
                    v.push(Sample {
                        t_s: stats::round3(t0.elapsed().as_secs_f64()),
                        rss_kib: rss,
                        live: live.load(Relaxed),
                    });
                }
                if Instant::now() >= end || v.len() >= 100_000 {
                    return v;
                }
                tokio::time::sleep(
                    every.min(end.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))),
                )
                .await;
            }
        })
    });

    // subscriber slots
    let ramp = Duration::from_secs_f64(1.0 / a.connect_rate.max(0.001));
    let mut slots = JoinSet::new();
    for i in 0..a.connections {
        slots.spawn(slot(
            i,
            t0 + ramp.mul_f64(i as f64),
            ctx.target.clone(),
            plan.clone(),
            tot.clone(),
            live.clone(),
            seed,
        ));
    }

    // publishers
    let np = a.publishers.unwrap_or_else(|| (a.publish_rate / 50.0).ceil() as usize).max(1);
    let mut pubs = JoinSet::new();
    let mut pub_failures = Failures::default();
    if a.publish_rate > 0.0 {
        let every = Duration::from_secs_f64(np as f64 / a.publish_rate);
        let count = (a.publish_rate * a.duration_s / np as f64).ceil() as u64 + 1;
        for p in 0..np {
            let ws = match client::open(&ctx.pub_target, a.connections + p).await {
                Ok(o) => o.ws,
                Err(e) => {
                    pub_failures.add(format!("publisher_connect_{e}"));
                    continue;
                }
            };
            let plan = PubPlan {
                rooms: rooms.clone(),
                first: t0 + Duration::from_millis(100) + Duration::from_secs_f64(p as f64 / a.publish_rate),
                every,
                count,
                end,
                k_base: p as u64,
                k_step: np as u64,
                pad: "x".repeat(a.payload_bytes),
                ledger: ledger.clone(),
            };
            pubs.spawn(publisher::publish_loop(ws, plan, |_, _| {}));
        }
    }

    let pb = Progress::new(ctx.progress(), (a.duration_s * 10.0) as u64, "soak");
    let progress = {
        let (pb, live, tot) = (pb.clone(), live.clone(), tot.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                pb.set((t0.elapsed().as_secs_f64() * 10.0) as u64);
                let d = lock(&tot).deliveries;
                pb.message(format!("{} live, {d} msgs", live.load(Relaxed)));
            }
        })
    };
    let mut pubstats = PubStats::default();
    let _ = tokio::time::timeout_at((last_close + Duration::from_secs(15)).into(), async {
        while slots.join_next().await.is_some() {}
        while let Some(r) = pubs.join_next().await {
            if let Ok(s) = r {
                pubstats.merge(&s);
            }
        }
    })
    .await;
    slots.abort_all();
    pubs.abort_all();
    progress.abort();
    pb.finish();
    pubstats.errors.merge(&pub_failures);
    let elapsed = t0.elapsed().as_secs_f64();
    let samples = match sampler {
        Some(h) => h.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let server = ctx.common.server_pid.map(|pid| {
        let half = elapsed / 2.0;
        let pts: Vec<(f64, f64)> =
            samples.iter().filter(|s| s.t_s >= half).map(|s| (s.t_s / 60.0, s.rss_kib as f64)).collect();
        ServerMemory {
            pid,
            rss_start_kib: samples.first().map(|s| s.rss_kib),
            rss_end_kib: samples.last().map(|s| s.rss_kib),
            rss_max_kib: samples.iter().map(|s| s.rss_kib).max(),
            rss_growth_kib_per_min_second_half: stats::slope(&pts).map(stats::round3),
            samples,
        }
    });
    let t = std::mem::take(&mut *lock(&tot));
    let delivery = ledger.tally(&t.subscribers);
    Ok(MixedReport {
        meta: ctx.meta.clone(),
        duration_s: stats::round3(elapsed),
        connections: a.connections,
        rooms: a.rooms,
        rooms_per_conn: a.rooms_per_conn,
        churn_rate: lifetime.mean_s().map_or(0.0, |m| stats::round3(a.connections as f64 / m)),
        lifetime_s: a.lifetime_min_s.zip(a.lifetime_max_s).map(|(lo, hi)| [lo, hi]),
        publish_rate: a.publish_rate,
        publishers: np,
        churn: Churn {
            connects_ok: t.connects_ok,
            connect_failures: t.connect_failures,
            connect_ms: t.connect.summary(),
            closed_graceful: t.closed_graceful,
            closed_abrupt: t.closed_abrupt,
            closed_by_server: t.closed_by_server,
            lived_s: ValueSummary::of(&t.lived_s),
            lived_10s_or_more: t.lived_s.iter().filter(|&&s| s >= 10.0).count() as u64,
        },
        subscribes_sent: t.subscribes_sent,
        subscribed: t.subscribed,
        unsubscribed: t.unsubscribes,
        pings: t.pings,
        pongs: t.pongs,
        unanswered: t.unanswered,
        errors: t.errors,
        publisher: PublisherReport::of(&pubstats),
        deliveries: t.deliveries,
        deliveries_per_s: if elapsed > 0.0 { (t.deliveries as f64 / elapsed).round() } else { 0.0 },
        delivery_latency_ms: t.latency.summary(),
        delivery,
        server,
    })
}

impl Summary for MixedReport {
    fn table(&self, o: &mut String) {
        report::header(o, &self.meta);
        report::row(
            o,
            "soak",
            format!(
                "{} s, {} connection slots, {} rooms ({} per connection), churn {}/s{}, {} publishes/s over {} publisher(s)",
                self.duration_s,
                self.connections,
                self.rooms,
                self.rooms_per_conn,
                self.churn_rate,
                self.lifetime_s.map_or(String::new(), |[lo, hi]| format!(" (lifetimes {lo}-{hi} s)")),
                self.publish_rate,
                self.publishers
            ),
        );
        let c = &self.churn;
        report::row(
            o,
            "connections",
            format!(
                "{} opened, {} failed; closed {} gracefully, {} abruptly, {} by the server",
                c.connects_ok,
                c.connect_failures.total(),
                c.closed_graceful,
                c.closed_abrupt,
                c.closed_by_server
            ),
        );
        report::row(o, "lived s", format!("{}; {} lived 10 s or more", report::vals(&c.lived_s), c.lived_10s_or_more));
        report::row(o, "connect ms", report::lat(&c.connect_ms));
        report::row(
            o,
            "requests",
            format!(
                "{} subscribes ({} acked), {} unsubscribed, {} pings ({} pongs), {} errors, {} unanswered",
                self.subscribes_sent,
                self.subscribed,
                self.unsubscribed,
                self.pings,
                self.pongs,
                self.errors.total(),
                self.unanswered
            ),
        );
        let p = &self.publisher;
        report::row(
            o,
            "publishes",
            format!(
                "{} sent, {} acked (server says {} delivered), {} errors; ack {}",
                p.sent,
                p.acked,
                p.server_delivered,
                p.errors.total(),
                report::lat(&p.ack_ms)
            ),
        );
        report::row(o, "deliveries", format!("{} ({}/s)", self.deliveries, self.deliveries_per_s));
        report::row(o, "delivery ms", report::lat(&self.delivery_latency_ms));
        report::row(o, "accounting", self.delivery.line());
        if let Some(m) = &self.server {
            let f = |x: Option<u64>| x.map_or("-".to_string(), |v| v.to_string());
            report::row(
                o,
                "server rss",
                format!(
                    "start {} KiB, end {} KiB, max {} KiB; second-half slope {} KiB/min ({} samples)",
                    f(m.rss_start_kib),
                    f(m.rss_end_kib),
                    f(m.rss_max_kib),
                    m.rss_growth_kib_per_min_second_half.map_or("-".into(), |v| v.to_string()),
                    m.samples.len()
                ),
            );
        }
        if !self.errors.0.is_empty() {
            report::row(o, "errors", serde_json::to_string(&self.errors).unwrap_or_default());
        }
        if !c.connect_failures.0.is_empty() {
            report::row(o, "conn failures", serde_json::to_string(&c.connect_failures).unwrap_or_default());
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(p) = self.delivery.problem() {
            v.push(p);
        }
        if self.churn.connect_failures.total() > 0 {
            v.push(format!(
                "{} connection failures: {}",
                self.churn.connect_failures.total(),
                serde_json::to_string(&self.churn.connect_failures).unwrap_or_default()
            ));
        }
        if self.churn.closed_by_server > 0 {
            v.push(format!("{} connections closed by the server", self.churn.closed_by_server));
        }
        if self.errors.total() > 0 {
            v.push(format!("error replies: {}", serde_json::to_string(&self.errors).unwrap_or_default()));
        }
        if self.publisher.errors.total() > 0 {
            v.push(format!("publish errors: {}", serde_json::to_string(&self.publisher.errors).unwrap_or_default()));
        }
        if self.unanswered > 0 {
            v.push(format!("{} requests got no reply", self.unanswered));
        }
        if self.publish_rate > 0.0 && self.deliveries == 0 {
            v.push("no deliveries at all".into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_from_a_range_stay_in_it_and_spread_over_it() {
        let (lo, hi) = (Duration::from_secs(5), Duration::from_secs(300));
        let l = Lifetime::Range(lo, hi);
        let mut rng = Rng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..10_000).map(|g| l.draw(&mut rng, g).expect("a lifetime")).collect();
        assert!(draws.iter().all(|d| *d >= lo && *d <= hi));
        // both ends of the range are reached, and the mean is the middle
        assert!(draws.iter().any(|d| *d < Duration::from_secs(15)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(290)));
        let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / draws.len() as f64;
        assert!((mean - 152.5).abs() < 5.0, "{mean}");
        assert_eq!(l.mean_s(), Some(152.5));
        assert_eq!(Lifetime::Whole.draw(&mut rng, 0), None);
    }
}
