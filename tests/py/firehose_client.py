"""The Firehose-compatible ingest API driven by a stock boto3 `firehose` client (and aws-cli once).

Run by tests/firehose_api.rs against a daemon whose config has the deliveries named on the
command line, all reading the stream --source, and two API tokens (write and read). Every answer
of List/DescribeDeliveryStream is checked against botocore's service model (required members,
no members outside the model, types, enums, patterns, lengths, ranges) on the raw JSON; then
records put through Firehose are read back from the source stream with the Kinesis API and
compared byte for byte.

Prints "firehose: ok <check>" per check and "checks passed" at the end; exits 1 on the first
failure. Runs inside vendor/venv (scripts/bootstrap): standard library plus boto3/botocore.
"""

import argparse
import base64
import json
import os
import random
import re
import subprocess
import sys
import uuid

from botocore.exceptions import ClientError

# make_client: a stock boto3 client, the API token as the access key id. One attempt, no retries:
# a retried put would write its records twice.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvs_common import make_client  # noqa: E402

VENV_BIN = os.path.dirname(sys.executable)
AWS = os.path.join(VENV_BIN, "aws")
ACCOUNT = "000000000000"
MAX_RECORD = 1_024_000
MAX_BATCH = 4 * 1024 * 1024

# never pick up a developer's ~/.aws profile or a real endpoint
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
for _k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_FIREHOSE"):
    os.environ.pop(_k, None)


def ok(what):
    print("firehose: ok " + what, flush=True)


def raw_answers(client):
    """Records the raw JSON body of every answer the client gets (botocore's parser drops
    members it does not know, so shapes must be checked on the raw body)."""
    seen = {}

    def hook(http_response, model, **_):
        seen[model.name] = json.loads(http_response.content or b"{}")

    client.meta.events.register("after-call.firehose.*", hook)
    return seen


def check_shape(shape, value, path, errors):
    """`value` (raw JSON) against a botocore shape: collects every violation in `errors`."""
    t = shape.type_name
    meta = shape.metadata
    if t == "structure":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {value!r}")
            return
        for k in shape.required_members:
            if k not in value:
                errors.append(f"{path}: required member {k} is missing")
        for k, v in value.items():
            if k not in shape.members:
                errors.append(f"{path}: member {k} is not in the model")
            else:
                check_shape(shape.members[k], v, f"{path}.{k}", errors)
    elif t == "list":
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list")
            return
        if "min" in meta and len(value) < meta["min"]:
            errors.append(f"{path}: fewer than {meta['min']} items")
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: more than {meta['max']} items")
        for i, v in enumerate(value):
            check_shape(shape.member, v, f"{path}[{i}]", errors)
    elif t == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
            return
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of {shape.enum}")
        if "min" in meta and len(value) < meta["min"]:
            errors.append(f"{path}: {value!r} shorter than {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {value!r} longer than {meta['max']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {value!r}")
            return
        if "min" in meta and value < meta["min"]:
            errors.append(f"{path}: {value} < {meta['min']}")
        if "max" in meta and value > meta["max"]:
            errors.append(f"{path}: {value} > {meta['max']}")
    elif t == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean, got {value!r}")
    elif t == "timestamp":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{path}: expected epoch seconds, got {value!r}")
    else:
        errors.append(f"{path}: unchecked type {t}")


def assert_shape(client, op, raw):
    shape = client.meta.service_model.operation_model(op).output_shape
    errors = []
    check_shape(shape, raw, op, errors)
    assert not errors, "answer outside the model:\n  " + "\n  ".join(errors) + f"\n{raw}"


def expect_error(fn, code, status=None, message=None):
    try:
        fn()
    except ClientError as e:
        err = e.response["Error"]
        assert err["Code"] == code, f"expected {code}, got {err}"
        got = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert status is None or got == status, f"expected HTTP {status}, got {got}: {err}"
        if message is not None:
            assert re.search(message, err.get("Message", "")), f"message {err!r} !~ {message!r}"
        return err
    raise AssertionError(f"expected {code}, the call succeeded")


