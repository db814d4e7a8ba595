//! `POST /getImages` (kinesis-video-archived-media GetImages): one image per sampling time in
//! `[StartTimestamp, EndTimestamp]`, each from the key frame that starts the stored fragment
//! holding that time (docs/http-api.md#getimages). Times without a stored fragment get
//! `Error: NO_MEDIA`, a fragment that does not decode `MEDIA_ERROR`.

use super::{nanos, parse, seconds, KvsError, KvsResult, StreamRef};
use crate::api::ApiState;
use crate::playback::images::{self, FrameError};
use crate::store::{StoreError, StoreReader, TimeOrigin};
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The service's limits: a range of at most 300 s, a sampling interval of at least 200 ms,
/// pages of at most 25 images (a larger MaxResults still gets pages of 25), MaxResults 1..=100.
const MAX_RANGE_NS: i64 = 300 * 1_000_000_000;
const MIN_INTERVAL_MS: i64 = 200;
/// SamplingInterval is optional in the model; without it, one image every 3 s.
const DEFAULT_INTERVAL_MS: i64 = 3000;
const PAGE: u64 = 25;
const MAX_RESULTS: u64 = 100;
const DEFAULT_JPEG_QUALITY: u8 = 80;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetImagesIn {
    #[serde(flatten)]
    stream: StreamRef,
    image_selector_type: Option<String>,
    start_timestamp: Option<f64>,
    end_timestamp: Option<f64>,
    sampling_interval: Option<i64>,
    format: Option<String>,
    format_config: Option<HashMap<String, String>>,
    width_pixels: Option<i64>,
    height_pixels: Option<i64>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    origin: TimeOrigin,
    start: i64,
    end: i64,
    interval_ns: i64,
    format: images::Format,
    size: images::Size,
    page: u64,
}

impl Plan {
    fn check(req: &GetImagesIn) -> Result<Self, KvsError> {
        let origin = match req.image_selector_type.as_deref() {
            Some("PRODUCER_TIMESTAMP") => TimeOrigin::Producer,
            Some("SERVER_TIMESTAMP") => TimeOrigin::Server,
            None => return Err(KvsError::invalid("ImageSelectorType", "is required")),
            Some(other) => {
                return Err(KvsError::invalid(
                    "ImageSelectorType",
                    format!("`{other}` is not PRODUCER_TIMESTAMP or SERVER_TIMESTAMP"),
                ))
            }
        };
        let time = |field: &str, v: Option<f64>| {
            nanos(
                field,
                v.ok_or_else(|| KvsError::invalid(field, "is required"))?,
            )
        };
        let start = time("StartTimestamp", req.start_timestamp)?;
        let end = time("EndTimestamp", req.end_timestamp)?;
        if end < start {
            return Err(KvsError::invalid(
                "EndTimestamp",
                "is before StartTimestamp",
            ));
        }
        if end - start > MAX_RANGE_NS {
            return Err(KvsError::invalid(
                "EndTimestamp",
                "is more than 300 seconds after StartTimestamp",
            ));
        }
        let interval = req.sampling_interval.unwrap_or(DEFAULT_INTERVAL_MS);
        if interval < MIN_INTERVAL_MS {
            return Err(KvsError::invalid(
                "SamplingInterval",
                format!("{interval} ms is below the minimum of {MIN_INTERVAL_MS} ms"),
            ));
        }
        let quality = match &req.format_config {
            None => None,
            Some(c) => {
                if let Some(k) = c.keys().find(|k| *k != "JPEGQuality") {
                    return Err(KvsError::invalid(
                        "FormatConfig",
                        format!("`{k}` is not a known key (only JPEGQuality)"),
                    ));
                }
                match c.get("JPEGQuality") {
                    None => None,
                    Some(q) => Some(
                        q.parse::<u8>()
                            .ok()
                            .filter(|q| (1..=100).contains(q))
                            .ok_or_else(|| {
                                KvsError::invalid(
                                    "FormatConfig.JPEGQuality",
                                    format!("`{q}` is not an integer between 1 and 100"),
                                )
                            })?,
                    ),
                }
            }
        };
        let format = match req.format.as_deref() {
            Some("JPEG") => images::Format::Jpeg(quality.unwrap_or(DEFAULT_JPEG_QUALITY)),
            Some("PNG") => images::Format::Png,
            None => return Err(KvsError::invalid("Format", "is required")),
            Some(other) => {
                return Err(KvsError::invalid(
                    "Format",
                    format!("`{other}` is not JPEG or PNG"),
                ))
            }
        };
        let pixels = |field: &str, v: Option<i64>, max: u32| match v {
            None => Ok(None),
            Some(n) if (1..=i64::from(max)).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(KvsError::invalid(
                field,
                format!("{n} is not between 1 and {max}"),
            )),
        };
        let size = images::Size {
            width: pixels("WidthPixels", req.width_pixels, images::MAX_WIDTH)?,
            height: pixels("HeightPixels", req.height_pixels, images::MAX_HEIGHT)?,
        };
        let page = match req.max_results {
            None => PAGE,
            Some(n) if (1..=MAX_RESULTS as i64).contains(&n) => (n as u64).min(PAGE),
            Some(n) => {
                return Err(KvsError::invalid(
                    "MaxResults",
                    format!("{n} is not between 1 and {MAX_RESULTS}"),
                ))
            }
        };
        Ok(Plan {
            origin,
            start,
            end,
            interval_ns: interval * 1_000_000,
            format,
            size,
            page,
        })
    }

