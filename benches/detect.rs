//! Per-frame cost of the detection pipeline (`Detector::detect`) against a bare ONNX Runtime loop
//! on the same model and the same input tensors.
//!
//! `cargo bench --bench detect` (release) runs the shipped model (yolov3-tiny-coco, 416x416) on the
//! five darknet photos (vendor/darknet/*.jpg, decoded and scaled by GStreamer as the live branch
//! does), round-robin: 5 warm-up frames, then 200 measured frames of each kind, interleaved
//! (pipeline, bare, bare, pipeline, ...) so drifting background load hits both alike.
//!
//! - pipeline: `Detector::detect(frame, min_score)`; its own preprocess / inference / postprocess
//!   timings, plus the wall time of the whole call (end to end);
//! - bare: an `ort` `Session` of its own on the same model file with the same session options
//!   (intra-op threads, 1 inter-op thread, no spinning) running `session.run` on input tensors
//!   prepared once, before any timing, from the same pixels (NCHW float32 / 255, as the manifest
//!   says). Only `session.run` is timed.
//!
//! The bare loop runs in a child process (this executable, re-started with
//! `VIDGEST_DETECT_BENCH_BARE` set) because `ort` allows one environment per process and vidgest
//! keeps its own private; parent and child work in lock step (one waits while the other runs), so
//! they never compete for a core. Its memory is reported separately, which is what we want anyway.
//! Before measuring, the child's raw scores are checked against the pipeline's detections (same
//! top score per photo), which proves both see the same input.
//!
//! Env: DETECT_ITERS (measured frames, default 200; 3 without `--bench`), DETECT_WARMUP (5; 1),
//! DETECT_THREADS (intra-op threads, default 1 as `[detect] intra_threads`), DETECT_MIN_SCORE
//! (0.5, the `[camera.detect] min_score` default). Without `--bench` (as `cargo test --all-targets`
//! runs it) it is a smoke pass of a few seconds. Needs the model and ONNX Runtime
//! (scripts/bootstrap).

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use vidgest::detect::{self, Detector, ModelManifest, RgbFrame};

