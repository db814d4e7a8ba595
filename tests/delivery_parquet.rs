//! Parquet deliveries end to end through the real daemon: `vidgest.detection/1` records go in
//! through the Kinesis API (boto3), the daemon writes them as Parquet objects with Hive-style
//! partitions (`camera=`, `dt=`) to a `dir` destination or to S3 on moto, and DuckDB reads the
//! objects back as a partitioned table; every row is checked against the records read back
//! from the stream with GetRecords (tests/py/delivery_parquet.py). Also: records that do not
//! convert or cannot be partitioned in Firehose's error format, and `vidgest delivery ddl`
//! against the columns DuckDB reports.

#[path = "support/delivery.rs"]
mod delivery_support;
mod harness;
mod support;

use base64::Engine;
use delivery_support::*;
use harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use vidgest::records::{BoundingBox, DetectedObject, DetectionRecord, RecordKind};

/// Generous: a debug daemon on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);
const PREFIX: &str =
    "detections/camera=!{partitionKeyFromQuery:camera}/dt=!{timestamp:yyyy-MM-dd}/";
const ERROR_PREFIX: &str = "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/";

fn script() -> PathBuf {
    root().join("tests/py/delivery_parquet.py")
}

/// Runs `delivery_parquet.py ARGS`; panics with its output on failure.
fn pq_py(args: &[&str]) -> String {
    run_py(&script(), args)
}

fn head(port: u16) -> String {
    format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
         [[stream]]\nname = \"detections\"\nshards = 2\nretention_hours = 24\n"
    )
}

/// A Parquet delivery (built-in detections schema) of `detections`; `destination` is the body
/// of its `[delivery.destination]`.
fn parquet_delivery(name: &str, destination: &str) -> String {
    format!(
        r#"[[delivery]]
name = "{name}"
source = "detections"
format = "parquet"
compression = "snappy"
buffer_size = "1MiB"
buffer_interval = "1s"
prefix = "{PREFIX}"
error_prefix = "{ERROR_PREFIX}"
[delivery.destination]
{destination}
"#
    )
}

/// 2026-11-30T00:00:00Z in ns.
const DAY: i64 = 1_796_083_200_000_000_000;

/// What was put: the records and what the delivery must make of them.
struct Input {
    /// (partition key, record) in put order.
    records: Vec<(String, String)>,
    /// Detection-schema records (detections and heartbeats): counted as delivered.
    delivered: u64,
    /// Rows they must give (one per detected object).
    rows: u64,
    /// Records that must land in `format-conversion-failed` / `partitioning-failed`.
    conversion_failed: Vec<String>,
    partitioning_failed: Vec<String>,
}

