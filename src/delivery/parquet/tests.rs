use super::*;
use crate::config::{ColumnConfig, ColumnType, DeclaredSchema};
use crate::records::{BoundingBox, DetectedObject, DetectionRecord, RecordKind};
use parquet::basic::{Compression as Codec, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row, RowAccessor};

/// 2026-11-30T18:05:09.042Z plus sub-millisecond nanos (dropped: the column is millis).
const T: i64 = 1_796_061_909_042_765_123;

fn detection(camera: &str, objects: &[(&str, i32, f64)], inference: Option<f64>) -> Vec<u8> {
    let mut r = DetectionRecord::new(RecordKind::Detection, "dev1", camera, "yolo", T, 77);
    r.inference_ms = inference;
    for (i, &(label, class, score)) in objects.iter().enumerate() {
        r.detections.push(DetectedObject {
            label: label.into(),
            class_id: class as u32,
            score,
            bbox: BoundingBox {
                x: 0.1 * i as f64,
                y: 0.2,
                w: 0.3,
                h: 0.4,
            },
            zones: vec!["yard".into()],
        });
    }
    r.to_json()
}

fn read(bytes: Vec<u8>) -> (SerializedFileReader<bytes::Bytes>, Vec<Row>) {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (reader, rows)
}

fn body_of(format: &Parquet, records: &[Vec<u8>]) -> Vec<u8> {
    let mut b = format.encoder().unwrap();
    for r in records {
        b.push(r).unwrap();
    }
    b.finish().unwrap()
}

#[test]
fn detections_round_trip_with_types_and_nulls() {
    let records = vec![
        detection("front", &[("dog", 16, 0.763), ("car", 2, 0.5)], Some(52.3)),
        DetectionRecord::new(RecordKind::Heartbeat, "dev1", "front", "yolo", T, 78).to_json(),
        detection("back", &[("person", 0, 0.9)], None),
    ];
    let format = Parquet::new(None, Compression::Snappy).unwrap();
    assert_eq!(format.extension(), ".parquet");
    let mut b = format.encoder().unwrap();
    for r in &records {
        b.push(r).unwrap();
    }
    assert_eq!(b.records(), 3, "the heartbeat is accepted (zero rows)");
    assert_eq!(
        b.raw_bytes(),
        records.iter().map(|r| r.len() as u64).sum::<u64>()
    );
    let (reader, rows) = read(b.finish().unwrap());

    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "device",
            "camera",
            "timestamp",
            "fragment_number",
            "model",
            "label",
            "class_id",
            "score",
            "box_x",
            "box_y",
            "box_w",
            "box_h",
            "inference_ms"
        ]
    );
    let ts = schema.column(2);
    assert_eq!(ts.physical_type(), Physical::INT64);
    assert_eq!(
        ts.logical_type_ref(),
        Some(&LogicalType::timestamp(true, TimeUnit::MILLIS))
    );
    assert_eq!(
        schema.column(0).logical_type_ref(),
        Some(&LogicalType::String)
    );
    assert_eq!(schema.column(6).physical_type(), Physical::INT32);
    assert_eq!(schema.column(7).physical_type(), Physical::DOUBLE);
    for (i, c) in schema.columns().iter().enumerate() {
        let want = if i == 12 {
            Repetition::OPTIONAL
        } else {
            Repetition::REQUIRED
        };
        assert_eq!(
            c.self_type().get_basic_info().repetition(),
            want,
            "{}",
            c.name()
        );
    }
    assert_eq!(
        reader.metadata().row_group(0).column(0).compression(),
        Codec::SNAPPY
    );

    assert_eq!(rows.len(), 3);
    let r = &rows[0];
    assert_eq!(r.get_string(0).unwrap(), "dev1");
    assert_eq!(r.get_string(1).unwrap(), "front");
    assert_eq!(r.get_timestamp_millis(2).unwrap(), 1_796_061_909_042);
    assert_eq!(r.get_string(3).unwrap(), "77");
    assert_eq!(r.get_string(4).unwrap(), "yolo");
    assert_eq!(r.get_string(5).unwrap(), "dog");
    assert_eq!(r.get_int(6).unwrap(), 16);
    assert_eq!(r.get_double(7).unwrap(), 0.763);
    assert_eq!(r.get_double(8).unwrap(), 0.0);
    assert_eq!(r.get_double(11).unwrap(), 0.4);
    assert_eq!(r.get_double(12).unwrap(), 52.3);
    assert_eq!(rows[1].get_string(5).unwrap(), "car");
    assert_eq!(rows[1].get_double(8).unwrap(), 0.1);
    assert_eq!(rows[2].get_string(1).unwrap(), "back");
    assert_eq!(rows[2].get_string(5).unwrap(), "person");
    assert!(rows[2].get_column_iter().nth(12).unwrap().1 == &Field::Null);
}

