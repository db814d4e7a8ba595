//! Command-line behaviour on bad input: clear errors with TOML paths, nothing started.

mod harness;

use harness::cli;

fn write(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("vidgest.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn run_refuses_a_malformed_config_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write(
        dir.path(),
        &format!(
            "[agent]\ndata_dir = \"{}\"\n[[camera]]\nname = \"front\"\n[camera.source]\nkind = \"rtsp\"\nurl = \"rtsp://127.0.0.1/x\"\ntransprot = \"tcp\"\n",
            data.display()
        ),
    );
    let (ok, _, err) = cli(&["run", "--config", &cfg]);
    assert!(!ok);
    assert!(err.contains("camera[0].source"), "{err}");
    assert!(err.contains("transprot"), "{err}");
    assert!(!data.exists(), "nothing may be started or created");
}

#[test]
fn check_lists_every_problem_with_its_path_and_hides_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        r#"
[agent]
data_dir = "/tmp/vidgest-check"
[[camera]]
name = "a"
fragment_duration = "20s"
[camera.source]
kind = "rtsp"
url = "admin:hunter2@10.0.0.1/live"
[[camera]]
name = "b"
[camera.source]
kind = "file"
"#,
    );
    let (ok, out, err) = cli(&["check", "--config", &cfg]);
    assert!(!ok);
    let all = format!("{out}{err}");
    assert!(
        all.contains("camera[0].fragment_duration: 20s is out of range"),
        "{all}"
    );
    assert!(
        all.contains("camera[0].source.url: missing scheme"),
        "{all}"
    );
    assert!(
        all.contains("camera[1].source.path: required for kind = \"file\""),
        "{all}"
    );
    assert!(!all.contains("hunter2"), "password leaked: {all}");
}

#[test]
fn check_accepts_the_demo_config_environment() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (ok, out, err) = std::process::Command::new(harness::vidgest_bin())
        .args(["check", "--config", "configs/demo.toml"])
        .current_dir(root)
        .output()
        .map(|o| {
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.contains("ok (2 camera(s)"), "{out}");
}

/// Issue 12: `check` and `doctor` say which backend receives each camera and which GStreamer
/// elements it needs: none for recording on retina, the appsrc decode chain with detection.
#[test]
fn check_and_doctor_name_each_cameras_backend_and_gstreamer_elements() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            r#"
[agent]
data_dir = "{}"
[api]
listen = "{}"
[[camera]]
name = "plain"
[camera.source]
kind = "rtsp"
url = "rtsp://127.0.0.1:9/a"
[[camera]]
name = "legacy"
[camera.source]
kind = "rtsp"
backend = "gstreamer"
url = "rtsp://127.0.0.1:9/b"
[[camera]]
name = "watched"
[camera.source]
kind = "rtsp"
url = "rtsp://127.0.0.1:9/c"
[camera.detect]
fps = 2
"#,
            dir.path().join("data").display(),
            free_listen()
        ),
    );
    let (_, check, _) = cli(&["check", "--config", &cfg]);
    let (_, doctor, _) = cli(&["doctor", "--config", &cfg]);
    for out in [&check, &doctor] {
        assert!(
            out.contains("camera plain: rtsp via retina, GStreamer: none\n"),
            "{out}"
        );
        let legacy = out
            .lines()
            .find(|l| l.starts_with("camera legacy: "))
            .unwrap_or("");
        assert!(
            legacy.starts_with("camera legacy: rtsp via gstreamer, GStreamer: ")
                && legacy.contains(" rtspsrc ")
                && legacy.contains(" rtph264depay "),
            "{out}"
        );
        let watched = out
            .lines()
            .find(|l| l.starts_with("camera watched: "))
            .unwrap_or("");
        assert!(
            watched.starts_with("camera watched: rtsp via retina, GStreamer: appsrc ")
                && watched.contains(" avdec_h264 ")
                && watched.contains(" videoscale ")
                && !watched.contains("rtspsrc")
                && !watched.contains("FAIL"),
            "{out}"
        );
    }
}

#[test]
fn fragments_on_an_empty_data_dir_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "[agent]\ndata_dir = \"{}\"\n",
            dir.path().join("nothing").display()
        ),
    );
    let (ok, _, err) = cli(&["fragments", "front", "--config", &cfg]);
    assert!(!ok);
    assert!(err.contains("no recordings under"), "{err}");
    let (ok, _, err) = cli(&[
        "clip",
        "front",
        "--config",
        &cfg,
        "--start",
        "yesterday",
        "-o",
        "/tmp/x.mp4",
    ]);
    assert!(!ok);
    assert!(err.contains("invalid time `yesterday`"), "{err}");
}

