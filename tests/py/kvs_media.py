"""GetMediaForFragmentList and GetMedia driven by stock boto3 clients, the way KVS consumer code
calls them: `kinesisvideo` get_data_endpoint (APIName GET_MEDIA_FOR_FRAGMENT_LIST / GET_MEDIA),
then `kinesis-video-archived-media` / `kinesis-video-media` on that endpoint. The MKV payloads are
checked with mkvinfo (tags), ffprobe and `ffmpeg -v error -xerror`, and read live.

Run by tests/kvs_media.rs against a daemon recording the camera --stream, with a read token.
--expect is JSON [{n, producer_ns, server_ns, duration_ns, samples}, ...]: fragments already stored,
oldest first.

Prints "kvs-media: ok <check>" per check and "checks passed" at the end; exits 1 on the first
failure. Runs inside vendor/venv (scripts/bootstrap): standard library plus boto3/botocore.
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvs_common import check, data_endpoint, expect_error, make_client, ok, set_prefix, stream_arguments, when  # noqa: E402

set_prefix("kvs-media")


# --- a minimal EBML walker: enough to find the tags in a stream of MKV chunks ---------------

SEGMENT, TAGS, TAG, SIMPLE_TAG = 0x18538067, 0x1254C367, 0x7373, 0x67C8
TAG_NAME, TAG_STRING, CLUSTER = 0x45A3, 0x4487, 0x1F43B675
DESCEND = {SEGMENT, TAGS, TAG, SIMPLE_TAG}


def vint(buf, pos, keep_marker):
    """(value, next position), or None if buf ends first."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    check(length <= 8, f"bad EBML vint at {pos}")
    if pos + length > len(buf):
        return None
    value = first if keep_marker else first & (0xFF >> length)
    for b in buf[pos + 1 : pos + length]:
        value = value << 8 | b
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return (None if unknown else value), pos + length


class TagReader:
    """Feeds bytes; yields one dict of AWS_KINESISVIDEO_* tags per Tags element, and counts
    clusters. Masters of interest are entered; everything else is skipped whole."""

    def __init__(self):
        self.buf = bytearray()
        self.pos = 0
        self.clusters = 0
        self.current = None
        self.name = None

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            head = vint(self.buf, self.pos, True)
            if head is None:
                break
            eid, p = head
            size = vint(self.buf, p, False)
            if size is None:
                break
            size, body = size
            if eid in DESCEND:
                if eid == TAGS:
                    if self.current:
                        out.append(self.current)
                    self.current = {}
                self.pos = body
                continue
            if size is None or body + size > len(self.buf):
                break
            value = bytes(self.buf[body : body + size])
            if eid == TAG_NAME:
                self.name = value.decode()
            elif eid == TAG_STRING and self.current is not None:
                self.current[self.name] = value.decode()
            elif eid == CLUSTER:
                self.clusters += 1
                if self.current:
                    out.append(self.current)
                self.current = None
            elif self.current:
                # the end of a Tags element is where the next non-tag element starts
                out.append(self.current)
                self.current = None
            self.pos = body + size
        # drop what was consumed (bounded memory on long live reads)
        del self.buf[: self.pos]
        self.pos = 0
        return out

    def finish(self):
        out = [self.current] if self.current else []
        self.current = None
        return out


def read_all_tags(payload):
    r = TagReader()
    return r.feed(payload) + r.finish(), r.clusters


# What ffmpeg logs for each chunk after the first: a Segment of unknown size where the previous
# one has not ended. The service sends every fragment as its own EBML header + Segment (the KVS
# parser library expects that); ffmpeg reads on and decodes every frame.
CHAINED_SEGMENT = "Found unknown-length element with ID 0x18538067"


