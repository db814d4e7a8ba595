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

/// A GetMedia following the camera live ends with the chunked-body terminator when the daemon
/// stops (not cut off when the HTTP shutdown grace runs out), and does not hold the shutdown up.
#[test]
fn a_live_get_media_ends_cleanly_at_shutdown() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &config(port));
    eventually(Duration::from_secs(90), "a fragment to be recorded", || {
        daemon.assert_running();
        let f = try_read_fragments(&daemon.data_dir, CAMERA).ok()?;
        (!f.is_empty()).then_some(())
    });
    let body =
        format!(r#"{{"StreamName": "{CAMERA}", "StartSelector": {{"StartSelectorType": "NOW"}}}}"#);
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "POST /getMedia HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {READER}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&got).contains("AWS_KINESISVIDEO_CONTINUATION_TOKEN") {
        let n = tcp.read(&mut buf).expect("the first fragment arrives");
        assert!(
            n > 0,
            "the response ended early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got[..got.len().min(512)]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let stopping = std::time::Instant::now();
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
    // the HTTP shutdown grace is 10 s: a response that had to be cut would take that long
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    tcp.read_to_end(&mut got).unwrap();
    assert!(
        got.ends_with(b"\r\n0\r\n\r\n"),
        "the body did not end with the chunked terminator"
    );
}
