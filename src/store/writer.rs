//! Appending fragments to one camera's video stream.

use super::{
    retention, segment_path, Inner, Result, State, Store, StoreError, VideoOptions, VideoState,
};
use crate::clock::UnixNanos;
use crate::config::{FsyncPolicy, OnFull};
use crate::media::{fmp4, CodecConfig};
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;
use std::fs::File;
use std::io::IoSlice;
use std::path::PathBuf;
use std::sync::Arc;

/// One key-frame-aligned fragment, ready to store.
#[derive(Debug)]
pub struct NewFragment<'a> {
    pub codec: &'a CodecConfig,
    /// Producer time of the first sample.
    pub producer_ns: UnixNanos,
    pub duration_ns: i64,
    pub discontinuity: bool,
    pub sample_count: u32,
    /// moof + mdat, built with `next_fragment_number()` as its sequence number, in parts that
    /// are written one after the other (e.g. `fmp4::fragment_head` and each sample's data).
    pub parts: &'a [&'a [u8]],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Stored {
        fragment_number: u64,
        server_ns: UnixNanos,
    },
    /// `deny_new` policy and no room: nothing was written.
    Refused { reason: String },
}

/// The only writer of one video stream; dropping it closes its open segment.
#[derive(Debug)]
pub struct VideoWriter {
    store: Arc<Store>,
    name: String,
    id: i64,
    opts: VideoOptions,
    next_number: u64,
    last_end_ns: Option<UnixNanos>,
    inits: HashMap<String, i64>,
    segment: Option<OpenSegment>,
}

#[derive(Debug)]
struct OpenSegment {
    id: i64,
    file: File,
    path: PathBuf,
    len: u64,
    created_ns: UnixNanos,
}

impl Store {
    /// Registers (or reopens) the video stream of camera `name` and returns its writer.
    pub fn open_video(self: &Arc<Self>, name: &str, opts: VideoOptions) -> Result<VideoWriter> {
        let db = self.root.join(super::INDEX_FILE);
        let mut st = self.lock();
        let (id, next_number, last_end_ns) = open_stream_row(&mut st, name, self.clock.now_ns())
            .map_err(|e| Inner::from(e).at(&db))?;
        let effective = super::control::apply_config(&mut st, id, name, &opts)
            .map_err(|e| Inner::from(e).at(&db))?;
        let entry = st.streams.entry(name.to_string()).or_insert(VideoState {
            id,
            opts: None,
            usage: 0,
            open_segment: None,
        });
        entry.opts = Some(effective);
        drop(st);
        Ok(VideoWriter {
            store: self.clone(),
            name: name.to_string(),
            id,
            opts,
            next_number,
            last_end_ns,
            inits: HashMap::new(),
            segment: None,
        })
    }
}

impl Store {
    /// Retention and budget for a stream that is not being written now (a disabled camera),
    /// so its old video still ages out. Persisted, like a writer's options; a retention set
    /// through the API still applies while the config says what it overrode (`control`).
    pub fn set_video_options(&self, name: &str, opts: VideoOptions) {
        let mut st = self.lock();
        let Some(id) = st.streams.get(name).map(|s| s.id) else {
            return;
        };
        match super::control::apply_config(&mut st, id, name, &opts) {
            Ok(effective) => {
                if let Some(s) = st.streams.get_mut(name) {
                    s.opts = Some(effective);
                }
            }
            Err(e) => {
                tracing::warn!(camera = name, error = %e, "cannot persist the camera's retention");
                if let Some(s) = st.streams.get_mut(name) {
                    s.opts = Some(opts);
                }
            }
        }
    }
}

