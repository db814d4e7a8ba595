"""Reads vidgest's Parquet delivery objects with the real readers (DuckDB and pyarrow) as a
Hive-partitioned table and checks them against the expected rows.

usage: parquet_readers.py TABLE_DIR EXPECTED_JSON
  TABLE_DIR      e.g. <tmp>/detections, holding camera=<c>/dt=<yyyy-MM-dd>/*.parquet
  EXPECTED_JSON  a list of rows: the detection columns (timestamp as Unix millis) plus the
                 partition columns camera and dt
Exits non-zero with a message on the first difference; prints one line per reader.
"""

import datetime
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

COLUMNS = ["device", "camera", "timestamp", "fragment_number", "model", "label", "class_id",
           "score", "box_x", "box_y", "box_w", "box_h", "inference_ms"]


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def millis(ts):
    """A timezone-aware datetime (or None) as Unix milliseconds."""
    if ts.tzinfo is None:
        fail(f"timestamp {ts!r} has no time zone: the column must be UTC-adjusted")
    return int((ts - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc))
               / datetime.timedelta(milliseconds=1))


def key(row):
    return (row["camera"], row["timestamp"], row["label"])


def compare(reader, got, expected):
    if len(got) != len(expected):
        fail(f"{reader}: {len(got)} rows, expected {len(expected)}")
    for g, e in zip(sorted(got, key=key), sorted(expected, key=key)):
        for col, want in e.items():
            if g.get(col) != want:
                fail(f"{reader}: column {col}: got {g.get(col)!r}, expected {want!r} in {g}")


def check_duckdb(table_dir, expected):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rel = con.sql(f"SELECT * FROM read_parquet('{table_dir}/**/*.parquet', hive_partitioning = true)")
    types = dict(zip(rel.columns, [str(t) for t in rel.types]))
    want_types = {"device": "VARCHAR", "camera": "VARCHAR", "timestamp": "TIMESTAMP WITH TIME ZONE",
                  "fragment_number": "VARCHAR", "model": "VARCHAR", "label": "VARCHAR",
                  "class_id": "INTEGER", "score": "DOUBLE", "box_x": "DOUBLE", "box_y": "DOUBLE",
                  "box_w": "DOUBLE", "box_h": "DOUBLE", "inference_ms": "DOUBLE"}
    for col, t in want_types.items():
        if types.get(col) != t:
            fail(f"duckdb: column {col} is {types.get(col)}, expected {t} (all: {types})")
    if "dt" not in types:
        fail(f"duckdb: partition column dt missing (columns: {list(types)})")
    rows = []
    for values in rel.fetchall():
        r = dict(zip(rel.columns, values))
        r["timestamp"] = millis(r["timestamp"])
        r["dt"] = str(r["dt"])
        rows.append(r)
    compare("duckdb", rows, expected)
    # Partition pruning works on the path values.
    n = con.execute(f"SELECT count(*) FROM read_parquet('{table_dir}/**/*.parquet', hive_partitioning = true) "
                f"WHERE camera = 'back'").fetchone()[0]
    if n != sum(1 for e in expected if e["camera"] == "back"):
        fail(f"duckdb: {n} rows for camera=back")
    print(f"duckdb {duckdb.__version__}: {len(rows)} rows, types {types}")


def check_pyarrow(table_dir, expected):
    dataset = ds.dataset(table_dir, format="parquet", partitioning="hive")
    schema = dataset.schema
    ts = schema.field("timestamp").type
    if not (pa.types.is_timestamp(ts) and ts.unit == "ms" and ts.tz in ("UTC", "+00:00")):
        fail(f"pyarrow: timestamp is {ts}, expected timestamp[ms, tz=UTC]")
    for col, check in [("class_id", pa.types.is_int32), ("score", pa.types.is_float64),
                       ("device", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t))]:
        if not check(schema.field(col).type):
            fail(f"pyarrow: column {col} is {schema.field(col).type}")
    if "dt" not in schema.names:
        fail(f"pyarrow: partition column dt missing ({schema.names})")
    table = dataset.to_table()
    rows = []
    for r in table.to_pylist():
        r["timestamp"] = millis(r["timestamp"])
        r["dt"] = str(r["dt"])
        rows.append(r)
    compare("pyarrow", rows, expected)
    print(f"pyarrow {pa.__version__}: {len(rows)} rows, schema {schema.names}")


def main():
    table_dir, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        expected = json.load(f)
    check_duckdb(table_dir, expected)
    check_pyarrow(table_dir, expected)


if __name__ == "__main__":
    main()
