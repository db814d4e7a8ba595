//! Kinesis-Video-Streams-compatible APIs, REST-JSON over POST as the botocore service models
//! define them: the `kinesisvideo` control plane (control.rs), `kinesis-video-archived-media`
//! (archived.rs: ListFragments, GetClip; images.rs: GetImages; streaming.rs: the HLS / DASH
//! session URLs and the player routes they lead to; media.rs: GetMediaForFragmentList) and
//! `kinesis-video-media` GetMedia (media.rs). Cameras are the video streams; everything is read
//! from the store on blocking threads. This module holds the router and what the operations
//! share: request parsing, the store reader, stream names and ARNs, timestamps and errors.

mod archived;
mod control;
mod error;
mod images;
mod media;
mod streaming;

pub use error::KvsError;
pub use streaming::session_router;

use super::auth::{AuthError, RouteAuth, Scope};
use super::ApiState;
use crate::store::{StoreError, StoreReader, StreamDetails};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

const REGION: &str = super::kinesis::REGION;
const ACCOUNT: &str = super::kinesis::ACCOUNT;

/// UpdateDataRetention changes how long the daemon keeps video (policy): admin. Tags are labels
/// that change no behaviour of the daemon: write, like records. Every other operation reads
/// (session URLs too: the player routes then take the session token instead). Refusals are
/// the service's NotAuthorizedException.
pub const AUTH: RouteAuth = RouteAuth {
    scope: |parts| match parts.uri.path() {
        "/updateDataRetention" => Scope::Admin,
        "/tagStream" | "/untagStream" => Scope::Write,
        _ => Scope::Read,
    },
    refuse: |e, _| {
        let message = match e {
            AuthError::Unrecognized => "a valid API token is required",
            AuthError::Denied => "the API token lacks the scope for this request",
        };
        let mut r = KvsError::NotAuthorized(message.into()).into_response();
        // The service answers 401 for both; 403 for a known token lacking the scope, as
        // every family does (boto3 goes by the error type).
        if e == AuthError::Denied {
            *r.status_mut() = axum::http::StatusCode::FORBIDDEN;
        }
        r
    },
};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/listStreams", post(control::list_streams))
        .route("/describeStream", post(control::describe_stream))
        .route("/getDataEndpoint", post(control::get_data_endpoint))
        .route("/updateDataRetention", post(control::update_data_retention))
        .route("/tagStream", post(control::tag_stream))
        .route("/untagStream", post(control::untag_stream))
        .route("/listTagsForStream", post(control::list_tags_for_stream))
        .route("/listFragments", post(archived::list_fragments))
        .route("/getClip", post(archived::get_clip))
        .route("/getImages", post(images::get_images))
        .merge(streaming::router())
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

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// A time range selector as ListFragments, GetClip and the streaming sessions take it.
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

/// `<scheme>://<Host>`: the daemon as the client reached it (data endpoints, session URLs);
/// the scheme is the listener's (`ApiState::scheme`).
fn base_url(scheme: &str, headers: &HeaderMap) -> Result<String, KvsError> {
    // The Host header as an authority (host[:port]) only, so it cannot inject a path.
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .filter(|a| a.as_str().find(['@']).is_none())
        .ok_or_else(|| KvsError::InvalidArgument("the request has no valid Host header".into()))?;
    Ok(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::archived::{ListFragmentsIn, MAX_FRAGMENTS};
    use super::control::ListStreamsIn;
    use super::*;

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
