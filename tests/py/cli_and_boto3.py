#!/usr/bin/env python3
"""Stock aws-cli v1 and boto3 against a Kinesis-compatible endpoint (vidgest; kinesalite as a check
of the script itself). Driven by tests/kinesis_api.rs; exits non-zero on the first failed check.

    vendor/venv/bin/python tests/py/cli_and_boto3.py --endpoint http://127.0.0.1:PORT \
        [--configured-stream detections] [--only cli,boto3,errors,sizes | --only expired --iterator-ttl-ms N]

Expected error codes and HTTP status are those of the real service as kinesalite reproduces them
(probed with kinesalite 3.3.3; see tests/py/diff_script.py for the side-by-side comparison).
"""

import argparse
import base64
import datetime
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kinlib import Check, aws, client, raw_post, read_shard, shard_for_key, wait_active  # noqa: E402

SHARD0, SHARD1 = "shardId-000000000000", "shardId-000000000001"
HALF = 2**127
# --kinesalite: the target is kinesalite (checking this script); skip checks of real-service
# behaviour that kinesalite does not have.
KINESALITE = False
TWO_SHARD_RANGES = [("0", str(HALF - 1)), (str(HALF), str(2**128 - 1))]


def check_two_shards(ck, what, shards):
    ck(what + " has 2 shards", [s["ShardId"] for s in shards] == [SHARD0, SHARD1], repr(shards))
    ranges = [(s["HashKeyRange"]["StartingHashKey"], s["HashKeyRange"]["EndingHashKey"]) for s in shards]
    ck(what + " hash ranges split 0..2^128-1 evenly", ranges == TWO_SHARD_RANGES, repr(ranges))
    for s in shards:
        start = s["SequenceNumberRange"]["StartingSequenceNumber"]
        ck(what + " %s StartingSequenceNumber is decimal" % s["ShardId"], start.isdigit(), start)


