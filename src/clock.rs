//! Injectable wall clock: everything time-dependent (retention, backoff, server timestamps) reads
//! a `Clock` so tests can run hours of retention in milliseconds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
pub type UnixNanos = i64;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ns(&self) -> UnixNanos;
}

pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> UnixNanos {
        system_time_to_ns(SystemTime::now())
    }
}

pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(start_ns: UnixNanos) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(start_ns),
        })
    }
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_nanos() as i64, Ordering::SeqCst);
    }
    pub fn set(&self, ns: UnixNanos) {
        self.now.store(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> UnixNanos {
        self.now.load(Ordering::SeqCst)
    }
}

pub fn system_time_to_ns(t: SystemTime) -> UnixNanos {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

/// RFC 3339 with millisecond precision in UTC, e.g. `2026-11-25T20:16:10.123Z`.
pub fn format_rfc3339(ns: UnixNanos) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}