def part_list_describe(fh, raw, deliveries):
    names = sorted(deliveries)
    out = fh.list_delivery_streams()
    assert_shape(fh, "ListDeliveryStreams", raw["ListDeliveryStreams"])
    assert out["DeliveryStreamNames"] == names, out
    assert out["HasMoreDeliveryStreams"] is False, out
    page = fh.list_delivery_streams(Limit=1)
    assert page["DeliveryStreamNames"] == names[:1] and page["HasMoreDeliveryStreams"], page
    rest = fh.list_delivery_streams(ExclusiveStartDeliveryStreamName=names[0], Limit=100)
    assert rest["DeliveryStreamNames"] == names[1:], rest
    assert fh.list_delivery_streams(DeliveryStreamType="DirectPut")["DeliveryStreamNames"] == names
    other = fh.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource")
    assert other["DeliveryStreamNames"] == [] and not other["HasMoreDeliveryStreams"], other
    ok("list_delivery_streams (paging, type filter, model shape)")

    for name in names:
        d = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        assert_shape(fh, "DescribeDeliveryStream", raw["DescribeDeliveryStream"])
        assert d["DeliveryStreamName"] == name
        assert d["DeliveryStreamARN"] == f"arn:aws:firehose:us-east-1:{ACCOUNT}:deliverystream/{name}", d
        assert d["DeliveryStreamStatus"] == "ACTIVE" and d["DeliveryStreamType"] == "DirectPut", d
        assert d["CreateTimestamp"].year >= 2020, d
        (dest,) = d["Destinations"]
        s3 = dest["ExtendedS3DestinationDescription"]
        for k, v in deliveries[name].items():
            got = s3
            for part in k.split("."):
                got = got[part]
            assert got == v, f"{name}: {k} = {got!r}, expected {v!r}\n{s3}"
    ok("describe_delivery_stream of %d deliveries (model shape, destination fields)" % len(names))

    for fn in (
        lambda: fh.describe_delivery_stream(DeliveryStreamName="nope"),
        lambda: fh.put_record(DeliveryStreamName="nope", Record={"Data": b"x"}),
        lambda: fh.put_record_batch(DeliveryStreamName="nope", Records=[{"Data": b"x"}]),
    ):
        expect_error(fn, "ResourceNotFoundException", 400, f"^Firehose nope under account {ACCOUNT} not found\\.$")
    ok("unknown delivery: ResourceNotFoundException (describe, put_record, put_record_batch)")


def part_puts(fh, name, sent):
    """Puts records; `sent` maps RecordId -> bytes of every record accepted."""
    rng = random.Random(8)
    one = b"{\"camera\": \"front\", \"label\": \"person\"}\n\x00\xff"
    r = fh.put_record(DeliveryStreamName=name, Record={"Data": one})
    assert r["Encrypted"] is False and r["RecordId"], r
    assert r["RecordId"] not in sent
    sent[r["RecordId"]] = one
    ok("put_record: RecordId %s, Encrypted false" % r["RecordId"])

    batch = [rng.randbytes(rng.randrange(0, 2000)) for _ in range(500)]
    r = fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": d} for d in batch])
    assert r["FailedPutCount"] == 0 and r["Encrypted"] is False, {k: r[k] for k in ("FailedPutCount", "Encrypted")}
    ids = [e["RecordId"] for e in r["RequestResponses"]]
    assert len(ids) == 500 and all(ids), r["RequestResponses"][:3]
    assert len(set(ids)) == 500 and not set(ids) & set(sent), "RecordIds must be unique"
    sent.update(zip(ids, batch))
    ok("put_record_batch of 500 records: 500 RecordIds, FailedPutCount 0")

    # the limits themselves are allowed: a record of exactly 1,000 KiB; a batch of exactly 4 MiB
    edge = rng.randbytes(MAX_RECORD)
    r = fh.put_record(DeliveryStreamName=name, Record={"Data": edge})
    sent[r["RecordId"]] = edge
    full = [rng.randbytes(MAX_RECORD) for _ in range(4)]
    full.append(rng.randbytes(MAX_BATCH - 4 * MAX_RECORD))
    assert sum(map(len, full)) == MAX_BATCH
    r = fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": d} for d in full])
    assert r["FailedPutCount"] == 0, r["FailedPutCount"]
    sent.update(zip((e["RecordId"] for e in r["RequestResponses"]), full))
    ok("a record of exactly 1,024,000 bytes and a batch of exactly 4 MiB are accepted")


def part_limits(ep, token, name):
    """Requests over the service's limits, sent by a client with its own checks off; none of
    them writes anything (checked by the read-back's count)."""
    fh = make_client("firehose", ep, token, validate=False)
    expect_error(
        lambda: fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"x"}] * 501),
        "ValidationException", 400,
        r"^1 validation error detected: .* at 'records' failed to satisfy constraint: "
        r"Member must have length less than or equal to 500$",
    )
    expect_error(
        lambda: fh.put_record_batch(DeliveryStreamName=name, Records=[]),
        "ValidationException", 400, "greater than or equal to 1",
    )
    ok("501 records (and 0): ValidationException")

    big = b"b" * (MAX_RECORD + 1)
    expect_error(
        lambda: fh.put_record(DeliveryStreamName=name, Record={"Data": big}),
        "ValidationException", 400,
        r"^1 validation error detected: Value 'java\.nio\.HeapByteBuffer\[pos=0 lim=1024001 cap=1024001\]' "
        r"at 'record\.data' failed to satisfy constraint: Member must have length less than or equal to 1024000$",
    )
    expect_error(
        lambda: fh.put_record_batch(
            DeliveryStreamName=name, Records=[{"Data": b"small"}, {"Data": big}, {"Data": big}]
        ),
        "ValidationException", 400,
        r"^2 validation errors detected: .*'records\.2\.member\.data'.*; .*'records\.3\.member\.data'",
    )
    ok("a record over 1,000 KiB: ValidationException naming each (put_record, put_record_batch)")

    over = [{"Data": b"o" * 900_000} for _ in range(5)]
    expect_error(
        lambda: fh.put_record_batch(DeliveryStreamName=name, Records=over),
        "InvalidArgumentException", 400, r"^Records size exceeds 4 MB limit$",
    )
    ok("a batch over 4 MiB: InvalidArgumentException")

    # beyond the body limit (8 MiB of JSON) the body is not parsed: 413, same error shape
    huge = [{"Data": b"h" * MAX_RECORD} for _ in range(9)]
    expect_error(
        lambda: fh.put_record_batch(DeliveryStreamName=name, Records=huge),
        "InvalidArgumentException", 413, "exceeds the 8388608-byte limit of PutRecordBatch",
    )
    ok("a body over 8 MiB: 413 InvalidArgumentException")

    expect_error(
        lambda: fh.describe_delivery_stream(DeliveryStreamName="bad name"),
        "ValidationException", 400, "deliveryStreamName",
    )
    expect_error(lambda: fh.list_delivery_streams(Limit=0), "ValidationException", 400, "limit")
    ok("malformed names and limits: ValidationException")