def part_cli(ep, ck):
    """aws-cli v1: every operation the server serves, as a shell user would type it."""
    name = "cli-stream"
    aws(ep, "create-stream", "--stream-name", name, "--shard-count", "2")
    deadline = time.time() + 30
    while True:
        s = aws(ep, "describe-stream-summary", "--stream-name", name)["StreamDescriptionSummary"]
        if s["StreamStatus"] == "ACTIVE":
            break
        assert time.time() < deadline, "cli-stream not ACTIVE: %r" % s
        time.sleep(0.1)
    ck("cli describe-stream-summary", s["StreamName"] == name and s["OpenShardCount"] == 2
       and s["RetentionPeriodHours"] == 24, repr(s))
    d = aws(ep, "describe-stream", "--stream-name", name)["StreamDescription"]
    ck("cli describe-stream status", d["StreamStatus"] == "ACTIVE" and d["StreamName"] == name, repr(d))
    check_two_shards(ck, "cli describe-stream", d["Shards"])
    ck("cli list-streams", name in aws(ep, "list-streams")["StreamNames"])
    check_two_shards(ck, "cli list-shards", aws(ep, "list-shards", "--stream-name", name)["Shards"])

    # put-record: aws-cli v1 base64-encodes --data itself
    t_before = time.time() - 1
    puts = []
    for i, key in enumerate(["cam-1", "cam-2", "cam-3", "cam-1", "cam-2", "cam-3"]):
        r = aws(ep, "put-record", "--stream-name", name, "--partition-key", key, "--data", "cli-%d" % i)
        puts.append((key, "cli-%d" % i, r["ShardId"], r["SequenceNumber"]))
    ck("cli put-record routing cam-1,cam-3 -> shard 0, cam-2 -> shard 1",
       all(sh == (SHARD1 if k == "cam-2" else SHARD0) for k, _, sh, _ in puts), repr(puts))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([{"Data": "batch-%d" % i, "PartitionKey": "cam-%d" % (i % 3 + 1)} for i in range(6)], f)
    try:
        r = aws(ep, "put-records", "--stream-name", name, "--records", "file://" + f.name)
    finally:
        os.unlink(f.name)
    ck("cli put-records", r["FailedRecordCount"] == 0 and len(r["Records"]) == 6, repr(r))
    for i, rec in enumerate(r["Records"]):
        key = "cam-%d" % (i % 3 + 1)
        puts.append((key, "batch-%d" % i, rec["ShardId"], rec["SequenceNumber"]))
    ck("cli put-records routing", all(sh == (SHARD1 if k == "cam-2" else SHARD0) for k, _, sh, _ in puts))

    def cli_read(shard, *it_args, limit=2):
        it = aws(ep, "get-shard-iterator", "--stream-name", name, "--shard-id", shard, *it_args)["ShardIterator"]
        got, pages, behind = [], 0, None
        while True:
            g = aws(ep, "get-records", "--shard-iterator", it, "--limit", str(limit))
            pages += 1
            got.extend(g["Records"])
            it, behind = g["NextShardIterator"], g["MillisBehindLatest"]
            if not g["Records"] and behind == 0:
                return got, pages
            assert pages < 100, "get-records never caught up"

    for shard in (SHARD0, SHARD1):
        want = [(k, d, seq) for k, d, sh, seq in puts if sh == shard]
        got, pages = cli_read(shard, "--shard-iterator-type", "TRIM_HORIZON")
        got_t = [(x["PartitionKey"], base64.b64decode(x["Data"]).decode(), x["SequenceNumber"]) for x in got]
        ck("cli get-records TRIM_HORIZON %s (limit 2, %d pages) returns all in order" % (shard, pages),
           got_t == want, "\n got  %r\n want %r" % (got_t, want))
        ck("cli get-records paged with --limit 2", pages >= (len(want) + 1) // 2 + 1, str(pages))
        seqs = [int(x[2]) for x in want]
        ck("cli sequence numbers increase within %s" % shard, seqs == sorted(seqs) and len(set(seqs)) == len(seqs))
        ts = [x["ApproximateArrivalTimestamp"] for x in got]
        ck("cli ApproximateArrivalTimestamp epoch seconds", all(isinstance(t, (int, float)) and t > 1e9 for t in ts), repr(ts))

        mid = want[1][2]
        got, _ = cli_read(shard, "--shard-iterator-type", "AT_SEQUENCE_NUMBER", "--starting-sequence-number", mid)
        ck("cli AT_SEQUENCE_NUMBER %s" % shard, [x["SequenceNumber"] for x in got] == [w[2] for w in want[1:]])
        got, _ = cli_read(shard, "--shard-iterator-type", "AFTER_SEQUENCE_NUMBER", "--starting-sequence-number", mid)
        ck("cli AFTER_SEQUENCE_NUMBER %s" % shard, [x["SequenceNumber"] for x in got] == [w[2] for w in want[2:]])
        got, _ = cli_read(shard, "--shard-iterator-type", "AT_TIMESTAMP", "--timestamp", "%.3f" % t_before)
        ck("cli AT_TIMESTAMP (before first put) %s" % shard, [x["SequenceNumber"] for x in got] == [w[2] for w in want])
        got, _ = cli_read(shard, "--shard-iterator-type", "LATEST")
        ck("cli LATEST %s is empty" % shard, got == [])

    aws(ep, "increase-stream-retention-period", "--stream-name", name, "--retention-period-hours", "48")
    s = aws(ep, "describe-stream-summary", "--stream-name", name)["StreamDescriptionSummary"]
    ck("cli increase-stream-retention-period 48", s["RetentionPeriodHours"] == 48, repr(s))
    aws(ep, "decrease-stream-retention-period", "--stream-name", name, "--retention-period-hours", "24")
    s = aws(ep, "describe-stream-summary", "--stream-name", name)["StreamDescriptionSummary"]
    ck("cli decrease-stream-retention-period 24", s["RetentionPeriodHours"] == 24, repr(s))

    p = aws(ep, "describe-stream", "--stream-name", "no-such-stream", check=False)
    ck("cli unknown stream exits non-zero with ResourceNotFoundException",
       p.returncode != 0 and "ResourceNotFoundException" in p.stderr, p.stderr)

    aws(ep, "delete-stream", "--stream-name", name)
    deadline = time.time() + 30
    while name in aws(ep, "list-streams")["StreamNames"] and time.time() < deadline:
        time.sleep(0.1)
    listed = aws(ep, "list-streams")["StreamNames"]
    ck("cli delete-stream: no longer listed", name not in listed, repr(listed))
    p = aws(ep, "describe-stream-summary", "--stream-name", name, check=False)
    ck("cli delete-stream: describe-stream-summary -> ResourceNotFoundException",
       p.returncode != 0 and "ResourceNotFoundException" in p.stderr, p.stderr)


def part_boto3(ep, ck, configured):
    c = client(ep)
    # the stream from the config file exists from the start
    if configured:
        s = wait_active(c, configured)
        ck("configured stream %s ACTIVE with 2 shards" % configured, s["OpenShardCount"] == 2, repr(s))
        r = c.put_records(StreamName=configured, Records=[
            {"Data": b"route", "PartitionKey": k} for k in ("cam-1", "cam-2", "cam-3")])
        ck("configured stream routing", [x["ShardId"] for x in r["Records"]] == [SHARD0, SHARD1, SHARD0], repr(r))

    name = "boto-stream"
    c.create_stream(StreamName=name, ShardCount=2)
    s = wait_active(c, name)
    ck("boto3 create_stream -> ACTIVE", s["OpenShardCount"] == 2 and s["RetentionPeriodHours"] == 24, repr(s))
    ck("boto3 StreamARN", s["StreamARN"].startswith("arn:aws:kinesis:") and s["StreamARN"].endswith(":stream/" + name),
       s["StreamARN"])
    ck("boto3 StreamCreationTimestamp", isinstance(s["StreamCreationTimestamp"], datetime.datetime))
    ck.error("boto3 create_stream twice -> ResourceInUseException",
             lambda: c.create_stream(StreamName=name, ShardCount=2),
             "ResourceInUseException")
    full = c.describe_stream(StreamName=name)
    d = full["StreamDescription"]
    check_two_shards(ck, "boto3 describe_stream", d["Shards"])
    ck("boto3 describe_stream HasMoreShards false", d.get("HasMoreShards") is False, repr(d.get("HasMoreShards")))
    # the real service (and kinesalite) answer every request with an x-amzn-RequestId header
    ck("responses carry x-amzn-RequestId", bool(full["ResponseMetadata"].get("RequestId")),
       repr(full["ResponseMetadata"].get("HTTPHeaders")))
    from botocore.exceptions import ClientError
    try:
        r = c.describe_stream(StreamName="no-such-stream")
        ck("error responses carry x-amzn-RequestId", False, "describe_stream of an unknown stream succeeded: %r" % r)
    except ClientError as e:
        ck("error responses carry x-amzn-RequestId", bool(e.response["ResponseMetadata"].get("RequestId")),
           repr(e.response["ResponseMetadata"].get("HTTPHeaders")))
    ck("boto3 list_streams", name in c.list_streams()["StreamNames"])
    ls = c.list_shards(StreamName=name)
    check_two_shards(ck, "boto3 list_shards", ls["Shards"])
    # real service: MaxResults pages with NextToken (kinesalite ignores MaxResults)
    if not KINESALITE:
        p1 = c.list_shards(StreamName=name, MaxResults=1)
        ck("boto3 list_shards MaxResults=1", [x["ShardId"] for x in p1["Shards"]] == [SHARD0] and "NextToken" in p1,
           repr(p1))
        p2 = c.list_shards(NextToken=p1["NextToken"]) if "NextToken" in p1 else {"Shards": []}
        ck("boto3 list_shards NextToken", [x["ShardId"] for x in p2["Shards"]] == [SHARD1], repr(p2))

    # routing: MD5(partition key) as 128-bit big-endian
    t_before = time.time() - 1
    sent = []  # (key, data, shard, seq)
    for i in range(40):
        key = "cam-%d" % (i % 7)
        data = ("boto-%d" % i).encode() + bytes(range(256))[: i]  # binary payloads too
        r = c.put_record(StreamName=name, PartitionKey=key, Data=data)
        sent.append((key, data, r["ShardId"], r["SequenceNumber"]))
    ck("boto3 put_record routing = MD5 ranges", all(sh == shard_for_key(k, d["Shards"]) for k, _, sh, _ in sent))
    ck("boto3 put_record routing cam-1,cam-3 -> 0, cam-2 -> 1",
       {k: sh for k, _, sh, _ in sent if k in ("cam-1", "cam-2", "cam-3")} ==
       {"cam-1": SHARD0, "cam-2": SHARD1, "cam-3": SHARD0})
    # ExplicitHashKey overrides the key
    r = c.put_record(StreamName=name, PartitionKey="cam-1", Data=b"explicit", ExplicitHashKey=str(2**127))
    ck("boto3 ExplicitHashKey 2^127 -> shard 1", r["ShardId"] == SHARD1, repr(r))
    sent.append(("cam-1", b"explicit", r["ShardId"], r["SequenceNumber"]))
    # SequenceNumberForOrdering
    r = c.put_record(StreamName=name, PartitionKey="cam-1", Data=b"ordered", SequenceNumberForOrdering=sent[-1][3])
    sent.append(("cam-1", b"ordered", r["ShardId"], r["SequenceNumber"]))
    ck("boto3 put_record SequenceNumberForOrdering", r["ShardId"] == SHARD0)

    recs = [{"Data": ("batch-%d" % i).encode() * (i + 1), "PartitionKey": "k%d" % i} for i in range(500)]
    r = c.put_records(StreamName=name, Records=recs)
    ck("boto3 put_records 500", r["FailedRecordCount"] == 0 and len(r["Records"]) == 500, repr(r)[:300])
    for q, a in zip(recs, r["Records"]):
        sent.append((q["PartitionKey"], q["Data"], a["ShardId"], a["SequenceNumber"]))
    ck("boto3 put_records routing in request order",
       all(a["ShardId"] == shard_for_key(q["PartitionKey"], d["Shards"]) for q, a in zip(recs, r["Records"])))

    for shard in (SHARD0, SHARD1):
        want = [(k, data, seq) for k, data, sh, seq in sent if sh == shard]
        seqs = [int(x[2]) for x in want]
        ck("boto3 %s sequence numbers strictly increase" % shard, all(a < b for a, b in zip(seqs, seqs[1:])))
        got, pages, _ = read_shard(c, name, shard, limit=37)
        ck("boto3 TRIM_HORIZON %s Limit=37 paging (%d pages) returns all %d in order" % (shard, pages, len(want)),
           [(x["PartitionKey"], x["Data"], x["SequenceNumber"]) for x in got] == want,
           "got %d records" % len(got))
        ck("boto3 paging used several pages", pages >= len(want) // 37)
        got, _, _ = read_shard(c, name, shard, limit=10000)
        ck("boto3 TRIM_HORIZON Limit=10000 one page", len(got) == len(want))
        it = c.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        ck("boto3 iterator <= 512 chars", 1 <= len(it) <= 512, str(len(it)))
        g = c.get_records(ShardIterator=it, Limit=5)
        ck("boto3 MillisBehindLatest is an integer >= 0", isinstance(g["MillisBehindLatest"], int)
           and g["MillisBehindLatest"] >= 0, repr(g.get("MillisBehindLatest")))
        ck("boto3 ApproximateArrivalTimestamp", all(isinstance(x["ApproximateArrivalTimestamp"], datetime.datetime)
                                                   for x in g["Records"]))
        k = len(want) // 2
        for typ, start, expect in (("AT_SEQUENCE_NUMBER", want[k][2], want[k:]),
                                   ("AFTER_SEQUENCE_NUMBER", want[k][2], want[k + 1:])):
            got, _, _ = read_shard(c, name, shard, typ, StartingSequenceNumber=start)
            ck("boto3 %s %s" % (typ, shard), [x["SequenceNumber"] for x in got] == [w[2] for w in expect])
        got, _, _ = read_shard(c, name, shard, "AT_TIMESTAMP", Timestamp=t_before)
        ck("boto3 AT_TIMESTAMP before all %s" % shard, len(got) == len(want))
        if not KINESALITE:  # kinesalite never answers an AT_TIMESTAMP later than every record
            got, _, _ = read_shard(c, name, shard, "AT_TIMESTAMP", Timestamp=time.time())
            ck("boto3 AT_TIMESTAMP now %s is empty" % shard, got == [])
        # LATEST then a new record: the iterator sees exactly the new one
        it = c.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
        g = c.get_records(ShardIterator=it)
        ck("boto3 LATEST %s empty, caught up" % shard, g["Records"] == [] and g["MillisBehindLatest"] == 0, repr(g))
        key = "cam-2" if shard == SHARD1 else "cam-1"
        r = c.put_record(StreamName=name, PartitionKey=key, Data=b"after-latest")
        g = c.get_records(ShardIterator=g["NextShardIterator"])
        ck("boto3 LATEST %s then put: sees the new record" % shard,
           [(x["Data"], x["SequenceNumber"]) for x in g["Records"]] == [(b"after-latest", r["SequenceNumber"])], repr(g))
        sent.append((key, b"after-latest", shard, r["SequenceNumber"]))

    # an iterator stays usable (several reads of the same iterator give the same page)
    it = c.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    a = c.get_records(ShardIterator=it, Limit=3)["Records"]
    b = c.get_records(ShardIterator=it, Limit=3)["Records"]
    ck("boto3 same iterator twice -> same records", [x["SequenceNumber"] for x in a] == [x["SequenceNumber"] for x in b])

    c.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=72)
    ck("boto3 increase retention 72", c.describe_stream_summary(StreamName=name)
       ["StreamDescriptionSummary"]["RetentionPeriodHours"] == 72)
    c.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=24)
    ck("boto3 decrease retention 24", c.describe_stream(StreamName=name)
       ["StreamDescription"]["RetentionPeriodHours"] == 24)
    ck.error("boto3 increase retention below current -> InvalidArgumentException",
             lambda: c.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=12),
             "InvalidArgumentException")
    ck.error("boto3 decrease retention above current -> InvalidArgumentException",
             lambda: c.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=48),
             "InvalidArgumentException")
    ck.error("boto3 decrease retention below 24 h -> InvalidArgumentException",
             lambda: c.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=23),
             "InvalidArgumentException")
    return name, sent


