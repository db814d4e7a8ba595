//! GetMediaForFragmentList and GetMedia driven by stock boto3 clients (get_data_endpoint first,
//! then `kinesis-video-archived-media` / `kinesis-video-media` on that endpoint) against the real
//! daemon recording a test camera; the MKV is checked with mkvinfo, ffprobe and ffmpeg, GetMedia
//! read live. The client logic is tests/py/kvs_media.py.

mod harness;
mod support;

use harness::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const READER: &str = "kvs-media-reader-token-01";
const CAMERA: &str = "cam";
/// Fragments the camera must have recorded before the client runs.
const FRAGMENTS: usize = 4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// vendor/venv/bin/python with boto3; fails (never skips) when bootstrap has not run.
fn venv_python() -> PathBuf {
    let python = root().join("vendor/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/bootstrap (installs boto3 into vendor/venv)",
        python.display()
    );
    python
}

fn config(port: u16) -> String {
    format!(
        r#"[agent]
data_dir = "{{data_dir}}"
[api]
listen = "127.0.0.1:{port}"
[[api.token]]
token = "{READER}"
scope = "read"
[[camera]]
name = "{CAMERA}"
fragment_duration = "500ms"
retention = "2h"
[camera.source]
kind = "test"
width = 64
height = 48
fps = 10
gop = 5
"#
    )
}

/// Starts the daemon, waits for FRAGMENTS fragments and runs kvs_media.py (`only`: one group).
fn run_client(only: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &config(port));
    eventually(Duration::from_secs(60), "the API to listen", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let frags = eventually(Duration::from_secs(90), "fragments to be recorded", || {
        daemon.assert_running();
        let f = try_read_fragments(&daemon.data_dir, CAMERA).ok()?;
        (f.len() >= FRAGMENTS).then_some(f)
    });
    let expect: Vec<_> = frags
        .iter()
        .take(FRAGMENTS)
        .map(|f| {
            serde_json::json!({
                "n": f.fragment_number,
                "producer_ns": f.producer_ns,
                "server_ns": f.server_ns,
                "duration_ns": f.duration_ns,
                "samples": f.sample_count,
            })
        })
        .collect();
    let out = Command::new(venv_python())
        .arg(root().join("tests/py/kvs_media.py"))
        .args(["--endpoint", &format!("http://127.0.0.1:{port}")])
        .args(["--reader", READER, "--stream", CAMERA, "--only", only])
        .args(["--expect", &serde_json::Value::from(expect).to_string()])
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .expect("run vendor/venv/bin/python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- kvs_media.py --only {only} ---\n{stdout}{stderr}");
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "kvs_media.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        daemon.is_running(),
        "the daemon died during the client tests"
    );
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

#[test]
fn boto3_get_media_for_fragment_list_returns_tagged_mkv() {
    run_client("list");
}

#[test]
fn boto3_get_media_follows_the_stream_live_from_every_selector() {
    run_client("media");
}
