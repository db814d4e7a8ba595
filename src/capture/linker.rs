//! Links detection results to the stored fragment that holds their frame and publishes them as
//! records (schema: docs/records.md). A result waits until the fragment covering its producer
//! time is committed, so every record's `fragment_number` names playable video.

use super::{CameraStatus, Counters, DetectionResult, FrameTime};
use crate::clock::UnixNanos;
use crate::records::{round, BoundingBox, DetectedObject, DetectionRecord, RecordKind};
use crate::streams::{PutRecord, ShardStreams};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Results waiting for their fragment (a few fragments' worth at most detect fps).
const MAX_PENDING: usize = 512;
/// Fragments remembered for results that arrive after their fragment was stored.
const RECENT_FRAGMENTS: usize = 32;

/// Where a result's frame sits in producer time, as far as the recorder can tell now.
pub enum Mapping {
    /// In the session being recorded.
    At(UnixNanos),
    /// In session `session`, which has ended: every fragment it will ever have is stored.
    Ended { at: UnixNanos, session: u64 },
    /// Its loop generation has not started recording yet: ask again later.
    NotYet,
    /// From a session whose time mapping is forgotten: its video is already stored or gone.
    Stale,
}

pub struct RecordSink {
    pub streams: Arc<ShardStreams>,
    pub stream: String,
    pub device: String,
    pub heartbeat: Duration,
}

#[derive(Debug, Clone, Copy)]
struct StoredFragment {
    number: u64,
    start: UnixNanos,
    end: UnixNanos,
    session: u64,
}

pub struct DetectionLinker {
    sink: RecordSink,
    status: Arc<CameraStatus>,
    model: String,
    pending: VecDeque<DetectionResult>,
    /// Stored fragments: number, producer start and end, recording session.
    recent: VecDeque<StoredFragment>,
    last_record: Instant,
    last_error_log: Option<Instant>,
}

impl DetectionLinker {
    pub fn new(sink: RecordSink, status: Arc<CameraStatus>, model: String) -> Self {
        Self {
            sink,
            status,
            model,
            pending: VecDeque::new(),
            recent: VecDeque::new(),
            last_record: Instant::now(),
            last_error_log: None,
        }
    }

    pub fn push(&mut self, r: DetectionResult) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(r);
    }

    /// A fragment of recording session `session` covering producer time `[start, end)` was
    /// committed as `number`.
    pub fn fragment_stored(
        &mut self,
        number: u64,
        session: u64,
        (start, end): (UnixNanos, UnixNanos),
        map: impl Fn(&FrameTime) -> Mapping,
    ) {
        if self.recent.len() >= RECENT_FRAGMENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(StoredFragment {
            number,
            start,
            end,
            session,
        });
        let mut records = self.link_pending(Some(end), map);
        if records.is_empty() && self.last_record.elapsed() >= self.sink.heartbeat {
            records.push(heartbeat(
                &self.sink,
                &self.status.name,
                &self.model,
                start,
                number,
            ));
        }
        self.publish(records);
    }

    /// Links what can be linked without a new fragment: results of ended sessions (a
    /// reconnect or shutdown came between the frame and its result).
    pub fn resolve(&mut self, map: impl Fn(&FrameTime) -> Mapping) {
        let records = self.link_pending(None, map);
        self.publish(records);
    }

    /// Records for the pending results whose fragment is stored (`end`: producer end of the
    /// fragment just stored, if any); keeps those that may still get one.
    fn link_pending(
        &mut self,
        end: Option<UnixNanos>,
        map: impl Fn(&FrameTime) -> Mapping,
    ) -> Vec<PutRecord> {
        let mut records = Vec::new();
        let mut keep = VecDeque::new();
        for r in std::mem::take(&mut self.pending) {
            let (t, session) = match map(&r.time) {
                Mapping::At(t) if end.is_some_and(|e| t < e) => (t, None),
                Mapping::Ended { at, session } => (at, Some(session)),
                Mapping::At(_) | Mapping::NotYet => {
                    keep.push_back(r);
                    continue;
                }
                Mapping::Stale => continue,
            };
            let holder = self
                .recent
                .iter()
                .rev()
                .filter(|f| session.is_none_or(|s| f.session == s))
                .find(|f| f.start <= t && t < f.end)
                .map(|f| f.number);
            match holder {
                Some(n) if !r.detections.is_empty() => {
                    records.push(record(&self.sink, &self.status.name, &r, t, n))
                }
                Some(_) => {}
                // Before every fragment we remember (a refused or lost fragment), or after the
                // last one of an ended session.
                None => {
                    tracing::debug!(camera = %self.status.name, "detection without a stored fragment dropped")
                }
            }
        }
        self.pending = keep;
        records
    }

    fn publish(&mut self, records: Vec<PutRecord>) {
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        match self.sink.streams.put_many(&self.sink.stream, records) {
            Ok(results) => {
                let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
                self.status
                    .counters
                    .detection_records
                    .fetch_add(ok, std::sync::atomic::Ordering::Relaxed);
                self.last_record = Instant::now();
                if ok < n {
                    self.log_error(format!("{} of {n} detection records were rejected", n - ok));
                }
            }
            Err(e) => self.log_error(format!(
                "cannot write detection records to stream `{}`: {e}",
                self.sink.stream
            )),
        }
    }

    fn log_error(&mut self, msg: String) {
        Counters::inc(&self.status.counters.detect_errors);
        if self
            .last_error_log
            .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
        {
            self.last_error_log = Some(Instant::now());
            tracing::error!(camera = %self.status.name, "{msg}");
        }
    }
}

fn record(
    sink: &RecordSink,
    camera: &str,
    r: &DetectionResult,
    t: UnixNanos,
    fragment: u64,
) -> PutRecord {
    let mut rec = DetectionRecord::new(
        RecordKind::Detection,
        &sink.device,
        camera,
        &r.model,
        t,
        fragment,
    );
    rec.inference_ms = Some((r.inference_ms * 10.0).round() / 10.0);
    rec.detections = r
        .detections
        .iter()
        .map(|d| DetectedObject {
            label: d.label.clone(),
            class_id: d.class_id,
            score: round(d.score, 1e3),
            bbox: BoundingBox {
                x: round(d.bbox.x, 1e4),
                y: round(d.bbox.y, 1e4),
                w: round(d.bbox.w, 1e4),
                h: round(d.bbox.h, 1e4),
            },
            zones: d.zones.clone(),
        })
        .collect();
    put(camera, &rec)
}

fn heartbeat(
    sink: &RecordSink,
    camera: &str,
    model: &str,
    t: UnixNanos,
    fragment: u64,
) -> PutRecord {
    let rec = DetectionRecord::new(
        RecordKind::Heartbeat,
        &sink.device,
        camera,
        model,
        t,
        fragment,
    );
    put(camera, &rec)
}

/// Records of a camera share its partition key (one shard: per-camera order).
fn put(camera: &str, rec: &DetectionRecord) -> PutRecord {
    PutRecord {
        partition_key: camera.to_string(),
        explicit_hash_key: None,
        data: rec.to_json(),
    }
}
