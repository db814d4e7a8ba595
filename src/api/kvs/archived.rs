//! `kinesis-video-archived-media`: ListFragments and GetClip, with the fragment selector and the
//! NextToken they share.

use super::{
    b64, check_max, nanos, parse, seconds, with_reader, FragmentSelector, KvsError, KvsResult,
    StreamRef,
};
use crate::api::ApiState;
use crate::playback::{clip_body, ClipPart};
use crate::store::{FragmentMeta, StoreError, StoreReader, TimeOrigin};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

/// ListFragments' page size limit (and default), as the service model says.
pub(super) const MAX_FRAGMENTS: u64 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListFragmentsIn {
    #[serde(flatten)]
    stream: StreamRef,
    max_results: Option<u64>,
    next_token: Option<String>,
    fragment_selector: Option<FragmentSelector>,
}

/// One page's query; NextToken carries all of it (and the stream it was issued for), so later
/// pages need no selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FragmentQuery {
    origin: TimeOrigin,
    start: i64,
    end: i64,
    /// Fragments above this number (the last one of the previous page).
    after: Option<u64>,
}

impl FragmentQuery {
    /// `1:<P|S>:<start>:<end>:<after>:<stream>` in base64url (the name last: it may hold `:`).
    fn token(&self, stream: &str) -> String {
        let o = match self.origin {
            TimeOrigin::Producer => 'P',
            TimeOrigin::Server => 'S',
        };
        let after = self.after.map_or(String::new(), |a| a.to_string());
        b64().encode(format!(
            "1:{o}:{}:{}:{after}:{stream}",
            self.start, self.end
        ))
    }

    /// The query and the stream a token was issued for.
    fn from_token(t: &str) -> Option<(Self, String)> {
        let text = String::from_utf8(b64().decode(t).ok()?).ok()?;
        let mut parts = text.splitn(6, ':');
        if parts.next()? != "1" {
            return None;
        }
        let origin = match parts.next()? {
            "P" => TimeOrigin::Producer,
            "S" => TimeOrigin::Server,
            _ => return None,
        };
        let start = parts.next()?.parse().ok()?;
        let end = parts.next()?.parse().ok()?;
        let after = match parts.next()? {
            "" => None,
            n => Some(n.parse().ok()?),
        };
        let stream = parts.next()?.to_string();
        Some((
            Self {
                origin,
                start,
                end,
                after,
            },
            stream,
        ))
    }

    fn from_selector(s: Option<FragmentSelector>) -> Result<Self, KvsError> {
        let s = s.ok_or_else(|| {
            KvsError::invalid(
                "FragmentSelector",
                "is required when NextToken is not given",
            )
        })?;
        let origin = match s.fragment_selector_type.as_deref() {
            Some("PRODUCER_TIMESTAMP") => TimeOrigin::Producer,
            Some("SERVER_TIMESTAMP") => TimeOrigin::Server,
            other => {
                return Err(KvsError::invalid(
                    "FragmentSelector.FragmentSelectorType",
                    format!("{other:?} is not PRODUCER_TIMESTAMP or SERVER_TIMESTAMP"),
                ))
            }
        };
        let range = s
            .timestamp_range
            .ok_or_else(|| KvsError::invalid("FragmentSelector.TimestampRange", "is required"))?;
        let field = |f: &str| format!("FragmentSelector.TimestampRange.{f}");
        let start = range
            .start_timestamp
            .ok_or_else(|| KvsError::invalid(&field("StartTimestamp"), "is required"))?;
        let end = range
            .end_timestamp
            .ok_or_else(|| KvsError::invalid(&field("EndTimestamp"), "is required"))?;
        let (start, end) = (
            nanos(&field("StartTimestamp"), start)?,
            nanos(&field("EndTimestamp"), end)?,
        );
        if start > end {
            return Err(KvsError::invalid(
                &field("EndTimestamp"),
                "is before StartTimestamp",
            ));
        }
        Ok(Self {
            origin,
            start,
            end,
            after: None,
        })
    }
}

