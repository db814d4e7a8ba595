//! Opaque shard iterators: base64 of (stream, shard, position, issue time, stream creation time)
//! followed by an HMAC-SHA256 tag under a per-data-dir secret. A client cannot forge or alter an
//! iterator (e.g. give it a far-future issue time so that it never expires); anything whose tag
//! does not verify is garbage. The issue time is still checked with checked arithmetic.

use crate::streams::ReadPosition;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How long an iterator stays valid (the real service: 5 minutes).
pub const DEFAULT_TTL_MS: i64 = 300_000;
/// An iterator issued this far "in the future" is accepted (the wall clock may step back a bit
/// between issue and use); beyond it the iterator is refused as invalid.
pub const MAX_CLOCK_SKEW_MS: i64 = 5_000;
const TAG_LEN: usize = 32;
const KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// `VIDGEST_ITERATOR_TTL_MS` shortens the expiry for tests; nothing else should set it.
pub fn ttl_ms() -> i64 {
    std::env::var("VIDGEST_ITERATOR_TTL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TTL_MS)
}

#[derive(Debug, thiserror::Error)]
pub enum IteratorKeyError {
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds {len} bytes, expected {KEY_LEN}: delete it (open shard iterators become invalid) and restart", path.display())]
    BadLength { path: PathBuf, len: usize },
}

/// The secret that signs shard iterators: 32 random bytes, created once per data directory (so
/// iterators survive a restart but not a move to another data directory).
#[derive(Clone)]
pub struct IteratorKey([u8; KEY_LEN]);

impl std::fmt::Debug for IteratorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IteratorKey(..)")
    }
}

impl IteratorKey {
    /// Where the key of `data_dir` lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("api").join("iterator.key")
    }

    /// A fresh random key (tests and in-memory servers).
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Reads `<data_dir>/api/iterator.key`, creating it first when missing.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IteratorKeyError> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => return Self::from_file_bytes(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(IteratorKeyError::Read { path, source }),
        }
        let create = |source| IteratorKeyError::Create {
            path: path.clone(),
            source,
        };
        let dir = path.parent().expect("key path has a parent");
        std::fs::create_dir_all(dir).map_err(create)?;
        // Written in full to a private temporary file, then hard-linked into place: the key file
        // is never seen half-written, and a concurrent creator's key is never replaced (the
        // loser of the race reads the winner's key).
        let tmp = dir.join(format!("iterator.key.tmp-{}", std::process::id()));
        let key = Self::random();
        let written = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&key.0)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(create(e));
        }
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(create)?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(&path).map_err(|source| IteratorKeyError::Read {
                    path: path.clone(),
                    source,
                })?;
                Self::from_file_bytes(&path, &bytes)
            }
            Err(e) => Err(create(e)),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, IteratorKeyError> {
        <[u8; KEY_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| IteratorKeyError::BadLength {
                path: path.to_path_buf(),
                len: bytes.len(),
            })
    }

    fn mac(&self, domain: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(domain);
        mac
    }

    /// `payload` followed by its HMAC-SHA256 tag: the signed-token piece shared by shard
    /// iterators and playback session tokens. `domain` separates the token kinds (a token of one
    /// kind never verifies as another); shard iterators use the empty domain.
    pub fn sign(&self, domain: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut mac = self.mac(domain);
        mac.update(payload);
        let mut out = payload.to_vec();
        out.extend_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// The payload of a `sign`ed token, if its tag verifies under this key and `domain`.
    pub fn verify<'a>(&self, domain: &[u8], signed: &'a [u8]) -> Option<&'a [u8]> {
        let split = signed.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = signed.split_at(split);
        let mut mac = self.mac(domain);
        mac.update(payload);
        // constant-time comparison
        mac.verify_slice(tag).ok()?;
        Some(payload)
    }
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

/// Why a presented iterator cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IteratorAge {
    Fresh,
    /// Older than the TTL: ExpiredIteratorException.
    Expired,
    /// Issued after "now" beyond the tolerated skew (or times that do not subtract): invalid.
    Invalid,
}

impl ShardIterator {
    pub fn encode(&self, key: &IteratorKey) -> String {
        let json = serde_json::to_vec(self).expect("iterator serializes");
        base64::engine::general_purpose::STANDARD.encode(key.sign(b"", &json))
    }