#[test]
fn every_column_compression_reads_back() {
    let records = vec![detection("a", &[("dog", 16, 0.7)], Some(1.0)); 50];
    for (c, codec) in [
        (Compression::None, Codec::UNCOMPRESSED),
        (Compression::Snappy, Codec::SNAPPY),
        (Compression::Gzip, Codec::GZIP(Default::default())),
        (Compression::Zstd, Codec::ZSTD(Default::default())),
    ] {
        let (reader, rows) = read(body_of(&Parquet::new(None, c).unwrap(), &records));
        assert_eq!(rows.len(), 50, "{c:?}");
        let got = reader.metadata().row_group(0).column(5).compression();
        // Levels are not stored in the file: compare the codec only.
        assert_eq!(
            std::mem::discriminant(&got),
            std::mem::discriminant(&codec),
            "{c:?}"
        );
    }
}

#[test]
fn an_empty_or_heartbeat_only_object_is_a_valid_file() {
    let hb = DetectionRecord::new(RecordKind::Heartbeat, "d", "c", "m", T, 1).to_json();
    let (reader, rows) = read(body_of(
        &Parquet::new(None, Compression::Snappy).unwrap(),
        &[hb],
    ));
    assert!(rows.is_empty());
    assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
}

#[test]
fn records_that_do_not_convert_leave_the_encoder_unchanged() {
    let format = Parquet::new(None, Compression::Snappy).unwrap();
    let good = detection("front", &[("dog", 16, 0.7)], None);
    let mut b = format.body();
    b.push(&good).unwrap();
    let other = serde_json::json!({"schema": "vidgest.metrics/1", "x": 1});
    let mut missing: serde_json::Value = serde_json::from_slice(&good).unwrap();
    missing.as_object_mut().unwrap().remove("camera");
    // The first object is fine, the second not: no row of the record may stay.
    let mut half: serde_json::Value =
        serde_json::from_slice(&detection("x", &[("a", 1, 0.1), ("b", 2, 0.2)], None)).unwrap();
    half["detections"][1]["class_id"] = "two".into();
    let mut too_big: serde_json::Value = serde_json::from_slice(&good).unwrap();
    too_big["detections"][0]["class_id"] = (1u64 << 40).into();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "vidgest.detection/1 record"),
        (
            serde_json::to_vec(&other).unwrap(),
            "(schema `vidgest.metrics/1`)",
        ),
        (
            serde_json::to_vec(&missing).unwrap(),
            "missing field `camera`",
        ),
        (serde_json::to_vec(&half).unwrap(), "invalid type"),
        (serde_json::to_vec(&too_big).unwrap(), "invalid value"),
    ];
    for (data, why) in cases {
        match b.push(&data) {
            Err(PushError::Convert(e)) => {
                assert_eq!(e.code, MALFORMED);
                assert!(e.message.contains(why), "{why}: {}", e.message);
            }
            other => panic!("{}: {other:?}", String::from_utf8_lossy(&data)),
        }
        assert_eq!((b.records(), b.rows()), (1, 1));
        assert_eq!(BodyEncoder::raw_bytes(&b), good.len() as u64);
    }
    let (_, rows) = read(b.finish().unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get_string(5).unwrap(), "dog");
}

fn column(name: &str, kind: ColumnType, path: Option<&str>, optional: bool) -> ColumnConfig {
    ColumnConfig {
        name: name.into(),
        kind,
        path: path.map(str::to_string),
        optional,
    }
}

