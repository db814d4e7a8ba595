//! Kinesis Video Streams errors in the service's REST-JSON shape: the HTTP status, the
//! `x-amzn-ErrorType` header (botocore reads the code from it) and `{"message"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvsError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotAuthorized(String),
    /// A request over the service's limits (GetClip: fragments or bytes in the clip).
    #[error("{0}")]
    ClientLimitExceeded(String),
    /// UpdateDataRetention's CurrentVersion is not the stream's version.
    #[error("{0}")]
    VersionMismatch(String),
    /// TagStream would leave a stream with more tags than the limit.
    #[error("{0}")]
    TagsPerResourceExceededLimit(String),
    /// The store could not be read (index or file I/O); logged, answered as a server fault.
    #[error("{0}")]
    Internal(String),
}

impl KvsError {
    pub fn stream_not_found(name: &str) -> Self {
        Self::ResourceNotFound(format!(
            "The requested stream {name} was not found or not available."
        ))
    }

    /// An argument that failed validation, naming the field as the service does.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(format!("{field}: {why}"))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::InvalidArgument(_) => "InvalidArgumentException",
            Self::NotAuthorized(_) => "NotAuthorizedException",
            Self::ClientLimitExceeded(_) => "ClientLimitExceededException",
            Self::VersionMismatch(_) => "VersionMismatchException",
            Self::TagsPerResourceExceededLimit(_) => "TagsPerResourceExceededLimitException",
            Self::Internal(_) => "InternalServerError",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::ResourceNotFound(_) => StatusCode::NOT_FOUND,
            Self::InvalidArgument(_)
            | Self::ClientLimitExceeded(_)
            | Self::VersionMismatch(_)
            | Self::TagsPerResourceExceededLimit(_) => StatusCode::BAD_REQUEST,
            Self::NotAuthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for KvsError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::UnknownCamera(name) => Self::stream_not_found(&name),
            e => {
                tracing::warn!("KVS API: store read failed: {e}");
                Self::Internal("the video store could not be read".into())
            }
        }
    }
}

impl From<crate::store::ControlError> for KvsError {
    fn from(e: crate::store::ControlError) -> Self {
        use crate::store::ControlError;
        match e {
            ControlError::VersionMismatch { .. } => Self::VersionMismatch(e.to_string()),
            ControlError::RetentionOutOfRange { .. } => {
                Self::invalid("DataRetentionChangeInHours", e)
            }
            ControlError::TooManyTags(_) => Self::TagsPerResourceExceededLimit(e.to_string()),
            ControlError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for KvsError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let mut r = (
            self.status(),
            axum::Json(serde_json::json!({ "message": self.to_string() })),
        )
            .into_response();
        r.headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_carry_the_type_header_and_a_message() {
        let r = KvsError::invalid("MaxResults", "must be between 1 and 1000").into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["x-amzn-ErrorType"], "InvalidArgumentException");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["message"], "MaxResults: must be between 1 and 1000");
        let r = KvsError::stream_not_found("cam").into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["x-amzn-ErrorType"], "ResourceNotFoundException");
    }
}
