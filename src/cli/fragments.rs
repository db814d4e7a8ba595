//! `vidgest fragments CAMERA`.

use super::{load_config, open_reader};
use std::path::Path;
use std::process::ExitCode;
use vidgest::clock::{format_rfc3339, Clock, SystemClock};
use vidgest::timespec::parse_time;

pub fn list(
    config: &Path,
    camera: &str,
    start: Option<&str>,
    end: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let now = SystemClock.now_ns();
    let start = start.map(|s| parse_time(s, now)).transpose()?;
    let end = end.map(|s| parse_time(s, now)).transpose()?;
    let reader = open_reader(&config)?;
    let fragments = reader.fragments(camera, start, end, limit)?;
    if !json {
        println!(
            "{:>10}  {:<24}  {:<24}  {:>8}  {:>9}  flags",
            "fragment", "producer_timestamp", "server_timestamp", "ms", "bytes"
        );
    }
    for f in &fragments {
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "fragment_number": f.fragment_number.to_string(),
                    "producer_timestamp": format_rfc3339(f.producer_ns),
                    "server_timestamp": format_rfc3339(f.server_ns),
                    "duration_ms": f.duration_ns / 1_000_000,
                    "size_bytes": f.size,
                    "samples": f.sample_count,
                    "discontinuity": f.discontinuity,
                    "init_id": f.init_id,
                })
            );
        } else {
            println!(
                "{:>10}  {:<24}  {:<24}  {:>8}  {:>9}  {}",
                f.fragment_number,
                format_rfc3339(f.producer_ns),
                format_rfc3339(f.server_ns),
                f.duration_ns / 1_000_000,
                f.size,
                if f.discontinuity { "discontinuity" } else { "" }
            );
        }
    }
    if !json {
        eprintln!("{} fragments", fragments.len());
    }
    Ok(ExitCode::SUCCESS)
}
