//! The delivery subsystem: one worker per `[[delivery]]` (see `delivery::run`) and one task per
//! `[[forward]]`, each started and stopped on its own so that a reload restarts only the ones
//! whose config changed; and the statuses the API and the status log read.

use super::reload::ConfigFile;
use crate::clock::SharedClock;
use crate::config::{DeliveryConfig, DestinationConfig, ForwardConfig};
use crate::delivery::forward::{self, ForwardStatus};
use crate::delivery::run::{self, DeliveryContext};
use crate::delivery::{PipeStatus, Pipeline};
use crate::lifecycle::{Handle, Shutdown};
use crate::streams::ShardStreams;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// An unreachable remote must not hold up a stop or a reload for longer than this.
const FORWARDER_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The running deliveries and forwarders, in config order.
pub struct Pipelines {
    streams: Arc<ShardStreams>,
    clock: SharedClock,
    runtime: tokio::runtime::Handle,
    deliveries: Vec<Running>,
    forwarders: Vec<Running>,
}

struct Running {
    name: String,
    /// Its `[[delivery]]` / `[[forward]]` table as written: any difference restarts it.
    table: Option<toml::Value>,
    status: Pipeline,
    stop: Handle,
}

/// What `Pipelines::apply` did, by name (deliveries and forwarders together).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PipelineChanges {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
}

impl Pipelines {
    pub fn new(
        streams: &Arc<ShardStreams>,
        clock: &SharedClock,
        runtime: &tokio::runtime::Runtime,
    ) -> Self {
        Self {
            streams: streams.clone(),
            clock: clock.clone(),
            runtime: runtime.handle().clone(),
            deliveries: Vec::new(),
            forwarders: Vec::new(),
        }
    }

    /// Starts every delivery and forwarder. One that cannot start (its source stream is missing,
    /// its format is unavailable, its consumer cannot open) is logged and left out; the others
    /// and the rest of the daemon run.
    pub fn start_all(&mut self, file: &ConfigFile) {
        self.apply(file);
    }

    /// Stops the deliveries and forwarders that are gone or changed, then starts the new and
    /// changed ones; unchanged ones keep running.
    pub fn apply(&mut self, file: &ConfigFile) -> PipelineChanges {
        let mut changes = PipelineChanges::default();
        let config = &file.config;
        let delivery_names: Vec<&str> = config.deliveries.iter().map(|d| &*d.name).collect();
        let forward_names: Vec<&str> = config.forwards.iter().map(|f| f.name()).collect();
        let mut kept_deliveries = retain(
            &mut self.deliveries,
            |r| file.delivery_table(&r.name) == r.table,
            &delivery_names,
            &mut changes,
        );
        let mut kept_forwarders = retain(
            &mut self.forwarders,
            |r| file.forward_table(&r.name) == r.table,
            &forward_names,
            &mut changes,
        );
        for d in &config.deliveries {
            if let Some(i) = kept_deliveries.iter().position(|r| r.name == d.name) {
                self.deliveries.push(kept_deliveries.remove(i));
            } else if let Some(r) = self.start_delivery(file, d) {
                note_started(&mut changes, &d.name);
                self.deliveries.push(r);
            }
        }
        for f in &config.forwards {
            if let Some(i) = kept_forwarders.iter().position(|r| r.name == f.name()) {
                self.forwarders.push(kept_forwarders.remove(i));
            } else if let Some(r) = self.start_forwarder(file, f) {
                note_started(&mut changes, f.name());
                self.forwarders.push(r);
            }
        }
        changes
    }

    /// Statuses of what runs: deliveries, then forwarders.
    pub fn statuses(&self) -> Vec<Pipeline> {
        (self.deliveries.iter().chain(&self.forwarders))
            .map(|r| r.status.clone())
            .collect()
    }

    /// Stops and waits for every delivery and forwarder.
    pub fn stop_all(&mut self) {
        let all: Vec<Running> = self
            .forwarders
            .drain(..)
            .chain(self.deliveries.drain(..))
            .collect();
        let mut all: Vec<Handle> = all.into_iter().map(|r| r.stop).collect();
        all.iter_mut().for_each(Handle::stop);
        all.into_iter().for_each(Handle::join);
    }

