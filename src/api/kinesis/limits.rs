//! The real service's per-shard throughput limits, applied to streams with `enforce_limits`:
//! writes 1000 records/s and 1 MiB/s, reads 5 calls/s and 2 MiB/s (token buckets, one second
//! of burst).

use crate::clock::SharedClock;
use parking_lot::Mutex;
use std::collections::HashMap;

pub const WRITE_RECORDS_PER_S: f64 = 1000.0;
pub const WRITE_BYTES_PER_S: f64 = 1024.0 * 1024.0;
pub const READS_PER_S: f64 = 5.0;
pub const READ_BYTES_PER_S: f64 = 2.0 * 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    rate: f64,
    updated_ns: i64,
}

impl Bucket {
    fn new(rate: f64, now: i64) -> Self {
        Self {
            tokens: rate,
            rate,
            updated_ns: now,
        }
    }
    fn refill(&mut self, now: i64) {
        let dt = (now - self.updated_ns).max(0) as f64 / 1e9;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        self.updated_ns = now;
    }
}

#[derive(Debug)]
struct ShardBuckets {
    write_records: Bucket,
    write_bytes: Bucket,
    reads: Bucket,
    read_bytes: Bucket,
}

pub struct Limits {
    clock: SharedClock,
    shards: Mutex<HashMap<(String, String), ShardBuckets>>,
}

impl Limits {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            shards: Mutex::default(),
        }
    }

    fn with<R>(&self, stream: &str, shard: &str, f: impl FnOnce(&mut ShardBuckets) -> R) -> R {
        let now = self.clock.now_ns();
        let mut map = self.shards.lock();
        let b = map
            .entry((stream.to_string(), shard.to_string()))
            .or_insert_with(|| ShardBuckets {
                write_records: Bucket::new(WRITE_RECORDS_PER_S, now),
                write_bytes: Bucket::new(WRITE_BYTES_PER_S, now),
                reads: Bucket::new(READS_PER_S, now),
                read_bytes: Bucket::new(READ_BYTES_PER_S, now),
            });
        for bucket in [
            &mut b.write_records,
            &mut b.write_bytes,
            &mut b.reads,
            &mut b.read_bytes,
        ] {
            bucket.refill(now);
        }
        f(b)
    }

    /// Takes one record of `bytes` from the shard's write budget, or refuses.
    pub fn try_write(&self, stream: &str, shard: &str, bytes: usize) -> bool {
        self.with(stream, shard, |b| {
            if b.write_records.tokens >= 1.0 && b.write_bytes.tokens >= bytes as f64 {
                b.write_records.tokens -= 1.0;
                b.write_bytes.tokens -= bytes as f64;
                true
            } else {
                false
            }
        })
    }

    /// Takes one GetRecords call from the shard's read budget, or refuses (also when the byte
    /// budget is already overdrawn by earlier large reads).
    pub fn try_read(&self, stream: &str, shard: &str) -> bool {
        self.with(stream, shard, |b| {
            if b.reads.tokens >= 1.0 && b.read_bytes.tokens > 0.0 {
                b.reads.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Charges bytes returned by a read (may overdraw: the next reads wait it off).
    pub fn charge_read(&self, stream: &str, shard: &str, bytes: usize) {
        self.with(stream, shard, |b| b.read_bytes.tokens -= bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    #[test]
    fn write_and_read_budgets_refill_per_second() {
        let clock = ManualClock::new(0);
        let l = Limits::new(clock.clone());
        let ok = (0..1500)
            .filter(|_| l.try_write("s", "shardId-000000000000", 10))
            .count();
        assert_eq!(ok, 1000);
        assert!(
            l.try_write("s", "shardId-000000000001", 10),
            "shards are independent"
        );
        clock.advance(Duration::from_millis(500));
        let ok = (0..1000)
            .filter(|_| l.try_write("s", "shardId-000000000000", 10))
            .count();
        assert_eq!(ok, 500);
        // 1 MiB/s: two 600 KiB records do not fit in one second.
        clock.advance(Duration::from_secs(5));
        assert!(l.try_write("s", "x", 600 << 10));
        assert!(!l.try_write("s", "x", 600 << 10));
        let reads = (0..10).filter(|_| l.try_read("s", "r")).count();
        assert_eq!(reads, 5);
        clock.advance(Duration::from_secs(1));
        l.charge_read("s", "r", 5 << 20);
        assert!(!l.try_read("s", "r"), "over the byte budget");
    }
}