fn declared(rows: Option<&str>, columns: Vec<ColumnConfig>) -> SchemaConfig {
    SchemaConfig::Declared(DeclaredSchema {
        rows: rows.map(str::to_string),
        columns,
    })
}

#[test]
fn declared_schema_rows_paths_types_and_nulls() {
    let schema = declared(
        Some("readings"),
        vec![
            column("site", ColumnType::String, Some("$.meta.site"), false),
            column("at", ColumnType::Timestamp, Some("$.at"), false),
            column("sensor", ColumnType::String, None, false),
            column("value", ColumnType::Double, Some("v"), false),
            column("count", ColumnType::Int, None, true),
            column("total", ColumnType::Bigint, None, true),
            column("ratio", ColumnType::Float, None, true),
            column("ok", ColumnType::Boolean, None, true),
            column("seen", ColumnType::Timestamp, None, true),
            column("first", ColumnType::String, Some("tags.0"), true),
        ],
    );
    let format = Parquet::new(Some(&schema), Compression::Zstd).unwrap();
    let rec = serde_json::json!({
        "meta": {"site": 7},
        "at": "2026-11-30T19:05:09.042+01:00",
        "readings": [
            {"sensor": "t1", "v": 3, "count": 2, "total": 5000000000i64, "ratio": 0.5, "ok": true,
             "seen": 1796061909042i64, "tags": ["x", "y"]},
            {"sensor": "t2", "v": 1.25, "count": null},
        ]
    });
    let empty = serde_json::json!({"meta": {"site": "s"}, "at": 0, "readings": []});
    let (reader, rows) = read(body_of(
        &format,
        &[
            serde_json::to_vec(&rec).unwrap(),
            serde_json::to_vec(&empty).unwrap(),
        ],
    ));
    let schema = reader.metadata().file_metadata().schema_descr();
    assert_eq!(schema.column(4).physical_type(), Physical::INT32);
    assert_eq!(schema.column(5).physical_type(), Physical::INT64);
    assert_eq!(schema.column(6).physical_type(), Physical::FLOAT);
    assert_eq!(schema.column(7).physical_type(), Physical::BOOLEAN);
    assert_eq!(rows.len(), 2);
    let (a, b) = (&rows[0], &rows[1]);
    // A number into a string column is its JSON text.
    assert_eq!(a.get_string(0).unwrap(), "7");
    // RFC 3339 with an offset is stored in UTC.
    assert_eq!(a.get_timestamp_millis(1).unwrap(), 1_796_061_909_042);
    assert_eq!(a.get_string(2).unwrap(), "t1");
    assert_eq!(a.get_double(3).unwrap(), 3.0);
    assert_eq!(a.get_int(4).unwrap(), 2);
    assert_eq!(a.get_long(5).unwrap(), 5_000_000_000);
    assert_eq!(a.get_float(6).unwrap(), 0.5);
    assert!(a.get_bool(7).unwrap());
    assert_eq!(a.get_timestamp_millis(8).unwrap(), 1_796_061_909_042);
    assert_eq!(a.get_string(9).unwrap(), "x");
    assert_eq!(b.get_string(2).unwrap(), "t2");
    assert_eq!(b.get_double(3).unwrap(), 1.25);
    let nulls: Vec<bool> = b
        .get_column_iter()
        .map(|(_, f)| f == &Field::Null)
        .collect();
    assert_eq!(
        nulls,
        [false, false, false, false, true, true, true, true, true, true]
    );
}