fn fragment_json(f: &FragmentMeta) -> Value {
    json!({
        "FragmentNumber": f.fragment_number.to_string(),
        "FragmentSizeInBytes": f.size,
        "ProducerTimestamp": seconds(f.producer_ns),
        "ServerTimestamp": seconds(f.server_ns),
        "FragmentLengthInMilliseconds": f.duration_ns.max(0) / 1_000_000,
    })
}

/// `POST /listFragments`: fragments whose start time (producer or server) is in the range, in
/// fragment-number order, at most MaxResults per page.
pub(super) async fn list_fragments(State(state): State<ApiState>, body: Bytes) -> KvsResult {
    let req: ListFragmentsIn = parse(&body)?;
    let max = check_max("MaxResults", req.max_results, MAX_FRAGMENTS)?;
    let named = req.stream.resolve()?;
    let query = match &req.next_token {
        Some(t) => {
            let (query, stream) = FragmentQuery::from_token(t)
                .ok_or_else(|| KvsError::invalid("NextToken", "not a token this service issued"))?;
            if stream != named.name {
                return Err(KvsError::invalid(
                    "NextToken",
                    "was issued for another stream",
                ));
            }
            query
        }
        None => FragmentQuery::from_selector(req.fragment_selector)?,
    };
    let name = named.name.clone();
    let page = with_reader(&state, move |r| {
        named.details(r)?;
        let reader = r.ok_or_else(|| named.not_found())?;
        // one more than a page tells whether another page follows
        Ok(reader.fragments_between(
            &named.name,
            query.origin,
            query.start,
            query.end,
            query.after,
            max as usize + 1,
        )?)
    })
    .await?;
    let more = page.len() > max as usize;
    let page = &page[..page.len().min(max as usize)];
    let mut out = json!({ "Fragments": page.iter().map(fragment_json).collect::<Vec<_>>() });
    if more {
        let next = FragmentQuery {
            after: page.last().map(|f| f.fragment_number),
            ..query
        };
        out["NextToken"] = next.token(&name).into();
    }
    Ok(Json(out))
}

/// GetClip's limits: a range of at most 24 hours; the clip holds at most the first 200
/// fragments and 100 MB (taken as MiB of stored fragments) from the start, as the service model
/// documents the payload ("the first 100 MB or the first 200 fragments").
const CLIP_MAX_RANGE_NS: i64 = 24 * 3600 * 1_000_000_000;
const CLIP_MAX_FRAGMENTS: usize = 200;
const CLIP_MAX_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetClipIn {
    #[serde(flatten)]
    stream: StreamRef,
    clip_fragment_selector: Option<FragmentSelector>,
}

/// The fragments GetClip serves: those starting in the range (as ListFragments selects them,
/// at most CLIP_MAX_FRAGMENTS), up to the first codec configuration change (a clip cannot mix
/// init segments) and while they fit in CLIP_MAX_BYTES.
fn clip_part(fragments: Vec<FragmentMeta>) -> Result<ClipPart, KvsError> {
    let Some(first) = fragments.first() else {
        return Err(KvsError::ResourceNotFound(
            "No fragments found in the stream for the clip request.".into(),
        ));
    };
    if first.size > CLIP_MAX_BYTES {
        return Err(KvsError::ClientLimitExceeded(format!(
            "Fragment {} alone is larger than the clip limit of {CLIP_MAX_BYTES} bytes.",
            first.fragment_number
        )));
    }
    let init_id = first.init_id;
    let mut bytes = 0;
    let fragments = fragments
        .into_iter()
        .take(CLIP_MAX_FRAGMENTS)
        .take_while(|f| f.init_id == init_id)
        .take_while(|f| {
            bytes += f.size;
            bytes <= CLIP_MAX_BYTES
        })
        .collect();
    Ok(ClipPart { init_id, fragments })
}

