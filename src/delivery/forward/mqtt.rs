//! `kind = "mqtt"`: each record's data to `<topic_prefix>/<stream>/<partition key>` with QoS 1,
//! and a retained `<topic_prefix>/availability` (`online` after connecting, `offline` as the
//! Last Will and on a graceful stop: Home Assistant's convention).
//!
//! Each connection gets a fresh rumqttc client and event loop (clean session): after a
//! disconnect every record not yet acknowledged (PUBACK) is published again from our own list,
//! in order. Duplicates are possible, loss is not. Packet ids are mapped to records through the
//! order in which the event loop reports outgoing publishes (it sends requests in FIFO order).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use rumqttc::{
    AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};

use super::{sleep_or_shutdown, ForwardError, ForwardStatus, Health, Item, Reader};
use crate::capture::Backoff;
use crate::config::MqttForward;
use crate::lifecycle::Shutdown;

/// Records published and not yet acknowledged, at most (the reader waits beyond).
const MAX_OUTSTANDING: usize = 200;
/// Requests queued into one event loop at most: the outstanding records, online and offline.
const REQUEST_CAPACITY: usize = MAX_OUTSTANDING + 8;
/// A record is at most 1 MiB; topic and header on top.
const MAX_PACKET: usize = (1 << 20) + (64 << 10);
/// How long a graceful stop waits for `offline` to be acknowledged.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a publish request carries, to match its PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Online,
    Offline,
    Record(u64),
}

/// A topic level may not contain the wildcards `+` and `#` (nor NUL): those become `_`.
/// `/` in a partition key is kept and makes more levels.
fn topic_level(key: &str) -> String {
    key.replace(['+', '#', '\0'], "_")
}

fn options(cfg: &MqttForward, device: &str) -> Result<(MqttOptions, String), ForwardError> {
    let bad = |reason| ForwardError::MqttUrl {
        name: cfg.name.clone(),
        url: cfg.url.clone(),
        reason,
    };
    let url = url::Url::parse(&cfg.url).map_err(|_| bad("not a URL"))?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        _ => return Err(bad("the scheme must be mqtt or mqtts")),
    };
    let host = url.host_str().ok_or(bad("no host"))?.to_string();
    let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("vidgest-{device}-{}", cfg.name));
    let mut o = MqttOptions::new(client_id, host.clone(), port);
    o.set_keep_alive(cfg.keep_alive.0.max(Duration::from_secs(5)))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            availability_topic(cfg),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(user) = &cfg.username {
        let password = cfg.password.as_ref().map_or("", |p| p.expose());
        o.set_credentials(user.clone(), password.to_string());
    }
    if tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_config(&cfg.name)?),
        )));
    }
    let scheme = if tls { "mqtts" } else { "mqtt" };
    Ok((o, format!("{scheme}://{host}:{port}")))
}

