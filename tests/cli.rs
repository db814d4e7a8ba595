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
