//! The `kinesisvideo` control plane: ListStreams, DescribeStream, GetDataEndpoint,
//! UpdateDataRetention, TagStream, UntagStream and ListTagsForStream. GetDataEndpoint answers the
//! daemon's own base URL, so a client chains its data-plane calls back here. Retention and tag
//! changes are kept in the store's index (src/store/control.rs: how an API retention and the
//! config's `retention` take turns).

use super::{
    b64, base_url, check_max, parse, seconds, stream_arn, with_reader, KvsError, KvsResult, Named,
    StreamRef,
};
use crate::api::ApiState;
use crate::store::{
    RetentionChange, Store, StoreError, StoreReader, StreamDetails, MAX_TAGS, MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// ListStreams' page size limit (and default).
const MAX_STREAMS: u64 = 10_000;

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
        "Version": d.version.to_string(),
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

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListStreamsIn {
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

/// `POST /listStreams`: the cameras in the store, by name; NextToken is the last name returned.
pub(super) async fn list_streams(State(state): State<ApiState>, body: Bytes) -> KvsResult {
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
pub(super) async fn describe_stream(State(state): State<ApiState>, body: Bytes) -> KvsResult {
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
pub(super) async fn get_data_endpoint(
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
    let base = base_url(state.scheme, &headers)?;
    let named = req.stream.resolve()?;
    with_reader(&state, move |r| named.details(r).map(|_| ())).await?;
    Ok(Json(json!({ "DataEndpoint": base })))
}

/// Runs a change against the running store on a blocking thread, once the stream (and an ARN's
/// creation time) is checked.
async fn with_store<T: Send + 'static>(
    state: &ApiState,
    named: Named,
    f: impl FnOnce(&Store, &str) -> Result<T, KvsError> + Send + 'static,
) -> Result<T, KvsError> {
    let store = state.video.clone().ok_or_else(|| named.not_found())?;
    tokio::task::spawn_blocking(move || {
        let reader = match StoreReader::open(store.root()) {
            Ok(r) => r,
            Err(StoreError::NoStore(_)) => return Err(named.not_found()),
            Err(e) => return Err(e.into()),
        };
        named.details(Some(&reader))?;
        f(&store, &named.name)
    })
    .await
    .map_err(|e| KvsError::Internal(format!("the store task failed: {e}")))?
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateDataRetentionIn {
    #[serde(flatten)]
    stream: StreamRef,
    current_version: Option<String>,
    operation: Option<String>,
    data_retention_change_in_hours: Option<u64>,
}

/// `POST /updateDataRetention`: changes the retention in force by whole hours when CurrentVersion
/// is the stream's Version; the next retention pass applies it.
pub(super) async fn update_data_retention(State(state): State<ApiState>, body: Bytes) -> KvsResult {
    let req: UpdateDataRetentionIn = parse(&body)?;
    let named = req.stream.resolve()?;
    let version = req
        .current_version
        .ok_or_else(|| KvsError::invalid("CurrentVersion", "is required"))?;
    if version.is_empty()
        || version.len() > 64
        || !version.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(KvsError::invalid(
            "CurrentVersion",
            "must be 1 to 64 letters or digits",
        ));
    }
    let hours = match req.data_retention_change_in_hours {
        None => {
            return Err(KvsError::invalid(
                "DataRetentionChangeInHours",
                "is required",
            ))
        }
        Some(0) => {
            return Err(KvsError::invalid(
                "DataRetentionChangeInHours",
                "must be at least 1",
            ))
        }
        Some(h) => h,
    };
    let change = match req.operation.as_deref() {
        Some("INCREASE_DATA_RETENTION") => RetentionChange::Increase(hours),
        Some("DECREASE_DATA_RETENTION") => RetentionChange::Decrease(hours),
        other => {
            return Err(KvsError::invalid(
                "Operation",
                format!("{other:?} is not INCREASE_DATA_RETENTION or DECREASE_DATA_RETENTION"),
            ))
        }
    };
    with_store(&state, named, move |store, name| {
        Ok(store.update_retention(name, &version, change)?)
    })
    .await?;
    Ok(Json(json!({})))
}

/// A tag key or value as the service model allows: a length in characters and only letters,
/// digits, separators (spaces) and `_ . : / = + - @`.
fn check_tag(field: &str, s: &str, min: usize, max: usize) -> Result<(), KvsError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(KvsError::invalid(
            field,
            format!("`{s}` has {n} characters, not {min} to {max}"),
        ));
    }
    let allowed = |c: char| {
        c.is_alphanumeric()
            || c == ' '
            || (c.is_whitespace() && !c.is_control())
            || "_.:/=+-@".contains(c)
    };
    if let Some(c) = s.chars().find(|&c| !allowed(c)) {
        return Err(KvsError::invalid(
            field,
            format!("`{s}` holds {c:?}: only letters, digits, spaces and _.:/=+-@ are allowed"),
        ));
    }
    Ok(())
}

fn check_key(field: &str, key: &str) -> Result<(), KvsError> {
    check_tag(field, key, 1, MAX_TAG_KEY_CHARS)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagStreamIn {
    #[serde(flatten)]
    stream: StreamRef,
    tags: Option<BTreeMap<String, String>>,
}

/// `POST /tagStream`: adds or replaces tags; a stream holds at most 50.
pub(super) async fn tag_stream(State(state): State<ApiState>, body: Bytes) -> KvsResult {
    let req: TagStreamIn = parse(&body)?;
    let named = req.stream.resolve()?;
    let tags = req
        .tags
        .filter(|t| !t.is_empty())
        .ok_or_else(|| KvsError::invalid("Tags", "at least one tag is required"))?;
    if tags.len() > MAX_TAGS {
        return Err(KvsError::TagsPerResourceExceededLimit(format!(
            "{} tags given; a stream has at most {MAX_TAGS}",
            tags.len()
        )));
    }
    for (k, v) in &tags {
        check_key("Tags", k)?;
        check_tag(&format!("Tags.{k}"), v, 0, MAX_TAG_VALUE_CHARS)?;
    }
    let tags: Vec<(String, String)> = tags.into_iter().collect();
    with_store(&state, named, move |store, name| {
        Ok(store.tag_stream(name, &tags)?)
    })
    .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagStreamIn {
    #[serde(flatten)]
    stream: StreamRef,
    tag_key_list: Option<Vec<String>>,
}

/// `POST /untagStream`: removes tags by key (keys a stream does not have are ignored).
pub(super) async fn untag_stream(State(state): State<ApiState>, body: Bytes) -> KvsResult {
    let req: UntagStreamIn = parse(&body)?;
    let named = req.stream.resolve()?;
    let keys = req.tag_key_list.unwrap_or_default();
    if keys.is_empty() || keys.len() > MAX_TAGS {
        return Err(KvsError::invalid(
            "TagKeyList",
            format!("{} keys given, not 1 to {MAX_TAGS}", keys.len()),
        ));
    }
    for k in &keys {
        check_key("TagKeyList", k)?;
    }
    with_store(&state, named, move |store, name| {
        Ok(store.untag_stream(name, &keys)?)
    })
    .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsIn {
    #[serde(flatten)]
    stream: StreamRef,
    next_token: Option<String>,
}

/// `POST /listTagsForStream`: all tags in one page (there are at most 50), so no NextToken is
/// ever issued; an empty one is accepted.
pub(super) async fn list_tags_for_stream(State(state): State<ApiState>, body: Bytes) -> KvsResult {
    let req: ListTagsIn = parse(&body)?;
    let named = req.stream.resolve()?;
    if req.next_token.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(KvsError::invalid(
            "NextToken",
            "not a token this service issued",
        ));
    }
    let tags = with_reader(&state, move |r| {
        named.details(r)?;
        let reader = r.ok_or_else(|| named.not_found())?;
        Ok(reader.stream_tags(&named.name)?)
    })
    .await?;
    let tags: serde_json::Map<String, Value> =
        tags.into_iter().map(|(k, v)| (k, v.into())).collect();
    Ok(Json(json!({ "Tags": tags })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys_and_values_follow_the_service_model() {
        assert!(check_key("Tags", "site/room:1 @a=b+c-d_e.f").is_ok());
        assert!(check_key("Tags", "Größe 東京").is_ok());
        assert!(check_key("Tags", "").is_err());
        assert!(check_key("Tags", &"k".repeat(MAX_TAG_KEY_CHARS)).is_ok());
        assert!(check_key("Tags", &"k".repeat(MAX_TAG_KEY_CHARS + 1)).is_err());
        // characters, not bytes
        assert!(check_key("Tags", &"é".repeat(MAX_TAG_KEY_CHARS)).is_ok());
        let e = check_key("Tags", "semi;colon").unwrap_err();
        assert!(
            matches!(&e, KvsError::InvalidArgument(m) if m.starts_with("Tags:")),
            "{e:?}"
        );
        assert!(check_key("Tags", "tab\there").is_err());
        assert!(check_tag("Tags.k", "", 0, MAX_TAG_VALUE_CHARS).is_ok());
        assert!(check_tag(
            "Tags.k",
            &"v".repeat(MAX_TAG_VALUE_CHARS + 1),
            0,
            MAX_TAG_VALUE_CHARS
        )
        .is_err());
    }

    #[test]
    fn empty_requests_parse() {
        assert!(parse::<ListStreamsIn>(b"").is_ok());
        let e =
            parse::<UpdateDataRetentionIn>(br#"{"DataRetentionChangeInHours": -1}"#).unwrap_err();
        assert!(
            matches!(&e, KvsError::InvalidArgument(m) if m.starts_with("DataRetentionChangeInHours:")),
            "{e:?}"
        );
    }
}
