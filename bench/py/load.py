#!/usr/bin/env python3
"""Load generator for bench/kinesis.sh: the same client code against every Kinesis-compatible
target (vidgest, kinesalite), so the numbers compare servers, not clients.

    load.py run --endpoint URL --label NAME --out RESULT.json [options]
    load.py report --out REPORT.md --header HEADER.md RESULT.json...

The client is deliberately thin so that the server is what gets measured: plain http.client
keep-alive connections (one per producer/reader), JSON 1.1 bodies built with the standard library,
a syntactically complete but unsigned SigV4 Authorization header (kinesalite checks presence only,
a token-less vidgest ignores it). Phases of one run:

  put      PRODUCERS processes, each its own connection, send PutRecords of BATCH records of SIZE
           bytes (id + random filler, 1024 random partition keys; bodies prebuilt) back to back for
           PUT_SECONDS into a fresh stream of SHARDS shards. Throughput = acknowledged records / wall
           time.
  get      one process per shard reads everything back from TRIM_HORIZON with GetRecords
           Limit=10000 until caught up; all acknowledged records must come back.
  latency  a fresh 1-shard stream; a consumer process loops GetRecords on its newest iterator
           (no sleep); a producer process sends PutRecord at a paced RATE/s for LAT_SECONDS
           (send time embedded in the payload). Latency = arrival at the consumer - send time.
"""

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import re
import statistics
import sys
import threading
import time
import urllib.parse

TARGET = "Kinesis_20131202."
ITER_RE = re.compile(rb'"NextShardIterator"\s*:\s*"([^"]*)"')
BEHIND_RE = re.compile(rb'"MillisBehindLatest"\s*:\s*(\d+)')
SEQ_KEY = b'"SequenceNumber"'
RING = 8  # prebuilt PutRecords bodies per producer


class Conn:
    def __init__(self, endpoint):
        u = urllib.parse.urlparse(endpoint)
        self.host, self.port = u.hostname, u.port
        self.c = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def post(self, op, body):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        h = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": TARGET + op,
            "X-Amz-Date": amz,
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/%s/us-east-1/kinesis/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=%s" % (amz[:8], "0" * 64),
        }
        for attempt in (0, 1):
            try:
                self.c.request("POST", "/", body=body, headers=h)
                r = self.c.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # a keep-alive connection the server closed while idle: reconnect once
                self.c.close()
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt:
                    raise
        if r.status != 200:
            raise RuntimeError("%s -> HTTP %d: %s" % (op, r.status, data[:300]))
        return data

    def call(self, op, body):
        data = self.post(op, body)
        return json.loads(data) if data else {}


