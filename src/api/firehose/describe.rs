//! DeliveryStreamDescription of a `[[delivery]]`, in the model's fields only: a delivery is a
//! DirectPut stream with one ExtendedS3 destination (a `dir` destination included).

use crate::api::kinesis::ACCOUNT;
use crate::clock::UnixNanos;
use crate::config::{DeliveryConfig, DeliveryFormat, DestinationConfig};
use crate::delivery::{Compression, Prefix, PrefixKind};
use serde_json::{json, Value};

/// Each delivery has exactly one destination, with the id Firehose gives the first.
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// The bucket a `dir` destination reports: its objects are on this device, in no bucket. The
/// model allows no other field to say so (docs/delivery.md).
pub const LOCAL_BUCKET: &str = "local";

/// `RoleARN` is required by the model; vidgest assumes no role (it uses the destination's own
/// credentials), so this names none that exists.
fn role_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/vidgest-delivery")
}

/// Firehose's CompressionFormat of a JSON lines object. zstd has no value in the model: it is
/// reported as `ZSTD` (SDKs keep unknown enum values as they are).
fn compression_format(c: Compression) -> &'static str {
    match c {
        Compression::None => "UNCOMPRESSED",
        Compression::Gzip => "GZIP",
        Compression::Snappy => "Snappy",
        Compression::Zstd => "ZSTD",
    }
}

/// ParquetSerDe's column compression (zstd likewise outside the model's values).
fn parquet_compression(c: Compression) -> &'static str {
    match c {
        Compression::None => "UNCOMPRESSED",
        Compression::Gzip => "GZIP",
        Compression::Snappy => "SNAPPY",
        Compression::Zstd => "ZSTD",
    }
}

fn buffering_hints(d: &DeliveryConfig) -> Value {
    const MIB: u64 = 1 << 20;
    let mbs = ((d.buffer_size.0 + MIB / 2) / MIB).clamp(1, 128);
    let secs = d.buffer_interval.0.as_secs().min(900);
    json!({ "SizeInMBs": mbs, "IntervalInSeconds": secs })
}

/// The fields dynamic partitioning reads, as Firehose's jq metadata extraction would name them.
fn partition_fields(d: &DeliveryConfig) -> Vec<String> {
    let mut fields = Prefix::parse(d.prefix.as_deref(), &d.name, PrefixKind::Data)
        .map(|p| p.partition_fields())
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    fields.retain(|f| seen.insert(f.clone()));
    fields
}

fn s3_destination(d: &DeliveryConfig) -> Value {
    let (bucket, encryption) = match &d.destination {
        DestinationConfig::Dir(_) => (
            LOCAL_BUCKET,
            json!({ "NoEncryptionConfig": "NoEncryption" }),
        ),
        DestinationConfig::S3(s3) => {
            let kms = (s3.sse.as_deref() == Some("aws:kms"))
                .then_some(s3.kms_key_id.as_deref())
                .flatten();
            let encryption = match kms {
                Some(key) => json!({ "KMSEncryptionConfig": { "AWSKMSKeyARN": key } }),
                None => json!({ "NoEncryptionConfig": "NoEncryption" }),
            };
            (s3.bucket.as_str(), encryption)
        }
    };
    let compression = d.compression();
    let mut out = json!({
        "RoleARN": role_arn(),
        "BucketARN": format!("arn:aws:s3:::{bucket}"),
        "Prefix": d.prefix.clone().unwrap_or_else(|| format!("{}/!{{timestamp:yyyy/MM/dd/HH/}}", d.name)),
        "ErrorOutputPrefix": d.error_prefix.clone().unwrap_or_else(|| d.default_error_prefix()),
        "BufferingHints": buffering_hints(d),
        "EncryptionConfiguration": encryption,
        "CloudWatchLoggingOptions": { "Enabled": false },
        "S3BackupMode": "Disabled",
    });
    match d.format {
        DeliveryFormat::Jsonl => {
            out["CompressionFormat"] = json!(compression_format(compression));
            out["FileExtension"] = json!(compression.jsonl_extension());
        }
        DeliveryFormat::Parquet => {
            // As Firehose with record format conversion: the object is not compressed again,
            // the columns are.
            out["CompressionFormat"] = json!("UNCOMPRESSED");
            out["DataFormatConversionConfiguration"] = json!({
                "Enabled": true,
                "InputFormatConfiguration": { "Deserializer": { "OpenXJsonSerDe": {} } },
                "OutputFormatConfiguration": {
                    "Serializer": { "ParquetSerDe": { "Compression": parquet_compression(compression) } }
                },
            });
        }
    }
    let fields = partition_fields(d);
    if !fields.is_empty() {
        let query = fields
            .iter()
            .map(|f| format!("\"{f}\":.{f}"))
            .collect::<Vec<_>>()
            .join(",");
        out["DynamicPartitioningConfiguration"] = json!({ "Enabled": true });
        out["ProcessingConfiguration"] = json!({
            "Enabled": true,
            "Processors": [{
                "Type": "MetadataExtraction",
                "Parameters": [
                    { "ParameterName": "MetadataExtractionQuery", "ParameterValue": format!("{{{query}}}") },
                    { "ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6" },
                ],
            }],
        });
    }
    out
}

