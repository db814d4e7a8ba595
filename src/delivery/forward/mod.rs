//! Forwarders (`[[forward]]`): records of one shard stream to a remote Kinesis stream
//! (`kinesis`) or an MQTT broker (`mqtt`) as they arrive. Semantics: docs/delivery.md#forwarders.
//!
//! Both kinds share the pieces here: a reader thread that polls the named consumer and wakes
//! on new records (`Reader`), the checkpoint rule "commit a shard only up to the last record
//! before the oldest one not yet acknowledged" (`Tracker`), and the status the daemon shows.

mod kinesis;
mod mqtt;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::status::Health;
use crate::config::ForwardConfig;
use crate::lifecycle::Shutdown;
use crate::streams::{Consumer, StoredRecord, StreamError};

pub use kinesis::{plan_batch, MAX_BATCH_BYTES, MAX_BATCH_RECORDS};

/// Errors that stop a forwarder (remote failures never do: they are retried, see the status).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("forwarder {name}: local stream: {source}")]
    Stream {
        name: String,
        #[source]
        source: StreamError,
    },
    #[error("forwarder {name}: {url} is not a usable MQTT URL: {reason}")]
    MqttUrl {
        name: String,
        url: String,
        reason: &'static str,
    },
    #[error("forwarder {name}: TLS setup: {source}")]
    Tls {
        name: String,
        #[source]
        source: rustls::Error,
    },
    #[error("forwarder {name}: the stream reader stopped unexpectedly")]
    ReaderGone { name: String },
}

/// Shared between a running forwarder and whoever reports on it.
#[derive(Debug)]
pub struct ForwardStatus {
    name: String,
    /// Where records go (`kinesis:<stream>@<endpoint or region>`, `mqtt://host:port`), no secrets.
    target: Mutex<String>,
    inner: Mutex<StatusInner>,
    forwarded: AtomicU64,
    in_flight: AtomicU64,
    retried_entries: AtomicU64,
    reordered: AtomicU64,
}

#[derive(Debug)]
struct StatusInner {
    state: Health,
    since: SystemTime,
    last_error: Option<String>,
    last_success: Option<SystemTime>,
    /// States seen, oldest first (bounded): lets tests and `deliveries` show what happened.
    history: VecDeque<Health>,
}

/// A copy of the status at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForwardSnapshot {
    pub name: String,
    pub target: String,
    pub state: Health,
    pub since: SystemTime,
    pub records_forwarded: u64,
    /// Records read from the source and not yet acknowledged by the remote.
    pub in_flight: u64,
    /// Kinesis: entries sent again after a per-entry failure.
    pub entries_retried: u64,
    /// Kinesis: records acknowledged before an earlier record of their partition key
    /// (see docs/delivery.md#forwarders); 0 with the real service's suffix-wise throttling.
    pub reordered: u64,
    /// Error text of the last failure (never contains credentials).
    pub last_error: Option<String>,
    pub last_success: Option<SystemTime>,
    /// Distinct states in order, the last 16 (consecutive repeats collapsed).
    pub history: Vec<Health>,
}

const HISTORY: usize = 16;

impl ForwardStatus {
    pub fn new(name: impl Into<String>) -> Arc<ForwardStatus> {
        Arc::new(ForwardStatus {
            name: name.into(),
            target: Mutex::new(String::new()),
            inner: Mutex::new(StatusInner {
                state: Health::Starting,
                since: SystemTime::now(),
                last_error: None,
                last_success: None,
                history: VecDeque::from([Health::Starting]),
            }),
            forwarded: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            retried_entries: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
        })
    }

    pub fn snapshot(&self) -> ForwardSnapshot {
        let i = self.inner.lock();
        ForwardSnapshot {
            name: self.name.clone(),
            target: self.target.lock().clone(),
            state: i.state,
            since: i.since,
            records_forwarded: self.forwarded.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            entries_retried: self.retried_entries.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
            last_error: i.last_error.clone(),
            last_success: i.last_success,
            history: i.history.iter().copied().collect(),
        }
    }

    fn set_target(&self, target: String) {
        *self.target.lock() = target;
    }

    /// A successful call: healthy (logged when it was not).
    fn success(&self) {
        let mut i = self.inner.lock();
        i.last_success = Some(SystemTime::now());
        if i.state != Health::Healthy {
            tracing::info!(forwarder = %self.name, target = %self.target.lock(), "forwarding: healthy");
            Self::enter(&mut i, Health::Healthy);
        }
    }