def part_errors(ep, ck, name):
    c = client(ep)
    raw = client(ep, validate=False)
    first_seq = c.put_record(StreamName=name, PartitionKey="cam-1", Data=b"x")["SequenceNumber"]
    target = "Kinesis_20131202."

    st, h, body = raw_post(ep, target + "PutRecord", '{"StreamName": "%s", "PartitionKey": ' % name)
    ck("malformed JSON body -> 400 SerializationException", st == 400 and isinstance(body, dict)
       and body.get("__type", "").endswith("SerializationException"), repr((st, body)))
    st, h, body = raw_post(ep, target + "Nope", "{}")
    ck("unknown operation -> 400 UnknownOperationException", st == 400 and isinstance(body, dict)
       and body.get("__type", "").endswith("UnknownOperationException"), repr((st, body)))
    st, h, body = raw_post(ep, None, "{}")
    ck("missing X-Amz-Target -> 400 UnknownOperationException", st == 400 and isinstance(body, dict)
       and body.get("__type", "").endswith("UnknownOperationException"), repr((st, body)))
    st, h, body = raw_post(ep, target + "PutRecord", json.dumps({"StreamName": name, "PartitionKey": "a", "Data": "!!!!"}))
    ck("bad base64 Data -> 400 SerializationException", st == 400 and isinstance(body, dict)
       and body.get("__type", "").endswith("SerializationException"), repr((st, body)))
    st, h, body = raw_post(ep, target + "PutRecord", json.dumps({"StreamName": name, "PartitionKey": "a", "Data": "abc"}))
    ck("base64 of bad length -> 400 SerializationException", st == 400 and isinstance(body, dict)
       and body.get("__type", "").endswith("SerializationException"), repr((st, body)))
    st, h, body = raw_post(ep, target + "PutRecord", json.dumps({"StreamName": 5, "PartitionKey": "a", "Data": "YQ=="}))
    ck("number where a string belongs -> 400 SerializationException", st == 400 and isinstance(body, dict)
       and body.get("__type", "").endswith("SerializationException"), repr((st, body)))

    E = ck.error
    for what, fn in (
        ("PutRecord", lambda: raw.put_record(PartitionKey="a", Data=b"x")),
        ("DescribeStream", lambda: raw.describe_stream()),
        ("GetShardIterator", lambda: raw.get_shard_iterator(ShardId=SHARD0, ShardIteratorType="LATEST")),
    ):
        E("missing StreamName in %s -> ValidationException" % what, fn, "ValidationException")
    E("missing PartitionKey -> ValidationException",
      lambda: raw.put_record(StreamName=name, Data=b"x"), "ValidationException")
    E("PartitionKey of 257 chars -> ValidationException",
      lambda: raw.put_record(StreamName=name, PartitionKey="k" * 257, Data=b"x"), "ValidationException")
    E("PutRecord Data of 1 MiB + 1 -> ValidationException",
      lambda: c.put_record(StreamName=name, PartitionKey="a", Data=b"x" * (1024 * 1024 + 1)), "ValidationException")
    E("PutRecords entry of 1 MiB + 1 -> ValidationException",
      lambda: c.put_records(StreamName=name, Records=[{"PartitionKey": "a", "Data": b"x" * (1024 * 1024 + 1)}]),
      "ValidationException")
    r = c.put_record(StreamName=name, PartitionKey="big", Data=b"y" * (1024 * 1024 - 3))
    ck("PutRecord of exactly 1 MiB (partition key + data) accepted", r["SequenceNumber"].isdigit())
    if not KINESALITE:  # kinesalite checks the Data length alone
        E("PutRecord of 1 MiB + 1 (partition key + data, Data <= 1 MiB) -> InvalidArgumentException",
          lambda: c.put_record(StreamName=name, PartitionKey="big", Data=b"y" * (1024 * 1024 - 2)),
          "InvalidArgumentException")
    if not KINESALITE:  # as for PutRecord: a whole-request client error, never a retryable InternalFailure
        E("PutRecords entry of 1 MiB + 1 (partition key + data, Data <= 1 MiB) -> InvalidArgumentException",
          lambda: c.put_records(StreamName=name, Records=[{"PartitionKey": "big", "Data": b"y" * (1024 * 1024 - 2)}]),
          "InvalidArgumentException")
    for limit in (-5, 0, 10001):
        E("DescribeStream Limit %d -> ValidationException" % limit,
          lambda: raw.describe_stream(StreamName=name, Limit=limit), "ValidationException")
    E("AT_TIMESTAMP an hour in the future -> InvalidArgumentException",
      lambda: c.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_TIMESTAMP",
                                   Timestamp=time.time() + 3600),
      "InvalidArgumentException",
      message_contains="The timestampInMillis parameter cannot be greater than the currentTimestampInMillis")
    for bad in ("NaN", "Infinity", "1764000000"):
        st, h, body = raw_post(ep, target + "GetShardIterator", json.dumps(
            {"StreamName": name, "ShardId": SHARD0, "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": bad}))
        ck("Timestamp %r (a string) -> 400 SerializationException" % bad, st == 400 and isinstance(body, dict)
           and body.get("__type", "").endswith("SerializationException"), repr((st, body)))
    E("PutRecords with 0 records -> ValidationException",
      lambda: raw.put_records(StreamName=name, Records=[]), "ValidationException")
    E("PutRecords with 501 records -> ValidationException",
      lambda: raw.put_records(StreamName=name, Records=[{"PartitionKey": "a", "Data": b"x"}] * 501),
      "ValidationException")
    E("GetRecords Limit 0 -> ValidationException",
      lambda: raw.get_records(ShardIterator="A" * 200, Limit=0), "ValidationException")
    E("GetRecords Limit 10001 -> ValidationException",
      lambda: raw.get_records(ShardIterator="A" * 200, Limit=10001), "ValidationException")
    E("unknown ShardIteratorType -> ValidationException",
      lambda: raw.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="SIDEWAYS"),
      "ValidationException")

    for what, fn in (
        ("DescribeStream", lambda: c.describe_stream(StreamName="no-such-stream")),
        ("DescribeStreamSummary", lambda: c.describe_stream_summary(StreamName="no-such-stream")),
        ("PutRecord", lambda: c.put_record(StreamName="no-such-stream", PartitionKey="a", Data=b"x")),
        ("PutRecords", lambda: c.put_records(StreamName="no-such-stream", Records=[{"PartitionKey": "a", "Data": b"x"}])),
        ("GetShardIterator", lambda: c.get_shard_iterator(StreamName="no-such-stream", ShardId=SHARD0,
                                                          ShardIteratorType="TRIM_HORIZON")),
        ("ListShards", lambda: c.list_shards(StreamName="no-such-stream")),
        ("DeleteStream", lambda: c.delete_stream(StreamName="no-such-stream")),
        ("IncreaseStreamRetentionPeriod", lambda: c.increase_stream_retention_period(
            StreamName="no-such-stream", RetentionPeriodHours=48)),
        ("DecreaseStreamRetentionPeriod", lambda: c.decrease_stream_retention_period(
            StreamName="no-such-stream", RetentionPeriodHours=24)),
    ):
        E("unknown stream in %s -> ResourceNotFoundException" % what, fn, "ResourceNotFoundException")
    E("unknown shard shardId-000000000007 -> ResourceNotFoundException",
      lambda: c.get_shard_iterator(StreamName=name, ShardId="shardId-000000000007", ShardIteratorType="TRIM_HORIZON"),
      "ResourceNotFoundException")
    E("AT_SEQUENCE_NUMBER without StartingSequenceNumber -> InvalidArgumentException",
      lambda: c.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_SEQUENCE_NUMBER"),
      "InvalidArgumentException")
    E("AT_TIMESTAMP without Timestamp -> InvalidArgumentException",
      lambda: c.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_TIMESTAMP"),
      "InvalidArgumentException")
    for typ in ("TRIM_HORIZON", "LATEST"):
        E("%s with a StartingSequenceNumber -> InvalidArgumentException" % typ,
          lambda: c.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType=typ,
                                       StartingSequenceNumber=first_seq),
          "InvalidArgumentException")
    for bad in ("garbage", "A" * 200, "AAAAAAAAAAE" + "=" * 5):
        E("malformed shard iterator %r -> InvalidArgumentException" % bad[:12],
          lambda: c.get_records(ShardIterator=bad), "InvalidArgumentException")
    it = c.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    tampered = it[:-6] + ("AAAA" if it[-6:-2] != "AAAA" else "BBBB") + it[-2:]
    E("tampered shard iterator -> InvalidArgumentException",
      lambda: c.get_records(ShardIterator=tampered), "InvalidArgumentException")

    # after all of that the daemon still serves
    ck("still serving after the errors", name in c.list_streams()["StreamNames"])
    r = c.put_record(StreamName=name, PartitionKey="cam-1", Data=b"still alive")
    ck("put after errors", r["ShardId"] == SHARD0)


