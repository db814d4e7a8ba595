"""Stock boto3 clients over HTTPS with a private CA (`verify=<ca.pem>`): kinesis list_streams,
kinesisvideo get_data_endpoint (must answer an https:// endpoint) and ListFragments on that
endpoint, then the HLS and DASH session URLs (https:// too, the HLS master playlist fetched with
the CA). Run by tests/tls.rs against a TLS daemon recording --stream, with a read token.

Prints "tls: ok <check>" per check and "checks passed" at the end; exits 1 on the first failure.
Runs inside vendor/venv (scripts/bootstrap): standard library plus boto3/botocore.
"""

import argparse
import datetime
import os
import ssl
import sys
import urllib.request

import boto3
from botocore.config import Config

# never pick up a developer's ~/.aws profile, a real endpoint or the system CA bundle
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
for _k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
    os.environ.pop(_k, None)


def ok(what):
    print("tls: ok " + what, flush=True)


def check(cond, what):
    if not cond:
        print("tls: FAIL " + what, flush=True)
        sys.exit(1)


def client(service, endpoint, token, ca):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=token,
        aws_secret_access_key="unused",
        verify=ca,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--stream", required=True)
    a = ap.parse_args()

    streams = client("kinesis", a.endpoint, a.token, a.ca).list_streams()
    check("StreamNames" in streams, f"kinesis list_streams answers: {streams}")
    ok("kinesis list_streams over https with verify=<ca>")

    kv = client("kinesisvideo", a.endpoint, a.token, a.ca)
    data = kv.get_data_endpoint(StreamName=a.stream, APIName="LIST_FRAGMENTS")["DataEndpoint"]
    check(data == a.endpoint, f"get_data_endpoint is {data!r}, expected {a.endpoint!r}")
    ok("get_data_endpoint answers " + data)

    archived = client("kinesis-video-archived-media", data, a.token, a.ca)
    now = datetime.datetime.now(datetime.timezone.utc)
    frags = archived.list_fragments(
        StreamName=a.stream,
        FragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP",
            "TimestampRange": {
                "StartTimestamp": now - datetime.timedelta(hours=1),
                "EndTimestamp": now + datetime.timedelta(minutes=1),
            },
        },
    )["Fragments"]
    check(len(frags) > 0, "list_fragments on the data endpoint finds fragments")
    ok(f"list_fragments on the https data endpoint: {len(frags)} fragment(s)")

    # session URLs follow the listener's scheme, and the player fetches them with the same CA
    hls = archived.get_hls_streaming_session_url(
        StreamName=a.stream, PlaybackMode="LIVE"
    )["HLSStreamingSessionURL"]
    check(hls.startswith(a.endpoint + "/hls/v1/"), f"HLS session URL {hls!r}")
    dash = archived.get_dash_streaming_session_url(
        StreamName=a.stream, PlaybackMode="LIVE"
    )["DASHStreamingSessionURL"]
    check(dash.startswith(a.endpoint + "/dash/v1/"), f"DASH session URL {dash!r}")
    trust = ssl.create_default_context(cafile=a.ca)
    with urllib.request.urlopen(hls, context=trust, timeout=20) as r:
        master = r.read().decode()
    check(r.status == 200 and master.startswith("#EXTM3U"), f"HLS master over https: {master!r}")
    ok("HLS and DASH session URLs are https:// and the master playlist loads")
    print("checks passed", flush=True)


if __name__ == "__main__":
    main()
