"""GetImages driven by a stock boto3 client, the way KVS consumer code calls it: `kinesisvideo`
get_data_endpoint(APIName=GET_IMAGES), then `kinesis-video-archived-media` get_images on that
endpoint. Every image is decoded with ffprobe/ffmpeg (no imaging package needed) and its size
and content checked.

Run by tests/kvs_images.rs against a daemon recording the camera --stream (a videotestsrc `ball`
pattern: a white ball on black) of --width x --height, with a read token. --expect is JSON
[{n, producer_ns, server_ns, duration_ns}, ...]: contiguous fragments already in the store.

Prints "images: ok <check>" per check and "checks passed" at the end; exits 1 on the first failure.
"""

import base64
import datetime
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvs_common import UTC, check, data_endpoint, expect_error, fail, make_client, ok, page_through, set_prefix, stream_arguments, when  # noqa: E402

set_prefix("images")


def probe(data, fmt):
    """(codec, width, height) of an encoded image; it must also decode cleanly to RGB pixels,
    which are returned."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "image." + ("jpg" if fmt == "JPEG" else "png"))
        with open(path, "wb") as f:
            f.write(data)
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", path],
            capture_output=True, text=True,
        )
        check(out.returncode == 0 and not out.stderr.strip(), f"ffprobe: {out.stderr}")
        s = json.loads(out.stdout)["streams"][0]
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-xerror", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True,
        )
        check(raw.returncode == 0 and not raw.stderr.strip(), f"ffmpeg decode: {raw.stderr!r}")
        check(len(raw.stdout) == s["width"] * s["height"] * 3, "decoded size does not match")
        return s["codec_name"], s["width"], s["height"], raw.stdout


def check_ball(pixels, what):
    """The test pattern: mostly black, with a bright ball."""
    lum = [sum(pixels[i : i + 3]) / 3 for i in range(0, len(pixels), 3)]
    dark = sum(1 for v in lum if v < 40) / len(lum)
    bright = sum(1 for v in lum if v > 200) / len(lum)
    check(dark > 0.5 and bright > 0.005, f"{what}: not the test pattern ({dark:.2f} dark, {bright:.3f} bright)")


def images(am, **kw):
    return am.get_images(**kw)["Images"]


def main():
    p = stream_arguments()
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--height", type=int, required=True)
    a = p.parse_args()
    frags = json.loads(a.expect)
    check(len(frags) >= 4, f"too few fragments to test with: {frags}")
    name = a.stream

    kv = make_client("kinesisvideo", a.endpoint, a.reader)
    endpoint = data_endpoint(kv, name, "GET_IMAGES")
    check(endpoint == a.endpoint, f"data endpoint: {endpoint}")
    am = make_client("kinesis-video-archived-media", endpoint, a.reader)
    ok("get_data_endpoint GET_IMAGES")

    # Sampling every 500 ms over the stored fragments: one image per sampling time, both
    # ends included, all from stored video.
    start_ns = frags[0]["producer_ns"]
    end_ns = frags[-1]["producer_ns"] + frags[-1]["duration_ns"] - 1
    start, end = when(start_ns, up=True), when(end_ns)
    start_us = round(start.timestamp() * 1e6)
    span_us = round(end.timestamp() * 1e6) - start_us
    interval = 500
    want = span_us // (interval * 1000) + 1
    base = dict(StreamName=name, ImageSelectorType="PRODUCER_TIMESTAMP",
                StartTimestamp=start, EndTimestamp=end, SamplingInterval=interval)
    jpeg = dict(base, Format="JPEG", FormatConfig={"JPEGQuality": "90"})
    got, pages = page_through(am.get_images, "Images", "get_images", want, jpeg)
    check(len(got) == want, f"{len(got)} images for {want} sampling times")
    stamps = [round(i["TimeStamp"].timestamp() * 1000) for i in got]
    check(stamps == [start_us // 1000 + k * interval for k in range(want)], f"sampling times: {stamps}")
    for img in got:
        check("Error" not in img and img.get("ImageContent"), f"no image for stored video: {img}")
        codec, w, h, pixels = probe(base64.b64decode(img["ImageContent"]), "JPEG")
        check((codec, w, h) == ("mjpeg", a.width, a.height), f"JPEG {codec} {w}x{h}")
    check_ball(pixels, "JPEG")
    ok(f"get_images JPEG: {want} images every {interval} ms, {a.width}x{a.height}, in {pages} page(s)")

    # The same times page by page: MaxResults 3 -> pages of 3, the same images.
    paged, pages = page_through(am.get_images, "Images", "get_images MaxResults=3", want, dict(jpeg, MaxResults=3))
    check(pages == -(-want // 3), f"{pages} pages for {want} images by 3")
    check(paged == got, "paged images differ from the single page")
    ok(f"get_images MaxResults=3: {pages} pages, same images")

    # Each picture is the key frame starting the fragment holding its time: times in one
    # fragment share it, consecutive fragments differ (the ball moves).
    by_frag = {}
    for k, img in enumerate(got):
        t_ns = (start_us + k * interval * 1000) * 1000  # the sampling time the server used
        owner = [f["n"] for f in frags if f["producer_ns"] <= t_ns][-1]
        by_frag.setdefault(owner, set()).add(img["ImageContent"])
    check(all(len(v) == 1 for v in by_frag.values()), "times in one fragment got different pictures")
    check(len({next(iter(v)) for v in by_frag.values()}) == len(by_frag) >= 3,
          f"fragments share a picture: {len(by_frag)} fragments")
    ok(f"one key frame per fragment ({len(by_frag)} fragments)")

    # PNG, scaled: both sides given; one side keeps the aspect ratio.
    for size, expect in (
        (dict(WidthPixels=a.width // 2, HeightPixels=a.height // 4), (a.width // 2, a.height // 4)),
        (dict(WidthPixels=a.width // 2), (a.width // 2, a.height // 2)),
        (dict(HeightPixels=a.height * 2), (a.width * 2, a.height * 2)),
    ):
        out = images(am, **dict(base, Format="PNG", SamplingInterval=1000, **size))
        check(len(out) >= 2 and all("ImageContent" in i for i in out), f"PNG {size}: {out}")
        codec, w, h, pixels = probe(base64.b64decode(out[0]["ImageContent"]), "PNG")
        check((codec, w, h) == ("png",) + expect, f"PNG {size}: {codec} {w}x{h}, want {expect}")
    check_ball(pixels, "PNG")
    ok("get_images PNG scaled (both sides, width only, height only)")

    # SERVER_TIMESTAMP selects on the server clock.
    s0 = when(frags[1]["server_ns"], up=True)
    out = images(am, StreamName=name, ImageSelectorType="SERVER_TIMESTAMP", Format="JPEG",
                 StartTimestamp=s0, EndTimestamp=s0 + datetime.timedelta(milliseconds=400),
                 SamplingInterval=200)
    check(len(out) == 3 and all("ImageContent" in i for i in out), f"SERVER_TIMESTAMP: {out}")
    ok("get_images SERVER_TIMESTAMP")

    # Before the recording began: NO_MEDIA, then images once video exists. A range shorter
    # than the interval still gets its start time.
    before = when(start_ns - 3_000_000_000, up=True)
    out = images(am, **dict(base, Format="JPEG", StartTimestamp=before, EndTimestamp=start, SamplingInterval=1000))
    errors = [i.get("Error") for i in out]
    check(errors[:2] == ["NO_MEDIA", "NO_MEDIA"] and all("ImageContent" not in i for i in out[:2]),
          f"before the recording: {out}")
    check(errors[-1] is None and "ImageContent" in out[-1], f"the last time is recorded: {errors}")
    out = images(am, **dict(base, Format="JPEG", EndTimestamp=when(start_ns + 100_000_000), SamplingInterval=1000))
    check(len(out) == 1 and "ImageContent" in out[0], f"range shorter than the interval: {out}")
    ancient = datetime.datetime(2001, 1, 1, tzinfo=UTC)
    out = images(am, **dict(base, Format="PNG", StartTimestamp=ancient,
                            EndTimestamp=ancient + datetime.timedelta(seconds=2)))
    check([i.get("Error") for i in out] == ["NO_MEDIA"] * 5, f"no video at all: {out}")
    ok("get_images NO_MEDIA where there is no video")

    # Bad input: the service's error types, naming the field.
    loose = make_client("kinesis-video-archived-media", endpoint, a.reader, validate=False)
    expect_error("ResourceNotFoundException",
                 lambda: am.get_images(**dict(base, StreamName="nope", Format="JPEG")), "nope")
    expect_error("InvalidArgumentException",
                 lambda: am.get_images(**dict(base, Format="JPEG", SamplingInterval=100)), "SamplingInterval")
    expect_error("InvalidArgumentException",
                 lambda: loose.get_images(**dict(base, Format="GIF")), "Format")
    expect_error("InvalidArgumentException",
                 lambda: am.get_images(**dict(base, Format="JPEG",
                                              EndTimestamp=start + datetime.timedelta(seconds=301))),
                 "EndTimestamp")
    expect_error("InvalidArgumentException",
                 lambda: loose.get_images(**dict(base, Format="JPEG", WidthPixels=0)), "WidthPixels")
    expect_error("InvalidArgumentException",
                 lambda: am.get_images(**dict(base, Format="JPEG", FormatConfig={"JPEGQuality": "101"})),
                 "JPEGQuality")
    expect_error("InvalidArgumentException",
                 lambda: loose.get_images(**dict(base, Format="JPEG", ImageSelectorType="NOW")),
                 "ImageSelectorType")
    expect_error("InvalidArgumentException",
                 lambda: am.get_images(**dict(base, Format="JPEG", NextToken="Zm9yZ2Vk")), "NextToken")
    ok("get_images bad input (unknown stream, interval, format, range, size, quality, selector, token)")

    print("checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # any other failure is a failed check, with its cause
        fail(f"{type(e).__name__}: {e}")
