//! What a delivery or forwarder reports: its health, counters, lag and last error, read by the
//! status log, `GET /api/v1/deliveries` and `vidgest deliveries`.

use crate::clock::UnixNanos;
use crate::streams::ConsumerLag;
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    /// Keeping up: the last write succeeded.
    Healthy,
    /// A transient failure (connection, timeout, 5xx); retrying with backoff.
    Retrying,
    /// A failure the operator must fix (denied, no such bucket or stream); still retrying, slower.
    Failing,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Retrying => "retrying",
            Health::Failing => "failing",
        })
    }
}

#[derive(Debug, Default)]
struct Mutable {
    health: Option<Health>,
    last_error: Option<String>,
    last_success_ns: Option<UnixNanos>,
    lag: ConsumerLag,
}

/// One pipeline's live status. Counters only grow.
#[derive(Debug)]
pub struct PipeStatus {
    pub name: String,
    /// `delivery`, `forward-kinesis`, `forward-mqtt`.
    pub kind: &'static str,
    pub source: String,
    /// Where records go (`s3://bucket`, a directory, `kinesis://stream`, `mqtt://host`).
    pub target: String,
    /// Stream retention, for the "records would age out" warning.
    pub source_retention_s: u64,
    /// Records confirmed delivered (in an object or acknowledged).
    pub records: AtomicU64,
    /// Objects written (deliveries) or requests acknowledged (forwarders).
    pub objects: AtomicU64,
    /// Bytes written (compressed object bytes, or record bytes for forwarders).
    pub bytes: AtomicU64,
    /// Records written to the error prefix (could not be partitioned or converted).
    pub error_records: AtomicU64,
    /// Records that aged out of the source stream before they were delivered.
    pub lost_records: AtomicU64,
    m: Mutex<Mutable>,
}

/// A copy for JSON and the CLI.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StatusSnapshot {
    pub name: String,
    pub kind: String,
    pub source: String,
    pub target: String,
    pub state: String,
    pub lag_records: u64,
    /// Age of the oldest undelivered record, seconds.
    pub lag_seconds: f64,
    pub records: u64,
    pub objects: u64,
    pub bytes: u64,
    pub error_records: u64,
    pub lost_records: u64,
    pub last_error: Option<String>,
    /// RFC 3339 time of the last successful write.
    pub last_success: Option<String>,
}

impl PipeStatus {
    pub fn new(
        name: &str,
        kind: &'static str,
        source: &str,
        target: &str,
        source_retention_s: u64,
    ) -> Self {
        Self {
            name: name.to_string(),
            kind,
            source: source.to_string(),
            target: target.to_string(),
            source_retention_s,
            records: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            error_records: AtomicU64::new(0),
            lost_records: AtomicU64::new(0),
            m: Mutex::new(Mutable::default()),
        }
    }

    pub fn health(&self) -> Health {
        self.m.lock().health.unwrap_or(Health::Starting)
    }

    /// A write succeeded: healthy (logged when it recovers from a failure).
    pub fn success(&self, now: UnixNanos) {
        let mut m = self.m.lock();
        if matches!(m.health, Some(Health::Retrying | Health::Failing)) {
            tracing::info!(pipeline = %self.name, target = %self.target, "recovered: writing again");
        }
        m.health = Some(Health::Healthy);
        m.last_success_ns = Some(now);
    }

    /// A write failed; logged once per change of state or message, not per attempt.
    pub fn failure(&self, health: Health, error: &str) {
        let mut m = self.m.lock();
        let changed = m.health != Some(health) || m.last_error.as_deref() != Some(error);
        if changed {
            match health {
                Health::Failing => {
                    tracing::error!(pipeline = %self.name, target = %self.target, "{error} (retrying)")
                }
                _ => {
                    tracing::warn!(pipeline = %self.name, target = %self.target, "{error} (retrying)")
                }
            }
        }
        m.health = Some(health);
        m.last_error = Some(error.to_string());
    }

    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the consumer's lag; warns once when the oldest undelivered record is older than
    /// half the source stream's retention (it would age out undelivered). True when it warned.
    pub fn set_lag(&self, lag: ConsumerLag, now: UnixNanos) -> bool {
        let mut m = self.m.lock();
        let age = |l: &ConsumerLag| l.oldest_arrival_ns.map_or(0, |t| (now - t).max(0) as u64);
        let half = self.source_retention_s * 1_000_000_000 / 2;
        let was = age(&m.lag) >= half;
        let is = age(&lag) >= half;
        if is && !was {
            tracing::warn!(
                pipeline = %self.name,
                stream = %self.source,
                lag_records = lag.records,
                lag_s = age(&lag) / 1_000_000_000,
                "undelivered records are older than half the stream's retention: they will age out and be lost unless delivery catches up"
            );
        }
        m.lag = lag;
        is && !was
    }

