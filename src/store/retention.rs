//! Retention: age per stream, byte budgets per stream and global, minimum free disk, and the
//! on-full policy. Deletions are whole closed segments, oldest first: index rows go first (one
//! transaction), then the file, so a crash in between leaves only an orphan file that recovery
//! removes.
//!
//! Only the index rows are deleted under the store lock. Free space is measured before it is
//! taken and files are unlinked after it is released (`RetentionReport::remove_files`): a slow
//! or failing file system call never holds up, or fails, another camera's write. A file that
//! cannot be unlinked is logged and left to the next start's recovery (an orphan).

use super::{Inner, State, Store};
use crate::config::{format_bytes, OnFull};
use rusqlite::{OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSegment {
    pub stream: String,
    pub segment_id: i64,
    pub fragments: u64,
    pub bytes: u64,
    pub reason: &'static str,
    /// The segment file, unlinked by `RetentionReport::remove_files` after the lock is released.
    pub path: std::path::PathBuf,
}

#[derive(Debug, Default, Clone)]
pub struct RetentionReport {
    pub deleted: Vec<DeletedSegment>,
}

impl RetentionReport {
    pub fn bytes_freed(&self) -> u64 {
        self.deleted.iter().map(|d| d.bytes).sum()
    }

    /// Unlinks the deleted segments' files (call without the store lock). Failures are logged,
    /// not returned: the rows are gone, so recovery removes the file as an orphan at next start.
    pub(super) fn remove_files(&self) {
        for d in &self.deleted {
            if let Err(e) = super::recovery::remove_file(&d.path) {
                // An I/O error names its own file: no index path to attach.
                let e = e.at(std::path::Path::new(""));
                tracing::error!(
                    camera = %d.stream,
                    "retention: {e}; the file is removed at the next start"
                );
            }
        }
    }
}

struct SegmentRow {
    id: i64,
    stream_id: i64,
    bytes: u64,
    fragments: u64,
}

fn segment_row(r: &Row) -> rusqlite::Result<SegmentRow> {
    Ok(SegmentRow {
        id: r.get(0)?,
        stream_id: r.get(1)?,
        bytes: r.get::<_, i64>(2)? as u64,
        fragments: r.get::<_, i64>(3)? as u64,
    })
}

const SEGMENT_COLS: &str = "id, stream_id, bytes, fragment_count";

/// Age retention plus, with `delete_oldest`, every byte budget (the periodic pass). `free` is
/// the free disk space measured before the lock was taken.
pub(super) fn enforce(
    store: &Store,
    st: &mut State,
    free: Option<u64>,
) -> Result<RetentionReport, Inner> {
    let mut report = expire_by_age(store, st)?;
    report
        .deleted
        .extend(enforce_for(store, st, None, 0, free)?.deleted);
    Ok(report)
}

/// Deletes, per stream, closed segments whose newest fragment is older than its retention.
fn expire_by_age(store: &Store, st: &mut State) -> Result<RetentionReport, Inner> {
    let mut report = RetentionReport::default();
    let now = store.clock.now_ns();
    let aged: Vec<(i64, i64)> = st
        .streams
        .values()
        .filter_map(|s| Some((s.id, now - s.opts.as_ref()?.retention.as_nanos() as i64)))
        .collect();
    for (stream_id, cutoff) in aged {
        loop {
            let row = st
                .conn
                .query_row(
                    &format!("SELECT {SEGMENT_COLS} FROM segments WHERE stream_id = ?1 AND closed = 1 AND last_server_ns < ?2 ORDER BY id LIMIT 1"),
                    rusqlite::params![stream_id, cutoff],
                    segment_row,
                )
                .optional()?;
            let Some(row) = row else { break };
            report
                .deleted
                .push(delete_segment(store, st, row, "older than retention")?);
        }
    }
    Ok(report)
}

/// With `delete_oldest`: deletes oldest closed segments until every byte budget and the free
/// disk reserve leave room for `incoming` more bytes on `for_stream`. `free` is the free disk
/// space measured before the lock was taken (`free_space`).
pub(super) fn enforce_for(
    store: &Store,
    st: &mut State,
    for_stream: Option<&str>,
    incoming: u64,
    free: Option<u64>,
) -> Result<RetentionReport, Inner> {
    let mut report = RetentionReport::default();
    if store.opts.on_full != OnFull::DeleteOldest {
        return Ok(report);
    }

    // Per-stream budgets.
    let budgets: Vec<(i64, String, u64)> = st
        .streams
        .iter()
        .filter_map(|(name, s)| Some((s.id, name.clone(), s.opts.as_ref()?.max_bytes?)))
        .collect();
    for (stream_id, name, budget) in budgets {
        let extra = if for_stream == Some(name.as_str()) {
            incoming
        } else {
            0
        };
        while st.streams[&name].usage + extra > budget {
            let Some(row) = oldest_closed(st, Some(stream_id))? else {
                break;
            };
            report
                .deleted
                .push(delete_segment(store, st, row, "camera byte budget")?);
        }
    }

    // Global budget.
    if let Some(budget) = store.opts.max_bytes {
        while st.total_usage() + incoming > budget {
            let Some(row) = oldest_closed(st, None)? else {
                break;
            };
            report
                .deleted
                .push(delete_segment(store, st, row, "global byte budget")?);
        }
    }

    // Minimum free disk: delete what the shortfall needs, measured once. Re-reading statvfs
    // after each deletion could empty every camera when the space is held by something else
    // (other files, or deleted segments a reader still has open).
    if let Some(free) = free {
        let mut shortfall = (store.min_free + incoming).saturating_sub(free);
        while shortfall > 0 {
            let Some(row) = oldest_closed(st, None)? else {
                break;
            };
            let deleted = delete_segment(store, st, row, "minimum free disk")?;
            shortfall = shortfall.saturating_sub(deleted.bytes.max(1));
            report.deleted.push(deleted);
        }
    }
    Ok(report)
}

/// With `deny_new`: the reason a fragment of `bytes` must be refused, if any.
pub(super) fn refusal(
    store: &Store,
    st: &State,
    stream: &str,
    bytes: u64,
    free: Option<u64>,
) -> Option<String> {
    let s = st.streams.get(stream)?;
    if let Some(budget) = s.opts.as_ref().and_then(|o| o.max_bytes) {
        if s.usage + bytes > budget {
            return Some(format!(
                "camera byte budget full ({} of {})",
                format_bytes(s.usage),
                format_bytes(budget)
            ));
        }
    }
    if let Some(budget) = store.opts.max_bytes {
        let total = st.total_usage();
        if total + bytes > budget {
            return Some(format!(
                "global byte budget full ({} of {})",
                format_bytes(total),
                format_bytes(budget)
            ));
        }
    }
    if let Some(free) = free {
        if free < store.min_free + bytes {
            return Some(format!(
                "disk almost full ({} free, keeping at least {})",
                format_bytes(free),
                format_bytes(store.min_free)
            ));
        }
    }
    None
}

/// Free disk space under the store (statvfs: call it before taking the store lock).
pub(super) fn free_space(store: &Store) -> Option<u64> {
    match store.disk.available(&store.root) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read free disk space");
            None
        }
    }
}

