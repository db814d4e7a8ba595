"""pyarrow's side of bench/delivery.sh: the same detection rows as vidgest's Parquet encoder
(built-in detections schema), written with the same compression (snappy) into memory.

usage: parquet_bench_pyarrow.py CORPUS.jsonl

The rows are built in Python from the same JSON lines first (not timed); then timed: building
the Arrow table from them (`build`) and pq.write_table (`write`, the number compared). Arrow's
thread pools are set to one thread, as vidgest encodes on one. Prints one JSON object.
"""

import json
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([
    pa.field("device", pa.string(), nullable=False),
    pa.field("camera", pa.string(), nullable=False),
    pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("fragment_number", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("class_id", pa.int32(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("box_x", pa.float64(), nullable=False),
    pa.field("box_y", pa.float64(), nullable=False),
    pa.field("box_w", pa.float64(), nullable=False),
    pa.field("box_h", pa.float64(), nullable=False),
    pa.field("inference_ms", pa.float64(), nullable=True),
])


def main():
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    cols = {f.name: [] for f in SCHEMA}
    records = 0
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    for line in data.splitlines():
        if not line:
            continue
        r = json.loads(line)
        records += 1
        if r["type"] != "detection":
            continue
        ms = r["timestamp_ns"] // 1_000_000
        for o in r["detections"]:
            b = o["box"]
            for k, v in (("device", r["device"]), ("camera", r["camera"]), ("timestamp", ms),
                         ("fragment_number", r["fragment_number"]), ("model", r["model"]),
                         ("label", o["label"]), ("class_id", o["class_id"]), ("score", o["score"]),
                         ("box_x", b["x"]), ("box_y", b["y"]), ("box_w", b["w"]), ("box_h", b["h"]),
                         ("inference_ms", r.get("inference_ms"))):
                cols[k].append(v)
    t0 = time.perf_counter()
    table = pa.Table.from_pydict(cols, schema=SCHEMA)
    t1 = time.perf_counter()
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy")
    out = sink.getvalue()
    t2 = time.perf_counter()
    print(json.dumps({
        "mode": "pyarrow-snappy", "input_bytes": len(data), "output_bytes": out.size,
        "records": records, "rows": table.num_rows, "build_seconds": round(t1 - t0, 6),
        "seconds": round(t2 - t1, 6),
    }))


if __name__ == "__main__":
    main()