/// Runs `vidgest run` on `cfg` and expects it to refuse to start: returns its stderr. A daemon
/// that starts anyway is killed and the test fails.
fn run_must_refuse(cfg: &str) -> String {
    let err_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(harness::vidgest_bin())
        .args(["run", "--config", cfg])
        .env("VIDGEST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(err_file.reopen().unwrap())
        .spawn()
        .unwrap();
    let status = harness::eventually(Duration::from_secs(60), "vidgest run to exit", || {
        child.try_wait().unwrap()
    });
    let err = std::fs::read_to_string(err_file.path()).unwrap();
    assert!(!status.success(), "run accepted the config: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

use std::time::Duration;

fn free_listen() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Issue 7, A9: everything `run` rejects, `check` rejects first, naming the field.
#[test]
fn check_rejects_everything_run_rejects() {
    let cases: &[(&str, &str, &str)] = &[
        // (what, TOML added to a good config, path named in the error)
        ("stream ..", "[[stream]]\nname = \"..\"\n", "stream[0].name"),
        ("stream .", "[[stream]]\nname = \".\"\n", "stream[0].name"),
        (
            "detect stream ..",
            "[camera.detect]\nenabled = false\nstream = \"..\"\n",
            "camera[0].detect.stream",
        ),
        (
            "tiny global budget",
            "[storage]\nmax_bytes = \"1KiB\"\n",
            "storage.max_bytes",
        ),
        (
            "budget overflow",
            "[storage]\nmax_bytes = \"99999999999TiB\"\n",
            "storage.max_bytes",
        ),
        (
            "segment_duration overflow",
            "[storage]\nsegment_duration = \"18446744073709551615s\"\n",
            "storage.segment_duration",
        ),
        (
            "retention_interval overflow",
            "[storage]\nretention_interval = \"600000000000years\"\n",
            "storage.retention_interval",
        ),
        (
            "listen address not on this host",
            "[api]\nlisten = \"192.0.2.1:18080\"\nallow_unauthenticated = true\n",
            "api.listen",
        ),
        (
            "network listener without tokens",
            "[api]\nlisten = \"0.0.0.0:18080\"\n",
            "api.listen",
        ),
        (
            "password with an unencoded /",
            "[[camera]]\nname = \"door\"\n[camera.source]\nkind = \"rtsp\"\nurl = \"rtsp://admin:s3cr3t/x@127.0.0.1:1/live\"\n",
            "camera[1].source.url",
        ),
    ];
    for (what, extra, path) in cases {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut text = format!(
            "[agent]\ndata_dir = \"{}\"\n[[camera]]\nname = \"lab\"\n[camera.source]\nkind = \"test\"\n{extra}",
            data.display()
        );
        if !extra.contains("[api]") {
            text.push_str(&format!("[api]\nlisten = \"{}\"\n", free_listen()));
        }
        let cfg = write(dir.path(), &text);
        let (ok, out, err) = cli(&["check", "--config", &cfg]);
        let all = format!("{out}{err}");
        assert!(!ok, "{what}: check accepted it: {all}");
        assert!(all.contains(path), "{what}: {all}");
        assert!(!all.contains("s3cr3t"), "{what}: {all}");

        let err = run_must_refuse(&cfg);
        assert!(err.contains(path), "{what}: {err}");
        assert!(!err.contains("s3cr3t"), "{what}: {err}");
        assert!(
            !data.join("video").exists(),
            "{what}: run started the store"
        );
    }
}

#[test]
fn listen_errors_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base = format!(
        "[agent]\ndata_dir = \"{}\"\n[[camera]]\nname = \"lab\"\n[camera.source]\nkind = \"test\"\n",
        data.display()
    );
    // Not on this host: not "is another vidgest running?" (open on purpose: a network address
    // without tokens is refused before the bind otherwise).
    let cfg = write(
        dir.path(),
        &format!("{base}[api]\nlisten = \"192.0.2.1:18080\"\nallow_unauthenticated = true\n"),
    );
    let (_, _, err) = cli(&["check", "--config", &cfg]);
    assert!(err.contains("not on this host"), "{err}");
    let err = run_must_refuse(&cfg);
    assert!(err.contains("not on this host"), "{err}");
    assert!(!err.contains("another vidgest"), "{err}");

    // In use: a warning for `check` (it may run beside the daemon it replaces), fatal for `run`.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = write(dir.path(), &format!("{base}[api]\nlisten = \"{addr}\"\n"));
    let (ok, out, err) = cli(&["check", "--config", &cfg]);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("warning: api.listen") && err.contains("in use"),
        "{err}"
    );
    let err = run_must_refuse(&cfg);
    assert!(
        err.contains("in use") && err.contains("another vidgest"),
        "{err}"
    );
}

#[test]
fn probe_refuses_absurd_timeouts_without_panicking() {
    for t in ["18446744073709551615s", "2h", "0s"] {
        let (ok, _, err) = cli(&["probe", "--timeout", t, "rtsp://127.0.0.1:1/x"]);
        assert!(!ok, "{t}");
        assert!(!err.contains("panicked"), "{t}: {err}");
        assert!(err.contains("--timeout"), "{t}: {err}");
        assert!(err.contains("at most 1h"), "{t}: {err}");
    }
}