def create_stream(endpoint, name, shards):
    c = Conn(endpoint)
    c.call("CreateStream", {"StreamName": name, "ShardCount": shards})
    deadline = time.time() + 60
    while True:
        s = c.call("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]
        if s["StreamStatus"] == "ACTIVE":
            break
        assert time.time() < deadline, "stream %s not ACTIVE" % name
        time.sleep(0.05)
    return [x["ShardId"] for x in c.call("ListShards", {"StreamName": name})["Shards"]]


# --- put -------------------------------------------------------------------------------------------

def producer(endpoint, stream, idx, batch, size, seconds, start_at, q):
    """Records: a 12-byte id (producer, number) + random filler up to SIZE bytes, 1024 random
    partition keys. The bodies of RING calls are built before the clock starts and then sent in
    turn, so the client spends its CPU on the HTTP exchange, not on JSON building (this machine's
    2 cores are shared by client and server). Ids repeat every RING calls; nothing here reads them."""
    c = Conn(endpoint)
    tail = base64.b64encode(os.urandom(size - 12)).decode()
    keys = [os.urandom(8).hex() for _ in range(1024)]
    head = '{"StreamName":"%s","Records":[' % stream
    bodies = []
    for k in range(RING):
        recs = []
        for j in range(k * batch, (k + 1) * batch):
            rid = base64.b64encode(b"%02d%010d" % (idx, j)).decode()  # 12 bytes: base64 concatenates
            recs.append('{"Data":"%s%s","PartitionKey":"%s"}' % (rid, tail, keys[j & 1023]))
        bodies.append((head + ",".join(recs) + "]}").encode())
    n = calls = failed = 0
    lat = []
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    while time.time() < end:
        t = time.perf_counter()
        r = json.loads(c.post("PutRecords", bodies[calls % RING]))
        lat.append(time.perf_counter() - t)
        failed += r["FailedRecordCount"]
        n += batch
        calls += 1
    q.put({"records": n - failed, "failed": failed, "calls": calls, "end": time.time(), "call_s": lat})


def phase_put(a, stream):
    q = mp.Queue()
    start_at = time.time() + 0.5
    ps = [mp.Process(target=producer, args=(a.endpoint, stream, i, a.batch, a.size, a.put_seconds, start_at, q))
          for i in range(a.producers)]
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    wall = max(r["end"] for r in res) - start_at
    recs = sum(r["records"] for r in res)
    call_s = sorted(x for r in res for x in r["call_s"])
    return {
        "records": recs,
        "failed": sum(r["failed"] for r in res),
        "calls": sum(r["calls"] for r in res),
        "seconds": wall,
        "records_per_s": recs / wall,
        "mb_per_s": recs * a.size / wall / 1e6,
        "call_p50_ms": 1000 * pct(call_s, 50),
        "call_p99_ms": 1000 * pct(call_s, 99),
    }


# --- get -------------------------------------------------------------------------------------------

def reader(endpoint, stream, shard, q):
    c = Conn(endpoint)
    it = c.call("GetShardIterator", {"StreamName": stream, "ShardId": shard,
                                     "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
    n = calls = nbytes = 0
    t0 = time.time()
    while True:
        data = c.post("GetRecords", ('{"ShardIterator":"%s","Limit":10000}' % it).encode())
        calls += 1
        nbytes += len(data)
        k = data.count(SEQ_KEY)
        n += k
        m = ITER_RE.search(data)
        behind = BEHIND_RE.search(data)
        if k == 0 and (behind is None or int(behind.group(1)) == 0):
            break
        if m is None:
            break
        it = m.group(1).decode()
    q.put({"records": n, "calls": calls, "bytes": nbytes, "end": time.time(), "start": t0})


def phase_get(a, stream, shards, expected):
    q = mp.Queue()
    ps = [mp.Process(target=reader, args=(a.endpoint, stream, s, q)) for s in shards]
    t0 = time.time()
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    wall = max(r["end"] for r in res) - t0
    recs = sum(r["records"] for r in res)
    if recs != expected:
        raise RuntimeError("read back %d records, %d were acknowledged" % (recs, expected))
    return {
        "records": recs,
        "calls": sum(r["calls"] for r in res),
        "seconds": wall,
        "records_per_s": recs / wall,
        "mb_per_s": recs * a.size / wall / 1e6,
        "response_mb": sum(r["bytes"] for r in res) / 1e6,
    }


# --- latency ---------------------------------------------------------------------------------------

def consumer(endpoint, stream, shard, total, timeout, ready, q):
    c = Conn(endpoint)
    it = c.call("GetShardIterator", {"StreamName": stream, "ShardId": shard,
                                     "ShardIteratorType": "LATEST"})["ShardIterator"]
    ready.set()
    lats, seen, polls = [], set(), 0
    deadline = time.time() + timeout
    while len(seen) < total and time.time() < deadline:
        r = c.call("GetRecords", {"ShardIterator": it, "Limit": 10000})
        now = time.time()
        polls += 1
        for rec in r["Records"]:
            body = json.loads(base64.b64decode(rec["Data"]))
            if body["i"] not in seen:
                seen.add(body["i"])
                lats.append(now - body["t"])
        it = r["NextShardIterator"]
    q.put({"lat": lats, "received": len(seen), "polls": polls})


def paced_producer(endpoint, stream, rate, seconds, threads, q):
    total = int(rate * seconds)
    start = time.time() + 0.2
    pad = "x" * 64
    late = [0]

    def run(k):
        c = Conn(endpoint)
        for i in range(k, total, threads):
            due = start + i / rate
            d = due - time.time()
            if d > 0:
                time.sleep(d)
            elif d < -0.005:
                late[0] += 1
            t = time.time()
            data = json.dumps({"i": i, "t": t, "pad": pad}).encode()
            c.call("PutRecord", {"StreamName": stream, "PartitionKey": "lat-%d" % (i % 16),
                                 "Data": base64.b64encode(data).decode()})

    ths = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    q.put({"sent": total, "late_sends": late[0], "seconds": time.time() - start})


def phase_latency(a):
    stream = "bench-latency"
    shards = create_stream(a.endpoint, stream, 1)
    total = int(a.rate * a.lat_seconds)
    q_c, q_p = mp.Queue(), mp.Queue()
    ready = mp.Event()
    cons = mp.Process(target=consumer, args=(a.endpoint, stream, shards[0], total, a.lat_seconds + 30, ready, q_c))
    cons.start()
    assert ready.wait(30), "consumer did not start"
    prod = mp.Process(target=paced_producer, args=(a.endpoint, stream, a.rate, a.lat_seconds, 8, q_p))
    prod.start()
    p = q_p.get()
    c = q_c.get()
    prod.join()
    cons.join()
    lats = sorted(c["lat"])
    return {
        "sent": p["sent"],
        "received": c["received"],
        "late_sends": p["late_sends"],
        "send_rate": p["sent"] / p["seconds"],
        "polls": c["polls"],
        "p50_ms": 1000 * pct(lats, 50),
        "p99_ms": 1000 * pct(lats, 99),
        "max_ms": 1000 * lats[-1] if lats else None,
    }


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def server_cpu(pid):
    """utime + stime of the server process (all its threads), seconds; None without --server-pid."""
    if not pid:
        return None
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_cpu():
    import resource

    ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(r.ru_utime + r.ru_stime for r in ru)


def measured(a, phase, fn, *args):
    s0, c0 = server_cpu(a.server_pid), client_cpu()
    res = fn(*args)
    s1, c1 = server_cpu(a.server_pid), client_cpu()
    res["client_cpu_s"] = c1 - c0
    if s0 is not None:
        res["server_cpu_s"] = s1 - s0
        if res.get("records"):
            res["server_cpu_us_per_record"] = 1e6 * (s1 - s0) / res["records"]
    return res


def machine_load():
    """1-minute load average and the number of rustc processes (builds skew numbers on 2 cores)."""
    with open("/proc/loadavg") as f:
        load1 = float(f.read().split()[0])
    rustc = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/comm" % d) as f:
                    rustc += f.read().strip() == "rustc"
            except OSError:
                pass
    return {"load1": load1, "rustc": rustc}


def cmd_run(a):
    out = {"label": a.label, "params": {k: v for k, v in vars(a).items() if k not in ("func",)},
           "machine_before": machine_load()}
    stream = "bench-put"
    shards = create_stream(a.endpoint, stream, a.shards)
    print("[%s] put: %d producers x PutRecords(%d x %d B) for %ds into %d shards"
          % (a.label, a.producers, a.batch, a.size, a.put_seconds, a.shards), file=sys.stderr, flush=True)
    out["put"] = measured(a, "put", phase_put, a, stream)
    print("[%s] put: %.0f records/s, %.1f MB/s" % (a.label, out["put"]["records_per_s"], out["put"]["mb_per_s"]),
          file=sys.stderr, flush=True)
    out["get"] = measured(a, "get", phase_get, a, stream, shards, out["put"]["records"])
    print("[%s] get: %.0f records/s, %.1f MB/s" % (a.label, out["get"]["records_per_s"], out["get"]["mb_per_s"]),
          file=sys.stderr, flush=True)
    out["latency"] = measured(a, "latency", phase_latency, a)
    print("[%s] latency: p50 %.2f ms, p99 %.2f ms (%d/%d received)" % (
        a.label, out["latency"]["p50_ms"], out["latency"]["p99_ms"], out["latency"]["received"],
        out["latency"]["sent"]), file=sys.stderr, flush=True)
    out["machine_after"] = machine_load()
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


# --- report ----------------------------------------------------------------------------------------

METRICS = [
    # (title, phase, key, unit, higher is better, digits)
    ("PutRecords throughput", "put", "records_per_s", "records/s", True, 0),
    ("PutRecords throughput", "put", "mb_per_s", "MB/s", True, 1),
    ("PutRecords call p50 (500 records)", "put", "call_p50_ms", "ms", False, 1),
    ("PutRecords server CPU per record", "put", "server_cpu_us_per_record", "µs", False, 2),
    ("PutRecords client CPU (all producers)", "put", "client_cpu_s", "s", False, 1),
    ("GetRecords throughput (Limit 10000)", "get", "records_per_s", "records/s", True, 0),
    ("GetRecords throughput (Limit 10000)", "get", "mb_per_s", "MB/s", True, 1),
    ("GetRecords server CPU per record", "get", "server_cpu_us_per_record", "µs", False, 2),
    ("Put-to-get latency p50 @ 1,000 rec/s", "latency", "p50_ms", "ms", False, 2),
    ("Put-to-get latency p99 @ 1,000 rec/s", "latency", "p99_ms", "ms", False, 2),
]


def cmd_report(a):
    runs = {}
    for path in a.results:
        with open(path) as f:
            r = json.load(f)
        runs.setdefault(r["label"], []).append(r)
    v, k = runs.get("vidgest", []), runs.get("kinesalite", [])
    lines = []
    if a.header:
        with open(a.header) as f:
            lines += [f.read().rstrip("\n"), ""]
    lines += ["Medians of %d vidgest and %d kinesalite runs." % (len(v), len(k)), "",
              "| metric | unit | vidgest | kinesalite | vidgest / kinesalite |",
              "| --- | --- | ---: | ---: | ---: |"]

    def med(rs, phase, key):
        vals = [r[phase][key] for r in rs if r.get(phase) and r[phase].get(key) is not None]
        return statistics.median(vals) if vals else None

    for title, phase, key, unit, _, dg in METRICS:
        mv, mk = med(v, phase, key), med(k, phase, key)
        ratio = "%.1fx" % (mv / mk) if mv is not None and mk else "n/a"
        f = lambda x: "n/a" if x is None else ("{:,.%df}" % dg).format(x)  # noqa: E731
        lines.append("| %s | %s | %s | %s | %s |" % (title, unit, f(mv), f(mk), ratio))
    lines.append("")

    put_ratio = (med(v, "put", "records_per_s") or 0) / (med(k, "put", "records_per_s") or float("inf"))
    p99 = med(v, "latency", "p99_ms")
    cv, ck = med(v, "put", "server_cpu_us_per_record"), med(k, "put", "server_cpu_us_per_record")
    lines += ["Targets: PutRecords throughput >= 50x kinesalite: **%s** (%.1fx); "
              "put-to-get p99 < 10 ms: **%s** (%s ms)." % (
                  "met" if put_ratio >= 50 else "NOT met", put_ratio,
                  "met" if p99 is not None and p99 < 10 else "NOT met", "n/a" if p99 is None else "%.2f" % p99), ""]
    if cv and ck:
        lines += ["Server CPU time per PutRecords record, kinesalite / vidgest: %.1fx (less sensitive to the "
                  "client and to other load on the 2 shared cores than the throughput ratio)." % (ck / cv), ""]
    lines += ["Per run:", "", "| target | run | put rec/s | put MB/s | get rec/s | get MB/s | p50 ms | p99 ms | "
              "max ms | latency records received | load1 before/after | rustc before/after |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label in ("vidgest", "kinesalite"):
        for i, r in enumerate(runs.get(label, []), 1):
            L = r["latency"]
            mb, ma = r.get("machine_before", {}), r.get("machine_after", {})
            lines.append("| %s | %d | %.0f | %.1f | %.0f | %.1f | %.2f | %.2f | %.2f | %d/%d | %s/%s | %s/%s |" % (
                label, i, r["put"]["records_per_s"], r["put"]["mb_per_s"], r["get"]["records_per_s"],
                r["get"]["mb_per_s"], L["p50_ms"], L["p99_ms"], L["max_ms"] or float("nan"), L["received"], L["sent"],
                mb.get("load1", "?"), ma.get("load1", "?"), mb.get("rustc", "?"), ma.get("rustc", "?")))
    text = "\n".join(lines) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--endpoint", required=True)
    r.add_argument("--label", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--producers", type=int, default=4)
    r.add_argument("--batch", type=int, default=500)
    r.add_argument("--size", type=int, default=1024)
    r.add_argument("--shards", type=int, default=4)
    r.add_argument("--put-seconds", type=float, default=10)
    r.add_argument("--rate", type=float, default=1000)
    r.add_argument("--lat-seconds", type=float, default=10)
    r.add_argument("--server-pid", type=int, default=0, help="account the server's CPU time per phase")
    r.set_defaults(func=cmd_run)
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    p.add_argument("--header", default="")
    p.add_argument("results", nargs="+")
    p.set_defaults(func=cmd_report)
    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
