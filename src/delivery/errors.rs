//! Records that cannot be delivered as data (no partition key, not convertible to the format)
//! go to `error_prefix` as JSON lines in Firehose's error format, never dropped.

use crate::clock::UnixNanos;
use base64::Engine;
use serde::Serialize;

/// Firehose's error output types (the `!{firehose:error-output-type}` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOutputType {
    /// Dynamic partitioning could not evaluate the prefix for the record.
    PartitioningFailed,
    /// The record could not be converted to the output format (e.g. Parquet).
    FormatConversionFailed,
    /// Anything else that kept the record out of a data object.
    ProcessingFailed,
}

impl ErrorOutputType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorOutputType::PartitioningFailed => "partitioning-failed",
            ErrorOutputType::FormatConversionFailed => "format-conversion-failed",
            ErrorOutputType::ProcessingFailed => "processing-failed",
        }
    }
}

/// One line of an error object, field names as Firehose writes them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord {
    pub attempts_made: u32,
    /// Arrival time in Unix milliseconds.
    pub arrival_timestamp: i64,
    pub error_code: String,
    pub error_message: String,
    /// The record's data, base64.
    pub raw_data: String,
}

impl ErrorRecord {
    /// `code` names the failure (Firehose's codes, e.g.
    /// `DynamicPartitioning.MetadataExtractionFailed`); the `ErrorOutputType` names the prefix.
    pub fn new(code: &str, message: impl Into<String>, arrival_ns: UnixNanos, data: &[u8]) -> Self {
        Self {
            attempts_made: 1,
            arrival_timestamp: arrival_ns.div_euclid(1_000_000),
            error_code: code.to_string(),
            error_message: message.into(),
            raw_data: base64::engine::general_purpose::STANDARD.encode(data),
        }
    }

    pub fn to_json_line(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an error record always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firehose_error_line_keeps_the_record() {
        let r = ErrorRecord::new(
            "DynamicPartitioning.MetadataExtractionFailed",
            "the record has no field `camera`",
            1_796_061_909_042_123_456,
            b"{\"not\":\"camera\"}",
        );
        let v: serde_json::Value = serde_json::from_slice(&r.to_json_line()).unwrap();
        assert_eq!(v["attemptsMade"], 1);
        assert_eq!(v["arrivalTimestamp"], 1_796_061_909_042i64);
        assert_eq!(
            v["errorCode"],
            "DynamicPartitioning.MetadataExtractionFailed"
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["rawData"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw, b"{\"not\":\"camera\"}");
        assert_eq!(
            ErrorOutputType::FormatConversionFailed.as_str(),
            "format-conversion-failed"
        );
    }
}
