//! `GET /api/v1/cameras/{name}/events?start=T&end=T[&label=L][&limit=N][&cursor=C]`: the
//! detection events of a camera in a time range, read from the detection records in its shard
//! stream (`camera.detect.stream`, docs/records.md), each with its fragment number and a clip.mp4
//! link around it.
//!
//! Records are keyed by camera, so one shard holds a camera's records, in the order they were
//! published. A record is published after the fragment holding its frame is committed, a little
//! after the frame's time: the scan starts at the shard position of `start - SLACK` (arrival
//! time) and stops at records that arrived after `end + SLACK`. The work per request is bounded:
//! at most `limit` events and `MAX_SCAN` records read; when either ends a page early, `cursor`
//! (the shard position to go on from) is returned, to pass with the same query for the next page.

use super::{configured, RangeQuery, RestError};
use crate::api::ApiState;
use crate::clock::{format_rfc3339, UnixNanos};
use crate::records::{DetectionRecord, RecordKind};
use crate::streams::{hash_key, parse_sequence_number, ReadPosition, ShardStreams, StartPosition};
use axum::extract::{Path, Query, State};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

/// How long after its frame a record may be published (fragment commit, inference, linking).
const SLACK_NS: i64 = 120 * 1_000_000_000;
/// Events per page when the request names no `limit`, and the most it may ask for.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Records read per request at most (a busy shard of many cameras).
const MAX_SCAN: usize = 50_000;
/// The playback link covers this much before and after the detection.
const AROUND_NS: i64 = 5 * 1_000_000_000;

#[derive(Debug, serde::Deserialize)]
pub(super) struct EventsQuery {
    start: Option<String>,
    end: Option<String>,
    label: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// `1:<shard id>:<offset>`, base64url.
fn cursor(shard: &str, offset: u64) -> String {
    b64().encode(format!("1:{shard}:{offset}"))
}

fn parse_cursor(c: &str) -> Option<(String, u64)> {
    let text = String::from_utf8(b64().decode(c).ok()?).ok()?;
    let rest = text.strip_prefix("1:")?;
    let (shard, offset) = rest.rsplit_once(':')?;
    Some((shard.to_string(), offset.parse().ok()?))
}

/// One page of events and the cursor of the next, if the page was cut short.
struct Page {
    events: Vec<Value>,
    next: Option<String>,
}

struct Scan<'a> {
    camera: &'a str,
    stream: &'a str,
    start: UnixNanos,
    end: UnixNanos,
    label: Option<&'a str>,
    limit: usize,
    after: Option<(String, u64)>,
}

fn event(camera: &str, r: &DetectionRecord, label: Option<&str>) -> Option<Value> {
    let detections: Vec<_> = r
        .detections
        .iter()
        .filter(|d| label.is_none_or(|l| d.label == l))
        .collect();
    if detections.is_empty() {
        return None;
    }
    let link = format!(
        "/api/v1/cameras/{camera}/clip.mp4?start={}&end={}",
        format_rfc3339(r.timestamp_ns - AROUND_NS),
        format_rfc3339(r.timestamp_ns + AROUND_NS)
    );
    Some(json!({
        "timestamp": r.timestamp,
        "timestamp_ns": r.timestamp_ns,
        "fragment_number": r.fragment_number,
        "model": r.model,
        "detections": detections,
        "playback": link,
    }))
}

fn scan(streams: &ShardStreams, q: &Scan) -> Result<Page, RestError> {
    let internal = |e: crate::streams::StreamError| RestError::Internal(e.to_string());
    if !streams.list_streams().iter().any(|s| s == q.stream) {
        return Ok(Page {
            events: Vec::new(),
            next: None,
        });
    }
    let info = streams.describe(q.stream).map_err(internal)?;
    let h = hash_key(q.camera);
    let Some(shard) = info
        .shards
        .iter()
        .find(|s| s.starting_hash_key <= h && h <= s.ending_hash_key)
    else {
        return Err(RestError::Internal(format!(
            "no shard of `{}` holds camera {}",
            q.stream, q.camera
        )));
    };
    let shard_id = shard.shard_id.as_str();
    let mut pos = match &q.after {
        Some((s, _)) if s != shard_id => {
            return Err(RestError::BadRequest(
                "`cursor` is from another shard stream layout; start again".into(),
            ))
        }
        Some((_, offset)) => ReadPosition(*offset),
        None => streams
            .resolve(
                q.stream,
                shard_id,
                StartPosition::AtTimestamp(q.start.saturating_sub(SLACK_NS)),
            )
            .map_err(internal)?,
    };
    let last_arrival = q.end.saturating_add(SLACK_NS);
    let mut events = Vec::new();
    let mut scanned = 0;
    loop {
        let batch = streams
            .read(q.stream, shard_id, pos, 1000, 4 << 20)
            .map_err(internal)?;
        if batch.records.is_empty() {
            return Ok(Page { events, next: None });
        }
        for rec in &batch.records {
            scanned += 1;
            if rec.arrival_ns > last_arrival {
                return Ok(Page { events, next: None });
            }
            if rec.partition_key != q.camera {
                continue;
            }
            let Ok(r) = serde_json::from_slice::<DetectionRecord>(&rec.data) else {
                continue;
            };
            if r.kind != RecordKind::Detection
                || r.camera != q.camera
                || r.timestamp_ns < q.start
                || r.timestamp_ns > q.end
            {
                continue;
            }
            if let Some(e) = event(q.camera, &r, q.label) {
                events.push(e);
                if events.len() == q.limit {
                    let offset = parse_sequence_number(&rec.sequence_number)
                        .map_or(batch.next.0, |(_, o)| o + 1);
                    return Ok(Page {
                        events,
                        next: Some(cursor(shard_id, offset)),
                    });
                }
            }
        }
        pos = batch.next;
        if scanned >= MAX_SCAN {
            return Ok(Page {
                events,
                next: Some(cursor(shard_id, pos.0)),
            });
        }
    }
}

pub(super) async fn events(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, RestError> {
    let range = RangeQuery {
        start: q.start,
        end: q.end,
        limit: None,
    };
    let (start, end) = range.range(state.clock.now_ns())?;
    let limit = super::parse_limit(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            RestError::BadRequest("`cursor` is not one this API returned".into())
        })?),
    };
    let stream = state
        .detection()
        .streams
        .iter()
        .find(|(c, _)| *c == name)
        .map(|(_, s)| s.clone());
    let Some(stream) = stream else {
        if configured(&state, &name) {
            // a camera without detection has no events
            return Ok(Json(
                json!({ "camera": name, "detection": false, "events": [] }),
            ));
        }
        return Err(RestError::UnknownCamera(name));
    };
    let streams = state.streams.clone();
    let camera = name.clone();
    let label = q.label.filter(|l| !l.is_empty());
    let page = tokio::task::spawn_blocking(move || {
        scan(
            &streams,
            &Scan {
                camera: &camera,
                stream: &stream,
                start,
                end,
                label: label.as_deref(),
                limit,
                after,
            },
        )
    })
    .await
    .map_err(|e| RestError::Internal(format!("the read task failed: {e}")))??;
    let mut out = json!({ "camera": name, "detection": true, "events": page.events });
    if let Some(next) = page.next {
        out["cursor"] = next.into();
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        assert_eq!(
            parse_cursor(&cursor("shardId-000000000001", 42)),
            Some(("shardId-000000000001".into(), 42))
        );
        assert_eq!(parse_cursor("!!"), None);
        assert_eq!(parse_cursor(&b64().encode("2:s:1")), None);
        assert_eq!(parse_cursor(&b64().encode("1:s:x")), None);
    }
}
