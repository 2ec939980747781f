//! Measurement primitives: latency histograms, failure counters, per-subscriber delivery
//! accounting, and samples of another process's memory and CPU from `/proc`.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
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

/// What the publishers saw acknowledged, per room: the `seq` of every `published` reply.
/// These, and only these, are what a subscriber in the room must receive.
#[derive(Debug, Default)]
pub struct Ledger {
    rooms: Mutex<HashMap<String, RoomAcks>>,
}

#[derive(Debug, Default)]
struct RoomAcks {
    /// Highest acknowledged `seq` so far.
    high: u64,
    /// Every acknowledged `seq` (unsorted until [`Ledger::tally`]).
    seqs: Vec<u64>,
}

impl Ledger {
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomAcks>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A publish to `room` was acknowledged with `seq`.
    pub fn acked(&self, room: &str, seq: u64) {
        let mut rooms = self.rooms();
        let r = match rooms.get_mut(room) {
            Some(r) => r,
            None => rooms.entry(room.to_owned()).or_default(),
        };
        r.high = r.high.max(seq);
        r.seqs.push(seq);
    }

    /// The highest `seq` acknowledged in `room` so far (0: none). A subscriber leaving the
    /// room now must still receive every acknowledged `seq` up to this one: the server
    /// fanned each of them out before it acknowledged it, so before it saw the leave.
    pub fn high(&self, room: &str) -> u64 {
        self.rooms().get(room).map_or(0, |r| r.high)
    }

    /// Publishes acknowledged, over all rooms.
    pub fn acknowledged(&self) -> u64 {
        self.rooms().values().map(|r| r.seqs.len() as u64).sum()
    }

    /// Checks every subscriber's windows against the acknowledged publishes.
    pub fn tally(&self, subscribers: &[Subscriber]) -> Delivery {
        let mut rooms = self.rooms();
        for r in rooms.values_mut() {
            r.seqs.sort_unstable();
            r.seqs.dedup();
        }
        let mut d = Delivery::default();
        for s in subscribers {
            d.subscribers += 1;
            d.unexpected += s.stray;
            let mut affected = false;
            for w in &s.windows {
                d.windows += 1;
                d.duplicated += w.duplicated;
                d.reordered += w.reordered;
                let acked: &[u64] = rooms.get(&w.room).map_or(&[], |r| &r.seqs);
                // required: acknowledged seqs in (base, high]
                let lo = acked.partition_point(|&x| x <= w.base);
                let hi = acked.partition_point(|&x| x <= w.high);
                let required = &acked[lo..hi.max(lo)];
                let mut received = 0;
                for &x in &w.seen {
                    if x <= w.base {
                        d.unexpected += 1;
                    } else if x > w.high {
                        d.optional += 1;
                    } else if required.binary_search(&x).is_ok() {
                        received += 1;
                    } else {
                        d.unexpected += 1;
                    }
                }
                let expected = required.len() as u64;
                d.expected += expected;
                d.received += received;
                d.missing += expected - received;
                affected |= expected > received || w.duplicated > 0 || w.reordered > 0;
            }
            d.subscribers_affected += u64::from(affected);
        }
        d
    }
}

/// One subscriber's delivery windows, one per room it joined. A window opens at the
/// `subscribed` reply's `seq` (later ones are expected) and closes when the subscriber
/// leaves: it sends `unsubscribe`, or it is about to close its connection. Messages that
/// arrive after that are collected too, even after the server confirmed the leave: those
/// acknowledged before the leave are still due, later ones are optional. (On one gateway
/// process a due message always arrives before the confirmation; across processes it
/// travels the node bus, which may deliver it a moment after the other process confirmed
/// the leave. [`Windows::all_due_arrived`] lets a closing connection wait for it.)
#[derive(Debug, Default)]
pub struct Windows {
    open: HashMap<String, Window>,
    /// Windows whose leave the server confirmed, still collecting late due messages.
    left: HashMap<String, Window>,
    done: Subscriber,
}

#[derive(Debug, Default)]
struct Window {
    /// `seq` of the `subscribed` reply; None while the subscribe is pending.
    base: Option<u64>,
    /// Set when the subscriber started to leave: the ledger's high mark then.
    high: Option<u64>,
    /// Messages that arrived while the subscribe was pending.
    pending: Vec<u64>,
    /// Distinct `seq`s received.
    seen: HashSet<u64>,
    /// Largest `seq` received.
    max: u64,
    duplicated: u64,
    reordered: u64,
}

