#!/usr/bin/env python3
"""One script of Kinesis operations, run with boto3 against a reference (kinesalite) and a target
(vidgest); the normalized transcripts must be equal. Driven by tests/kinesis_diff.rs.

    vendor/venv/bin/python tests/py/diff_script.py --reference URL --target URL \
        [--preexisting detections:2] [--dump DIR]

Each step records the HTTP status and either the response body or the error code (`__type`).

Normalizations (everything else is compared exactly: ShardId routing, record order, PartitionKey,
Data bytes, error codes, HTTP status, field names, counts, retention hours, stream status):
  * ResponseMetadata reduced to whether the answer carried a request id (x-amzn-RequestId, which
    the real service always sends): ids, dates, connection headers, retry counters differ per run.
  * SequenceNumber of a record -> "<shard>#<rank>": rank among all record sequence numbers the run
    saw on that shard. Values are opaque and service specific (real ones are ~56 digits);
    only their order per shard means anything to a client. The value itself must be a decimal
    string (pattern 0|[1-9]\\d{0,128}), else it is kept raw and the diff shows it.
  * StartingSequenceNumber of a shard -> "start<=first" when it is decimal and not above the
    shard's first record, else kept raw: same reason, its value is opaque.
  * ShardIterator / NextShardIterator -> "<iterator>" when a string of 1..512 chars (opaque tokens,
    they differ per server and per call); a null NextShardIterator is kept (closed shard).
  * ApproximateArrivalTimestamp, StreamCreationTimestamp -> "<time>" when within the run's wall
    clock window (+-5 s), else kept raw: arrival times differ per run by nature.
  * MillisBehindLatest -> "<ms>" on pages that returned records; kept exactly (must be 0) on an
    empty page of an open shard (the consumer has caught up). kinesalite always answers 0; the real
    service reports the lag behind the tip, which is timing dependent while records are returned.
  * StreamARN: account id and region masked (kinesalite uses account 000000000000; vidgest
    chooses its own); the "arn:aws:kinesis:" prefix and ":stream/<name>" suffix are kept.
  * Error message texts (message / Message) dropped: kinesalite reproduces Java-era texts
    ("java.nio.HeapByteBuffer[...]") that no client parses; the code and HTTP status are kept.
  * StreamModeDetails (DescribeStreamSummary) and StreamSummaries (ListStreams) dropped when
    present: the real service added them after kinesalite 3.3.3 was written, so an up-to-date
    server may answer them while kinesalite never does.
  * EncryptionType "NONE" in PutRecord/PutRecords answers dropped: the real service may include
    it, kinesalite never does.
Steps avoided because kinesalite deviates from the real service (documented, not normalized):
  * RetentionPeriodHours above 168: kinesalite still enforces the old 168 h maximum (real: 8760).
  * ListShards MaxResults/NextToken paging: kinesalite ignores MaxResults.
  * AT_TIMESTAMP later than a shard's last record: kinesalite never answers (request hangs).
  * Stream status while CREATING/DELETING: kinesalite spends createStreamMs in CREATING; the
    script waits for ACTIVE (resp. for the stream to be gone) without recording the polls.
  * ExpiredIteratorException: needs a 5 minute wait against kinesalite.
  * Data of at most 1 MiB whose partition key + data exceed 1 MiB: kinesalite checks the Data
    length alone and accepts it; the real service limits data + key to 1 MiB. The script puts a
    record of exactly 1 MiB (key + data) and one with 1 MiB + 1 of Data, where both agree.
"""

import argparse
import base64
import datetime
import difflib
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from botocore.exceptions import ClientError  # noqa: E402
from kinlib import client, raw_post, wait_active  # noqa: E402

SHARD0, SHARD1 = "shardId-000000000000", "shardId-000000000001"
STREAM = "diff-stream"
SEQ_RE = re.compile(r"^(0|[1-9]\d{0,128})$")
ARN_RE = re.compile(r"^arn:aws:kinesis:[a-z0-9-]+:\d{12}:stream/(.+)$")


