"""Reads the metrics records back with a stock boto3 Kinesis client (tests/metrics.rs).

usage: metrics_records.py ENDPOINT TOKEN STREAM
Prints one JSON object: {"records": [{"partition_key": ..., "data": <decoded record>}, ...]}
in shard order (the stream has one shard by default; all shards are read).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kinlib import read_shard  # noqa: E402
from kvs_common import make_client  # noqa: E402


def main():
    endpoint, token, stream = sys.argv[1:4]
    c = make_client("kinesis", endpoint, token)
    out = []
    for shard in c.list_shards(StreamName=stream)["Shards"]:
        records, _, _ = read_shard(c, stream, shard["ShardId"])
        for r in records:
            out.append({"partition_key": r["PartitionKey"], "data": json.loads(r["Data"])})
    print(json.dumps({"records": out}))


if __name__ == "__main__":
    main()
