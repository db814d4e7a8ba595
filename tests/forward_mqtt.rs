//! `kind = "mqtt"` forwarder against Mosquitto (Debian package) through the forwarder's `run`
//! entry point with a real shard stream in a tempdir: topics and payloads, the retained
//! availability topic (online, Last Will offline, clean offline) and a broker restart.

#[path = "support/forward.rs"]
mod fwd;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use fwd::*;
use vidgest::clock::system_clock;
use vidgest::config::HumanDuration;
use vidgest::config::{ForwardConfig, MqttForward};
use vidgest::delivery::Health;
use vidgest::streams::{PutRecord, ShardStreams, ShardStreamsOptions};

const KEYS: [&str; 3] = ["cam-a", "cam-b", "cam+c"];

fn config(port: u16) -> ForwardConfig {
    ForwardConfig::Mqtt(MqttForward {
        name: "ha".into(),
        source: "src".into(),
        url: format!("mqtt://127.0.0.1:{port}"),
        topic_prefix: "vidgest".into(),
        client_id: None,
        username: None,
        password: None,
        keep_alive: HumanDuration(Duration::from_secs(5)),
    })
}

fn put_round(streams: &ShardStreams, from: usize, to: usize) {
    for n in from..to {
        let recs = KEYS
            .iter()
            .map(|k| PutRecord {
                partition_key: k.to_string(),
                explicit_hash_key: None,
                data: format!("{k}/{n}").into_bytes(),
            })
            .collect();
        streams.put_many("src", recs).unwrap();
    }
}

/// Data lines the subscriber printed ("topic payload"), without the availability topic.
fn received(out: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(t, _)| *t != "vidgest/availability")
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect()
}

fn broker_log_has(dir: &Path, needle: &str) -> bool {
    std::fs::read_to_string(dir.join("mosquitto.log"))
        .unwrap_or_default()
        .contains(needle)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_per_key_topics_with_availability_across_a_broker_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let bdir = tmp.path().join("broker");
    let mut broker = start_mosquitto(port, &bdir);
    let out = tmp.path().join("sub.txt");
    let mut sub = start_subscriber(port, "vidgest/#", "fwd-test-sub", &out);
    let bd = bdir.clone();
    blocking(move || {
        eventually(Duration::from_secs(30), "subscriber connected", || {
            broker_log_has(&bd, "as fwd-test-sub").then_some(())
        })
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let streams = ShardStreams::open(
        &dir.path().join("streams"),
        ShardStreamsOptions {
            fsync: false,
            ..Default::default()
        },
        system_clock(),
    )
    .unwrap();
    streams.create_stream("src", 2, 24).unwrap();
    put_round(&streams, 0, 50);
    let (status, shutdown, task) = spawn_forwarder(config(port), "ha", &streams);
    wait_status(&status, "150 forwarded", |s| s.records_forwarded == 150).await;
    assert_eq!(status.snapshot().state, Health::Healthy);
    assert_eq!(
        blocking(move || retained(port, "vidgest/availability")).await,
        Some("online".into())
    );

    // Broker restart with records in flight: frozen (SIGSTOP) so the next 150 records are
    // published but never acknowledged, then stopped (SIGTERM, handled on SIGCONT before it
    // reads them; it saves its persistence, so the subscriber's session and queue survive).
    // The forwarder must publish those 150 again after reconnecting.
    broker.signal(libc::SIGSTOP);
    put_round(&streams, 50, 100);
    wait_status(&status, "150 published, unacknowledged", |s| {
        s.in_flight == 150 && s.records_forwarded == 150
    })
    .await;
    broker.signal(libc::SIGTERM);
    broker.signal(libc::SIGCONT);
    broker.reap();
    blocking(move || wait_closed(port, "broker gone")).await;
    put_round(&streams, 100, 150);
    wait_status(&status, "retrying", |s| s.state == Health::Retrying).await;
    let b2 = bdir.clone();
    let _broker = blocking(move || start_mosquitto(port, &b2)).await;
    // mosquitto_sub may have given up while the broker was away: same session id again.
    if sub.0.try_wait().unwrap().is_some() {
        sub = start_subscriber(port, "vidgest/#", "fwd-test-sub", &out);
    }
    let s = wait_status(&status, "all 450 forwarded", |s| {
        s.records_forwarded == 450 && s.state == Health::Healthy
    })
    .await;
    let h = &s.history;
    let retry = h.iter().position(|x| *x == Health::Retrying).unwrap();
    assert!(h[retry..].contains(&Health::Healthy), "{h:?}");
    assert_eq!(
        blocking(move || retained(port, "vidgest/availability")).await,
        Some("online".into())
    );

    // Every record at least once, on its key's topic (wildcards in a key become `_`).
    let o = out.clone();
    let got = blocking(move || {
        eventually(
            Duration::from_secs(60),
            "subscriber got every record",
            || {
                let got = received(&o);
                let distinct: BTreeSet<&String> = got.iter().map(|(_, p)| p).collect();
                (distinct.len() == 450).then_some(got)
            },
        )
    })
    .await;
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (topic, payload) in &got {
        let (k, n) = payload.split_once('/').unwrap();
        assert_eq!(*topic, format!("vidgest/src/{}", k.replace('+', "_")));
        let n: i64 = n.parse().unwrap();
        last.insert(k, n);
    }
    assert_eq!(last.len(), KEYS.len());

    // A forwarder that dies without a DISCONNECT: the broker publishes the Last Will.
    task.abort();
    let _ = task.await;
    blocking(move || {
        eventually(Duration::from_secs(30), "Last Will offline", || {
            (retained(port, "vidgest/availability").as_deref() == Some("offline")).then_some(())
        })
    })
    .await;
    drop(shutdown);

    // Started again from its checkpoint: online, then a graceful stop says offline itself.
    let (status, shutdown, task) = spawn_forwarder(config(port), "ha", &streams);
    put_round(&streams, 150, 160);
    wait_status(&status, "healthy again", |s| s.state == Health::Healthy).await;
    blocking(move || {
        eventually(Duration::from_secs(30), "online again", || {
            (retained(port, "vidgest/availability").as_deref() == Some("online")).then_some(())
        })
    })
    .await;
    let o = out.clone();
    blocking(move || {
        eventually(Duration::from_secs(60), "the new records", || {
            let got = received(&o);
            let distinct: BTreeSet<&String> = got.iter().map(|(_, p)| p).collect();
            (distinct.len() == 480).then_some(())
        })
    })
    .await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
    assert_eq!(
        blocking(move || retained(port, "vidgest/availability")).await,
        Some("offline".into())
    );
    let bd = bdir.clone();
    assert!(
        broker_log_has(&bd, "Client vidgest-dev1-ha disconnected."),
        "graceful DISCONNECT in the broker log"
    );
    drop(sub);
}
