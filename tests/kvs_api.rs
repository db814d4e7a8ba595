//! The Kinesis-Video-compatible control plane, ListFragments and GetClip driven by stock boto3 clients
//! (`kinesisvideo`, then `kinesis-video-archived-media` on the endpoint GetDataEndpoint gives)
//! against the real daemon recording two test cameras; the client logic is
//! tests/py/kvs_client.py. UpdateDataRetention and the tag operations are checked across daemon
//! restarts (the changes are kept in the store's index; a changed config retention wins).

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::*;
use harness::*;

const READER: &str = "kvs-reader-token-0123456";
/// An admin token: UpdateDataRetention changes policy (tags alone would need write).
const WRITER: &str = "kvs-writer-token-0123456";
const CAMERAS: [&str; 2] = ["cam", "lobby"];
/// Fragments each camera must have recorded before the client runs.
const FRAGMENTS: usize = 5;

fn config(port: u16) -> String {
    config_with(port, "2h")
}

fn config_with(port: u16, retention: &str) -> String {
    let cameras = CAMERAS.map(|name| TestCam {
        retention: Some(retention),
        ..TestCam::small(name)
    });
    daemon_config(port, &[(READER, "read"), (WRITER, "admin")], "", &cameras)
}

#[test]
fn boto3_kinesis_video_lists_streams_and_fragments_and_gets_clips() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = start_listening(dir.path(), port, &config(port));
    let mut expect = serde_json::Map::new();
    for name in CAMERAS {
        let frags = wait_for_fragments(&daemon, name, FRAGMENTS);
        expect.insert(name.to_string(), expect_json(&frags[..FRAGMENTS]));
    }
    let args = [
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
    run_python("kvs_client.py", args);
    assert_survived_and_stop(daemon);
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
    run_python(
        "kvs_client.py",
        [
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
        ],
    );
}

#[test]
fn boto3_retention_and_tag_changes_survive_restarts_until_the_config_changes() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = start_listening(dir.path(), port, &config_with(port, "2h"));
    control_phase(port, "change", 2);
    assert_eq!(cli_retention(&daemon), (4.0, "api".to_string()));
    assert!(daemon.terminate().success(), "SIGTERM exits 0");

    // same config: the API's retention (2 + 3 - 1 = 4 h) and the tags are still there
    let daemon = start_listening(dir.path(), port, &config_with(port, "2h"));
    control_phase(port, "restarted", 2);
    assert!(daemon.terminate().success(), "SIGTERM exits 0");

    // the config's retention changed: it wins again (logged), the version moves on
    let daemon = start_listening(dir.path(), port, &config_with(port, "3h"));
    control_phase(port, "config-changed", 3);
    assert_eq!(cli_retention(&daemon), (3.0, "config".to_string()));
    let log = daemon.log_text();
    assert!(
        log.contains("replaces the retention set through the API"),
        "the config taking over is logged:\n{log}"
    );
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}
