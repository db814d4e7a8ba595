//! The Firehose-compatible ingest API driven by a stock boto3 `firehose` client and aws-cli
//! (vendor/venv, installed by scripts/bootstrap) against the real daemon; the client logic is
//! tests/py/firehose_client.py.

mod harness;
mod support;

use harness::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const WRITER: &str = "firehose-writer-token-0123";
const READER: &str = "firehose-reader-token-0123";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// vendor/venv/bin/python with awscli + boto3; fails (never skips) when bootstrap has not run.
fn venv_python() -> PathBuf {
    let venv = root().join("vendor/venv");
    for f in ["bin/python", "bin/aws"] {
        assert!(
            venv.join(f).exists(),
            "{} is missing: run scripts/bootstrap (installs aws-cli and boto3 into vendor/venv)",
            venv.join(f).display()
        );
    }
    venv.join("bin/python")
}

/// Two deliveries on one source stream: a `dir` jsonl.gz one, and an S3 Parquet one with
/// dynamic partitions and SSE-KMS (its endpoint refuses connections: only its description is
/// used here).
fn config(port: u16) -> String {
    format!(
        r#"[agent]
data_dir = "{{data_dir}}"
[api]
listen = "127.0.0.1:{port}"
[[api.token]]
token = "{WRITER}"
scope = "write"
[[api.token]]
token = "{READER}"
scope = "read"
[[stream]]
name = "ingest"
shards = 4
retention_hours = 24
[[delivery]]
name = "local"
source = "ingest"
compression = "gzip"
[delivery.destination]
kind = "dir"
path = "outbox"
[[delivery]]
name = "det-s3"
source = "ingest"
format = "parquet"
buffer_size = "64MiB"
buffer_interval = "60s"
prefix = "detections/camera=!{{partitionKeyFromQuery:camera}}/dt=!{{timestamp:yyyy-MM-dd}}/"
[delivery.destination]
kind = "s3"
bucket = "edge-archive"
region = "us-east-1"
endpoint = "http://127.0.0.1:9"
sse = "aws:kms"
kms_key_id = "arn:aws:kms:us-east-1:111122223333:key/example"
"#
    )
}

/// What DescribeDeliveryStream must say of each (dotted fields of the ExtendedS3 destination).
fn expected() -> serde_json::Value {
    serde_json::json!({
        "local": {
            "BucketARN": "arn:aws:s3:::local",
            "Prefix": "local/!{timestamp:yyyy/MM/dd/HH/}",
            "ErrorOutputPrefix": "local-errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/",
            "CompressionFormat": "GZIP",
            "FileExtension": ".jsonl.gz",
            "BufferingHints.SizeInMBs": 5,
            "BufferingHints.IntervalInSeconds": 300,
            "EncryptionConfiguration.NoEncryptionConfig": "NoEncryption",
        },
        "det-s3": {
            "BucketARN": "arn:aws:s3:::edge-archive",
            "Prefix": "detections/camera=!{partitionKeyFromQuery:camera}/dt=!{timestamp:yyyy-MM-dd}/",
            "CompressionFormat": "UNCOMPRESSED",
            "BufferingHints.SizeInMBs": 64,
            "BufferingHints.IntervalInSeconds": 60,
            "DataFormatConversionConfiguration.Enabled": true,
            "DataFormatConversionConfiguration.OutputFormatConfiguration.Serializer.ParquetSerDe.Compression": "SNAPPY",
            "DynamicPartitioningConfiguration.Enabled": true,
            "EncryptionConfiguration.KMSEncryptionConfig.AWSKMSKeyARN":
                "arn:aws:kms:us-east-1:111122223333:key/example",
        },
    })
}

#[test]
fn boto3_firehose_puts_land_in_the_source_stream() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &config(port));
    eventually(Duration::from_secs(60), "the API to listen", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let args = [
        root()
            .join("tests/py/firehose_client.py")
            .display()
            .to_string(),
        "--endpoint".into(),
        format!("http://127.0.0.1:{port}"),
        "--writer".into(),
        WRITER.into(),
        "--reader".into(),
        READER.into(),
        "--source".into(),
        "ingest".into(),
        "--expect".into(),
        expected().to_string(),
    ];
    let out = Command::new(venv_python())
        .args(&args)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .expect("run vendor/venv/bin/python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- firehose_client.py ---\n{stdout}{stderr}");
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "firehose_client.py failed ({}):\n{}\n{stderr}",
        out.status,
        stdout
            .lines()
            .filter(|l| !l.starts_with("firehose: ok"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        daemon.is_running(),
        "the daemon died during the client tests"
    );
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}