    /// A failed call: logged once per change of state (not per attempt).
    fn failure(&self, state: Health, error: String) {
        let mut i = self.inner.lock();
        if i.state != state {
            tracing::warn!(forwarder = %self.name, target = %self.target.lock(), error = %error, "forwarding: {state}");
            Self::enter(&mut i, state);
        }
        i.last_error = Some(error);
    }

    /// A failure that leaves the state as it is (per-entry failures of a successful call).
    fn note_error(&self, error: String) {
        self.inner.lock().last_error = Some(error);
    }

    fn enter(i: &mut StatusInner, state: Health) {
        i.state = state;
        i.since = SystemTime::now();
        if i.history.len() == HISTORY {
            i.history.pop_front();
        }
        i.history.push_back(state);
    }

    fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n as u64, Ordering::Relaxed);
    }

    fn add_forwarded(&self, n: u64) {
        self.forwarded.fetch_add(n, Ordering::Relaxed);
    }
}

/// Runs one forwarder until `shutdown` (returns Ok) or a local failure (the shard stream).
/// Remote failures never end it: they are retried and shown in `status`.
pub async fn run(
    cfg: ForwardConfig,
    device: String,
    consumer: Consumer,
    status: Arc<ForwardStatus>,
    shutdown: Shutdown,
) -> Result<(), ForwardError> {
    let name = cfg.name().to_string();
    let reader = Reader::start(&name, consumer, shutdown.clone())?;
    let result = match cfg {
        ForwardConfig::Kinesis(k) => kinesis::run(k, reader, status, shutdown).await,
        ForwardConfig::Mqtt(m) => mqtt::run(m, device, reader, status, shutdown).await,
    };
    if let Err(e) = &result {
        tracing::error!(forwarder = %name, error = %e, "forwarder stopped");
    }
    result
}

/// A record read from the local stream, numbered in read order.
#[derive(Debug, Clone)]
struct Item {
    id: u64,
    shard: String,
    record: StoredRecord,
}

/// How many records the reader may be ahead of the acknowledgements.
const READ_AHEAD: usize = 1000;

/// Polls the consumer on its own thread (the shard stream is blocking I/O) and hands records
/// over a bounded channel; commits go through `commit`.
struct Reader {
    name: String,
    rx: mpsc::Receiver<Result<Item, StreamError>>,
    consumer: Arc<Mutex<Consumer>>,
    stream: String,
    tracker: Tracker,
}

