//! `vidgest delivery ...`: tools for one configured delivery stream.

use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vidgest::config::{Config, DestinationConfig};

#[derive(Subcommand)]
pub enum DeliveryCommand {
    /// Print the Athena/Glue CREATE EXTERNAL TABLE (with partition projection) for a delivery.
    Ddl {
        /// The delivery's name ([[delivery]] name).
        name: String,
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Table name, optionally `database.table` (default: the delivery's name).
        #[arg(long)]
        table: Option<String>,
    },
}

pub fn run(command: DeliveryCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeliveryCommand::Ddl {
            name,
            config,
            table,
        } => ddl(&config, &name, table.as_deref()),
    }
}

fn ddl(config: &Path, name: &str, table: Option<&str>) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config)?;
    let Some(d) = config.deliveries.iter().find(|d| d.name == name) else {
        let known: Vec<&str> = config.deliveries.iter().map(|d| d.name.as_str()).collect();
        anyhow::bail!(
            "no delivery named `{name}` (configured: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let location = match &d.destination {
        DestinationConfig::S3(s3) => format!("s3://{}/", s3.bucket),
        DestinationConfig::Dir(dir) => {
            let path = dir.resolve(&config.agent.data_dir);
            let path = std::path::absolute(&path)
                .with_context(|| format!("resolving {}", path.display()))?;
            format!(
                "file://{}/",
                path.display().to_string().trim_end_matches('/')
            )
        }
    };
    let ddl = vidgest::delivery::ddl::create_table_for(
        d,
        &location,
        table,
        is_detection_stream(&config, &d.source),
    )
    .with_context(|| format!("delivery `{name}`"))?;
    print!("{ddl}");
    Ok(ExitCode::SUCCESS)
}

/// Whether `stream` carries detection records: a camera writes them there, or it is the
/// default detection stream's name.
fn is_detection_stream(config: &Config, stream: &str) -> bool {
    stream == "detections"
        || config
            .cameras
            .iter()
            .filter_map(|c| c.detect.as_ref())
            .any(|d| d.stream == stream)
}