fn open_stream_row(
    st: &mut State,
    name: &str,
    now: UnixNanos,
) -> rusqlite::Result<(i64, u64, Option<UnixNanos>)> {
    st.conn.execute(
        "INSERT OR IGNORE INTO streams (name, created_ns) VALUES (?1, ?2)",
        params![name, now],
    )?;
    let (id, next): (i64, i64) = st.conn.query_row(
        "SELECT id, next_fragment_number FROM streams WHERE name = ?1",
        [name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let last_end = st
        .conn
        .query_row(
            "SELECT producer_ns + duration_ns FROM fragments WHERE stream_id = ?1
             ORDER BY fragment_number DESC LIMIT 1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    Ok((id, next as u64, last_end))
}

impl VideoWriter {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number the next stored fragment gets (also its moof sequence number).
    pub fn next_fragment_number(&self) -> u64 {
        self.next_number
    }

    /// Producer end time of the last stored fragment, for discontinuity detection.
    pub fn last_fragment_end(&self) -> Option<UnixNanos> {
        self.last_end_ns
    }

    /// Stores one fragment: bytes durable first (per fsync policy), then the index row.
    pub fn append(&mut self, f: &NewFragment) -> Result<AppendOutcome> {
        let store = self.store.clone();
        let db = store.root.join(super::INDEX_FILE);
        let len = f.parts.iter().map(|p| p.len() as u64).sum::<u64>();
        // statvfs outside the lock (see retention's module doc).
        let free = retention::free_space(&store);
        let (init_id, deleted) = {
            let mut st = store.lock();
            let deleted = if store.opts.on_full == OnFull::DenyNew {
                if let Some(reason) = retention::refusal(&store, &st, &self.name, len, free) {
                    return Ok(AppendOutcome::Refused { reason });
                }
                retention::RetentionReport::default()
            } else {
                retention::enforce_for(&store, &mut st, Some(&self.name), len, free)
                    .map_err(|e| e.at(&db))?
            };
            self.roll_segment_if_due(&mut st, len)
                .map_err(|e| e.at(&db))?;
            (self.init_id(&st, f.codec).map_err(|e| e.at(&db))?, deleted)
        };
        deleted.remove_files();

        let seg = self.segment.as_mut().expect("segment opened above");
        // Positional write: a failed partial write leaves no cursor drift for the next append.
        let written =
            write_all_at(&seg.file, f.parts, seg.len).and_then(|_| match store.opts.fsync {
                FsyncPolicy::Fragment => seg.file.sync_data(),
                FsyncPolicy::Never => Ok(()),
            });
        if let Err(e) = written {
            // Leave no partial bytes behind so later appends stay aligned with the index.
            let _ = seg.file.set_len(seg.len);
            return Err(StoreError::Io {
                what: "cannot write fragment to segment",
                path: seg.path.clone(),
                source: e,
            });
        }

        let number = self.next_number;
        let server_ns = store.clock.now_ns();
        let offset = seg.len;
        {
            let mut st = store.lock();
            commit_fragment(
                &st, self.id, seg.id, number, offset, len, server_ns, init_id, f,
            )
            .map_err(|e| Inner::from(e).at(&db))?;
            if let Some(s) = st.streams.get_mut(&self.name) {
                s.usage += len;
            }
        }
        seg.len += len;
        self.next_number += 1;
        self.last_end_ns = Some(f.producer_ns + f.duration_ns);
        Ok(AppendOutcome::Stored {
            fragment_number: number,
            server_ns,
        })
    }

    fn roll_segment_if_due(
        &mut self,
        st: &mut State,
        incoming: u64,
    ) -> std::result::Result<(), Inner> {
        let now = self.store.clock.now_ns();
        let due = match &self.segment {
            None => true,
            Some(s) => {
                (s.len > 0 && s.len + incoming > self.opts.segment_size.min(self.store.segment_cap))
                    || now - s.created_ns > self.store.opts.segment_duration.as_nanos() as i64
            }
        };
        if !due {
            return Ok(());
        }
        self.close_segment(st)?;
        st.conn.execute(
            "INSERT INTO segments (stream_id, created_ns) VALUES (?1, ?2)",
            params![self.id, now],
        )?;
        let id = st.conn.last_insert_rowid();
        let path = segment_path(&self.store.root, &self.name, id);
        let dir = path
            .parent()
            .expect("segment has a parent dir")
            .to_path_buf();
        let file = std::fs::create_dir_all(&dir)
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)
            })
            .map_err(|e| Inner::Io("cannot create segment", path.clone(), e))?;
        if self.store.opts.fsync == FsyncPolicy::Fragment {
            // Make the new directory entry durable too.
            let _ = File::open(&dir).and_then(|d| d.sync_all());
        }
        if let Some(s) = st.streams.get_mut(&self.name) {
            s.open_segment = Some(id);
        }
        self.segment = Some(OpenSegment {
            id,
            file,
            path,
            len: 0,
            created_ns: now,
        });
        Ok(())
    }

    fn close_segment(&mut self, st: &mut State) -> std::result::Result<(), Inner> {
        if let Some(seg) = self.segment.take() {
            if seg.len == 0 {
                st.conn
                    .execute("DELETE FROM segments WHERE id = ?1", [seg.id])?;
                let _ = std::fs::remove_file(&seg.path);
            } else {
                st.conn
                    .execute("UPDATE segments SET closed = 1 WHERE id = ?1", [seg.id])?;
            }
            if let Some(s) = st.streams.get_mut(&self.name) {
                s.open_segment = None;
            }
        }
        Ok(())
    }

    fn init_id(&mut self, st: &State, codec: &CodecConfig) -> std::result::Result<i64, Inner> {
        let key = codec.id();
        if let Some(id) = self.inits.get(&key) {
            return Ok(*id);
        }
        let existing: Option<i64> = st
            .conn
            .query_row(
                "SELECT id FROM inits WHERE stream_id = ?1 AND config_id = ?2",
                params![self.id, key],
                |r| r.get(0),
            )
            .optional()?;
        let id = match existing {
            Some(id) => id,
            None => {
                let data = fmp4::init_segment(codec).map_err(|e| {
                    Inner::Io(
                        "cannot build init segment",
                        PathBuf::from(&self.name),
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                    )
                })?;
                st.conn.execute(
                    "INSERT INTO inits (stream_id, config_id, codec, codec_string, width, height, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        self.id,
                        key,
                        format!("{:?}", codec.codec).to_lowercase(),
                        codec.rfc6381(),
                        codec.width,
                        codec.height,
                        data
                    ],
                )?;
                st.conn.last_insert_rowid()
            }
        };
        self.inits.insert(key, id);
        Ok(id)
    }
}