/// The description; `after` is ExclusiveStartDestinationId (the one destination is listed only
/// when it comes after it).
pub fn describe(d: &DeliveryConfig, created_ns: UnixNanos, after: Option<&str>) -> Value {
    let destinations: Vec<Value> = if after.is_none_or(|a| DESTINATION_ID > a) {
        vec![json!({
            "DestinationId": DESTINATION_ID,
            "ExtendedS3DestinationDescription": s3_destination(d),
        })]
    } else {
        Vec::new()
    };
    json!({
        "DeliveryStreamName": d.name,
        "DeliveryStreamARN": super::delivery_stream_arn(&d.name),
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamEncryptionConfiguration": { "Status": "DISABLED" },
        "DeliveryStreamType": "DirectPut",
        "VersionId": "1",
        // Millisecond precision, as the Kinesis API's timestamps.
        "CreateTimestamp": (created_ns / 1_000_000) as f64 / 1000.0,
        "Destinations": destinations,
        "HasMoreDestinations": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::firehose::test_delivery as delivery;

    #[test]
    fn dir_jsonl_defaults() {
        let d = delivery("name = \"local\"\nsource = \"detections\"\n");
        let v = describe(&d, 1_764_000_000_123_456_789, None);
        assert_eq!(
            v["DeliveryStreamARN"],
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/local"
        );
        assert_eq!(v["CreateTimestamp"], 1_764_000_000.123);
        let s3 = &v["Destinations"][0]["ExtendedS3DestinationDescription"];
        assert_eq!(s3["BucketARN"], "arn:aws:s3:::local");
        assert_eq!(s3["Prefix"], "local/!{timestamp:yyyy/MM/dd/HH/}");
        assert_eq!(
            s3["ErrorOutputPrefix"],
            "local-errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"
        );
        assert_eq!(
            s3["BufferingHints"],
            json!({ "SizeInMBs": 5, "IntervalInSeconds": 300 })
        );
        assert_eq!(s3["CompressionFormat"], "UNCOMPRESSED");
        assert_eq!(s3["FileExtension"], ".jsonl");
        assert_eq!(
            s3["EncryptionConfiguration"]["NoEncryptionConfig"],
            "NoEncryption"
        );
        assert!(s3.get("DataFormatConversionConfiguration").is_none());
        assert!(s3.get("DynamicPartitioningConfiguration").is_none());
        // the one destination comes before any id after it
        let v = describe(&d, 0, Some(DESTINATION_ID));
        assert_eq!(v["Destinations"], json!([]));
    }

    #[test]
    fn s3_parquet_with_dynamic_partitions() {
        let d = delivery(
            r#"name = "det-s3"
source = "detections"
format = "parquet"
compression = "gzip"
buffer_size = "64MiB"
buffer_interval = "60s"
prefix = "detections/camera=!{partitionKeyFromQuery:camera}/model=!{partitionKeyFromQuery:meta.model}/dt=!{timestamp:yyyy-MM-dd}/"
[delivery.destination]
kind = "s3"
bucket = "edge-archive"
sse = "aws:kms"
kms_key_id = "arn:aws:kms:us-east-1:111122223333:key/example"
"#,
        );
        let s3 =
            describe(&d, 0, None)["Destinations"][0]["ExtendedS3DestinationDescription"].clone();
        assert_eq!(s3["BucketARN"], "arn:aws:s3:::edge-archive");
        assert_eq!(
            s3["BufferingHints"],
            json!({ "SizeInMBs": 64, "IntervalInSeconds": 60 })
        );
        assert_eq!(s3["CompressionFormat"], "UNCOMPRESSED");
        assert_eq!(
            s3["DataFormatConversionConfiguration"]["OutputFormatConfiguration"]["Serializer"]
                ["ParquetSerDe"]["Compression"],
            "GZIP"
        );
        assert_eq!(
            s3["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"],
            "arn:aws:kms:us-east-1:111122223333:key/example"
        );
        assert_eq!(s3["DynamicPartitioningConfiguration"]["Enabled"], true);
        assert_eq!(
            s3["ProcessingConfiguration"]["Processors"][0]["Parameters"][0]["ParameterValue"],
            r#"{"camera":.camera,"meta.model":.meta.model}"#
        );
    }

    #[test]
    fn compression_values() {
        for (c, jsonl, parquet) in [
            ("none", "UNCOMPRESSED", "UNCOMPRESSED"),
            ("gzip", "GZIP", "GZIP"),
            ("snappy", "Snappy", "SNAPPY"),
            ("zstd", "ZSTD", "ZSTD"),
        ] {
            let d = delivery(&format!(
                "name = \"d\"\nsource = \"detections\"\ncompression = \"{c}\"\n"
            ));
            let s3 = &describe(&d, 0, None)["Destinations"][0]["ExtendedS3DestinationDescription"];
            assert_eq!(s3["CompressionFormat"], jsonl, "{c}");
            let d = delivery(&format!(
                "name = \"d\"\nsource = \"detections\"\nformat = \"parquet\"\ncompression = \"{c}\"\n"
            ));
            let s3 = &describe(&d, 0, None)["Destinations"][0]["ExtendedS3DestinationDescription"];
            assert_eq!(
                s3["DataFormatConversionConfiguration"]["OutputFormatConfiguration"]["Serializer"]
                    ["ParquetSerDe"]["Compression"],
                parquet,
                "{c}"
            );
        }
    }
}
