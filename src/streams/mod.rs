//! Embedded, durable, Kinesis-compatible shard stream (see docs/streams.md).
//!
//! `ShardStreams` owns `<data_dir>/streams`: one directory per stream with `meta.json`, one
//! directory of append-only segment files per shard, and consumer checkpoints. Writers append
//! under a per-shard lock and share fdatasyncs (group commit); readers only see durable records.

mod consumer;
mod error;
pub(crate) mod format;
mod meta;
mod retention;
mod routing;
pub(crate) mod segment;
mod shard;

#[cfg(test)]
mod tests;

// parking_lot: no lock poisoning, so a panic in one HTTP handler does not lock every other caller
// out; the guarded data stays consistent because updates are applied after their I/O succeeded.
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use consumer::{Consumer, ConsumerLag, ConsumerWaiter};
pub use error::StreamError;
pub use format::MAX_RECORD_BYTES;
pub use meta::{MAX_RETENTION_HOURS, MAX_SHARDS, MIN_RETENTION_HOURS};
pub use routing::{
    hash_key, parse_sequence_number, parse_shard_id, sequence_number, shard_id, shard_ranges,
};

use error::Result;
use meta::{StreamMeta, META_FILE};
use shard::{IoCounters, Shard, ShardConfig};

use crate::clock::{SharedClock, UnixNanos};

/// Staging area for stream directories being created or deleted; its name is not a valid
/// stream name, and it is emptied on open.
const STAGING_DIR: &str = "+staging";
const MAX_PARTITION_KEY_CHARS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStreamsOptions {
    /// A put returns only once its records are on disk (fdatasync). Default true.
    pub fsync: bool,
    /// A segment is sealed and a new one started when the next record would exceed this size.
    /// Default 64 MiB.
    pub segment_bytes: u64,
}

impl Default for ShardStreamsOptions {
    fn default() -> Self {
        ShardStreamsOptions {
            fsync: true,
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<u128>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub shard_id: String,
    pub sequence_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub status: &'static str,
    pub shards: Vec<ShardInfo>,
    pub retention_hours: u32,
    pub created_ns: UnixNanos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
    pub starting_sequence_number: String,
}

/// Storage figures of one shard (CLI, metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStats {
    pub shard_id: String,
    /// Position of the oldest stored record.
    pub trim_horizon: ReadPosition,
    /// Position after the newest durable record.
    pub tip: ReadPosition,
    pub segments: usize,
    pub bytes: u64,
}

/// Store-wide counters since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoStats {
    pub fdatasyncs: u64,
    pub records_appended: u64,
    pub bytes_appended: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub sequence_number: String,
    pub arrival_ns: UnixNanos,
    pub partition_key: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    pub records: Vec<StoredRecord>,
    pub next: ReadPosition,
    pub millis_behind_latest: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    AtSequence(String),
    AfterSequence(String),
    AtTimestamp(UnixNanos),
}

/// Offset of the next record in a shard (the API layer encodes it into opaque iterators).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ReadPosition(pub u64);

pub(crate) struct Stream {
    name: String,
    dir: PathBuf,
    meta: RwLock<StreamMeta>,
    ranges: Vec<(u128, u128)>,
    shards: Vec<Arc<Shard>>,
}

