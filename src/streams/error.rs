//! Errors of the shard stream. The message of the first three variants is what an AWS-style
//! client sees, so it follows the Kinesis wording.

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// -> ResourceNotFoundException
    #[error("{0}")]
    NotFound(String),
    /// -> ResourceInUseException
    #[error("{0}")]
    InUse(String),
    /// -> InvalidArgumentException
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt stream data: {0}")]
    Corrupt(String),
    #[error("corrupt stream data: {0}")]
    Record(#[from] super::segment::CursorError),
}

impl StreamError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        StreamError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn stream_not_found(name: &str) -> Self {
        StreamError::NotFound(format!(
            "Stream {name} under account 000000000000 not found."
        ))
    }

    pub(crate) fn shard_not_found(stream: &str, shard_id: &str) -> Self {
        StreamError::NotFound(format!(
            "Shard {shard_id} in stream {stream} under account 000000000000 not found."
        ))
    }

    /// A copy for fanning one failure out to several per-record results (io::Error is not Clone).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            StreamError::NotFound(m) => StreamError::NotFound(m.clone()),
            StreamError::InUse(m) => StreamError::InUse(m.clone()),
            StreamError::InvalidArgument(m) => StreamError::InvalidArgument(m.clone()),
            StreamError::Io { what, source } => StreamError::Io {
                what: what.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            StreamError::Corrupt(m) => StreamError::Corrupt(m.clone()),
            StreamError::Record(e) => StreamError::Corrupt(e.to_string()),
        }
    }
}

pub type Result<T, E = StreamError> = std::result::Result<T, E>;
