//! Video store: per camera, a video stream (Kinesis Video's "stream"; `Video*` in code) of
//! fragment bytes appended to segment files, metadata in an SQLite index (WAL, so the CLI reads
//! while the daemon writes).
//!
//! Durability: bytes are written (and fdatasync'ed, per policy) before the index row commits, so a
//! reader never sees an uncommitted fragment; on open, bytes past the last committed row are
//! truncated. Retention deletes index rows first, then whole segment files. Layout and rules:
//! docs/storage.md.

mod control;
mod disk;
mod reader;
mod recovery;
mod retention;
mod schema;
mod writer;

pub use control::{
    ControlError, RetentionChange, RetentionUpdate, MAX_RETENTION_HOURS, MAX_TAGS,
    MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MIN_RETENTION_HOURS,
};
pub use disk::{default_min_free, existing_ancestor, segment_cap, DiskSpace, Statvfs};
pub use reader::{FragmentMeta, InitMeta, StoreReader, StreamDetails, TimeOrigin, VideoSummary};
pub use retention::{DeletedSegment, RetentionReport};
pub use writer::{AppendOutcome, NewFragment, VideoWriter};

use crate::clock::SharedClock;
use crate::config::{Config, FsyncPolicy, OnFull};
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub const INDEX_FILE: &str = "index.sqlite";
pub const SEGMENT_EXT: &str = "m4s";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("video index {path}: {source}")]
    Index {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("video index {path}: {source}")]
    Schema {
        path: PathBuf,
        source: schema::SchemaError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no recordings under {0}: has `vidgest run` started with this data_dir?")]
    NoStore(PathBuf),
    #[error("unknown camera stream `{0}`")]
    UnknownCamera(String),
    #[error("fragment {number} of `{stream}` is no longer stored (deleted by retention?)")]
    FragmentGone { stream: String, number: u64 },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Store-wide policy (from `[storage]`).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub fsync: FsyncPolicy,
    pub max_bytes: Option<u64>,
    /// None: scale with the file system (`default_min_free`).
    pub min_free: Option<u64>,
    pub on_full: OnFull,
    pub segment_duration: Duration,
}

impl StoreOptions {
    pub fn from_config(c: &Config) -> Self {
        Self {
            fsync: c.storage.fsync,
            max_bytes: c.storage.max_bytes.map(|b| b.0),
            min_free: c.storage.min_free.map(|b| b.0),
            on_full: c.storage.on_full,
            segment_duration: c.storage.segment_duration.0,
        }
    }
}

/// Per-video-stream policy (from a `[[camera]]`).
#[derive(Debug, Clone)]
pub struct VideoOptions {
    pub retention: Duration,
    pub max_bytes: Option<u64>,
    pub segment_size: u64,
}

/// Where the video store lives inside `agent.data_dir`.
pub fn video_root(data_dir: &Path) -> PathBuf {
    data_dir.join("video")
}

/// The writable store, shared by the camera writers and the retention task.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    opts: StoreOptions,
    /// Free space kept on the file system (`opts.min_free` or its scaled default).
    min_free: u64,
    /// No segment file grows past this, whatever `segment_size` says (`disk::segment_cap`).
    segment_cap: u64,
    clock: SharedClock,
    disk: Arc<dyn DiskSpace>,
    state: Mutex<State>,
}

/// Everything behind the store lock: the one index connection and the byte accounting that
/// budget checks need on every append.
#[derive(Debug)]
struct State {
    conn: Connection,
    streams: HashMap<String, VideoState>,
}

#[derive(Debug)]
struct VideoState {
    id: i64,
    opts: Option<VideoOptions>,
    usage: u64,
    /// Segment currently appended to by this stream's writer; retention never deletes it.
    open_segment: Option<i64>,
}

impl State {
    fn total_usage(&self) -> u64 {
        self.streams.values().map(|s| s.usage).sum()
    }
}

