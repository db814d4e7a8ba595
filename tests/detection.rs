//! Detection end to end: the real model on a real RTSP camera, records in the shard stream that
//! link to stored fragments, the motion gate, and faults that must not touch recording.

mod harness;
mod support;

use harness::*;
use std::path::PathBuf;
use std::time::Duration;
use support::TestCamera;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The last value of `key=N` logged in a status line of `camera`.
fn counter(log: &str, camera: &str, key: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter(|l| l.contains("status:") && l.contains(&format!("camera={camera} ")))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
        })
        .next()
}

/// Every record of the `detections` stream, through `vidgest records tail` (the daemon's API).
/// A failing CLI panics at once with its output, rather than reading as "no record yet".
fn records(daemon: &Daemon) -> Vec<serde_json::Value> {
    daemon.assert_running();
    let out = std::process::Command::new(vidgest_bin())
        .args(["records", "tail", "detections", "--config"])
        .arg(&daemon.config)
        .args(["--from", "trim-horizon", "--no-follow"])
        .output()
        .expect("run vidgest records tail");
    assert!(
        out.status.success(),
        "vidgest records tail failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| {
                panic!("records tail printed a line that is not JSON ({e}): {l}")
            })
        })
        .map(|r| r["data"].clone())
        .collect()
}

/// Starts the daemon and waits for its API (so that CLI calls after this may not fail).
fn start_daemon(dir: &std::path::Path, body: &str) -> Daemon {
    let port = support::free_port();
    let toml = format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nmin_free = \"1MiB\"\n[[stream]]\nname = \"detections\"\nshards = 1\n{body}"
    );
    std::env::set_var("VIDGEST_STATUS_INTERVAL_S", "1");
    let daemon = Daemon::start(dir, &toml);
    eventually(Duration::from_secs(60), "the API to listen", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    daemon
}

/// An RTSP test camera showing darknet's person.jpg at 10 fps, a key frame every second.
fn person_camera() -> TestCamera {
    let person = repo("vendor/darknet/person.jpg");
    assert!(person.exists(), "run scripts/bootstrap (sample photos)");
    TestCamera::start(&[
        "--image",
        person.to_str().unwrap(),
        "--fps",
        "10",
        "--gop",
        "10",
    ])
}

/// Waits for `camera`'s first detection record with a person and checks it: the model, the
/// box, and the stored fragment it names holds the frame's time.
fn assert_person_linked(daemon: &Daemon, camera: &str) {
    // A person record within seconds of the first frames.
    let record = eventually(
        Duration::from_secs(90),
        "a detection record with a person",
        || {
            records(daemon).into_iter().find(|r| {
                r["camera"] == camera
                    && r["detections"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|d| d["label"] == "person"))
            })
        },
    );
    assert_eq!(record["type"], "detection");
    assert_eq!(record["model"], "yolov3-tiny-coco");
    let person = record["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == "person")
        .unwrap();
    assert!(person["score"].as_f64().unwrap() >= 0.5);
    for k in ["x", "y", "w", "h"] {
        let v = person["box"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "box.{k} = {v}");
    }
    // The record names a stored fragment whose time range contains the frame's timestamp.
    let number: u64 = record["fragment_number"].as_str().unwrap().parse().unwrap();
    let ts = record["timestamp_ns"].as_i64().unwrap();
    let frags = daemon.fragments(camera);
    let holder = frags
        .iter()
        .find(|f| f.fragment_number == number)
        .expect("the linked fragment is stored");
    assert!(
        holder.producer_ns <= ts && ts < holder.producer_end_ns(),
        "timestamp {ts} outside fragment {number} [{}, {})",
        holder.producer_ns,
        holder.producer_end_ns()
    );
    let rfc = vidgest::clock::format_rfc3339(ts);
    assert_eq!(record["timestamp"], rfc.as_str());
}

#[test]
fn detects_a_person_links_records_to_fragments_and_gates_still_scenes() {
    let cam = person_camera();
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(
        dir.path(),
        &format!(
            r#"
[[camera]]
name = "still"
[camera.source]
kind = "rtsp"
url = "{}"
[camera.detect]
fps = 2
min_score = 0.5

[[camera]]
name = "moving"
[camera.source]
kind = "test"
pattern = "ball"
width = 320
height = 240
fps = 10
[camera.detect]
fps = 2
"#,
            cam.mount_url(0)
        ),
    );
    assert_person_linked(&daemon, "still");

    // Motion gate: the still image is inferred once (warm-up) and then skipped; the moving
    // ball keeps being inferred.
    eventually(
        Duration::from_secs(60),
        "still frames to be skipped",
        || {
            let log = daemon.log_text();
            (counter(&log, "still", "still")? >= 6).then_some(())
        },
    );
    let log = daemon.log_text();
    let still_inferences = counter(&log, "still", "inferences").unwrap();
    assert!(
        still_inferences <= 2,
        "still scene inferred {still_inferences} times"
    );
    eventually(
        Duration::from_secs(60),
        "the moving scene to be inferred repeatedly",
        || (counter(&daemon.log_text(), "moving", "inferences")? >= 6).then_some(()),
    );
    assert!(daemon.terminate().success());
}

