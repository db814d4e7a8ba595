//! The delivery subsystem: one worker per `[[delivery]]` (see `delivery::run`), and the
//! statuses the API and the status log read.

use crate::clock::SharedClock;
use crate::config::{Config, DestinationConfig};
use crate::delivery::run::{self, DeliveryContext};
use crate::delivery::PipeStatus;
use crate::lifecycle::{Handle, Started};
use crate::streams::ShardStreams;
use std::sync::Arc;

/// Starts every delivery. One that cannot start (its source stream is missing, its format is
/// unavailable) is logged and left out; the others and the rest of the daemon run.
pub fn start(
    config: &Config,
    streams: &Arc<ShardStreams>,
    clock: &SharedClock,
) -> (Vec<Arc<PipeStatus>>, Handle) {
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
                statuses.push(status);
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