impl Stream {
    fn open(dir: &Path, cfg: ShardConfig, counters: &Arc<IoCounters>) -> Result<Stream> {
        let meta = StreamMeta::load(dir)?;
        let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        if dir_name.as_deref() != Some(meta.name.as_str()) {
            return Err(StreamError::Corrupt(format!(
                "{}: names stream {:?}",
                dir.join(META_FILE).display(),
                meta.name
            )));
        }
        let ranges = meta.ranges()?;
        let shards = (0..ranges.len() as u32)
            .map(|i| {
                let shard_dir = dir.join(routing::shard_id(i));
                Shard::open(&shard_dir, i, &meta.name, cfg, Arc::clone(counters)).map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Stream {
            name: meta.name.clone(),
            dir: dir.to_path_buf(),
            meta: RwLock::new(meta),
            ranges,
            shards,
        })
    }

    fn shard(&self, shard_id: &str) -> Result<&Arc<Shard>> {
        routing::parse_shard_id(shard_id)
            .and_then(|i| self.shards.get(i as usize))
            .ok_or_else(|| StreamError::shard_not_found(&self.name, shard_id))
    }

    /// Offset named by a sequence number, which must come from this shard.
    fn offset_of(&self, shard: &Shard, seq: &str) -> Result<u64> {
        match routing::parse_sequence_number(seq) {
            Some((index, offset)) if index == shard.index => Ok(offset),
            _ => Err(StreamError::InvalidArgument(format!(
                "StartingSequenceNumber {seq} used in GetShardIterator on shard {} in stream {} under account 000000000000 is invalid because it did not come from this stream.",
                shard.id, self.name
            ))),
        }
    }
}

pub struct ShardStreams {
    root: PathBuf,
    opts: ShardStreamsOptions,
    clock: SharedClock,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    /// Serializes create / delete / retention changes (metadata writes).
    admin: Mutex<()>,
    counters: Arc<IoCounters>,
}

impl std::fmt::Debug for ShardStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardStreams")
            .field("root", &self.root)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl ShardStreams {
    /// Opens everything under root (`<data_dir>/streams`), recovering torn tails (truncate at
    /// the last valid record, log what was cut).
    pub fn open(
        root: &Path,
        opts: ShardStreamsOptions,
        clock: SharedClock,
    ) -> Result<Arc<ShardStreams>> {
        let io = |what: &str, p: &Path, e| StreamError::io(format!("{what} {}", p.display()), e);
        fs::create_dir_all(root).map_err(|e| io("creating", root, e))?;
        let staging = root.join(STAGING_DIR);
        if staging.exists() {
            // Half-created or half-deleted streams: never visible, safe to drop.
            fs::remove_dir_all(&staging).map_err(|e| io("clearing", &staging, e))?;
        }
        fs::create_dir_all(&staging).map_err(|e| io("creating", &staging, e))?;
        let counters = Arc::new(IoCounters::default());
        let mut streams = BTreeMap::new();
        for entry in fs::read_dir(root).map_err(|e| io("listing", root, e))? {
            let entry = entry.map_err(|e| io("listing", root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !path.is_dir() || meta::validate_name("stream", &name).is_err() {
                continue;
            }
            if !path.join(META_FILE).exists() {
                tracing::warn!(dir = %path.display(), "ignoring a stream directory without {META_FILE}");
                continue;
            }
            let stream = Stream::open(&path, shard_config(&opts), &counters)?;
            tracing::info!(stream = %name, shards = stream.shards.len(), "opened stream");
            streams.insert(name, Arc::new(stream));
        }
        Ok(Arc::new(ShardStreams {
            root: root.to_path_buf(),
            opts,
            clock,
            streams: RwLock::new(streams),
            admin: Mutex::new(()),
            counters,
        }))
    }

    pub fn options(&self) -> ShardStreamsOptions {
        self.opts
    }

    pub(crate) fn now(&self) -> UnixNanos {
        self.clock.now_ns()
    }

    fn stream(&self, name: &str) -> Result<Arc<Stream>> {
        self.streams
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| StreamError::stream_not_found(name))
    }

    fn shard(&self, stream: &str, shard_id: &str) -> Result<(Arc<Stream>, Arc<Shard>)> {
        let s = self.stream(stream)?;
        let shard = Arc::clone(s.shard(shard_id)?);
        Ok((s, shard))
    }

    pub(crate) fn stream_dir(&self, name: &str) -> Result<PathBuf> {
        Ok(self.stream(name)?.dir.clone())
    }

    /// Creates a stream: built in the staging directory, then renamed into place, so a crash
    /// never leaves a half-created stream visible. InUse if it exists.
    pub fn create_stream(&self, name: &str, shard_count: u32, retention_hours: u32) -> Result<()> {
        meta::validate_name("stream", name)?;
        meta::validate_shard_count(shard_count)?;
        meta::validate_retention(retention_hours)?;
        let _admin = self.admin.lock();
        if self.streams.read().contains_key(name) {
            return Err(StreamError::InUse(format!(
                "Stream {name} under account 000000000000 already exists."
            )));
        }
        let fsync = self.opts.fsync;
        let staging_root = self.root.join(STAGING_DIR);
        let staging = staging_root.join(unique_name(name, "new"));
        let io = |what: &str, p: &Path, e| StreamError::io(format!("{what} {}", p.display()), e);
        fs::create_dir_all(&staging).map_err(|e| io("creating", &staging, e))?;
        let meta = StreamMeta::new(name, shard_count, retention_hours, self.now());
        meta.store(&staging, fsync)?;
        for i in 0..shard_count {
            Shard::create(&staging.join(routing::shard_id(i)), fsync)?;
        }
        if fsync {
            meta::sync_dir(&staging)?;
        }
        let dir = self.root.join(name);
        fs::rename(&staging, &dir).map_err(|e| io("moving a new stream to", &dir, e))?;
        if fsync {
            meta::sync_dir(&self.root)?;
        }
        let stream = Stream::open(&dir, shard_config(&self.opts), &self.counters)?;
        self.streams
            .write()
            .insert(name.to_string(), Arc::new(stream));
        tracing::info!(
            stream = name,
            shards = shard_count,
            retention_hours,
            "created stream"
        );
        Ok(())
    }

    /// For streams declared in the config: creates it if missing (Ok(true)). An existing stream
    /// keeps its shards (warning if the count differs) and takes the configured retention.
    pub fn ensure_stream(
        &self,
        name: &str,
        shard_count: u32,
        retention_hours: u32,
    ) -> Result<bool> {
        meta::validate_shard_count(shard_count)?;
        meta::validate_retention(retention_hours)?;
        match self.create_stream(name, shard_count, retention_hours) {
            Ok(()) => Ok(true),
            Err(StreamError::InUse(_)) => {
                let info = self.describe(name)?;
                if info.shards.len() != shard_count as usize {
                    tracing::warn!(
                        stream = name, configured = shard_count, existing = info.shards.len(),
                        "stream exists with another shard count; keeping the existing shards (delete the stream to reshard)"
                    );
                }
                if info.retention_hours != retention_hours {
                    tracing::info!(
                        stream = name,
                        from = info.retention_hours,
                        to = retention_hours,
                        "applying configured retention"
                    );
                    self.set_retention(name, retention_hours)?;
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a stream with all its records and consumers: its directory is renamed into the
    /// staging area first (one atomic step), then removed.
    pub fn delete_stream(&self, name: &str) -> Result<()> {
        let _admin = self.admin.lock();
        let stream = self
            .streams
            .write()
            .remove(name)
            .ok_or_else(|| StreamError::stream_not_found(name))?;
        for shard in &stream.shards {
            shard.close();
        }
        let trash = self
            .root
            .join(STAGING_DIR)
            .join(unique_name(name, "deleted"));
        if let Err(e) = fs::rename(&stream.dir, &trash) {
            // Still in place: bring it back.
            let reopened = Stream::open(&stream.dir, shard_config(&self.opts), &self.counters)?;
            self.streams
                .write()
                .insert(name.to_string(), Arc::new(reopened));
            return Err(StreamError::io(format!("deleting stream {name}"), e));
        }
        if self.opts.fsync {
            meta::sync_dir(&self.root)?;
        }
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(stream = name, dir = %trash.display(), error = %e, "could not remove a deleted stream's files; they go on the next open");
        }
        tracing::info!(stream = name, "deleted stream");
        Ok(())
    }

    /// Stream names, sorted.
    pub fn list_streams(&self) -> Vec<String> {
        self.streams.read().keys().cloned().collect()
    }

    pub fn describe(&self, name: &str) -> Result<StreamInfo> {
        let s = self.stream(name)?;
        let meta = s.meta.read();
        Ok(StreamInfo {
            name: meta.name.clone(),
            status: "ACTIVE",
            shards: s
                .ranges
                .iter()
                .enumerate()
                .map(|(i, &(start, end))| ShardInfo {
                    shard_id: routing::shard_id(i as u32),
                    starting_hash_key: start,
                    ending_hash_key: end,
                    starting_sequence_number: routing::sequence_number(i as u32, 0),
                })
                .collect(),
            retention_hours: meta.retention_hours,
            created_ns: meta.created_ns,
        })
    }

    pub fn shard_stats(&self, name: &str) -> Result<Vec<ShardStats>> {
        let s = self.stream(name)?;
        Ok(s.shards
            .iter()
            .map(|sh| {
                let (segments, bytes) = sh.usage();
                ShardStats {
                    shard_id: sh.id.clone(),
                    trim_horizon: ReadPosition(sh.trim_horizon()),
                    tip: ReadPosition(sh.tip()),
                    segments,
                    bytes,
                }
            })
            .collect())
    }

    pub fn io_stats(&self) -> IoStats {
        IoStats {
            fdatasyncs: self.counters.fdatasyncs.load(Ordering::Relaxed),
            records_appended: self.counters.records.load(Ordering::Relaxed),
            bytes_appended: self.counters.bytes.load(Ordering::Relaxed),
        }
    }

    pub fn set_retention(&self, name: &str, hours: u32) -> Result<()> {
        meta::validate_retention(hours)?;
        let _admin = self.admin.lock();
        let s = self.stream(name)?;
        let mut updated = s.meta.read().clone();
        updated.retention_hours = hours;
        // Written (and synced) outside the meta lock: describe() on the API's async workers
        // must not wait for an fsync. The admin lock keeps metadata writers in order.
        updated.store(&s.dir, self.opts.fsync)?;
        *s.meta.write() = updated;
        Ok(())
    }

    /// Appends one record; see `put_many`.
    pub fn put(&self, stream: &str, rec: PutRecord) -> Result<PutResult> {
        self.put_many(stream, vec![rec])?
            .pop()
            .expect("one result per record")
    }

    /// Routes each record by MD5(partition key) (or its explicit hash key) to a shard, appends,
    /// and returns once all are durable (per `fsync`); concurrent callers share fdatasyncs.
    /// Results are in request order; a bad record fails only itself. An I/O error on a shard
    /// fails that shard's records, which may or may not have been stored.
    pub fn put_many(
        &self,
        stream: &str,
        recs: Vec<PutRecord>,
    ) -> Result<Vec<Result<PutResult, StreamError>>> {
        let s = self.stream(stream)?;
        let mut results: Vec<Option<Result<PutResult>>> = (0..recs.len()).map(|_| None).collect();
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); s.shards.len()];
        for (i, rec) in recs.iter().enumerate() {
            match validate_record(rec) {
                // One shard needs no hashing (most edge streams have one).
                Ok(()) if s.shards.len() == 1 => by_shard[0].push(i),
                Ok(()) => {
                    let hash = rec
                        .explicit_hash_key
                        .unwrap_or_else(|| hash_key(&rec.partition_key));
                    by_shard[routing::route(&s.ranges, hash)].push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let now = self.now();
        let mut pending = Vec::new(); // (shard, end offset, record indices)
        for (shard, idxs) in s.shards.iter().zip(by_shard) {
            if idxs.is_empty() {
                continue;
            }
            let batch: Vec<&PutRecord> = idxs.iter().map(|&i| &recs[i]).collect();
            match shard.append(&batch, now) {
                Ok((offsets, end)) => {
                    for (&i, off) in idxs.iter().zip(offsets) {
                        results[i] = Some(Ok(PutResult {
                            shard_id: shard.id.clone(),
                            sequence_number: routing::sequence_number(shard.index, off),
                        }));
                    }
                    pending.push((shard, end, idxs));
                }
                Err(e) => fail_all(&mut results, &idxs, &e),
            }
        }
        if self.opts.fsync {
            let synced: Vec<Result<()>> = if pending.len() == 1 {
                vec![pending[0].0.sync_until(pending[0].1)]
            } else {
                // Shards have their own files: sync them in parallel.
                std::thread::scope(|scope| {
                    let handles: Vec<_> = pending
                        .iter()
                        .map(|(shard, end, _)| scope.spawn(move || shard.sync_until(*end)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("sync thread panicked"))
                        .collect()
                })
            };
            for ((_, _, idxs), r) in pending.iter().zip(synced) {
                if let Err(e) = r {
                    fail_all(&mut results, idxs, &e);
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every record has a result"))
            .collect())
    }

    /// The read position a shard iterator of the given type starts at.
    pub fn resolve(
        &self,
        stream: &str,
        shard_id: &str,
        start: StartPosition,
    ) -> Result<ReadPosition> {
        let (s, shard) = self.shard(stream, shard_id)?;
        let beyond = |seq: &str| {
            StreamError::InvalidArgument(format!(
                "StartingSequenceNumber {seq} used in GetShardIterator on shard {shard_id} in stream {stream} under account 000000000000 is beyond the end of the shard."
            ))
        };
        let offset = match start {
            StartPosition::TrimHorizon => shard.trim_horizon(),
            StartPosition::Latest => shard.tip(),
            StartPosition::AtSequence(seq) => {
                let off = s.offset_of(&shard, &seq)?;
                if off > shard.tip() {
                    return Err(beyond(&seq));
                }
                // Aged out: the oldest record still there.
                off.max(shard.trim_horizon())
            }
            StartPosition::AfterSequence(seq) => {
                let off = s.offset_of(&shard, &seq)?;
                if off >= shard.tip() {
                    return Err(beyond(&seq));
                }
                (off + 1).max(shard.trim_horizon())
            }
            StartPosition::AtTimestamp(ts) => shard.seek_time(ts)?,
        };
        Ok(ReadPosition(offset))
    }

    /// Up to `limit` records / about `max_bytes` (at least one record if any) from `pos`;
    /// returns the position after the last record returned and how far (ms) the last one
    /// returned is behind now, 0 at the tip.
    pub fn read(
        &self,
        stream: &str,
        shard_id: &str,
        pos: ReadPosition,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch> {
        let (_, shard) = self.shard(stream, shard_id)?;
        let (frames, next, tip) = shard.read(pos.0, limit.max(1), max_bytes)?;
        let millis_behind_latest = match frames.last() {
            Some(last) if next < tip => {
                (self.now().saturating_sub(last.arrival_ns).max(0) / 1_000_000) as u64
            }
            _ => 0,
        };
        let records = frames
            .into_iter()
            .map(|f| StoredRecord {
                sequence_number: routing::sequence_number(shard.index, f.offset),
                arrival_ns: f.arrival_ns,
                partition_key: f.key,
                data: f.data,
            })
            .collect();
        Ok(ReadBatch {
            records,
            next: ReadPosition(next),
            millis_behind_latest,
        })
    }

    /// Blocks up to `timeout` until the shard has a durable record at or after `pos`.
    pub fn wait_for(
        &self,
        stream: &str,
        shard_id: &str,
        pos: ReadPosition,
        timeout: Duration,
    ) -> Result<bool> {
        let (_, shard) = self.shard(stream, shard_id)?;
        shard.wait_for(pos.0, timeout)
    }

    /// Readers blocked in `wait_for` on one shard (test hook).
    #[cfg(test)]
    pub(crate) fn parked_waiters(&self, stream: &str, shard_id: &str) -> usize {
        self.shard(stream, shard_id)
            .map_or(0, |(_, shard)| shard.parked_waiters())
    }

    /// Deletes whole sealed segments whose newest record is older than the stream's retention
    /// (per the clock). Returns how many segments were removed.
    pub fn enforce_retention(&self) -> Result<usize> {
        let streams: Vec<Arc<Stream>> = self.streams.read().values().cloned().collect();
        retention::enforce(&streams, self.now())
    }

    /// A named, durable consumer of one stream (checkpoint per shard).
    pub fn consumer(self: &Arc<Self>, stream: &str, name: &str) -> Result<Consumer> {
        Consumer::open(Arc::clone(self), stream, name)
    }

    /// A consumer's lag from its durable checkpoints (as last committed, by whoever runs it).
    pub fn consumer_lag(self: &Arc<Self>, stream: &str, name: &str) -> Result<ConsumerLag> {
        Consumer::open(Arc::clone(self), stream, name)?.lag()
    }

    pub(crate) fn shard_count(&self, stream: &str) -> Result<usize> {
        Ok(self.stream(stream)?.shards.len())
    }

    pub(crate) fn shard_tip(&self, stream: &str, shard_id: &str) -> Result<(u32, u64)> {
        let (_, shard) = self.shard(stream, shard_id)?;
        Ok((shard.index, shard.tip()))
    }
}

/// A staging directory name no other create or delete in this process uses.
fn unique_name(stream: &str, what: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{stream}.{}-{n}.{what}", std::process::id())
}

fn shard_config(opts: &ShardStreamsOptions) -> ShardConfig {
    ShardConfig {
        fsync: opts.fsync,
        segment_bytes: opts.segment_bytes,
    }
}

fn validate_record(rec: &PutRecord) -> Result<()> {
    let chars = rec.partition_key.chars().count();
    if !(1..=MAX_PARTITION_KEY_CHARS).contains(&chars) {
        return Err(StreamError::InvalidArgument(format!(
            "Partition key must be 1 to {MAX_PARTITION_KEY_CHARS} characters long (got {chars})."
        )));
    }
    let size = rec.partition_key.len() + rec.data.len();
    if size > MAX_RECORD_BYTES {
        return Err(StreamError::InvalidArgument(format!(
            "Record size exceeds the maximum allowed size of 1 MiB: partition key + data are {size} bytes."
        )));
    }
    Ok(())
}

fn fail_all(results: &mut [Option<Result<PutResult>>], idxs: &[usize], e: &StreamError) {
    for &i in idxs {
        results[i] = Some(Err(e.duplicate()));
    }
}
