//! Kinesis error responses: HTTP status, `x-amzn-ErrorType` and `{"__type", "message"}`.

use super::{Protocol, ACCOUNT};
use crate::streams::StreamError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisError {
    pub kind: &'static str,
    pub message: String,
    pub status: StatusCode,
}

impl KinesisError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: StatusCode::BAD_REQUEST,
        }
    }
    pub fn unknown_operation() -> Self {
        Self::new("UnknownOperationException", "")
    }
    pub fn serialization(msg: impl Into<String>) -> Self {
        Self::new("SerializationException", msg)
    }
    /// One constraint violation, worded as the real service does.
    pub fn validation(field: &str, value: &str, constraint: &str) -> Self {
        Self::new(
            "ValidationException",
            format!("1 validation error detected: Value {value} at '{field}' failed to satisfy constraint: {constraint}"),
        )
    }
    pub fn missing(field: &str) -> Self {
        Self::validation(field, "null", "Member must not be null")
    }
    pub fn invalid_argument(msg: impl Into<String>) -> Self {
        Self::new("InvalidArgumentException", msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", msg)
    }
    pub fn stream_not_found(stream: &str) -> Self {
        Self::not_found(format!(
            "Stream {stream} under account {ACCOUNT} not found."
        ))
    }
    pub fn in_use(msg: impl Into<String>) -> Self {
        Self::new("ResourceInUseException", msg)
    }
    pub fn limit_exceeded(msg: impl Into<String>) -> Self {
        Self::new("LimitExceededException", msg)
    }
    pub fn expired_iterator(msg: impl Into<String>) -> Self {
        Self::new("ExpiredIteratorException", msg)
    }
    pub fn throughput(stream: &str, shard: &str) -> Self {
        Self::new(
            "ProvisionedThroughputExceededException",
            format!("Rate exceeded for shard {shard} in stream {stream} under account {ACCOUNT}."),
        )
    }
    /// 401 and 403 (the real services answer 400; SDKs go by `__type`, and one status pair
    /// across every route family is what operators and proxies see).
    pub fn unrecognized_client() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            ..Self::new(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        }
    }
    pub fn access_denied(op: &str, needs: crate::api::Scope) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            ..Self::new(
                "AccessDeniedException",
                format!(
                    "The token is not authorized to perform {op} (needs scope {}).",
                    needs.name()
                ),
            )
        }
    }
    /// A body over the operation's limit: the service's error shape, HTTP 413.
    pub fn body_too_large(op: &str, limit: usize) -> Self {
        let what = match op {
            "PutRecords" => " (at most 500 records and 5 MiB of data and partition keys)",
            "PutRecord" => " (a record holds at most 1 MiB of data and partition key)",
            _ => "",
        };
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..Self::invalid_argument(format!(
                "The request body exceeds the {limit}-byte limit of {op}{what}."
            ))
        }
    }
    pub fn body_timeout(t: std::time::Duration) -> Self {
        Self {
            status: StatusCode::REQUEST_TIMEOUT,
            ..Self::new(
                "RequestTimeoutException",
                format!("The request body was not received within {t:?}."),
            )
        }
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self {
            kind: "InternalFailure",
            message: msg.into(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps a store error; `stream` names the stream for not-found messages.
    pub fn from_store(e: StreamError) -> Self {
        match e {
            StreamError::NotFound(m) => Self::not_found(m),
            StreamError::InUse(m) => Self::in_use(m),
            StreamError::InvalidArgument(m) => Self::invalid_argument(m),
            other => Self::internal(other.to_string()),
        }
    }
}

impl KinesisError {
    /// The error in the request's wire format: `{"__type", "message"}` (JSON or CBOR) and the
    /// `x-amzn-ErrorType` header.
    pub fn respond(self, proto: Protocol) -> Response {
        let mut r = proto.respond(
            self.status,
            &serde_json::json!({ "__type": self.kind, "message": self.message }),
        );
        if let Ok(v) = self.kind.parse() {
            r.headers_mut().insert("x-amzn-ErrorType", v);
        }
        r
    }
}

impl IntoResponse for KinesisError {
    fn into_response(self) -> Response {
        self.respond(Protocol::Json)
    }
}
