//! Differential test: one script of Kinesis operations (tests/py/diff_script.py) run with boto3
//! against kinesalite 3.3.3 (the reference, from vendor/node) and against vidgest; the answers,
//! normalized as documented at the top of the script, must be identical.

mod harness;
mod support;

use harness::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv_python() -> PathBuf {
    let venv = root().join("vendor/venv");
    for f in ["bin/python", ".pins"] {
        assert!(
            venv.join(f).exists(),
            "{} is missing: run scripts/bootstrap (installs boto3 into vendor/venv)",
            venv.join(f).display()
        );
    }
    venv.join("bin/python")
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// kinesalite on 127.0.0.1:`port`, in memory (no leveldown needed), short create/delete delays.
fn start_kinesalite(port: u16, dir: &std::path::Path) -> KillOnDrop {
    let module = root().join("vendor/node/node_modules/kinesalite");
    assert!(
        module.join("package.json").is_file()
            && root().join("vendor/node/.kinesalite-3.3.3").exists(),
        "{} is missing: run scripts/bootstrap (installs kinesalite@3.3.3 with npm)",
        module.display()
    );
    let js = format!(
        "require({:?})({{createStreamMs: 50, deleteStreamMs: 50, updateStreamMs: 50}})\
         .listen({port}, '127.0.0.1', () => console.log('listening'))",
        module.display().to_string()
    );
    let log = std::fs::File::create(dir.join("kinesalite.log")).unwrap();
    let child = Command::new("node")
        .args(["-e", &js])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("node (installed by scripts/bootstrap) starts kinesalite");
    KillOnDrop(child)
}

fn wait_listening(port: u16, what: &str) {
    eventually(Duration::from_secs(60), what, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

#[test]
fn boto3_script_answers_like_kinesalite() {
    let dir = tempfile::tempdir().unwrap();
    let kport = support::free_port();
    let _kinesalite = start_kinesalite(kport, dir.path());
    let vport = support::free_port();
    // Metrics off: its `metrics` stream would be one kinesalite does not list.
    let config = format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{vport}\"\n\
         [[stream]]\nname = \"detections\"\nshards = 2\nretention_hours = 24\n\
         [metrics]\nenabled = false\n"
    );
    let daemon = Daemon::start(dir.path(), &config);
    wait_listening(kport, "kinesalite listening");
    wait_listening(vport, "vidgest API listening");

    let dump = dir.path().join("transcripts");
    let out = Command::new(venv_python())
        .arg(root().join("tests/py/diff_script.py"))
        .args(["--reference", &format!("http://127.0.0.1:{kport}")])
        .args(["--target", &format!("http://127.0.0.1:{vport}")])
        .args(["--preexisting", "detections:2"])
        .arg("--dump")
        .arg(&dump)
        .output()
        .expect("run vendor/venv/bin/python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "vidgest answers differently from kinesalite \
         (normalizations: top of tests/py/diff_script.py):\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}{stderr}");
    assert!(stdout.contains("transcripts identical"), "{stdout}");
    assert!(daemon.is_running(), "daemon died during the script");
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}
