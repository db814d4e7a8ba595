//! Deliveries into a `dir` destination, end to end through the real daemon: records go in with a
//! stock boto3 Kinesis client (tests/py/delivery_tool.py), objects are read back from the
//! directory (`gzip -t` / `zstd -t`, key names, Hive-style partitions, Firehose error lines), and
//! the state is read with `vidgest deliveries --json`. Also: buffer-size flushes, SIGKILL during
//! delivery, and `vidgest check` on bad delivery sections.

#[path = "support/delivery.rs"]
mod delivery_support;
mod harness;
mod support;

use base64::Engine;
use delivery_support::*;
use harness::*;
use rand::Rng;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Generous: a debug daemon on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn wait_listening(port: u16) {
    eventually(DEADLINE, "vidgest API listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

fn head(port: u16) -> String {
    format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
         [[stream]]\nname = \"events\"\nshards = 4\nretention_hours = 24\n"
    )
}

/// A jsonl delivery of `events` into `outbox/<name>`, partitioned by camera.
fn partitioned(name: &str, compression: &str) -> String {
    format!(
        r#"[[delivery]]
name = "{name}"
source = "events"
compression = "{compression}"
buffer_size = "1MiB"
buffer_interval = "1s"
prefix = "events/camera=!{{partitionKeyFromQuery:camera}}/dt=!{{timestamp:yyyy-MM-dd}}/"
error_prefix = "errors/!{{firehose:error-output-type}}/"
[delivery.destination]
kind = "dir"
path = "outbox/{name}"
"#
    )
}

#[test]
fn records_arrive_once_partitioned_compressed_and_errors_in_firehose_format() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = head(port) + &partitioned("gz", "gzip") + &partitioned("zs", "zstd");
    let daemon = Daemon::start(dir.path(), &cfg);
    wait_listening(port);
    let endpoint = format!("http://127.0.0.1:{port}");
    const N: u64 = 1500;
    const NO_FIELD: u64 = 777;
    put(
        &endpoint,
        "events",
        0,
        N,
        &[
            "--keys",
            "cam-a,cam-b,cam-c",
            "--no-field",
            &NO_FIELD.to_string(),
        ],
    );
    for (name, ext) in [("gz", ".jsonl.gz"), ("zs", ".jsonl.zst")] {
        let s = wait_status(
            &daemon.config,
            name,
            DEADLINE,
            "all records delivered, lag 0",
            |s| s["records"] == N - 1 && s["error_records"] == 1 && s["lag_records"] == 0,
        );
        assert_eq!(s["state"], "healthy", "{s}");
        assert_eq!(s["lost_records"], 0, "{s}");
        let out = daemon.data_dir.join("outbox").join(name);
        let d = read_objects(&out, name, ext, "events/", "errors/", true);
        assert_eq!(
            s["objects"].as_u64().unwrap() as usize,
            d.objects.len() + d.errors.len()
        );
        // Every record exactly once, in its camera's partition (checked by read_objects).
        let expected: Vec<u64> = (0..N).filter(|&i| i != NO_FIELD).collect();
        assert_eq!(d.ids.keys().copied().collect::<Vec<_>>(), expected);
        assert_eq!(d.duplicates(), 0);
        let cameras: std::collections::BTreeSet<&str> = d
            .objects
            .keys()
            .map(|k| k.split('/').nth(1).unwrap())
            .collect();
        assert_eq!(
            cameras.into_iter().collect::<Vec<_>>(),
            ["camera=cam-a", "camera=cam-b", "camera=cam-c"]
        );
        for k in d.objects.keys() {
            let dt = k.split('/').nth(2).unwrap();
            assert!(
                dt.len() == 13 && dt.starts_with("dt=20"),
                "`{k}`: no dt=yyyy-MM-dd partition"
            );
        }
        // The record without `camera` is in the error prefix, Firehose's error format.
        let lines: Vec<_> = d
            .errors
            .iter()
            .flat_map(|(k, l)| l.iter().map(move |l| (k, l)))
            .collect();
        assert_eq!(lines.len(), 1, "{:?}", d.errors);
        let (key, e) = lines[0];
        assert!(key.starts_with("errors/partitioning-failed/"), "{key}");
        assert_eq!(
            e["errorCode"],
            "DynamicPartitioning.MetadataExtractionFailed"
        );
        assert_eq!(e["attemptsMade"], 1);
        assert!(
            e["arrivalTimestamp"].as_i64().unwrap() > 1_700_000_000_000,
            "{e}"
        );
        assert!(
            e["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("camera")),
            "{e}"
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(e["rawData"].as_str().unwrap())
            .unwrap();
        let rec: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(rec["id"], NO_FIELD);
        assert!(rec.get("camera").is_none());
    }
    assert!(daemon.terminate().success());
}

#[test]
fn buffer_size_flushes_objects_of_at_most_the_size_plus_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    // The interval is the longest allowed: only the size flushes while the daemon runs.
    let cfg = head(port)
        + r#"[[delivery]]
name = "big"
source = "events"
buffer_size = "1MiB"
buffer_interval = "900s"
prefix = "big/"
[delivery.destination]
kind = "dir"
path = "outbox"
"#;
    let daemon = Daemon::start(dir.path(), &cfg);
    wait_listening(port);
    let endpoint = format!("http://127.0.0.1:{port}");
    const N: u64 = 330;
    const PAD: usize = 10_000; // ~3.2 MiB in all
    put(&endpoint, "events", 0, N, &["--pad", &PAD.to_string()]);
    wait_status(&daemon.config, "big", DEADLINE, "3 objects by size", |s| {
        s["objects"].as_u64() >= Some(3)
    });
    let out = daemon.data_dir.join("outbox");
    let d = read_objects(&out, "big", ".jsonl", "big/", "big-errors/", false);
    assert!(d.objects.len() >= 3, "{:?}", d.objects);
    let record = PAD + 60;
    for (k, &bytes) in &d.raw_bytes {
        assert!(
            bytes <= (1 << 20) + record && bytes >= (1 << 20) - record,
            "`{k}`: {bytes} bytes for a 1 MiB buffer"
        );
    }
    // SIGTERM writes what the buffers still hold: then every record is there once.
    assert!(daemon.terminate().success());
    let d = read_objects(&out, "big", ".jsonl", "big/", "big-errors/", false);
    assert_eq!(d.ids.len() as u64, N);
    assert_eq!(d.duplicates(), 0);
}

/// Finds `name` below `dir` (any depth).
fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    files(dir)
        .into_iter()
        .find(|f| f.ends_with(name))
        .map(|f| dir.join(f))
}

