//! Parquet delivery objects read by the real readers (DuckDB and pyarrow from vendor/venv,
//! installed by scripts/bootstrap) as a Hive-partitioned table, and `vidgest delivery ddl`.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use vidgest::delivery::parquet::Parquet;
use vidgest::delivery::{BodyFormat, Compression};
use vidgest::records::{BoundingBox, DetectedObject, DetectionRecord, RecordKind};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// vendor/venv/bin/python with duckdb + pyarrow; fails (never skips) when bootstrap has not run.
fn venv_python() -> PathBuf {
    let python = root().join("vendor/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/bootstrap (installs duckdb and pyarrow into vendor/venv)",
        python.display()
    );
    python
}

/// 2026-11-30T00:00:00Z
const DAY: i64 = 1_796_083_200_000_000_000;
const MS: i64 = 1_000_000;

fn record(camera: &str, t: i64, fragment: u64, objects: usize) -> DetectionRecord {
    let mut r = DetectionRecord::new(
        RecordKind::Detection,
        "edge-1",
        camera,
        "yolov3-tiny",
        t,
        fragment,
    );
    r.inference_ms = fragment
        .is_multiple_of(2)
        .then_some(40.0 + fragment as f64 / 10.0);
    for i in 0..objects {
        r.detections.push(DetectedObject {
            label: ["person", "dog", "car"][i % 3].into(),
            class_id: [0, 16, 2][i % 3],
            score: 0.5 + i as f64 / 100.0,
            bbox: BoundingBox {
                x: 0.1 * i as f64,
                y: 0.25,
                w: 0.125,
                h: 0.5,
            },
            zones: vec![],
        });
    }
    r
}

/// The rows the records must become, as the Python side compares them.
fn expected_rows(records: &[DetectionRecord], dt: &str) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for r in records {
        for o in &r.detections {
            rows.push(serde_json::json!({
                "device": r.device, "camera": r.camera, "timestamp": r.timestamp_ns / MS,
                "fragment_number": r.fragment_number, "model": r.model, "label": o.label,
                "class_id": o.class_id, "score": o.score, "box_x": o.bbox.x, "box_y": o.bbox.y,
                "box_w": o.bbox.w, "box_h": o.bbox.h, "inference_ms": r.inference_ms, "dt": dt,
            }));
        }
    }
    rows
}

fn write_object(path: &Path, format: &Parquet, records: &[DetectionRecord]) {
    let mut body = format.encoder().unwrap();
    for r in records {
        body.push(&r.to_json()).unwrap();
    }
    // A heartbeat between them gives no row.
    body.push(&DetectionRecord::new(RecordKind::Heartbeat, "edge-1", "x", "m", DAY, 1).to_json())
        .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body.finish().unwrap()).unwrap();
}

#[test]
fn duckdb_and_pyarrow_read_the_objects_as_a_hive_partitioned_table() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("detections");
    let format = Parquet::new(None, Compression::Snappy).unwrap();
    let mut expected = Vec::new();
    let mut fragment = 0;
    // Two cameras over two days; two objects in one partition.
    for (camera, day, objects) in [
        ("front", 0, 2),
        ("front", 0, 1),
        ("back", 0, 3),
        ("front", 1, 1),
        ("back", 1, 2),
    ] {
        let dt = if day == 0 { "2026-11-30" } else { "2026-12-01" };
        let records: Vec<DetectionRecord> = (0..4)
            .map(|i| {
                fragment += 1;
                let t = DAY + day * 86_400_000 * MS + (fragment as i64) * 1_234 * MS + 567;
                record(camera, t, fragment, objects + i % 2)
            })
            .collect();
        expected.extend(expected_rows(&records, dt));
        let path = table
            .join(format!("camera={camera}"))
            .join(format!("dt={dt}"))
            .join(format!("det-1-{fragment}.parquet"));
        write_object(&path, &format, &records);
    }
    let expected_path = tmp.path().join("expected.json");
    std::fs::write(&expected_path, serde_json::to_vec(&expected).unwrap()).unwrap();

    let out = Command::new(venv_python())
        .arg(root().join("tests/py/parquet_readers.py"))
        .arg(&table)
        .arg(&expected_path)
        .output()
        .expect("run vendor/venv/bin/python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "readers disagree: {stderr}");
    assert!(stdout.contains("duckdb") && stdout.contains("pyarrow"));
    assert!(stdout.contains(&format!("{} rows", expected.len())));
}

fn config(dir: &Path) -> String {
    let path = dir.join("vidgest.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[agent]
data_dir = "{}"

[[stream]]
name = "detections"

[[stream]]
name = "metrics"

[[delivery]]
name = "det-s3"
source = "detections"
format = "parquet"
compression = "snappy"
prefix = "detections/camera=!{{partitionKeyFromQuery:camera}}/dt=!{{timestamp:yyyy-MM-dd}}/"
[delivery.destination]
kind = "s3"
bucket = "edge-archive"
region = "us-east-1"

[[delivery]]
name = "metrics-local"
source = "metrics"
compression = "gzip"
"#,
            dir.join("data").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn delivery_ddl_prints_the_table_of_a_configured_delivery() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());

    let (ok, out, err) = harness::cli(&["delivery", "ddl", "det-s3", "--config", &cfg]);
    assert!(ok, "{err}");
    assert!(out.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `det_s3` (\n  `device` string,\n  `timestamp` timestamp,"), "{out}");
    assert!(
        out.contains("STORED AS PARQUET\nLOCATION 's3://edge-archive/detections/'"),
        "{out}"
    );
    assert!(out.contains("'storage.location.template' = 's3://edge-archive/detections/camera=${camera}/dt=${dt}/'"), "{out}");

    // A dir destination below the data dir; another stream's JSON lines are one `line` column.
    let (ok, out, err) = harness::cli(&[
        "delivery",
        "ddl",
        "metrics-local",
        "--config",
        &cfg,
        "--table",
        "edge.metrics",
    ]);
    assert!(ok, "{err}");
    let outbox = format!("file://{}/outbox/", tmp.path().join("data").display());
    assert!(
        out.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `edge.metrics` (\n  `line` string\n)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("LOCATION '{outbox}metrics-local/'")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "'storage.location.template' = '{outbox}metrics-local/${{datehour}}/'"
        )),
        "{out}"
    );

    let (ok, _, err) = harness::cli(&["delivery", "ddl", "nope", "--config", &cfg]);
    assert!(!ok);
    assert!(
        err.contains("no delivery named `nope` (configured: det-s3, metrics-local)"),
        "{err}"
    );
    let (ok, _, err) = harness::cli(&[
        "delivery", "ddl", "det-s3", "--config", &cfg, "--table", "a b",
    ]);
    assert!(!ok);
    assert!(err.contains("`a b` cannot be a table name"), "{err}");
}
