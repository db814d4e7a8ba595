//! Helpers of the delivery tests (tests/delivery_dir.rs, tests/delivery_s3.rs): the Python side
//! (tests/py/delivery_tool.py: puts through the Kinesis API, moto as S3, boto3 read-back), the
//! fault proxy (tests/py/fault_proxy.py), the daemon's delivery status and the checks on the
//! objects a delivery wrote.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// vendor/venv/bin/python with boto3 and moto; fails (never skips) when bootstrap has not run.
pub fn venv_python() -> PathBuf {
    let venv = root().join("vendor/venv");
    for f in ["bin/python", "bin/moto_server"] {
        assert!(
            venv.join(f).exists(),
            "{} is missing: run scripts/bootstrap (installs boto3 and moto[server] into vendor/venv)",
            venv.join(f).display()
        );
    }
    venv.join("bin/python")
}

pub fn tool() -> PathBuf {
    root().join("tests/py/delivery_tool.py")
}

/// Runs `delivery_tool.py ARGS` to completion; panics with its output on failure.
pub fn py(args: &[&str]) -> String {
    run_py(&tool(), args)
}

/// Runs the venv's python on `script` with ARGS to completion; panics with its output on failure.
pub fn run_py(script: &Path, args: &[&str]) -> String {
    let out = Command::new(venv_python())
        .arg(script)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .expect("run vendor/venv/bin/python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{stdout}{stderr}",
        script.file_name().unwrap_or_default().to_string_lossy(),
        args.join(" "),
        out.status
    );
    stdout
}

/// Puts records `first..first+count` through the Kinesis API (see delivery_tool.py `put`).
pub fn put(endpoint: &str, stream: &str, first: u64, count: u64, extra: &[&str]) {
    let (first, count) = (first.to_string(), count.to_string());
    let mut args = vec![
        "put",
        "--endpoint",
        endpoint,
        "--stream",
        stream,
        "--first",
        &first,
        "--count",
        &count,
    ];
    args.extend_from_slice(extra);
    let out = py(&args);
    assert!(out.contains(&format!("acked {count}")), "{out}");
}

/// A child process that lives while its stdin is open and reports on stdout, one line at a time.
pub struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl Helper {
    pub fn spawn(what: &str, args: &[&str]) -> Helper {
        let mut child = Command::new(venv_python())
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Helper {
            child,
            stdin,
            lines,
            what: what.to_string(),
        }
    }

    /// The next line that starts with `prefix` (earlier lines are skipped).
    pub fn expect_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("{}: no `{prefix}` line within {timeout:?} ({e})", self.what),
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to helper");
        stdin.flush().unwrap();
    }

    /// Closes stdin (the helper's signal to finish) and waits for it; returns its last line.
    pub fn finish(mut self, timeout: Duration) -> String {
        self.stdin = None;
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            while let Ok(l) = self.lines.try_recv() {
                last = l;
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    last = l;
                }
                assert!(s.success(), "{} exited with {s}", self.what);
                return last;
            }
            assert!(Instant::now() < deadline, "{} did not finish", self.what);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's S3 on 127.0.0.1 (stops with the test process: it lives while its stdin is open).
pub struct Moto {
    /// In a Mutex so a `static` can hold the server (the line receiver is not Sync).
    _helper: std::sync::Mutex<Helper>,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = crate::support::free_port();
        let helper = Helper::spawn(
            "moto",
            &[
                tool().to_str().unwrap(),
                "moto",
                "--port",
                &port.to_string(),
            ],
        );
        helper.expect_line("ready", Duration::from_secs(90));
        Moto {
            _helper: std::sync::Mutex::new(helper),
            port,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        py(&[
            "s3-create",
            "--endpoint",
            &self.endpoint(),
            "--bucket",
            bucket,
        ]);
    }

    /// Downloads every object of `bucket` below `out`; returns head_object's view of each.
    pub fn dump(&self, bucket: &str, out: &Path) -> Vec<Value> {
        py(&[
            "s3-dump",
            "--endpoint",
            &self.endpoint(),
            "--bucket",
            bucket,
            "--out",
            out.to_str().unwrap(),
        ])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
    }
}

/// tests/py/fault_proxy.py in front of `upstream_port`.
pub struct FaultProxy {
    helper: Helper,
    pub port: u16,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let script = root().join("tests/py/fault_proxy.py");
        let upstream = format!("127.0.0.1:{upstream_port}");
        let helper = Helper::spawn(
            "fault proxy",
            &[script.to_str().unwrap(), "--upstream", &upstream],
        );
        let line = helper.expect_line("ready ", Duration::from_secs(30));
        let port = line["ready ".len()..].trim().parse().unwrap();
        FaultProxy { helper, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests answered with an error status so far.
    pub fn errors_sent(&mut self) -> u64 {
        self.helper.send("count");
        let line = self
            .helper
            .expect_line("ok count ", Duration::from_secs(30));
        line["ok count ".len()..].trim().parse().unwrap()
    }

    /// `pass`, `refuse`, `403`, `404`, `500`, `slow SECONDS`; returns once it is in force.
    pub fn set(&mut self, mode: &str) {
        self.helper.send(mode);
        self.helper
            .expect_line(&format!("ok {mode}"), Duration::from_secs(30));
    }
}

/// One delivery's entry of `vidgest deliveries --config F --json` (None while the daemon does
/// not answer yet).
pub fn status(config: &Path, name: &str) -> Option<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_vidgest"))
        .args(["deliveries", "--json", "--config"])
        .arg(config)
        .output()
        .expect("run vidgest deliveries");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["name"] == name)
}

