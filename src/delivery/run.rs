//! One delivery stream at work: reads its source with its own named consumer, groups records
//! by prefix into buffers, writes each flushed buffer as one object, and moves the checkpoint
//! only over records whose objects the destination confirmed (at least once).
//!
//! Each delivery runs on its own thread with a small single-threaded runtime for the
//! destination's async I/O: a slow or failing destination never holds up another delivery, and
//! blocking stream reads and checkpoint fsyncs stay off the API's runtime. While a write fails,
//! the delivery stops reading (the source stream is the spool) and retries with backoff.

use super::body::{BodyFormat, Jsonl, PushError};
use super::buffer::{Batcher, BufferingHints, ReadyBatch, SourceRecord};
use super::destination::{Destination, DestinationError, FailureKind};
use super::errors::{ErrorOutputType, ErrorRecord};
use super::format::Compression;
use super::keys::BatchOrigin;
use super::prefix::{Prefix, PrefixKind};
use super::status::{Health, PipeStatus};
use crate::capture::backoff::Backoff;
use crate::clock::{SharedClock, UnixNanos};
use crate::config::{DeliveryConfig, DeliveryFormat};
use crate::lifecycle::{Handle, Shutdown};
use crate::streams::{
    parse_sequence_number, sequence_number, Consumer, ShardStreams, StoredRecord,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Records read per poll.
const POLL_RECORDS: usize = 1000;
/// Open buffers (partitions) at most, as Firehose's active-partition limit: more flush the
/// oldest early.
const MAX_OPEN_BUFFERS: usize = 500;
/// Record bytes all open buffers of a delivery hold together at most (or `buffer_size`, if
/// larger): beyond it the oldest buffers flush early.
const MAX_BUFFERED_BYTES: u64 = 256 << 20;
/// Longest wait for new records before buffers are checked again.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(500);
/// How often the consumer's lag is measured for the status.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// At shutdown, the open buffers get this long to be written; what is not confirmed by then
/// is read again at the next start.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("delivery `{name}`: {source}")]
    Stream {
        name: String,
        source: crate::streams::StreamError,
    },
    #[error("delivery `{name}`: {source}")]
    Format {
        name: String,
        source: super::parquet::ParquetSetupError,
    },
    #[error("delivery `{name}`: cannot start its thread: {source}")]
    Thread {
        name: String,
        source: std::io::Error,
    },
}

/// What every delivery shares.
#[derive(Clone)]
pub struct DeliveryContext {
    pub data_dir: PathBuf,
    pub streams: Arc<ShardStreams>,
    pub clock: SharedClock,
}

/// The object format a delivery writes.
pub fn body_format(cfg: &DeliveryConfig) -> Result<Arc<dyn BodyFormat>, DeliveryError> {
    match cfg.format {
        DeliveryFormat::Jsonl => Ok(Arc::new(Jsonl(cfg.compression()))),
        DeliveryFormat::Parquet => {
            super::parquet::Parquet::new(cfg.schema.as_ref(), cfg.compression())
                .map(|p| Arc::new(p) as Arc<dyn BodyFormat>)
                .map_err(|e| DeliveryError::Format {
                    name: cfg.name.clone(),
                    source: e,
                })
        }
    }
}

/// Starts a delivery on its own thread; the handle stops it (open buffers are written, briefly).
pub fn start(
    cfg: &DeliveryConfig,
    cx: DeliveryContext,
    status: Arc<PipeStatus>,
) -> Result<Handle, DeliveryError> {
    let format = body_format(cfg)?;
    let consumer = cx
        .streams
        .consumer(&cfg.source, &consumer_name(&cfg.name))
        .map_err(|source| DeliveryError::Stream {
            name: cfg.name.clone(),
            source,
        })?;
    let prefix = Prefix::parse(cfg.prefix.as_deref(), &cfg.name, PrefixKind::Data)
        .expect("validated with the config");
    let error_prefix = Prefix::parse(
        Some(
            &cfg.error_prefix
                .clone()
                .unwrap_or_else(|| cfg.default_error_prefix()),
        ),
        &cfg.name,
        PrefixKind::Error,
    )
    .expect("validated with the config");
    let hints = BufferingHints {
        size: cfg.buffer_size.0,
        interval: cfg.buffer_interval.0,
    };
    let shutdown = Shutdown::new();
    let worker = Worker {
        cfg: cfg.clone(),
        cx,
        status,
        consumer,
        prefix,
        error_prefix,
        data: Batcher::new(hints, format.clone()),
        errors: Batcher::new(hints, Arc::new(Jsonl(Compression::None))),
        extension: format.extension(),
        polled: BTreeMap::new(),
        destination: None,
        last_lag: None,
        abandoned: false,
        shutdown: shutdown.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("delivery-{}", cfg.name))
        .spawn(move || worker.run())
        .map_err(|source| DeliveryError::Thread {
            name: cfg.name.clone(),
            source,
        })?;
    Ok(Handle::new(
        "delivery",
        move || shutdown.trigger(),
        move || {
            let _ = thread.join();
        },
    ))
}

