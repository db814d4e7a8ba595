#!/usr/bin/env python3
"""Kinesis over CBOR, with requests built the way the Java SDKs (and so KCL and KPL) build them:
POST / with X-Amz-Target and Content-Type application/x-amz-cbor-1.1, a CBOR map body, blobs as
CBOR byte strings, timestamps as tag 1 + integer epoch *milliseconds* (aws-sdk-java-v2
AwsCborProtocolFactory: UNIX_TIMESTAMP_MILLIS; v1 SdkCborGenerator writes tag 1 + Date.getTime()).
Answers must be CBOR the SDK reads: Data a byte string, timestamps epoch milliseconds, errors
with __type and message. Driven by tests/kinesis_api.rs; exits non-zero when a check fails.

    vendor/venv/bin/python tests/py/cbor_client.py --endpoint http://127.0.0.1:PORT --stream detections
"""

import argparse
import http.client
import os
import sys
import time
import urllib.parse

import cbor2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kinlib import Check, fake_auth_headers  # noqa: E402

CBOR = "application/x-amz-cbor-1.1"


def loads(data):
    """CBOR as the Java SDK reads it: tag 1 kept raw (the SDK reads its number as epoch
    milliseconds, where cbor2 would read standard CBOR epoch seconds)."""
    return cbor2.loads(data, semantic_decoders={1: lambda value, _immutable: cbor2.CBORTag(1, value)})

SHARD0, SHARD1 = "shardId-000000000000", "shardId-000000000001"


class Cbor:
    def __init__(self, endpoint):
        u = urllib.parse.urlparse(endpoint)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    def call(self, op, body):
        """(HTTP status, content type, decoded CBOR answer or None)."""
        h = {"Content-Type": CBOR, "X-Amz-Target": "Kinesis_20131202." + op, **fake_auth_headers()}
        self.conn.request("POST", "/", body=cbor2.dumps(body), headers=h)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, r.getheader("Content-Type"), (loads(data) if data else None)


