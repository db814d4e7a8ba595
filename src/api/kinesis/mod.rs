//! Kinesis Data Streams JSON 1.1 (`POST /`, `X-Amz-Target: Kinesis_20131202.<Operation>`): field
//! names, base64 data, epoch-second timestamps, error `__type` names and statuses as the real
//! service, so aws-cli, boto3 and the AWS SDKs work with `--endpoint-url`.

mod cbor;
mod error;
mod iterator;
mod limits;
pub(crate) mod ops;
pub(crate) mod request;

pub use error::KinesisError;
pub use iterator::{IteratorKey, IteratorKeyError, ShardIterator, DEFAULT_TTL_MS};
pub use limits::Limits;

use super::auth::{AuthError, RouteAuth};
use super::body::{read_limited, BodyError};
use super::{ApiState, Scope};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

const TARGET_PREFIX: &str = "Kinesis_20131202.";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
pub use cbor::CONTENT_TYPE as CBOR_CONTENT_TYPE;
/// The account id in ARNs and messages (there is no account here).
pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "us-east-1";

/// Request body limits per operation. The service limits decoded data (PutRecords: 5 MiB of data
/// and partition keys; a record: 1 MiB); base64 in JSON adds a third, plus field names.
pub const PUT_RECORDS_BODY_LIMIT: usize = 8 * 1024 * 1024;
pub const PUT_RECORD_BODY_LIMIT: usize = 2 * 1024 * 1024;
pub const OTHER_BODY_LIMIT: usize = 1024 * 1024;

pub fn body_limit(op: &str) -> usize {
    match op {
        "PutRecords" => PUT_RECORDS_BODY_LIMIT,
        "PutRecord" => PUT_RECORD_BODY_LIMIT,
        _ => OTHER_BODY_LIMIT,
    }
}

/// The wire format of a request, and so of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Json,
    Cbor,
}

impl Protocol {
    fn of(headers: &HeaderMap) -> Self {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case(CBOR_CONTENT_TYPE) {
            Protocol::Cbor
        } else {
            Protocol::Json
        }
    }

    pub(crate) fn respond(self, status: StatusCode, body: &Value) -> Response {
        match self {
            Protocol::Json => json_response(status, body),
            Protocol::Cbor => (
                status,
                [(header::CONTENT_TYPE, CBOR_CONTENT_TYPE)],
                cbor::encode(body),
            )
                .into_response(),
        }
    }
}

/// The operation named by `X-Amz-Target`, if it is one of ours.
fn operation(headers: &HeaderMap) -> Option<&str> {
    super::amz_operation(headers, TARGET_PREFIX)
}

/// Kinesis authorization: read scope for read-only operations, admin for creating and deleting
/// streams and changing their retention, write for the rest (records in; unknown operations,
/// which then get UnknownOperationException); refusals are the service's errors in the
/// request's protocol.
pub const AUTH: RouteAuth = RouteAuth {
    scope: |parts| match operation(&parts.headers) {
        Some(op) if ops::is_read_only(op) => Scope::Read,
        Some(op) if ops::is_admin(op) => Scope::Admin,
        _ => Scope::Write,
    },
    refuse: |e, parts| {
        let proto = Protocol::of(&parts.headers);
        match e {
            AuthError::Unrecognized => KinesisError::unrecognized_client().respond(proto),
            AuthError::Denied => KinesisError::access_denied(
                operation(&parts.headers).unwrap_or("this operation"),
                (AUTH.scope)(parts),
            )
            .respond(proto),
        }
    },
};

pub async fn handle(State(state): State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    let proto = Protocol::of(&headers);
    let Some(op) = operation(&headers) else {
        return KinesisError::unknown_operation().respond(proto);
    };
    let op = op.to_string();
    // Authorized by `AUTH` (the api router's middleware) before we got here.
    let body = match read_limited(&headers, body, body_limit(&op), state.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge { limit }) => {
            return KinesisError::body_too_large(&op, limit).respond(proto)
        }
        Err(BodyError::Timeout(t)) => return KinesisError::body_timeout(t).respond(proto),
        Err(e @ BodyError::Read(_)) => {
            tracing::debug!(operation = %op, "kinesis API: {e}");
            return KinesisError::serialization(e.to_string()).respond(proto);
        }
    };
    if op == "PutRecords" && proto == Protocol::Json {
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
                Err(e) => e.respond(proto),
            };
        }
    }
    let request: Value = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        let parsed = match proto {
            Protocol::Json => match serde_json::from_slice(&body) {
                Ok(v @ Value::Object(_)) => Ok(v),
                Ok(_) | Err(_) => Err(KinesisError::serialization(
                    "Start of structure or map found where not expected.",
                )),
            },
            Protocol::Cbor => cbor::decode(&body),
        };
        match parsed {
            Ok(v) => v,
            Err(e) => return e.respond(proto),
        }
    };
    let result = ops::dispatch(&state, &op, request).await;
    match result {
        Ok(body) => proto.respond(StatusCode::OK, &body),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(operation = %op, "kinesis API: {}", e.message);
            }
            e.respond(proto)
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
