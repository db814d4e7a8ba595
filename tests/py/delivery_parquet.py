"""Helpers for the Parquet delivery tests (tests/delivery_parquet.rs).

Subcommands (run inside vendor/venv):
  put-file  --endpoint E --stream S --file F
            PutRecords through the Kinesis API (boto3), 500 per call, of the records in F: one
            JSON object a line, {"key": <partition key>, "data": <the record, a string>}.
            Prints `acked <n>`; fails when any record is refused.
  check     --endpoint E --stream S --table DIR [--skip-fragments N,M]
            Reads every record back from the stream (GetRecords from TRIM_HORIZON on every
            shard) and the Parquet objects below DIR with DuckDB as a Hive-partitioned table,
            then checks: one row per detected object of every `vidgest.detection/1` detection
            record and nothing else (heartbeats give no rows), each value equal to the record's,
            the partitions (camera=, dt=) of each object equal to its rows' camera and their
            arrival date, and no object without rows. Exits non-zero on the first difference;
            detection records of the fragments listed in --skip-fragments count as no
            detection record (they must not be in the table either). It
            prints one JSON line: {"rows", "files", "records", "detections", "heartbeats",
            "types": {column: DuckDB type}, "others": [{"data", "arrival_ms"}] (the records that
            are no detection record, for the error checks on the Rust side)}.
"""

import argparse
import collections
import datetime
import json
import os
import sys

import boto3
import duckdb
from botocore.config import Config

os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
for _k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS"):
    os.environ.pop(_k, None)

SCHEMA = "vidgest.detection/1"
COLUMNS = ["device", "camera", "timestamp", "fragment_number", "model", "label", "class_id",
           "score", "box_x", "box_y", "box_w", "box_h", "inference_ms"]
# The latest a batch's oldest record can have arrived before one of its records: dt comes from
# the batch's oldest arrival (Firehose), so a batch open across midnight keeps the earlier day.
MAX_BATCH_SPAN = datetime.timedelta(seconds=60)


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def kinesis(endpoint):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 3, "mode": "standard"},
                      connect_timeout=30, read_timeout=30),
    )


def put_file(args):
    kin = kinesis(args.endpoint)
    with open(args.file) as f:
        records = [json.loads(line) for line in f if line.strip()]
    acked = 0
    for start in range(0, len(records), 500):
        batch = [{"Data": r["data"].encode(), "PartitionKey": r["key"]}
                 for r in records[start:start + 500]]
        r = kin.put_records(StreamName=args.stream, Records=batch)
        if r["FailedRecordCount"]:
            failed = [e for e in r["Records"] if "ErrorCode" in e]
            sys.exit(f"{len(failed)} records refused: {failed[:3]}")
        acked += len(batch)
    print(f"acked {acked}")


def read_stream(kin, stream):
    """Every record of every shard, as (data bytes, arrival datetime UTC)."""
    out = []
    shards = kin.list_shards(StreamName=stream)["Shards"]
    for shard in shards:
        it = kin.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = kin.get_records(ShardIterator=it, Limit=10000)
            for rec in r["Records"]:
                out.append((rec["Data"], rec["ApproximateArrivalTimestamp"]
                            .astimezone(datetime.timezone.utc)))
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
    return out


def expected_rows(records, skip):
    """Rows (tuples in COLUMNS order) the detection records must give, fragment -> arrival,
    counts, and the records that are no detection record or whose fragment is in `skip`."""
    rows, arrival, others = [], {}, []
    detections = heartbeats = 0
    for data, arrived in records:
        try:
            v = json.loads(data)
        except ValueError:
            v = None
        if (not isinstance(v, dict) or v.get("schema") != SCHEMA
                or v.get("fragment_number") in skip):
            others.append({"data": data.decode("utf-8", "replace"),
                           "arrival_ms": int(arrived.timestamp() * 1000)})
            continue
        if v["type"] == "heartbeat":
            heartbeats += 1
            continue
        detections += 1
        if v["fragment_number"] in arrival:
            fail(f"fragment {v['fragment_number']} is in two records: the test needs them unique")
        arrival[v["fragment_number"]] = arrived
        for o in v["detections"]:
            b = o["box"]
            rows.append((v["device"], v["camera"], v["timestamp_ns"] // 1_000_000,
                         v["fragment_number"], v["model"], o["label"], o["class_id"], o["score"],
                         b["x"], b["y"], b["w"], b["h"], v.get("inference_ms")))
    return rows, arrival, others, detections, heartbeats


