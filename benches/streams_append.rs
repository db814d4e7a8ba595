//! Shard-stream append rate against a plain sequential write of the same bytes.
//!
//! `cargo bench --bench streams_append` measures (medians of 5 runs, fsync on, 1 KiB records):
//! - plain: one file, the records' bytes written batch by batch, one fdatasync per batch;
//! - put_many: the same batches through `ShardStreams::put_many` into a 1-shard stream;
//! - put from 1 and 8 threads: single-record puts, showing how many records share an fdatasync
//!   (group commit).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a tiny smoke pass.
//! Files go to a temporary directory under target/ (same file system as a build tree).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vidgest::clock::system_clock;
use vidgest::streams::{PutRecord, ShardStreams, ShardStreamsOptions};

struct Sizes {
    records: usize,
    batch: usize,
    record_bytes: usize,
    runs: usize,
    threads: usize,
    puts_per_thread: usize,
}

struct Row {
    name: String,
    records: usize,
    elapsed: Duration,
    fdatasyncs: u64,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full {
        Sizes {
            records: 50_000,
            batch: 500,
            record_bytes: 1024,
            runs: 5,
            threads: 8,
            puts_per_thread: 250,
        }
    } else {
        Sizes {
            records: 1_000,
            batch: 500,
            record_bytes: 1024,
            runs: 1,
            threads: 8,
            puts_per_thread: 5,
        }
    };
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("streams_append");
    std::fs::create_dir_all(&base).expect("bench directory");

    // Runs interleave (plain, ours, plain, ...) so load from other processes hits both alike.
    let mut rows: [Vec<Row>; 4] = Default::default();
    for _ in 0..sizes.runs {
        rows[0].push(plain_write(&base, &sizes));
        rows[1].push(put_many(&base, &sizes));
        rows[2].push(concurrent_puts(&base, 1, sizes.puts_per_thread * 2));
        rows[3].push(concurrent_puts(&base, sizes.threads, sizes.puts_per_thread));
    }
    let [plain, ours, single, group] = rows.map(median);

    println!(
        "\n### Shard stream append ({} records of {} B, batches of {}, fsync on, median of {} run{})\n",
        sizes.records,
        sizes.record_bytes,
        sizes.batch,
        sizes.runs,
        if sizes.runs == 1 { "" } else { "s" }
    );
    println!(
        "| workload | records | records/s | MB/s | fdatasyncs | records per fdatasync | vs plain |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let plain_rate = rate(&plain);
    for row in [&plain, &ours, &single, &group] {
        let r = rate(row);
        println!(
            "| {} | {} | {:.0} | {:.1} | {} | {:.1} | {} |",
            row.name,
            row.records,
            r,
            r * sizes.record_bytes as f64 / 1e6,
            row.fdatasyncs,
            row.records as f64 / row.fdatasyncs.max(1) as f64,
            if std::ptr::eq(row, &single) || std::ptr::eq(row, &group) {
                "-".to_string()
            } else {
                format!("{:.2}x", r / plain_rate)
            },
        );
    }
    println!(
        "\nput_many / plain = {:.2}x (target >= 0.70x)",
        rate(&ours) / plain_rate
    );
    let _ = std::fs::remove_dir_all(&base);
}

fn rate(row: &Row) -> f64 {
    row.records as f64 / row.elapsed.as_secs_f64()
}

/// The run with the median time.
fn median(mut rows: Vec<Row>) -> Row {
    rows.sort_by_key(|r| r.elapsed);
    let mid = rows.len() / 2;
    rows.swap_remove(mid)
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

fn plain_write(base: &Path, s: &Sizes) -> Row {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let batches: Vec<Vec<u8>> = (0..s.records)
        .collect::<Vec<_>>()
        .chunks(s.batch)
        .map(|c| c.iter().flat_map(|&i| payload(i, s.record_bytes)).collect())
        .collect();
    let mut file = File::create(dir.path().join("plain.log")).expect("plain file");
    let t = Instant::now();
    for b in &batches {
        file.write_all(b).expect("write");
        file.sync_data().expect("fdatasync");
    }
    Row {
        name: format!("plain write + fdatasync per {}-record batch", s.batch),
        records: s.records,
        elapsed: t.elapsed(),
        fdatasyncs: batches.len() as u64,
    }
}

fn open_store(dir: &Path, shards: u32) -> Arc<ShardStreams> {
    let store =
        ShardStreams::open(dir, ShardStreamsOptions::default(), system_clock()).expect("open");
    store.create_stream("bench", shards, 24).expect("create");
    store
}

fn put_many(base: &Path, s: &Sizes) -> Row {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let store = open_store(dir.path(), 1);
    let batches: Vec<Vec<PutRecord>> = (0..s.records)
        .collect::<Vec<_>>()
        .chunks(s.batch)
        .map(|c| {
            c.iter()
                .map(|&i| PutRecord {
                    partition_key: format!("cam-{}", i % 8),
                    explicit_hash_key: None,
                    data: payload(i, s.record_bytes),
                })
                .collect()
        })
        .collect();
    let syncs = store.io_stats().fdatasyncs;
    let t = Instant::now();
    for b in batches {
        for r in store.put_many("bench", b).expect("put_many") {
            r.expect("record stored");
        }
    }
    Row {
        name: format!("put_many, {}-record batches, 1 shard", s.batch),
        records: s.records,
        elapsed: t.elapsed(),
        fdatasyncs: store.io_stats().fdatasyncs - syncs,
    }
}

fn concurrent_puts(base: &Path, threads: usize, per_thread: usize) -> Row {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let store = open_store(dir.path(), 1);
    let syncs = store.io_stats().fdatasyncs;
    let t = Instant::now();
    std::thread::scope(|scope| {
        for th in 0..threads {
            let store = &store;
            scope.spawn(move || {
                for i in 0..per_thread {
                    let rec = PutRecord {
                        partition_key: format!("cam-{th}"),
                        explicit_hash_key: None,
                        data: payload(i, 1024),
                    };
                    store.put("bench", rec).expect("put");
                }
            });
        }
    });
    Row {
        name: format!(
            "put, {threads} thread{}, 1 shard",
            if threads == 1 { "" } else { "s" }
        ),
        records: threads * per_thread,
        elapsed: t.elapsed(),
        fdatasyncs: store.io_stats().fdatasyncs - syncs,
    }
}
