//! Start-up recovery: make the segment files agree with the index after any crash.
//!
//! - A segment still marked open was being appended to: bytes past its last committed fragment
//!   are truncated (the fragment in progress is lost, nothing else); an open segment with no
//!   committed fragment is removed. Every recovered segment is closed: writers start new ones.
//! - Segment files with no index row (retention deletes rows first, then files) are removed.
//! - Index rows whose file vanished are dropped with a warning.

use super::{segment_path, Inner, State, VideoState, SEGMENT_EXT};
use rusqlite::params;
use std::collections::HashSet;
use std::path::Path;

pub(super) fn recover(root: &Path, st: &mut State) -> Result<(), Inner> {
    type Row = (i64, String, Option<i64>, Option<i64>);
    let streams: Vec<Row> = {
        let mut q = st
            .conn
            .prepare(
                "SELECT id, name, COALESCE(retention_override_ns, retention_ns), max_bytes FROM streams",
            )?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, name, retention_ns, max_bytes) in &streams {
        recover_open_segments(root, st, *id, name)?;
        drop_missing_files(root, st, *id, name)?;
        remove_orphan_files(root, st, *id, name)?;
        let usage: i64 = st.conn.query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE stream_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        st.streams.insert(
            name.clone(),
            VideoState {
                id: *id,
                // The last configured retention (or the API's override of it), until a writer (or `set_video_options`) says
                // otherwise: a camera removed from the config still ages out.
                opts: retention_ns.map(|r| super::VideoOptions {
                    retention: std::time::Duration::from_nanos(r.max(0) as u64),
                    max_bytes: max_bytes.map(|b| b.max(0) as u64),
                    segment_size: u64::MAX,
                }),
                usage: usage as u64,
                open_segment: None,
            },
        );
    }
    Ok(())
}

fn recover_open_segments(root: &Path, st: &State, stream_id: i64, name: &str) -> Result<(), Inner> {
    let open: Vec<(i64, Option<i64>)> = {
        let mut q = st.conn.prepare(
            "SELECT s.id, (SELECT MAX(offset + size) FROM fragments f WHERE f.segment_id = s.id)
             FROM segments s WHERE s.stream_id = ?1 AND s.closed = 0",
        )?;
        let rows = q.query_map([stream_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (seg, committed_end) in open {
        let path = segment_path(root, name, seg);
        let on_disk = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match committed_end {
            None => {
                st.conn
                    .execute("DELETE FROM segments WHERE id = ?1", [seg])?;
                remove_file(&path)?;
                if on_disk > 0 {
                    tracing::warn!(camera = name, segment = seg, bytes = on_disk,
                        "recovery: removed a segment with no committed fragment (fragment in progress at shutdown)");
                }
            }
            Some(end) => {
                let end = end as u64;
                if on_disk > end {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| {
                            Inner::Io("cannot open segment for recovery", path.clone(), e)
                        })?;
                    f.set_len(end)
                        .and_then(|_| f.sync_all())
                        .map_err(|e| Inner::Io("cannot truncate segment", path.clone(), e))?;
                    tracing::warn!(
                        camera = name,
                        segment = seg,
                        truncated_bytes = on_disk - end,
                        "recovery: truncated uncommitted bytes after the last committed fragment"
                    );
                } else if on_disk < end {
                    tracing::error!(camera = name, segment = seg, on_disk, expected = end,
                        "recovery: segment file is shorter than its index says; fragments past the end will fail to read");
                }
                st.conn
                    .execute("UPDATE segments SET closed = 1 WHERE id = ?1", [seg])?;
            }
        }
    }
    Ok(())
}

fn drop_missing_files(root: &Path, st: &State, stream_id: i64, name: &str) -> Result<(), Inner> {
    let ids: Vec<i64> = {
        let mut q = st
            .conn
            .prepare("SELECT id FROM segments WHERE stream_id = ?1")?;
        let rows = q.query_map([stream_id], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for seg in ids {
        if !segment_path(root, name, seg).exists() {
            let tx = st.conn.unchecked_transaction()?;
            let n = tx.execute("DELETE FROM fragments WHERE segment_id = ?1", [seg])?;
            tx.execute("DELETE FROM segments WHERE id = ?1", params![seg])?;
            tx.commit()?;
            tracing::warn!(
                camera = name,
                segment = seg,
                fragments = n,
                "recovery: segment file is missing; dropped its index rows"
            );
        }
    }
    Ok(())
}

fn remove_orphan_files(root: &Path, st: &State, stream_id: i64, name: &str) -> Result<(), Inner> {
    let dir = root.join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let known: HashSet<i64> = {
        let mut q = st
            .conn
            .prepare("SELECT id FROM segments WHERE stream_id = ?1")?;
        let rows = q.query_map([stream_id], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
            continue;
        }
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<i64>().ok());
        if id.is_some_and(|id| !known.contains(&id)) {
            remove_file(&path)?;
            tracing::info!(camera = name, file = %path.display(),
                "recovery: removed a segment file with no index rows (deleted by retention before a crash)");
        }
    }
    Ok(())
}

pub(super) fn remove_file(path: &Path) -> Result<(), Inner> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Inner::Io("cannot delete segment", path.to_path_buf(), e)),
    }
}
