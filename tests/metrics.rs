//! Metrics (docs/operations.md#metrics) against real parts: a daemon recording a test camera
//! with a short `[metrics] interval`; its live `GET /metrics` checked by `promtool check
//! metrics` (Debian's `prometheus` package), the camera's counters growing under its label, and
//! the `vidgest.metrics/1` records read back from the metrics stream with boto3.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::{daemon_config, http_get, venv_python, wait_for_api, TestCam};
use harness::{eventually, Daemon};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const READER: &str = "reader-token-0123456789";

/// The value of the sample `name{labels}` exactly as rendered (labels in order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn scrape(port: u16) -> String {
    let r = http_get(&format!("http://127.0.0.1:{port}/metrics"), Some(READER));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    String::from_utf8(r.body).unwrap()
}

/// `promtool check metrics` on the exposition: exit 0 and no lint findings.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`, installed by scripts/bootstrap)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let findings =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics: {}\n{findings}\n--- exposition ---\n{text}",
        out.status
    );
}

#[test]
fn metrics_endpoint_passes_promtool_grows_and_records_reach_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = daemon_config(
        port,
        &[(READER, "read")],
        "[metrics]\ninterval = \"300ms\"\n\
         [[delivery]]\nname = \"metrics-local\"\nsource = \"metrics\"\nbuffer_interval = \"1s\"\n",
        &[TestCam::small("cam")],
    );
    let daemon = Daemon::start(dir.path(), &config);
    wait_for_api(&daemon, port, Duration::from_secs(30));

    // The one auth middleware guards it: no token, no metrics.
    let r = http_get(&format!("http://127.0.0.1:{port}/metrics"), None);
    assert_eq!(r.status, 401);
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port}/healthz"), None).status,
        200
    );

    let stored = "vidgest_camera_stored_fragments_total{camera=\"cam\"}";
    let (first, text) = eventually(
        Duration::from_secs(60),
        "stored fragments in /metrics",
        || {
            daemon.assert_running();
            let text = scrape(port);
            let n = sample(&text, stored)?;
            // A rate needs two samples: wait for the fps gauge too.
            let fps = sample(
                &text,
                "vidgest_camera_received_frames_per_second{camera=\"cam\"}",
            )?;
            (n > 0.0 && fps > 0.0).then_some((n, text))
        },
    );
    promtool_check(&text);
    for series in [
        "vidgest_camera_state{camera=\"cam\",state=\"streaming\"} 1",
        "# TYPE vidgest_camera_stored_bytes_total counter",
        "# TYPE vidgest_process_cpu_seconds_total counter",
        "# TYPE vidgest_host_memory_available_bytes gauge",
        "# TYPE vidgest_detect_inference_seconds summary",
    ] {
        assert!(
            text.lines().any(|l| l == series),
            "no {series:?} in\n{text}"
        );
    }
    // Retina receive-path losses (issue 12): a series per camera, 0 for this test source.
    for series in [
        "# TYPE vidgest_camera_rtp_packets_lost_total counter",
        "vidgest_camera_rtp_packets_lost_total{camera=\"cam\"} 0",
        "# TYPE vidgest_detect_feed_dropped_frames_total counter",
        "vidgest_detect_feed_dropped_frames_total{camera=\"cam\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == series),
            "no {series:?} in\n{text}"
        );
    }
    assert!(sample(&text, "vidgest_process_resident_memory_bytes").unwrap() > 0.0);
    assert!(sample(
        &text,
        "vidgest_camera_retention_horizon_seconds{camera=\"cam\"}"
    )
    .is_some());
    // The counters grow with the recording.
    eventually(
        Duration::from_secs(60),
        "the fragment counter to grow",
        || (sample(&scrape(port), stored)? > first).then_some(()),
    );
    promtool_check(&scrape(port));

    // The records, read back from the `metrics` stream with a stock boto3 client (the token
    // is its access key id).
    let records = eventually(Duration::from_secs(60), "metrics records", || {
        let out = Command::new(venv_python())
            .arg(api_support::root().join("tests/py/metrics_records.py"))
            .args([&format!("http://127.0.0.1:{port}"), READER, "metrics"])
            .output()
            .expect("run vendor/venv/bin/python");
        assert!(
            out.status.success(),
            "metrics_records.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let records = v["records"].as_array().unwrap().clone();
        let recorded = records
            .iter()
            .any(|r| r["data"]["cameras"][0]["fragments_stored_total"].as_u64() > Some(0));
        (records.len() >= 3 && recorded).then_some(records)
    });
    for r in &records {
        let d = &r["data"];
        assert_eq!(d["schema"], "vidgest.metrics/1", "{r}");
        assert_eq!(
            r["partition_key"], d["device"],
            "partition key is the device: {r}"
        );
        assert_eq!(d["cameras"][0]["camera"], "cam", "{r}");
        assert!(d["host"]["memory_total_bytes"].as_u64() > Some(0), "{r}");
        assert!(d["process"]["rss_bytes"].as_u64() > Some(0), "{r}");
        assert_eq!(d["cameras"][0]["rtp_packets_lost_total"], 0, "{r}");
        assert_eq!(d["cameras"][0]["detect"]["feed_dropped_total"], 0, "{r}");
    }
    // Typed: every record parses as the schema struct; the first has no rates, later ones do.
    let typed: Vec<vidgest::records::MetricsRecord> = records
        .iter()
        .map(|r| serde_json::from_value(r["data"].clone()).unwrap())
        .collect();
    assert!(typed[0].interval_s.is_none() && typed[0].cameras[0].fps.is_none());
    assert!(typed[1..].iter().all(|r| r.interval_s.is_some()));
    assert!(
        typed
            .windows(2)
            .all(|w| w[0].timestamp_ns < w[1].timestamp_ns),
        "records in collection order"
    );

    // A delivery ships them like detections (into <data_dir>/outbox), and reports itself.
    let pipeline =
        "vidgest_pipeline_records_total{pipeline=\"metrics-local\",kind=\"delivery\",source=\"metrics\"}";
    let text = eventually(Duration::from_secs(60), "the delivery to write", || {
        let text = scrape(port);
        (sample(&text, pipeline)? > 0.0).then_some(text)
    });
    promtool_check(&text);
    let shipped = walk(&daemon.data_dir.join("outbox"))
        .into_iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.contains("\"schema\":\"vidgest.metrics/1\""))
        .count();
    assert!(shipped > 0, "no metrics record in the delivered objects");
    assert!(daemon.terminate().success());
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The detection hook: inferences, their time as a summary with quantiles, and objects per
/// label, from the real model on a camera that shows a person (motion gate off, so every
/// sampled frame is inferred).
#[test]
fn detection_metrics_from_the_real_model() {
    let person = api_support::root().join("vendor/darknet/person.jpg");
    assert!(person.exists(), "run scripts/bootstrap (sample photos)");
    let cam = support::TestCamera::start(&[
        "--image",
        person.to_str().unwrap(),
        "--fps",
        "10",
        "--gop",
        "10",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
         [storage]\nmin_free = \"1MiB\"\n[metrics]\ninterval = \"300ms\"\n\
         [[camera]]\nname = \"still\"\n[camera.source]\nkind = \"rtsp\"\nurl = \"{}\"\n\
         [camera.detect]\nfps = 2\nmotion = false\nmin_score = 0.5\n",
        cam.mount_url(0)
    );
    let daemon = Daemon::start(dir.path(), &config);
    wait_for_api(&daemon, port, Duration::from_secs(60));
    let scrape = |port| {
        let r = http_get(&format!("http://127.0.0.1:{port}/metrics"), None);
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap()
    };
    let text = eventually(Duration::from_secs(120), "inferences in /metrics", || {
        daemon.assert_running();
        let text = scrape(port);
        let persons = sample(
            &text,
            "vidgest_detect_objects_total{camera=\"still\",label=\"person\"}",
        )?;
        let p50 = sample(
            &text,
            "vidgest_detect_inference_seconds{camera=\"still\",quantile=\"0.5\"}",
        )?;
        (persons > 0.0 && p50 > 0.0).then_some(text)
    });
    promtool_check(&text);
    let inferences = sample(&text, "vidgest_detect_inferences_total{camera=\"still\"}").unwrap();
    assert!(inferences > 0.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "vidgest_detect_inference_seconds_count{camera=\"still\"}"
        ),
        Some(inferences),
        "the summary counts every inference"
    );
    assert!(
        sample(
            &text,
            "vidgest_detect_inference_seconds_sum{camera=\"still\"}"
        )
        .unwrap()
            > 0.0
    );
    assert!(daemon.terminate().success());
}

/// `[metrics] enabled = false`: no metrics stream is created and /metrics says it is off.
#[test]
fn metrics_off_creates_no_stream_and_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = daemon_config(port, &[], "[metrics]\nenabled = false\n", &[]);
    let daemon = Daemon::start(dir.path(), &config);
    wait_for_api(&daemon, port, Duration::from_secs(30));
    let r = http_get(&format!("http://127.0.0.1:{port}/metrics"), None);
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("enabled = false"));
    let health = http_get(&format!("http://127.0.0.1:{port}/api/v1/health"), None).json();
    let streams = health["shard_streams"].as_array().unwrap();
    assert!(streams.iter().all(|s| s["name"] != "metrics"), "{health}");
    assert!(daemon.terminate().success());
}
