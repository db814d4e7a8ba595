//! The Debian package (vidgest issue 11, docs/operations.md#package): built with cargo-deb as
//! `make deb` builds it (release profile, stripped), checked with lintian, installed with dpkg,
//! `vidgest check` and `vidgest doctor` run as the `vidgest` user against the installed
//! /etc/vidgest/vidgest.toml with an empty environment, then purged.
//!
//! `installs_checks_and_purges` changes the machine (a package, a system user), so it runs only
//! as root with dpkg, and only when neither a vidgest package nor a `vidgest` user is there; a
//! guard purges the package again when the test fails midway. `VIDGEST_DEB=/path/to.deb`
//! tests an already built package instead of building one (CI: `make deb` once, then the test).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Everything the package installs or its postinst creates, gone again after a purge.
const INSTALLED: [&str; 8] = [
    "/usr/bin/vidgest",
    "/usr/lib/vidgest/libonnxruntime.so",
    "/usr/share/vidgest/models/yolov3-tiny.toml",
    "/usr/share/vidgest/models/yolov3-tiny.onnx",
    "/usr/lib/systemd/system/vidgest.service",
    "/etc/vidgest/vidgest.toml",
    "/usr/share/doc/vidgest/copyright",
    "/var/lib/vidgest",
];

/// The shipped config validates as it is, on any machine (no root needed). `check` creates the
/// data dir, so it runs on a copy pointing at a temporary one.
#[test]
fn shipped_config_validates() {
    let shipped = std::fs::read_to_string(Path::new(ROOT).join("packaging/vidgest.toml")).unwrap();
    let debian_dir = "data_dir = \"/var/lib/vidgest\"";
    assert!(shipped.contains(debian_dir), "Debian data dir");
    assert!(
        shipped.contains("\nlisten = \"127.0.0.1:8080\""),
        "loopback listener"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("vidgest.toml");
    std::fs::write(
        &config,
        shipped.replace(
            debian_dir,
            &format!("data_dir = {:?}", data.to_str().unwrap()),
        ),
    )
    .unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_vidgest"))
        .args(["check", "--config"])
        .arg(&config));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(": ok (1 camera(s)"), "{}", text(&out));
}

#[test]
fn installs_checks_and_purges() {
    if let Some(why) = cannot_run() {
        eprintln!("SKIPPED installs_checks_and_purges: {why}");
        return;
    }
    let built;
    let deb = match std::env::var_os("VIDGEST_DEB") {
        Some(p) => PathBuf::from(p),
        None => {
            built = tempfile::tempdir().unwrap();
            build_deb(built.path())
        }
    };
    lintian(&deb);

    let mut guard = Purge { armed: true };
    let out = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(out.status.success(), "dpkg -i: {}", text(&out));

    for p in INSTALLED {
        assert!(Path::new(p).exists(), "{p} not installed");
    }
    let field = |f: &str| {
        let out = run(Command::new("dpkg-query").args(["-W", &format!("-f=${{{f}}}"), "vidgest"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        field("Conffiles").contains("/etc/vidgest/vidgest.toml"),
        "conffile: {}",
        field("Conffiles")
    );
    let depends = field("Depends");
    for p in [
        "libgstreamer1.0-0",
        "gstreamer1.0-plugins-base",
        "gstreamer1.0-plugins-good",
        "gstreamer1.0-plugins-bad",
        "gstreamer1.0-plugins-ugly",
        "gstreamer1.0-libav",
    ] {
        assert!(depends.contains(p), "Depends lacks {p}: {depends}");
    }
    // The unit is packaged unchanged.
    assert_eq!(
        std::fs::read_to_string("/usr/lib/systemd/system/vidgest.service").unwrap(),
        std::fs::read_to_string(Path::new(ROOT).join("systemd/vidgest.service")).unwrap()
    );
    // What users get: a stripped binary.
    if let Ok(out) = Command::new("readelf")
        .args(["-S", "--wide", "/usr/bin/vidgest"])
        .output()
    {
        // (.debug_gdb_scripts is a loaded section that stays.)
        let sections = String::from_utf8_lossy(&out.stdout);
        assert!(
            !sections.contains(".debug_info") && !sections.contains(".debug_line"),
            "/usr/bin/vidgest has debug info: {sections}"
        );
    }

    // postinst: the user (in `video`), its data dir, and a config only root and it can read.
    let groups = text(&run(Command::new("id").args(["-nG", "vidgest"])));
    assert!(
        groups.split_whitespace().any(|g| g == "vidgest"),
        "{groups}"
    );
    if getent("group", "video") {
        assert!(groups.split_whitespace().any(|g| g == "video"), "{groups}");
    }
    let uid: u32 = text(&run(Command::new("id").args(["-u", "vidgest"])))
        .trim()
        .parse()
        .unwrap();
    let gid: u32 = text(&run(Command::new("id").args(["-g", "vidgest"])))
        .trim()
        .parse()
        .unwrap();
    let data = std::fs::metadata("/var/lib/vidgest").unwrap();
    assert_eq!(
        (data.uid(), data.gid(), data.mode() & 0o777),
        (uid, gid, 0o750)
    );
    let conf = std::fs::metadata("/etc/vidgest/vidgest.toml").unwrap();
    assert_eq!(
        (conf.uid(), conf.gid(), conf.mode() & 0o777),
        (0, gid, 0o640)
    );

    let check = as_vidgest(&["check", "--config", "/etc/vidgest/vidgest.toml"]);
    assert!(check.status.success(), "vidgest check: {}", text(&check));
    assert!(
        text(&check).contains("/etc/vidgest/vidgest.toml: ok"),
        "{}",
        text(&check)
    );

    // No ORT_DYLIB_PATH, no models/ in the working directory: only the installed places.
    let doctor = as_vidgest(&["doctor", "--config", "/etc/vidgest/vidgest.toml"]);
    let report = text(&doctor);
    assert!(doctor.status.success(), "vidgest doctor: {report}");
    for want in [
        "gstreamer: GStreamer 1.",
        "(/usr/lib/vidgest/libonnxruntime.so)",
        "manifest: /usr/share/vidgest/models/yolov3-tiny.toml",
        "file: /usr/share/vidgest/models/yolov3-tiny.onnx",
        "(matches the manifest)",
        "test inference: ok",
    ] {
        assert!(report.contains(want), "doctor lacks {want:?}: {report}");
    }
    assert!(!report.contains("FAIL"), "{report}");

    let out = run(Command::new("dpkg").args(["--purge", "vidgest"]));
    assert!(out.status.success(), "dpkg --purge: {}", text(&out));
    guard.armed = false;
    for p in INSTALLED
        .iter()
        .chain(&["/etc/vidgest", "/usr/share/vidgest", "/var/cache/vidgest"])
    {
        assert!(!Path::new(p).exists(), "{p} left after purge");
    }
    assert!(
        !getent("passwd", "vidgest"),
        "user vidgest left after purge"
    );
    assert!(
        !getent("group", "vidgest"),
        "group vidgest left after purge"
    );
    assert!(!package_present(), "package left after purge");
}

/// Why the install test cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (installs a package and creates a system user)".into());
    }
    for tool in ["dpkg", "dpkg-query", "setpriv"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("no {tool} on this machine"));
        }
    }
    if package_present() {
        return Some(
            "a vidgest package is installed on this machine; the test would replace and purge it"
                .into(),
        );
    }
    if getent("passwd", "vidgest") || getent("group", "vidgest") {
        return Some(
            "a `vidgest` user or group exists without the package; a purge would delete it".into(),
        );
    }
    None
}

