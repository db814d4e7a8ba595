//! The Kinesis-Video-compatible control plane, ListFragments and GetClip driven by stock boto3 clients
//! (`kinesisvideo`, then `kinesis-video-archived-media` on the endpoint GetDataEndpoint gives)
//! against the real daemon recording two test cameras; the client logic is
//! tests/py/kvs_client.py. UpdateDataRetention and the tag operations are checked across daemon
//! restarts (the changes are kept in the store's index; a changed config retention wins).

mod harness;
mod support;

use harness::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const READER: &str = "kvs-reader-token-0123456";
/// An admin token: UpdateDataRetention changes policy (tags alone would need write).
const WRITER: &str = "kvs-writer-token-0123456";
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
    config_with(port, "2h")
}

fn config_with(port: u16, retention: &str) -> String {
    let mut c = format!(
        r#"[agent]
data_dir = "{{data_dir}}"
[api]
listen = "127.0.0.1:{port}"
[[api.token]]
token = "{READER}"
scope = "read"
[[api.token]]
token = "{WRITER}"
scope = "admin"
"#
    );
    for name in CAMERAS {
        c += &format!(
            r#"[[camera]]
name = "{name}"
fragment_duration = "500ms"
retention = "{retention}"
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
    run_client(&args);
    assert!(
        daemon.is_running(),
        "the daemon died during the client tests"
    );
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

/// Runs tests/py/kvs_client.py with `args`; fails unless it passes every check.
fn run_client(args: &[String]) {
    let out = Command::new(venv_python())
        .args(args)
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
}

fn start_listening(dir: &std::path::Path, port: u16, retention: &str) -> Daemon {
    let daemon = Daemon::start(dir, &config_with(port, retention));
    eventually(Duration::from_secs(60), "the API to listen", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    daemon
}

/// `vidgest cameras --json`: the retention in force of the first camera and where it comes from.
fn cli_retention(daemon: &Daemon) -> (f64, String) {
    let (ok, stdout, stderr) = cli(&[
        "cameras",
        "--config",
        daemon.config.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "vidgest cameras: {stderr}");
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["name"], CAMERAS[0], "{stdout}");
    (
        first["retention_hours"].as_f64().unwrap(),
        first["retention_from"].as_str().unwrap().to_string(),
    )
}

fn control_phase(port: u16, phase: &str, retention_hours: u32) {
    run_client(&[
        root().join("tests/py/kvs_client.py").display().to_string(),
        "--endpoint".into(),
        format!("http://127.0.0.1:{port}"),
        "--reader".into(),
        READER.into(),
        "--writer".into(),
        WRITER.into(),
        "--streams".into(),
        CAMERAS[0].into(),
        "--retention-hours".into(),
        retention_hours.to_string(),
        "--control".into(),
        phase.into(),
    ]);
}

#[test]
fn boto3_retention_and_tag_changes_survive_restarts_until_the_config_changes() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = start_listening(dir.path(), port, "2h");
    control_phase(port, "change", 2);
    assert_eq!(cli_retention(&daemon), (4.0, "api".to_string()));
    assert!(daemon.terminate().success(), "SIGTERM exits 0");

    // same config: the API's retention (2 + 3 - 1 = 4 h) and the tags are still there
    let daemon = start_listening(dir.path(), port, "2h");
    control_phase(port, "restarted", 2);
    assert!(daemon.terminate().success(), "SIGTERM exits 0");

    // the config's retention changed: it wins again (logged), the version moves on
    let daemon = start_listening(dir.path(), port, "3h");
    control_phase(port, "config-changed", 3);
    assert_eq!(cli_retention(&daemon), (3.0, "config".to_string()));
    let log = daemon.log_text();
    assert!(
        log.contains("replaces the retention set through the API"),
        "the config taking over is logged:\n{log}"
    );
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}
