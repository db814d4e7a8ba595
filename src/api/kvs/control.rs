//! The `kinesisvideo` control plane: ListStreams, DescribeStream, GetDataEndpoint. GetDataEndpoint
//! answers the daemon's own base URL, so a client chains its data-plane calls back here.

use super::{
    b64, check_max, parse, seconds, stream_arn, with_reader, KvsError, KvsResult, StreamRef,
};
use crate::api::ApiState;
use crate::store::StreamDetails;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

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
