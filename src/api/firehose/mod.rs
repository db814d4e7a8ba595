//! Amazon Data Firehose JSON 1.1 (`POST /`, `X-Amz-Target: Firehose_20150804.<Operation>`) on
//! the one listener, so programs on the device can push into a delivery with a stock `firehose`
//! client: PutRecord, PutRecordBatch, ListDeliveryStreams, DescribeDeliveryStream. A delivery
//! (`[[delivery]]`) reads a shard stream; putting into it appends to that stream (docs/delivery.md,
//! "Firehose-compatible ingest"). It shares the Kinesis route's auth, error shape and body reading:
//! errors are `KinesisError`s, which are the `{"__type", "message"}` shape of both services.

mod describe;
mod ops;

use super::auth::{AuthError, RouteAuth};
use super::body::{read_limited, BodyError};
use super::kinesis::{KinesisError, Protocol};
use super::{ApiState, Scope};
use crate::clock::UnixNanos;
use crate::config::DeliveryConfig;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::collections::BTreeMap;

pub const TARGET_PREFIX: &str = "Firehose_20150804.";

/// Request body limits per operation, on the encoded body. The service limits decoded data
/// (PutRecordBatch: 4 MiB; a record: 1,000 KiB); base64 in JSON adds a third plus field names,
/// and the body must be read whole to answer over-limit data with the service's own errors.
pub const PUT_RECORD_BATCH_BODY_LIMIT: usize = 8 * 1024 * 1024;
pub const PUT_RECORD_BODY_LIMIT: usize = 2 * 1024 * 1024;

fn body_limit(op: &str) -> usize {
    match op {
        "PutRecordBatch" => PUT_RECORD_BATCH_BODY_LIMIT,
        "PutRecord" => PUT_RECORD_BODY_LIMIT,
        _ => super::kinesis::OTHER_BODY_LIMIT,
    }
}

/// Whether a request is for this service (else it is Kinesis's, which answers unknown targets).
pub fn targets(headers: &HeaderMap) -> bool {
    operation(headers).is_some()
}

fn operation(headers: &HeaderMap) -> Option<&str> {
    super::amz_operation(headers, TARGET_PREFIX)
}

/// Read scope for List/Describe, write for the puts (and anything unknown); refusals are the
/// same errors the Kinesis API gives, in JSON.
pub const AUTH: RouteAuth = RouteAuth {
    scope: |parts| match operation(&parts.headers) {
        Some(op) if ops::is_read_only(op) => Scope::Read,
        _ => Scope::Write,
    },
    refuse: |e, parts| match e {
        AuthError::Unrecognized => KinesisError::unrecognized_client().respond(Protocol::Json),
        AuthError::Denied => KinesisError::access_denied(
            operation(&parts.headers).unwrap_or("this operation"),
            (AUTH.scope)(parts),
        )
        .respond(Protocol::Json),
    },
};

/// The delivery streams served, from `[[delivery]]` (built once at start; the config is static).
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Sorted by name, as ListDeliveryStreams pages through them.
    streams: BTreeMap<String, DeliveryConfig>,
    /// When the daemon loaded them: a delivery exists from then on (CreateTimestamp).
    created_ns: UnixNanos,
}

impl Deliveries {
    pub fn new(configs: &[DeliveryConfig], created_ns: UnixNanos) -> Self {
        Self {
            streams: configs
                .iter()
                .map(|c| (c.name.clone(), c.clone()))
                .collect(),
            created_ns,
        }
    }

    /// The deliveries of a reloaded config; the API has served delivery streams since the
    /// first load (CreateTimestamp).
    pub fn reloaded(&self, configs: &[DeliveryConfig]) -> Self {
        Self::new(configs, self.created_ns)
    }

    fn get(&self, name: &str) -> Option<&DeliveryConfig> {
        self.streams.get(name)
    }
}

/// Firehose's ARN for a delivery, with the region and account the Kinesis ARNs use.
pub fn delivery_stream_arn(name: &str) -> String {
    format!(
        "arn:aws:firehose:{}:{}:deliverystream/{name}",
        super::kinesis::REGION,
        super::kinesis::ACCOUNT
    )
}

/// A body over the operation's limit: HTTP 413 with the service's error shape.
fn body_too_large(op: &str, limit: usize) -> KinesisError {
    let what = match op {
        "PutRecordBatch" => " (at most 500 records and 4 MiB of data)",
        "PutRecord" => " (a record holds at most 1,000 KiB of data)",
        _ => "",
    };
    KinesisError {
        kind: "InvalidArgumentException",
        message: format!("The request body exceeds the {limit}-byte limit of {op}{what}."),
        status: StatusCode::PAYLOAD_TOO_LARGE,
    }
}

pub async fn handle(State(state): State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    let proto = Protocol::Json;
    let Some(op) = operation(&headers).map(str::to_string) else {
        return KinesisError::unknown_operation().respond(proto);
    };
    // Authorized by `AUTH` (the api router's middleware) before we got here.
    let body = match read_limited(&headers, body, body_limit(&op), state.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge { limit }) => return body_too_large(&op, limit).respond(proto),
        Err(BodyError::Timeout(t)) => return KinesisError::body_timeout(t).respond(proto),
        Err(e @ BodyError::Read(_)) => {
            tracing::debug!(operation = %op, "firehose API: {e}");
            return KinesisError::serialization(e.to_string()).respond(proto);
        }
    };
    let request: Value = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                return KinesisError::serialization(
                    "Start of structure or map found where not expected.",
                )
                .respond(proto)
            }
        }
    };
    match ops::dispatch(&state, &op, request).await {
        Ok(body) => proto.respond(StatusCode::OK, &body),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(operation = %op, "firehose API: {}", e.message);
            }
            e.respond(proto)
        }
    }
}

/// A `[[delivery]]` from its TOML keys, reading the stream `detections` (unit tests).
#[cfg(test)]
fn test_delivery(keys: &str) -> DeliveryConfig {
    crate::config::Config::parse(&format!(
        "[agent]\ndata_dir = \"/nonexistent\"\n[[stream]]\nname = \"detections\"\nshards = 2\n[[delivery]]\n{keys}"
    ))
    .unwrap()
    .deliveries
    .remove(0)
}
