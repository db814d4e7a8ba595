//! Stored fragments as Matroska: `kinesis-video-archived-media` GetMediaForFragmentList and
//! `kinesis-video-media` GetMedia. Each fragment goes out as one MKV chunk of its own
//! (playback::mkv), written on a blocking thread into a bounded channel the response drains, so
//! memory stays at one fragment plus a few chunks whatever the client's pace. GetMedia then
//! follows the stream live, polling the index for new fragments.

use super::{nanos, parse, KvsError, Named, StreamRef};
use crate::api::ApiState;
use crate::lifecycle::Shutdown;
use crate::playback::mkv::{self, MkvError, Tracks};
use crate::playback::{streamed_body, BodyWriter};
use crate::store::{FragmentMeta, StoreError, StoreReader, TimeOrigin};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use serde::Deserialize;
use std::io::Write;
use std::time::Duration;

/// GetMediaForFragmentList's list size limit (service model: 1..1000 fragment numbers).
const MAX_LIST: usize = 1000;
/// Fragment numbers are decimal strings of at most 128 digits (service model).
const MAX_NUMBER_DIGITS: usize = 128;
/// The error code put in an error chunk's AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE tag when a
/// listed fragment is not in the store (the service documents an integer code, not its values).
const NOT_FOUND_CODE: &str = "404";
/// How often a live GetMedia looks for new fragments once it has sent all stored ones (the
/// index is the only channel from the recorder; a fragment lasts seconds, so 200 ms is small).
const LIVE_POLL: Duration = Duration::from_millis(200);
/// Fragments fetched from the index per query while catching up.
const BATCH: usize = 16;
/// How far back a timestamp selector looks for the fragment containing the timestamp (longer
/// than any fragment: the service caps them at 10 s).
const CONTAINING_WINDOW_NS: i64 = 60 * 1_000_000_000;
/// Fragments read from that window (enough for fragments down to 10 ms long).
const MAX_CANDIDATES: usize = 6000;

/// Answers with a MKV body (the service's content type for both operations).
fn mkv_response(body: axum::body::Body) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("video/webm"));
    response
}

/// A reader for the stream's store, opened on a blocking thread with `f` run on it; the reader
/// is returned too, for the thread that writes the body.
async fn open<T: Send + 'static>(
    state: &ApiState,
    named: Named,
    f: impl FnOnce(&StoreReader, &Named) -> Result<T, KvsError> + Send + 'static,
) -> Result<(StoreReader, Named, T), KvsError> {
    let root = state.video.as_ref().map(|s| s.root().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let reader = match root.map(|r| StoreReader::open(&r)) {
            None | Some(Err(StoreError::NoStore(_))) => return Err(named.not_found()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(r)) => r,
        };
        named.details(Some(&reader))?;
        let out = f(&reader, &named)?;
        Ok((reader, named, out))
    })
    .await
    .map_err(|e| KvsError::Internal(format!("the read task failed: {e}")))?
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FragmentListIn {
    #[serde(flatten)]
    stream: StreamRef,
    fragments: Option<Vec<String>>,
}

/// The listed numbers, checked as the service model constrains them. A number too large for the
/// store is kept as text: it names no fragment here.
fn fragment_numbers(list: Option<Vec<String>>) -> Result<Vec<(String, Option<u64>)>, KvsError> {
    let list = list.ok_or_else(|| KvsError::invalid("Fragments", "is required"))?;
    if list.is_empty() || list.len() > MAX_LIST {
        return Err(KvsError::invalid(
            "Fragments",
            format!("has {} entries, not between 1 and {MAX_LIST}", list.len()),
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, n)| {
            if n.is_empty() || n.len() > MAX_NUMBER_DIGITS || !n.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(KvsError::invalid(
                    &format!("Fragments[{i}]"),
                    format!("`{n}` is not a fragment number"),
                ));
            }
            let number = n.parse().ok();
            Ok((n, number))
        })
        .collect()
}

