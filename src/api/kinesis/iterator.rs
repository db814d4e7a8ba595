//! Opaque shard iterators: base64 of (stream, shard, position, issue time, stream creation time)
//! with a CRC so that garbage is told apart from expired or stale iterators.

use crate::streams::ReadPosition;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// How long an iterator stays valid (the real service: 5 minutes).
pub const DEFAULT_TTL_MS: i64 = 300_000;

/// `VIDGEST_ITERATOR_TTL_MS` shortens the expiry for tests; nothing else should set it.
pub fn ttl_ms() -> i64 {
    std::env::var("VIDGEST_ITERATOR_TTL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TTL_MS)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIterator {
    #[serde(rename = "s")]
    pub stream: String,
    #[serde(rename = "h")]
    pub shard: String,
    #[serde(rename = "p")]
    pub position: ReadPosition,
    /// Issue time, Unix ms.
    #[serde(rename = "t")]
    pub issued_ms: i64,
    /// Creation time of the stream, so an iterator does not survive delete + re-create.
    #[serde(rename = "c")]
    pub stream_created_ns: i64,
}

impl ShardIterator {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("iterator serializes");
        let mut bytes = crc32fast::hash(&json).to_be_bytes().to_vec();
        bytes.extend(json);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub fn decode(s: &str) -> Option<ShardIterator> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        if bytes.len() < 4 {
            return None;
        }
        let (crc, json) = bytes.split_at(4);
        if crc32fast::hash(json).to_be_bytes() != crc {
            return None;
        }
        serde_json::from_slice(json).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let it = ShardIterator {
            stream: "a".repeat(128),
            shard: "shardId-000000000001".into(),
            position: ReadPosition(42),
            issued_ms: 1_764_000_000_000,
            stream_created_ns: 1_764_000_000_000_000_000,
        };
        let s = it.encode();
        assert!(s.len() <= 512, "{} chars", s.len());
        assert_eq!(ShardIterator::decode(&s), Some(it));
        let mut bad = s.into_bytes();
        bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            ShardIterator::decode(&String::from_utf8(bad).unwrap()),
            None
        );
        assert_eq!(ShardIterator::decode("not an iterator"), None);
    }
}
