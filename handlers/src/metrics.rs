//! Counters operators rely on: connects, disconnects, errors by code, deliveries, prunes.
//! Rendered as Prometheus text on the local gateway's `/metrics` and as CloudWatch
//! embedded-metric-format (EMF) log lines on Lambda.

use crate::protocol::ErrorCode;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Monotonic counters plus the live-connection gauge. All updates are relaxed atomics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Accepted connections.
    pub connects: AtomicU64,
    /// Refused connections (authorizer deny, overload, store failure).
    pub connects_refused: AtomicU64,
    /// Connections cleaned up by `$disconnect` (one a prune cleaned up first is not
    /// counted again, so connects = disconnects + prunes + live).
    pub disconnects: AtomicU64,
    /// Inbound requests handled.
    pub requests: AtomicU64,
    /// Messages published.
    pub publishes: AtomicU64,
    /// Messages delivered to a connection's queue or through the management API.
    pub deliveries: AtomicU64,
    /// Connections found gone during a fan-out and pruned.
    pub prunes: AtomicU64,
    /// Deliveries that failed for another reason.
    pub delivery_failures: AtomicU64,
    /// Connections closed because they could not keep up.
    pub slow_consumers: AtomicU64,
    /// TCP connections closed before their upgrade because too many were pending (gateway only).
    pub handshakes_refused: AtomicU64,
    /// Live connections (gateway only).
    pub live_connections: AtomicI64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
}

impl Metrics {
    /// Counts one error reply with `code`.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Errors counted so far with `code`.
    pub fn errors_of(&self, code: ErrorCode) -> u64 {
        ErrorCode::ALL.iter().position(|c| *c == code).map_or(0, |i| self.errors[i].load(Relaxed))
    }

    /// Sets every counter back to zero (Lambda emits per-invocation deltas).
    pub fn reset(&self) {
        for c in [
            &self.connects,
            &self.connects_refused,
            &self.disconnects,
            &self.requests,
            &self.publishes,
            &self.deliveries,
            &self.prunes,
            &self.delivery_failures,
            &self.slow_consumers,
            &self.handshakes_refused,
        ] {
            c.store(0, Relaxed);
        }
        for e in &self.errors {
            e.store(0, Relaxed);
        }
    }

    fn counters(&self) -> [(&'static str, &'static str, u64); 10] {
        [
            ("connects_total", "Accepted connections", self.connects.load(Relaxed)),
            ("connects_refused_total", "Refused connections", self.connects_refused.load(Relaxed)),
            (
                "disconnects_total",
                "Connections cleaned up by their disconnect (connects = disconnects + prunes + live)",
                self.disconnects.load(Relaxed),
            ),
            ("requests_total", "Inbound requests", self.requests.load(Relaxed)),
            ("publishes_total", "Messages published", self.publishes.load(Relaxed)),
            ("deliveries_total", "Messages delivered", self.deliveries.load(Relaxed)),
            ("prunes_total", "Gone connections a publish found and cleaned up", self.prunes.load(Relaxed)),
            ("delivery_failures_total", "Failed deliveries", self.delivery_failures.load(Relaxed)),
            ("slow_consumers_total", "Connections closed as slow consumers", self.slow_consumers.load(Relaxed)),
            (
                "handshakes_refused_total",
                "TCP connections closed before their upgrade: too many were pending",
                self.handshakes_refused.load(Relaxed),
            ),
        ]
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in self.counters() {
            let _ = writeln!(out, "# HELP wsctl_{name} {help}\n# TYPE wsctl_{name} counter\nwsctl_{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP wsctl_live_connections Live connections\n# TYPE wsctl_live_connections gauge\nwsctl_live_connections {}",
            self.live_connections.load(Relaxed)
        );
        let _ = writeln!(out, "# HELP wsctl_errors_total Error replies by code\n# TYPE wsctl_errors_total counter");
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            let _ = writeln!(out, "wsctl_errors_total{{code=\"{}\"}} {}", code.as_str(), self.errors[i].load(Relaxed));
        }
        out
    }

    /// One CloudWatch EMF document with every non-zero counter, for `function` of `stage`
    /// in `namespace`. Both are dimensions, so per-stage alarms see only their stage.
    pub fn emf(&self, namespace: &str, function: &str, stage: &str, timestamp_ms: u64) -> serde_json::Value {
        let mut doc = serde_json::Map::new();
        let mut defs = Vec::new();
        let mut add = |name: String, value: u64| {
            if value > 0 {
                defs.push(serde_json::json!({"Name": name, "Unit": "Count"}));
                doc.insert(name, value.into());
            }
        };
        for (name, _, value) in self.counters() {
            add(name.trim_end_matches("_total").to_owned(), value);
        }
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            add(format!("errors_{}", code.as_str()), self.errors[i].load(Relaxed));
        }
        doc.insert("function".into(), function.into());
        doc.insert("stage".into(), stage.into());
        doc.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["function", "stage"]], "Metrics": defs}]
            }),
        );
        serde_json::Value::Object(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.connects.fetch_add(2, Relaxed);
        m.error(ErrorCode::InvalidRoom);
        let text = m.prometheus();
        assert!(text.contains("wsctl_connects_total 2"));
        assert!(text.contains("wsctl_errors_total{code=\"invalid_room\"} 1"));
        let emf = m.emf("wsctl", "message", "prod", 5);
        assert_eq!(emf["connects"], 2);
        assert_eq!((emf["function"].as_str(), emf["stage"].as_str()), (Some("message"), Some("prod")));
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["function", "stage"]]));
        assert_eq!(emf["errors_invalid_room"], 1);
        assert!(emf.get("deliveries").is_none());
    }
}
