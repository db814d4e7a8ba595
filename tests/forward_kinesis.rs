//! `kind = "kinesis"` forwarder against kinesalite (the remote stream), through the forwarder's
//! `run` entry point with a real shard stream in a tempdir: per-key order, a remote that goes
//! away and comes back with its data, and per-entry throttling through a proxy.

#[path = "support/forward.rs"]
mod fwd;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use fwd::*;
use vidgest::clock::system_clock;
use vidgest::config::{ForwardConfig, KinesisForward, Secret};
use vidgest::delivery::Health;
use vidgest::streams::{PutRecord, ShardStreams, ShardStreamsOptions};

const REMOTE: &str = "remote";
const KEYS: [&str; 5] = ["cam-a", "cam-b", "cam-c", "cam-d", "cam-e"];

fn config(port: u16) -> ForwardConfig {
    ForwardConfig::Kinesis(KinesisForward {
        name: "cloud".into(),
        source: "src".into(),
        stream: REMOTE.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        access_key_id: Some(Secret::new("AKIDTEST")),
        secret_access_key: Some(Secret::new("very-secret-key")),
        session_token: None,
        profile: None,
    })
}

async fn client(port: u16) -> aws_sdk_kinesis::Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "AKIDTEST", "x", None, None, "test",
        ))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

