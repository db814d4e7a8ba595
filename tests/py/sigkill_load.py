#!/usr/bin/env python3
"""Sustained PutRecords load across a SIGKILL of the server, then a full read-back check.

    produce --endpoint E --stream S --log F --stop-file X [--threads 4 --batch 100 --keys 4]
        Each thread owns its partition keys (p<thread>-<k>) and numbers its records (n = 0, 1, ...),
        so per key the submit order is the number order. Batches go out one after another per thread
        through boto3 with retries OFF (a retried PutRecords whose first attempt was persisted would
        legitimately duplicate). After each answer the thread appends to the log, one line each:
            ACK  <id> <key> <shard> <seq>   record acknowledged with a sequence number
            FAIL <id> <key> <code>          per-record ErrorCode: must not be stored
            LOST <id> <key>                 the request failed (connection reset, timeout):
                                            fate unknown, may or may not be stored
        Lines are written only after the answer arrived (write after ack). Stops when the stop file
        exists.

    verify --endpoint E --stream S --log F
        Puts a few records after the restart, then reads every shard from TRIM_HORIZON and checks:
        every ACK is present exactly once with its shard and sequence number; no FAIL is present;
        no record appears twice; per partition key the numbers strictly increase (submit order);
        sequence numbers strictly increase per shard and the post-restart ones come after all
        pre-crash ones (no sequence number reused after recovery).
"""

import argparse
import collections
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kinlib import client, read_shard, wait_active  # noqa: E402


