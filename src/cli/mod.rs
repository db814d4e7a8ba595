//! Command implementations (anyhow lives here and in main only).

pub mod check;
pub mod clip;
pub mod deliveries;
pub mod delivery;
pub mod fragments;
pub mod records;

use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;
use vidgest::config::{format_bytes, Config};
use vidgest::store::{self, StoreReader};

pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // retina (backend = "retina", logging through `log`) says "info" per reordered UDP packet.
    let filter = EnvFilter::try_from_env("VIDGEST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,retina=warn"));
    // journald adds its own timestamps; plain lines without colour when not on a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

/// Loads the config, printing every problem with its TOML path.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(anyhow::Error::from)
}

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    vidgest::daemon::run(config)?;
    Ok(ExitCode::SUCCESS)
}

pub fn open_reader(config: &Config) -> anyhow::Result<StoreReader> {
    let root = store::video_root(&config.agent.data_dir);
    StoreReader::open(&root)
        .with_context(|| format!("cannot open the video store in {}", root.display()))
}

pub fn cameras(config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    // Nothing recorded yet is an empty list; any other store error is reported, not hidden.
    let root = store::video_root(&config.agent.data_dir);
    let reader = match StoreReader::open(&root) {
        Ok(r) => Some(r),
        Err(store::StoreError::NoStore(_)) => None,
        Err(e) => {
            return Err(anyhow::Error::from(e)
                .context(format!("cannot open the video store in {}", root.display())))
        }
    };
    let stored = match &reader {
        Some(r) => r
            .streams()
            .with_context(|| format!("cannot read the video store in {}", root.display()))?,
        None => Vec::new(),
    };
    for cam in &config.cameras {
        let s = stored.iter().find(|s| s.name == cam.name);
        // A retention set through the KVS API (UpdateDataRetention) is in force while the
        // config still says what it overrode; the daemon drops it at its next start otherwise.
        let api_retention = reader
            .as_ref()
            .and_then(|r| r.stream_details(&cam.name).ok())
            .filter(|d| d.retention_overridden)
            .and_then(|d| d.retention_ns);
        let retention_hours = api_retention.map_or(cam.retention.0.as_secs_f64() / 3600.0, |ns| {
            ns as f64 / 3.6e12
        });
        let (fragments, bytes) = s.map_or((0, 0), |s| (s.fragments, s.bytes));
        let first = s
            .and_then(|s| s.first_producer_ns)
            .map(vidgest::clock::format_rfc3339);
        let last = s
            .and_then(|s| s.last_producer_end_ns)
            .map(vidgest::clock::format_rfc3339);
        let kind = format!("{:?}", cam.source.kind).to_lowercase();
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "name": cam.name, "enabled": cam.enabled, "kind": kind,
                    "fragments": fragments, "size_bytes": bytes,
                    "first": first, "last": last,
                    "retention_hours": retention_hours,
                    "retention_from": if api_retention.is_some() { "api" } else { "config" },
                })
            );
        } else {
            println!(
                "{:<16} {:<5} {:<8} {:>8} fragments {:>10}  {} .. {}  retention {retention_hours}h{}",
                cam.name,
                kind,
                if cam.enabled { "enabled" } else { "disabled" },
                fragments,
                format_bytes(bytes),
                first.as_deref().unwrap_or("-"),
                last.as_deref().unwrap_or("-"),
                if api_retention.is_some() { " (set through the API)" } else { "" },
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vidgest doctor`: versions and health of everything the daemon depends on.
pub fn doctor(config: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let mut ok = true;
    let gst_ok = match gstreamer::init() {
        Ok(()) => {
            println!("gstreamer: {}", gstreamer::version_string());
            true
        }
        Err(e) => {
            ok = false;
            println!("gstreamer: FAIL: {e}");
            false
        }
    };
    for cam in &config.cameras {
        // Without GStreamer, the line above already failed.
        let missing = match gst_ok {
            false => Vec::new(),
            true => vidgest::capture::check_elements(&vidgest::capture::required_elements(cam)),
        };
        if missing.is_empty() {
            println!("{}", check::backend_line(cam));
        } else {
            ok = false;
            println!(
                "{}: FAIL: missing {}",
                check::backend_line(cam),
                missing.join(", ")
            );
        }
    }
    let mut models: Vec<String> = vec![config.detect.model.clone()];
    for cam in &config.cameras {
        if let Some(m) = cam.detection().and_then(|d| d.model.clone()) {
            if !models.contains(&m) {
                models.push(m);
            }
        }
    }
    for m in &models {
        let report = vidgest::detect::doctor_report(config.detect.onnxruntime.as_deref(), m);
        ok &= !report.contains("FAIL");
        print!("{report}");
    }
    let data = &config.agent.data_dir;
    // The data dir may not exist before the first run: its nearest existing ancestor is on
    // the same file system (not the current directory, which may be anywhere).
    let probe = vidgest::store::existing_ancestor(data).unwrap_or(std::path::Path::new("/"));
    match vidgest::store::DiskSpace::available(&vidgest::store::Statvfs, probe) {
        Ok(free) => println!("data dir: {} ({} free)", data.display(), format_bytes(free)),
        Err(e) => println!("data dir: {}: cannot read free space: {e}", data.display()),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
