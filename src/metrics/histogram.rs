//! Inference time and per-label counts, recorded by the detection workers (lock-free for the
//! times) and read by the collector, which takes quantiles over the interval from the
//! difference of two snapshots.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, microseconds (roughly 1-2-3-5-7 per decade, 1 ms to 10 s);
/// one more bucket holds everything slower.
const BOUNDS_US: [u64; 23] = [
    1_000, 2_000, 3_000, 5_000, 7_000, 10_000, 15_000, 20_000, 30_000, 50_000, 70_000, 100_000,
    150_000, 200_000, 300_000, 500_000, 700_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000,
    5_000_000, 10_000_000,
];
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// A fixed-bucket latency histogram (cumulative since start).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

/// A copy of a histogram's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<u64>,
    pub sum_us: u64,
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// The `q` quantile (0..1) in seconds, interpolated linearly inside its bucket; values in
    /// the overflow bucket report its lower bound. None when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * count as f64).max(1.0);
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 { 0 } else { BOUNDS_US[i - 1] } as f64;
                let Some(&upper) = BOUNDS_US.get(i) else {
                    return Some(lower / 1e6);
                };
                let within = (rank - below as f64) / n as f64;
                return Some((lower + within * (upper as f64 - lower)) / 1e6);
            }
            below += n;
        }
        None
    }
}

/// Detection figures beyond `Counters`: inference time and objects per label.
#[derive(Debug, Default)]
pub struct DetectStats {
    pub inference: LatencyHistogram,
    labels: Mutex<BTreeMap<String, u64>>,
}

impl DetectStats {
    /// Counts the objects of one inferred frame.
    pub fn count_objects<'a>(&self, labels: impl IntoIterator<Item = &'a str>) {
        let mut map = self.labels.lock();
        for label in labels {
            match map.get_mut(label) {
                Some(n) => *n += 1,
                None => {
                    map.insert(label.to_string(), 1);
                }
            }
        }
    }

    pub fn objects(&self) -> BTreeMap<String, u64> {
        self.labels.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_of_the_interval_only() {
        let h = LatencyHistogram::default();
        for _ in 0..100 {
            h.record(ms(400)); // before the window
        }
        let start = h.snapshot();
        for i in 0..100 {
            // 90 fast (4..5 ms bucket), 10 slow (between 150 and 200 ms)
            h.record(if i < 90 { ms(4) } else { ms(180) });
        }
        let window = h.snapshot().since(&start);
        assert_eq!(window.count(), 100);
        let p50 = window.quantile(0.5).unwrap();
        assert!((0.003..=0.005).contains(&p50), "p50 {p50}");
        let p95 = window.quantile(0.95).unwrap();
        assert!((0.150..=0.200).contains(&p95), "p95 {p95}");
        assert_eq!(window.sum_us, 90 * 4_000 + 10 * 180_000);
    }

    #[test]
    fn empty_and_overflow() {
        let h = LatencyHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        h.record(Duration::from_secs(30));
        assert_eq!(h.snapshot().quantile(0.95), Some(10.0));
    }

    #[test]
    fn objects_per_label() {
        let s = DetectStats::default();
        s.count_objects(["person", "car", "person"]);
        s.count_objects(["dog"]);
        let m = s.objects();
        assert_eq!(m["person"], 2);
        assert_eq!(m["car"], 1);
        assert_eq!(m["dog"], 1);
    }
}
