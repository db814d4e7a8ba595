#!/usr/bin/env python3
"""Driver of bench/delivery-e2e.sh: records from PutRecords to confirmed objects on a local S3
(moto server), against the same daemon taking the same records with no delivery.

    delivery_e2e.py run --endpoint URL --phase ingest|e2e|latency --out RESULT.json [options]
    delivery_e2e.py report --out REPORT.md --header HEADER.md RESULT.json...

Phases (each against a daemon the shell script started with the matching config):
  ingest   PRODUCERS processes send RECORDS detection-like JSON records (~400 bytes, 8 camera
           keys) with PutRecords of 500 into a 4-shard stream; no delivery configured. Rate =
           records / time to the last acknowledgement. The baseline.
  e2e      the same records with a delivery (jsonl gzip, partitioned by camera) to moto; rate =
           records / time from the first put to the status API counting every record as written
           (objects confirmed by S3). Also the daemon's CPU seconds per 10k records.
  latency  buffer_interval 1s; one record at a time; time from its acknowledgement to its object
           being listed in the bucket (ListObjectsV2 polled every 10 ms), SAMPLES times.
"""

import argparse
import base64
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import Conn as KinesisConn  # noqa: E402  (the keep-alive JSON 1.1 client of bench/kinesis.sh)

BATCH = 500


class Conn(KinesisConn):
    def get(self, path):
        self.c.request("GET", path)
        r = self.c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError("GET %s -> HTTP %d: %s" % (path, r.status, data[:300]))
        return json.loads(data)


def record(p, i):
    cam = "cam-%d" % (i % 8)
    rec = {
        "schema": "vidgest.detection/1", "type": "detection", "device": "bench", "camera": cam,
        "timestamp": "2026-11-30T12:00:00.000Z", "timestamp_ns": 1796040000000000000 + i,
        "fragment_number": str(91343852333181432392682062607743920146 + i), "model": "yolov3-tiny-coco",
        "inference_ms": 41.5, "id": "%d-%d" % (p, i),
        "detections": [{"label": "person", "class_id": 0, "score": 0.874,
                        "box": {"x": 0.1234, "y": 0.2345, "w": 0.3456, "h": 0.4567}, "zones": []}],
    }
    return cam, json.dumps(rec, separators=(",", ":"))


def producer(endpoint, stream, p, count, start_at, q):
    """Bodies are built before the clock starts: the client's CPU goes to HTTP, not JSON."""
    c = Conn(endpoint)
    bodies = []
    for b in range(0, count, BATCH):
        recs = []
        for i in range(b, min(b + BATCH, count)):
            key, data = record(p, i)
            recs.append('{"Data":"%s","PartitionKey":"%s"}' % (base64.b64encode(data.encode()).decode(), key))
        bodies.append(('{"StreamName":"%s","Records":[' % stream + ",".join(recs) + "]}").encode())
    while time.time() < start_at:
        time.sleep(0.001)
    sent = failed = 0
    for body in bodies:
        r = c.call("PutRecords", body)
        failed += r["FailedRecordCount"]
        sent += len(r["Records"])
    q.put({"records": sent - failed, "failed": failed, "end": time.time()})


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def put_all(a):
    q = mp.Queue()
    start_at = time.time() + 1.0
    per = a.records // a.producers
    ps = [mp.Process(target=producer, args=(a.endpoint, a.stream, p, per, start_at, q)) for p in range(a.producers)]
    for p in ps:
        p.start()
    cpu0 = None
    while time.time() < start_at:
        time.sleep(0.001)
    cpu0 = cpu_seconds(a.server_pid)
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return start_at, cpu0, res


def phase_ingest(a):
    start_at, cpu0, res = put_all(a)
    end = max(r["end"] for r in res)
    recs = sum(r["records"] for r in res)
    cpu = cpu_seconds(a.server_pid) - cpu0
    return {"records": recs, "failed": sum(r["failed"] for r in res), "seconds": end - start_at,
            "rate": recs / (end - start_at), "cpu_per_10k": cpu / recs * 10000,
            "rss_mib": peak_rss_mib(a.server_pid)}


def delivered(c):
    d = c.get("/api/v1/deliveries")["deliveries"][0]
    return d["records"] + d["error_records"], d


def phase_e2e(a):
    start_at, cpu0, res = put_all(a)
    acked = sum(r["records"] for r in res)
    put_end = max(r["end"] for r in res)
    c = Conn(a.endpoint)
    deadline = time.time() + 600
    while True:
        n, d = delivered(c)
        if n >= acked:
            break
        if time.time() > deadline:
            raise RuntimeError("only %d of %d records delivered: %s" % (n, acked, d))
        time.sleep(0.02)
    end = time.time()
    cpu = cpu_seconds(a.server_pid) - cpu0
    s3 = s3_client(a)
    objects = sum(1 for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket)
                  for _ in page.get("Contents", []))
    return {"records": acked, "seconds": end - start_at, "put_seconds": put_end - start_at,
            "rate": acked / (end - start_at), "cpu_per_10k": cpu / acked * 10000,
            "objects": objects, "object_bytes": d["bytes"], "rss_mib": peak_rss_mib(a.server_pid)}