def part_sizes(ep, ck, name):
    """PutRecords between 2 and 5 MiB (the service's limit is 5 MiB of data + keys, ~7 MB of JSON),
    and the answers to requests over the limits: the service's JSON errors, never plain text."""
    c = client(ep, timeout=120)
    MiB = 1024 * 1024
    for total_mib, n in ((2, 2), (3, 4), (5, 5)):
        per = total_mib * MiB // n
        recs = [{"PartitionKey": "s%d" % i, "Data": bytes([i]) * (per - 2)} for i in range(n)]
        size = sum(len(r["PartitionKey"]) + len(r["Data"]) for r in recs)
        r = c.put_records(StreamName=name, Records=recs)
        ck("PutRecords of %d records, %d bytes (%d MiB) accepted" % (n, size, total_mib),
           r["FailedRecordCount"] == 0 and len(r["Records"]) == n, repr(r)[:300])
        if total_mib == 5:
            # read the 5 MiB batch back, byte for byte
            back = {}
            for a in r["Records"]:
                it = c.get_shard_iterator(StreamName=name, ShardId=a["ShardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
                                          StartingSequenceNumber=a["SequenceNumber"])["ShardIterator"]
                g = c.get_records(ShardIterator=it, Limit=1)["Records"]
                if g:
                    back[g[0]["PartitionKey"]] = g[0]["Data"]
            ck("the 5 MiB PutRecords reads back intact",
               all(back.get(q["PartitionKey"]) == q["Data"] for q in recs), repr(sorted(back)))
    # just over 5 MiB of data + keys (under the body limit): the service's InvalidArgumentException
    recs = [{"PartitionKey": "o%d" % i, "Data": b"o" * (MiB - 2)} for i in range(5)] + \
        [{"PartitionKey": "o5", "Data": b"o"}]
    ck.error("PutRecords of 5 MiB + 3 bytes -> InvalidArgumentException",
             lambda: c.put_records(StreamName=name, Records=recs), "InvalidArgumentException")
    # 6 MiB of data is 8 MiB of base64: over the body limit; boto3 still gets a JSON error (413)
    recs = [{"PartitionKey": "b%d" % i, "Data": b"b" * (MiB - 2)} for i in range(6)]
    ck.error("PutRecords body over the 8 MiB limit -> HTTP 413 InvalidArgumentException",
             lambda: c.put_records(StreamName=name, Records=recs), "InvalidArgumentException", status=413)
    big = json.dumps({"StreamName": name, "PartitionKey": "a", "Data": "QUFB" * (3 * MiB // 4)})  # 3 MiB
    st, h, body = raw_post(ep, "Kinesis_20131202.PutRecord", big)
    ck("PutRecord body over its limit -> 413 with a JSON InvalidArgumentException and x-amzn-ErrorType",
       st == 413 and isinstance(body, dict) and body.get("__type") == "InvalidArgumentException"
       and h.get("x-amzn-errortype") == "InvalidArgumentException", repr((st, h, body))[:300])
    st, h, body = raw_post(ep, "Kinesis_20131202.ListStreams", "{" + " " * (2 * MiB) + "}")
    ck("ListStreams body over 1 MiB -> 413 JSON error", st == 413 and isinstance(body, dict)
       and body.get("__type") == "InvalidArgumentException", repr((st, body))[:300])
    ck("still serving after the oversized requests", name in c.list_streams()["StreamNames"])


def part_expired(ep, ck, ttl_ms):
    """Needs a server started with a short iterator lifetime (vidgest: VIDGEST_ITERATOR_TTL_MS)."""
    assert ttl_ms > 0, "--only expired needs --iterator-ttl-ms"
    c = client(ep)
    name = "ttl-stream"
    c.create_stream(StreamName=name, ShardCount=1)
    wait_active(c, name)
    c.put_record(StreamName=name, PartitionKey="a", Data=b"one")
    it = c.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    g = c.get_records(ShardIterator=it)
    ck("fresh iterator reads", [x["Data"] for x in g["Records"]] == [b"one"])
    nxt = g["NextShardIterator"]
    time.sleep(ttl_ms / 1000.0 * 1.5 + 0.3)
    ck.error("iterator older than the TTL (%d ms) -> ExpiredIteratorException" % ttl_ms,
             lambda: c.get_records(ShardIterator=it),
             "ExpiredIteratorException")
    ck.error("NextShardIterator older than the TTL -> ExpiredIteratorException",
             lambda: c.get_records(ShardIterator=nxt),
             "ExpiredIteratorException")
    it = c.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    ck("a new iterator reads again", [x["Data"] for x in c.get_records(ShardIterator=it)["Records"]] == [b"one"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--configured-stream", default="")
    ap.add_argument("--iterator-ttl-ms", type=int, default=0)
    ap.add_argument("--only", default="cli,boto3,errors")
    ap.add_argument("--kinesalite", action="store_true", help="target is kinesalite: skip its known gaps")
    a = ap.parse_args()
    global KINESALITE
    KINESALITE = a.kinesalite
    parts = a.only.split(",")
    ck = Check("kinesis")
    t0 = time.time()
    name = "boto-stream"
    if "cli" in parts:
        part_cli(a.endpoint, ck)
    if "boto3" in parts:
        name, _ = part_boto3(a.endpoint, ck, a.configured_stream)
    if "errors" in parts:
        part_errors(a.endpoint, ck, name)
    if "sizes" in parts:
        part_sizes(a.endpoint, ck, name)
    if "expired" in parts:
        part_expired(a.endpoint, ck, a.iterator_ttl_ms)
    ck.finish(time.time() - t0)


if __name__ == "__main__":
    main()
