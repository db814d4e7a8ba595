//! Named consumers: a durable checkpoint per shard (`<stream>/consumers/<name>.json`, written
//! atomically) and a poll loop over all shards from those checkpoints.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{Result, StreamError};
use super::meta::{self, sync_dir, write_atomic};
use super::routing;
use super::{ReadPosition, ShardStreams, StoredRecord};

const CONSUMERS_DIR: &str = "consumers";
/// Bytes one poll reads from a shard at most (GetRecords' limit).
const POLL_MAX_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CheckpointFile {
    format: u32,
    stream: String,
    consumer: String,
    /// shard id -> sequence number of the last record done.
    checkpoints: BTreeMap<String, String>,
}

pub struct Consumer {
    store: Arc<ShardStreams>,
    stream: String,
    name: String,
    path: PathBuf,
    file: CheckpointFile,
    /// Next position per shard for `poll` (not durable; starts after the checkpoint).
    positions: Vec<ReadPosition>,
    /// Shard `poll` starts with, rotated so no shard starves when `limit` is small.
    first_shard: usize,
    /// Records that aged out of the stream (retention) before this consumer read them.
    lost: u64,
}

/// A snapshot of a consumer's read positions that can wait for new records (`Consumer::waiter`).
pub struct ConsumerWaiter {
    store: Arc<ShardStreams>,
    stream: String,
    positions: Vec<ReadPosition>,
}

impl ConsumerWaiter {
    /// Blocks up to `timeout` until some shard has a record at or after its position; each
    /// shard gets a slice of the wait (at most 100 ms) when there are several.
    pub fn wait(&self, timeout: std::time::Duration) -> Result<bool> {
        let n = self.positions.len().max(1) as u32;
        let slice = if n == 1 {
            timeout
        } else {
            (timeout / n).min(std::time::Duration::from_millis(100))
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            for (i, pos) in self.positions.iter().enumerate() {
                let shard = routing::shard_id(i as u32);
                if self.store.wait_for(&self.stream, &shard, *pos, slice)? {
                    return Ok(true);
                }
            }
            if std::time::Instant::now() >= deadline || slice.is_zero() {
                return Ok(false);
            }
        }
    }
}