#[test]
fn a_broken_model_turns_detection_off_but_recording_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let manifest = std::fs::read_to_string(repo("models/yolov3-tiny.toml"))
        .unwrap()
        .replace("yolov3-tiny.onnx", "broken.onnx");
    let manifest = manifest
        .lines()
        .filter(|l| !l.starts_with("sha256"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(models.join("broken.toml"), manifest).unwrap();
    std::fs::write(models.join("broken.onnx"), b"this is not an onnx model").unwrap();
    let daemon = start_daemon(
        dir.path(),
        &format!(
            "[detect]\nmodel = \"{}\"\n[[camera]]\nname = \"cam\"\n[camera.source]\nkind = \"test\"\nwidth = 320\nheight = 240\nfps = 10\n[camera.detect]\nfps = 2\n",
            models.join("broken.toml").display()
        ),
    );
    eventually(
        Duration::from_secs(60),
        "recording despite the broken model",
        || (daemon.fragments("cam").len() >= 2).then_some(()),
    );
    // One line, printed only when the model fails to load, names the camera and the model.
    let log = daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("detection off for this camera"))
        .unwrap_or_else(|| panic!("no line says detection is off:\n{log}"));
    assert!(
        line.contains("camera=cam") && line.contains("broken.onnx"),
        "the error names camera and model: {line}"
    );
    assert!(daemon.terminate().success());
}

#[test]
fn a_missing_runtime_is_explained_and_recording_works() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[detect]\nonnxruntime = \"/nonexistent/libonnxruntime.so\"\n[[camera]]\nname = \"cam\"\n[camera.source]\nkind = \"test\"\nwidth = 320\nheight = 240\nfps = 10\n[camera.detect]\nfps = 2\n";
    let daemon = start_daemon(dir.path(), body);
    let (ok, out, err) = cli(&["check", "--config", daemon.config.to_str().unwrap()]);
    assert!(!ok, "check must fail");
    let all = format!("{out}{err}");
    assert!(
        all.contains("detect.onnxruntime") && all.contains("scripts/fetch-model"),
        "{all}"
    );
    eventually(
        Duration::from_secs(60),
        "recording without detection",
        || (daemon.fragments("cam").len() >= 2).then_some(()),
    );
    assert!(daemon
        .log_text()
        .contains("detection is off for every camera"));
    assert!(daemon.terminate().success());
}

#[test]
fn a_failing_detect_source_does_not_affect_recording() {
    let dir = tempfile::tempdir().unwrap();
    let dead = support::free_port();
    let body = format!(
        "[[camera]]\nname = \"cam\"\n[camera.source]\nkind = \"test\"\nwidth = 320\nheight = 240\nfps = 10\n[camera.detect]\nfps = 2\nsource = \"rtsp://127.0.0.1:{dead}/sub\"\n"
    );
    let daemon = start_daemon(dir.path(), &body);
    eventually(
        Duration::from_secs(60),
        "the sub-stream to fail and back off",
        || {
            let log = daemon.log_text();
            (log.contains("camera=cam-detect") && log.contains("retrying in")).then_some(())
        },
    );
    eventually(Duration::from_secs(60), "recording to go on", || {
        (daemon.fragments("cam").len() >= 3).then_some(())
    });
    let frags = daemon.fragments("cam");
    assert!(
        frags.iter().all(|f| !f.discontinuity),
        "recording never interrupted"
    );
    assert!(daemon.terminate().success());
}

/// The same person through the retina backend: its access units feed an appsrc decode pipeline
/// (capture/detect_feed.rs) whose frames carry the recorder's media time, so the record links
/// to the fragment holding the frame as with the GStreamer backend.
#[test]
fn retina_camera_detects_a_person_linked_to_its_fragment() {
    let cam = person_camera();
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(
        dir.path(),
        &format!(
            "[[camera]]\nname = \"still\"\n[camera.source]\nkind = \"rtsp\"\nbackend = \"retina\"\nurl = \"{}\"\n[camera.detect]\nfps = 2\nmin_score = 0.5\n",
            cam.mount_url(0)
        ),
    );
    assert_person_linked(&daemon, "still");
    assert!(daemon.terminate().success());
}