    /// The page's sampling times from `from` on, and the time the next page starts at.
    fn times(&self, from: i64) -> (Vec<i64>, Option<i64>) {
        let mut times = Vec::new();
        let mut t = from;
        while t <= self.end && (times.len() as u64) < self.page {
            times.push(t);
            t += self.interval_ns;
        }
        (times, (t <= self.end).then_some(t))
    }
}

/// NextToken: `1:<next sampling time ns>:<stream>` in standard base64 (the model's token
/// alphabet). The client sends the same request again with it, so the plan is rebuilt from
/// the request; the token only says where the next page starts.
fn token(next: i64, stream: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("1:{next}:{stream}"))
}

fn from_token(t: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(t).ok()?).ok()?;
    let rest = text.strip_prefix("1:")?;
    let (next, stream) = rest.split_once(':')?;
    Some((next.parse().ok()?, stream.to_string()))
}

/// What one sampling time got.
#[derive(Clone)]
enum Outcome {
    Image(Vec<u8>),
    NoMedia,
    MediaError,
}

/// `POST /getImages`.
pub(super) async fn get_images(State(state): State<ApiState>, body: Bytes) -> KvsResult {
    let req: GetImagesIn = parse(&body)?;
    let plan = Plan::check(&req)?;
    let named = req.stream.resolve()?;
    let from = match &req.next_token {
        None => plan.start,
        Some(t) => {
            let bad = || KvsError::invalid("NextToken", "not a token this service issued");
            let (next, stream) = from_token(t).ok_or_else(bad)?;
            if stream != named.name {
                return Err(KvsError::invalid(
                    "NextToken",
                    "was issued for another stream",
                ));
            }
            if !(plan.start..=plan.end).contains(&next) {
                return Err(KvsError::invalid(
                    "NextToken",
                    "lies outside StartTimestamp..EndTimestamp",
                ));
            }
            next
        }
    };
    let (times, next) = plan.times(from);
    let root = state.video.as_ref().map(|s| s.root().to_path_buf());
    // one decode slot for the whole page: a request decodes its images one after another
    let slot = images::decode_slot().await;
    let name = named.name.clone();
    let out = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let reader = match root.map(|r| StoreReader::open(&r)) {
            None | Some(Err(StoreError::NoStore(_))) => return Err(named.not_found()),
            Some(Err(e)) => return Err(KvsError::from(e)),
            Some(Ok(r)) => r,
        };
        named.details(Some(&reader))?;
        render(&reader, &named.name, &plan, &times)
    })
    .await
    .map_err(|e| KvsError::Internal(format!("the image task failed: {e}")))??;
    let images: Vec<Value> = out
        .into_iter()
        .map(|(t, outcome)| {
            let mut image = json!({ "TimeStamp": seconds(t) });
            match outcome {
                Outcome::Image(bytes) => {
                    image["ImageContent"] = base64::engine::general_purpose::STANDARD
                        .encode(bytes)
                        .into()
                }
                Outcome::NoMedia => image["Error"] = "NO_MEDIA".into(),
                Outcome::MediaError => image["Error"] = "MEDIA_ERROR".into(),
            }
            image
        })
        .collect();
    let mut reply = json!({ "Images": images });
    if let Some(next) = next {
        reply["NextToken"] = token(next, &name).into();
    }
    Ok(Json(reply))
}