def is_millis_near_now(v, slack_s=60):
    """A timestamp as the Java SDK reads it: tag 1 (optional) around integer epoch milliseconds."""
    if isinstance(v, cbor2.CBORTag):
        if v.tag != 1:
            return False
        v = v.value
    return isinstance(v, int) and abs(v / 1000.0 - time.time()) < slack_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--stream", required=True, help="an existing stream with 2 shards")
    a = ap.parse_args()
    ck = Check("cbor")
    t0 = time.time()
    c = Cbor(a.endpoint)
    name = a.stream

    st, ct, d = c.call("DescribeStream", {"StreamName": name})
    ck("DescribeStream 200 in CBOR", st == 200 and ct == CBOR, repr((st, ct, d)))
    desc = d["StreamDescription"]
    ck("DescribeStream shards", [s["ShardId"] for s in desc["Shards"]] == [SHARD0, SHARD1], repr(desc))
    ck("DescribeStream StreamCreationTimestamp in epoch ms",
       is_millis_near_now(desc["StreamCreationTimestamp"], slack_s=3600), repr(desc["StreamCreationTimestamp"]))

    st, ct, d = c.call("ListShards", {"StreamName": name})
    ck("ListShards", st == 200 and [s["ShardId"] for s in d["Shards"]] == [SHARD0, SHARD1], repr(d))

    before_ms = int(time.time() * 1000) - 1000
    payload = bytes(range(256)) * 3  # binary, not valid UTF-8
    st, ct, d = c.call("PutRecord", {"StreamName": name, "PartitionKey": "cam-1", "Data": payload})
    ck("PutRecord with byte-string Data", st == 200 and d["ShardId"] == SHARD0 and d["SequenceNumber"].isdigit(),
       repr(d))
    first_seq = d["SequenceNumber"]
    recs = [{"PartitionKey": "cam-%d" % (i % 3 + 1), "Data": b"cbor-%d" % i} for i in range(10)]
    st, ct, d = c.call("PutRecords", {"StreamName": name, "Records": recs})
    ck("PutRecords", st == 200 and d["FailedRecordCount"] == 0 and len(d["Records"]) == 10, repr(d)[:300])
    ck("PutRecords routing", [r["ShardId"] for r in d["Records"]] ==
       [SHARD1 if r["PartitionKey"] == "cam-2" else SHARD0 for r in recs], repr(d)[:300])
    want0 = [payload] + [r["Data"] for r in recs if r["PartitionKey"] != "cam-2"]

    st, ct, d = c.call("GetShardIterator", {"StreamName": name, "ShardId": SHARD0,
                                            "ShardIteratorType": "AT_SEQUENCE_NUMBER",
                                            "StartingSequenceNumber": first_seq})
    ck("GetShardIterator AT_SEQUENCE_NUMBER", st == 200 and isinstance(d.get("ShardIterator"), str), repr(d))
    st, ct, g = c.call("GetRecords", {"ShardIterator": d["ShardIterator"], "Limit": 100})
    ck("GetRecords 200 in CBOR", st == 200 and ct == CBOR, repr((st, ct)))
    got = [r["Data"] for r in g["Records"]]
    ck("GetRecords Data are byte strings, as written", got == want0, repr(got)[:300])
    ck("GetRecords ApproximateArrivalTimestamp: tag 1, epoch milliseconds",
       all(is_millis_near_now(r["ApproximateArrivalTimestamp"]) for r in g["Records"]),
       repr([r["ApproximateArrivalTimestamp"] for r in g["Records"]][:3]))
    ck("GetRecords MillisBehindLatest integer", isinstance(g.get("MillisBehindLatest"), int), repr(g))
    ck("GetRecords NextShardIterator", isinstance(g.get("NextShardIterator"), str))

    # AT_TIMESTAMP as the SDK sends it: tag 1 + integer milliseconds
    st, ct, d = c.call("GetShardIterator", {"StreamName": name, "ShardId": SHARD0, "ShardIteratorType": "AT_TIMESTAMP",
                                            "Timestamp": cbor2.CBORTag(1, before_ms)})
    ck("GetShardIterator AT_TIMESTAMP (tag 1, ms)", st == 200, repr(d))
    st, ct, g = c.call("GetRecords", {"ShardIterator": d["ShardIterator"]})
    got = [r["Data"] for r in g["Records"]]
    ck("AT_TIMESTAMP before the puts reads them", got[-len(want0):] == want0, repr(got)[:200])
    future = cbor2.CBORTag(1, int(time.time() * 1000) + 3_600_000)
    st, ct, d = c.call("GetShardIterator", {"StreamName": name, "ShardId": SHARD0, "ShardIteratorType": "AT_TIMESTAMP",
                                            "Timestamp": future})
    ck("AT_TIMESTAMP an hour ahead -> 400 InvalidArgumentException in CBOR",
       st == 400 and ct == CBOR and d.get("__type") == "InvalidArgumentException"
       and "currentTimestampInMillis" in d.get("message", ""), repr((st, ct, d)))

    # errors are CBOR maps with __type and message
    st, ct, d = c.call("DescribeStream", {"StreamName": "no-such-stream"})
    ck("unknown stream -> 400 ResourceNotFoundException in CBOR",
       st == 400 and ct == CBOR and d.get("__type") == "ResourceNotFoundException" and d.get("message"),
       repr((st, ct, d)))
    st, ct, d = c.call("PutRecord", {"StreamName": name, "PartitionKey": "a", "Data": b"x" * (1024 * 1024 + 1)})
    ck("Data of 1 MiB + 1 -> 400 ValidationException in CBOR",
       st == 400 and d.get("__type") == "ValidationException" and "1048576" in d.get("message", ""), repr((st, d)))
    h = {"Content-Type": CBOR, "X-Amz-Target": "Kinesis_20131202.DescribeStream", **fake_auth_headers()}
    c.conn.request("POST", "/", body=b"\xff\x00garbage", headers=h)
    r = c.conn.getresponse()
    body = r.read()
    d = loads(body) if body else None
    ck("malformed CBOR -> 400 SerializationException in CBOR",
       r.status == 400 and isinstance(d, dict) and d.get("__type") == "SerializationException", repr((r.status, body)))
    st, ct, d = c.call("CreateStream", {"StreamName": "cbor-made", "ShardCount": 1})
    ck("CreateStream answers an empty CBOR map", st == 200 and d == {}, repr((st, ct, d)))

    ck.finish(time.time() - t0)


if __name__ == "__main__":
    main()