def media_checks(path, what, frames=None):
    """ffmpeg -xerror decodes it all, ffprobe sees one H.264 stream (and `frames` packets);
    returns mkvinfo -v's output."""
    for cmd in (
        ["ffmpeg", "-v", "error", "-xerror", "-i", path, "-f", "null", "-"],
        ["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-of", "json", path],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True)
        noise = [l for l in r.stderr.splitlines() if CHAINED_SEGMENT not in l]
        check(r.returncode == 0 and not noise, f"{what}: {cmd[0]}: {r.stderr}")
    streams = json.loads(r.stdout)["streams"]
    check(len(streams) == 1 and streams[0]["codec_name"] == "h264", f"{what}: streams {streams}")
    if frames is not None:
        got = int(streams[0]["nb_read_packets"])
        check(got == frames, f"{what}: ffprobe read {got} packets, expected {frames}")
    # -v: mkvinfo stops at the first Cluster otherwise; exit code 1 means warnings (it
    # resyncs at each chained Segment)
    r = subprocess.run(["mkvinfo", "-v", path], capture_output=True, text=True)
    check(r.returncode in (0, 1), f"{what}: mkvinfo failed: {r.stdout} {r.stderr}")
    return r.stdout


def mkvinfo_tags(text):
    """(name, value) pairs of the SimpleTags mkvinfo prints, in order."""
    pairs, name = [], None
    for line in text.splitlines():
        line = line.strip("|+ ")
        if line.startswith("Name: "):
            name = line[len("Name: ") :]
        elif line.startswith("String: ") and name:
            pairs.append((name, line[len("String: ") :]))
            name = None
    return pairs


def secs(ns):
    return f"{ns // 1_000_000 / 1000:.3f}"


