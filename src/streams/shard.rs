//! One shard: an append-only log of segment files, its writer with group commit, readers that
//! only see durable records, and lookups by offset and arrival time.

use parking_lot::{Condvar, Mutex, RwLock};
use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{Result, StreamError};
use super::format::{self, Frame, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
use super::meta::{sync_dir, write_atomic};
use super::segment::{self, Cursor, Segment};
use super::PutRecord;
use crate::clock::UnixNanos;

#[derive(Debug, Clone, Copy)]
pub struct ShardConfig {
    pub fsync: bool,
    pub segment_bytes: u64,
}

/// Store-wide I/O counters (exposed as `IoStats`).
#[derive(Debug, Default)]
pub struct IoCounters {
    pub fdatasyncs: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

pub struct Shard {
    pub index: u32,
    pub id: String,
    stream: String,
    dir: PathBuf,
    cfg: ShardConfig,
    counters: Arc<IoCounters>,
    /// Appends are serialized here; readers never take it.
    writer: Mutex<Writer>,
    /// Summaries of all segments, oldest first; the last one is the active segment.
    segments: RwLock<Vec<Segment>>,
    sync: Mutex<SyncState>,
    /// A group-commit leader finished (followers re-check `durable`).
    synced: Condvar,
    /// `durable` moved forward (wakes `wait_for`).
    grew: Condvar,
}

struct Writer {
    file: Arc<File>,
    /// Bytes in the active segment file.
    len: u64,
    /// Offset the next record gets.
    next: u64,
    last_arrival_ns: UnixNanos,
    closed: bool,
    /// Encode buffer kept across appends: a fresh multi-megabyte buffer per batch costs a page
    /// fault per 4 KiB, more than the encoding itself.
    scratch: Vec<u8>,
}

struct SyncState {
    /// Records below this offset are durable and visible to readers.
    durable: u64,
    syncing: bool,
    /// Set when a write could not be undone or an fdatasync failed: after that nobody knows
    /// what is on disk, so the shard refuses appends until the store is reopened.
    failed: Option<String>,
    closed: bool,
    /// `wait_for` callers blocked on `grew` right now (lets tests prove a reader was parked).
    #[cfg(test)]
    parked: usize,
}

/// Where a read or lookup starts: an open segment positioned at a sparse-index entry.
struct Start {
    cursor: Cursor,
    /// Offset of the record the cursor is at.
    at: u64,
    /// First offset wanted (>= `at`).
    want: u64,
    /// End of the segment.
    seg_next: u64,
}

impl Shard {
    /// Lays out an empty shard (one empty segment at offset 0).
    pub fn create(dir: &Path, fsync: bool) -> Result<()> {
        fs::create_dir_all(dir)
            .map_err(|e| StreamError::io(format!("creating {}", dir.display()), e))?;
        new_segment_file(dir, 0, fsync)?;
        if fsync {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Loads the segments of a shard, recovering a torn tail of the active segment.
    pub fn open(
        dir: &Path,
        index: u32,
        stream: &str,
        cfg: ShardConfig,
        counters: Arc<IoCounters>,
    ) -> Result<Shard> {
        let id = super::routing::shard_id(index);
        let segments = recover(dir, &id, stream, cfg.fsync)?;
        let last = segments.last().expect("recover leaves an active segment");
        let path = dir.join(segment::log_name(last.base));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StreamError::io(format!("opening {}", path.display()), e))?;
        // Appends write at the cursor: put it at the end of the last valid record.
        file.seek(SeekFrom::Start(last.len))
            .map_err(|e| StreamError::io(format!("seeking in {}", path.display()), e))?;
        let last_arrival_ns = segments
            .iter()
            .rev()
            .find(|s| !s.is_empty())
            .map_or(UnixNanos::MIN, |s| s.last_arrival_ns);
        let writer = Writer {
            file: Arc::new(file),
            len: last.len,
            next: last.next,
            last_arrival_ns,
            closed: false,
            scratch: Vec::new(),
        };
        let sync = SyncState {
            durable: last.next,
            syncing: false,
            failed: None,
            closed: false,
            #[cfg(test)]
            parked: 0,
        };
        Ok(Shard {
            index,
            id,
            stream: stream.to_string(),
            dir: dir.to_path_buf(),
            cfg,
            counters,
            writer: Mutex::new(writer),
            segments: RwLock::new(segments),
            sync: Mutex::new(sync),
            synced: Condvar::new(),
            grew: Condvar::new(),
        })
    }

    /// Writes records (not yet durable with fsync on). All get one arrival time, never earlier
    /// than the previous record's, so arrival order is offset order. Returns their offsets and
    /// the offset after the last, which `sync_until` makes durable.
    pub fn append(&self, recs: &[&PutRecord], now: UnixNanos) -> Result<(Vec<u64>, u64)> {
        let mut w = self.writer.lock();
        self.check_writable(&w)?;
        let arrival = now.max(w.last_arrival_ns);
        let mut batch = Batch {
            headers: std::mem::take(&mut w.scratch),
            parts: Vec::with_capacity(recs.len()),
            bytes: 0,
        };
        let mut offsets = Vec::with_capacity(recs.len());
        let mut result = Ok(());
        for rec in recs {
            let flen = format::frame_len(&rec.partition_key, &rec.data) as u64;
            let used = w.len + batch.bytes;
            if used > SEGMENT_HEADER_LEN && used + flen > self.cfg.segment_bytes {
                result = self
                    .flush(&mut w, &mut batch, arrival)
                    .and_then(|()| self.roll(&mut w));
                if result.is_err() {
                    break;
                }
            }
            let offset = w.next + batch.parts.len() as u64;
            let start = batch.headers.len();
            format::encode_header(
                &mut batch.headers,
                offset,
                arrival,
                &rec.partition_key,
                &rec.data,
            );
            batch.parts.push((start..batch.headers.len(), &rec.data));
            batch.bytes += flen;
            offsets.push(offset);
        }
        if result.is_ok() {
            result = self.flush(&mut w, &mut batch, arrival);
        }
        if batch.headers.capacity() <= MAX_SCRATCH_BYTES {
            batch.headers.clear();
            w.scratch = batch.headers;
        }
        // Even after a failure: records written before it carry this arrival time.
        w.last_arrival_ns = arrival;
        result?;
        let end = w.next;
        if !self.cfg.fsync {
            // Without fsync a record is visible once written.
            self.publish(end);
        }
        Ok((offsets, end))
    }

    fn check_writable(&self, w: &Writer) -> Result<()> {
        if w.closed {
            return Err(StreamError::stream_not_found(&self.stream));
        }
        if let Some(why) = &self.sync.lock().failed {
            return Err(StreamError::io(
                format!(
                    "stream {} {} refuses writes until restart",
                    self.stream, self.id
                ),
                std::io::Error::other(why.clone()),
            ));
        }
        Ok(())
    }

    /// Writes the batch at the end of the active segment (one writev: record headers from
    /// the batch buffer, data straight from the callers' records) and accounts for it.
    fn flush(&self, w: &mut Writer, batch: &mut Batch, arrival: UnixNanos) -> Result<()> {
        if batch.parts.is_empty() {
            return Ok(());
        }
        let mut slices: Vec<IoSlice> = Vec::with_capacity(batch.parts.len() * 2);
        for (header, data) in &batch.parts {
            slices.push(IoSlice::new(&batch.headers[header.clone()]));
            slices.push(IoSlice::new(data));
        }
        if let Err(e) = write_all_vectored(&w.file, &mut slices) {
            // Cut a partial write so the file still ends at a whole record.
            let cut = w
                .file
                .set_len(w.len)
                .and_then(|()| (&*w.file).seek(SeekFrom::Start(w.len)));
            if let Err(e2) = cut {
                self.fail(format!("could not cut a failed write: {e2}"));
            }
            return Err(StreamError::io(
                format!("appending to stream {} {}", self.stream, self.id),
                e,
            ));
        }
        {
            let mut segs = self.segments.write();
            let seg = segs.last_mut().expect("active segment");
            let mut pos = w.len;
            for (i, (header, data)) in batch.parts.iter().enumerate() {
                let flen = (header.len() + data.len()) as u64;
                seg.push(w.next + i as u64, pos, flen, arrival);
                pos += flen;
            }
        }
        let n = batch.parts.len() as u64;
        w.len += batch.bytes;
        w.next += n;
        self.counters.records.fetch_add(n, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_add(batch.bytes, Ordering::Relaxed);
        batch.headers.clear();
        batch.parts.clear();
        batch.bytes = 0;
        Ok(())
    }

    /// Seals the active segment and starts a new one at the next offset.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        if self.cfg.fsync {
            // Sealed segments are durable, so a group commit only ever syncs the active file.
            if let Err(e) = w.file.sync_data() {
                self.fail(format!("fdatasync failed: {e}"));
                return Err(StreamError::io(
                    format!("syncing stream {} {}", self.stream, self.id),
                    e,
                ));
            }
            self.counters.fdatasyncs.fetch_add(1, Ordering::Relaxed);
            self.publish(w.next);
        }
        let sealed = self
            .segments
            .read()
            .last()
            .cloned()
            .expect("active segment");
        let idx = self.dir.join(segment::idx_name(sealed.base));
        // The index is derived data: a missing or torn one is rebuilt on open, so no fsync.
        if let Err(e) = write_atomic(&idx, &segment::encode_idx(&sealed), false) {
            tracing::warn!(stream = %self.stream, shard = %self.id, error = %e, "could not write segment index; it will be rebuilt on open");
        }
        let file = new_segment_file(&self.dir, w.next, self.cfg.fsync)?;
        if self.cfg.fsync {
            sync_dir(&self.dir)?;
        }
        self.segments.write().push(Segment::empty(w.next));
        w.file = Arc::new(file);
        w.len = SEGMENT_HEADER_LEN;
        Ok(())
    }

    /// Returns once every record below `target` is durable. Group commit: one caller at a time
    /// runs fdatasync for everything written so far; the others wait for it and are usually
    /// covered by it.
    pub fn sync_until(&self, target: u64) -> Result<()> {
        let mut st = self.sync.lock();
        loop {
            if st.durable >= target {
                return Ok(());
            }
            if let Some(why) = &st.failed {
                return Err(StreamError::io(
                    format!("syncing stream {} {}", self.stream, self.id),
                    std::io::Error::other(why.clone()),
                ));
            }
            if st.syncing {
                self.synced.wait(&mut st);
                continue;
            }
            st.syncing = true;
            drop(st);
            let (file, end) = {
                let w = self.writer.lock();
                (Arc::clone(&w.file), w.next)
            };
            let result = file.sync_data();
            self.counters.fdatasyncs.fetch_add(1, Ordering::Relaxed);
            st = self.sync.lock();
            st.syncing = false;
            match result {
                Ok(()) if end > st.durable => {
                    st.durable = end;
                    self.grew.notify_all();
                }
                Ok(()) => {}
                Err(e) => {
                    st.failed = Some(format!("fdatasync failed: {e}"));
                    tracing::error!(stream = %self.stream, shard = %self.id, error = %e, "fdatasync failed; the shard refuses writes until restart");
                }
            }
            self.synced.notify_all();
        }
    }

    fn publish(&self, end: u64) {
        let mut st = self.sync.lock();
        if end > st.durable {
            st.durable = end;
            self.grew.notify_all();
        }
    }

    fn fail(&self, why: String) {
        tracing::error!(stream = %self.stream, shard = %self.id, "{why}; the shard refuses writes until restart");
        self.sync.lock().failed = Some(why);
        self.synced.notify_all();
    }

    /// Stops appends and wakes waiters (the stream is being deleted).
    pub fn close(&self) {
        self.writer.lock().closed = true;
        self.sync.lock().closed = true;
        self.synced.notify_all();
        self.grew.notify_all();
    }

    /// Offset after the last durable record (LATEST).
    pub fn tip(&self) -> u64 {
        self.sync.lock().durable
    }

    /// Offset of the oldest stored record (TRIM_HORIZON).
    pub fn trim_horizon(&self) -> u64 {
        self.segments.read()[0].base
    }

    pub fn usage(&self) -> (usize, u64) {
        let segs = self.segments.read();
        (segs.len(), segs.iter().map(|s| s.len).sum())
    }

    /// Up to `limit` durable records from `pos` (moved up to the trim horizon, over gaps), at
    /// least one if any, stopping before `max_bytes` of keys + data would be exceeded.
    /// Returns the records, the position after them and the tip the read was bounded by.
    pub fn read(&self, pos: u64, limit: usize, max_bytes: usize) -> Result<(Vec<Frame>, u64, u64)> {
        let tip = self.tip();
        let mut out: Vec<Frame> = Vec::new();
        let mut bytes = 0usize;
        let mut cur = pos;
        'segments: while out.len() < limit && cur < tip {
            let Some(mut start) = self.start_at(cur)? else {
                break;
            };
            cur = start.want;
            let end = start.seg_next.min(tip);
            while start.at < end {
                let f = start.cursor.next_frame(start.at)?;
                start.at += 1;
                if f.offset < cur {
                    continue;
                }
                let size = f.key.len() + f.data.len();
                if out.len() >= limit || (!out.is_empty() && bytes + size > max_bytes) {
                    break 'segments;
                }
                bytes += size;
                cur = f.offset + 1;
                out.push(f);
            }
            cur = cur.max(end);
        }
        Ok((out, cur, tip))
    }

    /// Opens the segment holding the first stored record at or after `offset`.
    fn start_at(&self, offset: u64) -> Result<Option<Start>> {
        let segs = self.segments.read();
        let mut want = offset.max(segs[0].base);
        let mut i = segs.partition_point(|s| s.base <= want).saturating_sub(1);
        while want >= segs[i].next {
            // Past this segment's end (or in a gap left by a cut corrupt segment): next one.
            i += 1;
            match segs.get(i) {
                Some(s) => want = s.base,
                None => return Ok(None),
            }
        }
        let seg = &segs[i];
        let entry = seg.seek_offset(want);
        Ok(Some(Start {
            cursor: self.cursor(seg.base, entry.pos)?,
            at: entry.offset,
            want,
            seg_next: seg.next,
        }))
    }

    /// Offset of the first durable record that arrived at or after `ts`, else the tip.
    pub fn seek_time(&self, ts: UnixNanos) -> Result<u64> {
        let tip = self.tip();
        let mut start = {
            let segs = self.segments.read();
            // Only the active (last) segment can be empty; arrival times never decrease.
            let full = &segs[..segs.len() - usize::from(segs[segs.len() - 1].is_empty())];
            let i = full.partition_point(|s| s.last_arrival_ns < ts);
            let Some(seg) = full.get(i) else {
                return Ok(tip);
            };
            let entry = seg.seek_time(ts);
            Start {
                cursor: self.cursor(seg.base, entry.pos)?,
                at: entry.offset,
                want: entry.offset,
                seg_next: seg.next,
            }
        };
        while start.at < start.seg_next.min(tip) {
            let f = start.cursor.next_frame(start.at)?;
            if f.arrival_ns >= ts {
                return Ok(f.offset);
            }
            start.at += 1;
        }
        // At the tip, or (cannot happen while arrivals never decrease) past this segment.
        Ok(start.at)
    }

    fn cursor(&self, base: u64, pos: u64) -> Result<Cursor> {
        let path = self.dir.join(segment::log_name(base));
        let file = File::open(&path)
            .map_err(|e| StreamError::io(format!("opening {}", path.display()), e))?;
        Cursor::new(file, path.clone(), pos)
            .map_err(|e| StreamError::io(format!("reading {}", path.display()), e))
    }

    /// Blocks until a durable record at or after `pos` exists, or `timeout` passes.
    pub fn wait_for(&self, pos: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut st = self.sync.lock();
        loop {
            if st.closed {
                return Err(StreamError::stream_not_found(&self.stream));
            }
            if st.durable > pos {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            #[cfg(test)]
            {
                st.parked += 1;
            }
            self.grew.wait_for(&mut st, left);
            #[cfg(test)]
            {
                st.parked -= 1;
            }
        }
    }

    /// How many `wait_for` callers are blocked on the condition variable. Read under the lock
    /// they released by parking, so a non-zero answer means they are inside the wait.
    #[cfg(test)]
    pub fn parked_waiters(&self) -> usize {
        self.sync.lock().parked
    }

    /// Deletes sealed segments, oldest first, whose newest record arrived before `cutoff`.
    /// The active segment always stays.
    pub fn expire(&self, cutoff: UnixNanos) -> Result<usize> {
        let removed: Vec<Segment> = {
            let mut segs = self.segments.write();
            let n = segs[..segs.len() - 1]
                .iter()
                .take_while(|s| s.last_arrival_ns < cutoff)
                .count();
            segs.drain(..n).collect()
        };
        // Readers that already opened a removed file keep reading it; new reads start at the
        // new trim horizon because the summary is gone.
        for seg in &removed {
            let log = self.dir.join(segment::log_name(seg.base));
            fs::remove_file(&log)
                .map_err(|e| StreamError::io(format!("removing {}", log.display()), e))?;
            let _ = fs::remove_file(self.dir.join(segment::idx_name(seg.base)));
            tracing::info!(
                stream = %self.stream, shard = %self.id, segment = seg.base,
                records = seg.next - seg.base, bytes = seg.len,
                "retention removed segment"
            );
        }
        if !removed.is_empty() && self.cfg.fsync {
            sync_dir(&self.dir)?;
        }
        Ok(removed.len())
    }
}

/// Largest header buffer a shard keeps between appends.
const MAX_SCRATCH_BYTES: usize = 1 << 20;

/// Records encoded for one write: their headers (with keys) back to back, and per record the
/// header's range plus the data, which is written from the caller's buffer without a copy.
struct Batch<'a> {
    headers: Vec<u8>,
    parts: Vec<(std::ops::Range<usize>, &'a [u8])>,
    bytes: u64,
}

/// `write_all` for a list of slices, at the file's cursor (the end of the active segment).
fn write_all_vectored(file: &File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    let mut f = file;
    while !slices.is_empty() {
        match f.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn new_segment_file(dir: &Path, base: u64, fsync: bool) -> Result<File> {
    let path = dir.join(segment::log_name(base));
    let io = |e| StreamError::io(format!("creating {}", path.display()), e);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io)?;
    f.write_all(SEGMENT_MAGIC).map_err(io)?;
    if fsync {
        f.sync_data().map_err(io)?;
    }
    Ok(f)
}

/// Segment summaries of a shard directory, oldest first, ending with the active segment.
/// Sealed segments come from their `.idx` (rebuilt by a scan if missing or damaged); the active
/// one is scanned and cut at its last valid record.
fn recover(dir: &Path, shard: &str, stream: &str, fsync: bool) -> Result<Vec<Segment>> {
    let io = |what: &str, p: &Path, e| StreamError::io(format!("{what} {}", p.display()), e);
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io("listing", dir, e))? {
        let entry = entry.map_err(|e| io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match segment::parse_name(&name) {
            Some((base, "log")) => bases.push(base),
            Some((base, "idx")) if !dir.join(segment::log_name(base)).exists() => {
                // Retention removed the log but not yet the index.
                let _ = fs::remove_file(entry.path());
            }
            _ if name.ends_with(".tmp") => {
                let _ = fs::remove_file(entry.path());
            }
            _ => {}
        }
    }
    bases.sort_unstable();
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len() + 1);
    for (k, &base) in bases.iter().enumerate() {
        let active = k + 1 == bases.len();
        let path = dir.join(segment::log_name(base));
        if !active {
            if let Some(seg) = load_idx(dir, base, &path) {
                segments.push(seg);
                continue;
            }
        }
        let scan = match segment::scan(&path, base) {
            Ok(scan) => scan,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // Shorter than its header: created just before a crash, holds no records.
                tracing::warn!(stream, shard, file = %path.display(), "removing a segment file without a complete header");
                fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                let aside = path.with_extension("log.corrupt");
                tracing::error!(stream, shard, file = %path.display(), moved_to = %aside.display(), "segment file has a bad header; moved aside");
                fs::rename(&path, &aside).map_err(|e| io("renaming", &path, e))?;
                continue;
            }
            Err(e) => return Err(io("reading", &path, e)),
        };
        let seg = scan.segment;
        if seg.len < scan.file_len {
            let cut = scan.file_len - seg.len;
            let why = scan.stopped.unwrap_or_default();
            if active {
                tracing::warn!(stream, shard, file = %path.display(), bytes_cut = cut, valid_records = seg.next - seg.base, reason = %why, "truncating torn tail of the active segment");
            } else {
                tracing::error!(stream, shard, file = %path.display(), bytes_cut = cut, valid_records = seg.next - seg.base, reason = %why, "sealed segment is damaged; cutting it at its last valid record");
            }
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io("opening", &path, e))?;
            f.set_len(seg.len).map_err(|e| io("truncating", &path, e))?;
            if fsync {
                f.sync_all().map_err(|e| io("syncing", &path, e))?;
            }
        }
        if !active {
            if seg.is_empty() {
                fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
                continue;
            }
            let _ = write_atomic(
                &dir.join(segment::idx_name(base)),
                &segment::encode_idx(&seg),
                false,
            );
        }
        segments.push(seg);
    }
    for pair in segments.windows(2) {
        if pair[1].base < pair[0].next {
            return Err(StreamError::Corrupt(format!(
                "stream {stream} {shard}: segment {} overlaps records up to {} of the previous one",
                pair[1].base, pair[0].next
            )));
        }
    }
    // The last segment must be the writable one: if it went away (moved aside, or never
    // written), start a fresh one after everything known.
    let needs_active = match (segments.last(), bases.last()) {
        (Some(last), Some(&newest)) => last.base != newest,
        _ => true,
    };
    if needs_active {
        let base = segments
            .last()
            .map_or(0, |s| s.next)
            .max(bases.last().copied().unwrap_or(0));
        if segments.is_empty() && !bases.is_empty() {
            tracing::warn!(
                stream,
                shard,
                base,
                "no readable segment left; starting a new one"
            );
        }
        new_segment_file(dir, base, fsync)?;
        if fsync {
            sync_dir(dir)?;
        }
        segments.push(Segment::empty(base));
    }
    Ok(segments)
}

fn load_idx(dir: &Path, base: u64, log: &Path) -> Option<Segment> {
    let bytes = fs::read(dir.join(segment::idx_name(base))).ok()?;
    let log_len = fs::metadata(log).ok()?.len();
    segment::decode_idx(&bytes, base, log_len)
}
