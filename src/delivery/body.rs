//! What a delivery's objects are made of: a `BodyFormat` (JSON lines with a compression,
//! Parquet with a schema) makes one `BodyEncoder` per buffer; the buffer pushes each record's
//! data into it and takes the finished object body when it flushes.

use super::format::{Compression, JsonlBody};

/// A record the format cannot hold (e.g. not JSON, a required Parquet column missing). The
/// delivery writes it to the error prefix instead, in Firehose's error format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ConvertError {
    /// Firehose's error code, e.g. `DataFormatConversion.MalformedData`.
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("encoding the object body: {0}")]
    Io(#[from] std::io::Error),
}

/// One object being built. Contract: a `push` that fails with `PushError::Convert` leaves the
/// encoder exactly as it was (the record is not in the object).
pub trait BodyEncoder: Send {
    fn push(&mut self, data: &[u8]) -> Result<(), PushError>;
    /// Records pushed so far.
    fn records(&self) -> usize;
    /// Uncompressed bytes pushed so far (what `buffer_size` counts, as Firehose's hints).
    fn raw_bytes(&self) -> u64;
    /// Whether the object would hold any data (a Parquet object of heartbeat records only
    /// has no rows: such a batch is done without writing an object).
    fn has_rows(&self) -> bool {
        self.records() > 0
    }
    /// The finished object body.
    fn finish(self: Box<Self>) -> std::io::Result<Vec<u8>>;
}

/// The object format of a delivery.
pub trait BodyFormat: Send + Sync {
    fn encoder(&self) -> std::io::Result<Box<dyn BodyEncoder>>;
    /// Object name extension, with its dot (`.jsonl.gz`, `.parquet`).
    fn extension(&self) -> &'static str;
}

/// JSON lines, one record's data per line, compressed as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jsonl(pub Compression);

impl BodyFormat for Jsonl {
    fn encoder(&self) -> std::io::Result<Box<dyn BodyEncoder>> {
        Ok(Box::new(JsonlBody::new(self.0)?))
    }
    fn extension(&self) -> &'static str {
        self.0.jsonl_extension()
    }
}

impl BodyEncoder for JsonlBody {
    fn push(&mut self, data: &[u8]) -> Result<(), PushError> {
        JsonlBody::push(self, data).map_err(PushError::Io)
    }
    fn records(&self) -> usize {
        JsonlBody::records(self)
    }
    fn raw_bytes(&self) -> u64 {
        JsonlBody::raw_bytes(self)
    }
    fn finish(self: Box<Self>) -> std::io::Result<Vec<u8>> {
        JsonlBody::finish(*self)
    }
}