/// rustls with ring (shared with the AWS client) and the system's root certificates.
fn tls_config(name: &str) -> Result<rustls::ClientConfig, ForwardError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::warn!(forwarder = name, errors = ?native.errors, "some system root certificates could not be read");
    }
    roots.add_parsable_certificates(native.certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| ForwardError::Tls {
            name: name.to_string(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn availability_topic(cfg: &MqttForward) -> String {
    format!("{}/availability", cfg.topic_prefix)
}

/// Maps packet ids to what they carry. The event loop reports `Outgoing::Publish(pkid)` in the
/// order requests were queued, except a publish whose id collided (`AwaitAck`), reported again
/// when it is finally sent.
#[derive(Debug, Default)]
struct PacketIds {
    queued: VecDeque<Tag>,
    awaiting: Option<(u16, Tag)>,
    sent: HashMap<u16, Tag>,
}

impl PacketIds {
    fn queued(&mut self, tag: Tag) {
        self.queued.push_back(tag);
    }
    fn outgoing(&mut self, pkid: u16) {
        let tag = match self.awaiting {
            Some((p, tag)) if p == pkid => {
                self.awaiting = None;
                Some(tag)
            }
            _ => self.queued.pop_front(),
        };
        if let Some(tag) = tag {
            self.sent.insert(pkid, tag);
        }
    }
    fn await_ack(&mut self, pkid: u16) {
        self.awaiting = self.queued.pop_front().map(|t| (pkid, t));
    }
    fn acked(&mut self, pkid: u16) -> Option<Tag> {
        self.sent.remove(&pkid)
    }
}

/// One connection: the event loop runs in its own task (its `poll` is not meant to be
/// cancelled by our `select!`), events come through a channel.
struct Connection {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    pump: tokio::task::JoinHandle<()>,
    ids: PacketIds,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Drops the event loop and its socket (without DISCONNECT: the broker sends the will).
        self.pump.abort();
    }
}

impl Connection {
    fn open(opts: MqttOptions) -> Connection {
        let (client, mut events) = AsyncClient::new(opts, REQUEST_CAPACITY);
        let (tx, rx) = mpsc::unbounded_channel();
        let pump = tokio::spawn(async move {
            loop {
                let ev = events.poll().await;
                let failed = ev.is_err();
                if tx.send(ev).is_err() || failed {
                    return;
                }
            }
        });
        Connection {
            client,
            events: rx,
            pump,
            ids: PacketIds::default(),
        }
    }

    async fn next_event(&mut self) -> Result<Event, ConnectionError> {
        match self.events.recv().await {
            Some(ev) => ev,
            None => Err(ConnectionError::RequestsDone),
        }
    }

    fn publish(&mut self, topic: String, payload: Vec<u8>, retain: bool, tag: Tag) {
        // Never full: a connection never has more than REQUEST_CAPACITY requests queued.
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_ok()
        {
            self.ids.queued(tag);
        }
    }
}

pub(super) async fn run(
    cfg: MqttForward,
    device: String,
    mut reader: Reader,
    status: Arc<ForwardStatus>,
    shutdown: Shutdown,
) -> Result<(), ForwardError> {
    let (opts, target) = options(&cfg, &device)?;
    status.set_target(target.clone());
    let avail = availability_topic(&cfg);
    let topic_base = format!("{}/{}", cfg.topic_prefix, topic_level(reader.stream()));
    let topic = |item: &Item| format!("{topic_base}/{}", topic_level(&item.record.partition_key));
    tracing::info!(forwarder = %cfg.name, source = %reader.stream(), target = %target, topic = %topic_base, "forwarding");
    // Read and not yet acknowledged, in read order: published again on every connection.
    let mut outstanding: VecDeque<Item> = VecDeque::new();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut dirty = false;
    'connection: loop {
        let mut conn = Connection::open(opts.clone());
        conn.publish(avail.clone(), b"online".to_vec(), true, Tag::Online);
        for item in &outstanding {
            conn.publish(
                topic(item),
                item.record.data.clone(),
                false,
                Tag::Record(item.id),
            );
        }
        let mut connected = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.triggered() => {
                    if connected {
                        stop(&mut conn, &avail, &mut reader, &mut outstanding, &status).await;
                    }
                    break 'connection;
                }
                ev = conn.next_event() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        backoff.reset();
                        status.success();
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => conn.ids.outgoing(pkid),
                    Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => conn.ids.await_ack(pkid),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(Tag::Record(id)) = conn.ids.acked(ack.pkid) {
                            acked(id, &mut reader, &mut outstanding, &status);
                            dirty = true;
                        }
                        status.success();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        status.failure(Health::Retrying, format!("{target}: {e}"));
                        break;
                    }
                },
                item = reader.next(&shutdown), if connected && outstanding.len() < MAX_OUTSTANDING => {
                    // None: shutdown, handled by the first branch.
                    if let Some(item) = item? {
                        conn.publish(topic(&item), item.record.data.clone(), false, Tag::Record(item.id));
                        outstanding.push_back(item);
                        status.set_in_flight(outstanding.len());
                    }
                }
                _ = tick.tick() => {
                    // Checkpoints in bulk: one fsync per tick, not per PUBACK.
                    if dirty {
                        reader.commit()?;
                        dirty = false;
                    }
                }
            }
        }
        reader.commit()?;
        drop(conn);
        if sleep_or_shutdown(backoff.next_delay(), &shutdown).await {
            break;
        }
    }
    reader.commit()?;
    Ok(())
}

fn acked(id: u64, reader: &mut Reader, outstanding: &mut VecDeque<Item>, status: &ForwardStatus) {
    if let Some(i) = outstanding.iter().position(|it| it.id == id) {
        outstanding.remove(i);
        reader.ack(id);
        status.add_forwarded(1);
        status.set_in_flight(outstanding.len());
    }
}

/// Graceful stop: retained `offline`, wait (bounded) for its PUBACK and the ones still due,
/// then DISCONNECT so the broker drops the Last Will.
async fn stop(
    conn: &mut Connection,
    avail: &str,
    reader: &mut Reader,
    outstanding: &mut VecDeque<Item>,
    status: &ForwardStatus,
) {
    conn.publish(avail.to_string(), b"offline".to_vec(), true, Tag::Offline);
    let wait_offline = async {
        loop {
            match conn.next_event().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => conn.ids.outgoing(pkid),
                Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => conn.ids.await_ack(pkid),
                Ok(Event::Incoming(Packet::PubAck(ack))) => match conn.ids.acked(ack.pkid) {
                    Some(Tag::Offline) => return true,
                    Some(Tag::Record(id)) => acked(id, reader, outstanding, status),
                    _ => {}
                },
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    };
    if tokio::time::timeout(STOP_TIMEOUT, wait_offline).await != Ok(true) {
        tracing::warn!("mqtt: `offline` not acknowledged before stopping; the Last Will covers it");
        return;
    }
    if conn.client.try_disconnect().is_ok() {
        let flush = async {
            loop {
                match conn.next_event().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(STOP_TIMEOUT, flush).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_follow_queue_order_and_collisions() {
        let mut ids = PacketIds::default();
        for t in [Tag::Online, Tag::Record(1), Tag::Record(2), Tag::Record(3)] {
            ids.queued(t);
        }
        ids.outgoing(1);
        ids.outgoing(2);
        // Record 2's id 3 collides with a publish still in flight: reported later.
        ids.await_ack(3);
        ids.outgoing(4); // not the awaited id: the next queued one (record 3)
        assert_eq!(ids.acked(1), Some(Tag::Online));
        assert_eq!(ids.acked(4), Some(Tag::Record(3)));
        ids.outgoing(3);
        assert_eq!(ids.acked(3), Some(Tag::Record(2)));
        assert_eq!(ids.acked(2), Some(Tag::Record(1)));
        assert_eq!(ids.acked(9), None);
    }

    #[test]
    fn wildcards_never_reach_a_topic() {
        assert_eq!(topic_level("cam+1/#x"), "cam_1/_x");
    }
}