/// `POST /getMediaForFragmentList`: the listed fragments, in the order given, as MKV chunks
/// tagged with AWS_KINESISVIDEO_FRAGMENT_NUMBER, _SERVER_SIDE_TIMESTAMP and
/// _PRODUCER_SIDE_TIMESTAMP. A listed fragment that is not in the store (never was, or removed
/// by retention) becomes an error chunk (tags AWS_KINESISVIDEO_FRAGMENT_NUMBER,
/// _EXCEPTION_ERROR_CODE, _EXCEPTION_MESSAGE, as the service documents); when none of them is
/// there the answer is ResourceNotFoundException.
pub(super) async fn get_media_for_fragment_list(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Response, KvsError> {
    let req: FragmentListIn = parse(&body)?;
    let named = req.stream.resolve()?;
    let numbers = fragment_numbers(req.fragments)?;
    let (reader, named, list) = open(&state, named, move |reader, named| {
        let list = numbers
            .into_iter()
            .map(|(text, n)| {
                let meta = match n {
                    Some(n) => reader.fragment(&named.name, n)?,
                    None => None,
                };
                Ok((text, meta))
            })
            .collect::<Result<Vec<_>, KvsError>>()?;
        if list.iter().all(|(_, m)| m.is_none()) {
            return Err(KvsError::ResourceNotFound(
                "None of the requested fragments was found in the stream.".into(),
            ));
        }
        Ok(list)
    })
    .await?;
    let what = format!("GetMediaForFragmentList of `{}`", named.name);
    Ok(mkv_response(streamed_body(what, move |w| {
        write_fragment_list(&reader, &list, w)
    })))
}

fn write_fragment_list(
    reader: &StoreReader,
    list: &[(String, Option<FragmentMeta>)],
    w: &mut BodyWriter,
) -> Result<(), MkvError> {
    let mut tracks = Tracks::default();
    for (text, meta) in list {
        let bytes = match meta.as_ref().map(|f| reader.read_fragment(f)) {
            Some(Ok(bytes)) => bytes,
            // removed by retention since the lookup: reported like an unknown number
            None | Some(Err(StoreError::FragmentGone { .. })) => {
                w.write_all(&error_chunk(text))?;
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
        };
        let f = meta.as_ref().expect("read above");
        let track = tracks.get(reader, f.init_id)?;
        let before = [
            ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", text.clone()),
            (
                "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP",
                mkv::tag_seconds(f.server_ns),
            ),
            (
                "AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP",
                mkv::tag_seconds(f.producer_ns),
            ),
        ];
        mkv::write_chunk(w, track, f, &bytes, &before, &[])?;
    }
    Ok(())
}

/// A chunk with no media: an EBML header and a Segment holding only the exception tags.
fn error_chunk(number: &str) -> Vec<u8> {
    let mut out = mkv::segment_open();
    out.extend(mkv::tags(&[
        ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", number.to_string()),
        (
            "AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE",
            NOT_FOUND_CODE.into(),
        ),
        (
            "AWS_KINESISVIDEO_EXCEPTION_MESSAGE",
            format!("Fragment {number} was not found in the stream."),
        ),
    ]));
    out
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetMediaIn {
    #[serde(flatten)]
    stream: StreamRef,
    start_selector: Option<StartSelector>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartSelector {
    start_selector_type: Option<String>,
    after_fragment_number: Option<String>,
    start_timestamp: Option<f64>,
    continuation_token: Option<String>,
}

/// Where a GetMedia starts, before the index is consulted.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    /// The fragment after this number.
    After(u64),
    /// The fragment containing this time (or the first after it).
    At(TimeOrigin, i64),
    Now,
    Earliest,
}

const SELECTOR_TYPES: [&str; 6] = [
    "FRAGMENT_NUMBER",
    "SERVER_TIMESTAMP",
    "PRODUCER_TIMESTAMP",
    "NOW",
    "EARLIEST",
    "CONTINUATION_TOKEN",
];

fn number_field(field: &str, v: Option<String>) -> Result<u64, KvsError> {
    let v = v.ok_or_else(|| KvsError::invalid(field, "is required for this StartSelectorType"))?;
    if v.is_empty() || v.len() > MAX_NUMBER_DIGITS || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KvsError::invalid(
            field,
            format!("`{v}` is not a fragment number"),
        ));
    }
    // longer than any number here: after it comes nothing stored yet
    Ok(v.parse().unwrap_or(u64::MAX))
}

impl Start {
    fn from_selector(s: Option<StartSelector>) -> Result<Self, KvsError> {
        let s = s.ok_or_else(|| KvsError::invalid("StartSelector", "is required"))?;
        let time = |origin: TimeOrigin| -> Result<Start, KvsError> {
            let field = "StartSelector.StartTimestamp";
            let t = s.start_timestamp.ok_or_else(|| {
                KvsError::invalid(field, "is required for this StartSelectorType")
            })?;
            Ok(Start::At(origin, nanos(field, t)?))
        };
        match s.start_selector_type.as_deref() {
            None => Err(KvsError::invalid(
                "StartSelector.StartSelectorType",
                "is required",
            )),
            Some("FRAGMENT_NUMBER") => Ok(Start::After(number_field(
                "StartSelector.AfterFragmentNumber",
                s.after_fragment_number,
            )?)),
            // the token is the number of the last fragment sent
            Some("CONTINUATION_TOKEN") => Ok(Start::After(number_field(
                "StartSelector.ContinuationToken",
                s.continuation_token,
            )?)),
            Some("SERVER_TIMESTAMP") => time(TimeOrigin::Server),
            Some("PRODUCER_TIMESTAMP") => time(TimeOrigin::Producer),
            Some("NOW") => Ok(Start::Now),
            Some("EARLIEST") => Ok(Start::Earliest),
            Some(t) => Err(KvsError::invalid(
                "StartSelector.StartSelectorType",
                format!("`{t}` is not one of {}", SELECTOR_TYPES.join(", ")),
            )),
        }
    }

    /// The number the stream continues after (None: from the first fragment).
    fn resolve(self, reader: &StoreReader, stream: &str) -> Result<Option<u64>, KvsError> {
        let before = |f: &FragmentMeta| f.fragment_number.checked_sub(1);
        Ok(match self {
            Start::After(n) => Some(n),
            Start::Earliest => None,
            // the newest fragment, or (none yet) whatever comes first
            Start::Now => reader.last_fragment(stream)?.and_then(|f| before(&f)),
            Start::At(origin, t) => {
                let start = |f: &FragmentMeta| match origin {
                    TimeOrigin::Producer => f.producer_ns,
                    TimeOrigin::Server => f.server_ns,
                };
                // the fragment containing t: it started at most CONTAINING_WINDOW_NS earlier
                let earlier = reader.fragments_between(
                    stream,
                    origin,
                    t.saturating_sub(CONTAINING_WINDOW_NS),
                    t,
                    None,
                    MAX_CANDIDATES,
                )?;
                let containing = earlier.into_iter().find(|f| start(f) + f.duration_ns > t);
                let first_after = || reader.fragments_between(stream, origin, t, i64::MAX, None, 1);
                match containing.or(first_after()?.pop()) {
                    Some(f) => before(&f),
                    // nothing at or after the time yet: follow from the newest
                    None => reader.last_fragment(stream)?.map(|f| f.fragment_number),
                }
            }
        })
    }
}

/// `POST /getMedia`: MKV chunks from the selected fragment on, then new fragments as they are
/// recorded, until the client disconnects. Tags before each cluster:
/// AWS_KINESISVIDEO_FRAGMENT_NUMBER, _SERVER_TIMESTAMP, _PRODUCER_TIMESTAMP; after it:
/// AWS_KINESISVIDEO_MILLIS_BEHIND_NOW and AWS_KINESISVIDEO_CONTINUATION_TOKEN (the fragment's
/// number: a CONTINUATION_TOKEN selector resumes after it).
pub(super) async fn get_media(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Response, KvsError> {
    let req: GetMediaIn = parse(&body)?;
    let named = req.stream.resolve()?;
    let start = Start::from_selector(req.start_selector)?;
    let (reader, named, after) = open(&state, named, move |reader, named| {
        start.resolve(reader, &named.name)
    })
    .await?;
    let (clock, shutdown) = (state.clock.clone(), state.shutdown.clone());
    let what = format!("GetMedia of `{}`", named.name);
    Ok(mkv_response(streamed_body(what, move |w| {
        follow(&reader, &named.name, after, w, &shutdown, || clock.now_ns())
    })))
}

/// Sends every fragment numbered above `after`, oldest first, then waits for new ones; returns
/// when the client is gone or the server shuts down (the body then ends cleanly).
fn follow(
    reader: &StoreReader,
    stream: &str,
    mut after: Option<u64>,
    w: &mut BodyWriter,
    shutdown: &Shutdown,
    now_ns: impl Fn() -> i64,
) -> Result<(), MkvError> {
    let mut tracks = Tracks::default();
    loop {
        if shutdown.is_triggered() {
            return Ok(());
        }
        let batch = match reader.fragments_between(
            stream,
            TimeOrigin::Server,
            i64::MIN,
            i64::MAX,
            after,
            BATCH,
        ) {
            Ok(b) => b,
            // the camera was removed from the store: the stream ends
            Err(StoreError::UnknownCamera(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if batch.is_empty() {
            if w.is_closed() || shutdown.wait(LIVE_POLL) {
                return Ok(());
            }
            continue;
        }
        for f in batch {
            after = Some(f.fragment_number);
            let bytes = match reader.read_fragment(&f) {
                Ok(b) => b,
                // removed by retention before we got to it: skipped, as the service skips
                // expired data
                Err(StoreError::FragmentGone { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let track = tracks.get(reader, f.init_id)?;
            let number = f.fragment_number.to_string();
            let before = [
                ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", number.clone()),
                (
                    "AWS_KINESISVIDEO_SERVER_TIMESTAMP",
                    mkv::tag_seconds(f.server_ns),
                ),
                (
                    "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP",
                    mkv::tag_seconds(f.producer_ns),
                ),
            ];
            let behind_ms = (now_ns() - f.server_ns).max(0) / 1_000_000;
            let after_tags = [
                ("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", behind_ms.to_string()),
                ("AWS_KINESISVIDEO_CONTINUATION_TOKEN", number),
            ];
            mkv::write_chunk(w, track, &f, &bytes, &before, &after_tags)?;
            // a live consumer gets each fragment as soon as it is recorded
            w.flush()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_selectors_are_checked_and_named() {
        let sel = |json: &str| {
            let req: GetMediaIn = parse(json.as_bytes()).unwrap();
            Start::from_selector(req.start_selector)
        };
        assert_eq!(
            sel(
                r#"{"StartSelector": {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": "41"}}"#
            ),
            Ok(Start::After(41))
        );
        assert_eq!(
            sel(
                r#"{"StartSelector": {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": "7"}}"#
            ),
            Ok(Start::After(7))
        );
        assert_eq!(
            sel(
                r#"{"StartSelector": {"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": 1.5}}"#
            ),
            Ok(Start::At(TimeOrigin::Producer, 1_500_000_000))
        );
        assert_eq!(
            sel(r#"{"StartSelector": {"StartSelectorType": "NOW"}}"#),
            Ok(Start::Now)
        );
        assert_eq!(
            sel(r#"{"StartSelector": {"StartSelectorType": "EARLIEST"}}"#),
            Ok(Start::Earliest)
        );
        for (json, field) in [
            (r#"{}"#, "StartSelector:"),
            (
                r#"{"StartSelector": {}}"#,
                "StartSelector.StartSelectorType:",
            ),
            (
                r#"{"StartSelector": {"StartSelectorType": "LATEST"}}"#,
                "StartSelector.StartSelectorType:",
            ),
            (
                r#"{"StartSelector": {"StartSelectorType": "FRAGMENT_NUMBER"}}"#,
                "StartSelector.AfterFragmentNumber:",
            ),
            (
                r#"{"StartSelector": {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": "1x"}}"#,
                "StartSelector.AfterFragmentNumber:",
            ),
            (
                r#"{"StartSelector": {"StartSelectorType": "CONTINUATION_TOKEN"}}"#,
                "StartSelector.ContinuationToken:",
            ),
            (
                r#"{"StartSelector": {"StartSelectorType": "SERVER_TIMESTAMP"}}"#,
                "StartSelector.StartTimestamp:",
            ),
        ] {
            let e = sel(json).unwrap_err();
            assert!(
                matches!(&e, KvsError::InvalidArgument(m) if m.starts_with(field)),
                "{json}: {e:?}"
            );
        }
        let e = parse::<GetMediaIn>(br#"{"StartSelector": {"StartTimestamp": "x"}}"#).unwrap_err();
        assert!(
            matches!(&e, KvsError::InvalidArgument(m) if m.starts_with("StartSelector.StartTimestamp")),
            "{e:?}"
        );
    }

    #[test]
    fn fragment_lists_are_checked_as_the_service_model_says() {
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            fragment_numbers(list(&[
                "7",
                "91343852333181432392682062607743920146264309335"
            ]))
            .unwrap(),
            vec![
                ("7".to_string(), Some(7)),
                (
                    "91343852333181432392682062607743920146264309335".to_string(),
                    None
                )
            ]
        );
        for (bad, field) in [
            (None, "Fragments:"),
            (list(&[]), "Fragments:"),
            (list(&["1", "x"]), "Fragments[1]:"),
            (list(&["-1"]), "Fragments[0]:"),
            (list(&[""]), "Fragments[0]:"),
        ] {
            let e = fragment_numbers(bad).unwrap_err();
            assert!(
                matches!(&e, KvsError::InvalidArgument(m) if m.starts_with(field)),
                "{e:?}"
            );
        }
        let many = vec!["1".to_string(); MAX_LIST + 1];
        assert!(fragment_numbers(Some(many)).is_err());
        let e = parse::<FragmentListIn>(br#"{"StreamName": "cam", "Fragments": "1"}"#).unwrap_err();
        assert!(
            matches!(&e, KvsError::InvalidArgument(m) if m.starts_with("Fragments")),
            "{e:?}"
        );
    }
}