impl Reader {
    fn start(name: &str, consumer: Consumer, shutdown: Shutdown) -> Result<Reader, ForwardError> {
        let stream = consumer.stream().to_string();
        let consumer = Arc::new(Mutex::new(consumer));
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let c = Arc::clone(&consumer);
        std::thread::Builder::new()
            .name(format!("fwd-{name}"))
            .spawn(move || {
                let mut id = 0u64;
                // Ends with shutdown or when the forwarder is gone (dropped or aborted).
                while !shutdown.is_triggered() && !tx.is_closed() {
                    let batch = c.lock().poll(100);
                    match batch {
                        Ok(recs) if recs.is_empty() => {
                            // Wake on a new record in any shard, waiting on a snapshot of the
                            // consumer's positions (the task commits through the same lock);
                            // the bounded wait notices shutdown.
                            let waiter = c.lock().waiter();
                            if let Err(e) = waiter.wait(Duration::from_millis(250)) {
                                let _ = tx.blocking_send(Err(e));
                                return;
                            }
                        }
                        Ok(recs) => {
                            for (shard, record) in recs {
                                id += 1;
                                if tx.blocking_send(Ok(Item { id, shard, record })).is_err() {
                                    return; // the forwarder is gone
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
            })
            .expect("spawning a thread");
        Ok(Reader {
            name: name.to_string(),
            rx,
            consumer,
            stream,
            tracker: Tracker::default(),
        })
    }

    fn stream_error(&self, source: StreamError) -> ForwardError {
        ForwardError::Stream {
            name: self.name.clone(),
            source,
        }
    }

    /// The next record, waiting for one; None once shutdown is triggered.
    async fn next(&mut self, shutdown: &Shutdown) -> Result<Option<Item>, ForwardError> {
        tokio::select! {
            biased;
            _ = shutdown.triggered() => Ok(None),
            item = self.rx.recv() => self.accept(item).map(Some),
        }
    }

    /// A record if one is ready now.
    fn try_next(&mut self) -> Result<Option<Item>, ForwardError> {
        match self.rx.try_recv() {
            Ok(item) => self.accept(Some(item)).map(Some),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => self.accept(None).map(Some),
        }
    }

    fn accept(&mut self, item: Option<Result<Item, StreamError>>) -> Result<Item, ForwardError> {
        match item {
            Some(Ok(item)) => {
                self.tracker.add(&item);
                Ok(item)
            }
            Some(Err(e)) => Err(self.stream_error(e)),
            None => Err(ForwardError::ReaderGone {
                name: self.name.clone(),
            }),
        }
    }

    /// Marks a record acknowledged by the remote.
    fn ack(&mut self, item_id: u64) {
        self.tracker.ack(item_id);
    }

    /// Durably checkpoints every shard up to its last record before the oldest unacknowledged
    /// one (blocking file I/O with fsync: called once per request / per tick, not per record).
    fn commit(&mut self) -> Result<(), ForwardError> {
        for (shard, seq) in self.tracker.committable() {
            let r = self.consumer.lock().commit(&shard, &seq);
            r.map_err(|e| self.stream_error(e))?;
        }
        Ok(())
    }

    fn stream(&self) -> &str {
        &self.stream
    }
}

/// Records read but not yet committed, per shard in read order.
#[derive(Debug, Default)]
struct Tracker {
    shards: BTreeMap<String, VecDeque<(u64, String, bool)>>,
}

impl Tracker {
    fn add(&mut self, item: &Item) {
        self.shards
            .entry(item.shard.clone())
            .or_default()
            .push_back((item.id, item.record.sequence_number.clone(), false));
    }

    fn ack(&mut self, id: u64) {
        for q in self.shards.values_mut() {
            // ids grow in read order, so each shard's queue is sorted.
            if let Ok(i) = q.binary_search_by_key(&id, |e| e.0) {
                q[i].2 = true;
                return;
            }
        }
    }

    /// Per shard, the newest sequence number whose record and all before it are acknowledged
    /// (and forgets those records).
    fn committable(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (shard, q) in &mut self.shards {
            let mut last = None;
            while q.front().is_some_and(|e| e.2) {
                last = q.pop_front().map(|e| e.1);
            }
            if let Some(seq) = last {
                out.push((shard.clone(), seq));
            }
        }
        out
    }
}

/// Sleeps `d` unless shutdown comes first (true: shutdown).
async fn sleep_or_shutdown(d: Duration, shutdown: &Shutdown) -> bool {
    tokio::select! {
        _ = shutdown.triggered() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u64, shard: &str, seq: &str) -> Item {
        Item {
            id,
            shard: shard.into(),
            record: StoredRecord {
                sequence_number: seq.into(),
                arrival_ns: 0,
                partition_key: "k".into(),
                data: vec![],
            },
        }
    }

    #[test]
    fn tracker_commits_only_up_to_the_oldest_unacknowledged_record() {
        let mut t = Tracker::default();
        for (id, shard, seq) in [
            (1, "a", "a1"),
            (2, "b", "b1"),
            (3, "a", "a2"),
            (4, "a", "a3"),
        ] {
            t.add(&item(id, shard, seq));
        }
        t.ack(1);
        t.ack(4);
        assert_eq!(t.committable(), vec![("a".to_string(), "a1".to_string())]);
        // a2 still open: a3 must wait even though it is acknowledged.
        assert_eq!(t.committable(), vec![]);
        t.ack(3);
        t.ack(2);
        assert_eq!(
            t.committable(),
            vec![
                ("a".to_string(), "a3".to_string()),
                ("b".to_string(), "b1".to_string())
            ]
        );
    }

    #[test]
    fn status_logs_state_changes_and_keeps_history() {
        let s = ForwardStatus::new("f");
        s.failure(Health::Retrying, "refused".into());
        s.failure(Health::Retrying, "refused again".into());
        s.success();
        let snap = s.snapshot();
        assert_eq!(snap.state, Health::Healthy);
        assert_eq!(
            snap.history,
            vec![Health::Starting, Health::Retrying, Health::Healthy]
        );
        assert_eq!(snap.last_error.as_deref(), Some("refused again"));
        assert!(snap.last_success.is_some());
    }
}
