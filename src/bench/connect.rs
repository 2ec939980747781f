//! The `connect` scenario, and the connection phase the other scenarios share: open N
//! connections at R per second with bounded concurrency, timing each one.

use super::client::{self, Target, Ws};
use super::report::{self, Meta, Progress, Summary};
use super::stats::{self, Failures, Latency, LatencySummary};
use super::Ctx;
use futures_util::StreamExt;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

/// `wsctl bench connect`
#[derive(Debug, Clone)]
pub struct ConnectArgs {
    /// Connections to open.
    pub connections: usize,
    /// Connection attempts per second.
    pub rate: f64,
    /// Hold every connection this long after the last attempt (then sample the server's
    /// RSS and close them), ms.
    pub hold_ms: u64,
    /// Also subscribe each connection to one room (latency then includes the reply).
    pub subscribe: bool,
}

/// Timings and outcome of a connection phase.
#[derive(Default)]
pub struct Phase {
    /// Attempts requested.
    pub requested: usize,
    /// Connections that opened (and passed their set-up step).
    pub ok: usize,
    /// Failures by cause (`http_401`, `http_503`, `timeout`, `refused`, …).
    pub failures: Failures,
    /// TCP connect + upgrade + set-up, µs.
    pub ready: Latency,
    /// TCP connect, µs.
    pub tcp: Latency,
    /// TCP connect + upgrade, µs.
    pub upgrade: Latency,
    /// Wall time of the phase, s.
    pub elapsed_s: f64,
}

/// A connection phase as reported.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    /// Attempts requested.
    pub requested: usize,
    /// Opened.
    pub connected: usize,
    /// Failed.
    pub failed: u64,
    /// Failures by cause.
    pub failures: Failures,
    /// Attempts per second achieved.
    pub rate_achieved: f64,
    /// Wall time of the phase, s.
    pub phase_s: f64,
    /// TCP connect + upgrade (+ subscribe where the scenario does one), ms.
    pub connect_ms: LatencySummary,
    /// TCP connect + upgrade, ms.
    pub upgrade_ms: LatencySummary,
    /// TCP connect alone, ms.
    pub tcp_connect_ms: LatencySummary,
}

impl Phase {
    /// The reportable form.
    pub fn report(&self) -> PhaseReport {
        let attempts = self.ok as u64 + self.failures.total();
        PhaseReport {
            requested: self.requested,
            connected: self.ok,
            failed: self.failures.total(),
            failures: self.failures.clone(),
            rate_achieved: if self.elapsed_s > 0.0 { stats::round3(attempts as f64 / self.elapsed_s) } else { 0.0 },
            phase_s: stats::round3(self.elapsed_s),
            connect_ms: self.ready.summary(),
            upgrade_ms: self.upgrade.summary(),
            tcp_connect_ms: self.tcp.summary(),
        }
    }
}