def produce(a):
    lock = threading.Lock()
    log = open(a.log, "a", buffering=1)
    stats = collections.Counter()
    if a.api_stream:
        # a stream made through the API (not the config file) must survive the kill too
        c = client(a.endpoint)
        c.create_stream(StreamName=a.api_stream, ShardCount=3)
        wait_active(c, a.api_stream)
        for i in range(6):
            r = c.put_record(StreamName=a.api_stream, PartitionKey="api-%d" % i,
                             Data=json.dumps({"id": "api-%d" % i, "key": "api-%d" % i, "n": i}).encode())
            log.write("APIACK api-%d api-%d %s %s\n" % (i, i, r["ShardId"], r["SequenceNumber"]))
        log.flush()

    def emit(lines):
        with lock:
            log.write("".join(lines))
            log.flush()

    def worker(t):
        c = client(a.endpoint, timeout=10, pool=2)
        n = 0
        pad = "x" * a.pad
        while not os.path.exists(a.stop_file):
            batch = []
            for _ in range(a.batch):
                rid = "%d-%d" % (t, n)
                key = "p%d-%d" % (t, n % a.keys)
                batch.append((rid, key, json.dumps({"id": rid, "key": key, "n": n, "pad": pad}).encode()))
                n += 1
            try:
                r = c.put_records(StreamName=a.stream, Records=[{"Data": d, "PartitionKey": k} for _, k, d in batch])
            except Exception as e:  # noqa: BLE001 - any failure leaves the batch's fate unknown
                emit(["LOST %s %s\n" % (rid, key) for rid, key, _ in batch])
                stats["lost_requests"] += 1
                sys.stderr.write("producer %d: %s\n" % (t, type(e).__name__))
                time.sleep(0.05)
                continue
            lines = []
            for (rid, key, _), res in zip(batch, r["Records"]):
                if "SequenceNumber" in res:
                    lines.append("ACK %s %s %s %s\n" % (rid, key, res["ShardId"], res["SequenceNumber"]))
                else:
                    lines.append("FAIL %s %s %s\n" % (rid, key, res.get("ErrorCode")))
            emit(lines)
            stats["acked_requests"] += 1

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(a.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    log.close()
    print("producer: %d acknowledged requests, %d lost requests" % (stats["acked_requests"], stats["lost_requests"]))


def verify(a):
    acked, failed, lost, api = {}, set(), set(), {}
    with open(a.log) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "ACK":
                assert parts[1] not in acked, "producer logged %s twice" % parts[1]
                acked[parts[1]] = (parts[2], parts[3], parts[4])
            elif parts[0] == "FAIL":
                failed.add(parts[1])
            elif parts[0] == "APIACK":
                api[parts[1]] = (parts[3], parts[4])
            elif parts[0] == "LOST":
                lost.add(parts[1])
            else:
                raise AssertionError("bad log line %r" % line)
    print("verify: log has %d acknowledged, %d failed, %d lost (unknown fate)" % (len(acked), len(failed), len(lost)))
    assert acked, "no record was acknowledged before the kill"

    c = client(a.endpoint)
    shards = [s["ShardId"] for s in c.list_shards(StreamName=a.stream)["Shards"]]
    errors = []
    if a.api_stream:
        got = {}
        for s in c.list_shards(StreamName=a.api_stream)["Shards"]:
            for r in read_shard(c, a.api_stream, s["ShardId"])[0]:
                got[json.loads(r["Data"])["id"]] = (s["ShardId"], r["SequenceNumber"])
        if got != api:
            errors.append("stream %s made through the API: before the kill %r, after %r" % (a.api_stream, api, got))
        else:
            print("verify: stream %s made through the API survived with its %d records" % (a.api_stream, len(api)))

    # after recovery new records must get fresh, larger sequence numbers
    post = c.put_records(StreamName=a.stream, Records=[
        {"Data": json.dumps({"id": "post-%d" % i, "key": "post", "n": i}).encode(), "PartitionKey": "post-%d" % i}
        for i in range(20)])
    assert post["FailedRecordCount"] == 0, post
    post_seqs = {(x["ShardId"], x["SequenceNumber"]) for x in post["Records"]}

    seen = {}
    post_found = 0
    per_key = collections.defaultdict(list)
    total = 0
    for shard in shards:
        recs, pages, _ = read_shard(c, a.stream, shard, limit=10000)
        total += len(recs)
        prev = -1
        pre_max, post_min = -1, None
        for r in recs:
            seq = int(r["SequenceNumber"])
            if seq <= prev:
                errors.append("%s: sequence numbers not increasing: %d after %d" % (shard, seq, prev))
            prev = seq
            body = json.loads(r["Data"])
            rid = body["id"]
            if (shard, r["SequenceNumber"]) in post_seqs:
                post_min = seq if post_min is None else min(post_min, seq)
                post_found += 1
                continue
            if rid.startswith("post-"):
                errors.append("%s: post-restart record %s read back with another sequence number" % (shard, rid))
                continue
            pre_max = max(pre_max, seq)
            if r["PartitionKey"] != body["key"]:
                errors.append("%s: record %s has partition key %r, payload says %r" % (shard, rid, r["PartitionKey"], body["key"]))
            if rid in seen:
                errors.append("record %s appears twice: %s and %s/%s" % (rid, seen[rid], shard, r["SequenceNumber"]))
                continue
            seen[rid] = (shard, r["SequenceNumber"])
            per_key[body["key"]].append(body["n"])
        if post_min is not None and post_min <= pre_max:
            errors.append("%s: a record put after the restart got sequence number %d, not above the "
                          "pre-crash maximum %d" % (shard, post_min, pre_max))
        print("verify: %s: %d records in %d pages" % (shard, len(recs), pages))

    if post_found != len(post_seqs):
        errors.append("only %d of the %d records put after the restart read back" % (post_found, len(post_seqs)))
    missing = [rid for rid in acked if rid not in seen]
    for rid in missing[:20]:
        errors.append("acknowledged record %s (%s %s) is missing after the restart" % (rid, acked[rid][1], acked[rid][2]))
    if len(missing) > 20:
        errors.append("... %d acknowledged records missing in all" % len(missing))
    moved = [rid for rid in acked if rid in seen and seen[rid] != (acked[rid][1], acked[rid][2])]
    for rid in moved[:20]:
        errors.append("record %s was acknowledged as %s %s but reads back as %s %s"
                      % (rid, acked[rid][1], acked[rid][2], *seen[rid]))
    for rid in sorted(failed & set(seen))[:20]:
        errors.append("record %s was reported failed but is stored" % rid)
    unknown = [rid for rid in seen if rid not in acked and rid not in lost]
    for rid in unknown[:20]:
        errors.append("record %s is stored but the producer never sent it?" % rid)
    for key, ns in per_key.items():
        if any(b <= x for x, b in zip(ns, ns[1:])):
            errors.append("partition key %s out of order: %s" % (key, ns[:50]))
    stored_lost = sum(1 for rid in lost if rid in seen)
    print("verify: %d records read; all %d acknowledged present: %s; %d of %d unknown-fate records stored"
          % (total, len(acked), not missing, stored_lost, len(lost)))
    if errors:
        print("verify: FAILED\n  " + "\n  ".join(errors))
        sys.exit(1)
    print("verify: ok (%d keys in order, no duplicates)" % len(per_key))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["produce", "verify"])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--stop-file", default="")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--keys", type=int, default=4)
    ap.add_argument("--pad", type=int, default=200)
    ap.add_argument("--api-stream", default="", help="also create this stream via CreateStream and check it")
    a = ap.parse_args()
    if a.mode == "produce":
        assert a.stop_file, "--stop-file is required"
        produce(a)
    else:
        verify(a)


if __name__ == "__main__":
    main()
