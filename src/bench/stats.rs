//! Measurement primitives: latency histograms, failure counters, per-room `seq`
//! continuity, and samples of another process's memory and CPU from `/proc`.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock microseconds since the Unix epoch (what publishers put in `data.ts`).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Rounds to three decimals (what every reported float uses).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A latency histogram in microseconds (1 µs .. 1 h, 3 significant digits).
#[derive(Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds"))
    }
}

impl Latency {
    /// Records one sample, in microseconds (clamped into the histogram's range).
    pub fn record_us(&mut self, us: u64) {
        let _ = self.0.record(us.clamp(1, 3_600_000_000));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.0.add(&other.0);
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| Some(round3(us as f64 / 1000.0));
        LatencySummary {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: Some(round3(h.mean() / 1000.0)),
        }
    }
}

/// Percentiles of a latency histogram, in milliseconds (absent when there were no samples).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
}

/// A histogram of plain values (not latencies), e.g. deliveries per second per message.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValueSummary {
    /// Samples.
    pub count: usize,
    /// Smallest.
    pub min: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl ValueSummary {
    /// Summarises `values` (order irrelevant).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return ValueSummary::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        ValueSummary {
            count: v.len(),
            min: v.first().map(|x| x.round()),
            p50: Some(v[(v.len() - 1) / 2].round()),
            max: v.last().map(|x| x.round()),
        }
    }
}

/// Counts of failures by cause (`http_401`, `timeout`, `refused`, `error_rate_limited`…).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Failures(pub BTreeMap<String, u64>);

impl Failures {
    /// Counts one failure of `cause`.
    pub fn add(&mut self, cause: impl Into<String>) {
        *self.0.entry(cause.into()).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Failures) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }

    /// Total failures.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Per-room `seq` continuity as one subscriber sees it. The base is the `seq` of the
/// `subscribed` reply; from there every `message` must carry exactly `last + 1`.
#[derive(Debug, Default)]
pub struct SeqCheck {
    rooms: HashMap<String, RoomSeq>,
    /// Deliveries that followed `last + 1` exactly.
    pub in_order: u64,
    /// Jumps forward (`seq > last + 1`).
    pub gaps: u64,
    /// Messages skipped by those jumps.
    pub missing: u64,
    /// Messages with `seq < last` (older than one already seen).
    pub reordered: u64,
    /// Messages with `seq == last` (seen twice).
    pub duplicates: u64,
    /// Messages for a room before its `subscribed` reply with `seq` at or below the reply's
    /// (published before the subscription took effect: not an error).
    pub early: u64,
    /// Messages for a room this subscriber never asked for (or already left).
    pub foreign: u64,
}

#[derive(Debug, Default)]
struct RoomSeq {
    /// `seq` of the last in-order message (or of the `subscribed` reply); None while the
    /// subscribe is pending.
    last: Option<u64>,
    /// Messages that arrived while the subscribe was pending.
    pending: Vec<u64>,
}

impl SeqCheck {
    /// A subscribe for `room` was sent.
    pub fn subscribing(&mut self, room: &str) {
        self.rooms.entry(room.to_string()).or_default();
    }

    /// The `subscribed` reply for `room` carried `seq`.
    pub fn subscribed(&mut self, room: &str, seq: u64) {
        let r = self.rooms.entry(room.to_string()).or_default();
        if r.last.is_some() {
            // a repeated subscribe: continuity carries on from what was seen
            return;
        }
        r.last = Some(seq);
        let pending = std::mem::take(&mut r.pending);
        for s in pending {
            if s <= seq {
                self.early += 1;
            } else {
                self.message(room, s);
            }
        }
    }

    /// The subscriber left `room`: later messages for it are not checked.
    pub fn unsubscribed(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// A `message` for `room` with `seq` arrived.
    pub fn message(&mut self, room: &str, seq: u64) {
        let Some(r) = self.rooms.get_mut(room) else {
            self.foreign += 1;
            return;
        };
        let Some(last) = r.last else {
            r.pending.push(seq);
            return;
        };
        if seq == last + 1 {
            self.in_order += 1;
            r.last = Some(seq);
        } else if seq > last + 1 {
            self.gaps += 1;
            self.missing += seq - last - 1;
            r.last = Some(seq);
        } else if seq == last {
            self.duplicates += 1;
        } else {
            self.reordered += 1;
        }
    }

    /// True when nothing was missing, reordered or duplicated.
    pub fn clean(&self) -> bool {
        self.gaps == 0 && self.reordered == 0 && self.duplicates == 0
    }
}

/// Totals of [`SeqCheck`] over many subscribers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeqTotals {
    /// Deliveries in order.
    pub in_order: u64,
    /// Forward jumps in `seq`.
    pub gaps: u64,
    /// Messages skipped by the jumps.
    pub missing: u64,
    /// Messages older than one already seen.
    pub reordered: u64,
    /// Messages seen twice.
    pub duplicates: u64,
    /// Messages published before the subscription took effect (not an error).
    pub early: u64,
    /// Messages for rooms the subscriber was not in.
    pub foreign: u64,
    /// Subscribers that saw any gap, reorder or duplicate.
    pub subscribers_with_anomalies: u64,
}

impl SeqTotals {
    /// Adds one subscriber's check.
    pub fn add(&mut self, c: &SeqCheck) {
        self.in_order += c.in_order;
        self.gaps += c.gaps;
        self.missing += c.missing;
        self.reordered += c.reordered;
        self.duplicates += c.duplicates;
        self.early += c.early;
        self.foreign += c.foreign;
        if !c.clean() {
            self.subscribers_with_anomalies += 1;
        }
    }
}

/// VmRSS and VmHWM of a process, in KiB.
pub fn proc_rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU seconds of a process (all threads).
pub fn proc_cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    if hz <= 0.0 {
        return None;
    }
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / hz)
}

/// User + system CPU seconds of this process.
pub fn self_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return 0.0;
        }
        (u.ru_utime.tv_sec as f64 + u.ru_utime.tv_usec as f64 / 1e6)
            + (u.ru_stime.tv_sec as f64 + u.ru_stime.tv_usec as f64 / 1e6)
    }
}

/// Least-squares slope of `y` over `x` (None with fewer than two distinct x).
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_check_counts() {
        let mut c = SeqCheck::default();
        c.subscribing("r");
        c.message("r", 6); // before the reply, after its seq
        c.message("r", 5); // before the reply, at its seq: early
        c.subscribed("r", 5);
        assert_eq!((c.in_order, c.early), (1, 1));
        c.message("r", 7);
        c.message("r", 10); // gap of 2
        c.message("r", 10); // duplicate
        c.message("r", 8); // reordered
        c.message("x", 1); // foreign
        assert_eq!((c.in_order, c.gaps, c.missing), (2, 1, 2));
        assert_eq!((c.duplicates, c.reordered, c.foreign), (1, 1, 1));
        assert!(!c.clean());
        let mut t = SeqTotals::default();
        t.add(&c);
        assert_eq!(t.subscribers_with_anomalies, 1);
    }

    #[test]
    fn summaries() {
        let mut l = Latency::default();
        for us in [1000, 2000, 3000] {
            l.record_us(us);
        }
        let s = l.summary();
        assert_eq!(s.count, 3);
        assert_eq!(s.p50, Some(2.0));
        assert_eq!(Latency::default().summary().p99, None);
        let v = ValueSummary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((v.min, v.p50, v.max), (Some(1.0), Some(2.0), Some(3.0)));
        let s = slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]);
        assert_eq!(s, Some(2.0));
    }
}