def fragment_list_checks(kv, stream, token, expect, tmp):
    endpoint = data_endpoint(kv, stream, "GET_MEDIA_FOR_FRAGMENT_LIST")
    am = make_client("kinesis-video-archived-media", endpoint, token)
    picked = expect[:3]
    out = am.get_media_for_fragment_list(StreamName=stream, Fragments=[str(f["n"]) for f in picked])
    check(out["ContentType"] == "video/webm", f"content type {out['ContentType']}")
    payload = out["Payload"].read()
    path = os.path.join(tmp, "list.mkv")
    with open(path, "wb") as f:
        f.write(payload)
    text = media_checks(path, "GetMediaForFragmentList", sum(f["samples"] for f in picked))
    pairs = mkvinfo_tags(text)
    numbers = [v for k, v in pairs if k == "AWS_KINESISVIDEO_FRAGMENT_NUMBER"]
    check(numbers == [str(f["n"]) for f in picked], f"mkvinfo fragment numbers {numbers} (tags {pairs})")
    for name, field in (
        ("AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP", "server_ns"),
        ("AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP", "producer_ns"),
    ):
        got = [v for k, v in pairs if k == name]
        check(got == [secs(f[field]) for f in picked], f"{name}: {got}")
    tags, clusters = read_all_tags(payload)
    check(clusters == 3, f"{clusters} clusters for 3 fragments")
    ok("GetMediaForFragmentList: MKV plays, mkvinfo shows the fragments' tags")

    # answered in the order asked
    out = am.get_media_for_fragment_list(
        StreamName=stream, Fragments=[str(expect[2]["n"]), str(expect[0]["n"])]
    )
    tags, clusters = read_all_tags(out["Payload"].read())
    got = [t.get("AWS_KINESISVIDEO_FRAGMENT_NUMBER") for t in tags]
    check(got == [str(expect[2]["n"]), str(expect[0]["n"])] and clusters == 2, f"order: {tags}")
    ok("GetMediaForFragmentList: fragments come in the order asked")

    # a number the store does not have: an error chunk in its place, the others play
    out = am.get_media_for_fragment_list(
        StreamName=stream, Fragments=[str(expect[0]["n"]), "999999999999"]
    )
    tags, clusters = read_all_tags(out["Payload"].read())
    check(clusters == 1, f"{clusters} clusters for one known fragment")
    err = [t for t in tags if "AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE" in t]
    check(
        len(err) == 1 and err[0]["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] == "999999999999",
        f"error chunk tags: {tags}",
    )
    ok("GetMediaForFragmentList: an unknown number becomes an error chunk")

    expect_error(
        "ResourceNotFoundException",
        lambda: am.get_media_for_fragment_list(StreamName=stream, Fragments=["999999999999"]),
    )
    expect_error(
        "ResourceNotFoundException",
        lambda: am.get_media_for_fragment_list(StreamName="no-such-cam", Fragments=["1"]),
    )
    loose = make_client("kinesis-video-archived-media", endpoint, token, validate=False)
    expect_error(
        "InvalidArgumentException",
        lambda: loose.get_media_for_fragment_list(StreamName=stream, Fragments=["12", "x"]),
        field="Fragments[1]",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: loose.get_media_for_fragment_list(StreamName=stream, Fragments=[]),
        field="Fragments",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: loose.get_media_for_fragment_list(StreamName=stream, Fragments=["1"] * 1001),
        field="Fragments",
    )
    ok("GetMediaForFragmentList errors (all unknown, unknown stream, bad numbers, list size)")


def first_fragments(media, stream, selector, count):
    """Tags of the first `count` fragments GetMedia sends for `selector`, the bytes read, and
    the connection closed after."""
    out = media.get_media(StreamName=stream, StartSelector=selector)
    check(out["ContentType"] == "video/webm", f"content type {out['ContentType']}")
    body = out["Payload"]
    r, frags, data = TagReader(), [], bytearray()
    try:
        while len(frags) < count:
            chunk = body.read(1024)
            check(chunk, f"{selector}: the stream ended after {len(frags)} fragments")
            data += chunk
            for t in r.feed(chunk):
                if "AWS_KINESISVIDEO_FRAGMENT_NUMBER" in t:
                    frags.append(dict(t))
                elif "AWS_KINESISVIDEO_CONTINUATION_TOKEN" in t and frags:
                    frags[-1].update(t)
        # the tags after the last cluster
        while "AWS_KINESISVIDEO_CONTINUATION_TOKEN" not in frags[-1]:
            chunk = body.read(1024)
            check(chunk, f"{selector}: the stream ended inside a fragment")
            data += chunk
            for t in r.feed(chunk):
                if "AWS_KINESISVIDEO_CONTINUATION_TOKEN" in t:
                    frags[-1].update(t)
    finally:
        body.close()
    return frags, bytes(data)


def get_media_checks(kv, stream, token, expect, tmp):
    endpoint = data_endpoint(kv, stream, "GET_MEDIA")
    media = make_client("kinesis-video-media", endpoint, token)
    num = lambda f: int(f["AWS_KINESISVIDEO_FRAGMENT_NUMBER"])

    frags, _ = first_fragments(media, stream, {"StartSelectorType": "EARLIEST"}, 2)
    check([num(f) for f in frags] == [expect[0]["n"], expect[1]["n"]], f"EARLIEST: {frags}")
    f0 = frags[0]
    check(f0["AWS_KINESISVIDEO_SERVER_TIMESTAMP"] == secs(expect[0]["server_ns"]), f"tags {f0}")
    check(f0["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"] == secs(expect[0]["producer_ns"]), f"tags {f0}")
    check(f0["AWS_KINESISVIDEO_CONTINUATION_TOKEN"] == str(expect[0]["n"]), f"tags {f0}")
    frags, _ = first_fragments(
        media,
        stream,
        {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": str(expect[0]["n"])},
        1,
    )
    check(num(frags[0]) == expect[1]["n"], f"FRAGMENT_NUMBER: {frags}")
    for kind, field in (("PRODUCER_TIMESTAMP", "producer_ns"), ("SERVER_TIMESTAMP", "server_ns")):
        t = expect[2][field] + expect[2]["duration_ns"] // 2
        frags, _ = first_fragments(
            media, stream, {"StartSelectorType": kind, "StartTimestamp": when(t)}, 1
        )
        check(num(frags[0]) == expect[2]["n"], f"{kind}: {frags}")
    ok("GetMedia EARLIEST, FRAGMENT_NUMBER, PRODUCER_TIMESTAMP, SERVER_TIMESTAMP start where asked")

    # NOW, read live: new fragments arrive as they are recorded
    am_endpoint = data_endpoint(kv, stream, "LIST_FRAGMENTS")
    am = make_client("kinesis-video-archived-media", am_endpoint, token)
    sel = {
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": when(0), "EndTimestamp": when(4_000_000_000_000_000_000)},
    }
    stored = lambda: sorted(int(f["FragmentNumber"]) for f in am.list_fragments(StreamName=stream, FragmentSelector=sel)["Fragments"])
    newest = stored()[-1]
    live, data = first_fragments(media, stream, {"StartSelectorType": "NOW"}, 5)
    numbers = [num(f) for f in live]
    check(numbers[0] >= newest, f"NOW started at {numbers[0]}, before the newest {newest}")
    check(numbers == list(range(numbers[0], numbers[0] + 5)), f"NOW: numbers {numbers}")
    behind = [int(f["AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"]) for f in live[1:]]
    check(all(0 <= b < 3000 for b in behind), f"NOW: millis behind now {behind}")
    path = os.path.join(tmp, "live.mkv")
    with open(path, "wb") as f:
        # up to the chunk that was being read when the connection closed
        f.write(data[: data.rfind(b"\x1a\x45\xdf\xa3")])
    media_checks(path, "GetMedia NOW")
    ok(f"GetMedia NOW read live: fragments {numbers}, millis behind {behind}, MKV plays")

    token_tag = live[-1]["AWS_KINESISVIDEO_CONTINUATION_TOKEN"]
    resumed, _ = first_fragments(
        media, stream, {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": token_tag}, 1
    )
    successor = min(n for n in stored() if n > int(token_tag))
    check(num(resumed[0]) == successor, f"CONTINUATION_TOKEN {token_tag}: resumed at {resumed}")
    ok("GetMedia CONTINUATION_TOKEN resumes after the last fragment read")

    expect_error(
        "ResourceNotFoundException",
        lambda: media.get_media(StreamName="no-such-cam", StartSelector={"StartSelectorType": "NOW"}),
    )
    loose = make_client("kinesis-video-media", endpoint, token, validate=False)
    for selector, field in (
        ({"StartSelectorType": "LATEST"}, "StartSelectorType"),
        ({"StartSelectorType": "FRAGMENT_NUMBER"}, "AfterFragmentNumber"),
        ({"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": "12ab"}, "AfterFragmentNumber"),
        ({"StartSelectorType": "SERVER_TIMESTAMP"}, "StartTimestamp"),
        ({"StartSelectorType": "CONTINUATION_TOKEN"}, "ContinuationToken"),
    ):
        expect_error(
            "InvalidArgumentException",
            lambda: loose.get_media(StreamName=stream, StartSelector=selector),
            field=field,
        )
    expect_error("InvalidArgumentException", lambda: loose.get_media(StreamName=stream), field="StartSelector")
    wrong = make_client("kinesis-video-media", endpoint, "not-a-token-at-all")
    expect_error(
        "NotAuthorizedException",
        lambda: wrong.get_media(StreamName=stream, StartSelector={"StartSelectorType": "NOW"}),
    )
    ok("GetMedia errors (unknown stream, bad selectors, auth)")


def main():
    p = stream_arguments()
    p.add_argument("--only", choices=["list", "media"], help="run one group of checks")
    a = p.parse_args()
    expect = json.loads(a.expect)
    kv = make_client("kinesisvideo", a.endpoint, a.reader)
    with tempfile.TemporaryDirectory() as tmp:
        if a.only in (None, "list"):
            fragment_list_checks(kv, a.stream, a.reader, expect, tmp)
        if a.only in (None, "media"):
            get_media_checks(kv, a.stream, a.reader, expect, tmp)
    print("checks passed", flush=True)


if __name__ == "__main__":
    main()
