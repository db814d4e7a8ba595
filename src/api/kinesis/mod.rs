//! Kinesis Data Streams JSON 1.1 (`POST /`, `X-Amz-Target: Kinesis_20131202.<Operation>`): field
//! names, base64 data, epoch-second timestamps, error `__type` names and statuses as the real
//! service, so aws-cli, boto3 and the AWS SDKs work with `--endpoint-url`.

mod error;
mod iterator;
mod limits;
mod ops;
mod request;

pub use error::KinesisError;
pub use iterator::{IteratorKey, IteratorKeyError, ShardIterator, DEFAULT_TTL_MS};
pub use limits::Limits;

use super::auth::AuthError;
use super::{ApiState, Scope};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

const TARGET_PREFIX: &str = "Kinesis_20131202.";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The account id in ARNs and messages (there is no account here).
pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "us-east-1";

pub async fn handle(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(op) = target.strip_prefix(TARGET_PREFIX) else {
        return KinesisError::unknown_operation().into_response();
    };
    let op = op.to_string();
    let scope = if ops::is_read_only(&op) {
        Scope::Read
    } else {
        Scope::Write
    };
    match state.auth.check(&headers, scope) {
        Ok(()) => {}
        Err(AuthError::Unrecognized) => return KinesisError::unrecognized_client().into_response(),
        Err(AuthError::Denied) => return KinesisError::access_denied(&op).into_response(),
    }
    if op == "PutRecords" {
        if let Some((stream, records)) = ops::fast_parse_put_records(&body) {
            return match ops::write_records(&state, stream, records).await {
                Ok(out) => {
                    let bytes = serde_json::to_vec(&out).unwrap_or_default();
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, CONTENT_TYPE)],
                        bytes,
                    )
                        .into_response()
                }
                Err(e) => e.into_response(),
            };
        }
    }
    let request: Value = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                return KinesisError::serialization(
                    "Start of structure or map found where not expected.",
                )
                .into_response()
            }
        }
    };
    let result = ops::dispatch(&state, &op, request).await;
    match result {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(operation = %op, "kinesis API: {}", e.message);
            }
            e.into_response()
        }
    }
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap_or_default()
    };
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response()
}

pub fn stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")
}
