//! Object names of delivered batches: `<prefix><delivery>-1-<yyyy-MM-dd-HH-mm-ss>-<batch id><ext>`
//! as Firehose names them, with the batch id (and the prefix's random string) derived from the
//! batch's first record, so that a retried or repeated upload of the same batch overwrites its
//! object instead of adding a duplicate.

use crate::clock::UnixNanos;
use sha2::{Digest, Sha256};

/// The identity of one batch: where its first record sits in the source stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOrigin<'a> {
    pub delivery: &'a str,
    pub shard: &'a str,
    /// The first record's sequence number.
    pub first_sequence: &'a str,
    /// The batch's partition (dynamic partitioning: one batch per partition from the same
    /// records), as the buffer key; not the rendered prefix, which also holds the time.
    pub partition: &'a str,
}

impl BatchOrigin<'_> {
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.delivery,
            self.shard,
            self.first_sequence,
            self.partition,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().into()
    }

    /// A UUID-shaped id (8-4-4-4-12 hex), stable for the batch.
    pub fn batch_id(&self) -> String {
        let hex = hex::encode(&self.digest()[..16]);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    /// The 11 characters of `!{firehose:random-string}`, stable for the batch.
    pub fn random_string(&self) -> String {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let d = self.digest();
        d[16..27]
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect()
    }

    /// The object key: the rendered `prefix`, delivery name, version 1, the oldest arrival
    /// time, batch id and extension (with its dot, e.g. `.jsonl.gz`; empty for none).
    pub fn object_key(&self, prefix: &str, oldest_arrival_ns: UnixNanos, ext: &str) -> String {
        let time = super::prefix::format_timestamp("yyyy-MM-dd-HH-mm-ss", oldest_arrival_ns)
            .expect("a valid constant pattern");
        format!(
            "{}{}-1-{time}-{}{}",
            prefix,
            self.delivery,
            self.batch_id(),
            ext
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin<'a>(seq: &'a str, partition: &'a str) -> BatchOrigin<'a> {
        BatchOrigin {
            delivery: "det",
            shard: "shardId-000000000000",
            first_sequence: seq,
            partition,
        }
    }

    #[test]
    fn keys_are_firehose_shaped_and_stable_per_batch() {
        let a = origin("0000000000000000000000042", "[]");
        let key = a.object_key("det/2026/11/30/18/", 1_796_061_909_042_000_000, ".jsonl.gz");
        assert!(
            key.starts_with("det/2026/11/30/18/det-1-2026-11-30-18-05-09-"),
            "{key}"
        );
        assert!(key.ends_with(".jsonl.gz"));
        let id = a.batch_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        // The same batch again (a retry): the same key and random string.
        assert_eq!(
            a.object_key("det/2026/11/30/18/", 1_796_061_909_042_000_000, ".jsonl.gz"),
            key
        );
        assert_eq!(a.random_string(), a.random_string());
        assert_eq!(a.random_string().len(), 11);
        assert!(a.random_string().chars().all(|c| c.is_ascii_alphanumeric()));
        // Another first record, or another partition of the same records: another object.
        assert_ne!(origin("0000000000000000000000043", "[]").batch_id(), id);
        assert_ne!(
            origin("0000000000000000000000042", r#"["a"]"#).batch_id(),
            id
        );
    }
}