/// Images for `times`; a fragment covering several times is decoded once.
fn render(
    reader: &StoreReader,
    stream: &str,
    plan: &Plan,
    times: &[i64],
) -> Result<Vec<(i64, Outcome)>, KvsError> {
    let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
        return Ok(Vec::new());
    };
    let fragments = images::fragments_covering(reader, stream, plan.origin, first, last)?;
    let mut decoded: HashMap<u64, Outcome> = HashMap::new();
    let mut out = Vec::with_capacity(times.len());
    for &t in times {
        // the newest fragment starting at or before t (fragments never overlap on one clock)
        let Some(f) = fragments
            .iter()
            .rev()
            .find(|f| images::covers(f, plan.origin, t))
        else {
            out.push((t, Outcome::NoMedia));
            continue;
        };
        let outcome = decoded.entry(f.fragment_number).or_insert_with(|| {
            match images::decode_key_frame(reader, f)
                .and_then(|p| images::encode(&p, plan.size, plan.format))
            {
                Ok(bytes) => Outcome::Image(bytes),
                // deleted by retention since the listing: no media any more
                Err(FrameError::Store(StoreError::FragmentGone { .. })) => Outcome::NoMedia,
                Err(e) => {
                    tracing::warn!("GetImages `{stream}` fragment {}: {e}", f.fragment_number);
                    Outcome::MediaError
                }
            }
        });
        out.push((t, outcome.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> Result<Plan, KvsError> {
        Plan::check(&parse::<GetImagesIn>(body.as_bytes())?)
    }

    const OK: &str = r#""StreamName":"cam","ImageSelectorType":"PRODUCER_TIMESTAMP",
        "StartTimestamp":100,"EndTimestamp":110,"SamplingInterval":1000,"Format":"JPEG""#;

    #[test]
    fn requests_are_checked_as_the_service_does() {
        let plan = req(&format!("{{{OK}}}")).unwrap();
        assert_eq!(plan.format, images::Format::Jpeg(80));
        assert_eq!(plan.page, 25);
        let (times, next) = plan.times(plan.start);
        assert_eq!(times.len(), 11, "both ends are sampling times");
        assert_eq!(next, None);
        for (body, field) in [
            (
                OK.replace("1000", "199"),
                "SamplingInterval: 199 ms is below",
            ),
            (OK.replace("JPEG", "GIF"), "Format: `GIF`"),
            (
                OK.replace("PRODUCER_TIMESTAMP", "ARRIVAL"),
                "ImageSelectorType:",
            ),
            (OK.replace("110", "401"), "EndTimestamp: is more than 300"),
            (OK.replace("110", "99"), "EndTimestamp: is before"),
            (OK.to_string() + r#","WidthPixels":0"#, "WidthPixels: 0"),
            (OK.to_string() + r#","HeightPixels":2161"#, "HeightPixels:"),
            (OK.to_string() + r#","MaxResults":101"#, "MaxResults:"),
            (
                OK.to_string() + r#","FormatConfig":{"JPEGQuality":"0"}"#,
                "FormatConfig.JPEGQuality:",
            ),
            (
                OK.to_string() + r#","FormatConfig":{"Quality":"5"}"#,
                "FormatConfig:",
            ),
            (OK.replace(r#""Format":"JPEG""#, r#""Format":7"#), "Format:"),
        ] {
            let e = req(&format!("{{{body}}}")).unwrap_err();
            assert!(
                matches!(&e, KvsError::InvalidArgument(m) if m.starts_with(field)),
                "{body}: {e:?}"
            );
        }
        let plan = req(&format!(
            r#"{{{OK},"MaxResults":100,"FormatConfig":{{"JPEGQuality":"55"}}}}"#
        ))
        .unwrap();
        assert_eq!((plan.page, plan.format), (25, images::Format::Jpeg(55)));
    }

    #[test]
    fn pages_continue_where_the_token_says() {
        let plan = req(&format!(r#"{{{OK},"MaxResults":4}}"#)).unwrap();
        let (times, next) = plan.times(plan.start);
        assert_eq!(times.len(), 4);
        let next = next.unwrap();
        assert_eq!(next, plan.start + 4 * plan.interval_ns);
        let t = token(next, "cam:x");
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
        assert_eq!(from_token(&t), Some((next, "cam:x".into())));
        assert_eq!(from_token("bm9wZQ=="), None);
        let (rest, _) = plan.times(next);
        assert_eq!(rest.len(), 4);
        let (last, done) = plan.times(plan.start + 8 * plan.interval_ns);
        assert_eq!((last.len(), done), (3, None));
    }
}