/// `n` detection records over five cameras (one name with a space, one non-ASCII; 1..=4
/// objects each, every 7th a heartbeat, every 5th without inference_ms, one label that needs
/// JSON escapes), heartbeats of another camera that never detects anything, and records that
/// cannot be delivered as rows.
fn input(n: u64) -> Input {
    let cameras = ["front", "back", "garage", "front door", "K\u{fc}che"];
    let labels = ["person", "dog", "car", "caf\u{e9} \"sign\"\\"];
    let mut records = Vec::new();
    let (mut delivered, mut rows) = (0, 0);
    for i in 0..n {
        let camera = cameras[(i % 5) as usize];
        // Timestamps with sub-millisecond digits: the column keeps the floor in ms.
        let t = DAY + i as i64 * 33_366_667 + 999_999;
        let heartbeat = i % 7 == 3;
        let kind = if heartbeat {
            RecordKind::Heartbeat
        } else {
            RecordKind::Detection
        };
        let mut r = DetectionRecord::new(kind, "edge-1", camera, "yolov3-tiny", t, 1000 + i);
        if !heartbeat {
            r.inference_ms = (i % 5 != 0).then_some(40.0 + (i % 97) as f64 / 10.0);
            for k in 0..(i % 4 + 1) {
                r.detections.push(DetectedObject {
                    label: labels[((i + k) % 4) as usize].into(),
                    class_id: [0, 16, 2, 11][((i + k) % 4) as usize],
                    score: ((i * 37 + k * 101) % 1000) as f64 / 1000.0,
                    bbox: BoundingBox {
                        x: ((i * 13 + k) % 10_000) as f64 / 10_000.0,
                        y: 0.25 + k as f64 / 16.0,
                        w: 0.1234,
                        h: 0.5,
                    },
                    zones: vec!["yard".into()],
                });
            }
            rows += r.detections.len() as u64;
        }
        delivered += 1;
        records.push((camera.to_string(), String::from_utf8(r.to_json()).unwrap()));
    }
    for i in 0..10 {
        let r = DetectionRecord::new(
            RecordKind::Heartbeat,
            "edge-1",
            "idle",
            "yolov3-tiny",
            DAY + i * 1_000_000_000,
            5000 + i as u64,
        );
        delivered += 1;
        records.push(("idle".into(), String::from_utf8(r.to_json()).unwrap()));
    }
    let conversion_failed = vec![
        r#"{"camera":"x","foo":1}"#.to_string(),
        // A detection record's shape with another schema id.
        r#"{"schema":"vidgest.other/1","type":"detection","camera":"front","detections":[]}"#
            .to_string(),
    ];
    let partitioning_failed = vec![r#"{"foo":1}"#.to_string(), "not json".to_string()];
    for (i, r) in conversion_failed
        .iter()
        .chain(&partitioning_failed)
        .enumerate()
    {
        records.insert(
            (i * 37 + 5).min(records.len()),
            (format!("bad-{i}"), r.clone()),
        );
    }
    Input {
        records,
        delivered,
        rows,
        conversion_failed,
        partitioning_failed,
    }
}

/// Puts `records` through the daemon's Kinesis API.
fn put_records(dir: &Path, endpoint: &str, records: &[(String, String)]) {
    let file = dir.join("records.jsonl");
    let lines: String = records
        .iter()
        .map(|(key, data)| serde_json::json!({"key": key, "data": data}).to_string() + "\n")
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = pq_py(&[
        "put-file",
        "--endpoint",
        endpoint,
        "--stream",
        "detections",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert!(out.contains(&format!("acked {}", records.len())), "{out}");
}

/// Whether `data` is a `vidgest.detection/1` record (a detection or a heartbeat).
fn is_detection_record(data: &str) -> bool {
    serde_json::from_str::<Value>(data)
        .is_ok_and(|v| v["schema"] == vidgest::records::DETECTION_SCHEMA)
}

/// Puts the first `split` records, waits until the delivery accounted for them, then puts the
/// rest: each partition gets objects of more than one batch.
fn put_in_two_rounds(dir: &Path, endpoint: &str, config: &Path, name: &str, input: &Input) {
    let split = input.records.len() / 2;
    let first = &input.records[..split];
    put_records(dir, endpoint, first);
    let delivered = first.iter().filter(|r| is_detection_record(&r.1)).count() as u64;
    let errors = first.len() as u64 - delivered;
    wait_status(config, name, DEADLINE, "the first round delivered", |s| {
        s["records"] == delivered && s["error_records"] == errors
    });
    put_records(dir, endpoint, &input.records[split..]);
}

/// Waits until every record is accounted for: delivered, or in an error object.
fn wait_delivered(config: &Path, name: &str, input: &Input) -> Value {
    let errors = (input.conversion_failed.len() + input.partitioning_failed.len()) as u64;
    let s = wait_status(config, name, DEADLINE, "all records delivered", |s| {
        s["records"] == input.delivered && s["error_records"] == errors && s["lag_records"] == 0
    });
    assert_eq!(s["state"], "healthy", "{s}");
    assert_eq!(s["lost_records"], 0, "{s}");
    s
}

/// DuckDB's check of the table below `table` against the stream (see delivery_parquet.py).
fn duckdb_check(endpoint: &str, table: &Path) -> Value {
    duckdb_check_skipping(endpoint, table, "")
}

/// `duckdb_check`; the detection records of the fragments in `skip` (comma-separated) must
/// give no rows.
fn duckdb_check_skipping(endpoint: &str, table: &Path, skip: &str) -> Value {
    let out = pq_py(&[
        "check",
        "--endpoint",
        endpoint,
        "--stream",
        "detections",
        "--table",
        table.to_str().unwrap(),
        "--skip-fragments",
        skip,
    ]);
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no summary from delivery_parquet.py check ({e}):\n{out}"))
}

/// Checks the summary of `duckdb_check` against what was put.
fn assert_rows(summary: &Value, input: &Input) {
    eprintln!(
        "duckdb: {} rows in {} objects, types {}",
        summary["rows"], summary["files"], summary["types"]
    );
    assert_eq!(summary["records"], input.records.len() as u64, "{summary}");
    assert_eq!(summary["rows"], input.rows, "{summary}");
    assert!(summary["heartbeats"].as_u64() > Some(10), "{summary}");
}

/// Every error line below `dir` (error objects), by error output type (the directory below
/// `errors/`).
fn error_lines(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for key in files(dir) {
        let Some(rest) = key.strip_prefix("errors/") else {
            continue;
        };
        let kind = rest.split('/').next().unwrap().to_string();
        // errors/<type>/yyyy/MM/dd/<name>
        assert_eq!(
            rest.split('/').count(),
            5,
            "`{key}`: not below the error prefix"
        );
        assert_object_name(&key, "pq", "");
        for line in std::fs::read(dir.join(&key))
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            out.entry(kind.clone())
                .or_default()
                .push(serde_json::from_slice(line).unwrap());
        }
    }
    out
}

/// The error lines hold exactly the records that cannot be delivered, in Firehose's error
/// format, with the arrival time the stream reports for them.
fn assert_errors(lines: &BTreeMap<String, Vec<Value>>, input: &Input, summary: &Value) {
    let arrival: BTreeMap<&str, i64> = summary["others"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["data"].as_str().unwrap(),
                o["arrival_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines.keys().collect::<Vec<_>>(),
        ["format-conversion-failed", "partitioning-failed"],
        "{lines:?}"
    );
    for (kind, want, code, words) in [
        (
            "format-conversion-failed",
            &input.conversion_failed,
            "DataFormatConversion.MalformedData",
            "vidgest.detection/1",
        ),
        (
            "partitioning-failed",
            &input.partitioning_failed,
            "DynamicPartitioning.MetadataExtractionFailed",
            "camera",
        ),
    ] {
        let mut raw: Vec<String> = Vec::new();
        for e in &lines[kind] {
            assert_eq!(e["errorCode"], code, "{e}");
            assert_eq!(e["attemptsMade"], 1, "{e}");
            let message = e["errorMessage"].as_str().unwrap_or_default();
            assert!(message.contains(words), "{kind}: `{words}` not in {e}");
            let data = base64::engine::general_purpose::STANDARD
                .decode(e["rawData"].as_str().unwrap())
                .unwrap();
            let data = String::from_utf8(data).unwrap();
            let arrived = arrival[data.as_str()];
            let at = e["arrivalTimestamp"].as_i64().unwrap();
            // GetRecords gives seconds with a fraction: allow its rounding.
            assert!((at - arrived).abs() <= 1, "{e}: arrived at {arrived} ms");
            raw.push(data);
        }
        raw.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(raw, want, "{kind}");
    }
}

/// DuckDB type of each Hive type `vidgest delivery ddl` writes.
fn duckdb_type(hive: &str) -> &'static str {
    match hive {
        "string" => "VARCHAR",
        "int" => "INTEGER",
        "bigint" => "BIGINT",
        "double" => "DOUBLE",
        "float" => "FLOAT",
        "boolean" => "BOOLEAN",
        "timestamp" => "TIMESTAMP WITH TIME ZONE",
        other => panic!("ddl: unexpected type `{other}`"),
    }
}

/// (column name, Hive type) in the order of a table definition.
type Columns = Vec<(String, String)>;

/// `(columns, partitions, location)` of `CREATE EXTERNAL TABLE` text.
fn parse_ddl(ddl: &str) -> (Columns, Columns, String) {
    let section = |start: &str| -> Columns {
        let Some(from) = ddl.find(start) else {
            return Vec::new();
        };
        ddl[from + start.len()..]
            .lines()
            .take_while(|l| !l.starts_with(')'))
            .map(|l| {
                let l = l.trim().trim_end_matches(',');
                let (name, ty) = l
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("ddl line `{l}`"));
                (name.trim_matches('`').to_string(), ty.to_string())
            })
            .collect()
    };
    let columns = section("` (\n");
    let partitions = section("PARTITIONED BY (\n");
    let location = ddl
        .lines()
        .find_map(|l| l.strip_prefix("LOCATION '"))
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no LOCATION in\n{ddl}"))
        .to_string();
    (columns, partitions, location)
}

/// `vidgest delivery ddl pq`: its columns and partitions are the table DuckDB reads, type for
/// type; returns its LOCATION.
fn assert_ddl_matches(config: &Path, types: &Value) -> String {
    let (ok, ddl, err) = cli(&[
        "delivery",
        "ddl",
        "pq",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (columns, partitions, location) = parse_ddl(&ddl);
    assert_eq!(
        partitions,
        [
            ("camera".into(), "string".into()),
            ("dt".into(), "string".into())
        ],
        "{ddl}"
    );
    let from_ddl: BTreeMap<String, String> = columns
        .iter()
        .chain(&partitions)
        .map(|(n, t)| (n.clone(), duckdb_type(t).to_string()))
        .collect();
    let from_duckdb: BTreeMap<String, String> = types
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, t)| (n.clone(), t.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(from_ddl, from_duckdb, "ddl:\n{ddl}");
    assert_eq!(columns.len() + partitions.len(), from_duckdb.len(), "{ddl}");
    location
}

fn wait_listening(daemon: &Daemon, port: u16) {
    eventually(DEADLINE, "vidgest API listening", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

#[test]
fn parquet_rows_read_by_duckdb_equal_the_stream_errors_and_ddl_match() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = head(port) + &parquet_delivery("pq", "kind = \"dir\"\npath = \"outbox/pq\"");
    let daemon = Daemon::start(dir.path(), &cfg);
    wait_listening(&daemon, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let input = input(300);
    put_in_two_rounds(dir.path(), &endpoint, &daemon.config, "pq", &input);
    let s = wait_delivered(&daemon.config, "pq", &input);

    let out = daemon.data_dir.join("outbox/pq");
    let table = out.join("detections");
    let summary = duckdb_check(&endpoint, &table);
    assert_rows(&summary, &input);
    // Every file is an object the status counted (data and errors), named as Firehose does.
    let errors = error_lines(&out);
    let data_files: Vec<String> = files(&table);
    for f in &data_files {
        assert_object_name(f, "pq", ".parquet");
    }
    assert_eq!(summary["files"], data_files.len() as u64);
    let error_files = files(&out.join("errors")).len();
    assert_eq!(s["objects"], (data_files.len() + error_files) as u64, "{s}");
    for camera in ["front", "back", "garage"] {
        let objects = data_files
            .iter()
            .filter(|f| f.starts_with(&format!("camera={camera}/")))
            .count();
        assert!(objects >= 2, "camera {camera}: {objects} objects");
    }
    // The camera with heartbeats only has no partition: no empty objects.
    assert!(
        !data_files.iter().any(|f| f.starts_with("camera=idle/")),
        "{data_files:?}"
    );
    assert_errors(&errors, &input, &summary);

    let location = assert_ddl_matches(&daemon.config, &summary["types"]);
    let table_url = format!("file://{}/", table.display());
    assert_eq!(location, table_url);
    assert!(daemon.terminate().success());
}

/// One moto server for this file's S3 test; it exits with the test process.
fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

#[test]
fn parquet_objects_on_s3_read_back_by_duckdb() {
    let moto = moto();
    moto.create_bucket("pq-archive");
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let destination = format!(
        "kind = \"s3\"\nbucket = \"pq-archive\"\nregion = \"us-east-1\"\n\
         endpoint = \"{}\"\npath_style = true\n\
         access_key_id = \"AKIAVIDGESTTEST\"\nsecret_access_key = \"test-secret\"",
        moto.endpoint()
    );
    let cfg = head(port) + &parquet_delivery("pq", &destination);
    let daemon = Daemon::start(dir.path(), &cfg);
    wait_listening(&daemon, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let input = input(150);
    put_in_two_rounds(dir.path(), &endpoint, &daemon.config, "pq", &input);
    let s = wait_delivered(&daemon.config, "pq", &input);

    // DuckDB has no httpfs offline: boto3 downloads the bucket, DuckDB reads the copy.
    let copy = tempfile::tempdir().unwrap();
    let heads = moto.dump("pq-archive", copy.path());
    assert_eq!(s["objects"], heads.len() as u64, "{s}");
    let summary = duckdb_check(&endpoint, &copy.path().join("detections"));
    assert_rows(&summary, &input);
    assert_errors(&error_lines(copy.path()), &input, &summary);
    let location = assert_ddl_matches(&daemon.config, &summary["types"]);
    assert_eq!(location, "s3://pq-archive/detections/");
    assert!(daemon.terminate().success());
}

/// The status shows records put a moment ago as lag at once (not at the delivery's next lag
/// measurement): waiting for `lag_records == 0` must not pass before they are delivered.
#[test]
fn status_lag_counts_records_put_a_moment_ago() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    // The longest interval: nothing is written (or checkpointed) while the daemon runs.
    let cfg = head(port)
        + &parquet_delivery("pq", "kind = \"dir\"\npath = \"outbox/pq\"")
            .replace("buffer_interval = \"1s\"", "buffer_interval = \"900s\"");
    let daemon = Daemon::start(dir.path(), &cfg);
    wait_listening(&daemon, port);
    // The delivery is up and has measured its (empty) lag.
    wait_status(&daemon.config, "pq", DEADLINE, "delivery listed", |_| true);
    let endpoint = format!("http://127.0.0.1:{port}");
    let input = input(40);
    put_records(dir.path(), &endpoint, &input.records);
    let s = status(&daemon.config, "pq").expect("status");
    assert_eq!(s["lag_records"], input.records.len() as u64, "{s}");
    assert!(s["lag_seconds"].as_f64() < Some(60.0), "{s}");
    // SIGTERM writes the buffers: then nothing is left.
    assert!(daemon.terminate().success());
}

/// A partition value that would make an invalid object key (an empty or `..` path segment, a
/// control character) sends its record to `partitioning-failed`; it must not block the
/// delivery (a write that can never succeed would be retried forever, holding every later
/// record back).
#[test]
fn a_partition_value_that_makes_no_valid_key_goes_to_partitioning_failed() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = head(port) + &parquet_delivery("pq", "kind = \"dir\"\npath = \"outbox/pq\"");
    let daemon = Daemon::start(dir.path(), &cfg);
    wait_listening(&daemon, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut input = input(60);
    let bad_cameras = ["up/../../../escaped", "trailing/", "tab\there"];
    for (i, camera) in bad_cameras.iter().enumerate() {
        let mut r = DetectionRecord::new(
            RecordKind::Detection,
            "edge-1",
            camera,
            "yolov3-tiny",
            DAY,
            9000 + i as u64,
        );
        r.detections.push(DetectedObject {
            label: "person".into(),
            class_id: 0,
            score: 0.5,
            bbox: BoundingBox {
                x: 0.1,
                y: 0.1,
                w: 0.1,
                h: 0.1,
            },
            zones: vec![],
        });
        let data = String::from_utf8(r.to_json()).unwrap();
        input
            .records
            .insert(10 + i * 5, (format!("bad-camera-{i}"), data.clone()));
        input.partitioning_failed.push(data);
    }
    put_records(dir.path(), &endpoint, &input.records);
    wait_delivered(&daemon.config, "pq", &input);

    let out = daemon.data_dir.join("outbox/pq");
    let summary = duckdb_check_skipping(&endpoint, &out.join("detections"), "9000,9001,9002");
    assert_rows(&summary, &input);
    assert_errors(&error_lines(&out), &input, &summary);
    // Nothing was written outside the destination's directory.
    assert_eq!(
        files(&daemon.data_dir.join("outbox"))
            .iter()
            .filter(|f| !f.starts_with("pq/detections/") && !f.starts_with("pq/errors/"))
            .collect::<Vec<_>>(),
        Vec::<&String>::new()
    );
    assert!(daemon.terminate().success());
}
