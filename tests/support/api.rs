//! Helpers of the tests that drive a recording daemon through its API (tests/kvs_*.rs,
//! tests/rest_*.rs; included as `#[path = "support/api.rs"] mod api_support;` next to
//! `mod harness;` and `mod support;`): the config of test cameras, waiting for the API and for
//! recorded fragments, the Python client scripts in vendor/venv, and plain HTTP GETs.
#![allow(dead_code)]

use crate::harness::{eventually, try_read_fragments, Daemon};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vidgest::store::FragmentMeta;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// vendor/venv/bin/python with boto3; fails (never skips) when bootstrap has not run.
pub fn venv_python() -> PathBuf {
    let python = root().join("vendor/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/bootstrap (installs boto3 into vendor/venv)",
        python.display()
    );
    python
}

/// A camera with a `kind = "test"` source (10 fps) in a daemon config.
pub struct TestCam<'a> {
    pub name: &'a str,
    pub fragment_duration: &'a str,
    /// None: the default retention.
    pub retention: Option<&'a str>,
    pub width: u32,
    pub height: u32,
    pub gop: u32,
}

impl<'a> TestCam<'a> {
    /// A tiny 64x48 camera with half-second fragments kept 2 h: quick to record and to read.
    pub fn small(name: &'a str) -> Self {
        TestCam {
            name,
            fragment_duration: "500ms",
            retention: Some("2h"),
            width: 64,
            height: 48,
            gop: 5,
        }
    }

    /// A 160x120 camera with 1 s fragments, one key frame each.
    pub fn one_second(name: &'a str) -> Self {
        TestCam {
            name,
            fragment_duration: "1s",
            retention: None,
            width: 160,
            height: 120,
            gop: 10,
        }
    }

    /// Its `[[camera]]` table with the `[camera.source]` table.
    pub fn toml(&self) -> String {
        let retention = self
            .retention
            .map_or(String::new(), |r| format!("retention = \"{r}\"\n"));
        format!(
            r#"[[camera]]
name = "{}"
fragment_duration = "{}"
{retention}[camera.source]
kind = "test"
width = {}
height = {}
fps = 10
gop = {}
"#,
            self.name, self.fragment_duration, self.width, self.height, self.gop
        )
    }
}

/// A daemon config (`{data_dir}` left for `Daemon::start`) with the API on 127.0.0.1:`port`,
/// the API tokens (token, scope), `extra` tables (e.g. `[storage]`) and the cameras, in order.
pub fn daemon_config(
    port: u16,
    tokens: &[(&str, &str)],
    extra: &str,
    cameras: &[TestCam],
) -> String {
    let mut c =
        format!("[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n");
    for (token, scope) in tokens {
        c += &format!("[[api.token]]\ntoken = \"{token}\"\nscope = \"{scope}\"\n");
    }
    c += extra;
    for cam in cameras {
        c += &cam.toml();
    }
    c
}

/// Waits (up to `timeout`) until the daemon's API on `port` accepts connections.
pub fn wait_for_api(daemon: &Daemon, port: u16, timeout: Duration) {
    eventually(timeout, "the API to listen", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

/// Waits (up to 90 s) until `camera` has at least `n` fragments stored; returns all of them.
pub fn wait_for_fragments(daemon: &Daemon, camera: &str, n: usize) -> Vec<FragmentMeta> {
    eventually(Duration::from_secs(90), "fragments to be recorded", || {
        daemon.assert_running();
        let f = try_read_fragments(&daemon.data_dir, camera).ok()?;
        (f.len() >= n).then_some(f)
    })
}

/// Starts the daemon with `config` (its API on `port`) and waits until the API listens.
pub fn start_listening(dir: &Path, port: u16, config: &str) -> Daemon {
    let daemon = Daemon::start(dir, config);
    wait_for_api(&daemon, port, Duration::from_secs(60));
    daemon
}

/// Stored fragments as the client scripts' --expect list: [{n, producer_ns, server_ns, size,
/// duration_ns, samples}, ...] (each script reads the fields it checks).
pub fn expect_json(frags: &[FragmentMeta]) -> serde_json::Value {
    let list: Vec<_> = frags
        .iter()
        .map(|f| {
            serde_json::json!({
                "n": f.fragment_number,
                "producer_ns": f.producer_ns,
                "server_ns": f.server_ns,
                "size": f.size,
                "duration_ns": f.duration_ns,
                "samples": f.sample_count,
            })
        })
        .collect();
    list.into()
}

/// The command line of the one-stream client scripts (kvs_common.stream_arguments): the API on
/// `port`, the read token, the stream and the fragments to check against (--expect).
pub fn stream_client_args(
    port: u16,
    reader: &str,
    stream: &str,
    frags: &[FragmentMeta],
) -> Vec<String> {
    vec![
        "--endpoint".into(),
        format!("http://127.0.0.1:{port}"),
        "--reader".into(),
        reader.into(),
        "--stream".into(),
        stream.into(),
        "--expect".into(),
        expect_json(frags).to_string(),
    ]
}

/// Runs tests/py/`script` with `args` in vendor/venv, showing its output; fails unless it exits
/// 0 having printed "checks passed".
pub fn run_python<I, S>(script: &str, args: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(venv_python())
        .arg(root().join("tests/py").join(script))
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .expect("run vendor/venv/bin/python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- {script} ---\n{stdout}{stderr}");
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// After the clients ran: the daemon is still up and a SIGTERM stops it cleanly.
pub fn assert_survived_and_stop(daemon: Daemon) {
    assert!(
        daemon.is_running(),
        "the daemon died during the client tests"
    );
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

/// An HTTP answer of any status.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A ureq agent that returns HTTP error statuses as answers.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// A GET of `url` (with `Authorization: Bearer <token>` when given); HTTP errors are answers.
pub fn http_get(url: &str, token: Option<&str>) -> Reply {
    let mut req = http_agent().get(url);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let mut r = req.call().unwrap();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Reply {
        status: r.status().as_u16(),
        headers,
        body: r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap(),
    }
}

/// A `vidgest.detection/1` record (or a heartbeat, with `kind`) of `camera` at `ns` with one
/// detection per label, as the detector publishes them (fragment_number "7").
pub fn detection_record(camera: &str, ns: i64, kind: &str, labels: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "schema": "vidgest.detection/1",
        "type": kind,
        "device": "test",
        "camera": camera,
        "timestamp": vidgest::clock::format_rfc3339(ns),
        "timestamp_ns": ns,
        "fragment_number": "7",
        "model": "test-model",
        "inference_ms": 1.0,
        "detections": labels.iter().map(|l| serde_json::json!({
            "label": l, "class_id": 0, "score": 0.9,
            "box": {"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2}, "zones": []
        })).collect::<Vec<_>>(),
    })
}
