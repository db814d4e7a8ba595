//! Kinesis routing and naming: MD5 hash keys, even hash-range split, shard ids and sequence
//! numbers.

use md5::{Digest, Md5};

/// MD5 of the UTF-8 partition key read as a big-endian 128-bit integer (what Kinesis does).
pub fn hash_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// Inclusive hash ranges of `shard_count` shards splitting 0..=u128::MAX evenly, as Kinesis does
/// for CreateStream: shard i starts at i * floor(2^128 / n), the last one ends at 2^128 - 1.
pub fn shard_ranges(shard_count: u32) -> Vec<(u128, u128)> {
    let n = u128::from(shard_count.max(1));
    if n == 1 {
        return vec![(0, u128::MAX)];
    }
    // floor(2^128 / n) without overflowing: floor((2^128 - 1) / n), plus one when n divides 2^128.
    let step = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    (0..n)
        .map(|i| {
            let start = i * step;
            let end = if i + 1 == n {
                u128::MAX
            } else {
                (i + 1) * step - 1
            };
            (start, end)
        })
        .collect()
}

/// Index of the range holding `hash` (ranges sorted, contiguous, covering the whole space).
pub(crate) fn route(ranges: &[(u128, u128)], hash: u128) -> usize {
    ranges
        .partition_point(|&(start, _)| start <= hash)
        .saturating_sub(1)
}

/// `shardId-000000000000` style id.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Shard index from a shard id (`shardId-` + 12 digits).
pub fn parse_shard_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix("shardId-")?;
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Digits of a sequence number: "1", the shard index (4 digits), the per-shard offset (20
/// digits). Fixed width, so numeric and lexicographic order agree, and no leading zero.
pub const SEQUENCE_DIGITS: usize = 25;

pub fn sequence_number(shard_index: u32, offset: u64) -> String {
    // Hand-rolled: called once per record put or read, and `format!` padding is slow.
    let mut digits = [b'0'; SEQUENCE_DIGITS];
    digits[0] = b'1';
    let mut put = |mut v: u64, end: usize, width: usize| {
        for d in digits[end - width..end].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(u64::from(shard_index % 10_000), 5, 4);
    put(offset, SEQUENCE_DIGITS, 20);
    String::from_utf8(digits.to_vec()).expect("ASCII digits")
}

/// (shard index, offset) of a sequence number issued by this store, None if malformed.
pub fn parse_sequence_number(seq: &str) -> Option<(u32, u64)> {
    if seq.len() != SEQUENCE_DIGITS
        || !seq.starts_with('1')
        || !seq.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let shard = seq[1..5].parse().ok()?;
    let offset = seq[5..].parse().ok()?;
    Some((shard, offset))
}