/// `POST /getClip`: the fragments starting in the range as one fragmented MP4 (`video/mp4`),
/// streamed as it is written. A codec change inside the range, or the size limits, end it early.
pub(super) async fn get_clip(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Response, KvsError> {
    let req: GetClipIn = parse(&body)?;
    let named = req.stream.resolve()?;
    if req.clip_fragment_selector.is_none() {
        return Err(KvsError::invalid("ClipFragmentSelector", "is required"));
    }
    let query = FragmentQuery::from_selector(req.clip_fragment_selector).map_err(|e| match e {
        KvsError::InvalidArgument(m) => {
            KvsError::InvalidArgument(m.replacen("FragmentSelector", "ClipFragmentSelector", 1))
        }
        e => e,
    })?;
    if query.end - query.start > CLIP_MAX_RANGE_NS {
        return Err(KvsError::invalid(
            "ClipFragmentSelector.TimestampRange",
            "spans more than 24 hours",
        ));
    }
    let root = state.video.as_ref().map(|s| s.root().to_path_buf());
    // the reader moves on to the thread that writes the clip, so it is opened here
    let (reader, part) = tokio::task::spawn_blocking(move || {
        let reader = match root.map(|r| StoreReader::open(&r)) {
            None | Some(Err(StoreError::NoStore(_))) => return Err(named.not_found()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(r)) => r,
        };
        named.details(Some(&reader))?;
        let fragments = reader.fragments_between(
            &named.name,
            query.origin,
            query.start,
            query.end,
            None,
            CLIP_MAX_FRAGMENTS,
        )?;
        Ok((reader, clip_part(fragments)?))
    })
    .await
    .map_err(|e| KvsError::Internal(format!("the read task failed: {e}")))??;
    let mut response = Response::new(clip_body(reader, part));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("video/mp4"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_tokens_round_trip_and_reject_forgeries() {
        let q = FragmentQuery {
            origin: TimeOrigin::Server,
            start: -5,
            end: 1_764_543_600_123_000_000,
            after: Some(42),
        };
        assert_eq!(
            FragmentQuery::from_token(&q.token("a:b")),
            Some((q, "a:b".to_string()))
        );
        let first = FragmentQuery { after: None, ..q };
        assert_eq!(
            FragmentQuery::from_token(&first.token("cam")),
            Some((first, "cam".to_string()))
        );
        for bad in [
            "",
            "!!",
            &b64().encode("1:X:0:1:"),
            &b64().encode("1:P:0:1:2"),
            &b64().encode("2:P:0:1:2:cam"),
        ] {
            assert_eq!(FragmentQuery::from_token(bad), None, "{bad}");
        }
    }

    fn frag(n: u64, init_id: i64, size: u64) -> FragmentMeta {
        FragmentMeta {
            stream: "cam".into(),
            fragment_number: n,
            producer_ns: n as i64 * 1_000_000_000,
            server_ns: n as i64 * 1_000_000_000,
            duration_ns: 1_000_000_000,
            size,
            init_id,
            discontinuity: false,
            sample_count: 30,
            segment_id: 1,
            offset: 0,
        }
    }

    #[test]
    fn clips_stop_at_a_codec_change_and_at_the_service_limits() {
        let part = clip_part(vec![frag(1, 7, 10), frag(2, 7, 10), frag(3, 8, 10)]).unwrap();
        assert_eq!(part.init_id, 7);
        assert_eq!(part.fragments.len(), 2);
        assert_eq!(
            clip_part(vec![]).unwrap_err().kind(),
            "ResourceNotFoundException"
        );
        let many = (0..=CLIP_MAX_FRAGMENTS as u64)
            .map(|n| frag(n, 7, 1))
            .collect();
        assert_eq!(clip_part(many).unwrap().fragments.len(), CLIP_MAX_FRAGMENTS);
        let big = vec![
            frag(1, 7, CLIP_MAX_BYTES / 2),
            frag(2, 7, CLIP_MAX_BYTES / 2),
            frag(3, 7, 1),
        ];
        let part = clip_part(big).unwrap();
        assert_eq!(part.bytes(), CLIP_MAX_BYTES);
        assert_eq!(part.fragments.len(), 2);
        assert_eq!(
            clip_part(vec![frag(1, 7, CLIP_MAX_BYTES + 1)])
                .unwrap_err()
                .kind(),
            "ClientLimitExceededException"
        );
    }
}
