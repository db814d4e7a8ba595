use super::*;

#[test]
fn reference_keys_route_like_kinesis() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &ManualClock::new(T0));
    store.create_stream("s", 2, 24).unwrap();
    for (key, shard) in [
        ("cam-1", "shardId-000000000000"),
        ("cam-3", "shardId-000000000000"),
        ("cam-2", "shardId-000000000001"),
    ] {
        assert_eq!(
            store.put("s", rec(key, "x")).unwrap().shard_id,
            shard,
            "{key}"
        );
    }
    assert!(hash_key("cam-1") < 1u128 << 127 && hash_key("cam-2") >= 1u128 << 127);
    // MD5("") = d41d8cd98f00b204e9800998ecf8427e
    assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
}

#[test]
fn explicit_hash_key_overrides_partition_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &ManualClock::new(T0));
    store.create_stream("s", 3, 24).unwrap();
    let ranges = shard_ranges(3);
    for (i, &(start, end)) in ranges.iter().enumerate() {
        for h in [start, end, start + (end - start) / 2] {
            let mut r = rec("cam-1", "x");
            r.explicit_hash_key = Some(h);
            assert_eq!(
                store.put("s", r).unwrap().shard_id,
                shard_id(i as u32),
                "hash {h}"
            );
        }
    }
}

#[test]
fn shard_ranges_cover_the_space_exactly() {
    for n in [1u32, 2, 3, 5, 64] {
        let r = shard_ranges(n);
        assert_eq!(r.len(), n as usize);
        assert_eq!(r[0].0, 0);
        assert_eq!(r[n as usize - 1].1, u128::MAX);
        for w in r.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0, "contiguous for {n}");
        }
        let sizes: Vec<u128> = r.iter().map(|&(a, b)| b - a).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= n as u128,
            "even for {n}"
        );
    }
    assert_eq!(shard_ranges(1), vec![(0, u128::MAX)]);
    assert_eq!(
        shard_ranges(2),
        vec![(0, (1u128 << 127) - 1), (1u128 << 127, u128::MAX)]
    );
    // What CreateStream with ShardCount=3 reports.
    let three = shard_ranges(3);
    assert_eq!(three[0].1, 113427455640312821154458202477256070484);
    assert_eq!(three[1].0, 113427455640312821154458202477256070485);
    assert_eq!(three[1].1, 226854911280625642308916404954512140969);
    assert_eq!(three[2].0, 226854911280625642308916404954512140970);
}

#[test]
fn sequence_numbers_are_fixed_width_and_ordered() {
    let a = sequence_number(0, 0);
    let b = sequence_number(0, 9);
    let c = sequence_number(0, 10);
    let d = sequence_number(3, u64::MAX);
    assert_eq!(a, "1000000000000000000000000");
    for s in [&a, &b, &c, &d] {
        assert_eq!(s.len(), 25);
        assert!(!s.starts_with('0'));
    }
    assert!(b < c && b.parse::<u128>().unwrap() < c.parse::<u128>().unwrap());
    assert_eq!(parse_sequence_number(&d), Some((3, u64::MAX)));
    for bad in [
        "",
        "0",
        "12",
        "2000000000000000000000000",
        "10000000000000000000000000",
        "1000x00000000000000000000",
    ] {
        assert_eq!(parse_sequence_number(bad), None, "{bad}");
    }
    assert_eq!(shard_id(7), "shardId-000000000007");
    assert_eq!(parse_shard_id("shardId-000000000007"), Some(7));
    assert_eq!(parse_shard_id("shardId-7"), None);
}
