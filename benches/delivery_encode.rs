//! Delivery body encoding: JSON lines with gzip / zstd and Parquet (detections, snappy), one
//! measurement per process so bench/delivery.sh can take each one's peak RSS and compare with
//! `gzip -6`, `zstd -3` and pyarrow on the same bytes.
//!
//! ```text
//! delivery_encode gen OUT MIB            deterministic detection-record corpus (JSON lines)
//! delivery_encode jsonl gzip|zstd IN     JsonlBody over every line of IN
//! delivery_encode parquet IN             Parquet (built-in detections schema, snappy)
//! ```
//! Each measurement prints one JSON object: input bytes, output bytes, records, rows and the
//! seconds of the encode itself (input already in memory, as a delivery buffer has it).
//! Without arguments (as `cargo test --all-targets` runs it) it does a small smoke pass.

use std::io::Write;
use std::time::Instant;
use vidgest::delivery::parquet::Parquet;
use vidgest::delivery::{BodyEncoder, BodyFormat, Compression, Jsonl};
use vidgest::records::{BoundingBox, DetectedObject, DetectionRecord, RecordKind};

/// splitmix64: the corpus must be the same bytes on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// lo..hi rounded to `scale` (records carry 3 or 4 decimals).
    fn between(&mut self, lo: f64, hi: f64, scale: f64) -> f64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo + u * (hi - lo)) * scale).round() / scale
    }
}

const LABELS: &[(&str, u32)] = &[
    ("person", 0),
    ("bicycle", 1),
    ("car", 2),
    ("motorcycle", 3),
    ("truck", 7),
    ("cat", 15),
    ("dog", 16),
    ("backpack", 24),
];
const CAMERAS: &[&str] = &["front-door", "driveway", "backyard", "garage"];

/// Detection records as the detector writes them: 4 cameras at 2 fps, 0..4 objects, a
/// heartbeat now and then; about 340 bytes per record.
fn corpus(bytes: usize) -> Vec<u8> {
    let mut rng = Rng(0x5eed);
    let mut out = Vec::with_capacity(bytes + 4096);
    let mut t: i64 = 1_796_083_200_000_000_000;
    let mut fragment = 90_000u64;
    while out.len() < bytes {
        t += 125_000_000 + rng.below(2_000_000) as i64;
        if rng.below(50) == 0 {
            fragment += 1;
        }
        let camera = CAMERAS[rng.below(CAMERAS.len() as u64) as usize];
        let heartbeat = rng.below(20) == 0;
        let kind = if heartbeat {
            RecordKind::Heartbeat
        } else {
            RecordKind::Detection
        };
        let mut r = DetectionRecord::new(kind, "edge-pi-01", camera, "yolov3-tiny", t, fragment);
        if !heartbeat {
            r.inference_ms = Some((300.0 + rng.below(400) as f64) / 10.0);
            for _ in 0..1 + rng.below(4) {
                let (label, class_id) = LABELS[rng.below(LABELS.len() as u64) as usize];
                r.detections.push(DetectedObject {
                    label: label.into(),
                    class_id,
                    score: rng.between(0.5, 1.0, 1e3),
                    bbox: BoundingBox {
                        x: rng.between(0.0, 0.8, 1e4),
                        y: rng.between(0.0, 0.8, 1e4),
                        w: rng.between(0.05, 0.2, 1e4),
                        h: rng.between(0.05, 0.2, 1e4),
                    },
                    zones: if rng.below(3) == 0 {
                        vec!["porch".into()]
                    } else {
                        vec![]
                    },
                });
            }
        }
        out.extend_from_slice(&r.to_json());
        out.push(b'\n');
    }
    out
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

struct Measured {
    mode: String,
    input_bytes: usize,
    output_bytes: usize,
    records: usize,
    rows: usize,
    seconds: f64,
    /// Parquet: the part of `seconds` spent in `finish` (columns to pages to file), the
    /// like-for-like counterpart of pyarrow's write_table.
    finish_seconds: f64,
}

impl Measured {
    fn json(&self) -> String {
        format!(
            r#"{{"mode":"{}","input_bytes":{},"output_bytes":{},"records":{},"rows":{},"seconds":{:.6},"finish_seconds":{:.6}}}"#,
            self.mode,
            self.input_bytes,
            self.output_bytes,
            self.records,
            self.rows,
            self.seconds,
            self.finish_seconds
        )
    }
}

fn encode(format: &dyn BodyFormat, mode: &str, data: &[u8]) -> Measured {
    let start = Instant::now();
    let mut body: Box<dyn BodyEncoder> = format.encoder().expect("encoder");
    for l in lines(data) {
        body.push(l).expect("every corpus record converts");
    }
    let records = body.records();
    let out = body.finish().expect("finish");
    let seconds = start.elapsed().as_secs_f64();
    Measured {
        mode: mode.to_string(),
        input_bytes: data.len(),
        output_bytes: out.len(),
        records,
        rows: 0,
        seconds,
        finish_seconds: 0.0,
    }
}

fn parquet(data: &[u8]) -> Measured {
    let format = Parquet::new(None, Compression::Snappy).expect("detections schema");
    let start = Instant::now();
    let mut body = format.body();
    for l in lines(data) {
        body.push(l).expect("every corpus record converts");
    }
    let rows = body.rows();
    let records = BodyEncoder::records(&body);
    let finish = Instant::now();
    let out = body.finish().expect("finish");
    Measured {
        mode: "parquet-snappy".into(),
        input_bytes: data.len(),
        output_bytes: out.len(),
        records,
        rows,
        seconds: start.elapsed().as_secs_f64(),
        finish_seconds: finish.elapsed().as_secs_f64(),
    }
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn main() {
    // Flags from the test or bench harness (`cargo test --all-targets -- --test-threads=2`,
    // `cargo bench`) select the smoke pass, as no arguments do.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let m = match args.as_slice() {
        ["gen", out, mib] => {
            let mib: usize = mib.parse().expect("MIB is a number");
            let data = corpus(mib << 20);
            std::fs::File::create(out)
                .and_then(|mut f| f.write_all(&data))
                .unwrap_or_else(|e| panic!("writing {out}: {e}"));
            eprintln!("{} bytes, {} records", data.len(), lines(&data).count());
            return;
        }
        ["jsonl", "gzip", input] => encode(&Jsonl(Compression::Gzip), "jsonl-gzip", &read(input)),
        ["jsonl", "zstd", input] => encode(&Jsonl(Compression::Zstd), "jsonl-zstd", &read(input)),
        ["parquet", input] => parquet(&read(input)),
        [] => {
            // Smoke pass: every mode on a small corpus, and the corpus is deterministic.
            let data = corpus(256 << 10);
            assert_eq!(data, corpus(256 << 10));
            for m in [
                encode(&Jsonl(Compression::Gzip), "jsonl-gzip", &data),
                encode(&Jsonl(Compression::Zstd), "jsonl-zstd", &data),
                parquet(&data),
            ] {
                assert!(
                    m.output_bytes > 0 && m.output_bytes < m.input_bytes,
                    "{}",
                    m.json()
                );
                println!("{}", m.json());
            }
            return;
        }
        other => {
            eprintln!("usage: delivery_encode gen OUT MIB | jsonl gzip|zstd IN | parquet IN (got {other:?})");
            std::process::exit(2);
        }
    };
    println!("{}", m.json());
}
