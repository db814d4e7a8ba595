"""Helpers shared by the Kinesis Video client scripts (kvs_client.py, kvs_hls.py, kvs_media.py,
kvs_images.py; firehose_client.py uses make_client): the check/report functions, their common
command line, stock boto3 clients on the daemon's endpoint, get_data_endpoint, error
expectations, timestamps and plain HTTP fetches.

The scripts are run by path: each puts its own directory on sys.path before importing this.
Importing it also keeps boto3 away from a developer's ~/.aws profile or a real endpoint.
"""

import argparse
import datetime
import os
import sys
import urllib.error
import urllib.request

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

# never pick up a developer's ~/.aws profile or a real endpoint
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
for _k in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_k, None)

UTC = datetime.timezone.utc

# what starts every "<prefix>: ok ..." / "<prefix>: FAIL ..." line; each script sets its own
_prefix = "kvs"


def set_prefix(prefix):
    global _prefix
    _prefix = prefix


def ok(what):
    print(f"{_prefix}: ok {what}", flush=True)


def fail(what):
    print(f"{_prefix}: FAIL {what}", flush=True)
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)


def make_client(service, endpoint, token, validate=True, unsigned=False):
    """A stock boto3 client; the API token is the access key id. One attempt, no retries."""
    cfg = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        parameter_validation=validate,
        connect_timeout=30,
        read_timeout=60,
        signature_version=botocore.UNSIGNED if unsigned else None,
    )
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=token or "none",
        aws_secret_access_key="test",
        config=cfg,
    )


def stream_arguments():
    """The command line of the one-stream scripts: --endpoint (the daemon's API), --reader (a read
    token), --stream and --expect (JSON: the stored fragments to check against, oldest first)."""
    p = argparse.ArgumentParser()
    for name in ("--endpoint", "--reader", "--stream", "--expect"):
        p.add_argument(name, required=True)
    return p


def data_endpoint(kv, stream, api):
    """GetDataEndpoint of `stream` for the API name `api` (e.g. GET_MEDIA), as consumer code asks."""
    return kv.get_data_endpoint(StreamName=stream, APIName=api)["DataEndpoint"]


def page_through(call, key, what, max_pages, first, later=None):
    """All items under `key` of a paged call, and how many pages it took: call(**first), then
    call(**later, NextToken=...) (`later`: `first` by default) until no NextToken comes back.
    Every page holds at most first["MaxResults"] items (when given); more than max_pages pages
    fail."""
    size = first.get("MaxResults")
    items, pages, out = [], 0, call(**first)
    while True:
        check(size is None or len(out[key]) <= size, f"{what}: page too long: {out}")
        items += out[key]
        pages += 1
        token = out.get("NextToken")
        if not token:
            return items, pages
        check(pages <= max_pages, f"{what}: paging does not end")
        out = call(**dict(first if later is None else later, NextToken=token))


def expect_error(code, call, field=None):
    """Calls `call`, which must fail with the error `code` (whose message names `field`, if
    given); returns the message."""
    try:
        out = call()
    except ClientError as e:
        got = e.response["Error"]["Code"]
        msg = e.response["Error"].get("Message", "")
        check(got == code, f"expected {code}, got {got}: {msg}")
        if field:
            check(field in msg, f"{code} message {msg!r} does not name {field}")
        return msg
    fail(f"expected {code}, got an answer: {out}")


def when(ns, up=False):
    """A datetime at microsecond precision (what botocore sends), rounded down or up."""
    us = -(-ns // 1000) if up else ns // 1000
    return datetime.datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(
        microsecond=us % 1_000_000
    )


def fetch(url):
    """(status, headers, body) without raising on HTTP errors; no credentials sent."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
