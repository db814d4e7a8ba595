//! Read access to the store, usable from other processes (the CLI) while the daemon writes.

use super::{segment_path, Result, StoreError, INDEX_FILE};
use crate::clock::UnixNanos;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FragmentMeta {
    pub stream: String,
    pub fragment_number: u64,
    pub producer_ns: UnixNanos,
    pub server_ns: UnixNanos,
    pub duration_ns: i64,
    pub size: u64,
    pub init_id: i64,
    pub discontinuity: bool,
    pub sample_count: u32,
    #[serde(skip)]
    pub(crate) segment_id: i64,
    #[serde(skip)]
    pub(crate) offset: u64,
}

impl FragmentMeta {
    pub fn producer_end_ns(&self) -> UnixNanos {
        self.producer_ns + self.duration_ns
    }
}

#[derive(Debug, Clone)]
pub struct InitMeta {
    pub id: i64,
    pub codec: String,
    pub codec_string: String,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VideoSummary {
    pub name: String,
    pub fragments: u64,
    pub bytes: u64,
    pub first_producer_ns: Option<UnixNanos>,
    pub last_producer_end_ns: Option<UnixNanos>,
}

/// A stream's identity and policy as the index records them (control-plane APIs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDetails {
    pub name: String,
    pub created_ns: UnixNanos,
    /// The retention in force: set through the API (`retention_overridden`), else the camera's
    /// when it was last configured (None: never configured).
    pub retention_ns: Option<i64>,
    pub retention_overridden: bool,
    /// Counts retention changes (DescribeStream's Version).
    pub version: i64,
    /// Codec of the newest init segment ("h264" / "h265"), None before the first fragment.
    pub codec: Option<String>,
}

/// Which timestamp a fragment range query selects on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOrigin {
    Producer,
    Server,
}

impl TimeOrigin {
    /// The fragments table's column of this clock.
    fn column(self) -> &'static str {
        match self {
            TimeOrigin::Producer => "producer_ns",
            TimeOrigin::Server => "server_ns",
        }
    }
}

pub struct StoreReader {
    root: PathBuf,
    conn: Connection,
}

const FRAGMENT_COLS: &str = "fragment_number, producer_ns, server_ns, duration_ns, size, init_id,
    discontinuity, sample_count, segment_id, offset";

fn init_row(r: &Row) -> rusqlite::Result<InitMeta> {
    Ok(InitMeta {
        id: r.get(0)?,
        codec: r.get(1)?,
        codec_string: r.get(2)?,
        width: r.get(3)?,
        height: r.get(4)?,
        data: r.get(5)?,
    })
}

fn fragment_row(stream: &str, r: &Row) -> rusqlite::Result<FragmentMeta> {
    Ok(FragmentMeta {
        stream: stream.to_string(),
        fragment_number: r.get::<_, i64>(0)? as u64,
        producer_ns: r.get(1)?,
        server_ns: r.get(2)?,
        duration_ns: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        init_id: r.get(5)?,
        discontinuity: r.get(6)?,
        sample_count: r.get(7)?,
        segment_id: r.get(8)?,
        offset: r.get::<_, i64>(9)? as u64,
    })
}