impl Store {
    /// Opens (creating if needed) the store under `root`, recovering from any crash first.
    pub fn open(
        root: &Path,
        opts: StoreOptions,
        clock: SharedClock,
        disk: Arc<dyn DiskSpace>,
    ) -> Result<Arc<Store>> {
        std::fs::create_dir_all(root).map_err(|e| StoreError::Io {
            what: "cannot create video directory",
            path: root.to_path_buf(),
            source: e,
        })?;
        let db_path = root.join(INDEX_FILE);
        let idx = |e| StoreError::Index {
            path: db_path.clone(),
            source: e,
        };
        let mut conn = Connection::open(&db_path).map_err(idx)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(idx)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(idx)?;
        let sync = match opts.fsync {
            FsyncPolicy::Fragment => "FULL",
            FsyncPolicy::Never => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(idx)?;
        schema::open(&mut conn).map_err(|e| match e {
            schema::SchemaError::Sql(e) => idx(e),
            newer => StoreError::Schema {
                path: db_path.clone(),
                source: newer,
            },
        })?;
        let mut state = State {
            conn,
            streams: HashMap::new(),
        };
        recovery::recover(root, &mut state).map_err(|e| e.at(&db_path))?;
        let (min_free, segment_cap) = match disk.total(root) {
            Ok(total) => {
                let min_free = opts.min_free.unwrap_or(disk::default_min_free(total));
                if min_free >= total {
                    tracing::warn!(
                        "storage.min_free ({}) is not smaller than the whole file system of {} ({}): \
                         retention will delete all video it can and recording will stop",
                        crate::config::format_bytes(min_free),
                        root.display(),
                        crate::config::format_bytes(total)
                    );
                }
                (min_free, disk::segment_cap(total, min_free))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the size of the file system under {}", root.display());
                (opts.min_free.unwrap_or(512 << 20), u64::MAX)
            }
        };
        tracing::debug!(
            min_free,
            segment_cap,
            "video store limits from the file system"
        );
        Ok(Arc::new(Store {
            root: root.to_path_buf(),
            min_free,
            segment_cap,
            opts,
            clock,
            disk,
            state: Mutex::new(state),
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Free disk space retention keeps (configured, or scaled to the file system).
    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Size at which every segment file rolls at the latest (scaled to the file system).
    pub fn segment_cap(&self) -> u64 {
        self.segment_cap
    }

    /// Bytes stored for `stream` (0 if unknown).
    pub fn usage(&self, stream: &str) -> u64 {
        self.lock().streams.get(stream).map_or(0, |s| s.usage)
    }

    pub fn total_usage(&self) -> u64 {
        self.lock().total_usage()
    }

    /// Applies age retention and all byte budgets now.
    pub fn enforce_retention(&self) -> Result<RetentionReport> {
        let free = retention::free_space(self);
        let report = {
            let mut st = self.lock();
            retention::enforce(self, &mut st, free)
                .map_err(|e| e.at(&self.root.join(INDEX_FILE)))?
        };
        report.remove_files();
        Ok(report)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent on-disk state (every change is one
        // transaction), so recover the guard instead of poisoning every camera.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn segment_path(&self, stream: &str, segment_id: i64) -> PathBuf {
        segment_path(&self.root, stream, segment_id)
    }
}

pub(crate) fn segment_path(root: &Path, stream: &str, segment_id: i64) -> PathBuf {
    root.join(stream)
        .join(format!("{segment_id:020}.{SEGMENT_EXT}"))
}

/// Internal error type of the helpers that run under the lock; gets its file path attached by
/// the caller.
#[derive(Debug)]
enum Inner {
    Sql(rusqlite::Error),
    Io(&'static str, PathBuf, std::io::Error),
}

impl From<rusqlite::Error> for Inner {
    fn from(e: rusqlite::Error) -> Self {
        Inner::Sql(e)
    }
}

impl Inner {
    fn at(self, db: &Path) -> StoreError {
        match self {
            Inner::Sql(e) => StoreError::Index {
                path: db.to_path_buf(),
                source: e,
            },
            Inner::Io(what, path, source) => StoreError::Io { what, path, source },
        }
    }
}

#[cfg(test)]
mod tests;