#[allow(clippy::too_many_arguments)]
fn commit_fragment(
    st: &State,
    stream_id: i64,
    segment_id: i64,
    number: u64,
    offset: u64,
    len: u64,
    server_ns: UnixNanos,
    init_id: i64,
    f: &NewFragment,
) -> rusqlite::Result<()> {
    let tx = st.conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO fragments (stream_id, fragment_number, segment_id, offset, size, producer_ns,
           server_ns, duration_ns, init_id, discontinuity, sample_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            stream_id,
            number as i64,
            segment_id,
            offset as i64,
            len as i64,
            f.producer_ns,
            server_ns,
            f.duration_ns,
            init_id,
            f.discontinuity,
            f.sample_count
        ],
    )?;
    tx.execute(
        "UPDATE segments SET bytes = bytes + ?2, fragment_count = fragment_count + 1,
           first_producer_ns = COALESCE(first_producer_ns, ?3), last_producer_end_ns = ?4,
           last_server_ns = ?5
         WHERE id = ?1",
        params![
            segment_id,
            len as i64,
            f.producer_ns,
            f.producer_ns + f.duration_ns,
            server_ns
        ],
    )?;
    tx.execute(
        "UPDATE streams SET next_fragment_number = ?2 WHERE id = ?1",
        params![stream_id, number as i64 + 1],
    )?;
    tx.commit()
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        let store = self.store.clone();
        let mut st = store.lock();
        if let Err(e) = self.close_segment(&mut st) {
            tracing::warn!(camera = %self.name, error = ?e, "could not close segment cleanly; recovery will on next start");
        }
    }
}

/// Writes `parts` one after the other at `offset`: `pwritev` in a loop (partial writes, at most
/// IOV_MAX slices a call). std's `write_all_vectored` has no positional form.
fn write_all_at(file: &File, parts: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    for chunk in parts.chunks(IOV_MAX) {
        let mut slices: Vec<IoSlice> = chunk.iter().map(|p| IoSlice::new(p)).collect();
        let mut bufs = &mut slices[..];
        IoSlice::advance_slices(&mut bufs, 0); // skips empty parts
        while !bufs.is_empty() {
            let n = rustix::io::pwritev(file, bufs, offset)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            offset += n as u64;
            IoSlice::advance_slices(&mut bufs, n);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn parts_are_written_in_order_at_the_offset() {
        let mut file = tempfile::tempfile().unwrap();
        // Empty parts, and more parts than one pwritev takes.
        let many: Vec<Vec<u8>> = (0..2500u32)
            .map(|i| vec![(i % 251) as u8; (i % 3) as usize])
            .collect();
        let parts: Vec<&[u8]> = std::iter::once(&b""[..])
            .chain(std::iter::once(&b"head"[..]))
            .chain(many.iter().map(|p| &p[..]))
            .collect();
        write_all_at(&file, &parts, 3).unwrap();
        let mut got = Vec::new();
        file.read_to_end(&mut got).unwrap();
        assert_eq!(&got[..3], &[0, 0, 0]);
        assert_eq!(got[3..], parts.concat());
    }
}