/// How far a consumer is behind its stream (from its durable checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerLag {
    /// Stored records after the checkpoints.
    pub records: u64,
    /// Arrival time of the oldest of them (None: none).
    pub oldest_arrival_ns: Option<crate::clock::UnixNanos>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("stream", &self.stream)
            .field("name", &self.name)
            .field("checkpoints", &self.file.checkpoints)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub(crate) fn open(store: Arc<ShardStreams>, stream: &str, name: &str) -> Result<Consumer> {
        meta::validate_name("consumer", name)?;
        let dir = store.stream_dir(stream)?.join(CONSUMERS_DIR);
        if !dir.exists() {
            fs::create_dir_all(&dir)
                .map_err(|e| StreamError::io(format!("creating {}", dir.display()), e))?;
            if store.options().fsync {
                sync_dir(dir.parent().expect("stream dir"))?;
            }
        }
        let path = dir.join(format!("{name}.json"));
        let file = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StreamError::Corrupt(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CheckpointFile {
                format: 1,
                stream: stream.to_string(),
                consumer: name.to_string(),
                checkpoints: BTreeMap::new(),
            },
            Err(e) => return Err(StreamError::io(format!("reading {}", path.display()), e)),
        };
        let shards = store.shard_count(stream)?;
        let positions = (0..shards as u32)
            .map(|i| {
                // No checkpoint: position 0, which reads from the trim horizon.
                let after = file
                    .checkpoints
                    .get(&routing::shard_id(i))
                    .and_then(|seq| routing::parse_sequence_number(seq))
                    .map_or(0, |(_, off)| off + 1);
                ReadPosition(after)
            })
            .collect();
        Ok(Consumer {
            store,
            stream: stream.to_string(),
            name: name.to_string(),
            path,
            file,
            positions,
            first_shard: 0,
            lost: 0,
        })
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Next records across all shards from where the last poll stopped (initially the
    /// checkpoints, or TRIM_HORIZON where there is none). Does not checkpoint.
    pub fn poll(&mut self, limit: usize) -> Result<Vec<(String, StoredRecord)>> {
        let n = self.positions.len();
        let mut out = Vec::new();
        for k in 0..n {
            if out.len() >= limit {
                break;
            }
            let i = (self.first_shard + k) % n;
            let shard = routing::shard_id(i as u32);
            let batch = self.store.read(
                &self.stream,
                &shard,
                self.positions[i],
                limit - out.len(),
                POLL_MAX_BYTES,
            )?;
            // Positions skipped without a record: aged out before they were read.
            let skipped = (batch.next.0 - self.positions[i].0) - batch.records.len() as u64;
            if skipped > 0 {
                self.lost += skipped;
                tracing::warn!(
                    stream = %self.stream,
                    consumer = %self.name,
                    shard = %shard,
                    records = skipped,
                    "records aged out of the stream (retention) before this consumer read them: lost"
                );
            }
            self.positions[i] = batch.next;
            out.extend(batch.records.into_iter().map(|r| (shard.clone(), r)));
        }
        self.first_shard = (self.first_shard + 1) % n.max(1);
        Ok(out)
    }

    /// Durably records that everything up to and including `sequence_number` in the shard is
    /// done (atomic rename + fsync). A checkpoint never moves back: an older one is ignored.
    pub fn commit(&mut self, shard_id: &str, sequence_number: &str) -> Result<()> {
        let (index, tip) = self.store.shard_tip(&self.stream, shard_id)?;
        let offset = match routing::parse_sequence_number(sequence_number) {
            Some((i, off)) if i == index && off < tip => off,
            _ => {
                return Err(StreamError::InvalidArgument(format!(
                    "sequence number {sequence_number} is not a stored record of {shard_id} in stream {}",
                    self.stream
                )))
            }
        };
        let current = self
            .checkpoint(shard_id)
            .and_then(|s| routing::parse_sequence_number(&s));
        if current.is_some_and(|(_, off)| off >= offset) {
            return Ok(());
        }
        let mut file = CheckpointFile {
            format: 1,
            stream: self.stream.clone(),
            consumer: self.name.clone(),
            checkpoints: self.file.checkpoints.clone(),
        };
        file.checkpoints
            .insert(shard_id.to_string(), sequence_number.to_string());
        let json = serde_json::to_vec_pretty(&file).expect("checkpoints serialize");
        write_atomic(&self.path, &json, self.store.options().fsync)?;
        self.file = file;
        let pos = &mut self.positions[index as usize];
        *pos = (*pos).max(ReadPosition(offset + 1));
        Ok(())
    }

    /// Records found aged out (never read) since the last call.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Blocks up to `timeout` until some shard has a record after where `poll` stopped.
    /// With several shards each gets a slice of the wait (at most 100 ms), so a record on any
    /// shard is noticed within that.
    pub fn wait(&self, timeout: std::time::Duration) -> Result<bool> {
        self.waiter().wait(timeout)
    }

    /// Where `poll` stands now, to wait on without holding the consumer (a consumer shared
    /// behind a lock with a committing task must not be locked for the wait).
    pub fn waiter(&self) -> ConsumerWaiter {
        ConsumerWaiter {
            store: Arc::clone(&self.store),
            stream: self.stream.clone(),
            positions: self.positions.clone(),
        }
    }

    /// Records after the durable checkpoints, and the arrival time of the oldest one.
    pub fn lag(&self) -> Result<ConsumerLag> {
        let mut lag = ConsumerLag::default();
        for i in 0..self.positions.len() {
            let shard = routing::shard_id(i as u32);
            let after = self
                .file
                .checkpoints
                .get(&shard)
                .and_then(|seq| routing::parse_sequence_number(seq))
                .map_or(0, |(_, off)| off + 1);
            let batch = self
                .store
                .read(&self.stream, &shard, ReadPosition(after), 1, 1)?;
            let Some(first) = batch.records.first() else {
                continue;
            };
            let (_, tip) = self.store.shard_tip(&self.stream, &shard)?;
            let first_off = routing::parse_sequence_number(&first.sequence_number)
                .map_or(after, |(_, off)| off);
            lag.records += tip.saturating_sub(first_off);
            lag.oldest_arrival_ns = Some(
                lag.oldest_arrival_ns
                    .map_or(first.arrival_ns, |t| t.min(first.arrival_ns)),
            );
        }
        Ok(lag)
    }

    pub fn checkpoint(&self, shard_id: &str) -> Option<String> {
        self.file.checkpoints.get(shard_id).cloned()
    }
}