class Recorder:
    def __init__(self, endpoint):
        self.ep = endpoint
        self.c = client(endpoint)
        self.raw = client(endpoint, validate=False)
        self.steps = []  # (label, shard context, HTTP status, body)

    def call(self, label, method, shard=None, validate=True, **params):
        c = self.c if validate else self.raw
        try:
            r = getattr(c, method)(**params)
            status = r["ResponseMetadata"]["HTTPStatusCode"]
            r["request-id"] = bool(r.pop("ResponseMetadata").get("RequestId"))
            self.steps.append((label, shard, status, r))
            return r
        except ClientError as e:
            meta = e.response.get("ResponseMetadata", {})
            self.steps.append((label, shard, meta.get("HTTPStatusCode"), {
                "__type": e.response["Error"].get("Code"), "request-id": bool(meta.get("RequestId"))}))
            return None

    def post(self, label, target, body):
        status, headers, parsed = raw_post(self.ep, target, body)
        if isinstance(parsed, dict):
            t = parsed.get("__type", "")
            parsed = {"__type": t.split("#")[-1]} if t else parsed
        self.steps.append((label, None, status, {"body": parsed, "content-type": headers.get("content-type"),
                                                 "request-id": bool(headers.get("x-amzn-requestid"))}))


def script(rec, preexisting):
    c = rec.c
    for spec in preexisting:
        name, n = spec.split(":")
        try:
            c.describe_stream_summary(StreamName=name)
        except ClientError:
            c.create_stream(StreamName=name, ShardCount=int(n))
        wait_active(c, name)

    rec.call("CreateStream 2 shards", "create_stream", StreamName=STREAM, ShardCount=2)
    wait_active(c, STREAM)
    rec.call("CreateStream again", "create_stream", StreamName=STREAM, ShardCount=2)
    rec.call("DescribeStream", "describe_stream", StreamName=STREAM)
    rec.call("DescribeStreamSummary", "describe_stream_summary", StreamName=STREAM)
    rec.call("ListStreams", "list_streams")
    rec.call("ListShards", "list_shards", StreamName=STREAM)

    for i, key in enumerate(["cam-1", "cam-2", "cam-3", "cam-4", "cam-5", "a", "Z" * 256, "ünïcödé"]):
        data = ("record %d for %s" % (i, key)).encode()
        rec.call("PutRecord key=%r" % key[:20], "put_record", StreamName=STREAM, PartitionKey=key, Data=data)
    rec.call("PutRecord binary data", "put_record", StreamName=STREAM, PartitionKey="bin", Data=bytes(range(256)))
    rec.call("PutRecord ExplicitHashKey 0", "put_record", StreamName=STREAM, PartitionKey="cam-2", Data=b"ehk0",
             ExplicitHashKey="0")
    rec.call("PutRecord ExplicitHashKey 2^128-1", "put_record", StreamName=STREAM, PartitionKey="cam-1",
             Data=b"ehkmax", ExplicitHashKey=str(2**128 - 1))
    rec.call("PutRecord key + data = 1 MiB", "put_record", StreamName=STREAM, PartitionKey="big",
             Data=b"B" * (1024 * 1024 - 3))
    first_seq = next(st[3]["SequenceNumber"] for st in rec.steps if st[3].get("ShardId") == SHARD0)
    mixture = []
    for i in range(12):
        r = {"PartitionKey": "cam-%d" % (i % 4 + 1), "Data": ("batch %d " % i).encode() * (1 + 50 * (i % 3))}
        if i % 5 == 4:
            r["ExplicitHashKey"] = str((2**128 - 1) if i % 2 else 2**127 - 1)
        mixture.append(r)
    rec.call("PutRecords mixture of 12", "put_records", StreamName=STREAM, Records=mixture)
    time.sleep(0.1)
    t_mid = time.time()
    time.sleep(0.1)
    rec.call("PutRecords after t_mid", "put_records", StreamName=STREAM, Records=[
        {"PartitionKey": k, "Data": ("late %s" % k).encode()} for k in ("cam-1", "cam-2", "cam-3", "cam-2")])

    for shard in (SHARD0, SHARD1):
        it = rec.call("GetShardIterator TRIM_HORIZON %s" % shard, "get_shard_iterator", StreamName=STREAM,
                      ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        page = 0
        seqs = []
        while True:
            g = rec.call("GetRecords Limit=3 page %d %s" % (page, shard), "get_records", shard=shard,
                         ShardIterator=it, Limit=3)
            page += 1
            seqs += [x["SequenceNumber"] for x in g["Records"]]
            it = g["NextShardIterator"]
            if not g["Records"]:
                break
            assert page < 50
        it = rec.call("GetShardIterator LATEST %s" % shard, "get_shard_iterator", StreamName=STREAM, ShardId=shard,
                      ShardIteratorType="LATEST")["ShardIterator"]
        rec.call("GetRecords at LATEST %s" % shard, "get_records", shard=shard, ShardIterator=it)
        for typ in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            r = rec.call("GetShardIterator %s of 2nd record %s" % (typ, shard), "get_shard_iterator",
                         StreamName=STREAM, ShardId=shard, ShardIteratorType=typ, StartingSequenceNumber=seqs[1])
            rec.call("GetRecords %s %s" % (typ, shard), "get_records", shard=shard, ShardIterator=r["ShardIterator"])
        r = rec.call("GetShardIterator AT_TIMESTAMP t_mid %s" % shard, "get_shard_iterator", StreamName=STREAM,
                     ShardId=shard, ShardIteratorType="AT_TIMESTAMP", Timestamp=t_mid)
        rec.call("GetRecords AT_TIMESTAMP t_mid %s" % shard, "get_records", shard=shard,
                 ShardIterator=r["ShardIterator"])

    # errors
    rec.call("DescribeStream unknown stream", "describe_stream", StreamName="no-such-stream")
    rec.call("PutRecord unknown stream", "put_record", StreamName="no-such-stream", PartitionKey="a", Data=b"x")
    rec.call("GetShardIterator unknown shard", "get_shard_iterator", StreamName=STREAM,
             ShardId="shardId-000000000009", ShardIteratorType="TRIM_HORIZON")
    rec.call("GetRecords malformed iterator", "get_records", ShardIterator="not-an-iterator")
    rec.call("GetRecords iterator of 200 A", "get_records", ShardIterator="A" * 200)
    rec.call("PutRecord 1 MiB + 1", "put_record", StreamName=STREAM, PartitionKey="a", Data=b"x" * (1024 * 1024 + 1))
    rec.call("PutRecords entry of 1 MiB + 1", "put_records", StreamName=STREAM,
             Records=[{"PartitionKey": "a", "Data": b"x" * (1024 * 1024 + 1)}])
    rec.call("PutRecord missing PartitionKey", "put_record", validate=False, StreamName=STREAM, Data=b"x")
    rec.call("PutRecord missing StreamName", "put_record", validate=False, PartitionKey="a", Data=b"x")
    rec.call("PutRecords 0 records", "put_records", validate=False, StreamName=STREAM, Records=[])
    rec.call("GetRecords Limit 0", "get_records", validate=False, ShardIterator="A" * 200, Limit=0)
    rec.call("GetShardIterator AT_SEQUENCE_NUMBER without number", "get_shard_iterator", StreamName=STREAM,
             ShardId=SHARD0, ShardIteratorType="AT_SEQUENCE_NUMBER")
    rec.call("GetShardIterator AT_TIMESTAMP an hour ahead", "get_shard_iterator", StreamName=STREAM,
             ShardId=SHARD0, ShardIteratorType="AT_TIMESTAMP", Timestamp=time.time() + 3600)
    for limit in (-5, 0, 10001):
        rec.call("DescribeStream Limit %d" % limit, "describe_stream", validate=False, StreamName=STREAM, Limit=limit)
    for typ in ("TRIM_HORIZON", "LATEST"):
        rec.call("GetShardIterator %s with a StartingSequenceNumber" % typ, "get_shard_iterator", StreamName=STREAM,
                 ShardId=SHARD0, ShardIteratorType=typ, StartingSequenceNumber=first_seq)
    tgt = "Kinesis_20131202."
    rec.post("raw malformed JSON", tgt + "ListStreams", '{"Limit": ')
    rec.post("raw unknown operation", tgt + "Nope", "{}")
    rec.post("raw bad base64", tgt + "PutRecord", json.dumps({"StreamName": STREAM, "PartitionKey": "a", "Data": "!!!!"}))
    for bad in ("NaN", "Infinity"):
        rec.post("raw Timestamp %s" % bad, tgt + "GetShardIterator", json.dumps(
            {"StreamName": STREAM, "ShardId": SHARD0, "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": bad}))

    rec.call("IncreaseStreamRetentionPeriod 48", "increase_stream_retention_period", StreamName=STREAM,
             RetentionPeriodHours=48)
    rec.call("DescribeStreamSummary after increase", "describe_stream_summary", StreamName=STREAM)
    rec.call("IncreaseStreamRetentionPeriod 30 (< 48)", "increase_stream_retention_period", StreamName=STREAM,
             RetentionPeriodHours=30)
    rec.call("DecreaseStreamRetentionPeriod 24", "decrease_stream_retention_period", StreamName=STREAM,
             RetentionPeriodHours=24)
    rec.call("DescribeStreamSummary after decrease", "describe_stream_summary", StreamName=STREAM)
    rec.call("DecreaseStreamRetentionPeriod 12 (< 24)", "decrease_stream_retention_period", StreamName=STREAM,
             RetentionPeriodHours=12)

    rec.call("DeleteStream", "delete_stream", StreamName=STREAM)
    deadline = time.time() + 30
    while STREAM in c.list_streams()["StreamNames"]:
        assert time.time() < deadline, "stream not deleted"
        time.sleep(0.05)
    rec.call("ListStreams after delete", "list_streams")
    rec.call("DescribeStream after delete", "describe_stream", StreamName=STREAM)


def normalize(steps, t0, t1):
    # ranks of record sequence numbers per shard
    per_shard = {}
    for label, shard, status, body in steps:
        for r in body.get("Records", []) if isinstance(body, dict) else []:
            sh = r.get("ShardId") or shard
            if "SequenceNumber" in r and sh:
                per_shard.setdefault(sh, set()).add(r["SequenceNumber"])
        if isinstance(body, dict) and "ShardId" in body and "SequenceNumber" in body:
            per_shard.setdefault(body["ShardId"], set()).add(body["SequenceNumber"])
    rank = {}
    first = {}
    for sh, seqs in per_shard.items():
        ok = sorted((s for s in seqs if SEQ_RE.match(s)), key=int)
        for i, s in enumerate(ok):
            rank[(sh, s)] = "%s#%d" % (sh[-1], i)
        if ok:
            first[sh] = int(ok[0])

    def ts(v):
        if isinstance(v, datetime.datetime):
            v = v.timestamp()
        if isinstance(v, (int, float)) and t0 - 5 <= v <= t1 + 5:
            return "<time>"
        return "BAD-TIME:%r" % (v,)

    def data(b):
        try:
            s = b.decode("utf-8")
            if s.isprintable():
                return s if len(s) <= 80 else "%s...(%d bytes, sha %s)" % (s[:40], len(b), _h(b))
        except UnicodeDecodeError:
            pass
        return "b64:" + (base64.b64encode(b).decode() if len(b) <= 60 else "(%d bytes, sha %s)" % (len(b), _h(b)))

    def walk(v, shard, parent_key=None):
        if isinstance(v, dict):
            sh = v.get("ShardId", shard)
            out = {}
            for k, x in v.items():
                if k in ("message", "Message", "StreamModeDetails", "StreamSummaries"):
                    continue
                if k == "EncryptionType" and x == "NONE" and parent_key in ("PutRecord", "PutRecords", "Records"):
                    continue
                if k == "SequenceNumber":
                    out[k] = rank.get((sh, x), "RAW:%s" % x)
                elif k == "StartingSequenceNumber":
                    ok = isinstance(x, str) and SEQ_RE.match(x) and (sh not in first or int(x) <= first[sh])
                    out[k] = "start<=first" if ok else "RAW:%s" % x
                elif k == "EndingSequenceNumber":
                    out[k] = "end" if isinstance(x, str) and SEQ_RE.match(x) else "RAW:%s" % x
                elif k in ("ShardIterator", "NextShardIterator"):
                    out[k] = "<iterator>" if isinstance(x, str) and 1 <= len(x) <= 512 else x
                elif k in ("ApproximateArrivalTimestamp", "StreamCreationTimestamp"):
                    out[k] = ts(x)
                elif k == "MillisBehindLatest":
                    caught_up = v.get("Records") == [] and v.get("NextShardIterator") is not None
                    out[k] = x if caught_up else ("<ms>" if isinstance(x, int) and x >= 0 else "BAD:%r" % (x,))
                elif k == "StreamARN":
                    m = ARN_RE.match(x) if isinstance(x, str) else None
                    out[k] = "arn:aws:kinesis:<region>:<account>:stream/" + m.group(1) if m else "RAW:%s" % x
                elif k == "Data" and isinstance(x, (bytes, bytearray)):
                    out[k] = data(bytes(x))
                else:
                    out[k] = walk(x, sh, k)
            return out
        if isinstance(v, list):
            return [walk(x, shard, parent_key) for x in v]
        if isinstance(v, datetime.datetime):
            return ts(v)
        return v

    out = []
    for label, shard, status, body in steps:
        op = label.split()[0]
        out.append({"step": label, "status": status, "body": walk(body, shard, op)})
    return out


def _h(b):
    import hashlib

    return hashlib.sha256(b).hexdigest()[:12]


def run(endpoint, preexisting):
    rec = Recorder(endpoint)
    t0 = time.time()
    script(rec, preexisting)
    return normalize(rec.steps, t0, time.time())


def render(transcript):
    lines = []
    for s in transcript:
        lines.append("== %s -> HTTP %s" % (s["step"], s["status"]))
        lines.extend(json.dumps(s["body"], indent=1, sort_keys=True, ensure_ascii=False).splitlines())
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", required=True, help="kinesalite endpoint")
    ap.add_argument("--target", required=True, help="endpoint under test (vidgest)")
    ap.add_argument("--preexisting", action="append", default=[],
                    help="NAME:SHARDS of a stream the target has from its config; created on the "
                         "reference too so ListStreams compares")
    ap.add_argument("--dump", default="", help="directory for reference.txt / target.txt")
    a = ap.parse_args()

    ref = render(run(a.reference, a.preexisting))
    tgt = render(run(a.target, a.preexisting))
    if a.dump:
        os.makedirs(a.dump, exist_ok=True)
        for n, l in (("reference.txt", ref), ("target.txt", tgt)):
            with open(os.path.join(a.dump, n), "w") as f:
                f.write("\n".join(l) + "\n")
    steps = sum(1 for l in ref if l.startswith("== "))
    if ref == tgt:
        print("diff: %d steps, transcripts identical after normalization" % steps)
        return
    diff = list(difflib.unified_diff(ref, tgt, "kinesalite", "target", n=6, lineterm=""))
    print("diff: transcripts differ (%d steps; - kinesalite, + target):" % steps)
    print("\n".join(diff))
    sys.exit(1)


if __name__ == "__main__":
    main()