impl StoreReader {
    /// Opens the store under `root` (`<data_dir>/video`) for reading.
    pub fn open(root: &Path) -> Result<StoreReader> {
        let db = root.join(INDEX_FILE);
        if !db.exists() {
            return Err(StoreError::NoStore(root.to_path_buf()));
        }
        let conn = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.busy_timeout(Duration::from_secs(10)).map(|_| c))
        .map_err(|e| StoreError::Index {
            path: db,
            source: e,
        })?;
        Ok(StoreReader {
            root: root.to_path_buf(),
            conn,
        })
    }

    fn idx(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Index {
            path: self.root.join(INDEX_FILE),
            source: e,
        }
    }

    fn stream_id(&self, stream: &str) -> Result<i64> {
        self.conn
            .query_row("SELECT id FROM streams WHERE name = ?1", [stream], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.idx(e))?
            .ok_or_else(|| StoreError::UnknownCamera(stream.to_string()))
    }

    pub fn streams(&self) -> Result<Vec<VideoSummary>> {
        let mut q = self
            .conn
            .prepare(
                "SELECT s.name, COALESCE(SUM(g.fragment_count), 0), COALESCE(SUM(g.bytes), 0),
                        MIN(g.first_producer_ns), MAX(g.last_producer_end_ns)
                 FROM streams s LEFT JOIN segments g ON g.stream_id = s.id
                 GROUP BY s.id ORDER BY s.name",
            )
            .map_err(|e| self.idx(e))?;
        let rows = q
            .query_map([], |r| {
                Ok(VideoSummary {
                    name: r.get(0)?,
                    fragments: r.get::<_, i64>(1)? as u64,
                    bytes: r.get::<_, i64>(2)? as u64,
                    first_producer_ns: r.get(3)?,
                    last_producer_end_ns: r.get(4)?,
                })
            })
            .map_err(|e| self.idx(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.idx(e))
    }

    /// Fragments whose producer start time is in `[start, end]`, oldest first (at most `limit`).
    pub fn fragments(
        &self,
        stream: &str,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        limit: usize,
    ) -> Result<Vec<FragmentMeta>> {
        let id = self.stream_id(stream)?;
        self.fragment_list(
            stream,
            &format!(
                "SELECT {FRAGMENT_COLS} FROM fragments WHERE stream_id = ?1
                   AND producer_ns >= ?2 AND producer_ns <= ?3
                 ORDER BY fragment_number LIMIT ?4"
            ),
            params![
                id,
                start.unwrap_or(i64::MIN),
                end.unwrap_or(i64::MAX),
                limit.min(i64::MAX as usize) as i64
            ],
        )
    }

    /// Fragments overlapping `[start, end]` (including one that began before `start`), for clips.
    pub fn fragments_overlapping(
        &self,
        stream: &str,
        start: UnixNanos,
        end: UnixNanos,
    ) -> Result<Vec<FragmentMeta>> {
        let id = self.stream_id(stream)?;
        self.fragment_list(
            stream,
            &format!(
                "SELECT {FRAGMENT_COLS} FROM fragments WHERE stream_id = ?1
                   AND producer_ns <= ?3 AND producer_ns + duration_ns > ?2
                 ORDER BY fragment_number"
            ),
            params![id, start, end],
        )
    }

    /// The fragments of `stream` a `SELECT {FRAGMENT_COLS}` query returns, in its order.
    fn fragment_list(
        &self,
        stream: &str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<FragmentMeta>> {
        let mut q = self.conn.prepare(sql).map_err(|e| self.idx(e))?;
        let rows = q
            .query_map(params, |r| fragment_row(stream, r))
            .map_err(|e| self.idx(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.idx(e))
    }

    /// Identity, creation time, retention and codec of one stream.
    pub fn stream_details(&self, stream: &str) -> Result<StreamDetails> {
        self.conn
            .query_row(
                "SELECT s.name, s.created_ns, COALESCE(s.retention_override_ns, s.retention_ns),
                        (SELECT codec FROM inits WHERE stream_id = s.id ORDER BY id DESC LIMIT 1),
                        s.retention_override_ns IS NOT NULL, s.version
                 FROM streams s WHERE s.name = ?1",
                [stream],
                |r| {
                    Ok(StreamDetails {
                        name: r.get(0)?,
                        created_ns: r.get(1)?,
                        retention_ns: r.get(2)?,
                        codec: r.get(3)?,
                        retention_overridden: r.get(4)?,
                        version: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.idx(e))?
            .ok_or_else(|| StoreError::UnknownCamera(stream.to_string()))
    }

    /// The tags of one stream, by key.
    pub fn stream_tags(&self, stream: &str) -> Result<Vec<(String, String)>> {
        let id = self.stream_id(stream)?;
        let mut q = self
            .conn
            .prepare("SELECT key, value FROM stream_tags WHERE stream_id = ?1 ORDER BY key")
            .map_err(|e| self.idx(e))?;
        let rows = q
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.idx(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.idx(e))
    }

    /// Fragments whose `origin` start time is in `[start, end]` and whose number is above
    /// `after`, in fragment-number order (at most `limit`): pages of a range listing.
    pub fn fragments_between(
        &self,
        stream: &str,
        origin: TimeOrigin,
        start: UnixNanos,
        end: UnixNanos,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<FragmentMeta>> {
        let id = self.stream_id(stream)?;
        let column = origin.column();
        self.fragment_list(
            stream,
            &format!(
                "SELECT {FRAGMENT_COLS} FROM fragments WHERE stream_id = ?1
                   AND {column} >= ?2 AND {column} <= ?3 AND fragment_number > ?4
                 ORDER BY fragment_number LIMIT ?5"
            ),
            params![
                id,
                start,
                end,
                after.map_or(-1, |n| n.min(i64::MAX as u64) as i64),
                limit.min(i64::MAX as usize) as i64
            ],
        )
    }

    pub fn fragment(&self, stream: &str, number: u64) -> Result<Option<FragmentMeta>> {
        let id = self.stream_id(stream)?;
        self.conn
            .query_row(
                &format!("SELECT {FRAGMENT_COLS} FROM fragments WHERE stream_id = ?1 AND fragment_number = ?2"),
                params![id, number as i64],
                |r| fragment_row(stream, r),
            )
            .optional()
            .map_err(|e| self.idx(e))
    }

    /// The stream's newest fragment (highest number), if any.
    pub fn last_fragment(&self, stream: &str) -> Result<Option<FragmentMeta>> {
        let id = self.stream_id(stream)?;
        self.conn
            .query_row(
                &format!("SELECT {FRAGMENT_COLS} FROM fragments WHERE stream_id = ?1 ORDER BY fragment_number DESC LIMIT 1"),
                [id],
                |r| fragment_row(stream, r),
            )
            .optional()
            .map_err(|e| self.idx(e))
    }

    pub fn init(&self, init_id: i64) -> Result<InitMeta> {
        self.conn
            .query_row(
                "SELECT id, codec, codec_string, width, height, data FROM inits WHERE id = ?1",
                [init_id],
                init_row,
            )
            .map_err(|e| self.idx(e))
    }

    /// The newest `limit` fragments whose `origin` start time is in `[start, end]`, oldest
    /// first (live playlists' sliding windows).
    pub fn last_fragments_between(
        &self,
        stream: &str,
        origin: TimeOrigin,
        start: UnixNanos,
        end: UnixNanos,
        limit: usize,
    ) -> Result<Vec<FragmentMeta>> {
        let id = self.stream_id(stream)?;
        let column = origin.column();
        let mut out = self.fragment_list(
            stream,
            &format!(
                "SELECT {FRAGMENT_COLS} FROM fragments WHERE stream_id = ?1
                   AND {column} >= ?2 AND {column} <= ?3
                 ORDER BY fragment_number DESC LIMIT ?4"
            ),
            params![id, start, end, limit.min(i64::MAX as usize) as i64],
        )?;
        out.reverse();
        Ok(out)
    }

    /// How many fragments are numbered in `(after, upto]`; only those starting a discontinuity
    /// when `discontinuities` (live playlists' EXT-X-DISCONTINUITY-SEQUENCE).
    pub fn count_fragments(
        &self,
        stream: &str,
        after: u64,
        upto: u64,
        discontinuities: bool,
    ) -> Result<u64> {
        let id = self.stream_id(stream)?;
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM fragments WHERE stream_id = ?1
                   AND fragment_number > ?2 AND fragment_number <= ?3
                   AND (discontinuity OR NOT ?4)",
                params![
                    id,
                    after.min(i64::MAX as u64) as i64,
                    upto.min(i64::MAX as u64) as i64,
                    discontinuities
                ],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.idx(e))
    }

    /// An init segment of `stream` (None when the id is not one of this stream's).
    pub fn stream_init(&self, stream: &str, init_id: i64) -> Result<Option<InitMeta>> {
        let id = self.stream_id(stream)?;
        self.conn
            .query_row(
                "SELECT id, codec, codec_string, width, height, data FROM inits
                 WHERE id = ?1 AND stream_id = ?2",
                [init_id, id],
                init_row,
            )
            .optional()
            .map_err(|e| self.idx(e))
    }

    /// The moof + mdat bytes of a fragment.
    pub fn read_fragment(&self, f: &FragmentMeta) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(f.size as usize);
        let path = segment_path(&self.root, &f.stream, f.segment_id);
        self.open_fragment(f)?
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::Io {
                what: "cannot read fragment from segment",
                path: path.clone(),
                source: e,
            })?;
        if buf.len() as u64 != f.size {
            return Err(StoreError::Io {
                what: "cannot read fragment from segment",
                path,
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        Ok(buf)
    }

    /// A reader of the fragment's moof + mdat bytes straight from its segment file (playback
    /// streams them without holding a fragment in memory). The segment may be deleted by
    /// retention at any time: an open reader keeps reading it, a later open gets FragmentGone.
    pub fn open_fragment(&self, f: &FragmentMeta) -> Result<std::io::Take<std::fs::File>> {
        let path = segment_path(&self.root, &f.stream, f.segment_id);
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::FragmentGone {
                    stream: f.stream.clone(),
                    number: f.fragment_number,
                })
            }
            Err(e) => {
                return Err(StoreError::Io {
                    what: "cannot open segment",
                    path,
                    source: e,
                })
            }
        };
        file.seek(SeekFrom::Start(f.offset))
            .map_err(|e| StoreError::Io {
                what: "cannot seek to fragment in segment",
                path,
                source: e,
            })?;
        Ok(file.take(f.size))
    }
}
