"""Helpers for the delivery tests (tests/delivery_dir.rs, tests/delivery_s3.rs).

Subcommands (run inside vendor/venv):
  put       --endpoint E --stream S --first N --count C --keys a,b [--pad BYTES] [--no-field IDS]
            PutRecords through the Kinesis API (boto3), 500 per call; record i is
            {"id": i, "camera": <key>, "pad": ...}; ids listed in --no-field have no "camera".
            Prints `acked <n>`; fails when any record is refused.
  put-loop  --endpoint E --stream S --keys a,b --acked FILE
            Puts batches of 50 until stdin closes, surviving a daemon that dies and comes back.
            Every record has a fresh id (a failed call is never repeated with the same ids, so a
            duplicate in the output can only come from delivery); ids of acknowledged records are
            appended to FILE, one a line, after each acknowledged call.
  moto      --port P
            An S3 server (moto) on 127.0.0.1:P for as long as stdin stays open (so it dies with the
            test process); prints `ready` once it answers.
  s3-create --endpoint E --bucket B
  s3-dump   --endpoint E --bucket B --out DIR
            Downloads every object to DIR/<key>; prints one JSON line per object with its key and
            head_object's ServerSideEncryption and StorageClass.
"""

import argparse
import json
import os
import sys
import threading
import time

import boto3
from botocore.config import Config

os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
for _k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_k, None)


def aws(service, endpoint, timeout=30):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout,
            s3={"addressing_style": "path"},
        ),
    )


def record(i, keys, pad, no_field):
    key = keys[i % len(keys)]
    body = {"id": i, "pad": "x" * pad}
    if i not in no_field:
        body["camera"] = key
    return {"Data": json.dumps(body).encode(), "PartitionKey": f"{key}-{i % 7}"}


def put(args):
    kin = aws("kinesis", args.endpoint)
    keys = args.keys.split(",")
    no_field = {int(x) for x in args.no_field.split(",") if x}
    ids = list(range(args.first, args.first + args.count))
    acked = 0
    for start in range(0, len(ids), 500):
        batch = [record(i, keys, args.pad, no_field) for i in ids[start : start + 500]]
        r = kin.put_records(StreamName=args.stream, Records=batch)
        if r["FailedRecordCount"]:
            failed = [e for e in r["Records"] if "ErrorCode" in e]
            sys.exit(f"{len(failed)} records refused: {failed[:3]}")
        acked += len(batch)
    print(f"acked {acked}")


def put_loop(args):
    kin = aws("kinesis", args.endpoint, timeout=5)
    keys = args.keys.split(",")
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    next_id = 0
    acked = failed_calls = 0
    with open(args.acked, "a", buffering=1) as out:
        while not stop.is_set():
            ids = list(range(next_id, next_id + 50))
            next_id += 50
            try:
                r = kin.put_records(
                    StreamName=args.stream, Records=[record(i, keys, 40, set()) for i in ids]
                )
            except Exception:  # daemon down or restarting: these ids are not acknowledged
                failed_calls += 1
                stop.wait(0.05)
                continue
            ok = [i for i, e in zip(ids, r["Records"]) if "ErrorCode" not in e]
            out.write("".join(f"{i}\n" for i in ok))
            acked += len(ok)
            stop.wait(0.01)
    print(f"acked {acked} failed_calls {failed_calls}")


def moto(args):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    s3 = aws("s3", f"http://127.0.0.1:{args.port}")
    deadline = time.monotonic() + 60
    while True:
        try:
            s3.list_buckets()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()


def s3_create(args):
    aws("s3", args.endpoint).create_bucket(Bucket=args.bucket)
    print("created")


def s3_dump(args):
    s3 = aws("s3", args.endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket)
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            head = s3.head_object(Bucket=args.bucket, Key=key)
            body = s3.get_object(Bucket=args.bucket, Key=key)["Body"].read()
            path = os.path.join(args.out, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
            print(
                json.dumps(
                    {
                        "key": key,
                        "sse": head.get("ServerSideEncryption"),
                        "storage_class": head.get("StorageClass"),
                        "size": len(body),
                    }
                )
            )


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("put")
    a.add_argument("--endpoint", required=True)
    a.add_argument("--stream", required=True)
    a.add_argument("--first", type=int, default=0)
    a.add_argument("--count", type=int, required=True)
    a.add_argument("--keys", default="cam1,cam2,cam3")
    a.add_argument("--pad", type=int, default=20)
    a.add_argument("--no-field", default="")
    a.set_defaults(f=put)
    a = sub.add_parser("put-loop")
    a.add_argument("--endpoint", required=True)
    a.add_argument("--stream", required=True)
    a.add_argument("--keys", default="cam1,cam2,cam3")
    a.add_argument("--acked", required=True)
    a.set_defaults(f=put_loop)
    a = sub.add_parser("moto")
    a.add_argument("--port", type=int, required=True)
    a.set_defaults(f=moto)
    a = sub.add_parser("s3-create")
    a.add_argument("--endpoint", required=True)
    a.add_argument("--bucket", required=True)
    a.set_defaults(f=s3_create)
    a = sub.add_parser("s3-dump")
    a.add_argument("--endpoint", required=True)
    a.add_argument("--bucket", required=True)
    a.add_argument("--out", required=True)
    a.set_defaults(f=s3_dump)
    args = p.parse_args()
    args.f(args)


if __name__ == "__main__":
    main()