    pub fn snapshot(&self, now: UnixNanos) -> StatusSnapshot {
        let m = self.m.lock();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatusSnapshot {
            name: self.name.clone(),
            kind: self.kind.to_string(),
            source: self.source.clone(),
            target: self.target.clone(),
            state: m.health.unwrap_or(Health::Starting).to_string(),
            lag_records: m.lag.records,
            lag_seconds: lag_seconds(&m.lag, now),
            records: get(&self.records),
            objects: get(&self.objects),
            bytes: get(&self.bytes),
            error_records: get(&self.error_records),
            lost_records: get(&self.lost_records),
            last_error: m.last_error.clone(),
            last_success: m.last_success_ns.map(crate::clock::format_rfc3339),
        }
    }
}

/// Age of the oldest undelivered record at `now`, seconds (0 when there is none).
fn lag_seconds(lag: &ConsumerLag, now: UnixNanos) -> f64 {
    lag.oldest_arrival_ns
        .map_or(0.0, |t| (now - t).max(0) as f64 / 1e9)
}

/// A running delivery or forwarder, as the API, CLI and status log see it.
#[derive(Debug, Clone)]
pub enum Pipeline {
    Delivery(Arc<PipeStatus>),
    Forward {
        status: Arc<super::forward::ForwardStatus>,
        /// `forward-kinesis` or `forward-mqtt`.
        kind: &'static str,
        source: String,
        /// Its consumer, for the lag (read from the durable checkpoints).
        consumer: String,
    },
}

impl Pipeline {
    pub fn snapshot(
        &self,
        now: UnixNanos,
        streams: &Arc<crate::streams::ShardStreams>,
    ) -> StatusSnapshot {
        match self {
            Pipeline::Delivery(d) => {
                let mut s = d.snapshot(now);
                // Measured now: the worker measures only every few seconds (for the retention
                // warning), so records put since would not show as lag yet.
                let consumer = super::run::consumer_name(&d.name);
                if let Ok(lag) = streams.consumer_lag(&d.source, &consumer) {
                    s.lag_records = lag.records;
                    s.lag_seconds = lag_seconds(&lag, now);
                }
                s
            }
            Pipeline::Forward {
                status,
                kind,
                source,
                consumer,
            } => {
                let f = status.snapshot();
                let lag = streams.consumer_lag(source, consumer).unwrap_or_default();
                let ns = |t: std::time::SystemTime| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as UnixNanos)
                };
                StatusSnapshot {
                    name: f.name,
                    kind: kind.to_string(),
                    source: source.clone(),
                    target: f.target,
                    state: f.state.to_string(),
                    lag_records: lag.records,
                    lag_seconds: lag_seconds(&lag, now),
                    records: f.records_forwarded,
                    objects: 0,
                    bytes: 0,
                    error_records: 0,
                    lost_records: 0,
                    last_error: f.last_error,
                    last_success: f.last_success.map(|t| crate::clock::format_rfc3339(ns(t))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn lag_warning_fires_once_when_half_the_retention_is_reached() {
        let st = PipeStatus::new("d", "delivery", "events", "out", 3600);
        let now = 10_000 * S;
        let lag = |age_s: i64| ConsumerLag {
            records: 7,
            oldest_arrival_ns: Some(now - age_s * S),
        };
        assert!(!st.set_lag(lag(1000), now));
        assert!(st.set_lag(lag(1800), now), "half of 1 h reached");
        assert!(
            !st.set_lag(lag(2000), now),
            "warned once, not per measurement"
        );
        assert!(!st.set_lag(ConsumerLag::default(), now), "caught up");
        assert!(st.set_lag(lag(1900), now), "warns again after catching up");
        let snap = st.snapshot(now);
        assert_eq!(snap.lag_records, 7);
        assert_eq!(snap.lag_seconds, 1900.0);
    }
}