/// The consumer a delivery reads with (its checkpoints live in the source stream's directory).
pub fn consumer_name(delivery: &str) -> String {
    format!("delivery.{delivery}")
}

/// Which buffer a record goes to.
enum Route {
    Data(String),
    Error(ErrorOutputType, ErrorRecord),
}

struct Worker {
    cfg: DeliveryConfig,
    cx: DeliveryContext,
    status: Arc<PipeStatus>,
    consumer: Consumer,
    prefix: Prefix,
    error_prefix: Prefix,
    data: Batcher,
    /// Records that could not be partitioned or converted, as Firehose error lines; buffer key
    /// is the error output type.
    errors: Batcher,
    extension: &'static str,
    /// Per shard, the last sequence number read.
    polled: BTreeMap<String, String>,
    destination: Option<Destination>,
    /// When the lag was last measured (None: not yet).
    last_lag: Option<std::time::Instant>,
    /// Batches were taken from the buffers and not written (shutdown while retrying): no
    /// checkpoint may move in this run any more, or their records would count as delivered.
    abandoned: bool,
    shutdown: Shutdown,
}

impl Worker {
    fn run(mut self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                self.status
                    .failure(Health::Failing, &format!("cannot start its runtime: {e}"));
                return;
            }
        };
        tracing::info!(
            delivery = %self.cfg.name,
            source = %self.cfg.source,
            target = %self.status.target,
            "delivery started"
        );
        while !self.shutdown.is_triggered() {
            self.report_lag_when_due();
            let now = self.now();
            let mut ready = self.flush_due(now);
            let read = match self.read(&mut ready) {
                Ok(n) => n,
                Err(e) => {
                    self.status.failure(
                        Health::Failing,
                        &format!("reading {}: {e}", self.cfg.source),
                    );
                    // Batches already out of their buffers are written first (else a later
                    // checkpoint would pass their records).
                    if !ready.is_empty() && !self.write_all(&rt, ready, None) {
                        self.abandoned = true;
                        break;
                    }
                    self.shutdown.wait(Duration::from_secs(5));
                    continue;
                }
            };
            if !ready.is_empty() && !self.write_all(&rt, ready, None) {
                // Shutdown while retrying: the unwritten batches are out of the buffers, so
                // the buffers no longer hold the checkpoint back from their records.
                self.abandoned = true;
                break;
            }
            self.commit();
            if read == 0 {
                let wait = self
                    .next_due()
                    .map_or(MAX_IDLE_WAIT, |due| {
                        Duration::from_nanos((due - self.now()).max(0) as u64)
                    })
                    .min(MAX_IDLE_WAIT);
                if let Err(e) = self.consumer.wait(wait) {
                    tracing::warn!(delivery = %self.cfg.name, "waiting for records: {e}");
                    self.shutdown.wait(MAX_IDLE_WAIT);
                }
            }
        }
        self.finish(&rt);
    }

    fn now(&self) -> UnixNanos {
        self.cx.clock.now_ns()
    }

    fn next_due(&self) -> Option<UnixNanos> {
        [self.data.next_due(), self.errors.next_due()]
            .into_iter()
            .flatten()
            .min()
    }

    fn flush_due(&mut self, now: UnixNanos) -> Vec<(bool, ReadyBatch)> {
        let mut out = Vec::new();
        let mut failed = None;
        for (is_error, b) in [(false, &mut self.data), (true, &mut self.errors)] {
            match b.due(now) {
                Ok(batches) => out.extend(batches.into_iter().map(|r| (is_error, r))),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            self.hold_checkpoints(&format!("finishing an object: {e}"));
        }
        out
    }

    /// Reads and buffers one poll's worth of records; full buffers are added to `ready`.
    fn read(
        &mut self,
        ready: &mut Vec<(bool, ReadyBatch)>,
    ) -> Result<usize, crate::streams::StreamError> {
        let records = self.consumer.poll(POLL_RECORDS)?;
        let lost = self.consumer.take_lost();
        if lost > 0 {
            self.status.add(&self.status.lost_records, lost);
        }
        let now = self.now();
        let max_bytes = MAX_BUFFERED_BYTES.max(self.cfg.buffer_size.0);
        for (shard, rec) in &records {
            self.buffer(shard, rec, now, ready);
            self.polled
                .insert(shard.clone(), rec.sequence_number.clone());
            match self.data.over_limits(MAX_OPEN_BUFFERS, max_bytes) {
                Ok(early) => ready.extend(early.into_iter().map(|r| (false, r))),
                Err(e) => self.hold_checkpoints(&format!("finishing an object: {e}")),
            }
        }
        Ok(records.len())
    }

    fn buffer(
        &mut self,
        shard: &str,
        rec: &StoredRecord,
        now: UnixNanos,
        ready: &mut Vec<(bool, ReadyBatch)>,
    ) {
        let key = match self.route(rec) {
            Route::Data(key) => key,
            Route::Error(kind, err) => {
                self.push_error(kind, err, shard, rec, now, ready);
                return;
            }
        };
        let source = SourceRecord {
            shard,
            sequence: &rec.sequence_number,
            arrival_ns: rec.arrival_ns,
            data: &rec.data,
        };
        match self.data.push(&key, source, now) {
            Ok(Some(batch)) => ready.push((false, batch)),
            Ok(None) => {}
            Err(PushError::Convert(e)) => {
                let err = ErrorRecord::new(e.code, e.message, rec.arrival_ns, &rec.data);
                self.push_error(
                    ErrorOutputType::FormatConversionFailed,
                    err,
                    shard,
                    rec,
                    now,
                    ready,
                );
            }
            // Encoding failed (an in-memory encoder: allocation, or finishing a full buffer):
            // records may be out of every buffer, so nothing more is checkpointed this run.
            Err(PushError::Io(e)) => self.hold_checkpoints(&format!("encoding an object: {e}")),
        }
    }

    /// Something left records outside every buffer without writing them: from now on no
    /// checkpoint moves, so all of it is read and delivered again after a restart (at least
    /// once, never lost). The delivery shows as failing until then.
    fn hold_checkpoints(&mut self, why: &str) {
        if !self.abandoned {
            self.abandoned = true;
            self.status.failure(
                Health::Failing,
                &format!("{why}; checkpoints are held until the next start, which delivers those records again"),
            );
        }
    }

    fn push_error(
        &mut self,
        kind: ErrorOutputType,
        err: ErrorRecord,
        shard: &str,
        rec: &StoredRecord,
        now: UnixNanos,
        ready: &mut Vec<(bool, ReadyBatch)>,
    ) {
        let line = err.to_json_line();
        let r = SourceRecord {
            shard,
            sequence: &rec.sequence_number,
            arrival_ns: rec.arrival_ns,
            data: &line,
        };
        match self.errors.push(kind.as_str(), r, now) {
            Ok(Some(batch)) => ready.push((true, batch)),
            Ok(None) => {}
            Err(e) => tracing::error!(delivery = %self.cfg.name, "encoding an error record: {e}"),
        }
    }

    /// The buffer a record goes to: its partition values (dynamic partitioning) or an error.
    fn route(&self, rec: &StoredRecord) -> Route {
        if !self.prefix.is_dynamic() {
            return Route::Data(String::from("[]"));
        }
        let json: Option<serde_json::Value> = serde_json::from_slice(&rec.data).ok();
        match self.prefix.partition_values(json.as_ref()) {
            Ok(values) => match self.invalid_key(&values, rec.arrival_ns) {
                None => Route::Data(serde_json::to_string(&values).expect("strings serialize")),
                Some(why) => Route::Error(
                    ErrorOutputType::PartitioningFailed,
                    ErrorRecord::new(
                        "DynamicPartitioning.MetadataExtractionFailed",
                        why,
                        rec.arrival_ns,
                        &rec.data,
                    ),
                ),
            },
            Err(e) => Route::Error(
                ErrorOutputType::PartitioningFailed,
                ErrorRecord::new(
                    "DynamicPartitioning.MetadataExtractionFailed",
                    e.to_string(),
                    rec.arrival_ns,
                    &rec.data,
                ),
            ),
        }
    }

    /// Why partition `values` cannot make an object key (an empty, `.` or `..` path segment,
    /// a control character), if they cannot. Such a record goes to the error prefix: its
    /// batch's write could never succeed and would hold every later record back.
    fn invalid_key(&self, values: &[String], arrival_ns: UnixNanos) -> Option<String> {
        // The object name stands in as `x`: literals, times and the random string are valid.
        let key = self.prefix.render(values, arrival_ns, "x", "") + "x";
        object_store::path::Path::parse(&key).err().map(|e| {
            let fields = self.prefix.partition_fields().join(", ");
            format!("the values {values:?} of the partition fields {fields} make no valid object key: {e}")
        })
    }

    /// Writes every batch, retrying each until it is confirmed. Returns false if shutdown came
    /// first (or `deadline` passed): the rest is read again at the next start.
    fn write_all(
        &mut self,
        rt: &tokio::runtime::Runtime,
        ready: Vec<(bool, ReadyBatch)>,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        for (is_error, batch) in ready {
            let status = Arc::clone(&self.status);
            let counter = if is_error {
                &status.error_records
            } else {
                &status.records
            };
            if !batch.has_rows {
                // Nothing to write (e.g. Parquet rows from heartbeat records only): done, and
                // its records count as delivered, or `records` would never reach what was put.
                self.status.add(counter, batch.records as u64);
                continue;
            }
            let key = self.object_key(is_error, &batch);
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
            loop {
                let started = std::time::Instant::now();
                let result = match self.destination(rt) {
                    Ok(d) => {
                        let body = batch.body.clone();
                        rt.block_on(async {
                            let put = d.put(&key, body);
                            match deadline {
                                Some(t) => tokio::time::timeout_at(t.into(), put)
                                    .await
                                    .unwrap_or_else(|_| {
                                        Err(DestinationError::Transient {
                                            location: key.clone(),
                                            detail: "shutdown deadline".into(),
                                        })
                                    }),
                                None => put.await,
                            }
                        })
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {
                        self.status.success(self.now());
                        self.status.add(&self.status.objects, 1);
                        self.status.add(&self.status.bytes, batch.body.len() as u64);
                        self.status.add(counter, batch.records as u64);
                        tracing::debug!(
                            delivery = %self.cfg.name,
                            key = %key,
                            records = batch.records,
                            bytes = batch.body.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "object written"
                        );
                        break;
                    }
                    Err(e) => {
                        let health = match e.kind() {
                            FailureKind::Retry => Health::Retrying,
                            FailureKind::Fix => Health::Failing,
                        };
                        self.status.failure(health, &e.to_string());
                        if matches!(
                            e,
                            DestinationError::Setup(_) | DestinationError::CreateDir { .. }
                        ) {
                            self.destination = None;
                        }
                        let pause = backoff.next_delay();
                        let pause = deadline.map_or(pause, |t| {
                            pause.min(t.saturating_duration_since(std::time::Instant::now()))
                        });
                        if !self.pause(pause, deadline.is_some()) {
                            return false;
                        }
                        if deadline.is_some_and(|t| std::time::Instant::now() >= t) {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// Waits out a retry's backoff; false if shutdown came first. The lag is measured on the
    /// way: the backlog grows while the destination fails, which is when the status must show
    /// it (and warn before records age out). When `stopping` (the shutdown signal no longer
    /// waits) it sleeps the backoff out instead of retrying in a tight loop.
    fn pause(&mut self, pause: Duration, stopping: bool) -> bool {
        let until = std::time::Instant::now() + pause;
        loop {
            self.report_lag_when_due();
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            let step = left.min(LAG_INTERVAL);
            if stopping {
                std::thread::sleep(step);
            } else if self.shutdown.wait(step) {
                return false;
            }
        }
    }

    fn destination(
        &mut self,
        rt: &tokio::runtime::Runtime,
    ) -> Result<&Destination, DestinationError> {
        if self.destination.is_none() {
            self.destination =
                Some(rt.block_on(Destination::open(&self.cfg.destination, &self.cx.data_dir))?);
        }
        Ok(self.destination.as_ref().expect("set above"))
    }

    fn object_key(&self, is_error: bool, batch: &ReadyBatch) -> String {
        let origin = BatchOrigin {
            delivery: &self.cfg.name,
            shard: &batch.first_shard,
            first_sequence: &batch.first_sequence,
            partition: &batch.prefix,
        };
        let random = origin.random_string();
        let t = batch.oldest_arrival_ns;
        if is_error {
            // The error buffers' key is the error output type.
            let prefix = self.error_prefix.render(&[], t, &random, &batch.prefix);
            origin.object_key(&prefix, t, "")
        } else {
            let values: Vec<String> = serde_json::from_str(&batch.prefix).unwrap_or_default();
            let prefix = self.prefix.render(&values, t, &random, "");
            origin.object_key(&prefix, t, self.extension)
        }
    }

    /// Moves each shard's checkpoint up to the record before the first one an open buffer
    /// still holds (everything before it is in confirmed objects).
    fn commit(&mut self) {
        if self.abandoned {
            return;
        }
        for (shard, last) in &self.polled {
            let held = [self.data.safe_before(shard), self.errors.safe_before(shard)]
                .into_iter()
                .flatten()
                .min();
            let target = match held {
                None => Some(last.clone()),
                Some(first_held) => parse_sequence_number(first_held)
                    .and_then(|(i, off)| off.checked_sub(1).map(|o| sequence_number(i, o))),
            };
            let Some(target) = target else { continue };
            if self.consumer.checkpoint(shard).as_deref() >= Some(target.as_str()) {
                continue;
            }
            if let Err(e) = self.consumer.commit(shard, &target) {
                tracing::error!(delivery = %self.cfg.name, shard = %shard, "checkpoint: {e}");
            }
        }
    }

    fn report_lag_when_due(&mut self) {
        if self.last_lag.is_some_and(|t| t.elapsed() < LAG_INTERVAL) {
            return;
        }
        self.report_lag();
        self.last_lag = Some(std::time::Instant::now());
    }

    fn report_lag(&mut self) {
        match self.consumer.lag() {
            Ok(lag) => {
                self.status.set_lag(lag, self.now());
            }
            Err(e) => tracing::debug!(delivery = %self.cfg.name, "lag: {e}"),
        }
    }

    /// Shutdown: writes what the buffers hold (bounded), checkpoints what was confirmed.
    fn finish(&mut self, rt: &tokio::runtime::Runtime) {
        if self.abandoned {
            // Nothing could be committed after this run's writes anyway: all is read again
            // at the next start, so stop now rather than retry a failing destination.
            tracing::warn!(
                delivery = %self.cfg.name,
                "stopped while a write was being retried: the unconfirmed records are delivered after the next start"
            );
            tracing::info!(delivery = %self.cfg.name, "delivery stopped");
            return;
        }
        let mut ready = Vec::new();
        let mut failed = None;
        for (is_error, b) in [(false, &mut self.data), (true, &mut self.errors)] {
            match b.drain() {
                Ok(batches) => ready.extend(batches.into_iter().map(|r| (is_error, r))),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            self.hold_checkpoints(&format!("finishing an object: {e}"));
        }
        let deadline = std::time::Instant::now() + SHUTDOWN_FLUSH;
        if self.write_all(rt, ready, Some(deadline)) {
            self.commit();
        } else {
            tracing::warn!(
                delivery = %self.cfg.name,
                "stopped before every buffer was written: those records are delivered after the next start"
            );
        }
        tracing::info!(delivery = %self.cfg.name, "delivery stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DestinationConfig, DirDestination};
    use crate::streams::{PutRecord, ShardStreamsOptions};

    fn config(dir: &std::path::Path) -> DeliveryConfig {
        let text = format!(
            r#"
[agent]
data_dir = "{}"
[[stream]]
name = "events"
[[delivery]]
name = "d"
source = "events"
buffer_size = "1MiB"
buffer_interval = "900s"
prefix = "cam=!{{partitionKeyFromQuery:camera}}/"
"#,
            dir.display()
        );
        let mut cfg = Config::parse(&text).unwrap().deliveries.remove(0);
        cfg.destination = DestinationConfig::Dir(DirDestination {
            path: dir.join("out"),
        });
        cfg
    }

    /// Shard streams in `dir` with a one-shard stream `events`.
    fn events_stream(
        dir: &std::path::Path,
        clock: &crate::clock::SharedClock,
    ) -> Arc<ShardStreams> {
        let streams = ShardStreams::open(
            &dir.join("streams"),
            ShardStreamsOptions::default(),
            clock.clone(),
        )
        .unwrap();
        streams.ensure_stream("events", 1, 24).unwrap();
        streams
    }

    fn put(streams: &ShardStreams, camera: &str, filler: usize) -> String {
        let data = format!(r#"{{"camera":"{camera}","x":"{}"}}"#, "y".repeat(filler));
        streams
            .put(
                "events",
                PutRecord {
                    partition_key: "k".into(),
                    explicit_hash_key: None,
                    data: data.into_bytes(),
                },
            )
            .unwrap()
            .sequence_number
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A record held by one partition's open buffer keeps the shard's checkpoint before it,
    /// even after later records of another partition were written; the shutdown flush writes
    /// it and moves the checkpoint to the end.
    #[test]
    fn checkpoint_stops_before_records_still_buffered() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = crate::clock::system_clock();
        let streams = events_stream(tmp.path(), &clock);
        let held = put(&streams, "b", 10);
        let mut last = String::new();
        for _ in 0..12 {
            // 12 x 100 kB: camera a's buffer flushes at 1 MiB (11 records), one stays buffered.
            last = put(&streams, "a", 100_000);
        }
        let cfg = config(tmp.path());
        let status = Arc::new(PipeStatus::new("d", "delivery", "events", "out", 86400));
        let cx = DeliveryContext {
            data_dir: tmp.path().to_path_buf(),
            streams: streams.clone(),
            clock,
        };
        let handle = start(&cfg, cx, status.clone()).unwrap();
        wait_until("camera a's object", || {
            status.objects.load(std::sync::atomic::Ordering::Relaxed) == 1
        });
        let name = consumer_name("d");
        let checkpoint = || {
            streams
                .consumer("events", &name)
                .unwrap()
                .checkpoint("shardId-000000000000")
        };
        // Nothing before `held` was read, so nothing may be checkpointed yet.
        assert_eq!(checkpoint(), None, "checkpoint passed a buffered record");
        assert_eq!(status.health(), Health::Healthy);
        handle.join();
        assert_eq!(checkpoint().as_deref(), Some(last.as_str()));
        let files: Vec<_> = walk(&tmp.path().join("out"));
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(files.iter().filter(|f| f.contains("cam=a/d-1-")).count(), 2);
        assert!(files.iter().any(|f| f.contains("cam=b/d-1-")), "{files:?}");
        let b = files.iter().find(|f| f.contains("cam=b/")).unwrap();
        assert!(b.contains(
            &crate::delivery::BatchOrigin {
                delivery: "d",
                shard: "shardId-000000000000",
                first_sequence: &held,
                partition: r#"["b"]"#,
            }
            .batch_id()
        ));
    }

    /// Parquet batches of heartbeats give no rows and no object, but their records are
    /// delivered: the status counts them (else `records` never reaches what was put).
    #[test]
    fn records_of_batches_without_rows_count_as_delivered() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = crate::clock::system_clock();
        let streams = events_stream(tmp.path(), &clock);
        for i in 0..5 {
            let hb = crate::records::DetectionRecord::new(
                crate::records::RecordKind::Heartbeat,
                "dev",
                "idle",
                "m",
                i,
                i as u64,
            );
            streams
                .put(
                    "events",
                    PutRecord {
                        partition_key: "k".into(),
                        explicit_hash_key: None,
                        data: hb.to_json(),
                    },
                )
                .unwrap();
        }
        let mut cfg = config(tmp.path());
        cfg.format = DeliveryFormat::Parquet;
        cfg.buffer_interval.0 = Duration::from_secs(1);
        let status = Arc::new(PipeStatus::new("d", "delivery", "events", "out", 86400));
        let cx = DeliveryContext {
            data_dir: tmp.path().to_path_buf(),
            streams: streams.clone(),
            clock,
        };
        let handle = start(&cfg, cx, status.clone()).unwrap();
        wait_until("5 heartbeats delivered", || {
            status.records.load(std::sync::atomic::Ordering::Relaxed) == 5
        });
        handle.join();
        assert_eq!(status.objects.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert!(!tmp.path().join("out").exists() || walk(&tmp.path().join("out")).is_empty());
    }

    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
        out
    }
}
