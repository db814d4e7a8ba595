//! The Kinesis-Video-compatible control plane, ListFragments and GetClip driven by stock boto3 clients
//! (`kinesisvideo`, then `kinesis-video-archived-media` on the endpoint GetDataEndpoint gives)
//! against the real daemon recording two test cameras; the client logic is
//! tests/py/kvs_client.py.

mod harness;
mod support;

use harness::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const READER: &str = "kvs-reader-token-0123456";
const CAMERAS: [&str; 2] = ["cam", "lobby"];
/// Fragments each camera must have recorded before the client runs.
const FRAGMENTS: usize = 5;

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
    let mut c = format!(
        r#"[agent]
data_dir = "{{data_dir}}"
[api]
listen = "127.0.0.1:{port}"
[[api.token]]
token = "{READER}"
scope = "read"
"#
    );
    for name in CAMERAS {
        c += &format!(
            r#"[[camera]]
name = "{name}"
fragment_duration = "500ms"
retention = "2h"
[camera.source]
kind = "test"
width = 64
height = 48
fps = 10
gop = 5
"#
        );
    }
    c
}

#[test]
fn boto3_kinesis_video_lists_streams_and_fragments_and_gets_clips() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &config(port));
    eventually(Duration::from_secs(60), "the API to listen", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let mut expect = serde_json::Map::new();
    for name in CAMERAS {
        let frags = eventually(Duration::from_secs(90), "fragments to be recorded", || {
            daemon.assert_running();
            let f = try_read_fragments(&daemon.data_dir, name).ok()?;
            (f.len() >= FRAGMENTS).then_some(f)
        });
        let list: Vec<_> = frags
            .iter()
            .take(FRAGMENTS)
            .map(|f| {
                serde_json::json!({
                    "n": f.fragment_number,
                    "producer_ns": f.producer_ns,
                    "server_ns": f.server_ns,
                    "size": f.size,
                    "duration_ns": f.duration_ns,
                })
            })
            .collect();
        expect.insert(name.to_string(), list.into());
    }
    let args = [
        root().join("tests/py/kvs_client.py").display().to_string(),
        "--endpoint".into(),
        format!("http://127.0.0.1:{port}"),
        "--reader".into(),
        READER.into(),
        "--streams".into(),
        CAMERAS.join(","),
        "--retention-hours".into(),
        "2".into(),
        "--expect".into(),
        serde_json::Value::Object(expect).to_string(),
    ];
    let out = Command::new(venv_python())
        .args(&args)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .expect("run vendor/venv/bin/python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- kvs_client.py ---\n{stdout}{stderr}");
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "kvs_client.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        daemon.is_running(),
        "the daemon died during the client tests"
    );
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}
