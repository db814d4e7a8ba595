use super::*;

fn is_invalid<T: std::fmt::Debug>(r: Result<T, StreamError>) -> bool {
    matches!(r, Err(StreamError::InvalidArgument(_)))
}

#[test]
fn validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &ManualClock::new(T0));
    assert!(is_invalid(store.create_stream("bad name", 1, 24)));
    assert!(is_invalid(store.create_stream("..", 1, 24)));
    assert!(is_invalid(store.create_stream(&"x".repeat(129), 1, 24)));
    assert!(is_invalid(store.create_stream("s", 0, 24)));
    assert!(is_invalid(store.create_stream("s", 65, 24)));
    assert!(is_invalid(store.create_stream("s", 1, 23)));
    assert!(is_invalid(store.create_stream("s", 1, 8761)));
    assert!(store.list_streams().is_empty());

    store.create_stream("s", 2, 24).unwrap();
    assert!(matches!(
        store.create_stream("s", 2, 24),
        Err(StreamError::InUse(_))
    ));
    assert!(is_invalid(store.set_retention("s", 9000)));

    let e = store.put("missing", rec("k", "x")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Stream missing under account 000000000000 not found."
    );
    let e = store
        .read("s", "shardId-000000000002", ReadPosition(0), 1, 1)
        .unwrap_err();
    assert!(
        matches!(e, StreamError::NotFound(ref m) if m.contains("shardId-000000000002")),
        "{e}"
    );
    assert!(matches!(
        store.describe("missing"),
        Err(StreamError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_stream("missing"),
        Err(StreamError::NotFound(_))
    ));

    // Record-level problems fail only their record.
    let too_big = rec("k", vec![0u8; MAX_RECORD_BYTES]);
    let results = store
        .put_many(
            "s",
            vec![
                rec("a", "ok"),
                too_big.clone(),
                rec("", "x"),
                rec(&"é".repeat(257), "x"),
                rec(&"é".repeat(256), "ok"),
            ],
        )
        .unwrap();
    assert!(results[0].is_ok() && results[4].is_ok());
    for r in &results[1..4] {
        assert!(matches!(r, Err(StreamError::InvalidArgument(_))), "{r:?}");
    }
    assert!(results[1]
        .as_ref()
        .unwrap_err()
        .to_string()
        .starts_with("Record size exceeds"));
    assert!(is_invalid(store.put("s", too_big)));
    let exactly = rec("k", vec![0u8; MAX_RECORD_BYTES - 1]);
    store.put("s", exactly).unwrap();
}

#[test]
fn ensure_stream_creates_once_and_keeps_existing_shards() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(1 << 20), &clock);
    assert!(store.ensure_stream("detections", 2, 24).unwrap());
    assert!(!store.ensure_stream("detections", 2, 24).unwrap());
    assert!(!store.ensure_stream("detections", 4, 72).unwrap());
    let info = store.describe("detections").unwrap();
    assert_eq!(info.shards.len(), 2);
    assert_eq!(info.retention_hours, 72);
    assert_eq!(info.status, "ACTIVE");
    assert_eq!(info.created_ns, T0);
    assert_eq!(info.shards[1].starting_hash_key, 1u128 << 127);
    assert_eq!(
        info.shards[0].starting_sequence_number,
        sequence_number(0, 0)
    );
    store.create_stream("b", 1, 24).unwrap();
    store.create_stream("a", 1, 24).unwrap();
    assert_eq!(store.list_streams(), ["a", "b", "detections"]);
    drop(store);
    let store = open_with(dir.path(), opts(1 << 20), &clock);
    assert_eq!(
        store.describe("detections").unwrap(),
        info,
        "metadata survives reopen"
    );
    assert!(is_invalid(store.ensure_stream("x", 0, 24)));
}

#[test]
fn store_and_consumer_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    fn sendable<T: Send>() {}
    shared::<ShardStreams>();
    shared::<Arc<ShardStreams>>();
    sendable::<Consumer>();
}