const MODEL: &str = "yolov3-tiny-coco";
const PHOTOS: [&str; 5] = [
    "dog.jpg",
    "person.jpg",
    "horses.jpg",
    "kite.jpg",
    "giraffe.jpg",
];
const CHILD_ENV: &str = "VIDGEST_DETECT_BENCH_BARE";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a valid value")),
        Err(_) => default,
    }
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return bare_child();
    }
    let full = std::env::args().any(|a| a == "--bench");
    let iters: usize = env_or("DETECT_ITERS", if full { 200 } else { 3 });
    let warmup: usize = env_or("DETECT_WARMUP", if full { 5 } else { 1 });
    let threads: usize = env_or("DETECT_THREADS", 1);
    let min_score: f32 = env_or("DETECT_MIN_SCORE", 0.5);
    assert!(
        iters > 0 && threads > 0,
        "DETECT_ITERS and DETECT_THREADS must be > 0"
    );
    let load_start = loadavg();

    let rt = detect::runtime::init(None).unwrap_or_else(|e| panic!("{e} (run scripts/bootstrap)"));
    let manifest_path = detect::find_manifest(MODEL).unwrap_or_else(|e| panic!("{e}"));
    let manifest = ModelManifest::load(&manifest_path).unwrap_or_else(|e| panic!("{e}"));
    let model_file = manifest
        .resolve_model(manifest.dir())
        .unwrap_or_else(|e| panic!("{e} (run scripts/bootstrap)"));
    let mut detector =
        Detector::load(&manifest, &model_file, threads).unwrap_or_else(|e| panic!("{e}"));
    let (w, h) = detector.input_size();

    // Frames as the live branch hands them over, and the same pixels as the tensor the manifest
    // describes (checked against the pipeline's own result below).
    let input = &manifest.input;
    let layout = format!(
        "{:?}/{:?}/{:?}/{:?}/{:?}",
        input.layout, input.dtype, input.color, input.normalize, input.resize
    );
    assert_eq!(
        layout, "Nchw/Float32/Rgb/Div255/Stretch",
        "the bare loop builds NCHW float32 RGB /255 tensors; {MODEL} changed"
    );
    let photos_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/darknet");
    let frames: Vec<Vec<u8>> = PHOTOS
        .iter()
        .map(|p| {
            detect::load_image_rgb(&photos_dir.join(p), w, h)
                .unwrap_or_else(|e| panic!("{e} (run scripts/bootstrap)"))
        })
        .collect();
    let plane = (w * h) as usize;
    let tensors: Vec<Vec<f32>> = frames
        .iter()
        .map(|rgb| {
            let mut t = vec![0f32; 3 * plane];
            for (p, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    t[c * plane + p] = px[c] as f32 / 255.0;
                }
            }
            t
        })
        .collect();
    let shape = [1usize, 3, h as usize, w as usize];
    let scores_output = manifest
        .output
        .scores
        .clone()
        .expect("yolo_boxes_scores model: scores output");
    let mut bare = Bare::spawn(
        &rt.library,
        &model_file,
        threads,
        &scores_output,
        shape,
        &tensors,
    );

    // Same input on both sides: the pipeline's best detection is the bare run's highest score.
    for (i, rgb) in frames.iter().enumerate() {
        let (dets, _) = detector
            .detect(&RgbFrame::packed(w, h, rgb), min_score)
            .unwrap_or_else(|e| panic!("{e}"));
        let raw_max = bare.max_score(i);
        if let Some(top) = dets.first() {
            assert!(
                (top.score - raw_max).abs() <= 1e-4,
                "{}: pipeline top score {} but bare run max {raw_max}: inputs differ",
                PHOTOS[i],
                top.score
            );
        } else {
            assert!(
                raw_max < min_score,
                "{}: no detection but raw max {raw_max}",
                PHOTOS[i]
            );
        }
    }

    let mut pipe_one = |k: usize, s: &mut Samples| {
        let rgb = &frames[k % frames.len()];
        let frame = RgbFrame::packed(w, h, rgb);
        let t0 = Instant::now();
        let (dets, t) = detector
            .detect(&frame, min_score)
            .unwrap_or_else(|e| panic!("{e}"));
        let e2e = t0.elapsed();
        drop(dets);
        s.pre.push(t.preprocess);
        s.inf.push(t.inference);
        s.post.push(t.postprocess);
        s.e2e.push(e2e);
    };
    let mut scratch = Samples::default();
    for k in 0..warmup {
        pipe_one(k, &mut scratch);
        bare.run(k % frames.len());
    }
    let mut s = Samples::default();
    for k in 0..iters {
        if k % 2 == 0 {
            pipe_one(k, &mut s);
            s.bare.push(bare.run(k % frames.len()));
        } else {
            s.bare.push(bare.run(k % frames.len()));
            pipe_one(k, &mut s);
        }
    }
    let bare_mem = bare.quit();
    let self_mem = (status_kb("VmHWM"), status_kb("VmRSS"));

    report(&Report {
        full,
        s,
        iters,
        warmup,
        threads,
        min_score,
        ort: format!("{} ({})", rt.version, rt.library.display()),
        model: format!("{MODEL} ({}, {w}x{h})", model_file.display()),
        self_mem,
        bare_mem,
        load_start,
    });
}

#[derive(Default)]
struct Samples {
    pre: Vec<Duration>,
    inf: Vec<Duration>,
    post: Vec<Duration>,
    e2e: Vec<Duration>,
    bare: Vec<Duration>,
}

struct Stat {
    p50: f64,
    p99: f64,
    mean: f64,
    total: f64,
}

/// Milliseconds; nearest-rank percentiles.
fn stat(v: &[Duration]) -> Stat {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let rank = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    let total: f64 = ms.iter().sum();
    Stat {
        p50: rank(0.50),
        p99: rank(0.99),
        mean: total / ms.len() as f64,
        total,
    }
}

struct Report {
    full: bool,
    s: Samples,
    iters: usize,
    warmup: usize,
    threads: usize,
    min_score: f32,
    ort: String,
    model: String,
    /// (VmHWM, VmRSS) in KiB at the end.
    self_mem: (u64, u64),
    bare_mem: (u64, u64),
    load_start: String,
}

