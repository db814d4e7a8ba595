//! Kinesis-Video-Streams-compatible control plane (`kinesisvideo`: ListStreams, DescribeStream,
//! GetDataEndpoint), `kinesis-video-archived-media` ListFragments and GetClip, and (in `media`)
//! GetMediaForFragmentList and `kinesis-video-media` GetMedia, REST-JSON over POST as the
//! botocore service models define them. Cameras are the video streams; everything is read from
//! the store on blocking threads. GetDataEndpoint answers the daemon's own base URL, so a client
//! chains its data-plane calls back here.

mod error;
mod media;

pub use error::KvsError;

use super::auth::{AuthError, RouteAuth, Scope};
use super::ApiState;
use crate::playback::{clip_body, ClipPart};
use crate::store::{FragmentMeta, StoreError, StoreReader, StreamDetails, TimeOrigin};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

const REGION: &str = super::kinesis::REGION;
const ACCOUNT: &str = super::kinesis::ACCOUNT;
/// ListFragments' page size limit (and default), as the service model says.
const MAX_FRAGMENTS: u64 = 1000;
/// ListStreams' page size limit (and default).
const MAX_STREAMS: u64 = 10_000;

/// Every operation here only reads; refusals are the service's NotAuthorizedException.
pub const AUTH: RouteAuth = RouteAuth {
    scope: |_| Scope::Read,
    refuse: |e, _| {
        let message = match e {
            AuthError::Unrecognized => "a valid API token is required",
            AuthError::Denied => "the API token lacks the scope for this request",
        };
        KvsError::NotAuthorized(message.into()).into_response()
    },
};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/listStreams", post(list_streams))
        .route("/describeStream", post(describe_stream))
        .route("/getDataEndpoint", post(get_data_endpoint))
        .route("/listFragments", post(list_fragments))
        .route("/getClip", post(get_clip))
        .route("/getMedia", post(media::get_media))
        .route(
            "/getMediaForFragmentList",
            post(media::get_media_for_fragment_list),
        )
}

type KvsResult = Result<Json<Value>, KvsError>;

/// Parses a request body (empty means `{}`), naming the offending field on a type error.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, KvsError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        if field == "." {
            KvsError::InvalidArgument(format!("the request body is not valid: {}", e.inner()))
        } else {
            KvsError::invalid(&field, e.inner())
        }
    })
}

/// Runs a read against a fresh store reader on a blocking thread (SQLite and file I/O).
async fn with_reader<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(Option<&StoreReader>) -> Result<T, KvsError> + Send + 'static,
) -> Result<T, KvsError> {
    let root = state.video.as_ref().map(|s| s.root().to_path_buf());
    tokio::task::spawn_blocking(move || match root {
        None => f(None),
        Some(root) => match StoreReader::open(&root) {
            Ok(r) => f(Some(&r)),
            // no recording yet: no streams
            Err(StoreError::NoStore(_)) => f(None),
            Err(e) => Err(e.into()),
        },
    })
    .await
    .map_err(|e| KvsError::Internal(format!("the read task failed: {e}")))?
}

pub fn stream_arn(name: &str, created_ns: i64) -> String {
    format!(
        "arn:aws:kinesisvideo:{REGION}:{ACCOUNT}:stream/{name}/{}",
        created_ns.div_euclid(1_000_000)
    )
}

/// Epoch seconds with millisecond precision (the service's precision; a timestamp sent back
/// as a range bound then never lies after the fragment it came from).
fn seconds(ns: i64) -> f64 {
    ns.div_euclid(1_000_000) as f64 / 1000.0
}

/// Epoch seconds from a request (microsecond precision, as botocore sends them) to nanoseconds.
fn nanos(field: &str, secs: f64) -> Result<i64, KvsError> {
    let us = (secs * 1e6).round();
    if !us.is_finite() || us.abs() > (i64::MAX / 1000) as f64 {
        return Err(KvsError::invalid(field, "timestamp out of range"));
    }
    Ok(us as i64 * 1000)
}

fn media_type(codec: Option<&str>) -> Option<&'static str> {
    match codec? {
        "h264" => Some("video/h264"),
        "h265" => Some("video/h265"),
        _ => None,
    }
}

