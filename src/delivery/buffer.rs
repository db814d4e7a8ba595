//! Buffering as Firehose's BufferingHints: records collect per evaluated prefix (dynamic
//! partitioning: one buffer per prefix) until `size` uncompressed bytes or `interval` since the
//! buffer opened, whichever comes first. Time comes from the caller (the injectable clock).
//!
//! Checkpoints: with several buffers open, a shard's records are spread over them. A record is
//! safe to checkpoint only when every record before it on its shard is in a confirmed object,
//! so `safe_before` gives, per shard, the first sequence number still held by an open buffer.

use super::body::{BodyEncoder, BodyFormat, PushError};
use crate::clock::UnixNanos;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferingHints {
    /// Uncompressed bytes that flush a buffer.
    pub size: u64,
    /// Age of a buffer that flushes it.
    pub interval: Duration,
}

/// One record read from the source stream.
#[derive(Debug, Clone, Copy)]
pub struct SourceRecord<'a> {
    pub shard: &'a str,
    /// Fixed-width decimal sequence number (orders as text).
    pub sequence: &'a str,
    pub arrival_ns: UnixNanos,
    pub data: &'a [u8],
}

/// A flushed buffer: one object to write.
#[derive(Debug)]
pub struct ReadyBatch {
    pub prefix: String,
    /// Shard and sequence number of the batch's first record (its identity, see `keys`).
    pub first_shard: String,
    pub first_sequence: String,
    pub oldest_arrival_ns: UnixNanos,
    pub records: usize,
    pub raw_bytes: u64,
    /// False when the records made no rows (nothing to write, see `BodyEncoder::has_rows`).
    pub has_rows: bool,
    pub body: Vec<u8>,
}

struct Pending {
    body: Box<dyn BodyEncoder>,
    opened_ns: UnixNanos,
    oldest_arrival_ns: UnixNanos,
    first: (String, String),
    /// First sequence number per shard in this buffer.
    first_per_shard: BTreeMap<String, String>,
}

pub struct Batcher {
    hints: BufferingHints,
    format: Arc<dyn BodyFormat>,
    open: BTreeMap<String, Pending>,
    /// Record bytes of all open buffers.
    total_raw: u64,
}

impl Batcher {
    pub fn new(hints: BufferingHints, format: Arc<dyn BodyFormat>) -> Self {
        Self {
            hints,
            format,
            open: BTreeMap::new(),
            total_raw: 0,
        }
    }

    /// Adds `rec` to the buffer of `prefix`; returns that buffer when it reached the size hint.
    /// A record the format cannot hold is returned as `PushError::Convert` and is not buffered.
    pub fn push(
        &mut self,
        prefix: &str,
        rec: SourceRecord,
        now: UnixNanos,
    ) -> Result<Option<ReadyBatch>, PushError> {
        if !self.open.contains_key(prefix) {
            self.open.insert(
                prefix.to_string(),
                Pending {
                    body: self.format.encoder()?,
                    opened_ns: now,
                    oldest_arrival_ns: rec.arrival_ns,
                    first: (rec.shard.to_string(), rec.sequence.to_string()),
                    first_per_shard: BTreeMap::new(),
                },
            );
        }
        let p = self.open.get_mut(prefix).expect("inserted above");
        let before = p.body.raw_bytes();
        if let Err(e) = p.body.push(rec.data) {
            if p.body.records() == 0 {
                self.open.remove(prefix);
            }
            return Err(e);
        }
        self.total_raw += p.body.raw_bytes() - before;
        p.oldest_arrival_ns = p.oldest_arrival_ns.min(rec.arrival_ns);
        p.first_per_shard
            .entry(rec.shard.to_string())
            .or_insert_with(|| rec.sequence.to_string());
        if p.body.raw_bytes() >= self.hints.size {
            return Ok(Some(self.flush(prefix)?));
        }
        Ok(None)
    }

