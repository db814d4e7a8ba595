use std::collections::HashMap;
use std::thread;

use super::*;

#[test]
fn concurrent_puts_are_all_readable_once_in_ack_order() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(8 * 1024), &clock);
    store.create_stream("s", 2, 24).unwrap();

    // A reader follows both shards while the writers run, waking on new records.
    let reader = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            let mut pos = [ReadPosition(0); 2];
            let mut seen = 0;
            while seen < THREADS * PER_THREAD {
                for (i, p) in pos.iter_mut().enumerate() {
                    let id = shard_id(i as u32);
                    if !store
                        .wait_for("s", &id, *p, Duration::from_millis(20))
                        .unwrap()
                    {
                        continue;
                    }
                    let b = store.read("s", &id, *p, 1000, 1 << 20).unwrap();
                    assert!(!b.records.is_empty(), "wait_for promised a record");
                    for (k, r) in b.records.iter().enumerate() {
                        assert_eq!(
                            offset_of(&r.sequence_number),
                            p.0 + k as u64,
                            "dense, in order"
                        );
                    }
                    seen += b.records.len();
                    *p = b.next;
                }
            }
            seen
        })
    };

    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let r = store
                            .put("s", rec(&format!("t{t}-{}", i % 5), format!("{t}:{i}")))
                            .unwrap();
                        (format!("{t}:{i}"), r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acks: Vec<Vec<(String, PutResult)>> =
        writers.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(reader.join().unwrap(), THREADS * PER_THREAD);

    let mut stored: HashMap<String, (String, String)> = HashMap::new();
    for i in 0..2 {
        let id = shard_id(i);
        for r in read_all(&store, "s", &id, 333) {
            let data = String::from_utf8(r.data).unwrap();
            assert!(
                stored
                    .insert(data, (id.clone(), r.sequence_number))
                    .is_none(),
                "read exactly once"
            );
        }
    }
    assert_eq!(stored.len(), THREADS * PER_THREAD);
    for thread_acks in &acks {
        let mut last_per_shard: HashMap<&str, &str> = HashMap::new();
        for (data, ack) in thread_acks {
            assert_eq!(
                stored[data],
                (ack.shard_id.clone(), ack.sequence_number.clone())
            );
            // A put acknowledged before the next one started is ordered before it.
            if let Some(prev) = last_per_shard.insert(&ack.shard_id, &ack.sequence_number) {
                assert!(prev < ack.sequence_number.as_str());
            }
        }
    }
    let stats = store.io_stats();
    assert_eq!(stats.records_appended, (THREADS * PER_THREAD) as u64);
    assert!(stats.fdatasyncs <= stats.records_appended + 64, "{stats:?}");
}

#[test]
fn wait_for_wakes_on_a_put_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &ManualClock::new(T0));
    store.create_stream("s", 1, 24).unwrap();
    let id = "shardId-000000000000";
    let latest = store.resolve("s", id, StartPosition::Latest).unwrap();
    assert!(
        !store
            .wait_for("s", id, latest, Duration::from_millis(30))
            .unwrap(),
        "times out when idle"
    );

    let waiter = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            let t = std::time::Instant::now();
            let woke = store
                .wait_for("s", id, latest, Duration::from_secs(30))
                .unwrap();
            (woke, t.elapsed())
        })
    };
    // Put only once the reader is parked on the condition variable: otherwise it could find the
    // record on its first look and the wake-up would go untested.
    let parked = std::time::Instant::now();
    while store.parked_waiters("s", id) == 0 {
        assert!(
            parked.elapsed() < Duration::from_secs(10),
            "the reader never parked"
        );
        thread::yield_now();
    }
    store.put("s", rec("k", "wake up")).unwrap();
    let (woke, waited) = waiter.join().unwrap();
    assert!(woke);
    // Woken by the put: without the notification it sleeps its full 30 s.
    assert!(waited < Duration::from_secs(10), "woken, not timed out");
    assert_eq!(store.parked_waiters("s", id), 0);
    let b = store.read("s", id, latest, 10, 1 << 20).unwrap();
    assert_eq!(b.records[0].data, b"wake up");
}

#[test]
fn put_many_spanning_shards_shares_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &ManualClock::new(T0));
    store.create_stream("s", 4, 24).unwrap();
    let before = store.io_stats().fdatasyncs;
    let res = store
        .put_many("s", (0..200).map(|i| rec(&format!("k{i}"), "x")).collect())
        .unwrap();
    assert!(res.iter().all(|r| r.is_ok()));
    let shards: std::collections::HashSet<_> = res
        .iter()
        .map(|r| r.as_ref().unwrap().shard_id.clone())
        .collect();
    assert_eq!(shards.len(), 4);
    assert_eq!(
        store.io_stats().fdatasyncs - before,
        4,
        "one fdatasync per shard for the whole batch"
    );
}