def part_auth(ep, writer, reader, name):
    for label, c in (
        ("no token", make_client("firehose", ep, None, unsigned=True)),
        ("an unknown token", make_client("firehose", ep, "not-a-token-of-this-daemon")),
    ):
        for fn in (
            lambda: c.list_delivery_streams(),
            lambda: c.put_record(DeliveryStreamName=name, Record={"Data": b"x"}),
        ):
            expect_error(fn, "UnrecognizedClientException", 401)
        ok(f"{label}: UnrecognizedClientException")
    ro = make_client("firehose", ep, reader)
    assert name in ro.list_delivery_streams()["DeliveryStreamNames"]
    ro.describe_delivery_stream(DeliveryStreamName=name)
    expect_error(
        lambda: ro.put_record(DeliveryStreamName=name, Record={"Data": b"x"}),
        "AccessDeniedException", 403, "PutRecord",
    )
    expect_error(
        lambda: ro.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"x"}]),
        "AccessDeniedException", 403, "PutRecordBatch",
    )
    ok("read token: list/describe allowed, PutRecord/PutRecordBatch AccessDeniedException")
    wr = make_client("firehose", ep, writer)
    wr.describe_delivery_stream(DeliveryStreamName=name)
    ok("write token: describe allowed")


def read_stream(kin, stream):
    """Every record of `stream`: {(ShardId, SequenceNumber): (Data, PartitionKey)}."""
    out = {}
    for shard in kin.list_shards(StreamName=stream)["Shards"]:
        sid = shard["ShardId"]
        it = kin.get_shard_iterator(StreamName=stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = kin.get_records(ShardIterator=it, Limit=10000)
            for rec in r["Records"]:
                out[(sid, rec["SequenceNumber"])] = (rec["Data"], rec["PartitionKey"])
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
    return out


def part_read_back(kin, stream, sent):
    stored = read_stream(kin, stream)
    assert len(stored) == len(sent), f"{len(stored)} records in {stream}, {len(sent)} accepted"
    shards = set()
    for rid, data in sent.items():
        sid, _, seq = rid.partition(":")
        assert (sid, seq) in stored, f"RecordId {rid} is not in {stream}"
        got, key = stored[(sid, seq)]
        assert got == data, f"RecordId {rid}: {len(got)} bytes stored, {len(data)} sent (or different bytes)"
        assert uuid.UUID(key).version == 4 and str(uuid.UUID(key)) == key, key
        shards.add(sid)
    assert len(shards) > 1, f"records should spread over the shards, all in {shards}"
    ok(f"read back {len(sent)} records from {stream} over {len(shards)} shards: same bytes, UUID v4 keys")


def part_cli(ep, reader, names):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=reader, AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1", AWS_MAX_ATTEMPTS="1")
    p = subprocess.run(
        [AWS, "firehose", "list-delivery-streams", "--endpoint-url", ep, "--output", "json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert p.returncode == 0, f"aws-cli failed: {p.stderr}"
    out = json.loads(p.stdout)
    assert out["DeliveryStreamNames"] == sorted(names), out
    ok("aws firehose list-delivery-streams")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--writer", required=True, help="API token with scope write")
    ap.add_argument("--reader", required=True, help="API token with scope read")
    ap.add_argument("--source", required=True, help="the stream every delivery reads")
    ap.add_argument("--expect", required=True,
                    help='JSON {"delivery": {"Dotted.Field.Of.ExtendedS3DestinationDescription": value}}')
    a = ap.parse_args()
    deliveries = json.loads(a.expect)
    fh = make_client("firehose", a.endpoint, a.writer)
    raw = raw_answers(fh)
    part_list_describe(fh, raw, deliveries)
    part_auth(a.endpoint, a.writer, a.reader, sorted(deliveries)[0])
    part_limits(a.endpoint, a.writer, sorted(deliveries)[0])
    sent = {}
    for name in sorted(deliveries):
        part_puts(fh, name, sent)
    part_read_back(make_client("kinesis", a.endpoint, a.reader), a.source, sent)
    part_cli(a.endpoint, a.reader, list(deliveries))
    print("checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"firehose: FAILED {e}", flush=True)
        sys.exit(1)