/// Polls the delivery's status until `pred` holds; panics with the last status after `timeout`.
pub fn wait_status(
    config: &Path,
    name: &str,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(s) = status(config, name) {
            if pred(&s) {
                return s;
            }
            last = Some(s);
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for delivery `{name}`: {what}; last status: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What a set of delivered objects holds.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Record id -> how many times it was found.
    pub ids: BTreeMap<u64, u32>,
    /// Object key (relative path) -> records in it.
    pub objects: BTreeMap<String, usize>,
    /// Object key -> uncompressed bytes.
    pub raw_bytes: BTreeMap<String, usize>,
    /// Error objects: key -> their Firehose error lines.
    pub errors: BTreeMap<String, Vec<Value>>,
}

impl Delivered {
    pub fn duplicates(&self) -> u64 {
        self.ids.values().map(|&n| u64::from(n - 1)).sum()
    }
}

/// Every file below `dir` (relative, `/`-separated).
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(
                    p.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Checks an object's name: `<name>-1-<yyyy-MM-dd-HH-mm-ss>-<uuid><ext>`.
pub fn assert_object_name(key: &str, delivery: &str, ext: &str) {
    let file = key.rsplit('/').next().unwrap();
    let rest = file
        .strip_prefix(&format!("{delivery}-1-"))
        .and_then(|r| r.strip_suffix(ext))
        .unwrap_or_else(|| panic!("object `{key}` is not `{delivery}-1-<time>-<uuid>{ext}`"));
    let (time, uuid) = rest.split_at(19.min(rest.len()));
    let time_ok = time.len() == 19
        && time.char_indices().all(|(i, c)| {
            if [4, 7, 10, 13, 16].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    let uuid = uuid.strip_prefix('-').unwrap_or("");
    let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
    assert!(
        time_ok
            && groups == [8, 4, 4, 4, 12]
            && uuid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "object `{key}`: time `{time}` or batch id `{uuid}` malformed"
    );
}

/// The uncompressed bytes of an object; `gzip -t` / `zstd -t` must accept compressed ones.
pub fn decompress(path: &Path) -> Vec<u8> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".gz") {
        "gzip"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        return std::fs::read(path).unwrap();
    };
    let t = Command::new(tool).arg("-t").arg(path).output().unwrap();
    assert!(
        t.status.success(),
        "{tool} -t {name}: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let out = Command::new(tool).args(["-dc"]).arg(path).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Reads every object below `dir`. Data objects (`ext`) must sit below `data_prefix` (then, if
/// `partitioned`, `camera=<camera>/` and hold only records of that camera); error objects sit
/// below `error_prefix`. Any other file fails the test (e.g. a temporary file left visible).
pub fn read_objects(
    dir: &Path,
    delivery: &str,
    ext: &str,
    data_prefix: &str,
    error_prefix: &str,
    partitioned: bool,
) -> Delivered {
    let mut d = Delivered::default();
    for key in files(dir) {
        let path = dir.join(&key);
        if let Some(rest) = key.strip_prefix(error_prefix) {
            assert_object_name(rest, delivery, "");
            let lines: Vec<Value> = std::fs::read(&path)
                .unwrap()
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect();
            d.errors.insert(key, lines);
            continue;
        }
        let rest = key.strip_prefix(data_prefix).unwrap_or_else(|| {
            panic!("`{key}` is neither below `{data_prefix}` nor `{error_prefix}`")
        });
        assert_object_name(&key, delivery, ext);
        let camera = partitioned.then(|| {
            rest.strip_prefix("camera=")
                .and_then(|r| r.split('/').next())
                .unwrap_or_else(|| panic!("`{key}` has no camera=<value>/ partition"))
        });
        let raw = decompress(&path);
        let mut n = 0;
        for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line)
                .unwrap_or_else(|e| panic!("`{key}`: a line is not JSON ({e})"));
            if let Some(camera) = camera {
                assert_eq!(
                    v["camera"], camera,
                    "record in the wrong partition `{key}`: {v}"
                );
            }
            *d.ids.entry(v["id"].as_u64().unwrap()).or_default() += 1;
            n += 1;
        }
        d.objects.insert(key.clone(), n);
        d.raw_bytes.insert(key, raw.len());
    }
    d
}
