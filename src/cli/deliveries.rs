//! `vidgest deliveries`: state, lag and counters of every delivery and forwarder, from the
//! running daemon (`GET /api/v1/deliveries`).

use super::records::Client;
use std::process::ExitCode;
use vidgest::config::{format_bytes, Config};
use vidgest::delivery::StatusSnapshot;

pub fn list(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let value = Client::new(config).get("/api/v1/deliveries")?;
    let list: Vec<StatusSnapshot> = serde_json::from_value(value["deliveries"].clone())?;
    if json {
        for s in &list {
            println!("{}", serde_json::to_string(s)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no deliveries or forwarders configured");
    }
    for s in &list {
        println!(
            "{:<16} {:<15} {:<9} {:>9} records {:>7} objects {:>10}  lag {} records / {:.0}s  errors {}  lost {}  {} -> {}",
            s.name,
            s.kind,
            s.state,
            s.records,
            s.objects,
            format_bytes(s.bytes),
            s.lag_records,
            s.lag_seconds,
            s.error_records,
            s.lost_records,
            s.source,
            s.target,
        );
        if let Some(e) = &s.last_error {
            if s.state != "healthy" {
                println!("{:<16} last error: {e}", "");
            }
        }
    }
    // Unhealthy pipelines make the exit status non-zero (for scripts and monitoring).
    let unhealthy = list
        .iter()
        .any(|s| s.state == "retrying" || s.state == "failing");
    Ok(if unhealthy {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