fn oldest_closed(st: &State, stream_id: Option<i64>) -> Result<Option<SegmentRow>, Inner> {
    let row = match stream_id {
        Some(id) => st.conn.query_row(
            &format!("SELECT {SEGMENT_COLS} FROM segments WHERE stream_id = ?1 AND closed = 1 ORDER BY id LIMIT 1"),
            [id],
            segment_row,
        ),
        None => st.conn.query_row(
            &format!("SELECT {SEGMENT_COLS} FROM segments WHERE closed = 1 ORDER BY last_server_ns, id LIMIT 1"),
            [],
            segment_row,
        ),
    };
    Ok(row.optional()?)
}

fn delete_segment(
    store: &Store,
    st: &mut State,
    row: SegmentRow,
    reason: &'static str,
) -> Result<DeletedSegment, Inner> {
    let name = st
        .streams
        .iter()
        .find(|(_, s)| s.id == row.stream_id)
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    let tx = st.conn.unchecked_transaction()?;
    tx.execute("DELETE FROM fragments WHERE segment_id = ?1", [row.id])?;
    tx.execute("DELETE FROM segments WHERE id = ?1", [row.id])?;
    tx.commit()?;
    if let Some(s) = st.streams.get_mut(&name) {
        s.usage = s.usage.saturating_sub(row.bytes);
    }
    tracing::info!(
        camera = %name,
        segment = row.id,
        fragments = row.fragments,
        bytes = row.bytes,
        reason,
        "retention: deleted segment"
    );
    Ok(DeletedSegment {
        path: store.segment_path(&name, row.id),
        stream: name,
        segment_id: row.id,
        fragments: row.fragments,
        bytes: row.bytes,
        reason,
    })
}
