//! Engine tests against real files in temporary directories.

mod concurrency;
mod consumer;
mod positions;
mod recovery;
mod retention;
mod roundtrip;
mod routing;
mod validation;

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::clock::{Clock, ManualClock, SharedClock};

/// 2023-11-14T22:13:20Z
pub const T0: UnixNanos = 1_700_000_000_000_000_000;

pub fn opts(segment_bytes: u64) -> ShardStreamsOptions {
    ShardStreamsOptions {
        fsync: true,
        segment_bytes,
    }
}

pub fn open_with(
    root: &Path,
    o: ShardStreamsOptions,
    clock: &Arc<ManualClock>,
) -> Arc<ShardStreams> {
    let clock: SharedClock = clock.clone();
    ShardStreams::open(root, o, clock).unwrap()
}

pub fn rec(key: &str, data: impl Into<Vec<u8>>) -> PutRecord {
    PutRecord {
        partition_key: key.to_string(),
        explicit_hash_key: None,
        data: data.into(),
    }
}

/// Every record of a shard from the trim horizon, read `limit` at a time.
pub fn read_all(
    store: &ShardStreams,
    stream: &str,
    shard: &str,
    limit: usize,
) -> Vec<StoredRecord> {
    let mut pos = store
        .resolve(stream, shard, StartPosition::TrimHorizon)
        .unwrap();
    let mut out = Vec::new();
    loop {
        let b = store.read(stream, shard, pos, limit, 10 << 20).unwrap();
        assert!(b.next >= pos, "positions never go back");
        if b.records.is_empty() {
            assert_eq!(b.millis_behind_latest, 0);
            return out;
        }
        pos = b.next;
        out.extend(b.records);
    }
}

pub fn offset_of(seq: &str) -> u64 {
    parse_sequence_number(seq).unwrap().1
}

/// The shard's segment files (sorted by base offset).
pub fn segment_files(root: &Path, stream: &str, shard: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root.join(stream).join(shard))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}