/// Opens `n` connections at `rate` per second (at most `--max-inflight` at once), runs
/// `setup` on each (e.g. a subscribe), and returns the ready ones with their index.
/// `idx_base` offsets the index (it picks the source address).
pub async fn open_many<T, F, Fut>(
    ctx: &Ctx,
    target: &Arc<Target>,
    n: usize,
    rate: f64,
    idx_base: usize,
    pb: &Progress,
    setup: F,
) -> (Phase, Vec<(usize, T)>)
where
    T: Send + 'static,
    F: Fn(usize, Ws) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let setup = Arc::new(setup);
    let phase = Arc::new(Mutex::new(Phase { requested: n, ..Default::default() }));
    let sem = Arc::new(Semaphore::new(ctx.common.max_inflight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let step_timeout = target.connect_timeout;
    let mut set = JoinSet::new();
    let mut ready = Vec::with_capacity(n);
    let mut not_attempted = 0;
    let t0 = Instant::now();
    for i in 0..n {
        let at = t0 + interval.mul_f64(i as f64);
        if at >= ctx.deadline {
            not_attempted = n - i;
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let permit = match tokio::time::timeout_at(ctx.deadline.into(), sem.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                not_attempted = n - i;
                break;
            }
        };
        let (t, setup, phase, pb) = (target.clone(), setup.clone(), phase.clone(), pb.clone());
        set.spawn(async move {
            let start = Instant::now();
            let r = tokio::time::timeout(step_timeout, async {
                let o = client::open(&t, idx_base + i).await?;
                let x = setup(i, o.ws).await?;
                Ok::<_, String>((o.tcp_us, o.upgrade_us, x))
            })
            .await
            .unwrap_or_else(|_| Err("timeout".into()));
            let ready_us = start.elapsed().as_micros() as u64;
            drop(permit);
            pb.inc(1);
            let mut ph = phase.lock().unwrap_or_else(|e| e.into_inner());
            match r {
                Ok((tcp, up, x)) => {
                    ph.ok += 1;
                    ph.ready.record_us(ready_us);
                    ph.tcp.record_us(tcp);
                    ph.upgrade.record_us(up);
                    Some((i, x))
                }
                Err(cause) => {
                    ph.failures.add(cause);
                    None
                }
            }
        });
        while let Some(r) = set.try_join_next() {
            if let Ok(Some(x)) = r {
                ready.push(x);
            }
        }
    }
    let _ = tokio::time::timeout_at((ctx.deadline + step_timeout).into(), async {
        while let Some(r) = set.join_next().await {
            if let Ok(Some(x)) = r {
                ready.push(x);
            }
        }
    })
    .await;
    let unfinished = set.len();
    set.abort_all();
    let elapsed_s = t0.elapsed().as_secs_f64();
    let mut ph = std::mem::take(&mut *phase.lock().unwrap_or_else(|e| e.into_inner()));
    if not_attempted > 0 {
        for _ in 0..not_attempted {
            ph.failures.add("not_attempted_deadline");
        }
    }
    for _ in 0..unfinished {
        ph.failures.add("unfinished_deadline");
    }
    ph.elapsed_s = elapsed_s;
    ready.sort_by_key(|x| x.0);
    (ph, ready)
}

/// Closes every connection (close frame, bounded wait), all at once.
pub async fn close_all(conns: Vec<Ws>) {
    let mut set = JoinSet::new();
    for ws in conns {
        set.spawn(client::close(ws));
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async { while set.join_next().await.is_some() {} }).await;
    set.abort_all();
}

/// What the warm-up did.
#[derive(Debug, Clone, Serialize)]
pub struct WarmupReport {
    /// Connections requested.
    pub connections: usize,
    /// Connections subscribed.
    pub subscribed: usize,
    /// Messages published.
    pub published: u64,
    /// Messages received in total.
    pub delivered: u64,
}

/// Warms the server up (unmeasured): `--warmup` connections subscribe to a side room,
/// receive 5 messages, close.
pub async fn warmup(ctx: &Ctx) -> Option<WarmupReport> {
    let n = ctx.common.warmup;
    if n == 0 {
        return None;
    }
    const MSGS: u64 = 5;
    let room = ctx.room("warmup");
    let r2 = room.clone();
    let pb = Progress::new(ctx.progress(), n as u64, "warm-up");
    let (phase, subs) = open_many(ctx, &ctx.target, n, 2000.0, 0, &pb, move |i, mut ws| {
        let room = r2.clone();
        async move {
            client::subscribe(&mut ws, &room, i as u64).await?;
            Ok(ws)
        }
    })
    .await;
    pb.finish();
    let got = Arc::new(AtomicU64::new(0));
    let mut readers = JoinSet::new();
    let until = Instant::now() + Duration::from_secs(3);
    for (_, mut ws) in subs {
        let got = got.clone();
        readers.spawn(async move {
            let mut n = 0;
            let _ = tokio::time::timeout_at(until.into(), async {
                while n < MSGS {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            if client::Frame::parse(t.as_str()).is_some_and(|f| f.ty() == "message") {
                                n += 1;
                                got.fetch_add(1, Relaxed);
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            })
            .await;
            client::close(ws).await;
        });
    }
    let mut published = 0;
    if let Ok(mut o) = client::open(&ctx.pub_target, n).await {
        for k in 0..MSGS {
            let f = client::publish_frame(&room, stats::now_us(), k, "", k);
            if client::send(&mut o.ws, f).await.is_ok() {
                published += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while readers.join_next().await.is_some() {}
        client::close(o.ws).await;
    }
    readers.abort_all();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Some(WarmupReport { connections: n, subscribed: phase.ok, published, delivered: got.load(Relaxed) })
}

/// Server memory around the hold.
#[derive(Debug, Serialize)]
pub struct ServerMem {
    /// PID sampled.
    pub pid: u32,
    /// VmRSS before the first connection, KiB.
    pub rss_before_kib: Option<u64>,
    /// VmRSS with every connection held, KiB.
    pub rss_after_kib: Option<u64>,
    /// VmHWM at that point, KiB.
    pub rss_hwm_kib: Option<u64>,
    /// (after − before) ÷ connections held, KiB.
    pub kib_per_conn: Option<f64>,
}

/// Report of `wsctl bench connect`.
#[derive(Debug, Serialize)]
pub struct ConnectReport {
    #[serde(flatten)]
    meta: Meta,
    /// Target attempts per second.
    pub rate_target: f64,
    /// Whether each connection also subscribed.
    pub subscribe: bool,
    /// The connection phase.
    #[serde(flatten)]
    pub phase: PhaseReport,
    /// Connections the server closed while held.
    pub dropped_during_hold: u64,
    /// Held, ms.
    pub hold_ms: u64,
    /// Server RSS (with --server-pid).
    pub server: Option<ServerMem>,
    /// Warm-up (with --warmup).
    pub warmup: Option<WarmupReport>,
}

/// Runs the `connect` scenario.
pub async fn run(ctx: &Ctx, a: ConnectArgs) -> anyhow::Result<ConnectReport> {
    let warm = warmup(ctx).await;
    let pid = ctx.common.server_pid;
    let rss_before = pid.and_then(stats::proc_rss_kib);
    let pb = Progress::new(ctx.progress(), a.connections as u64, "connect");
    let room = ctx.room("connect");
    let sub = a.subscribe;
    let (phase, conns) = open_many(ctx, &ctx.target, a.connections, a.rate, 0, &pb, move |i, mut ws| {
        let room = room.clone();
        async move {
            if sub {
                client::subscribe(&mut ws, &room, i as u64).await?;
            }
            Ok(ws)
        }
    })
    .await;
    pb.finish();

    // hold: notice connections the server drops, until told to stop
    let (stop_tx, stop_rx) = watch::channel(false);
    let dropped = Arc::new(AtomicU64::new(0));
    let mut holders = JoinSet::new();
    for (_, ws) in conns {
        let (mut stop, dropped) = (stop_rx.clone(), dropped.clone());
        holders.spawn(async move {
            let mut ws = ws;
            loop {
                tokio::select! {
                    _ = stop.changed() => return Some(ws),
                    m = ws.next() => match m {
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            dropped.fetch_add(1, Relaxed);
                            return None;
                        }
                        Some(Ok(_)) => {}
                    }
                }
            }
        });
    }
    let hold_end = (Instant::now() + Duration::from_millis(a.hold_ms)).min(ctx.deadline);
    tokio::time::sleep_until(hold_end.into()).await;
    let rss_after = pid.and_then(stats::proc_rss_kib);
    let _ = stop_tx.send(true);
    let mut open = Vec::new();
    while let Some(r) = holders.join_next().await {
        if let Ok(Some(ws)) = r {
            open.push(ws);
        }
    }
    close_all(open).await;

    let held = phase.ok as u64 - dropped.load(Relaxed).min(phase.ok as u64);
    let server = pid.map(|pid| {
        let before = rss_before.map(|r| r.0);
        let after = rss_after.map(|r| r.0);
        let per = match (before, after) {
            (Some(b), Some(a)) if held > 0 => Some(stats::round3((a as f64 - b as f64) / held as f64)),
            _ => None,
        };
        ServerMem {
            pid,
            rss_before_kib: before,
            rss_after_kib: after,
            rss_hwm_kib: rss_after.map(|r| r.1),
            kib_per_conn: per,
        }
    });
    Ok(ConnectReport {
        meta: ctx.meta.clone(),
        rate_target: a.rate,
        subscribe: a.subscribe,
        phase: phase.report(),
        dropped_during_hold: dropped.load(Relaxed),
        hold_ms: a.hold_ms,
        server,
        warmup: warm,
    })
}

impl Summary for ConnectReport {
    fn table(&self, o: &mut String) {
        report::header(o, &self.meta);
        let p = &self.phase;
        report::row(
            o,
            "connections",
            format!(
                "{} requested, {} connected, {} failed, {} dropped while held {} ms",
                p.requested, p.connected, p.failed, self.dropped_during_hold, self.hold_ms
            ),
        );
        report::row(
            o,
            "rate",
            format!(
                "{}/s target, {}/s achieved over {} s{}",
                self.rate_target,
                p.rate_achieved,
                p.phase_s,
                if self.subscribe { " (with subscribe)" } else { "" }
            ),
        );
        report::row(o, "connect ms", report::lat(&p.connect_ms));
        report::row(o, "upgrade ms", report::lat(&p.upgrade_ms));
        report::row(o, "tcp ms", report::lat(&p.tcp_connect_ms));
        if !p.failures.0.is_empty() {
            report::row(o, "failures", serde_json::to_string(&p.failures).unwrap_or_default());
        }
        if let Some(s) = &self.server {
            let f = |x: Option<u64>| x.map_or("-".to_string(), |v| v.to_string());
            report::row(
                o,
                "server rss",
                format!(
                    "{} KiB -> {} KiB (peak {}): {} KiB per held connection",
                    f(s.rss_before_kib),
                    f(s.rss_after_kib),
                    f(s.rss_hwm_kib),
                    s.kib_per_conn.map_or("-".into(), |v| v.to_string())
                ),
            );
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.phase.failed > 0 {
            v.push(format!(
                "{} of {} connections failed: {}",
                self.phase.failed,
                self.phase.requested,
                serde_json::to_string(&self.phase.failures).unwrap_or_default()
            ));
        }
        if self.dropped_during_hold > 0 {
            v.push(format!("{} connections were closed by the server while held", self.dropped_during_hold));
        }
        v
    }
}
