//! The delivery subsystem: one worker per `[[delivery]]` (see `delivery::run`), and the
//! statuses the API and the status log read.

use crate::clock::SharedClock;
use crate::config::ForwardConfig;
use crate::config::{Config, DestinationConfig};
use crate::delivery::forward::{self, ForwardStatus};
use crate::delivery::run::{self, DeliveryContext};
use crate::delivery::{PipeStatus, Pipeline};
use crate::lifecycle::Shutdown;
use crate::lifecycle::{Handle, Started};
use crate::streams::ShardStreams;
use std::sync::Arc;

/// Starts every delivery. One that cannot start (its source stream is missing, its format is
/// unavailable) is logged and left out; the others and the rest of the daemon run.
pub fn start(
    config: &Config,
    streams: &Arc<ShardStreams>,
    clock: &SharedClock,
) -> (Vec<Pipeline>, Handle) {
    let cx = DeliveryContext {
        data_dir: config.agent.data_dir.clone(),
        streams: streams.clone(),
        clock: clock.clone(),
    };
    let mut statuses = Vec::new();
    let mut started = Started::default();
    for d in &config.deliveries {
        let target = match &d.destination {
            DestinationConfig::Dir(dir) => {
                dir.resolve(&config.agent.data_dir).display().to_string()
            }
            DestinationConfig::S3(s3) => format!("s3://{}", s3.bucket),
        };
        let retention_s = streams
            .describe(&d.source)
            .map_or(24 * 3600, |s| u64::from(s.retention_hours) * 3600);
        let status = Arc::new(PipeStatus::new(
            &d.name,
            "delivery",
            &d.source,
            &target,
            retention_s,
        ));
        match run::start(d, cx.clone(), status.clone()) {
            Ok(h) => {
                started.push(h);
                statuses.push(Pipeline::Delivery(status));
            }
            Err(e) => tracing::error!("{e}; the delivery is not running"),
        }
    }
    let handle = Handle::new(
        "deliveries",
        || {},
        move || {
            let mut started = started;
            started.stop_all();
        },
    );
    (statuses, handle)
}

/// The consumer a forwarder reads with.
pub fn forward_consumer_name(forward: &str) -> String {
    format!("forward.{forward}")
}

/// Starts every forwarder as a task on the daemon's runtime (each reads its stream on a thread
/// of its own). One whose consumer cannot open is logged and left out.
pub fn start_forwarders(
    config: &Config,
    streams: &Arc<ShardStreams>,
    runtime: &tokio::runtime::Runtime,
) -> (Vec<Pipeline>, Handle) {
    let shutdown = Shutdown::new();
    let mut pipelines = Vec::new();
    let mut tasks = Vec::new();
    for f in &config.forwards {
        let consumer_name = forward_consumer_name(f.name());
        let consumer = match streams.consumer(f.source(), &consumer_name) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(forwarder = %f.name(), "cannot open its consumer of `{}`: {e}; the forwarder is not running", f.source());
                continue;
            }
        };
        let status = ForwardStatus::new(f.name());
        let kind = match f {
            ForwardConfig::Kinesis(_) => "forward-kinesis",
            ForwardConfig::Mqtt(_) => "forward-mqtt",
        };
        pipelines.push(Pipeline::Forward {
            status: status.clone(),
            kind,
            source: f.source().to_string(),
            consumer: consumer_name,
        });
        tasks.push(runtime.spawn(forward::run(
            f.clone(),
            config.device_id(),
            consumer,
            status,
            shutdown.clone(),
        )));
        tracing::info!(forwarder = %f.name(), source = %f.source(), kind, "forwarder started");
    }
    let rt = runtime.handle().clone();
    let handle = Handle::new(
        "forwarders",
        move || shutdown.trigger(),
        move || {
            for t in tasks {
                // Bounded: an unreachable remote must not hold up the daemon's stop.
                match rt.block_on(async {
                    tokio::time::timeout(std::time::Duration::from_secs(15), t).await
                }) {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!("forwarder task: {e}"),
                    Err(_) => tracing::warn!("a forwarder did not stop within 15 s; its unacknowledged records are sent after the next start"),
                }
            }
        },
    );
    (pipelines, handle)
}
