"""The Kinesis-Video-compatible API driven by stock boto3 clients, the way KVS consumer code calls
it: `kinesisvideo` for the control plane, get_data_endpoint, then a `kinesis-video-archived-media`
client on that endpoint for ListFragments and GetClip (the clip checked with ffprobe/ffmpeg).

Run by tests/kvs_api.rs against a daemon recording the cameras named by --streams, with a read
token. --expect is JSON {camera: [{n, producer_ns, server_ns, size, duration_ns}, ...]}: fragments
already in the store, oldest first; ListFragments over their time range must return exactly them.

With --control PHASE (and --writer, a write token) it runs the control-plane checks instead, one
phase per daemon start: "change" (UpdateDataRetention, TagStream, UntagStream and their errors),
"restarted" (the changes survived a restart with the same config) and "config-changed" (the config's
new retention replaced the API's); --retention-hours is the configured retention of that start.

Prints "kvs: ok <check>" per check and "checks passed" at the end; exits 1 on the first failure.
Runs inside vendor/venv (scripts/bootstrap): standard library plus boto3/botocore.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvs_common import UTC, check, data_endpoint, expect_error, fail, make_client, ok, page_through, set_prefix, when  # noqa: E402

set_prefix("kvs")
VENV_BIN = os.path.dirname(sys.executable)
AWS = os.path.join(VENV_BIN, "aws")
ARN = re.compile(r"^arn:aws:kinesisvideo:us-east-1:000000000000:stream/([^/]+)/(\d+)$")


def ms(ns):
    return ns // 1_000_000


def check_fragments(got, want, what):
    check(
        [f["FragmentNumber"] for f in got] == [str(f["n"]) for f in want],
        f"{what}: numbers {[f['FragmentNumber'] for f in got]} != {[f['n'] for f in want]}",
    )
    for g, w in zip(got, want):
        check(g["FragmentSizeInBytes"] == w["size"], f"{what}: size of {w['n']}: {g}")
        check(
            g["FragmentLengthInMilliseconds"] == w["duration_ns"] // 1_000_000,
            f"{what}: length of {w['n']}: {g}",
        )
        for key, field in (("ProducerTimestamp", "producer_ns"), ("ServerTimestamp", "server_ns")):
            t = g[key]
            check(isinstance(t, datetime.datetime), f"{what}: {key} not parsed: {g}")
            got_ms = round(t.timestamp() * 1000)
            check(got_ms == ms(w[field]), f"{what}: {key} of {w['n']}: {t} vs {w[field]} ns")


TAGS = {"site": "north/gate", "owner": "ops@example.com", "zone": "1"}


def control_checks(a, name):
    """UpdateDataRetention and the tag operations on stream `name`, per phase (see the module doc)."""
    kv = make_client("kinesisvideo", a.endpoint, a.writer)
    reader = make_client("kinesisvideo", a.endpoint, a.reader)
    loose = make_client("kinesisvideo", a.endpoint, a.writer, validate=False)
    info = kv.describe_stream(StreamName=name)["StreamInfo"]
    if a.control == "change":
        check(info["Version"] == "1", f"first version: {info}")
        check(info["DataRetentionInHours"] == a.retention_hours, f"retention: {info}")
        kv.update_data_retention(
            StreamName=name,
            CurrentVersion="1",
            Operation="INCREASE_DATA_RETENTION",
            DataRetentionChangeInHours=3,
        )
        info = kv.describe_stream(StreamName=name)["StreamInfo"]
        check(info["Version"] == "2", f"version after the change: {info}")
        check(info["DataRetentionInHours"] == a.retention_hours + 3, f"increased: {info}")
        # by ARN, decreasing
        kv.update_data_retention(
            StreamARN=info["StreamARN"],
            CurrentVersion="2",
            Operation="DECREASE_DATA_RETENTION",
            DataRetentionChangeInHours=1,
        )
        info = kv.describe_stream(StreamName=name)["StreamInfo"]
        check(info["Version"] == "3", f"version after the second change: {info}")
        check(info["DataRetentionInHours"] == a.retention_hours + 2, f"decreased: {info}")
        expect_error(
            "VersionMismatchException",
            lambda: kv.update_data_retention(
                StreamName=name,
                CurrentVersion="2",
                Operation="INCREASE_DATA_RETENTION",
                DataRetentionChangeInHours=1,
            ),
        )
        # down to 0 hours (no persistence) is refused, as is more than 87600 hours
        for op, hours in (
            ("DECREASE_DATA_RETENTION", a.retention_hours + 2),
            ("INCREASE_DATA_RETENTION", 87_600),
        ):
            expect_error(
                "InvalidArgumentException",
                lambda: kv.update_data_retention(
                    StreamName=name, CurrentVersion="3", Operation=op, DataRetentionChangeInHours=hours
                ),
                field="DataRetentionChangeInHours",
            )
        expect_error(
            "InvalidArgumentException",
            lambda: loose.update_data_retention(
                StreamName=name, CurrentVersion="3", Operation="DOUBLE", DataRetentionChangeInHours=1
            ),
            field="Operation",
        )
        expect_error(
            "ResourceNotFoundException",
            lambda: kv.update_data_retention(
                StreamName="no-such-cam",
                CurrentVersion="1",
                Operation="INCREASE_DATA_RETENTION",
                DataRetentionChangeInHours=1,
            ),
        )
        expect_error(
            "NotAuthorizedException",
            lambda: reader.update_data_retention(
                StreamName=name,
                CurrentVersion="3",
                Operation="INCREASE_DATA_RETENTION",
                DataRetentionChangeInHours=1,
            ),
        )
        check(kv.describe_stream(StreamName=name)["StreamInfo"] == info, "a refused change changed the stream")
        ok("update_data_retention (increase, decrease by ARN, version mismatch, limits, auth)")

        kv.tag_stream(StreamName=name, Tags=dict(TAGS, temp="x"))
        kv.untag_stream(StreamARN=info["StreamARN"], TagKeyList=["temp", "never-set"])
        tags = reader.list_tags_for_stream(StreamName=name)
        check(tags["Tags"] == TAGS and "NextToken" not in tags, f"list_tags_for_stream: {tags}")
        check(
            reader.list_tags_for_stream(StreamARN=info["StreamARN"])["Tags"] == TAGS,
            "list_tags_for_stream by ARN",
        )
        more = {f"k{i}": "" for i in range(50 - len(TAGS) + 1)}
        expect_error("TagsPerResourceExceededLimitException", lambda: kv.tag_stream(StreamName=name, Tags=more))
        expect_error(
            "TagsPerResourceExceededLimitException",
            lambda: loose.tag_stream(StreamName=name, Tags={f"k{i}": "" for i in range(51)}),
        )
        expect_error(
            "InvalidArgumentException",
            lambda: loose.tag_stream(StreamName=name, Tags={"k" * 129: "v"}),
            field="Tags",
        )
        expect_error(
            "InvalidArgumentException",
            lambda: kv.tag_stream(StreamName=name, Tags={"semi;colon": "v"}),
            field="Tags",
        )
        expect_error(
            "InvalidArgumentException",
            lambda: loose.tag_stream(StreamName=name, Tags={"k": "v" * 257}),
            field="Tags.k",
        )
        expect_error(
            "InvalidArgumentException", lambda: loose.untag_stream(StreamName=name, TagKeyList=[]), field="TagKeyList"
        )
        expect_error("ResourceNotFoundException", lambda: kv.tag_stream(StreamName="no-such-cam", Tags=TAGS))
        expect_error("ResourceNotFoundException", lambda: kv.list_tags_for_stream(StreamName="no-such-cam"))
        expect_error("NotAuthorizedException", lambda: reader.tag_stream(StreamName=name, Tags=TAGS))
        expect_error("NotAuthorizedException", lambda: reader.untag_stream(StreamName=name, TagKeyList=["site"]))
        check(reader.list_tags_for_stream(StreamName=name)["Tags"] == TAGS, "a refused tag change changed the tags")
        # the aws CLI too
        out = subprocess.run(
            [AWS, "kinesisvideo", "list-tags-for-stream", "--stream-name", name, "--endpoint-url", a.endpoint,
             "--region", "us-east-1", "--output", "json"],
            env=dict(os.environ, AWS_ACCESS_KEY_ID=a.reader, AWS_SECRET_ACCESS_KEY="test"),
            capture_output=True, text=True, timeout=60,
        )
        check(out.returncode == 0 and json.loads(out.stdout)["Tags"] == TAGS, f"aws cli: {out}")
        ok("tag_stream, untag_stream, list_tags_for_stream (limits, keys, values, auth, aws cli)")
    elif a.control == "restarted":
        check(info["Version"] == "3", f"version after a restart: {info}")
        check(info["DataRetentionInHours"] == a.retention_hours + 2, f"retention after a restart: {info}")
        check(reader.list_tags_for_stream(StreamName=name)["Tags"] == TAGS, "tags after a restart")
        ok("retention and tags survive a restart")
    elif a.control == "config-changed":
        check(info["Version"] == "4", f"version after the config change: {info}")
        check(info["DataRetentionInHours"] == a.retention_hours, f"the config's retention wins: {info}")
        check(reader.list_tags_for_stream(StreamName=name)["Tags"] == TAGS, "tags after a config change")
        ok("a changed config retention replaces the API's")
    else:
        fail(f"unknown --control phase {a.control}")
    print("checks passed", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--reader", required=True)
    p.add_argument("--writer")
    p.add_argument("--streams", required=True, help="comma-separated camera names")
    p.add_argument("--retention-hours", type=int, required=True)
    p.add_argument("--expect")
    p.add_argument("--control", help="change | restarted | config-changed")
    a = p.parse_args()
    if a.control:
        return control_checks(a, a.streams.split(",")[0])
    streams = a.streams.split(",")
    expect = json.loads(a.expect)

    kv = make_client("kinesisvideo", a.endpoint, a.reader)

    # ListStreams: every camera, also one page at a time
    infos = kv.list_streams()["StreamInfoList"]
    check(sorted(i["StreamName"] for i in infos) == sorted(streams), f"list_streams: {infos}")
    paged, _ = page_through(kv.list_streams, "StreamInfoList", "list_streams", len(streams), {"MaxResults": 1})
    check([i["StreamName"] for i in paged] == sorted(streams), f"list_streams paged: {paged}")
    prefix = kv.list_streams(
        StreamNameCondition={"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": streams[0]}
    )["StreamInfoList"]
    check([i["StreamName"] for i in prefix] == [streams[0]], f"StreamNameCondition: {prefix}")
    ok("list_streams (paged, name condition)")

    # DescribeStream by name and by ARN
    now = datetime.datetime.now(tz=UTC)
    for info in infos:
        name = info["StreamName"]
        m = ARN.match(info["StreamARN"])
        check(m and m.group(1) == name, f"ARN of {name}: {info}")
        check(info["Status"] == "ACTIVE", f"status: {info}")
        check(info["MediaType"] == "video/h264", f"media type: {info}")
        check(info["DataRetentionInHours"] == a.retention_hours, f"retention: {info}")
        created = info["CreationTime"]
        check(
            isinstance(created, datetime.datetime)
            and now - datetime.timedelta(hours=1) < created <= now + datetime.timedelta(seconds=5)
            and int(m.group(2)) == round(created.timestamp() * 1000),
            f"creation time: {info}",
        )
        by_name = kv.describe_stream(StreamName=name)["StreamInfo"]
        by_arn = kv.describe_stream(StreamARN=info["StreamARN"])["StreamInfo"]
        check(by_name == info == by_arn, f"describe {name}: {by_name} / {by_arn} / {info}")
    ok("describe_stream (name, ARN)")

    # GetDataEndpoint: every API is this daemon
    endpoints = {
        data_endpoint(kv, streams[0], api)
        for api in ("LIST_FRAGMENTS", "GET_MEDIA", "GET_CLIP", "GET_HLS_STREAMING_SESSION_URL")
    }
    check(endpoints == {a.endpoint}, f"data endpoints: {endpoints}")
    endpoint = endpoints.pop()
    ok("get_data_endpoint")

    am = make_client("kinesis-video-archived-media", endpoint, a.reader)
    for name, want in expect.items():
        check(len(want) >= 5, f"too few fragments to test with: {want}")
        for selector, field in (("PRODUCER_TIMESTAMP", "producer_ns"), ("SERVER_TIMESTAMP", "server_ns")):
            sel = {
                "FragmentSelectorType": selector,
                "TimestampRange": {
                    "StartTimestamp": when(want[0][field]),
                    "EndTimestamp": when(want[-1][field], up=True),
                },
            }
            out = am.list_fragments(StreamName=name, FragmentSelector=sel)
            check("NextToken" not in out, f"one page expected: {out}")
            check_fragments(out["Fragments"], want, f"{name} {selector}")
            # paging, two at a time; later pages need only the token
            got, pages = page_through(
                am.list_fragments,
                "Fragments",
                "list_fragments",
                len(want),
                {"StreamName": name, "MaxResults": 2, "FragmentSelector": sel},
                {"StreamName": name, "MaxResults": 2},
            )
            check(pages == -(-len(want) // 2), f"{pages} pages for {len(want)} fragments")
            check_fragments(got, want, f"{name} {selector} paged")
            # the range bounds are inclusive start times: dropping the first by 1 ms drops it
            inner = dict(sel, TimestampRange={
                "StartTimestamp": when(want[0][field] + 1_000_000, up=True),
                "EndTimestamp": when(want[-1][field], up=True),
            })
            out = am.list_fragments(StreamName=name, FragmentSelector=inner)
            check_fragments(out["Fragments"], want[1:], f"{name} {selector} inner range")
        ok(f"list_fragments {name} (both selectors, paging by 2)")
        arn = kv.describe_stream(StreamName=name)["StreamInfo"]["StreamARN"]
        by_arn = am.list_fragments(StreamARN=arn, FragmentSelector=sel)
        check_fragments(by_arn["Fragments"], want, f"{name} by ARN")
    ok("list_fragments by ARN")

    # GetClip: the recorded range as one MP4, as long as its fragments (within one or two)
    name, want = next(iter(expect.items()))
    clip_sel = {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {
            "StartTimestamp": when(want[0]["producer_ns"]),
            "EndTimestamp": when(want[-1]["producer_ns"], up=True),
        },
    }
    out = am.get_clip(StreamName=name, ClipFragmentSelector=clip_sel)
    check(out["ContentType"] == "video/mp4", f"get_clip content type: {out['ContentType']}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = os.path.join(tmp, "clip.mp4")
        with open(clip, "wb") as f:
            for chunk in out["Payload"].iter_chunks():
                f.write(chunk)
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", clip],
            capture_output=True, text=True,
        )
        check(probe.returncode == 0, f"ffprobe of the clip: {probe.stderr}")
        duration = float(json.loads(probe.stdout)["format"]["duration"])
        expected = sum(f["duration_ns"] for f in want) / 1e9
        longest = max(f["duration_ns"] for f in want) / 1e9
        check(
            abs(duration - expected) <= 2 * longest,
            f"get_clip duration {duration}s vs {expected}s of fragments",
        )
        decode = subprocess.run(
            ["ffmpeg", "-v", "error", "-xerror", "-i", clip, "-f", "null", "-"],
            capture_output=True, text=True,
        )
        check(decode.returncode == 0 and not decode.stderr.strip(), f"ffmpeg decode: {decode.stderr}")
    arn = kv.describe_stream(StreamName=name)["StreamInfo"]["StreamARN"]
    by_arn = am.get_clip(StreamARN=arn, ClipFragmentSelector=clip_sel)
    check(by_arn["ContentType"] == "video/mp4" and by_arn["Payload"].read(8)[4:] == b"ftyp",
          "get_clip by ARN does not start with ftyp")
    ok(f"get_clip {name} ({duration:.2f}s of {expected:.2f}s, decodes cleanly; by ARN)")
    expect_error(
        "ResourceNotFoundException",
        lambda: am.get_clip(StreamName="no-such-cam", ClipFragmentSelector=clip_sel),
    )
    empty_sel = dict(clip_sel, TimestampRange={
        "StartTimestamp": when(want[0]["producer_ns"] - 3600 * 10**9),
        "EndTimestamp": when(want[0]["producer_ns"] - 3599 * 10**9),
    })
    msg = expect_error(
        "ResourceNotFoundException",
        lambda: am.get_clip(StreamName=name, ClipFragmentSelector=empty_sel),
    )
    check("No fragments found" in msg, f"empty range message: {msg}")
    long_sel = dict(clip_sel, TimestampRange={
        "StartTimestamp": when(want[0]["producer_ns"] - 25 * 3600 * 10**9),
        "EndTimestamp": when(want[-1]["producer_ns"], up=True),
    })
    expect_error(
        "InvalidArgumentException",
        lambda: am.get_clip(StreamName=name, ClipFragmentSelector=long_sel),
        field="TimestampRange",
    )
    loose_clip = make_client("kinesis-video-archived-media", endpoint, a.reader, validate=False)
    expect_error(
        "InvalidArgumentException",
        lambda: loose_clip.get_clip(StreamName=name),
        field="ClipFragmentSelector",
    )
    ok("get_clip errors (unknown stream, empty range, more than 24 h, no selector)")

    # aws-cli, whose paginator sends the selector again along with each NextToken; it sends
    # timestamps as whole seconds, so the range is whole seconds inside the recorded one
    name, want = next(iter(expect.items()))
    start_s = -(-want[0]["producer_ns"] // 10**9)
    end_s = want[-1]["producer_ns"] // 10**9
    inside = [f for f in want if start_s * 10**9 <= f["producer_ns"] <= end_s * 10**9]
    check(len(inside) >= 2, f"too few fragments in whole seconds {start_s}..{end_s}: {want}")
    cli = subprocess.run(
        [
            AWS, "--endpoint-url", endpoint, "--output", "json",
            "kinesis-video-archived-media", "list-fragments", "--stream-name", name,
            "--page-size", "1", "--fragment-selector",
            json.dumps({
                "FragmentSelectorType": "PRODUCER_TIMESTAMP",
                "TimestampRange": {
                    "StartTimestamp": datetime.datetime.fromtimestamp(start_s, tz=UTC).isoformat(),
                    "EndTimestamp": datetime.datetime.fromtimestamp(end_s, tz=UTC).isoformat(),
                },
            }),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, AWS_ACCESS_KEY_ID=a.reader, AWS_SECRET_ACCESS_KEY="x",
                 AWS_DEFAULT_REGION="us-east-1"),
    )
    check(cli.returncode == 0, f"aws list-fragments: {cli.stderr}")
    numbers = [f["FragmentNumber"] for f in json.loads(cli.stdout)["Fragments"]]
    check(numbers == [str(f["n"]) for f in inside], f"aws list-fragments: {numbers} vs {inside}")
    ok("aws-cli list-fragments (auto-paginated by 1)")

    # errors
    expect_error("ResourceNotFoundException", lambda: kv.describe_stream(StreamName="no-such-cam"))
    expect_error(
        "ResourceNotFoundException",
        lambda: kv.describe_stream(
            StreamARN="arn:aws:kinesisvideo:us-east-1:000000000000:stream/no-such-cam/1"
        ),
    )
    expect_error(
        "ResourceNotFoundException",
        lambda: kv.get_data_endpoint(StreamName="no-such-cam", APIName="LIST_FRAGMENTS"),
    )
    expect_error(
        "ResourceNotFoundException",
        lambda: am.list_fragments(StreamName="no-such-cam", FragmentSelector=sel),
    )
    first = am.list_fragments(StreamName=streams[0], MaxResults=1, FragmentSelector=sel)
    expect_error(
        "InvalidArgumentException",
        lambda: am.list_fragments(StreamName=streams[1], NextToken=first["NextToken"]),
        field="NextToken",
    )
    loose_am = make_client("kinesis-video-archived-media", endpoint, a.reader, validate=False)
    loose_kv = make_client("kinesisvideo", a.endpoint, a.reader, validate=False)
    for bad in (0, 1001):
        expect_error(
            "InvalidArgumentException",
            lambda: loose_am.list_fragments(StreamName=streams[0], MaxResults=bad, FragmentSelector=sel),
            field="MaxResults",
        )
    expect_error(
        "InvalidArgumentException",
        lambda: loose_am.list_fragments(StreamName=streams[0], NextToken="not-a-token"),
        field="NextToken",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: loose_am.list_fragments(StreamName=streams[0]),
        field="FragmentSelector",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: loose_am.list_fragments(
            StreamName=streams[0],
            FragmentSelector=dict(sel, FragmentSelectorType="ARRIVAL_TIME"),
        ),
        field="FragmentSelectorType",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: loose_kv.get_data_endpoint(StreamName=streams[0], APIName="NOPE"),
        field="APIName",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: loose_kv.list_streams(MaxResults=0),
        field="MaxResults",
    )
    ok("errors (unknown stream, bad MaxResults, token, token of another stream, selector, APIName)")

    # auth: the read token is needed
    anon = make_client("kinesisvideo", a.endpoint, None, unsigned=True)
    expect_error("NotAuthorizedException", lambda: anon.list_streams())
    wrong = make_client("kinesis-video-archived-media", endpoint, "not-a-token-at-all")
    expect_error(
        "NotAuthorizedException",
        lambda: wrong.list_fragments(StreamName=streams[0], FragmentSelector=sel),
    )
    ok("auth")
    print("checks passed", flush=True)


if __name__ == "__main__":
    main()