def partitions(path):
    """{name: value} of the `name=value` directories of an object's path."""
    return dict(p.split("=", 1) for p in path.split("/") if "=" in p)


def check(args):
    records = read_stream(kinesis(args.endpoint), args.stream)
    skip = set(filter(None, args.skip_fragments.split(",")))
    want, arrival, others, detections, heartbeats = expected_rows(records, skip)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    glob = f"{args.table}/**/*.parquet"
    # Partitions as strings, as the Athena/Glue table declares them (`vidgest delivery ddl`).
    rel = con.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
                  "hive_types_autocast = false)")
    types = dict(zip(rel.columns, [str(t) for t in rel.types]))
    if types.get("timestamp") != "TIMESTAMP WITH TIME ZONE":
        fail(f"timestamp is {types.get('timestamp')}, expected TIMESTAMP WITH TIME ZONE ({types})")
    for col in ("camera", "dt"):
        if col not in types:
            fail(f"partition column {col} missing (columns: {types})")
    select = ", ".join('epoch_ms("timestamp")' if c == "timestamp" else f'"{c}"' for c in COLUMNS)
    got = con.execute(f"SELECT {select}, dt FROM read_parquet('{glob}', hive_partitioning = true, "
                      "hive_types_autocast = false)").fetchall()
    # The table's camera column (the partition's where both exist) equals the record's.
    got_rows = collections.Counter(tuple(r[:-1]) for r in got)
    want_rows = collections.Counter(want)
    if got_rows != want_rows:
        missing = list((want_rows - got_rows).elements())
        extra = list((got_rows - want_rows).elements())
        fail(f"rows differ: {len(got)} read, {len(want)} expected; missing {missing[:3]}, "
             f"unexpected {extra[:3]} (columns {COLUMNS})")

    # Each object's path against its own rows (camera as stored in the file, not the path).
    per_file = con.execute(f'SELECT filename, camera, fragment_number FROM read_parquet('
                           f"'{glob}', hive_partitioning = false, filename = true)").fetchall()
    files = collections.Counter()
    for filename, camera, fragment in per_file:
        rel_path = os.path.relpath(filename, args.table)
        files[rel_path] += 1
        parts = partitions(rel_path)
        if parts.get("camera") != camera:
            fail(f"{rel_path}: a row of camera {camera!r} in partition {parts}")
        arrived = arrival[fragment]
        earliest = (arrived - MAX_BATCH_SPAN).date().isoformat()
        if not earliest <= parts.get("dt", "") <= arrived.date().isoformat():
            fail(f"{rel_path}: dt {parts.get('dt')!r} for a record that arrived {arrived}")
    on_disk = []
    for base, _, names in os.walk(args.table):
        on_disk += [os.path.relpath(os.path.join(base, n), args.table) for n in names]
    empty = sorted(set(on_disk) - set(files))
    if empty:
        fail(f"objects without rows (or not Parquet): {empty}")
    print(json.dumps({"rows": len(got), "files": len(files), "records": len(records),
                      "detections": detections, "heartbeats": heartbeats, "types": types,
                      "others": others}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("put-file")
    a.add_argument("--endpoint", required=True)
    a.add_argument("--stream", required=True)
    a.add_argument("--file", required=True)
    a.set_defaults(f=put_file)
    a = sub.add_parser("check")
    a.add_argument("--endpoint", required=True)
    a.add_argument("--stream", required=True)
    a.add_argument("--table", required=True)
    a.add_argument("--skip-fragments", default="")
    a.set_defaults(f=check)
    args = p.parse_args()
    args.f(args)


if __name__ == "__main__":
    main()