async fn create_remote(c: &aws_sdk_kinesis::Client) {
    c.create_stream()
        .stream_name(REMOTE)
        .shard_count(2)
        .send()
        .await
        .expect("CreateStream on kinesalite");
    for _ in 0..200 {
        let d = c
            .describe_stream_summary()
            .stream_name(REMOTE)
            .send()
            .await
            .unwrap();
        if d.stream_description_summary()
            .map(|s| s.stream_status().as_str())
            == Some("ACTIVE")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("remote stream never became ACTIVE");
}

/// Every record in the remote stream, per shard in order, as data strings.
async fn remote_records(c: &aws_sdk_kinesis::Client) -> Vec<String> {
    let shards = c.list_shards().stream_name(REMOTE).send().await.unwrap();
    let mut out = Vec::new();
    for s in shards.shards() {
        let mut it = c
            .get_shard_iterator()
            .stream_name(REMOTE)
            .shard_id(s.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_string);
        while let Some(i) = it {
            let r = c.get_records().shard_iterator(i).send().await.unwrap();
            if r.records().is_empty() {
                break;
            }
            for rec in r.records() {
                out.push(String::from_utf8(rec.data().as_ref().to_vec()).unwrap());
            }
            it = r.next_shard_iterator().map(str::to_string);
        }
    }
    out
}

/// Data `<key>/<n>` with n counting per key from 0; asserts every record arrived and the first
/// arrival of each key's records is in order (duplicates from a lost response are allowed).
fn check_order(remote: &[String], per_key: usize, allow_dupes: bool) {
    let mut next: HashMap<&str, usize> = HashMap::new();
    let mut dupes = 0;
    for d in remote {
        let (k, n) = d.split_once('/').expect("key/n");
        let n: usize = n.parse().unwrap();
        let want = next.entry(k).or_default();
        if n < *want {
            dupes += 1;
            continue;
        }
        assert_eq!(n, *want, "key {k}: record {n} arrived before {want}");
        *want += 1;
    }
    for k in KEYS {
        assert_eq!(next.get(k), Some(&per_key), "records of {k}");
    }
    if !allow_dupes {
        assert_eq!(dupes, 0, "duplicates in the remote stream");
    }
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

struct Local {
    _dir: tempfile::TempDir,
    streams: Arc<ShardStreams>,
}

fn local() -> Local {
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
    Local { _dir: dir, streams }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_in_key_order_and_survives_a_remote_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = tmp.path().join("kinesalite");
    let mut kinesalite = start_kinesalite(port, &data);
    let c = client(port).await;
    create_remote(&c).await;
    let local = local();

    let (status, shutdown, task) = spawn_forwarder(config(port), "cloud", &local.streams);
    put_round(&local.streams, 0, 60);
    wait_status(&status, "the first 300 records forwarded", |s| {
        s.records_forwarded == 300
    })
    .await;
    assert_eq!(status.snapshot().state, Health::Healthy);

    // The remote goes away while records keep coming.
    kinesalite.kill();
    wait_closed(port, "kinesalite gone");
    put_round(&local.streams, 60, 120);
    let s = wait_status(&status, "retrying", |s| s.state == Health::Retrying).await;
    let err = s.last_error.clone().unwrap();
    assert!(err.contains(REMOTE), "error names the stream: {err}");
    assert!(!err.contains("very-secret-key"), "no secret in {err}");

    // Back on the same port with its data.
    let _kinesalite = start_kinesalite(port, &data);
    put_round(&local.streams, 120, 150);
    let s = wait_status(&status, "all 750 forwarded", |s| s.records_forwarded == 750).await;
    assert_eq!(s.state, Health::Healthy);
    let h = &s.history;
    let retry = h.iter().position(|x| *x == Health::Retrying).unwrap();
    assert!(h[retry..].contains(&Health::Healthy), "{h:?}");

    shutdown.trigger();
    task.await.unwrap().unwrap();
    check_order(&remote_records(&c).await, 150, true);

    // Checkpointed up to the last record of each shard: a new forwarder sends nothing again.
    let consumer = local.streams.consumer("src", "forward-cloud").unwrap();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let tip = local
            .streams
            .read(
                "src",
                shard,
                vidgest::streams::ReadPosition(0),
                10_000,
                1 << 30,
            )
            .unwrap()
            .records
            .last()
            .map(|r| r.sequence_number.clone());
        assert_eq!(consumer.checkpoint(shard), tip, "checkpoint of {shard}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_entries_alone_are_retried_in_key_order() {
    let tmp = tempfile::tempdir().unwrap();
    let kport = free_port();
    let _kinesalite = start_kinesalite(kport, &tmp.path().join("kinesalite"));
    let c = client(kport).await;
    create_remote(&c).await;
    // The first four requests of 2+ entries lose their second half (suffix-wise, as the
    // service throttles a shard's entries).
    let proxy = ThrottlingProxy::start(
        kport,
        Box::new(|n, keys| {
            let len = keys.len();
            (0..len).map(|i| n < 4 && i >= len / 2).collect()
        }),
    )
    .await;
    let local = local();
    put_round(&local.streams, 0, 40);
    let (status, shutdown, task) = spawn_forwarder(config(proxy.port), "cloud", &local.streams);
    let s = wait_status(&status, "200 forwarded", |s| s.records_forwarded == 200).await;
    shutdown.trigger();
    task.await.unwrap().unwrap();

    let failed = proxy.entries_failed.load(Ordering::SeqCst);
    assert!(failed > 0, "the proxy throttled something");
    assert_eq!(
        proxy.entries_seen.load(Ordering::SeqCst),
        200 + failed,
        "only the failed entries were sent again"
    );
    assert_eq!(s.entries_retried as usize, failed);
    assert_eq!(s.reordered, 0);
    assert!(s
        .last_error
        .unwrap()
        .contains("ProvisionedThroughputExceededException"));
    check_order(&remote_records(&c).await, 40, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_entry_after_a_failed_one_of_its_key_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let kport = free_port();
    let _kinesalite = start_kinesalite(kport, &tmp.path().join("kinesalite"));
    let c = client(kport).await;
    create_remote(&c).await;
    // Fails one entry whose key comes again later in the same request, once: those later
    // entries are written first (a remote that does not fail suffix-wise).
    let done = std::sync::atomic::AtomicBool::new(false);
    let proxy = ThrottlingProxy::start(
        kport,
        Box::new(move |_, keys| {
            let victim = (0..keys.len()).find(|&i| keys[i + 1..].contains(&keys[i]));
            let victim = victim.filter(|_| !done.swap(true, Ordering::SeqCst));
            (0..keys.len()).map(|i| Some(i) == victim).collect()
        }),
    )
    .await;
    let local = local();
    put_round(&local.streams, 0, 10);
    let (status, shutdown, task) = spawn_forwarder(config(proxy.port), "cloud", &local.streams);
    let s = wait_status(&status, "50 forwarded", |s| s.records_forwarded == 50).await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
    assert_eq!(s.entries_retried, 1);
    assert!(s.reordered >= 1, "{s:?}");
    assert_eq!(proxy.entries_failed.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_remote_stream_is_failing_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let _kinesalite = start_kinesalite(port, &tmp.path().join("kinesalite"));
    let local = local();
    put_round(&local.streams, 0, 1);
    let (status, shutdown, task) = spawn_forwarder(config(port), "cloud", &local.streams);
    let s = wait_status(&status, "failing", |s| s.state == Health::Failing).await;
    let err = s.last_error.unwrap();
    assert!(
        err.contains("remote stream `remote` does not exist") && err.contains("create-stream"),
        "{err}"
    );
    // Nothing was acknowledged: nothing checkpointed.
    let consumer = local.streams.consumer("src", "forward-cloud").unwrap();
    assert_eq!(consumer.checkpoint("shardId-000000000000"), None);
    assert_eq!(consumer.checkpoint("shardId-000000000001"), None);
    // Created: the slow retry (10 s and up) gets the records through and it is healthy again.
    create_remote(&client(port).await).await;
    let s = wait_status(&status, "forwarded after the fix", |s| {
        s.records_forwarded == 5
    })
    .await;
    assert_eq!(s.state, Health::Healthy);
    shutdown.trigger();
    task.await.unwrap().unwrap();
}
