//! The `vidgest` command line.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vidgest",
    version,
    about = "Video-ingest agent: records cameras into fragmented streams with retention"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until SIGINT/SIGTERM.
    Run {
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate the config file and the environment; print every problem.
    Check {
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Report the runtime environment: GStreamer, ONNX Runtime, models, disk.
    Doctor {
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// List configured cameras and what is stored for each.
    Cameras {
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List stored fragments of a camera.
    Fragments {
        camera: String,
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// RFC 3339, epoch seconds, or relative like -5m.
        #[arg(long, allow_hyphen_values = true)]
        start: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        end: Option<String>,
        /// At most this many fragments (oldest first).
        #[arg(long, default_value_t = 100_000)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Export stored video as a playable MP4.
    Clip {
        camera: String,
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[arg(long, allow_hyphen_values = true)]
        start: String,
        #[arg(long, allow_hyphen_values = true, default_value = "now")]
        end: String,
        #[arg(long, short)]
        output: PathBuf,
    },
    /// State, lag and counters of deliveries and forwarders (from the running daemon).
    Deliveries {
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Read or write records of a shard stream through the running daemon.
    Records {
        #[command(subcommand)]
        command: RecordsCommand,
    },
    /// Tools for a configured delivery stream (e.g. its Athena table).
    Delivery {
        #[command(subcommand)]
        command: cli::delivery::DeliveryCommand,
    },
    /// Ask an RTSP camera what it offers and print a ready [[camera]] snippet.
    Probe {
        url: String,
        #[arg(long)]
        username: Option<String>,
        /// Prefer the VIDGEST_RTSP_PASSWORD environment variable (not visible in `ps`).
        #[arg(long, env = "VIDGEST_RTSP_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Per step (connect, OPTIONS, DESCRIBE); more than 0s, at most 1h.
        #[arg(long, default_value = "5s", value_parser = vidgest::probe::parse_timeout)]
        timeout: std::time::Duration,
    },
}

#[derive(Subcommand)]
enum RecordsCommand {
    /// Print records as JSON lines and follow new ones.
    Tail {
        stream: String,
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// trim-horizon, latest, or a time (RFC 3339, epoch seconds, -5m).
        #[arg(long, default_value = "latest", allow_hyphen_values = true)]
        from: String,
        /// Only this shard (e.g. shardId-000000000001).
        #[arg(long)]
        shard: Option<String>,
        /// Exit once caught up instead of following.
        #[arg(long)]
        no_follow: bool,
    },
    /// Put one record (DATA as given, e.g. a JSON document).
    Put {
        stream: String,
        #[arg(long, short, default_value = vidgest::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Partition key (routes the record to a shard).
        #[arg(long)]
        key: String,
        data: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let result = match args.command {
        Command::Run { config } => cli::run(&config),
        Command::Check { config } => cli::check::check(&config),
        Command::Doctor { config } => cli::doctor(&config),
        Command::Cameras { config, json } => cli::cameras(&config, json),
        Command::Fragments {
            camera,
            config,
            start,
            end,
            limit,
            json,
        } => cli::fragments::list(
            &config,
            &camera,
            start.as_deref(),
            end.as_deref(),
            limit,
            json,
        ),
        Command::Clip {
            camera,
            config,
            start,
            end,
            output,
        } => cli::clip::export(&config, &camera, &start, &end, &output),
        Command::Deliveries { config, json } => {
            cli::load_config(&config).and_then(|c| cli::deliveries::list(&c, json))
        }
        Command::Records { command } => match command {
            RecordsCommand::Tail {
                stream,
                config,
                from,
                shard,
                no_follow,
            } => cli::load_config(&config)
                .and_then(|c| cli::records::tail(&c, &stream, &from, shard.as_deref(), !no_follow)),
            RecordsCommand::Put {
                stream,
                config,
                key,
                data,
            } => {
                cli::load_config(&config).and_then(|c| cli::records::put(&c, &stream, &key, &data))
            }
        },
        Command::Delivery { command } => cli::delivery::run(command),
        Command::Probe {
            url,
            username,
            password,
            timeout,
        } => vidgest::probe::run_cli(&url, username, password, timeout).map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