#[test]
fn sigkill_during_delivery_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = head(port)
        + r#"[[delivery]]
name = "kill"
source = "events"
compression = "gzip"
buffer_size = "1MiB"
buffer_interval = "1s"
prefix = "kill/"
[delivery.destination]
kind = "dir"
path = "outbox"
"#;
    let mut daemon = Daemon::start(dir.path(), &cfg);
    wait_listening(port);
    let (data_dir, config) = (daemon.data_dir.clone(), daemon.config.clone());
    let acked_file = dir.path().join("acked.txt");
    let endpoint = format!("http://127.0.0.1:{port}");
    let loader = Helper::spawn(
        "put-loop",
        &[
            tool().to_str().unwrap(),
            "put-loop",
            "--endpoint",
            &endpoint,
            "--stream",
            "events",
            "--acked",
            acked_file.to_str().unwrap(),
        ],
    );
    let acked = || {
        std::fs::read_to_string(&acked_file)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    };
    const KILLS: usize = 3;
    let mut rng = rand::rng();
    for _ in 0..KILLS {
        // Wait until records flow and objects are being written, then kill at a random moment.
        let before = acked();
        eventually(DEADLINE, "records acknowledged", || {
            (acked() > before + 200).then_some(())
        });
        wait_status(&config, "kill", DEADLINE, "objects written", |s| {
            s["objects"].as_u64() > Some(0)
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        daemon.kill9();
        // What a write killed before its rename leaves (object_store stages `<key>#<n>`):
        // the next start must remove it, or readers of the directory take it for an object.
        let staged = data_dir.join("outbox/kill/kill-1-2026-01-01-00-00-00-x.jsonl.gz#1");
        std::fs::write(&staged, b"partial").unwrap();
        daemon = Daemon::start_with(data_dir.clone(), config.clone());
        wait_listening(port);
    }
    let before = acked();
    eventually(
        DEADLINE,
        "records acknowledged after the last restart",
        || (acked() > before + 200).then_some(()),
    );
    let summary = loader.finish(DEADLINE);
    eprintln!("put-loop: {summary}");
    let acked_ids: Vec<u64> = std::fs::read_to_string(&acked_file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    wait_status(&config, "kill", DEADLINE, "lag 0", |s| {
        s["lag_records"] == 0 && s["state"] == "healthy"
    });
    let out = data_dir.join("outbox");
    let d = read_objects(&out, "kill", ".jsonl.gz", "kill/", "kill-errors/", false);
    let missing: Vec<u64> = acked_ids
        .iter()
        .copied()
        .filter(|i| !d.ids.contains_key(i))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records are in no object: {:?}...",
        missing.len(),
        acked_ids.len(),
        &missing[..missing.len().min(20)]
    );
    let largest = d.objects.values().copied().max().unwrap_or(0) as u64;
    eprintln!(
        "{} records acknowledged, {} objects, {} duplicates, largest object {largest} records",
        acked_ids.len(),
        d.objects.len(),
        d.duplicates()
    );
    assert!(
        d.duplicates() <= KILLS as u64 * largest,
        "{} duplicates: more than one batch in flight per kill ({KILLS} kills, batches of <= {largest})",
        d.duplicates()
    );
    // The checkpoint file is whole JSON with a checkpoint per shard written to.
    let cp = find_file(&data_dir, "consumers/delivery.kill.json").expect("checkpoint file");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cp).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", cp.display()));
    assert!(
        v["checkpoints"].as_object().is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(daemon.terminate().success());
}

/// `vidgest check CONFIG`: exit status and output.
fn check(dir: &Path, toml: &str) -> (bool, String) {
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        toml.replace("{data_dir}", &dir.join("data").display().to_string()),
    )
    .unwrap();
    let out = Command::new(vidgest_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_names_the_toml_path_of_bad_delivery_settings() {
    let dir = tempfile::tempdir().unwrap();
    let base = head(support::free_port());
    for (bad, path, words) in [
        (
            "source = \"nope\"\n",
            "delivery[0].source",
            "unknown stream",
        ),
        (
            "source = \"events\"\nprefix = \"a/!{partitionKeyFromQuery:}/\"\n",
            "delivery[0].prefix",
            "needs a field name",
        ),
        (
            "source = \"events\"\nprefix = \"a/!{timestamp:yyyy-QQ}/\"\n",
            "delivery[0].prefix",
            "`Q` is not supported",
        ),
        (
            "source = \"events\"\nbuffer_size = \"200MiB\"\n",
            "delivery[0].buffer_size",
            "out of range",
        ),
        (
            "source = \"events\"\nbuffer_interval = \"0s\"\n",
            "delivery[0].buffer_interval",
            "out of range",
        ),
    ] {
        let toml = format!("{base}[[delivery]]\nname = \"d\"\n{bad}");
        let (ok, out) = check(dir.path(), &toml);
        assert!(!ok, "check accepted {bad:?}:\n{out}");
        assert!(out.contains(path), "{bad:?}: no `{path}` in:\n{out}");
        assert!(out.contains(words), "{bad:?}: no `{words}` in:\n{out}");
    }
    // The same section with good values passes (the failures above are the values').
    let good = format!("{base}[[delivery]]\nname = \"d\"\nsource = \"events\"\n");
    let (ok, out) = check(dir.path(), &good);
    assert!(ok, "{out}");
}