    fn start_delivery(&self, file: &ConfigFile, d: &DeliveryConfig) -> Option<Running> {
        let data_dir = &file.config.agent.data_dir;
        let target = match &d.destination {
            DestinationConfig::Dir(dir) => dir.resolve(data_dir).display().to_string(),
            DestinationConfig::S3(s3) => format!("s3://{}", s3.bucket),
        };
        let retention_s = self
            .streams
            .describe(&d.source)
            .map_or(24 * 3600, |s| u64::from(s.retention_hours) * 3600);
        let status = Arc::new(PipeStatus::new(
            &d.name,
            "delivery",
            &d.source,
            &target,
            retention_s,
        ));
        let cx = DeliveryContext {
            data_dir: data_dir.clone(),
            streams: self.streams.clone(),
            clock: self.clock.clone(),
        };
        match run::start(d, cx, status.clone()) {
            Ok(stop) => Some(Running {
                name: d.name.clone(),
                table: file.delivery_table(&d.name),
                status: Pipeline::Delivery(status),
                stop,
            }),
            Err(e) => {
                tracing::error!("{e}; the delivery is not running");
                None
            }
        }
    }

    /// A forwarder runs as a task on the daemon's runtime (reading its stream on a thread of its
    /// own).
    fn start_forwarder(&self, file: &ConfigFile, f: &ForwardConfig) -> Option<Running> {
        let consumer_name = forward_consumer_name(f.name());
        let consumer = match self.streams.consumer(f.source(), &consumer_name) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(forwarder = %f.name(), "cannot open its consumer of `{}`: {e}; the forwarder is not running", f.source());
                return None;
            }
        };
        let status = ForwardStatus::new(f.name());
        let kind = match f {
            ForwardConfig::Kinesis(_) => "forward-kinesis",
            ForwardConfig::Mqtt(_) => "forward-mqtt",
        };
        let shutdown = Shutdown::new();
        let task = self.runtime.spawn(forward::run(
            f.clone(),
            file.config.device_id(),
            consumer,
            status.clone(),
            shutdown.clone(),
        ));
        tracing::info!(forwarder = %f.name(), source = %f.source(), kind, "forwarder started");
        let rt = self.runtime.clone();
        let name = f.name().to_string();
        let stop = Handle::new(
            "forwarder",
            move || shutdown.trigger(),
            move || match rt
                .block_on(async { tokio::time::timeout(FORWARDER_STOP_TIMEOUT, task).await })
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(forwarder = %name, "forwarder task: {e}"),
                Err(_) => {
                    tracing::warn!(forwarder = %name, "the forwarder did not stop within 15 s; its unacknowledged records are sent after the next start")
                }
            },
        );
        Some(Running {
            name: f.name().to_string(),
            table: file.forward_table(f.name()),
            status: Pipeline::Forward {
                status,
                kind,
                source: f.source().to_string(),
                consumer: consumer_name,
            },
            stop,
        })
    }
}

/// Splits `running` into the unchanged ones (returned) and the rest, which are stopped (all
/// asked first, then waited for) and noted as stopped or, when `wanted` still names them,
/// restarted.
fn retain(
    running: &mut Vec<Running>,
    unchanged: impl Fn(&Running) -> bool,
    wanted: &[&str],
    changes: &mut PipelineChanges,
) -> Vec<Running> {
    let (kept, mut stopping): (Vec<Running>, Vec<Running>) = running
        .drain(..)
        .partition(|r| wanted.contains(&&*r.name) && unchanged(r));
    stopping.iter_mut().for_each(|r| r.stop.stop());
    for r in stopping {
        if wanted.contains(&&*r.name) {
            changes.restarted.push(r.name.clone());
        } else {
            changes.stopped.push(r.name.clone());
        }
        r.stop.join();
    }
    kept
}

fn note_started(changes: &mut PipelineChanges, name: &str) {
    if !changes.restarted.iter().any(|n| n == name) {
        changes.started.push(name.to_string());
    }
}

/// The lifecycle handle of deliveries and forwarders: stopping it stops whatever the registry
/// runs at that moment (ones a reload started included).
pub fn handle(pipelines: &Arc<Mutex<Pipelines>>) -> Handle {
    let p = pipelines.clone();
    Handle::new("deliveries", || {}, move || p.lock().stop_all())
}

/// The consumer a forwarder reads with.
pub fn forward_consumer_name(forward: &str) -> String {
    format!("forward.{forward}")
}