/// What one subscriber received, window by window, for [`Ledger::tally`].
#[derive(Debug, Default)]
pub struct Subscriber {
    windows: Vec<ClosedWindow>,
    /// Messages for rooms without a window (never joined, or already left).
    stray: u64,
}

#[derive(Debug)]
struct ClosedWindow {
    room: String,
    base: u64,
    high: u64,
    /// Distinct `seq`s received, sorted.
    seen: Vec<u64>,
    duplicated: u64,
    reordered: u64,
}

impl Windows {
    /// A subscribe for `room` was sent (a repeated subscribe keeps the open window).
    pub fn subscribing(&mut self, room: &str) {
        if let Some(w) = self.left.remove(room) {
            // joining again: the earlier window is final
            self.finish_window(room.to_owned(), w);
        }
        if !self.open.contains_key(room) {
            self.open.insert(room.to_owned(), Window::default());
        }
    }

    /// The `subscribed` reply for `room` carried `seq`: the window opens there.
    pub fn subscribed(&mut self, room: &str, seq: u64) {
        let w = match self.open.get_mut(room) {
            Some(w) => w,
            None => self.open.entry(room.to_owned()).or_default(),
        };
        if w.base.is_some() {
            return; // a repeated subscribe: the window stays where it opened
        }
        w.base = Some(seq);
        for s in std::mem::take(&mut w.pending) {
            w.receive(s);
        }
    }

    /// The subscriber is sending `unsubscribe` for `room` (or is about to close): every
    /// publish acknowledged by now (`ledger.high`) is still due.
    pub fn leaving(&mut self, room: &str, ledger: &Ledger) {
        if let Some(w) = self.open.get_mut(room) {
            if w.high.is_none() {
                w.high = Some(ledger.high(room));
            }
        }
    }

    /// [`Windows::leaving`] for every room (before a connection's last round trip).
    pub fn leaving_all(&mut self, ledger: &Ledger) {
        for (room, w) in self.open.iter_mut() {
            if w.high.is_none() {
                w.high = Some(ledger.high(room));
            }
        }
    }

    /// The server confirmed the leave (`unsubscribed`): the window takes no new due
    /// messages, but still collects the due ones that arrive late.
    pub fn left(&mut self, room: &str, ledger: &Ledger) {
        if let Some(mut w) = self.open.remove(room) {
            if w.high.is_none() {
                w.high = Some(ledger.high(room));
            }
            self.left.insert(room.to_owned(), w);
        }
    }

    /// A `message` for `room` with `seq` arrived.
    pub fn message(&mut self, room: &str, seq: u64) {
        match self.open.get_mut(room).or_else(|| self.left.get_mut(room)) {
            None => self.done.stray += 1,
            Some(w) if w.base.is_none() => w.pending.push(seq),
            Some(w) => w.receive(seq),
        }
    }

    /// Whether every message due in a window the subscriber has left (or is leaving) has
    /// arrived: each publish acknowledged in the room between the window's `subscribed`
    /// reply and its leave. Windows still open count as complete.
    pub fn all_due_arrived(&self, ledger: &Ledger) -> bool {
        let rooms = ledger.rooms();
        self.open.iter().chain(&self.left).all(|(room, w)| match (w.base, w.high) {
            (Some(base), Some(high)) => {
                rooms.get(room).is_none_or(|r| r.seqs.iter().all(|s| *s <= base || *s > high || w.seen.contains(s)))
            }
            _ => true,
        })
    }

    /// Closes every window (windows not yet left close at the ledger's high mark now) and
    /// returns what this subscriber received.
    pub fn finish(mut self, ledger: &Ledger) -> Subscriber {
        for (room, w) in std::mem::take(&mut self.left) {
            self.finish_window(room, w);
        }
        let open = std::mem::take(&mut self.open);
        for (room, mut w) in open {
            if w.high.is_none() {
                w.high = Some(ledger.high(&room));
            }
            self.finish_window(room, w);
        }
        self.done
    }

    fn finish_window(&mut self, room: String, w: Window) {
        let Some(base) = w.base else {
            // never subscribed: whatever arrived was outside any window
            self.done.stray += w.pending.len() as u64;
            return;
        };
        let mut seen: Vec<u64> = w.seen.into_iter().collect();
        seen.sort_unstable();
        self.done.windows.push(ClosedWindow {
            room,
            base,
            high: w.high.unwrap_or(0),
            seen,
            duplicated: w.duplicated,
            reordered: w.reordered,
        });
    }
}

