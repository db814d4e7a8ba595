//! Stream metadata (`meta.json`), name validation and the atomic-file helpers shared by the
//! stream and consumer files.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::error::{Result, StreamError};
use super::routing;
use crate::clock::UnixNanos;

pub const META_FILE: &str = "meta.json";
pub const MAX_SHARDS: u32 = 64;
pub const MIN_RETENTION_HOURS: u32 = 24;
pub const MAX_RETENTION_HOURS: u32 = 8760;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardMeta {
    pub shard_id: String,
    /// Decimal strings: JSON numbers cannot carry 128 bits portably.
    pub starting_hash_key: String,
    pub ending_hash_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamMeta {
    pub format: u32,
    pub name: String,
    pub retention_hours: u32,
    pub created_ns: UnixNanos,
    pub shards: Vec<ShardMeta>,
}

impl StreamMeta {
    pub fn new(name: &str, shard_count: u32, retention_hours: u32, created_ns: UnixNanos) -> Self {
        let shards = routing::shard_ranges(shard_count)
            .into_iter()
            .enumerate()
            .map(|(i, (start, end))| ShardMeta {
                shard_id: routing::shard_id(i as u32),
                starting_hash_key: start.to_string(),
                ending_hash_key: end.to_string(),
            })
            .collect();
        StreamMeta {
            format: 1,
            name: name.to_string(),
            retention_hours,
            created_ns,
            shards,
        }
    }

    /// Hash ranges of the shards, checked to be contiguous and to cover 0..=u128::MAX.
    pub fn ranges(&self) -> Result<Vec<(u128, u128)>> {
        let bad = || {
            StreamError::Corrupt(format!(
                "stream {}: bad hash ranges in {META_FILE}",
                self.name
            ))
        };
        let ranges = self
            .shards
            .iter()
            .map(|s| {
                Ok((
                    s.starting_hash_key.parse().map_err(|_| bad())?,
                    s.ending_hash_key.parse().map_err(|_| bad())?,
                ))
            })
            .collect::<Result<Vec<(u128, u128)>>>()?;
        let mut expect = 0u128;
        for (i, &(start, end)) in ranges.iter().enumerate() {
            if start != expect
                || end < start
                || self.shards[i].shard_id != routing::shard_id(i as u32)
            {
                return Err(bad());
            }
            expect = end.wrapping_add(1);
        }
        if ranges.last().map(|r| r.1) != Some(u128::MAX) {
            return Err(bad());
        }
        Ok(ranges)
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(META_FILE);
        let bytes = fs::read(&path)
            .map_err(|e| StreamError::io(format!("reading {}", path.display()), e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StreamError::Corrupt(format!("{}: {e}", path.display())))
    }

    pub fn store(&self, dir: &Path, fsync: bool) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("stream metadata serializes");
        write_atomic(&dir.join(META_FILE), &json, fsync)
    }
}

/// Stream and consumer names: [a-zA-Z0-9_.-]{1,128}, and not "." or ".." (they are directory
/// names).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(StreamError::InvalidArgument(format!(
            "{what} name {name:?} is invalid: use 1 to 128 characters from [a-zA-Z0-9_.-]"
        )))
    }
}

pub fn validate_shard_count(n: u32) -> Result<()> {
    if (1..=MAX_SHARDS).contains(&n) {
        Ok(())
    } else {
        Err(StreamError::InvalidArgument(format!(
            "shard count {n} is out of range: use 1 to {MAX_SHARDS}"
        )))
    }
}

pub fn validate_retention(hours: u32) -> Result<()> {
    if (MIN_RETENTION_HOURS..=MAX_RETENTION_HOURS).contains(&hours) {
        Ok(())
    } else {
        Err(StreamError::InvalidArgument(format!(
            "retention period {hours} hours is out of range: use {MIN_RETENTION_HOURS} to {MAX_RETENTION_HOURS}"
        )))
    }
}

/// Write to a temporary sibling, fsync it, rename over `path`, fsync the directory: readers see
/// the old or the new content, never a mix, and after a crash one of the two survives.
pub fn write_atomic(path: &Path, bytes: &[u8], fsync: bool) -> Result<()> {
    // Unique per call: two writers of one file must not share a temporary.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
    let io = |what: &str, e| StreamError::io(format!("{what} {}", tmp.display()), e);
    let mut f = File::create(&tmp).map_err(|e| io("creating", e))?;
    f.write_all(bytes).map_err(|e| io("writing", e))?;
    if fsync {
        f.sync_all().map_err(|e| io("syncing", e))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(|e| {
        StreamError::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    if fsync {
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StreamError::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_limits() {
        for ok in ["a", "cam.detections-1_x", &"x".repeat(128)] {
            validate_name("stream", ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(129), "+trash"] {
            assert!(
                matches!(
                    validate_name("stream", bad),
                    Err(StreamError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
        assert!(validate_shard_count(0).is_err() && validate_shard_count(65).is_err());
        validate_shard_count(64).unwrap();
        assert!(validate_retention(23).is_err() && validate_retention(8761).is_err());
        validate_retention(24).unwrap();
    }

    #[test]
    fn meta_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let m = StreamMeta::new("s", 3, 48, 123);
        m.store(dir.path(), true).unwrap();
        let back = StreamMeta::load(dir.path()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.ranges().unwrap(), routing::shard_ranges(3));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }
}