fn stream_info(d: &StreamDetails) -> Value {
    let mut info = json!({
        "DeviceName": "vidgest",
        "StreamName": d.name,
        "StreamARN": stream_arn(&d.name, d.created_ns),
        "Version": "1",
        "Status": "ACTIVE",
        "CreationTime": seconds(d.created_ns),
        // whole hours, rounded up so a short retention does not read as "no retention"
        "DataRetentionInHours": d.retention_ns.map_or(0, |ns| (ns.max(0) as u64).div_ceil(3_600_000_000_000)),
    });
    if let Some(m) = media_type(d.codec.as_deref()) {
        info["MediaType"] = m.into();
    }
    info
}

/// `StreamName` or `StreamARN` (either names the stream; both must agree).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

/// What a `StreamRef` names: the stream name, and the ARN's creation time to check.
struct Named {
    name: String,
    arn: Option<String>,
}

impl StreamRef {
    fn resolve(self) -> Result<Named, KvsError> {
        let from_arn = match &self.stream_arn {
            None => None,
            Some(arn) => Some(name_in_arn(arn).ok_or_else(|| {
                KvsError::invalid("StreamARN", format!("`{arn}` is not a video stream ARN"))
            })?),
        };
        match (self.stream_name, from_arn) {
            (None, None) => Err(KvsError::invalid(
                "StreamName",
                "either StreamName or StreamARN is required",
            )),
            (Some(n), Some(a)) if n != a => Err(KvsError::invalid(
                "StreamARN",
                "names another stream than StreamName",
            )),
            (Some(name), _) | (None, Some(name)) => Ok(Named {
                name,
                arn: self.stream_arn,
            }),
        }
    }
}

impl Named {
    /// The stream's details; an ARN with another creation time names a stream that is gone.
    fn details(&self, reader: Option<&StoreReader>) -> Result<StreamDetails, KvsError> {
        let reader = reader.ok_or_else(|| self.not_found())?;
        let d = reader.stream_details(&self.name)?;
        match &self.arn {
            Some(arn) if *arn != stream_arn(&d.name, d.created_ns) => Err(self.not_found()),
            _ => Ok(d),
        }
    }

    fn not_found(&self) -> KvsError {
        KvsError::stream_not_found(self.arn.as_deref().unwrap_or(&self.name))
    }
}

fn name_in_arn(arn: &str) -> Option<String> {
    let rest = arn.strip_prefix(&format!("arn:aws:kinesisvideo:{REGION}:{ACCOUNT}:stream/"))?;
    let (name, created) = rest.rsplit_once('/')?;
    (!name.is_empty() && !created.is_empty() && created.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.to_string())
}