fn report(r: &Report) {
    let [pre, inf, post, e2e, bare] =
        [&r.s.pre, &r.s.inf, &r.s.post, &r.s.e2e, &r.s.bare].map(|v| stat(v));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\n### Detection per frame ({} frames round-robin over {} photos after {} warm-up, {} intra-op thread{}, min_score {})\n",
        r.iters,
        PHOTOS.len(),
        r.warmup,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        r.min_score
    );
    if cfg!(debug_assertions) || !r.full {
        println!("- **smoke pass or unoptimized build: not a measurement** (run `cargo bench --bench detect`)");
    }
    println!("- model {}; ONNX Runtime {}", r.model, r.ort);
    println!(
        "- {cores} cores, {cpu}; load average {} at start, {} at end",
        r.load_start,
        loadavg()
    );
    println!();
    println!("| step | p50 ms | p99 ms | mean ms |");
    println!("|---|---:|---:|---:|");
    let row =
        |name: &str, s: &Stat| println!("| {name} | {:.2} | {:.2} | {:.2} |", s.p50, s.p99, s.mean);
    row("preprocess (frame -> tensor)", &pre);
    row("inference (session.run inside detect)", &inf);
    row("postprocess (decode, NMS, labels)", &post);
    row("**detect() end to end**", &e2e);
    row("**bare `session.run`, same tensors**", &bare);
    let overhead = (e2e.p50 - bare.p50) / bare.p50 * 100.0;
    let stages = (pre.p50 + post.p50) / inf.p50 * 100.0;
    let verdict = |x: f64| if x <= 10.0 { "meets" } else { "MISSES" };
    println!();
    println!("| metric | value |");
    println!("|---|---:|");
    println!(
        "| pipeline overhead: (detect p50 − bare p50) / bare p50 | {overhead:+.1} % ({} the ≤ 10 % target) |",
        verdict(overhead)
    );
    println!(
        "| (preprocess + postprocess) / inference, p50s | {stages:.1} % ({} the ≤ 10 % target) |",
        verdict(stages)
    );
    println!(
        "| throughput, detect() back to back | {:.1} frames/s |",
        r.iters as f64 / (e2e.total / 1e3)
    );
    println!(
        "| throughput, bare session.run back to back | {:.1} frames/s |",
        r.iters as f64 / (bare.total / 1e3)
    );
    let mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "| RSS, pipeline process (Detector + GStreamer photo decode + 5 tensors): peak VmHWM / VmRSS at end | {:.1} / {:.1} MiB |",
        mib(r.self_mem.0),
        mib(r.self_mem.1)
    );
    println!(
        "| RSS, bare child (ort Session + 5 tensors): peak VmHWM / VmRSS at end | {:.1} / {:.1} MiB |",
        mib(r.bare_mem.0),
        mib(r.bare_mem.1)
    );
    println!();
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The parent's handle on the bare-loop child.
struct Bare {
    child: Child,
    tx: BufWriter<ChildStdin>,
    rx: BufReader<ChildStdout>,
}

impl Bare {
    fn spawn(
        library: &Path,
        model: &Path,
        threads: usize,
        scores_output: &str,
        shape: [usize; 4],
        tensors: &[Vec<f32>],
    ) -> Bare {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .env(CHILD_ENV, "1")
            .arg(library)
            .arg(model)
            .arg(threads.to_string())
            .arg(scores_output)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the bare-loop child");
        let mut tx = BufWriter::new(child.stdin.take().unwrap());
        let rx = BufReader::new(child.stdout.take().unwrap());
        writeln!(
            tx,
            "{} {} {} {} {}",
            tensors.len(),
            shape[0],
            shape[1],
            shape[2],
            shape[3]
        )
        .unwrap();
        for t in tensors {
            assert_eq!(t.len(), shape.iter().product::<usize>());
            for v in t {
                tx.write_all(&v.to_le_bytes()).unwrap();
            }
        }
        tx.flush().unwrap();
        let mut b = Bare { child, tx, rx };
        let ready = b.ask("");
        assert_eq!(ready, "ready", "bare child: {ready}");
        b
    }

    fn ask(&mut self, cmd: &str) -> String {
        if !cmd.is_empty() {
            writeln!(self.tx, "{cmd}")
                .and_then(|_| self.tx.flush())
                .expect("bare child gone (see its stderr above)");
        }
        let mut line = String::new();
        let n = self.rx.read_line(&mut line).expect("read from bare child");
        assert!(n > 0, "bare child exited (see its stderr above)");
        line.trim().to_string()
    }