impl Window {
    fn receive(&mut self, seq: u64) {
        if self.base.is_some_and(|b| seq <= b) {
            // before the window (published before the subscribe took effect): tallied as
            // unexpected, no part of the window's order
            self.seen.insert(seq);
            return;
        }
        if !self.seen.insert(seq) {
            self.duplicated += 1;
        } else if seq < self.max {
            self.reordered += 1;
        }
        self.max = self.max.max(seq);
    }
}

/// Delivery accounting of a run: per subscriber and room, the acknowledged publishes
/// between its `subscribed` reply and its leave, against what it received.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delivery {
    /// Deliveries due: Σ over windows of the acknowledged `seq`s inside the window.
    pub expected: u64,
    /// Due deliveries that arrived (each counted once).
    pub received: u64,
    /// expected − received.
    pub missing: u64,
    /// Second (and later) copies of a message at one subscriber.
    pub duplicated: u64,
    /// Messages older than one the subscriber had already received in that room.
    pub reordered: u64,
    /// Messages outside every window: published before the subscription took effect, for
    /// a room already left, or never acknowledged to the publishers (not a failure).
    pub unexpected: u64,
    /// Messages acknowledged after the subscriber started leaving that still arrived
    /// (allowed either way).
    pub optional: u64,
    /// Subscription windows checked (subscriber × room).
    pub windows: u64,
    /// Subscribers checked (connections).
    pub subscribers: u64,
    /// Subscribers with anything missing, duplicated or reordered.
    pub subscribers_affected: u64,
}