/// `cargo deb` as `make deb` runs it, into `dir`; the release build reuses the target dir.
fn build_deb(dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let have = Command::new(&cargo).args(["deb", "--version"]).output();
    assert!(
        have.is_ok_and(|o| o.status.success()),
        "cargo-deb is missing: run scripts/bootstrap (or set VIDGEST_DEB to a built package)"
    );
    let started = std::time::Instant::now();
    let mut cmd = Command::new(&cargo);
    // What cargo sets for this test process would reach build scripts (ring's tracks
    // CARGO_MANIFEST_DIR) and make the release build differ from `make deb`'s, so each would
    // rebuild after the other.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&k.as_ref())
        {
            cmd.env_remove(k.as_ref());
        }
    }
    let out = run(cmd
        .current_dir(ROOT)
        // --fast: lighter xz compression, the same files (`make deb` compresses fully).
        .args(["deb", "--locked", "--strip", "--fast", "--output"])
        .arg(format!("{}/", dir.display())));
    assert!(out.status.success(), "cargo deb: {}", text(&out));
    eprintln!("cargo deb took {:.0?}", started.elapsed());
    let debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs.into_iter().next().unwrap()
}

/// No lintian errors (warnings are printed; docs/operations.md#package lists them).
fn lintian(deb: &Path) {
    let Ok(out) = Command::new("lintian")
        .args(["--fail-on", "error"])
        .arg(deb)
        .output()
    else {
        eprintln!("lintian not installed (scripts/bootstrap installs it): not checked");
        return;
    };
    eprintln!("lintian:\n{}", text(&out));
    assert!(out.status.success(), "lintian errors: {}", text(&out));
}

/// Runs the installed binary as the `vidgest` user with only the environment setpriv gives a
/// login (HOME, USER, PATH ...), from `/`.
fn as_vidgest(args: &[&str]) -> Output {
    run(Command::new("setpriv")
        .env_clear()
        .current_dir("/")
        .args([
            "--reuid=vidgest",
            "--regid=vidgest",
            "--init-groups",
            "--reset-env",
            "--",
            "/usr/bin/vidgest",
        ])
        .args(args))
}

fn package_present() -> bool {
    // Any state but "not installed" (also half-installed or config-files) counts.
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", "vidgest"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.starts_with(b"un"))
}

fn getent(db: &str, name: &str) -> bool {
    Command::new("getent")
        .args([db, name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Purges the package when the test stops between `dpkg -i` and its own purge, so a failed
/// run leaves the machine as it found it.
struct Purge {
    armed: bool,
}

impl Drop for Purge {
    fn drop(&mut self) {
        if self.armed {
            let out = Command::new("dpkg").args(["--purge", "vidgest"]).output();
            eprintln!("cleanup: dpkg --purge vidgest: {out:?}");
        }
    }
}
