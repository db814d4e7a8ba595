//! `make demo` as a new user meets it: configs/demo.toml itself (only its data directory and
//! port changed), recording the looping video of real objects and detecting in it with the
//! default model, then tests/py/demo_walkthrough.py in headless Chromium: every camera live in
//! the grid, the timeline back to a detected dog, playback from that marker and the clip around
//! it downloaded and read by ffprobe. Screenshots in `<target>/demo-walkthrough/`.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::{assert_survived_and_stop, http_get, root, run_python, start_listening};
use harness::eventually;
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn demo_config_walkthrough() {
    let demo = std::fs::read_to_string(root().join("configs/demo.toml")).unwrap();
    let port = support::free_port();
    let config = demo
        .replace(r#"data_dir = "data/demo""#, r#"data_dir = "{data_dir}""#)
        .replace(
            r#"listen = "127.0.0.1:8080""#,
            &format!(r#"listen = "127.0.0.1:{port}""#),
        );
    assert!(
        config.contains("{data_dir}") && config.contains(&format!(":{port}\"")),
        "configs/demo.toml no longer sets data_dir = \"data/demo\" and listen = \"127.0.0.1:8080\""
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_listening(dir.path(), port, &config);
    let base = format!("http://127.0.0.1:{port}");

    // the demo video has a dog in view within its first loop; detection runs at 2 fps
    eventually(Duration::from_secs(180), "a detected dog", || {
        daemon.assert_running();
        let r = http_get(
            &format!("{base}/api/v1/cameras/demo/events?start=-10m&end=now&label=dog&limit=1"),
            None,
        );
        (r.status == 200 && !r.json()["events"].as_array()?.is_empty()).then_some(())
    });

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let out = target.join("demo-walkthrough");
    run_python(
        "demo_walkthrough.py",
        [
            "--base",
            &base,
            "--camera",
            "demo",
            "--label",
            "dog",
            "--out",
            &out.display().to_string(),
        ],
    );
    assert_survived_and_stop(daemon);
}