impl Delivery {
    /// True when nothing was missing, duplicated or reordered.
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.reordered == 0
    }

    /// The problem line of an unclean run.
    pub fn problem(&self) -> Option<String> {
        (!self.clean()).then(|| {
            format!(
                "deliveries: {} missing, {} duplicated, {} reordered (of {} expected) at {} of {} subscribers",
                self.missing,
                self.duplicated,
                self.reordered,
                self.expected,
                self.subscribers_affected,
                self.subscribers
            )
        })
    }

    /// The one-line text form.
    pub fn line(&self) -> String {
        format!(
            "{} / {} expected; missing {}, duplicated {}, reordered {}, unexpected {}, optional {}; {} of {} subscribers affected",
            self.received,
            self.expected,
            self.missing,
            self.duplicated,
            self.reordered,
            self.unexpected,
            self.optional,
            self.subscribers_affected,
            self.subscribers
        )
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

    /// A ledger with `seqs` acknowledged in room `r`.
    fn acked(seqs: impl IntoIterator<Item = u64>) -> Ledger {
        let l = Ledger::default();
        for s in seqs {
            l.acked("r", s);
        }
        l
    }

    #[test]
    fn a_subscriber_that_receives_everything_is_clean() {
        let l = acked(1..=10);
        let mut w = Windows::default();
        w.subscribing("r");
        w.subscribed("r", 2);
        for s in 3..=10 {
            w.message("r", s);
        }
        let d = l.tally(&[w.finish(&l)]);
        assert_eq!((d.expected, d.received, d.missing), (8, 8, 0));
        assert_eq!((d.duplicated, d.reordered, d.unexpected, d.optional), (0, 0, 0, 0));
        assert!(d.clean() && d.problem().is_none());
    }

    #[test]
    fn a_subscriber_that_silently_stops_receiving_half_way_is_missing_the_rest() {
        // the bug of the 60-minute soak: the socket stays open, no gap is ever seen
        let l = acked(1..=20);
        let (mut good, mut bad) = (Windows::default(), Windows::default());
        for w in [&mut good, &mut bad] {
            w.subscribing("r");
            w.subscribed("r", 0);
        }
        for s in 1..=20 {
            good.message("r", s);
            if s <= 10 {
                bad.message("r", s);
            }
        }
        let d = l.tally(&[good.finish(&l), bad.finish(&l)]);
        assert_eq!((d.expected, d.received, d.missing), (40, 30, 10));
        assert_eq!((d.subscribers, d.subscribers_affected), (2, 1));
        let p = d.problem().expect("a problem");
        assert!(p.contains("10 missing"), "{p}");
    }

    #[test]
    fn the_window_closes_at_the_leave_and_later_publishes_are_optional() {
        let l = acked(1..=6);
        let mut w = Windows::default();
        w.subscribing("r");
        w.message("r", 3); // before the reply, after its seq: due
        w.message("r", 2); // before the reply, at its seq: outside the window
        w.subscribed("r", 2);
        w.message("r", 4);
        w.leaving("r", &l); // 6 is acknowledged: 5 and 6 are still due
        l.acked("r", 7);
        l.acked("r", 8);
        w.message("r", 5);
        w.message("r", 6);
        w.message("r", 7); // acknowledged after the leave: optional
        w.left("r", &l);
        w.message("r", 8); // after the server confirmed the leave: still optional
        let d = l.tally(&[w.finish(&l)]);
        assert_eq!((d.expected, d.received, d.missing), (4, 4, 0));
        assert_eq!((d.optional, d.unexpected), (2, 1));
        assert!(d.clean());
    }

    #[test]
    fn a_due_message_that_arrives_after_the_confirmed_leave_still_counts_and_is_waited_for() {
        // Two gateway processes: seq 3 was acknowledged before the leave, but crosses the
        // node bus and arrives after the other process confirmed the `unsubscribe`.
        let l = acked(1..=3);
        let mut w = Windows::default();
        w.subscribing("r");
        w.subscribed("r", 0);
        w.message("r", 1);
        w.message("r", 2);
        w.leaving("r", &l);
        w.left("r", &l);
        assert!(!w.all_due_arrived(&l), "3 is still due");
        w.message("r", 3);
        assert!(w.all_due_arrived(&l));
        // Joining the room again starts a new window; the left one is final.
        w.subscribing("r");
        w.subscribed("r", 3);
        assert!(w.all_due_arrived(&l), "an open window is not waited for");
        let d = l.tally(&[w.finish(&l)]);
        assert_eq!((d.expected, d.received, d.missing, d.windows), (3, 3, 0, 2));
        assert!(d.clean());
        // A due message that never arrives stays missing.
        let mut w = Windows::default();
        w.subscribing("r");
        w.subscribed("r", 0);
        w.leaving_all(&l);
        w.message("r", 1);
        assert!(!w.all_due_arrived(&l));
        let d = l.tally(&[w.finish(&l)]);
        assert_eq!((d.expected, d.received, d.missing), (3, 1, 2));
    }

    #[test]
    fn a_publish_acknowledged_late_but_below_the_high_mark_is_still_due() {
        // two publishers: seq 5 acked before the leave, seq 4 (assigned earlier) after it
        let l = acked([1, 2, 3, 5]);
        let mut w = Windows::default();
        w.subscribing("r");
        w.subscribed("r", 0);
        for s in [1, 2, 3, 5] {
            w.message("r", s);
        }
        w.leaving_all(&l);
        l.acked("r", 4);
        let d = l.tally(&[w.finish(&l)]);
        assert_eq!((d.expected, d.received, d.missing, d.reordered), (5, 4, 1, 0));
    }

    #[test]
    fn duplicates_reorders_and_strays_are_counted() {
        let l = acked(1..=5);
        let mut w = Windows::default();
        w.subscribing("r");
        w.subscribed("r", 0);
        for s in [1, 3, 2, 3, 4, 5, 9] {
            w.message("r", s); // 2 reordered, 3 twice, 9 never acknowledged
        }
        w.message("x", 1); // a room never joined
        let d = l.tally(&[w.finish(&l)]);
        assert_eq!((d.expected, d.received, d.missing), (5, 5, 0));
        assert_eq!((d.duplicated, d.reordered), (1, 1));
        // 9 is above the window's high mark (5): optional; x:1 is a stray
        assert_eq!((d.optional, d.unexpected), (1, 1));
        assert_eq!(d.subscribers_affected, 1);
        assert!(d.problem().is_some());
    }

    #[test]
    fn a_seq_inside_the_window_that_nobody_acknowledged_is_unexpected() {
        let l = acked([1, 3]);
        let mut w = Windows::default();
        w.subscribing("r");
        w.subscribed("r", 0);
        for s in [1, 2, 3] {
            w.message("r", s);
        }
        let d = l.tally(&[w.finish(&l)]);
        assert_eq!((d.expected, d.received, d.unexpected), (2, 2, 1));
        assert!(d.clean());
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