    /// The iterator, if `s` was issued under `key` and not altered since.
    pub fn decode(s: &str, key: &IteratorKey) -> Option<ShardIterator> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        serde_json::from_slice(key.verify(b"", &bytes)?).ok()
    }

    /// Classifies the issue time against `now_ms` and `ttl_ms` without overflowing.
    pub fn age(&self, now_ms: i64, ttl_ms: i64) -> IteratorAge {
        match now_ms.checked_sub(self.issued_ms) {
            None => IteratorAge::Invalid,
            Some(age) if age < -MAX_CLOCK_SKEW_MS => IteratorAge::Invalid,
            Some(age) if age > ttl_ms => IteratorAge::Expired,
            Some(_) => IteratorAge::Fresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000;

    fn iterator() -> ShardIterator {
        ShardIterator {
            stream: "a".repeat(128),
            shard: "shardId-000000000001".into(),
            position: ReadPosition(42),
            issued_ms: NOW,
            stream_created_ns: 1_764_000_000_000_000_000,
        }
    }

    /// What a forger can do without the key: build the payload and append a tag of their own.
    fn forge(it: &ShardIterator, tag: &[u8]) -> String {
        let mut bytes = serde_json::to_vec(it).unwrap();
        bytes.extend_from_slice(tag);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn round_trip_within_512_chars() {
        let key = IteratorKey::random();
        let it = iterator();
        let s = it.encode(&key);
        assert!(s.len() <= 512, "{} chars", s.len());
        assert_eq!(ShardIterator::decode(&s, &key), Some(it));
        assert_eq!(ShardIterator::decode("not an iterator", &key), None);
        assert_eq!(ShardIterator::decode("", &key), None);
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        let key = IteratorKey::random();
        let s = iterator().encode(&key);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&s)
            .unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let bad = base64::engine::general_purpose::STANDARD.encode(bad);
            assert_eq!(ShardIterator::decode(&bad, &key), None, "byte {i} flipped");
        }
    }

    #[test]
    fn forged_far_future_iterator_is_refused() {
        let key = IteratorKey::random();
        let far_future = ShardIterator {
            issued_ms: i64::MAX,
            ..iterator()
        };
        // The old format's integrity check was a CRC that anyone can compute; a tag of zeros or a
        // CRC-sized tag must not verify either.
        let crc = crc32fast::hash(&serde_json::to_vec(&far_future).unwrap()).to_be_bytes();
        for tag in [&[0u8; TAG_LEN][..], &crc[..], &[]] {
            assert_eq!(ShardIterator::decode(&forge(&far_future, tag), &key), None);
        }
        // Even if one were issued with such a time, it is not "fresh forever".
        assert_eq!(far_future.age(NOW, DEFAULT_TTL_MS), IteratorAge::Invalid);
    }

    #[test]
    fn huge_negative_issue_time_does_not_wrap() {
        let it = ShardIterator {
            issued_ms: i64::MIN,
            ..iterator()
        };
        // now - i64::MIN overflows: must be refused, not wrap to a small (fresh) age.
        assert_eq!(it.age(NOW, DEFAULT_TTL_MS), IteratorAge::Invalid);
        let it = ShardIterator {
            issued_ms: i64::MIN / 2,
            ..iterator()
        };
        assert_eq!(it.age(NOW, DEFAULT_TTL_MS), IteratorAge::Expired);
    }

    #[test]
    fn age_boundaries() {
        let it = iterator();
        assert_eq!(it.age(NOW, 1000), IteratorAge::Fresh);
        assert_eq!(it.age(NOW + 1000, 1000), IteratorAge::Fresh);
        assert_eq!(it.age(NOW + 1001, 1000), IteratorAge::Expired);
        assert_eq!(it.age(NOW - MAX_CLOCK_SKEW_MS, 1000), IteratorAge::Fresh);
        assert_eq!(
            it.age(NOW - MAX_CLOCK_SKEW_MS - 1, 1000),
            IteratorAge::Invalid
        );
    }

    #[test]
    fn key_is_created_once_per_data_dir_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let key_a = IteratorKey::load_or_create(a.path()).unwrap();
        let path = IteratorKey::path(a.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
        let s = iterator().encode(&key_a);
        // A restart reads the same key: the iterator stays valid.
        let again = IteratorKey::load_or_create(a.path()).unwrap();
        assert_eq!(ShardIterator::decode(&s, &again), Some(iterator()));
        // Another data dir has its own key: the iterator is garbage there.
        let key_b = IteratorKey::load_or_create(b.path()).unwrap();
        assert_eq!(ShardIterator::decode(&s, &key_b), None);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("iterator.key")]);
    }

    #[test]
    fn truncated_key_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let path = IteratorKey::path(d.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"short").unwrap();
        let e = IteratorKey::load_or_create(d.path()).unwrap_err();
        assert!(
            matches!(e, IteratorKeyError::BadLength { len: 5, .. }),
            "{e}"
        );
    }
}