def s3_client(a):
    return boto3.client("s3", endpoint_url=a.s3, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def phase_latency(a):
    c = Conn(a.endpoint)
    s3 = s3_client(a)
    seen = set()
    lat = []
    for i in range(a.samples):
        key, data = record(9, i)
        body = json.dumps({"StreamName": a.stream, "PartitionKey": key,
                           "Data": base64.b64encode(data.encode()).decode()}).encode()
        c.call("PutRecord", body)
        acked = time.time()
        deadline = acked + 30
        while True:
            keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket)
                    for o in page.get("Contents", [])}
            new = keys - seen
            if new:
                lat.append(time.time() - acked)
                seen |= keys
                break
            if time.time() > deadline:
                raise RuntimeError("record %d never appeared in the bucket" % i)
            time.sleep(0.01)
    lat.sort()
    return {"samples": len(lat), "p50_s": statistics.median(lat), "max_s": lat[-1], "min_s": lat[0],
            "rss_mib": peak_rss_mib(a.server_pid)}


def run(a):
    f = {"ingest": phase_ingest, "e2e": phase_e2e, "latency": phase_latency}[a.phase]
    out = {"phase": a.phase, "rep": a.rep, **f(a)}
    with open(a.out, "w") as fh:
        json.dump(out, fh)
    print(json.dumps(out), file=sys.stderr)


def med_range(xs, fmt):
    xs = sorted(xs)
    return "%s (%s .. %s)" % (fmt % statistics.median(xs), fmt % xs[0], fmt % xs[-1])


def report(a):
    runs = [json.load(open(p)) for p in a.results]
    by = {}
    for r in runs:
        by.setdefault(r["phase"], []).append(r)
    ing, e2e, lat = by.get("ingest", []), by.get("e2e", []), by.get("latency", [])
    lines = [open(a.header).read().rstrip(), "", "| measure | median (min .. max) |", "|---|---|"]
    if ing:
        lines.append("| ingest only (PutRecords acknowledged, no delivery), records/s | %s |"
                     % med_range([r["rate"] for r in ing], "%.0f"))
        lines.append("| ingest only: daemon CPU s per 10k records | %s |" % med_range([r["cpu_per_10k"] for r in ing], "%.3f"))
        lines.append("| ingest only: daemon peak RSS, MiB | %s |" % med_range([r["rss_mib"] for r in ing], "%.1f"))
    if e2e:
        lines.append("| end to end (put to objects confirmed by S3), records/s | %s |"
                     % med_range([r["rate"] for r in e2e], "%.0f"))
        if ing:
            base = statistics.median([r["rate"] for r in ing])
            lines.append("| end to end / ingest only | %s |" % med_range([r["rate"] / base for r in e2e], "%.2fx"))
        lines.append("| end to end: daemon CPU s per 10k records | %s |" % med_range([r["cpu_per_10k"] for r in e2e], "%.3f"))
        lines.append("| end to end: objects, compressed MB | %s, %s |" % (
            med_range([r["objects"] for r in e2e], "%d"), med_range([r["object_bytes"] / 1e6 for r in e2e], "%.1f")))
        lines.append("| end to end: daemon peak RSS, MiB | %s |" % med_range([r["rss_mib"] for r in e2e], "%.1f"))
    if lat:
        lines.append("| record to object latency, buffer_interval 1s, p50 s | %s |" % med_range([r["p50_s"] for r in lat], "%.2f"))
        lines.append("| record to object latency, max s | %s |" % med_range([r["max_s"] for r in lat], "%.2f"))
    with open(a.out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--endpoint", required=True)
    r.add_argument("--s3")
    r.add_argument("--bucket", default="bench")
    r.add_argument("--stream", default="bench")
    r.add_argument("--phase", required=True, choices=["ingest", "e2e", "latency"])
    r.add_argument("--records", type=int, default=200000)
    r.add_argument("--producers", type=int, default=4)
    r.add_argument("--samples", type=int, default=20)
    r.add_argument("--server-pid", type=int, required=True)
    r.add_argument("--rep", type=int, default=1)
    r.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    p.add_argument("--header", required=True)
    p.add_argument("results", nargs="+")
    a = ap.parse_args()
    run(a) if a.cmd == "run" else report(a)


if __name__ == "__main__":
    main()