fn check_max(field: &str, v: Option<u64>, max: u64) -> Result<u64, KvsError> {
    match v {
        None => Ok(max),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(KvsError::invalid(
            field,
            format!("{n} is not between 1 and {max}"),
        )),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListStreamsIn {
    max_results: Option<u64>,
    next_token: Option<String>,
    stream_name_condition: Option<NameCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameCondition {
    comparison_operator: Option<String>,
    comparison_value: Option<String>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// `POST /listStreams`: the cameras in the store, by name; NextToken is the last name returned.
async fn list_streams(State(state): State<ApiState>, body: Bytes) -> KvsResult {
    let req: ListStreamsIn = parse(&body)?;
    let max = check_max("MaxResults", req.max_results, MAX_STREAMS)? as usize;
    let after = match &req.next_token {
        None => None,
        Some(t) => Some(
            b64()
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| KvsError::invalid("NextToken", "not a token this service issued"))?,
        ),
    };
    let prefix = match req.stream_name_condition {
        None => None,
        Some(c) => {
            if c.comparison_operator.as_deref().unwrap_or("BEGINS_WITH") != "BEGINS_WITH" {
                return Err(KvsError::invalid(
                    "StreamNameCondition.ComparisonOperator",
                    "only BEGINS_WITH is supported",
                ));
            }
            c.comparison_value
        }
    };
    let (infos, more) = with_reader(&state, move |reader| {
        let Some(reader) = reader else {
            return Ok((Vec::new(), false));
        };
        // streams() is ordered by name, so the token (a name) is a cursor
        let names: Vec<String> = reader
            .streams()?
            .into_iter()
            .map(|s| s.name)
            .filter(|n| after.as_ref().is_none_or(|a| n > a))
            .filter(|n| prefix.as_ref().is_none_or(|p| n.starts_with(p.as_str())))
            .collect();
        let more = names.len() > max;
        let infos = names
            .iter()
            .take(max)
            .map(|n| reader.stream_details(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((infos, more))
    })
    .await?;
    let mut out = json!({ "StreamInfoList": infos.iter().map(stream_info).collect::<Vec<_>>() });
    if more {
        if let Some(last) = infos.last() {
            out["NextToken"] = b64().encode(&last.name).into();
        }
    }
    Ok(Json(out))
}

/// `POST /describeStream`.
async fn describe_stream(State(state): State<ApiState>, body: Bytes) -> KvsResult {
    let named = parse::<StreamRef>(&body)?.resolve()?;
    let d = with_reader(&state, move |r| named.details(r)).await?;
    Ok(Json(json!({ "StreamInfo": stream_info(&d) })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataEndpointIn {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "APIName")]
    api_name: Option<String>,
}

const API_NAMES: [&str; 8] = [
    "PUT_MEDIA",
    "GET_MEDIA",
    "LIST_FRAGMENTS",
    "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL",
    "GET_DASH_STREAMING_SESSION_URL",
    "GET_CLIP",
    "GET_IMAGES",
];

/// `POST /getDataEndpoint`: every data plane is this daemon, at the address the client used.
async fn get_data_endpoint(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> KvsResult {
    let req: DataEndpointIn = parse(&body)?;
    match req.api_name.as_deref() {
        None => return Err(KvsError::invalid("APIName", "is required")),
        Some(a) if !API_NAMES.contains(&a) => {
            return Err(KvsError::invalid(
                "APIName",
                format!("`{a}` is not one of {}", API_NAMES.join(", ")),
            ))
        }
        Some(_) => {}
    }
    // The Host header as an authority (host[:port]) only, so it cannot inject a path.
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .filter(|a| a.as_str().find(['@']).is_none())
        .ok_or_else(|| KvsError::InvalidArgument("the request has no valid Host header".into()))?;
    let named = req.stream.resolve()?;
    with_reader(&state, move |r| named.details(r).map(|_| ())).await?;
    Ok(Json(json!({ "DataEndpoint": format!("http://{host}") })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListFragmentsIn {
    #[serde(flatten)]
    stream: StreamRef,
    max_results: Option<u64>,
    next_token: Option<String>,
    fragment_selector: Option<FragmentSelector>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FragmentSelector {
    fragment_selector_type: Option<String>,
    timestamp_range: Option<TimestampRange>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TimestampRange {
    start_timestamp: Option<f64>,
    end_timestamp: Option<f64>,
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
async fn list_fragments(State(state): State<ApiState>, body: Bytes) -> KvsResult {
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
async fn get_clip(State(state): State<ApiState>, body: Bytes) -> Result<Response, KvsError> {
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

    #[test]
    fn arns_name_their_stream() {
        let arn = stream_arn("front door", 1_764_543_600_123_456_789);
        assert_eq!(
            arn,
            "arn:aws:kinesisvideo:us-east-1:000000000000:stream/front door/1764543600123"
        );
        assert_eq!(name_in_arn(&arn).as_deref(), Some("front door"));
        assert_eq!(
            name_in_arn("arn:aws:kinesis:us-east-1:000000000000:stream/x"),
            None
        );
        assert_eq!(
            name_in_arn("arn:aws:kinesisvideo:us-east-1:000000000000:stream/x/abc"),
            None
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let e = parse::<ListFragmentsIn>(br#"{"MaxResults": "ten"}"#).unwrap_err();
        assert!(
            matches!(&e, KvsError::InvalidArgument(m) if m.starts_with("MaxResults:")),
            "{e:?}"
        );
        let e = parse::<ListFragmentsIn>(
            br#"{"FragmentSelector": {"TimestampRange": {"StartTimestamp": "x"}}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&e, KvsError::InvalidArgument(m)
                if m.starts_with("FragmentSelector.TimestampRange.StartTimestamp:")),
            "{e:?}"
        );
        assert_eq!(
            check_max("MaxResults", Some(1001), MAX_FRAGMENTS),
            Err(KvsError::invalid(
                "MaxResults",
                "1001 is not between 1 and 1000"
            ))
        );
        assert!(parse::<ListStreamsIn>(b"").is_ok());
    }

    #[test]
    fn timestamps_survive_the_round_trip_at_millisecond_precision() {
        let ns = 1_764_543_600_123_456_789;
        let back = nanos("T", seconds(ns)).unwrap();
        assert_eq!(back, 1_764_543_600_123_000_000);
        assert!(back <= ns);
        assert!(nanos("T", f64::INFINITY).is_err());
    }
}