#[test]
fn declared_schema_errors_name_the_column_and_path() {
    let schema = declared(
        Some("items"),
        vec![
            column("id", ColumnType::Int, Some("n"), false),
            column("at", ColumnType::Timestamp, Some("$.t"), false),
        ],
    );
    let format = Parquet::new(Some(&schema), Compression::None).unwrap();
    let mut b = format.body();
    b.push(br#"{"t": 5, "items": [{"n": 1}]}"#).unwrap();
    for (data, want) in [
        (
            &br#"{"t": 5, "items": [{"n": 1}, {"m": 2}]}"#[..],
            "column `id`: no value at path `n` in element 1 of `items`",
        ),
        (
            br#"{"t": 5, "items": [{"n": 3000000000}]}"#,
            "column `id` (int) at path `n` in element 0 of `items`: cannot convert 3000000000",
        ),
        (
            br#"{"t": 5, "items": [{"n": 1.5}]}"#,
            "cannot convert 1.5",
        ),
        (
            br#"{"t": "yesterday", "items": [{"n": 1}]}"#,
            "column `at` (timestamp) at path `$.t` in element 0 of `items`: \"yesterday\": not RFC 3339",
        ),
        (br#"{"t": 5, "items": {"n": 1}}"#, "rows path `items` is not an array"),
        (br#"{"t": 5}"#, "rows path `items` is missing"),
        (b"[1,", "the record is not JSON"),
    ] {
        match b.push(data) {
            Err(PushError::Convert(e)) => {
                assert_eq!(e.code, MALFORMED);
                assert!(e.message.contains(want), "want {want:?}, got {:?}", e.message);
            }
            other => panic!("{want}: {other:?}"),
        }
        assert_eq!((b.records(), b.rows()), (1, 1));
    }
    // Objects never convert into a string column.
    let s = declared(None, vec![column("x", ColumnType::String, None, false)]);
    let mut b = Parquet::new(Some(&s), Compression::None).unwrap().body();
    assert!(matches!(
        b.push(br#"{"x": {"a": 1}}"#),
        Err(PushError::Convert(e)) if e.message.contains("cannot convert {\"a\":1}")
    ));
}

#[test]
fn unusable_schemas_are_refused_with_a_typed_error() {
    let err = |s: SchemaConfig| match Parquet::new(Some(&s), Compression::Snappy) {
        Err(ParquetSetupError::Schema(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        err(SchemaConfig::Builtin("metrics".into())),
        SchemaError::UnknownBuiltin("metrics".into())
    );
    assert_eq!(err(declared(None, vec![])), SchemaError::NoColumns);
    assert_eq!(
        err(declared(
            None,
            vec![
                column("a", ColumnType::Int, None, false),
                column("a", ColumnType::Int, None, false)
            ]
        )),
        SchemaError::BadColumnName("a".into())
    );
    assert!(matches!(
        err(declared(None, vec![column("a", ColumnType::Int, Some("x..y"), false)])),
        SchemaError::BadPath { path, .. } if path == "x..y"
    ));
    assert!(matches!(
        err(declared(Some("$."), vec![column("a", ColumnType::Int, None, false)])),
        SchemaError::BadPath { what, .. } if what == "rows"
    ));
    assert!(Parquet::new(
        Some(&SchemaConfig::Builtin("detections".into())),
        Compression::Snappy
    )
    .unwrap()
    .table()
    .is_detections());
}

/// Optional columns keep values and nulls aligned across row groups.
#[test]
fn rows_split_into_row_groups() {
    let format = Parquet::new(None, Compression::Snappy)
        .unwrap()
        .with_row_group_rows(4);
    let records: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            let inference = (i % 3 == 0).then_some(i as f64);
            detection(&format!("cam{i}"), &[("dog", i, 0.5)], inference)
        })
        .collect();
    let (reader, rows) = read(body_of(&format, &records));
    assert_eq!(reader.metadata().num_row_groups(), 3);
    assert_eq!(rows.len(), 10);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get_string(1).unwrap(), &format!("cam{i}"));
        assert_eq!(r.get_int(6).unwrap(), i as i32);
        let inference = r.get_column_iter().nth(12).unwrap().1;
        if i % 3 == 0 {
            assert_eq!(inference, &Field::Double(i as f64));
        } else {
            assert_eq!(inference, &Field::Null);
        }
    }
}

/// String columns are handed over in chunks: values stay in order across chunk boundaries.
#[test]
fn many_string_values_keep_their_order() {
    let format = Parquet::new(None, Compression::Snappy).unwrap();
    let labels: Vec<String> = (0..10_000).map(|i| format!("label-{i}")).collect();
    let objects: Vec<(&str, i32, f64)> = labels.iter().map(|l| (l.as_str(), 1, 0.5)).collect();
    let (_, rows) = read(body_of(&format, &[detection("cam", &objects, None)]));
    assert_eq!(rows.len(), 10_000);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get_string(5).unwrap(), &labels[i]);
    }
}