    /// Buffers whose interval has passed at `now`.
    pub fn due(&mut self, now: UnixNanos) -> std::io::Result<Vec<ReadyBatch>> {
        let interval = self.hints.interval.as_nanos() as i64;
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, p)| now - p.opened_ns >= interval)
            .map(|(k, _)| k.clone())
            .collect();
        due.iter().map(|k| self.flush(k)).collect()
    }

    /// Buffers flushed early so that at most `max_open` are open and together they hold at
    /// most `max_bytes` of records (oldest first): dynamic partitioning on a field with many
    /// values must not grow memory without bound. Their objects are smaller, nothing is lost.
    pub fn over_limits(
        &mut self,
        max_open: usize,
        max_bytes: u64,
    ) -> std::io::Result<Vec<ReadyBatch>> {
        let mut out = Vec::new();
        loop {
            if self.open.len() <= max_open && self.total_raw <= max_bytes {
                return Ok(out);
            }
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, p)| p.opened_ns)
                .map(|(k, _)| k.clone())
                .expect("over a limit, so something is open");
            out.push(self.flush(&oldest)?);
        }
    }

    /// When the next buffer falls due (None: nothing buffered).
    pub fn next_due(&self) -> Option<UnixNanos> {
        let interval = self.hints.interval.as_nanos() as i64;
        self.open.values().map(|p| p.opened_ns + interval).min()
    }

    /// Every buffer, now (shutdown).
    pub fn drain(&mut self) -> std::io::Result<Vec<ReadyBatch>> {
        let keys: Vec<String> = self.open.keys().cloned().collect();
        keys.iter().map(|k| self.flush(k)).collect()
    }

    /// Per shard, the first sequence number still held by an open buffer: a checkpoint may
    /// cover only records before it (once the flushed objects are confirmed).
    pub fn safe_before(&self, shard: &str) -> Option<&str> {
        self.open
            .values()
            .filter_map(|p| p.first_per_shard.get(shard))
            .min()
            .map(String::as_str)
    }

    fn flush(&mut self, prefix: &str) -> std::io::Result<ReadyBatch> {
        let p = self.open.remove(prefix).expect("flushing an open buffer");
        self.total_raw -= p.body.raw_bytes();
        let records = p.body.records();
        let raw_bytes = p.body.raw_bytes();
        let has_rows = p.body.has_rows();
        Ok(ReadyBatch {
            has_rows,
            prefix: prefix.to_string(),
            first_shard: p.first.0,
            first_sequence: p.first.1,
            oldest_arrival_ns: p.oldest_arrival_ns,
            records,
            raw_bytes,
            body: p.body.finish()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn seq(n: u64) -> String {
        format!("{n:025}")
    }

    fn batcher(size: u64, interval_s: u64) -> Batcher {
        Batcher::new(
            BufferingHints {
                size,
                interval: Duration::from_secs(interval_s),
            },
            Arc::new(crate::delivery::body::Jsonl(
                crate::delivery::format::Compression::None,
            )),
        )
    }

    #[test]
    fn size_or_interval_whichever_first() {
        let mut b = batcher(100, 60);
        let data = [b'x'; 24]; // 25 bytes per line
        let mut flushed = Vec::new();
        for n in 0..10u64 {
            let s = seq(n);
            let rec = SourceRecord {
                shard: "s0",
                sequence: &s,
                arrival_ns: n as i64 * S,
                data: &data,
            };
            flushed.extend(b.push("p/", rec, n as i64 * S).unwrap());
        }
        // 4 records reach 100 bytes: two full batches, two records left.
        assert_eq!(flushed.len(), 2);
        assert_eq!(flushed[0].records, 4);
        assert_eq!(flushed[0].first_sequence, seq(0));
        assert_eq!(flushed[1].first_sequence, seq(4));
        assert_eq!(flushed[1].oldest_arrival_ns, 4 * S);
        assert_eq!(flushed[0].body.len(), 100);
        // The rest flushes on the interval, counted from when its buffer opened (t = 8 s).
        assert_eq!(b.next_due(), Some(68 * S));
        assert!(b.due(67 * S).unwrap().is_empty());
        let late = b.due(68 * S).unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].records, 2);
        assert_eq!(b.next_due(), None);
    }

    #[test]
    fn many_partitions_are_flushed_early_oldest_first() {
        let mut b = batcher(1 << 20, 60);
        for n in 0..10u64 {
            let s = seq(n);
            let rec = SourceRecord {
                shard: "s0",
                sequence: &s,
                arrival_ns: 0,
                data: &[b'x'; 99],
            };
            assert!(b.push(&format!("p{n}/"), rec, n as i64).unwrap().is_none());
        }
        // 10 buffers of 100 bytes: at most 4 open, then at most 250 bytes.
        let early = b.over_limits(4, 1 << 20).unwrap();
        assert_eq!(
            early.iter().map(|r| r.prefix.as_str()).collect::<Vec<_>>(),
            ["p0/", "p1/", "p2/", "p3/", "p4/", "p5/"]
        );
        let early = b.over_limits(100, 250).unwrap();
        assert_eq!(early.len(), 2);
        assert!(b.over_limits(100, 250).unwrap().is_empty());
        // The checkpoint follows: the oldest record still held is #8.
        assert_eq!(b.safe_before("s0"), Some(seq(8).as_str()));
    }

    #[test]
    fn one_buffer_per_prefix_and_safe_checkpoints() {
        let mut b = batcher(1 << 20, 60);
        let push = |b: &mut Batcher, prefix: &str, n: u64| {
            let s = seq(n);
            b.push(
                prefix,
                SourceRecord {
                    shard: "s0",
                    sequence: &s,
                    arrival_ns: n as i64,
                    data: b"{}",
                },
                0,
            )
            .unwrap()
        };
        push(&mut b, "camera=a/", 1);
        push(&mut b, "camera=b/", 2);
        push(&mut b, "camera=a/", 3);
        // Records 1.. are held: nothing on s0 may be checkpointed yet.
        assert_eq!(b.safe_before("s0"), Some(seq(1).as_str()));
        assert_eq!(b.safe_before("s1"), None);
        let mut out = b.drain().unwrap();
        out.sort_by(|x, y| x.prefix.cmp(&y.prefix));
        assert_eq!(
            out.iter()
                .map(|r| (r.prefix.as_str(), r.records))
                .collect::<Vec<_>>(),
            [("camera=a/", 2), ("camera=b/", 1)]
        );
        assert_eq!(b.safe_before("s0"), None);
    }
}
