"""Shared helpers for the Kinesis-compatible API client scripts (boto3, aws-cli, raw HTTP).

Runs inside vendor/venv (scripts/bootstrap). Only the standard library plus boto3/botocore.
"""

import base64
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

import boto3
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV_BIN = os.path.dirname(sys.executable)
AWS = os.path.join(VENV_BIN, "aws")

CREDS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
for _k, _v in CREDS.items():
    os.environ.setdefault(_k, _v)
# never pick up a developer's ~/.aws profile or a real endpoint
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_ENDPOINT_URL_KINESIS", None)


def client(endpoint, validate=True, retries=1, pool=10, timeout=30):
    """A stock boto3 Kinesis client pointed at `endpoint`.

    retries=1 means exactly one attempt: a test must see every failure (and a retried PutRecords
    would write its records twice when the first attempt was persisted but its answer was lost).
    validate=False switches off botocore's client-side parameter checks so invalid requests reach
    the server (that is how the error cases are sent with a real client).
    """
    cfg = Config(
        retries={"total_max_attempts": retries, "mode": "standard"},
        parameter_validation=validate,
        max_pool_connections=pool,
        connect_timeout=timeout,
        read_timeout=timeout,
    )
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"],
        config=cfg,
    )


def aws(endpoint, *args, check=True):
    """Runs `aws kinesis ARGS --endpoint-url E --output json`; returns parsed JSON (or None)."""
    cmd = [AWS, "kinesis", *args, "--endpoint-url", endpoint, "--output", "json"]
    env = dict(os.environ)
    env.update(CREDS)
    env["AWS_MAX_ATTEMPTS"] = "1"
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(
            "aws-cli failed (rc %d): %s\nstdout: %s\nstderr: %s"
            % (p.returncode, " ".join(args), p.stdout, p.stderr)
        )
    if not check:
        return p
    out = p.stdout.strip()
    return json.loads(out) if out else None


def fake_auth_headers():
    """Headers a signing client would send. kinesalite insists on their presence (not validity);
    a local vidgest without tokens ignores them."""
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return {
        "X-Amz-Date": amz_date,
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/%s/us-east-1/kinesis/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=%s"
        % (amz_date[:8], "0" * 64),
    }


def raw_post(endpoint, target, body, content_type="application/x-amz-json-1.1", headers=None):
    """POST / with X-Amz-Target; returns (status, headers{lower: value}, parsed JSON or raw text)."""
    u = urllib.parse.urlparse(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    h = {"Content-Type": content_type, **fake_auth_headers()}
    if target is not None:
        h["X-Amz-Target"] = target
    if headers:
        h.update(headers)
    if isinstance(body, str):
        body = body.encode()
    conn.request("POST", "/", body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data.decode(errors="replace")
    return r.status, hdrs, parsed


def error_code(exc):
    """(code, HTTP status, message) of a botocore ClientError."""
    err = exc.response.get("Error", {})
    return (
        err.get("Code"),
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        err.get("Message"),
    )


def expect_error(fn, code, status=400):
    """Calls fn(); it must raise a ClientError with `code` and HTTP `status`. Returns the message."""
    from botocore.exceptions import ClientError

    try:
        r = fn()
    except ClientError as e:
        got = error_code(e)
        assert got[0] == code and got[1] == status, "expected %s/%d, got %r" % (code, status, got)
        return got[2]
    raise AssertionError("expected %s, call succeeded: %r" % (code, r))


def wait_active(c, name, timeout=30):
    deadline = time.time() + timeout
    while True:
        s = c.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if s["StreamStatus"] == "ACTIVE":
            return s
        if time.time() > deadline:
            raise AssertionError("stream %s not ACTIVE after %ds: %r" % (name, timeout, s))
        time.sleep(0.05)


def shard_for_key(key, shards):
    """The shard that real Kinesis routes `key` to: MD5 as a 128-bit big-endian int in the
    inclusive [StartingHashKey, EndingHashKey] of an open shard."""
    h = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
    for s in shards:
        r = s["HashKeyRange"]
        if int(r["StartingHashKey"]) <= h <= int(r["EndingHashKey"]):
            return s["ShardId"]
    raise AssertionError("no shard covers hash %d of %r" % (h, key))


def read_shard(c, stream, shard_id, it_type="TRIM_HORIZON", limit=10000, max_empty=2, **kw):
    """Reads a shard from `it_type` until caught up (MillisBehindLatest == 0 and an empty page, or
    `max_empty` empty pages). Returns (records, pages, last NextShardIterator)."""
    it = c.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType=it_type, **kw)[
        "ShardIterator"
    ]
    out, pages, empty = [], 0, 0
    while True:
        r = c.get_records(ShardIterator=it, Limit=limit)
        pages += 1
        out.extend(r["Records"])
        it = r.get("NextShardIterator")
        if not r["Records"]:
            empty += 1
            if r.get("MillisBehindLatest", 0) == 0 or empty >= max_empty:
                return out, pages, it
        else:
            empty = 0
        if it is None:
            return out, pages, it


def b64(b):
    return base64.b64encode(b).decode()


class Check:
    """Named checks, one line each. A failed check is reported and the run goes on (so one run
    lists every deviation); finish() exits 1 when any failed. Steps that later steps depend on
    still raise."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.n = 0
        self.failed = []

    def __call__(self, name, cond, detail=""):
        self.n += 1
        if cond:
            print("%s: ok %s" % (self.prefix, name), flush=True)
        else:
            self.failed.append((name, detail))
            print("%s: FAIL %s %s" % (self.prefix, name, detail), flush=True)
        return cond

    def error(self, name, fn, code, status=400, message_contains=None):
        """fn() must fail with error `code` and HTTP `status` (and a message containing
        `message_contains` when given)."""
        from botocore.exceptions import ClientError

        try:
            r = fn()
        except ClientError as e:
            got = error_code(e)
            ok = got[0] == code and got[1] == status
            if message_contains is not None:
                ok = ok and message_contains in (got[2] or "")
            return self(name, ok, "expected %s/HTTP %d%s, got %s/HTTP %s: %s" % (
                code, status, "" if message_contains is None else " with %r" % message_contains,
                got[0], got[1], got[2]))
        r.pop("ResponseMetadata", None)
        return self(name, False, "expected %s/HTTP %d, the call succeeded: %s" % (code, status, repr(r)[:300]))

    def finish(self, seconds):
        if self.failed:
            print("%s: %d of %d checks FAILED:" % (self.prefix, len(self.failed), self.n))
            for name, detail in self.failed:
                print("  - %s %s" % (name, detail))
            sys.exit(1)
        print("%s: %d checks passed in %.1fs" % (self.prefix, self.n, seconds))
