//! Time-based retention: whole sealed segments go once their newest record is older than the
//! stream's retention period, oldest first.

use std::sync::Arc;

use super::error::Result;
use super::Stream;
use crate::clock::UnixNanos;

const NANOS_PER_HOUR: i64 = 3_600 * 1_000_000_000;

/// Removes expired segments of every shard of `streams` as of `now`; returns how many.
pub(crate) fn enforce(streams: &[Arc<Stream>], now: UnixNanos) -> Result<usize> {
    let mut removed = 0;
    for stream in streams {
        let hours = stream.meta.read().retention_hours;
        let cutoff = now.saturating_sub(i64::from(hours) * NANOS_PER_HOUR);
        for shard in &stream.shards {
            removed += shard.expire(cutoff)?;
        }
    }
    Ok(removed)
}