    /// One timed `session.run` on tensor i.
    fn run(&mut self, i: usize) -> Duration {
        let ns: u64 = self.ask(&format!("run {i}")).parse().expect("nanoseconds");
        Duration::from_nanos(ns)
    }

    /// Highest class score in the raw output for tensor i.
    fn max_score(&mut self, i: usize) -> f32 {
        self.ask(&format!("max {i}")).parse().expect("score")
    }

    /// Stops the child; returns its VmHWM and VmRSS in KiB.
    fn quit(mut self) -> (u64, u64) {
        let answer = self.ask("quit");
        let mem: Vec<u64> = answer
            .split_whitespace()
            .map(|v| v.parse().expect("VmHWM VmRSS"))
            .collect();
        drop(self.tx);
        let st = self.child.wait().expect("wait for bare child");
        assert!(st.success(), "bare child: {st}");
        (mem[0], mem[1])
    }
}

/// The child: its own `ort` environment and session, then commands on stdin.
fn bare_child() {
    use ort::session::Session;
    use ort::value::TensorRef;

    let args: Vec<String> = std::env::args().skip(1).collect();
    let [library, model, threads, scores_output] = &args[..] else {
        panic!("bare child: want LIBRARY MODEL THREADS SCORES_OUTPUT, got {args:?}");
    };
    let threads: usize = threads.parse().expect("threads");
    let mut rx = BufReader::new(std::io::stdin().lock());
    let mut tx = std::io::stdout().lock();
    let mut line = String::new();
    rx.read_line(&mut line).expect("header");
    let nums: Vec<usize> = line
        .split_whitespace()
        .map(|v| v.parse().expect("header number"))
        .collect();
    let (count, shape) = (nums[0], [nums[1], nums[2], nums[3], nums[4]]);
    let len: usize = shape.iter().product();
    let mut bytes = vec![0u8; len * 4];
    let tensors: Vec<Vec<f32>> = (0..count)
        .map(|_| {
            rx.read_exact(&mut bytes).expect("tensor bytes");
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect();

    // Same session options as Detector::load.
    let env = ort::init_from(PathBuf::from(library))
        .expect("load ONNX Runtime")
        .with_name("vidgest-bench-bare")
        .with_telemetry(false)
        .build()
        .expect("ort environment");
    let mut session = Session::builder(&env)
        .map_err(|e| e.to_string())
        .and_then(|b| b.with_intra_threads(threads).map_err(|e| e.to_string()))
        .and_then(|b| b.with_inter_threads(1).map_err(|e| e.to_string()))
        .and_then(|b| b.with_intra_op_spinning(false).map_err(|e| e.to_string()))
        .and_then(|mut b| b.commit_from_file(model).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| panic!("bare child: ort session: {e}"));
    writeln!(tx, "ready").unwrap();
    tx.flush().unwrap();

    loop {
        line.clear();
        if rx.read_line(&mut line).expect("command") == 0 {
            return;
        }
        let mut it = line.split_whitespace();
        let cmd = it.next().unwrap_or("");
        let idx: usize = it.next().map_or(0, |v| v.parse().expect("index"));
        let answer = match cmd {
            "run" => {
                let input = TensorRef::from_array_view((shape, &tensors[idx][..])).expect("tensor");
                let t0 = Instant::now();
                let outputs = session.run(ort::inputs![input]).expect("session.run");
                let dt = t0.elapsed();
                drop(outputs);
                dt.as_nanos().to_string()
            }
            "max" => {
                let input = TensorRef::from_array_view((shape, &tensors[idx][..])).expect("tensor");
                let outputs = session.run(ort::inputs![input]).expect("session.run");
                let (_, scores) = outputs[scores_output.as_str()]
                    .try_extract_tensor::<f32>()
                    .expect("scores output");
                scores.iter().copied().fold(f32::MIN, f32::max).to_string()
            }
            "quit" => {
                writeln!(tx, "{} {}", status_kb("VmHWM"), status_kb("VmRSS")).unwrap();
                tx.flush().unwrap();
                return;
            }
            other => panic!("bare child: unknown command {other:?}"),
        };
        writeln!(tx, "{answer}").unwrap();
        tx.flush().unwrap();
    }
}
